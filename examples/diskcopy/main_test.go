package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/internal/oracle"
)

// TestCommand builds the diskcopy binary once and runs it as a user would.
func TestCommand(t *testing.T) {
	bin := buildDiskcopy(t)

	t.Run("file URLs", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "disk.raw")
		dst := filepath.Join(dir, "copy.raw")
		writeSparseDisk(t, src, 8<<20+4097, 1)
		res := runCmd(t, bin, "file://"+src, "file://"+dst)
		res.wantExit(t, exitOK)
		assertSameFile(t, src, dst)
		if !strings.Contains(res.stderr, "copied ") || res.stdout != "" {
			t.Errorf("want a one-line summary on stderr and nothing on stdout; got stdout %q stderr %q", res.stdout, res.stderr)
		}
		if _, err := os.Stat(dst + ".draas-partial"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("partial output left behind after a committed copy: %v", err)
		}
	})

	t.Run("vmdk round trip", func(t *testing.T) {
		q, haveQemu := oracle.Optional(t, "qemu-img", "the VMDK is checked by our reader only (apt-get install qemu-utils)")
		dir := t.TempDir()
		src := filepath.Join(dir, "disk.raw")
		writeSparseDisk(t, src, 8<<20+4096, 5)
		for _, sub := range []string{"streamOptimized", "monolithicSparse", "monolithicFlat"} {
			img := filepath.Join(dir, sub+".vmdk")
			back := filepath.Join(dir, sub+".raw")
			runCmd(t, bin, "--verify", "file://"+src, "vmdk://"+img+"?subformat="+sub).wantExit(t, exitOK)
			runCmd(t, bin, "vmdk://"+img, "file://"+back).wantExit(t, exitOK)
			assertSameFile(t, src, back)
			if haveQemu {
				if out, err := exec.Command(q, "compare", "-f", "raw", "-F", "vmdk", src, img).CombinedOutput(); err != nil {
					t.Errorf("qemu-img compare %s: %v\n%s", sub, err, out)
				}
			}
		}
	})

	t.Run("bare paths, json, verify", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "disk.raw")
		dst := filepath.Join(dir, "copy.raw")
		size := int64(16 << 20)
		writeSparseDisk(t, src, size, 2)
		res := runCmd(t, bin, "--json", "--verify", "--quiet", "--concurrency", "4", src, dst)
		res.wantExit(t, exitOK)
		assertSameFile(t, src, dst)
		var st blockcopy.Stats
		if err := json.Unmarshal([]byte(res.stdout), &st); err != nil {
			t.Fatalf("--json printed no valid JSON: %v\n%s", err, res.stdout)
		}
		if st.Size != size || !st.Verified || st.BytesCopied == 0 || st.BytesZero == 0 {
			t.Errorf("stats = %+v; want size %d, verified, some bytes copied and some zero", st, size)
		}
		if res.stderr != "" {
			t.Errorf("--quiet printed %q on stderr", res.stderr)
		}
	})

	t.Run("existing sink needs --overwrite", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "disk.raw")
		dst := filepath.Join(dir, "copy.raw")
		writeSparseDisk(t, src, 2<<20, 3)
		if err := os.WriteFile(dst, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		res := runCmd(t, bin, src, dst)
		res.wantExit(t, exitFailed)
		res.wantStderr(t, "--overwrite")
		runCmd(t, bin, "--overwrite", src, dst).wantExit(t, exitOK)
		assertSameFile(t, src, dst)
	})

	t.Run("missing source", func(t *testing.T) {
		dir := t.TempDir()
		res := runCmd(t, bin, filepath.Join(dir, "nope.raw"), filepath.Join(dir, "out.raw"))
		res.wantExit(t, exitFailed)
		res.wantStderr(t, "nope.raw")
	})

	t.Run("usage errors", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "disk.raw")
		writeSparseDisk(t, src, 1<<20, 4)
		out := filepath.Join(dir, "out.raw")
		for _, tc := range []struct {
			name string
			args []string
			want []string
		}{
			{"unknown scheme", []string{"ftp://host/disk", out}, []string{`unknown scheme "ftp"`, "supported: file (file:///"}},
			{"vmdk subformat", []string{src, "vmdk:///tmp/disk.vmdk?subformat=twoGbMaxExtent"}, []string{"vmdk URL"}},
			{"vsphere password in URL", []string{src, "vsphere://root:secret@vc.example/db/disk-0"}, []string{"DRAAS_VSPHERE_PASSWORD"}},
			{"s3 sink with a point ID", []string{src, "s3://bucket/prefix/vm/20261126T061000Z-5f3a9c0e/disk"}, []string{"s3://bucket/prefix/vm/new/disk"}},
			{"s3 URL too short", []string{"s3://bucket/vm/disk", out}, []string{"s3://bucket/prefix/vm/point/disk"}},
			{"ebs sink onto a snapshot", []string{src, "ebs://snap-0123"}, []string{"ebs://new?parent=snap-0123"}},
			{"ebs source new", []string{"ebs://new", out}, []string{"to read one, name it"}},
			{"bad endpoint", []string{"--endpoint", "127.0.0.1:4566", src, out}, []string{"--endpoint", "http://127.0.0.1:4566"}},
			{"changed-since into a file", []string{"--changed-since", "snap-1", "ebs://snap-2", out}, []string{"ebs://new?parent="}},
			{"relative file URL", []string{"file://disk.raw", out}, []string{"three slashes"}},
			{"one argument", []string{src}, []string{"want SOURCE and SINK"}},
			{"flag after arguments", []string{src, out, "--verify"}, []string{"put flags first"}},
			{"bad rate", []string{"--rate", "fast", src, out}, []string{"100M"}},
			{"resume without checkpoint", []string{"--resume", src, out}, []string{"--resume needs --checkpoint"}},
			{"same disk", []string{src, "file://" + src}, []string{"same disk"}},
			{"unknown flag", []string{"--frobnicate", src, out}, []string{"frobnicate"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := runCmd(t, bin, tc.args...)
				res.wantExit(t, exitUsage)
				for _, w := range tc.want {
					res.wantStderr(t, w)
				}
			})
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a usage error created %s", out)
		}
	})

	t.Run("help", func(t *testing.T) {
		res := runCmd(t, bin, "-h")
		res.wantExit(t, exitOK)
		for _, w := range []string{"SOURCE SINK", "file:///abs/path/disk.raw", "s3://bucket/prefix/vm/point/disk", "ebs://new?parent=", "vmdk:///abs/path/disk.vmdk", "vsphere://", "-checkpoint FILE", "-endpoint URL", "-s3-endpoint URL"} {
			res.wantStderr(t, w)
		}
	})

	t.Run("interrupt and resume", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "disk.raw")
		dst := filepath.Join(dir, "copy.raw")
		ckpt := filepath.Join(dir, "copy.ckpt")
		writeSparseDisk(t, src, 32<<20, 5)

		// A slow copy, interrupted once its checkpoint records progress.
		cmd := exec.Command(bin, "--rate", "2M", "--checkpoint", ckpt, src, dst)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			if fi, err := os.Stat(ckpt); err == nil && fi.Size() > 0 {
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("no checkpoint %s after 20s; stderr: %s", ckpt, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Second) // let the copy get further than the first save
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitFailed {
			t.Fatalf("interrupted copy: %v, want exit %d; stderr: %s", err, exitFailed, stderr.String())
		}
		for _, w := range []string{"interrupted after", "To resume", "--resume", ckpt, dst + ".draas-partial"} {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("interrupt message lacks %q:\n%s", w, stderr.String())
			}
		}
		if _, err := os.Stat(dst + ".draas-partial"); err != nil {
			t.Fatalf("partial output gone after an interrupt with --checkpoint: %v", err)
		}

		// Starting over with the same checkpoint but no --resume is refused.
		runCmd(t, bin, "--checkpoint", ckpt, src, dst).wantExit(t, exitUsage)

		res := runCmd(t, bin, "--resume", "--checkpoint", ckpt, "--json", "--verify", src, dst)
		res.wantExit(t, exitOK)
		assertSameFile(t, src, dst)
		var st blockcopy.Stats
		if err := json.Unmarshal([]byte(res.stdout), &st); err != nil {
			t.Fatalf("--json: %v\n%s", err, res.stdout)
		}
		if st.BlocksResumed == 0 {
			t.Errorf("resumed copy skipped no block: %+v", st)
		}
		if _, err := os.Stat(ckpt); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("checkpoint left after a successful copy: %v", err)
		}
	})
}

// TestProgressBar runs the command in-process with a fake terminal.
func TestProgressBar(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.raw")
	writeSparseDisk(t, src, 4<<20, 6)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{src, filepath.Join(dir, "out.raw")}, &stdout, &stderr, true)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "copying") || !strings.Contains(stderr.String(), "copied ") {
		t.Errorf("want a progress bar and a summary on stderr, got %q", stderr.String())
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "4096": 4096, "100M": 100 << 20, "100MB": 100 << 20, "100MiB": 100 << 20,
		"1.5G": 3 << 29, "512k": 512 << 10, "2T": 2 << 40, " 7 ": 7,
	} {
		got, err := parseBytes(in)
		if err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "fast", "-1M", "10X", "1.2.3G", "1e30T"} {
		if got, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", in, got)
		}
	}
}

func TestResumeCommand(t *testing.T) {
	got := resumeCommand([]string{"--checkpoint", "/tmp/my ck", "--rate", "4M", "/a.raw", "file:///b.raw"})
	want := `diskcopy --resume --checkpoint '/tmp/my ck' --rate 4M /a.raw file:///b.raw`
	if got != want {
		t.Errorf("resumeCommand = %s\nwant            %s", got, want)
	}
	if got := resumeCommand([]string{"--resume", "--checkpoint", "c", "a", "b"}); got != "diskcopy --resume --checkpoint c a b" {
		t.Errorf("resumeCommand added a second --resume: %s", got)
	}
}

// built is the diskcopy binary, built once for all tests.
var built struct {
	once     sync.Once
	dir, bin string
	skip     string
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// buildDiskcopy builds this command into a temporary directory, once.
func buildDiskcopy(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			built.skip = "the go command is not in PATH; cannot build diskcopy"
			return
		}
		if built.dir, built.err = os.MkdirTemp("", "diskcopy-test-"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "diskcopy")
		if out, err := exec.Command(goBin, "build", "-o", built.bin, ".").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.skip != "" {
		t.Skip(built.skip)
	}
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

type result struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r result) wantExit(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("diskcopy %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, code, r.stdout, r.stderr)
	}
}

func (r result) wantStderr(t *testing.T, s string) {
	t.Helper()
	if !strings.Contains(r.stderr, s) {
		t.Errorf("diskcopy %s: stderr lacks %q:\n%s", strings.Join(r.args, " "), s, r.stderr)
	}
}

// runCmd runs the binary with args and a one-minute limit.
func runCmd(t *testing.T, bin string, args ...string) result {
	t.Helper()
	return runCmdEnv(t, bin, nil, args...)
}

// runCmdEnv runs the binary with args in the environment env (nil: this
// process's) and a one-minute limit.
func runCmdEnv(t *testing.T, bin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		res.code = ee.ExitCode()
	default:
		t.Fatalf("diskcopy %s: %v\nstderr: %s", strings.Join(args, " "), err, res.stderr)
	}
	return res
}

// writeSparseDisk writes a disk image of size bytes to path: 64 KiB regions
// chosen at random to be random data, written zeros, or holes.
func writeSparseDisk(t *testing.T, path string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	const region = 64 << 10
	buf := make([]byte, region)
	for off := int64(0); off < size; off += region {
		n := min(region, size-off)
		switch rng.IntN(3) {
		case 0: // random data
			for i := range buf[:n] {
				buf[i] = byte(rng.Uint32())
			}
		case 1: // allocated zeros
			clear(buf[:n])
		default: // a hole
			continue
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func assertSameFile(t *testing.T, a, b string) {
	t.Helper()
	da, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(da, db) {
		t.Fatalf("%s and %s differ (%d and %d bytes)", a, b, len(da), len(db))
	}
}
