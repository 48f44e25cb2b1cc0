package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

func TestParseFault(t *testing.T) {
	for _, c := range []struct {
		kind, in string
		want     fault
	}{
		{"throttle", "*=0.2", fault{kind: "throttle", op: "*", frac: 0.2}},
		{"throttle", "RunInstances=50%", fault{kind: "throttle", op: "RunInstances", frac: 0.5}},
		{"throttle", " GetObject = 1 ", fault{kind: "throttle", op: "GetObject", frac: 1}},
		{"latency", "PutSnapshotBlock=50ms", fault{kind: "latency", op: "PutSnapshotBlock", d: 50 * time.Millisecond}},
		{"fail-nth", "RunInstances=2", fault{kind: "fail-nth", op: "RunInstances", n: 2}},
		{"throttle-nth", "*=1", fault{kind: "throttle-nth", op: "*", n: 1}},
	} {
		got, err := parseFault(c.kind, c.in)
		if err != nil || got != c.want {
			t.Errorf("parseFault(%s, %q) = %+v, %v; want %+v", c.kind, c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ kind, in, why string }{
		{"throttle", "RunInstances", "OP=VALUE"},
		{"throttle", "=0.5", "OP=VALUE"},
		{"throttle", "RunInstances=1.5", "between 0 and 1"},
		{"throttle", "RunInstances=-0.1", "between 0 and 1"},
		{"throttle", "Run Instances=0.1", "not an operation name"},
		{"latency", "RunInstances=50", "duration"},
		{"latency", "RunInstances=-1s", "duration"},
		{"fail-nth", "RunInstances=0", "1 or more"},
		{"throttle-nth", "RunInstances=x", "1 or more"},
	} {
		if _, err := parseFault(c.kind, c.in); err == nil || !strings.Contains(err.Error(), c.why) {
			t.Errorf("parseFault(%s, %q): %v, want an error saying %q", c.kind, c.in, err, c.why)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"--throttle", "RunInstances=2"}, 2},
		{[]string{"--latency", "x"}, 2},
		{[]string{"--fail-nth", "*=0"}, 2},
		{[]string{"extra"}, 2},
		{[]string{"--bucket", "x"}, 1}, // too short for S3: the simulator refuses it
		{[]string{"--qemu", "--qemu-ports", "22,http"}, 2},
		{[]string{"--volume-dir", "/nonexistent/awssim-volumes"}, 1},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), c.args, &stdout, &stderr); code != c.code {
			t.Errorf("awssim %q: exit %d, want %d; stderr %s", c.args, code, c.code, &stderr)
		}
		if stderr.Len() == 0 {
			t.Errorf("awssim %q: says nothing on stderr", c.args)
		}
	}
}

// TestFlagsTakeEffect runs the command with buckets and faults and checks
// each through the AWS SDK.
func TestFlagsTakeEffect(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int)
	envFile := filepath.Join(t.TempDir(), "awssim.env")
	go func() {
		done <- run(ctx, []string{
			"--env-file", envFile,
			"--bucket", "backups", "--bucket", "other",
			"--fail-nth", "DescribeVpcs=2",
			"--throttle", "PutObject=1",
			"--throttle-nth", "ListObjectsV2=1",
			"--latency", "DescribeSubnets=150ms",
			"--ebs-quotas",
		}, pw, io.Discard)
		pw.Close()
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("exit %d", code)
		}
	}()
	lines := bufio.NewScanner(pr)
	var out []string
	for lines.Scan() {
		out = append(out, lines.Text())
		if lines.Text() == "Serving until interrupted." {
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if len(out) < 2 || !strings.HasPrefix(out[0], "http://127.0.0.1:") || !strings.HasPrefix(out[1], "s3 http://127.0.0.1:") {
		t.Fatalf("output starts %q, want the endpoints", out)
	}
	if env, err := os.ReadFile(envFile); err != nil || !strings.Contains(string(env), "AWSSIM_S3_ENDPOINT="+strings.TrimPrefix(out[1], "s3 ")+"\n") {
		t.Errorf("--env-file: %q, %v", env, err)
	}
	text := strings.Join(out, "\n")
	for _, want := range []string{"Buckets: backups, other", "fail call 2 of DescribeVpcs", "throttle 1 of PutObject", "throttle call 1 of ListObjectsV2", "add 150ms to DescribeSubnets", "EBS direct API quotas enforced"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}

	cfg := aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(out[0]), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")}
	ec2c := ec2.NewFromConfig(cfg)
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(strings.TrimPrefix(out[1], "s3 "))
		o.UsePathStyle = true
	})

	if _, err := ec2c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); err != nil {
		t.Errorf("1st DescribeVpcs: %v", err)
	}
	_, err := ec2c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	wantStatus(t, "2nd DescribeVpcs", err, http.StatusInternalServerError)
	if _, err := ec2c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); err != nil {
		t.Errorf("3rd DescribeVpcs: %v", err)
	}

	start := time.Now()
	if _, err := ec2c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{}); err != nil {
		t.Errorf("DescribeSubnets: %v", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("DescribeSubnets took %v, want at least the 150ms latency", d)
	}

	_, err = s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("backups")})
	wantCode(t, "1st ListObjectsV2", err, "SlowDown")
	if _, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("other")}); err != nil {
		t.Errorf("2nd ListObjectsV2, of a --bucket: %v", err)
	}
	_, err = s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("nosuch")})
	wantCode(t, "ListObjectsV2 of a bucket not created", err, "NoSuchBucket")
	_, err = s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("backups"), Key: aws.String("k"), Body: strings.NewReader("x")})
	wantCode(t, "PutObject", err, "SlowDown")
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code {
		t.Errorf("%s: %v, want %s", what, err, code)
	}
}

func wantStatus(t *testing.T, what string, err error, status int) {
	t.Helper()
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != status {
		t.Errorf("%s: %v, want HTTP %d", what, err, status)
	}
}
