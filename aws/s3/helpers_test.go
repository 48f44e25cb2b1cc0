package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"golang.org/x/sync/errgroup"

	"github.com/opendraas/draas"
	s3 "github.com/opendraas/draas/aws/s3"
)

const testBucket = "backups"

// clock is a settable clock shared by the fake S3 backend (object
// LastModified times) and the store (grace periods).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().UTC().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// counter is an http.RoundTripper that counts requests by method and by
// the kind of object they address.
type counter struct {
	next http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
	hdrs []http.Header // headers of PUT requests
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	kind := "other"
	switch p := r.URL.Path; {
	case strings.Contains(p, "/chunks/"):
		kind = "chunk"
	case strings.Contains(p, "/disks/"):
		kind = "manifest"
	case strings.HasSuffix(p, "/point.json"):
		kind = "point"
	case strings.HasSuffix(p, "/pending.json"):
		kind = "pending"
	}
	c.mu.Lock()
	c.n[r.Method+" "+kind]++
	if r.Method == http.MethodPut {
		c.hdrs = append(c.hdrs, r.Header.Clone())
	}
	c.mu.Unlock()
	return c.next.RoundTrip(r)
}

func (c *counter) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

func (c *counter) reset() {
	c.mu.Lock()
	c.n = make(map[string]int)
	c.hdrs = nil
	c.mu.Unlock()
}

// env is an in-process S3 (gofakes3 on loopback) with a bucket, a real SDK
// client and a request counter.
type env struct {
	mem    *s3mem.Backend
	clock  *clock
	count  *counter
	client *awss3.Client
}

func newEnv(t testing.TB) *env {
	t.Helper()
	c := newClock()
	mem := s3mem.New(s3mem.WithTimeSource(c))
	// Both the backend (listings) and the front end (Last-Modified headers)
	// keep time by the test's clock; request signatures are then not
	// checked against it.
	faker := gofakes3.New(mem, gofakes3.WithTimeSource(c), gofakes3.WithTimeSkewLimit(0))
	srv := httptest.NewUnstartedServer(faker.Server())
	// Tests that break responses off make gofakes3 complain; keep quiet.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	if err := mem.CreateBucket(testBucket); err != nil {
		t.Fatal(err)
	}
	cnt := &counter{next: http.DefaultTransport, n: make(map[string]int)}
	return &env{mem: mem, clock: c, count: cnt, client: newClient(srv.URL, cnt)}
}

func newClient(url string, rt http.RoundTripper) *awss3.Client {
	return awss3.New(awss3.Options{
		BaseEndpoint: aws.String(url),
		UsePathStyle: true,
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		HTTPClient:   &http.Client{Transport: rt},
	})
}

// store returns a store on the env's bucket whose clock is the backend's.
func (e *env) store(prefix string, opts s3.Options) *s3.Store {
	if opts.Clock == nil {
		opts.Clock = e.clock.Now
	}
	return s3.New(e.client, testBucket, prefix, opts)
}

// keys lists the keys under prefix in the backend.
func (e *env) keys(t testing.TB, prefix string) []string {
	t.Helper()
	p := gofakes3.NewPrefix(&prefix, nil)
	list, err := e.mem.ListBucket(testBucket, &p, gofakes3.ListBucketPage{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range list.Contents {
		out = append(out, c.Key)
	}
	return out
}

// lastModified returns an object's LastModified time in the backend.
func (e *env) lastModified(t testing.TB, key string) time.Time {
	t.Helper()
	p := gofakes3.NewPrefix(&key, nil)
	list, err := e.mem.ListBucket(testBucket, &p, gofakes3.ListBucketPage{})
	if err != nil || len(list.Contents) == 0 {
		t.Fatalf("%s: %v", key, err)
	}
	return list.Contents[0].LastModified.Time
}

// object returns an object's bytes straight from the backend.
func (e *env) object(t testing.TB, key string) []byte {
	t.Helper()
	obj, err := e.mem.GetObject(testBucket, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Contents.Close()
	b, err := io.ReadAll(obj.Contents)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putRaw writes an object straight into the backend.
func (e *env) putRaw(t testing.TB, key string, data []byte) {
	t.Helper()
	if _, err := e.mem.PutObject(testBucket, key, map[string]string{"Last-Modified": e.clock.Now().Format(http.TimeFormat)}, bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
}

func (e *env) deleteRaw(t testing.TB, key string) {
	t.Helper()
	if _, err := e.mem.DeleteObject(testBucket, key); err != nil {
		t.Fatal(err)
	}
}

func chunkKey(prefix string, sum [32]byte) string {
	h := hexSum(sum)
	if prefix != "" {
		prefix += "/"
	}
	return prefix + "chunks/" + h[:2] + "/" + h
}

func hexSum(sum [32]byte) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 64)
	for i, c := range sum {
		b[2*i], b[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(b)
}

// makeDisk returns size bytes: blocks of random data, blocks half random
// and half zeros (sparse), all-zero blocks, and compressible text blocks,
// cycling by block index.
func makeDisk(seed uint64, size int64) []byte {
	rng := rand.New(rand.NewPCG(seed, 99))
	p := make([]byte, size)
	for i := int64(0); i*s3.BlockSize < size; i++ {
		blk := p[i*s3.BlockSize : min((i+1)*s3.BlockSize, size)]
		switch i % 4 {
		case 0:
			fillRandom(rng, blk)
		case 1:
			fillRandom(rng, blk[:len(blk)/2])
		case 2:
			// zeros
		case 3:
			for j := range blk {
				blk[j] = "draas backup store "[j%19]
			}
			blk[0] = byte(i) // unique per block
		}
	}
	return p
}

func fillRandom(rng *rand.Rand, p []byte) {
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, rng.Uint64())
		p = p[8:]
	}
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
}

// block returns block i of content as a draas.Block.
func block(content []byte, i int64) draas.Block {
	off := i * s3.BlockSize
	data := content[off:min(off+s3.BlockSize, int64(len(content)))]
	return draas.Block{Index: i, Offset: off, Data: data, Checksum: sha256.Sum256(data)}
}

func nblocks(size int64) int64 { return (size + s3.BlockSize - 1) / s3.BlockSize }

// writeBlocks writes the given blocks of content (all when idx is nil)
// with four writers, as a copier would, zero blocks included.
func writeBlocks(ctx context.Context, sink draas.VolumeSink, content []byte, idx []int64) error {
	if idx == nil {
		for i := range nblocks(int64(len(content))) {
			idx = append(idx, i)
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, i := range idx {
		g.Go(func() error { return sink.WriteBlock(ctx, block(content, i)) })
	}
	return g.Wait()
}

// backup writes one point of vm with the given disks' contents and commits
// it.
func backup(t testing.TB, st *s3.Store, vm string, at time.Time, disks map[string][]byte) *s3.PointWriter {
	t.Helper()
	ctx := context.Background()
	var ds []draas.Disk
	for _, name := range sortedKeys(disks) {
		ds = append(ds, draas.Disk{Name: name, Size: int64(len(disks[name]))})
	}
	w, err := pointWriter(st.BeginPoint(ctx, vm, ds, at))
	if err != nil {
		t.Fatalf("BeginPoint: %v", err)
	}
	for _, d := range ds {
		sink, err := w.Disk(d.Name)
		if err != nil {
			t.Fatalf("Disk(%s): %v", d.Name, err)
		}
		if err := writeBlocks(ctx, sink, disks[d.Name], nil); err != nil {
			t.Fatalf("WriteBlock: %v", err)
		}
		if err := sink.Commit(ctx); err != nil {
			t.Fatalf("Commit disk %s: %v", d.Name, err)
		}
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit point: %v", err)
	}
	return w
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// readAll reads a whole source with ReadAt.
func readAll(t testing.TB, src draas.BlockSource) []byte {
	t.Helper()
	p := make([]byte, src.Size())
	n, err := src.ReadAt(context.Background(), p, 0)
	if err != nil && err != io.EOF || n != len(p) {
		t.Fatalf("ReadAt: %d bytes, %v", n, err)
	}
	return p
}

// pointWriter returns the *s3.PointWriter behind Store.BeginPoint's
// draas.PointWriter, for the tests that use its own methods.
func pointWriter(w draas.PointWriter, err error) (*s3.PointWriter, error) {
	if err != nil {
		return nil, err
	}
	return w.(*s3.PointWriter), nil
}

// source returns the *s3.Source behind Store.OpenDisk's draas.BlockSource.
func source(src draas.BlockSource, err error) (*s3.Source, error) {
	if err != nil {
		return nil, err
	}
	return src.(*s3.Source), nil
}
