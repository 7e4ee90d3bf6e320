package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)
	tests := []struct {
		name        string
		method      string
		path        string
		status      int
		contentType string
		contains    string
	}{
		{"viewer at root", "GET", "/", 200, "text/html; charset=utf-8", `import { FramecastClient } from "/framecast.js"`},
		{"viewer by name", "GET", "/index.html", 200, "text/html; charset=utf-8", "<title>framecast gallery</title>"},
		{"client module", "GET", "/framecast.js", 200, "text/javascript; charset=utf-8", "export class FramecastClient"},
		{"head", "HEAD", "/framecast.js", 200, "text/javascript; charset=utf-8", ""},
		{"unknown path", "GET", "/nope.js", 404, "text/plain; charset=utf-8", "serves the viewer at /"},
		{"directory of static", "GET", "/static/framecast.js", 404, "text/plain; charset=utf-8", ""},
		{"post", "POST", "/framecast.js", 405, "text/plain; charset=utf-8", "use GET or HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.status {
				t.Fatalf("status %d; want %d (body %q)", res.StatusCode, tt.status, body)
			}
			if got := res.Header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type %q; want %q", got, tt.contentType)
			}
			if !strings.Contains(string(body), tt.contains) {
				t.Errorf("body does not contain %q", tt.contains)
			}
			if tt.status == 200 {
				if got := res.Header.Get("Cache-Control"); got != "no-cache" {
					t.Errorf("Cache-Control %q; want no-cache", got)
				}
				if res.Header.Get("ETag") == "" {
					t.Error("no ETag")
				}
			}
			if tt.status == 405 && res.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow %q; want GET, HEAD", res.Header.Get("Allow"))
			}
		})
	}
}

// A browser revalidating with the ETag it holds gets 304 and no body.
func TestHandlerRevalidates(t *testing.T) {
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)
	res, err := http.Get(srv.URL + "/framecast.js")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/framecast.js", nil)
	req.Header.Set("If-None-Match", res.Header.Get("ETag"))
	res2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res2.Body.Close()
	if res2.StatusCode != http.StatusNotModified {
		t.Fatalf("status %d; want 304", res2.StatusCode)
	}
}

func TestPaths(t *testing.T) {
	got := map[string]bool{}
	for _, p := range Paths() {
		got[p] = true
	}
	for _, want := range []string{"/", "/index.html", "/framecast.js"} {
		if !got[want] {
			t.Errorf("Paths() lacks %s; got %v", want, Paths())
		}
	}
}
