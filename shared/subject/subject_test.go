package subject

import (
	"errors"
	"strings"
	"testing"
)

func TestEscapeTable(t *testing.T) {
	tests := []struct {
		name, id, want string
	}{
		{"plain", "Abc_09-z", "Abc_09-z"},
		{"dot", "a.b", "a~2Eb"},
		{"star", "*", "~2A"},
		{"gt", ">", "~3E"},
		{"space", "a b", "a~20b"},
		{"percent", "%2E", "~252E"},
		{"tilde", "~all", "~7Eall"},
		{"dollar", "$JS", "~24JS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Escape(tt.id); got != tt.want {
				t.Fatalf("Escape(%q) = %q; want %q", tt.id, got, tt.want)
			}
			back, err := Unescape(tt.want)
			if err != nil || back != tt.id {
				t.Fatalf("Unescape(%q) = %q, %v; want %q", tt.want, back, err, tt.id)
			}
		})
	}
}

func TestUnescapeRefusesNonCanonical(t *testing.T) {
	for _, tok := range []string{"~", "~2", "~2e", "~41", "a.b", "a*", "~GG", "a b", "~all", "x~"} {
		if got, err := Unescape(tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Unescape(%q) = %q, %v; want ErrInvalidToken", tok, got, err)
		}
	}
}

func TestBroadcastUnreachable(t *testing.T) {
	// Every printable id of up to 4 bytes over an alphabet that includes the
	// escape character must avoid the broadcast token.
	alphabet := "~al a.*>%-_"
	var walk func(prefix string)
	walk = func(prefix string) {
		if prefix != "" && ClientToken(prefix) == Broadcast {
			t.Fatalf("ClientToken(%q) = Broadcast", prefix)
		}
		if len(prefix) == 4 {
			return
		}
		for i := 0; i < len(alphabet); i++ {
			walk(prefix + alphabet[i:i+1])
		}
	}
	walk("")
	if ClientToken("") != Broadcast {
		t.Fatalf("ClientToken(\"\") = %q; want %q", ClientToken(""), Broadcast)
	}
}

func TestSubjectShape(t *testing.T) {
	ids := []string{"a.b", "*", ">", "a b", "%2E", "..", "a.>", "~all", "x"}
	for _, oid := range ids {
		for _, cid := range append(ids, "") {
			s := Frames(oid, cid)
			if n := strings.Count(s, "."); n != 2 {
				t.Fatalf("Frames(%q, %q) = %q has %d dots; want 2", oid, cid, s, n)
			}
			if strings.ContainsAny(s, "*> \t") {
				t.Fatalf("Frames(%q, %q) = %q contains a wildcard or space", oid, cid, s)
			}
			gotO, gotC, err := Parse(s)
			if err != nil || gotO != oid || gotC != cid {
				t.Fatalf("Parse(%q) = %q, %q, %v; want %q, %q", s, gotO, gotC, err, oid, cid)
			}
			gotO, gotC, err = Parse(Live(oid, cid))
			if err != nil || gotO != oid || gotC != cid {
				t.Fatalf("Parse(Live) = %q, %q, %v; want %q, %q", gotO, gotC, err, oid, cid)
			}
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, s := range []string{"", "outputs", "outputs.a", "outputs.a.b.c", "other.a.b", "outputs..b", "outputs.a.", "outputs.a~2.b"} {
		if _, _, err := Parse(s); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Parse(%q) err = %v; want ErrInvalidToken", s, err)
		}
	}
}

func TestValidateIDs(t *testing.T) {
	tests := []struct {
		name    string
		oid     string
		wantErr string
	}{
		{"ok", "output_id", ""},
		{"24 bytes", strings.Repeat("a", 24), ""},
		{"printable punctuation", "a.b *>%~", ""},
		{"empty", "", "output_id is empty"},
		{"25 bytes", strings.Repeat("a", 25), "output_id size is greater than 24 bytes"},
		{"non-ASCII", "caf\u00e9", "output_id is not ASCII encodable"},
		{"control", "a\nb", "control character 0x0A"},
		{"DEL", "a\x7f", "control character 0x7F"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateOutputID(tt.oid)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v; want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidID) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v; want ErrInvalidID containing %q", err, tt.wantErr)
			}
		})
	}
	if err := ValidateClientID(""); err != nil {
		t.Fatalf("empty client_id: got %v; want nil", err)
	}
	if err := ValidateClientID(strings.Repeat("c", 129)); !errors.Is(err, ErrInvalidID) {
		t.Fatalf("129-byte client_id: got %v; want ErrInvalidID", err)
	}
	if err := ValidateClientID("\x00"); !errors.Is(err, ErrInvalidID) {
		t.Fatalf("NUL client_id: got %v; want ErrInvalidID", err)
	}
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "a", "a.b", "~", "~all", "%2E", ">", "\xff\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		tok := Escape(id)
		if strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Fatalf("Escape(%q) = %q contains a subject metacharacter", id, tok)
		}
		back, err := Unescape(tok)
		if err != nil || back != id {
			t.Fatalf("Unescape(Escape(%q)) = %q, %v", id, back, err)
		}
		if id != "" && tok == Broadcast {
			t.Fatalf("Escape(%q) = Broadcast", id)
		}
		// Unescape is canonical: anything it accepts escapes back to itself.
		if got, err := Unescape(id); err == nil && Escape(got) != id {
			t.Fatalf("Escape(Unescape(%q)) = %q", id, Escape(got))
		}
	})
}

func TestEventsTokenUnreachable(t *testing.T) {
	// No output id escapes to the events token: '~' is always escaped.
	for _, id := range []string{"~events", "events", "~", "~e", "%7Eevents"} {
		if Escape(id) == EventsToken {
			t.Fatalf("Escape(%q) = %q", id, EventsToken)
		}
	}
	if got, want := Events("c 1"), "outputs.~events.c~201"; got != want {
		t.Fatalf("Events: got %q; want %q", got, want)
	}
	if got, want := LiveEvents(""), "live.outputs.~events.~all"; got != want {
		t.Fatalf("LiveEvents: got %q; want %q", got, want)
	}
}

func TestToLiveAndIsEvent(t *testing.T) {
	for _, tc := range []struct {
		oid, cid string
	}{{"o", "c"}, {"a.b", ""}, {"~events", "x"}} {
		if got, want := ToLive(Frames(tc.oid, tc.cid)), Live(tc.oid, tc.cid); got != want {
			t.Errorf("ToLive(%q): got %q; want %q", Frames(tc.oid, tc.cid), got, want)
		}
		if IsEvent(Frames(tc.oid, tc.cid)) || IsEvent(Live(tc.oid, tc.cid)) {
			t.Errorf("IsEvent: output %q's frames taken for events", tc.oid)
		}
	}
	if got, want := ToLive(Events("c")), LiveEvents("c"); got != want {
		t.Errorf("ToLive(%q): got %q; want %q", Events("c"), got, want)
	}
	for _, subj := range []string{Events(""), Events("c"), LiveEvents("c")} {
		if !IsEvent(subj) {
			t.Errorf("IsEvent(%q): got false; want true", subj)
		}
	}
	for _, subj := range []string{"~events.c", "other.~events.c", Prefix + "." + EventsToken} {
		if IsEvent(subj) {
			t.Errorf("IsEvent(%q): got true; want false", subj)
		}
	}
}
