package replay_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"testing/iotest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/services/gateway/replay"
	"github.com/framecast/framecast/shared/natsembed/natstest"
	"github.com/framecast/framecast/shared/stream"
)

// putObject ensures the stream and its bucket and stores data as name.
func putObject(t *testing.T, name string, data []byte) (jetstream.JetStream, replay.Source) {
	t.Helper()
	js := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(ctx, "OUTPUTS_LARGE")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, name, data); err != nil {
		t.Fatal(err)
	}
	return js, replay.Source{JS: js, Stream: stream.DefaultName}
}

// image is n bytes that differ from chunk to chunk.
func image(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/1000)
	}
	return b
}

func TestObjectRoundTrip(t *testing.T) {
	data := image(300_000) // three chunks, the last one partial
	_, src := putObject(t, "f/0", data)
	ctx := context.Background()
	got, err := src.Object(ctx, "f/0")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("Object: %d bytes, different; want the %d stored", len(got), len(data))
	}
	r, size, err := src.OpenObject(ctx, "f/0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if size != int64(len(data)) {
		t.Errorf("size = %d; want %d", size, len(data))
	}
	// Reads of one byte at a time, and the reader's own checks at the end.
	if err := iotest.TestReader(iotest.OneByteReader(r), data); err != nil {
		t.Fatal(err)
	}
}

func TestObjectMissing(t *testing.T) {
	_, src := putObject(t, "f/0", image(10))
	_, err := src.Object(context.Background(), "f/1")
	if !errors.Is(err, replay.ErrObjectGone) {
		t.Fatalf("got %v; want ErrObjectGone", err)
	}
}

// A chunk removed after the metadata was read (the object aged out
// meanwhile) ends the read with ErrObjectGone, never a short image.
func TestObjectChunkGone(t *testing.T) {
	js, src := putObject(t, "f/0", image(300_000))
	ctx := context.Background()
	r, _, err := src.OpenObject(ctx, "f/0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	st, err := js.Stream(ctx, stream.BucketStream("OUTPUTS_LARGE"))
	if err != nil {
		t.Fatal(err)
	}
	// Sequences 1..3 are the chunks, 4 the metadata.
	if err := st.DeleteMsg(ctx, 2); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r)
	if !errors.Is(err, replay.ErrObjectGone) {
		t.Fatalf("read %d bytes, then %v; want ErrObjectGone", n, err)
	}
}

// Chunks that do not match the metadata's digest are an error.
func TestObjectDigestMismatch(t *testing.T) {
	js, src := putObject(t, "f/0", image(1000))
	ctx := context.Background()
	subj := "$O.OUTPUTS_LARGE.M." + base64.URLEncoding.EncodeToString([]byte("f/0"))
	st, err := js.Stream(ctx, stream.BucketStream("OUTPUTS_LARGE"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	if err := json.Unmarshal(m.Data, &meta); err != nil {
		t.Fatal(err)
	}
	sum := make([]byte, 32)
	meta["digest"] = "SHA-256=" + base64.URLEncoding.EncodeToString(sum)
	b, err := json.Marshal(meta)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(subj)
	msg.Data = b
	msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	_, err = src.Object(ctx, "f/0")
	if !errors.Is(err, jetstream.ErrDigestMismatch) {
		t.Fatalf("got %v; want ErrDigestMismatch", err)
	}
}
