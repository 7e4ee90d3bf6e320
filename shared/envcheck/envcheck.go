// Package envcheck finds environment variables that look like settings of
// a program (PREFIX_NAME) but name none of its flags. Flags are read from
// the environment by their names (github.com/peterbourgon/ff: upper case,
// '-' as '_'), and a variable that matches no flag is ignored; a program
// reports what Unknown returns, so that FRAMECAST_STREAM_REPLICA=3 is seen
// instead of silently leaving one replica.
package envcheck

import (
	"flag"
	"sort"
	"strings"
)

// Var is a variable that names no flag.
type Var struct {
	Name string
	// Suggest is the variable of the flag whose name is closest, when one
	// is within two edits; "" otherwise.
	Suggest string
}

// Attrs are v's log attributes: its name, and the suggestion if any.
func (v Var) Attrs() []any {
	if v.Suggest == "" {
		return []any{"name", v.Name}
	}
	return []any{"name", v.Name, "did_you_mean", v.Suggest}
}

// Unknown returns the variables of environ ("NAME=value" entries) named
// prefix_* whose rest names no flag of fs, sorted by name.
func Unknown(fs *flag.FlagSet, prefix string, environ []string) []Var {
	prefix = strings.ToUpper(prefix) + "_"
	known := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { known[EnvName(prefix, f.Name)] = true })
	var out []Var
	seen := map[string]bool{}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, prefix) || known[name] || seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, Var{Name: name, Suggest: closest(name, known)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// EnvName is the variable a flag is read from: prefix_ then the flag's
// name in upper case with '-' as '_'. prefix may end in '_' or not.
func EnvName(prefix, flagName string) string {
	prefix = strings.TrimSuffix(strings.ToUpper(prefix), "_") + "_"
	return prefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_", "/", "_").Replace(flagName))
}

// closest returns the known name within two edits of name, the nearest
// first (then the first in order), or "".
func closest(name string, known map[string]bool) string {
	best, bestD := "", 3
	for k := range known {
		if d := distance(name, k); d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b (bytes).
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
