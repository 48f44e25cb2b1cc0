package awssim_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	oracles "github.com/opendraas/draas/internal/oracle"
)

// startExample builds examples/awssim, runs it and returns the endpoint URL
// it prints first. The process is interrupted when the test ends.
func startExample(t *testing.T, ctx context.Context) string {
	t.Helper()
	goBin := oracles.Require(t, "go", "install Go from https://go.dev/dl/")
	bin := filepath.Join(t.TempDir(), "awssim")
	build := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/opendraas/draas/examples/awssim")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build examples/awssim: %s", out)

	cmd := exec.Command(bin) // not bound to ctx: the cleanup stops it, and checks it exits cleanly
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			assert.NoError(t, err, "awssim should exit cleanly on SIGINT")
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Error("awssim did not exit on SIGINT")
		}
		pw.Close()
	})

	lines := bufio.NewScanner(pr)
	require.True(t, lines.Scan(), "awssim printed nothing")
	url := lines.Text()
	require.Regexp(t, `^http://127\.0\.0\.1:\d+$`, url, "the first line is the endpoint")
	go io.Copy(io.Discard, pr) // the hint that follows
	return url
}

// TestEBSAWSCLI drives the served simulator with the aws CLI, a client
// nobody here wrote: start, put, complete, list and get.
func TestEBSAWSCLI(t *testing.T) {
	t.Parallel()
	awsBin := oracles.Require(t, "aws", "install the aws CLI (pip install awscli)")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := startExample(t, ctx)
	dir := t.TempDir()

	env := []string{
		"AWS_ACCESS_KEY_ID=AKID", "AWS_SECRET_ACCESS_KEY=SECRET", "AWS_DEFAULT_REGION=us-east-1",
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER=",
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	run := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, awsBin, append([]string{"--endpoint-url", url, "--output", "json", "ebs"}, args...)...)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return out, &cliError{err, stderr.String()}
		}
		return out, nil
	}
	awsJSON := func(v any, args ...string) {
		t.Helper()
		out, err := run(args...)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(out, v), "output: %s", out)
	}

	var started struct{ SnapshotId, Status string }
	awsJSON(&started, "start-snapshot", "--volume-size", "1", "--timeout", "60",
		"--description", "from the aws CLI", "--tags", "Key=vm,Value=db-1")
	require.Equal(t, "pending", started.Status)
	id := started.SnapshotId

	blocks := map[int][]byte{0: pattern(1), 9: pattern(2)}
	for idx, data := range blocks {
		path := filepath.Join(dir, "block"+strconv.Itoa(idx))
		require.NoError(t, os.WriteFile(path, data, 0o600))
		var put struct{ Checksum, ChecksumAlgorithm string }
		awsJSON(&put, "put-snapshot-block", "--snapshot-id", id, "--block-index", strconv.Itoa(idx),
			"--block-data", path, "--data-length", strconv.Itoa(blockSize),
			"--checksum", checksum(data), "--checksum-algorithm", "SHA256")
		assert.Equal(t, checksum(data), put.Checksum)
		assert.Equal(t, "SHA256", put.ChecksumAlgorithm)
	}
	_, err := run("put-snapshot-block", "--snapshot-id", id, "--block-index", "3",
		"--block-data", filepath.Join(dir, "block0"), "--data-length", strconv.Itoa(blockSize),
		"--checksum", checksum(blocks[9]), "--checksum-algorithm", "SHA256")
	require.Error(t, err, "a wrong checksum is refused")
	assert.Contains(t, err.Error(), "(ValidationException)")

	var completed struct{ Status string }
	awsJSON(&completed, "complete-snapshot", "--snapshot-id", id, "--changed-blocks-count", "2",
		"--checksum", linear(blocks[0], blocks[9]), "--checksum-algorithm", "SHA256",
		"--checksum-aggregation-method", "LINEAR")
	require.Equal(t, "completed", completed.Status)

	var listed struct {
		Blocks []struct {
			BlockIndex int
			BlockToken string
		}
		VolumeSize int
		BlockSize  int
	}
	awsJSON(&listed, "list-snapshot-blocks", "--snapshot-id", id)
	require.Len(t, listed.Blocks, 2)
	assert.Equal(t, 0, listed.Blocks[0].BlockIndex)
	assert.Equal(t, 9, listed.Blocks[1].BlockIndex)
	assert.Equal(t, 1, listed.VolumeSize)
	assert.Equal(t, blockSize, listed.BlockSize)

	outFile := filepath.Join(dir, "got")
	var got struct {
		DataLength int
		Checksum   string
	}
	awsJSON(&got, "get-snapshot-block", "--snapshot-id", id, "--block-index", "9",
		"--block-token", listed.Blocks[1].BlockToken, outFile)
	assert.Equal(t, blockSize, got.DataLength)
	assert.Equal(t, checksum(blocks[9]), got.Checksum)
	data, err := os.ReadFile(outFile)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(blocks[9], data), "block 9 read back through the aws CLI")
}

type cliError struct {
	err    error
	stderr string
}

func (e *cliError) Error() string { return e.err.Error() + ": " + e.stderr }
