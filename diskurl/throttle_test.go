package diskurl_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/opendraas/draas/aws/account"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/diskurl"
)

// TestEBSSizeTagThrottled reads a snapshot whose draas:size tag lookup AWS
// throttles: a few throttled requests are retried and the source ends at
// the disk's size; a lookup still throttled at the context's deadline fails
// the open, rather than reading the whole snapshot (a different disk).
func TestEBSSizeTagThrottled(t *testing.T) {
	srv, err := awssim.New(awssim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var notes []string
	r := diskurl.New(diskurl.Options{
		AWSConfig: func(context.Context) (aws.Config, error) {
			cfg := srv.Config()
			// The account's retryer, with a short backoff for the test.
			cfg.Retryer = func() aws.Retryer { return account.NewRetryer(account.RetryOptions{MaxBackoff: 5 * time.Millisecond}) }
			return cfg, nil
		},
		S3Options: []func(*awss3.Options){srv.S3Options},
		Notice:    func(m string) { notes = append(notes, m) },
	})
	src := filepath.Join(t.TempDir(), "disk.raw")
	const size = 1<<20 + 4096
	writeDisk(t, src, size, 3)
	snap := copyURL(t, r, src, "ebs://new", diskurl.SinkOptions{})

	// More throttled attempts than the SDK's default of three.
	for i := 1; i <= 5; i++ {
		srv.ThrottleNth("DescribeSnapshots", i)
	}
	s, err := r.Open(t.Context(), snap)
	if err != nil {
		t.Fatalf("open %s with its size tag throttled 5 times: %v", snap, err)
	}
	if s.Size() != size {
		t.Errorf("size = %d, want the tagged %d, not the snapshot's whole GiB", s.Size(), size)
	}
	s.Close()

	srv.Throttle("DescribeSnapshots", 1)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	s, err = r.Open(ctx, snap)
	if err == nil {
		s.Close()
		t.Fatalf("open %s with its size tag throttled until the deadline: size %d and no error, want an error", snap, s.Size())
	}
	for _, want := range []string{"draas:size", "RequestLimitExceeded"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if len(notes) != 0 {
		t.Errorf("notices: %q", notes)
	}
}
