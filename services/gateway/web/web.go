// Package web holds the gateway's browser assets: the live viewer (index.html)
// and the ES module client framecast.js, embedded in the binary.
//
// The files need no build step. Handler serves them with their media type and
// Cache-Control: no-cache, so a browser revalidates (by ETag) on every load
// and never runs a stale client against a newer gateway.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

//go:embed static
var static embed.FS

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// contentTypes maps the extensions the embedded files use to media types.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
}

// assets maps a request path to its file; "/" is index.html.
var assets = load()

func load() map[string]asset {
	m := make(map[string]asset)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(b)
		a := asset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		name := p[len("static"):]
		m[name] = a
		if path.Base(name) == "index.html" {
			m[path.Dir(name)] = a
		}
		return nil
	})
	if err != nil {
		// The files are compiled in; a walk error is a broken build.
		panic("web: read embedded assets: " + err.Error())
	}
	return m
}

// Paths lists the request paths Handler serves, for a router that mounts
// each one explicitly.
func Paths() []string {
	ps := make([]string, 0, len(assets))
	for p := range assets {
		ps = append(ps, p)
	}
	return ps
}

// Handler serves the viewer at "/" (and "/index.html") and the client at
// "/framecast.js". It answers GET and HEAD, 405 to other methods and 404 to
// any other path. It is safe for concurrent use and holds no goroutines.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	a, ok := assets[r.URL.Path]
	if !ok {
		http.Error(w, "404 not found: this gateway serves the viewer at / and the client at /framecast.js", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed: use GET or HEAD", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
