package s3_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/opendraas/draas"
	s3 "github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/retry"
)

// faulty answers chunk GETs with a canned failure while fail returns one.
type faulty struct {
	next http.RoundTripper
	mu   sync.Mutex
	fail func(r *http.Request) (status int, code string, truncate bool)
	gets int
}

func (f *faulty) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/chunks/") {
		return f.next.RoundTrip(r)
	}
	f.mu.Lock()
	f.gets++
	status, code, truncate := f.fail(r)
	f.mu.Unlock()
	if status != 0 {
		body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + code + `</Code><Message>injected</Message></Error>`
		return &http.Response{
			StatusCode: status, Status: http.StatusText(status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"application/xml"}}, Body: io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)), Request: r,
		}, nil
	}
	resp, err := f.next.RoundTrip(r)
	if err == nil && truncate {
		resp.Body = &brokenBody{rc: resp.Body, left: 1000}
	}
	return resp, err
}

// brokenBody breaks off after left bytes, as a reset connection does.
type brokenBody struct {
	rc   io.ReadCloser
	left int
}

func (b *brokenBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	p = p[:min(len(p), b.left)]
	n, err := b.rc.Read(p)
	b.left -= n
	return n, err
}

func (b *brokenBody) Close() error { return b.rc.Close() }

func TestErrorMapping(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	content := makeDisk(30, 2*s3.BlockSize)
	w := backup(t, e.store("", s3.Options{}), "vm", time.Time{}, map[string][]byte{"d": content})

	f := &faulty{next: http.DefaultTransport}
	client := awss3.New(awss3.Options{
		BaseEndpoint: e.client.Options().BaseEndpoint, UsePathStyle: true, Region: "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		HTTPClient:       &http.Client{Transport: f},
		RetryMaxAttempts: 1, // let the store see the first failure
	})
	noSleep := func(context.Context, time.Duration) error { return nil }
	st := s3.New(client, testBucket, "", s3.Options{Clock: e.clock.Now, Retry: retry.Policy{Sleep: noSleep}})
	src, err := st.OpenDisk(ctx, "vm", w.ID(), "d")
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 100)

	for _, c := range []struct {
		status int
		code   string
		want   error
	}{
		{503, "SlowDown", draas.ErrThrottled},
		{500, "InternalError", draas.ErrTransient},
		{404, "NoSuchKey", draas.ErrNotFound},
	} {
		f.fail = func(*http.Request) (int, string, bool) { return c.status, c.code, false }
		_, err := src.ReadAt(ctx, p, 0)
		if !errors.Is(err, c.want) {
			t.Errorf("%d %s: %v, want %v", c.status, c.code, err, c.want)
		}
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != c.code {
			t.Errorf("%d %s: errors.As does not reach the SDK error with its code: %v", c.status, c.code, err)
		}
		if !strings.Contains(err.Error(), "vm vm point "+w.ID()+" disk d block 0") {
			t.Errorf("%d %s: error does not name the block: %v", c.status, c.code, err)
		}
		if got, want := draas.IsRetryable(err), c.want != draas.ErrNotFound; got != want {
			t.Errorf("%d %s: IsRetryable = %t", c.status, c.code, got)
		}
	}

	// A body that breaks off is retried by the store, once here.
	f.gets = 0
	first := true
	f.fail = func(*http.Request) (int, string, bool) {
		trunc := first
		first = false
		return 0, "", trunc
	}
	if _, err := src.ReadAt(ctx, p, 0); err != nil {
		t.Fatalf("ReadAt after a broken body: %v", err)
	}
	if f.gets != 2 {
		t.Errorf("%d GETs, want 2 (one broken, one retried)", f.gets)
	}
	// Broken every time: a transient error after the policy's attempts.
	f.gets = 0
	f.fail = func(*http.Request) (int, string, bool) { return 0, "", true }
	st3 := s3.New(client, testBucket, "", s3.Options{Retry: retry.Policy{MaxAttempts: 3, Sleep: noSleep}})
	src3, err := st3.OpenDisk(ctx, "vm", w.ID(), "d")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src3.ReadAt(ctx, p, 0); !errors.Is(err, draas.ErrTransient) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ReadAt with a body always broken: %v, want ErrTransient wrapping io.ErrUnexpectedEOF", err)
	}
	if f.gets != 3 {
		t.Errorf("%d GETs, want 3", f.gets)
	}
}
