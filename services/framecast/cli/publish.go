package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/framecast/framecast/services/producer"
	producerpub "github.com/framecast/framecast/services/producer/publish"
	"github.com/framecast/framecast/shared/frame"
	"github.com/framecast/framecast/shared/subject"
)

// publishConfig is what `framecast publish` was asked to do.
type publishConfig struct {
	ProducerURL    string
	OutputID       string
	ClientID       string
	FileType       frame.Format
	Quality        int
	Previews       int
	Token          string
	IdempotencyKey string
	Timeout        time.Duration
	Paths          []string
}

func parsePublish(args []string, stderr io.Writer) (publishConfig, error) {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	var c publishConfig
	var fileType string
	fs.StringVar(&c.ProducerURL, "producer-url", "http://localhost:8080", "producer API base URL")
	fs.StringVar(&c.OutputID, "output-id", "", "output id to publish to (required; 1..24 bytes of printable ASCII)")
	fs.StringVar(&c.ClientID, "client-id", "", "client id to target; empty broadcasts to every client of the output")
	fs.StringVar(&fileType, "type", "webp", "encoding of the frames: webp, png or jpeg")
	fs.IntVar(&c.Quality, "quality", 80, "encoding quality 1..100 (webp, jpeg)")
	fs.IntVar(&c.Previews, "previews", 0, fmt.Sprintf("also publish a WEBP preview of each image, this many pixels on its longest side (%d..%d); 0: none", producerpub.MinPreview, producerpub.MaxPreview))
	fs.StringVar(&c.Token, "token", "", "bearer token for the producer API")
	fs.StringVar(&c.IdempotencyKey, "idempotency-key", "", "Idempotency-Key header: a retry with the same key publishes nothing twice")
	fs.DurationVar(&c.Timeout, "timeout", time.Minute, "bound on the whole request")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: framecast publish --output-id ID [flags] FILE-OR-FOLDER...\n\n"+
			"Sends png, jpeg and webp files (a folder: its image files in name order) as one batch.\n\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return c, err
	}
	c.Paths = fs.Args()
	if err := checkHTTPURL("producer-url", c.ProducerURL); err != nil {
		return c, err
	}
	if err := subject.ValidateOutputID(c.OutputID); err != nil {
		return c, usagef("--output-id: %v", err)
	}
	if err := subject.ValidateClientID(c.ClientID); err != nil {
		return c, usagef("--client-id: %v", err)
	}
	f, err := frame.ParseFormat(fileType)
	if err != nil {
		return c, usagef("--type: %v", err)
	}
	c.FileType = f
	if c.Quality < 1 || c.Quality > 100 {
		return c, usagef("--quality %d; allowed: 1..100", c.Quality)
	}
	if c.Previews != 0 && (c.Previews < producerpub.MinPreview || c.Previews > producerpub.MaxPreview) {
		return c, usagef("--previews %d; allowed: 0 (none) or %d..%d", c.Previews, producerpub.MinPreview, producerpub.MaxPreview)
	}
	if c.Timeout <= 0 {
		return c, usagef("--timeout %v; allowed: a positive duration such as 30s", c.Timeout)
	}
	if len(c.Paths) == 0 {
		return c, usagef("no files; give one or more png, jpeg or webp files or folders")
	}
	return c, nil
}

func checkHTTPURL(name, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("--%s %q; allowed: an http:// or https:// URL such as http://localhost:8080", name, s)
	}
	return nil
}

// imageExts are the file name extensions publish takes from a folder.
var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".webp": true}

// imageFiles expands paths: files as given, folders to their image files
// in name order.
func imageFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, e := range entries {
			if e.Type().IsRegular() && imageExts[strings.ToLower(filepath.Ext(e.Name()))] {
				names = append(names, e.Name())
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("folder %s has no image files; allowed: .png, .jpg, .jpeg, .webp", p)
		}
		slices.Sort(names)
		for _, n := range names {
			files = append(files, filepath.Join(p, n))
		}
	}
	return files, nil
}

func publish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parsePublish(args, stderr)
	if err != nil {
		return err
	}
	files, err := imageFiles(c.Paths)
	if err != nil {
		return err
	}
	body, contentType, err := multipartBatch(files)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	q := url.Values{"file_type": {c.FileType.String()}, "quality": {strconv.Itoa(c.Quality)}}
	if c.ClientID != "" {
		q.Set("client_id", c.ClientID)
	}
	if c.Previews > 0 {
		q.Set("previews", strconv.Itoa(c.Previews))
	}
	u := strings.TrimSuffix(c.ProducerURL, "/") + "/v1/outputs/" + url.PathEscape(c.OutputID) + "/images?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", c.IdempotencyKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("post %d files: %w", len(files), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read the producer's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return answerError(resp, b, files, stdout)
	}
	var pr producer.Response
	if err := json.Unmarshal(b, &pr); err != nil {
		return fmt.Errorf("producer answered 200 with a body that is not the API's JSON: %v: %.200q", err, b)
	}
	printFrames(stdout, pr.Frames, files)
	return nil
}

// answerError explains a non-200 answer, printing the frames that were
// published before a batch failed part way.
func answerError(resp *http.Response, b []byte, files []string, stdout io.Writer) error {
	var e producer.ErrorResponse
	if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
		return fmt.Errorf("producer answered %s: %.200q", resp.Status, strings.TrimSpace(string(b)))
	}
	printFrames(stdout, e.Error.Published, files)
	msg := fmt.Sprintf("producer answered %s: %s: %s", resp.Status, e.Error.Code, e.Error.Message)
	if len(e.Error.Published) > 0 {
		msg += fmt.Sprintf(" (%d of %d frames were published, listed above)", len(e.Error.Published), len(files))
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" && !strings.Contains(strings.ToLower(e.Error.Message), "retry") {
		msg += "; retry after " + ra + "s"
	}
	return fmt.Errorf("%s", msg)
}

func printFrames(w io.Writer, frames []producer.ResponseFrame, files []string) {
	for _, f := range frames {
		name := ""
		if f.BatchIndex >= 0 && f.BatchIndex < len(files) {
			name = files[f.BatchIndex]
		}
		fmt.Fprintf(w, "seq=%d index=%d type=%s size=%dx%d bytes=%d rendition=%s file=%s\n",
			f.Seq, f.BatchIndex, f.ContentType, f.Width, f.Height, f.Bytes, f.Rendition, name)
	}
}

// multipartBatch builds a multipart/form-data body with one part per file,
// in order, each typed by its content.
func multipartBatch(files []string) (io.Reader, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i, name := range files {
		img, err := os.ReadFile(name)
		if err != nil {
			return nil, "", err
		}
		ct := http.DetectContentType(img)
		if _, err := frame.FormatOf(ct); err != nil {
			return nil, "", fmt.Errorf("%s is %s; allowed: png, jpeg, webp images", name, ct)
		}
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="image%d"; filename=%q`, i, filepath.Base(name)))
		h.Set("Content-Type", ct)
		pw, err := mw.CreatePart(h)
		if err != nil {
			return nil, "", err
		}
		if _, err := pw.Write(img); err != nil {
			return nil, "", err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return &buf, mw.FormDataContentType(), nil
}
