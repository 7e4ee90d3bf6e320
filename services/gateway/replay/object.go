package replay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/framecast/framecast/shared/stream"
)

// ErrObjectGone is wrapped when a frame's object, or the whole bucket, no
// longer exists: it aged out of the window or was deleted.
var ErrObjectGone = errors.New("object gone")

// OpenObject starts reading the object name from the bucket. The reader
// yields its bytes chunk by chunk, then io.EOF once they match the stored
// size and digest (an error otherwise); size is the object's size. ctx
// bounds the whole read; close the reader when done.
//
// Every read is answered by the bucket stream's leader (its AllowDirect is
// off, see stream.EnsureObjects): the object's metadata by a message get,
// and each chunk by a message get for the next message on the object's
// chunk subject. The nats.go Object Store reads chunks through an
// ephemeral consumer instead, which JetStream places on any replica; one
// that has not yet applied the object's last chunks ends the read early
// (the digest then fails) for an object the leader has acknowledged.
func (s Source) OpenObject(ctx context.Context, name string) (r io.ReadCloser, size int64, err error) {
	bucket := s.bucket()
	st, err := s.JS.Stream(ctx, stream.BucketStream(bucket))
	if err != nil {
		return nil, 0, objectError(bucket, name, err)
	}
	// The metadata message, as the Object Store names and encodes it
	// (ADR-20): one stream lookup serves the metadata and the chunks.
	m, err := st.GetLastMsgForSubject(ctx, "$O."+bucket+".M."+base64.URLEncoding.EncodeToString([]byte(name)))
	if err != nil {
		return nil, 0, objectError(bucket, name, err)
	}
	var info jetstream.ObjectInfo
	if err := json.Unmarshal(m.Data, &info); err != nil {
		return nil, 0, fmt.Errorf("object %s/%s: metadata: %w", bucket, name, err)
	}
	switch {
	case info.Deleted:
		return nil, 0, fmt.Errorf("%w: %s/%s: deleted", ErrObjectGone, bucket, name)
	case info.Opts != nil && info.Opts.Link != nil:
		return nil, 0, fmt.Errorf("object %s/%s is a link; frames never refer to links", bucket, name)
	}
	digest, err := jetstream.DecodeObjectDigest(info.Digest)
	if err != nil {
		return nil, 0, fmt.Errorf("object %s/%s: digest %q: %w", bucket, name, info.Digest, err)
	}
	return &chunkReader{
		ctx: ctx, st: st, bucket: bucket, name: name,
		subject: "$O." + bucket + ".C." + info.NUID,
		chunks:  info.Chunks, size: info.Size, next: 1, want: digest, sum: sha256.New(),
	}, int64(info.Size), nil
}

// Object reads the whole object name from the bucket.
func (s Source) Object(ctx context.Context, name string) ([]byte, error) {
	r, size, err := s.OpenObject(ctx, name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read object %s/%s: %w", s.bucket(), name, err)
	}
	// The size and digest are checked when the reader reaches its end.
	var one [1]byte
	switch n, err := r.Read(one[:]); {
	case n != 0:
		return nil, fmt.Errorf("read object %s/%s: more than its %d bytes", s.bucket(), name, size)
	case !errors.Is(err, io.EOF):
		return nil, fmt.Errorf("read object %s/%s: %w", s.bucket(), name, err)
	}
	return b, nil
}

// chunkReader reads an object's chunks in order, one message get each.
type chunkReader struct {
	ctx          context.Context
	st           jetstream.Stream
	bucket, name string
	subject      string // the object's chunk subject
	chunks       uint32 // chunks not yet fetched
	size, read   uint64
	next         uint64 // the stream sequence to look from for the next chunk
	buf          []byte // what is left of the current chunk
	want         []byte // SHA-256 of the whole object
	sum          hash.Hash
	err          error // sticky
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for len(r.buf) == 0 {
		if r.chunks == 0 {
			r.err = r.verify()
			return 0, r.err
		}
		m, err := r.st.GetMsg(r.ctx, r.next, jetstream.WithGetMsgSubject(r.subject))
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				err = fmt.Errorf("%w: %s/%s: chunk missing after %d of %d bytes", ErrObjectGone, r.bucket, r.name, r.read, r.size)
			}
			r.err = fmt.Errorf("object %s/%s: %w", r.bucket, r.name, err)
			return 0, r.err
		}
		r.chunks--
		r.next = m.Sequence + 1
		r.read += uint64(len(m.Data))
		r.sum.Write(m.Data)
		r.buf = m.Data
		if r.read > r.size {
			r.err = fmt.Errorf("object %s/%s: chunks hold more than its %d bytes", r.bucket, r.name, r.size)
			return 0, r.err
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// verify checks the object read whole against its metadata.
func (r *chunkReader) verify() error {
	if r.read != r.size {
		return fmt.Errorf("object %s/%s: read %d bytes; its metadata says %d", r.bucket, r.name, r.read, r.size)
	}
	if !bytes.Equal(r.sum.Sum(nil), r.want) {
		return fmt.Errorf("object %s/%s: %w", r.bucket, r.name, jetstream.ErrDigestMismatch)
	}
	return io.EOF
}

// Close ends the read; the reader holds nothing to release.
func (r *chunkReader) Close() error { return nil }

func objectError(bucket, name string, err error) error {
	if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("%w: %s/%s: %v", ErrObjectGone, bucket, name, err)
	}
	return fmt.Errorf("object %s/%s: %w", bucket, name, err)
}
