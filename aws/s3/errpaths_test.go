package s3_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/opendraas/draas"
	s3 "github.com/opendraas/draas/aws/s3"
)

// TestChunkFailingClientChecksum reads a chunk whose bytes no longer match
// the checksum S3 keeps for it, so that the S3 client's own validation
// (on by default in clients made by config.LoadDefaultConfig) fails before
// the store's SHA-256 check. (gofakes3 keeps the replaced object's CRC32
// when an object is overwritten without one, which is how the object gets
// here.) The read must fail at once, not be retried as a broken download,
// with draas.ErrChecksumMismatch and an error naming the VM, point, disk,
// block and object key.
func TestChunkFailingClientChecksum(t *testing.T) {
	e := newEnv(t)
	opts := e.client.Options()
	opts.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenSupported
	opts.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenSupported
	st := s3.New(awss3.New(opts), testBucket, "pfx", s3.Options{Clock: e.clock.Now})

	content := makeDisk(11, 2*s3.BlockSize)
	w := backup(t, st, "web-7", time.Time{}, map[string][]byte{"disk-9": content})
	src, err := st.OpenDisk(context.Background(), "web-7", w.ID(), "disk-9")
	if err != nil {
		t.Fatal(err)
	}
	key := chunkKey("pfx", block(content, 0).Checksum)
	obj := e.object(t, key)
	obj[len(obj)/2] ^= 1
	e.putRaw(t, key, obj)

	e.count.reset()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err = src.ReadAt(ctx, make([]byte, 10), 20)
	if !errors.Is(err, draas.ErrChecksumMismatch) {
		t.Fatalf("ReadAt of a chunk failing the client's checksum: %v, want ErrChecksumMismatch", err)
	}
	if draas.IsRetryable(err) {
		t.Errorf("a checksum mismatch is retryable: %v", err)
	}
	for _, s := range []string{"web-7", w.ID(), "disk-9", "block 0", key} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
	if n := e.count.get("GET chunk"); n != 1 {
		t.Errorf("the chunk was downloaded %d times, want once", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the read took %v", d)
	}

	// An intact chunk still reads through the validating client.
	if _, err := src.ReadAt(ctx, make([]byte, 10), s3.BlockSize); err != nil {
		t.Errorf("ReadAt of an intact chunk: %v", err)
	}
}

// TestNoBucket checks that a store on a bucket that does not exist says so
// ("no bucket NAME"), rather than looking like an empty store or a missing
// object, on reads and on writes.
func TestNoBucket(t *testing.T) {
	e := newEnv(t)
	st := s3.New(e.client, "nosuch", "draas", s3.Options{Clock: e.clock.Now})
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		var ae smithy.APIError
		if !errors.Is(err, draas.ErrNotFound) || !errors.As(err, &ae) || ae.ErrorCode() != "NoSuchBucket" || !strings.Contains(fmt.Sprint(err), "no bucket nosuch") {
			t.Errorf("%s on a missing bucket: %v, want ErrNotFound saying \"no bucket nosuch\"", what, err)
		}
	}
	_, err := st.Points(ctx, "db")
	check("Points", err)
	_, err = st.Latest(ctx, "db")
	check("Latest", err)
	_, err = st.VMs(ctx)
	check("VMs", err)
	_, err = st.OpenDisk(ctx, "db", "20200101T000000Z-00000000", "os")
	check("OpenDisk", err)
	if w, err := pointWriter(st.BeginPoint(ctx, "db", []draas.Disk{{Name: "os", Size: 4 * s3.BlockSize}}, time.Time{})); err != nil {
		check("BeginPoint", err)
	} else {
		sink, err := w.Disk("os")
		if err != nil {
			t.Fatal(err)
		}
		err = writeBlocks(ctx, sink, makeDisk(3, 4*s3.BlockSize), nil)
		if err == nil {
			err = sink.Commit(ctx)
		}
		check("WriteBlock or Commit", err)
	}
}
