package local_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/local"
)

// writeSparse writes content to a new file at path, leaving its all-zero
// 4 KiB pieces as holes.
func writeSparse(t *testing.T, path string, content []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(len(content))); err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 4096)
	for off := 0; off < len(content); off += 4096 {
		p := content[off:min(off+4096, len(content))]
		if bytes.Equal(p, zero[:len(p)]) {
			continue
		}
		if _, err := f.WriteAt(p, int64(off)); err != nil {
			t.Fatal(err)
		}
	}
}

func openSource(t *testing.T, path string) *local.Source {
	t.Helper()
	src, err := local.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func TestSourceIsBlockSource(t *testing.T) {
	draastest.TestBlockSource(t, func(t *testing.T, content []byte) draas.BlockSource {
		path := filepath.Join(t.TempDir(), "disk.raw")
		writeSparse(t, path, content)
		return openSource(t, path)
	})
}

// fileHarness returns a harness for a sink writing path.
func fileHarness(t *testing.T, path string, size int64, opts local.SinkOptions) draastest.SinkHarness {
	s, err := local.Create(path, size, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return draastest.SinkHarness{
		Sink: s,
		ReadBack: func(ctx context.Context) ([]byte, error) {
			p, err := os.ReadFile(path)
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%w: %w", draas.ErrNotFound, err)
			}
			return p, err
		},
	}
}

func TestSinkIsVolumeSink(t *testing.T) {
	for _, bs := range []int{64 << 10, 0} {
		t.Run(fmt.Sprint(bs), func(t *testing.T) {
			draastest.TestVolumeSink(t, func(t *testing.T, size int64) draastest.SinkHarness {
				return fileHarness(t, filepath.Join(t.TempDir(), "out.raw"), size, local.SinkOptions{BlockSize: bs})
			})
		})
	}
}

func TestSourceReportsHoles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sparse.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	f.WriteAt(bytes.Repeat([]byte{1}, 1<<20), 8<<20)
	f.WriteAt(bytes.Repeat([]byte{2}, 4096), 40<<20)
	f.Close()

	src := openSource(t, path)
	exts, err := src.AllocatedExtents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(exts) == 1 && exts[0] == (draas.Extent{Offset: 0, Length: 64 << 20}) {
		t.Skip("the filesystem of the temporary directory does not report holes")
	}
	// Filesystems allocate in blocks and may preallocate a little around
	// writes; allow 1 MiB of slack.
	const slack = 1 << 20
	want := []draas.Extent{{Offset: 8 << 20, Length: 1 << 20}, {Offset: 40 << 20, Length: 4096}}
	if len(exts) != len(want) {
		t.Fatalf("AllocatedExtents() = %v, want about %v", exts, want)
	}
	for i, e := range exts {
		w := want[i]
		if e.Offset > w.Offset || e.End() < w.End() || w.Offset-e.Offset > slack || e.End()-w.End() > slack {
			t.Errorf("extent %d = %+v, want about %+v", i, e, w)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := local.Open(filepath.Join(dir, "missing.raw"))
	if !errors.Is(err, draas.ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing file: error %v, want ErrNotFound and fs.ErrNotExist", err)
	}
	if _, err := local.Open(dir); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("Open of a directory: error %v, want ErrInvalid", err)
	}
}

func TestSourceReadErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(path, bytes.Repeat([]byte{7}, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	src := openSource(t, path)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := src.ReadAt(ctx, make([]byte, 10), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadAt with a cancelled context: error %v, want context.Canceled", err)
	}
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	n, err := src.ReadAt(t.Context(), make([]byte, 8192), 0)
	if n != 4096 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ReadAt of a file that shrank = %d, %v; want 4096 and io.ErrUnexpectedEOF", n, err)
	}
	if src.Size() != 8192 || src.BlockSize() != 0 {
		t.Errorf("Size, BlockSize = %d, %d; want 8192, 0", src.Size(), src.BlockSize())
	}
}

// writeBlocks writes the given blocks of content to s.
func writeBlocks(t *testing.T, s draas.VolumeSink, content []byte, idx ...int64) {
	t.Helper()
	bs := int64(s.BlockSize())
	for _, i := range idx {
		data := content[i*bs : min((i+1)*bs, int64(len(content)))]
		if err := s.WriteBlock(t.Context(), draas.Block{Index: i, Offset: i * bs, Data: data, Checksum: sha256.Sum256(data)}); err != nil {
			t.Fatalf("WriteBlock(%d): %v", i, err)
		}
	}
}

// commitBlocks writes the given blocks of content to s, commits it and
// reports whether the file at path then holds content.
func commitBlocks(t *testing.T, s draas.VolumeSink, path string, content []byte, idx ...int64) bool {
	t.Helper()
	writeBlocks(t, s, content, idx...)
	if err := s.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	return bytes.Equal(got, content)
}

func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i/4096)
	}
	return p
}

func TestSinkCommitRenames(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "out.raw")
	content := pattern(4*4096 + 100)
	s, err := local.Create(path, int64(len(content)), local.SinkOptions{BlockSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if draas.NeedsZeroWrites(s) {
		t.Error("a sink onto a new file needs zero writes")
	}
	writeBlocks(t, s, content, 4, 0, 1, 2, 3)
	// The partial file holds the disk and a 64-byte trailer naming the copy.
	if st, err := os.Stat(path + local.PartialSuffix); err != nil || st.Size() != int64(len(content))+64 || st.Mode().Perm() != 0o600 {
		t.Errorf("partial file before Commit: %v, %v; want %d bytes, mode 0600", st, err, len(content)+64)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the target exists before Commit: %v", err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, content) {
		t.Errorf("committed file: err %v, content equal %v", err, bytes.Equal(got, content))
	}
	if _, err := os.Stat(path + local.PartialSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the partial file is still there after Commit: %v", err)
	}
	src, err := s.Committed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer src.(io.Closer).Close()
	p := make([]byte, len(content))
	if n, err := src.ReadAt(ctx, p, 0); n != len(p) || err != nil || !bytes.Equal(p, content) {
		t.Errorf("Committed().ReadAt = %d, %v, equal %v", n, err, bytes.Equal(p, content))
	}
	if err := s.Abort(ctx); !errors.Is(err, draas.ErrClosed) {
		t.Errorf("Abort after Commit: error %v, want ErrClosed", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Abort after Commit removed the file: %v", err)
	}
}

func TestSinkAbortRemovesPartial(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "out.raw")
	s, err := local.Create(path, 8192, local.SinkOptions{BlockSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	writeBlocks(t, s, pattern(8192), 0)
	if err := s.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + local.PartialSuffix} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists after Abort: %v", p, err)
		}
	}
	if err := s.Abort(ctx); err != nil {
		t.Errorf("second Abort: %v", err)
	}
	if _, err := s.Committed(ctx); !errors.Is(err, draas.ErrNotFound) {
		t.Errorf("Committed after Abort: error %v, want ErrNotFound", err)
	}
}

// resumableSink creates a resumable sink of 4 blocks of 4096 bytes in a
// temporary directory and returns the path, content to write, options
// and the sink.
func resumableSink(t *testing.T) (string, []byte, local.SinkOptions, *local.Sink) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "out.raw")
	content := pattern(4 * 4096)
	opts := local.SinkOptions{BlockSize: 4096, Resume: true}
	s, err := local.Create(path, int64(len(content)), opts)
	if err != nil {
		t.Fatal(err)
	}
	return path, content, opts, s
}

func TestSinkResumeKeepsBlocks(t *testing.T) {
	ctx := t.Context()
	path, content, opts, s := resumableSink(t)
	writeBlocks(t, s, content, 0, 2)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// While the first copy holds the partial file, another cannot take it.
	if _, err := local.Create(path, int64(len(content)), opts); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("Create while another sink writes the partial file: error %v, want ErrConflict", err)
	}
	if err := s.Close(); err != nil { // the copy stops, to be resumed
		t.Fatal(err)
	}
	if err := s.WriteBlock(ctx, draas.Block{Data: content[:4096], Checksum: sha256.Sum256(content[:4096])}); !errors.Is(err, draas.ErrClosed) {
		t.Errorf("WriteBlock after Close: error %v, want ErrClosed", err)
	}

	r, err := local.Create(path, int64(len(content)), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !commitBlocks(t, r, path, content, 1, 3) {
		t.Error("a resumed copy lost the blocks written before it stopped")
	}
}

func TestSinkTargets(t *testing.T) {
	ctx := t.Context()
	path, content, opts, s := resumableSink(t)
	abs, _ := filepath.Abs(path)
	if !strings.HasPrefix(s.Target(), "file://"+abs+"#") {
		t.Errorf("Target() = %q, want file://%s#<id>", s.Target(), abs)
	}
	writeBlocks(t, s, content, 0)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	state, err := s.ResumeState()
	if err != nil {
		t.Fatal(err)
	}
	target := s.Target()
	s.Close() // the process stops

	// Another process continues from the state the checkpoint kept.
	r, err := local.ResumeSink(state)
	if err != nil {
		t.Fatal(err)
	}
	if r.Target() != target || r.BlockSize() != 4096 || r.Size() != int64(len(content)) {
		t.Errorf("resumed sink: target %q, block size %d, size %d; want %q, 4096, %d", r.Target(), r.BlockSize(), r.Size(), target, len(content))
	}
	writeBlocks(t, r, content, 1, 2, 3)
	r.Close()

	// Create with Resume continues the same partial file too.
	c, err := local.Create(path, int64(len(content)), opts)
	if err != nil {
		t.Fatal(err)
	}
	if c.Target() != target {
		t.Errorf("Create with Resume: Target %q, want %q", c.Target(), target)
	}
	c.Close()

	// A fresh copy on the same path is a new target, so a checkpoint of the
	// old one is never applied to it, and the old state no longer resumes.
	f, err := local.Create(path, int64(len(content)), local.SinkOptions{BlockSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if f.Target() == target {
		t.Error("a fresh partial file has the Target of the one it replaced")
	}
	f.Close()
	if _, err := local.ResumeSink(state); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("ResumeSink of a replaced partial file: error %v, want ErrConflict", err)
	}
	os.Remove(path + local.PartialSuffix)
	if _, err := local.ResumeSink(state); !errors.Is(err, draas.ErrNotFound) {
		t.Errorf("ResumeSink without a partial file: error %v, want ErrNotFound", err)
	}
	if _, err := local.ResumeSink([]byte("junk")); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("ResumeSink of junk: error %v, want ErrInvalid", err)
	}
}

func TestSinkResumeWrongSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.raw")
	if err := os.WriteFile(path+local.PartialSuffix, make([]byte, 100), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := local.Create(path, 8192, local.SinkOptions{Resume: true})
	if !errors.Is(err, draas.ErrInvalid) || !strings.Contains(err.Error(), local.PartialSuffix) {
		t.Errorf("Resume of a partial file of the wrong size: error %v, want ErrInvalid naming the file", err)
	}
	// A partial file of another disk size is refused too.
	s, err := local.Create(path, 4096, local.SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := local.Create(path, 8192, local.SinkOptions{Resume: true}); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("Resume of the partial file of a smaller disk: error %v, want ErrInvalid", err)
	}
}

func TestSinkWithoutResumeReplacesPartial(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.raw")
	if err := os.WriteFile(path+local.PartialSuffix, bytes.Repeat([]byte{9}, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := local.Create(path, 8192, local.SinkOptions{BlockSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	content := append(make([]byte, 4096), pattern(4096)...)
	if !commitBlocks(t, s, path, content, 1) {
		t.Error("a fresh copy kept data from a leftover partial file")
	}
}

func TestSinkRefusesOverwrite(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "precious.raw")
	old := []byte("production data")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := local.Create(path, 4096, local.SinkOptions{})
	if !errors.Is(err, draas.ErrConflict) || !errors.Is(err, fs.ErrExist) ||
		!strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "Overwrite") {
		t.Errorf("Create over an existing file: error %v, want ErrConflict and fs.ErrExist naming the path and the option", err)
	}

	// A file that appears between Create and Commit is not clobbered either.
	late := filepath.Join(t.TempDir(), "late.raw")
	s, err := local.Create(late, 4096, local.SinkOptions{BlockSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	writeBlocks(t, s, pattern(4096), 0)
	os.WriteFile(late, old, 0o600)
	if err := s.Commit(ctx); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("Commit over a file that appeared: error %v, want ErrConflict", err)
	}
	if err := s.Abort(ctx); err != nil {
		t.Errorf("Abort after a failed Commit: %v", err)
	}
	if got, _ := os.ReadFile(late); !bytes.Equal(got, old) {
		t.Error("the file that appeared was clobbered")
	}
	if _, err := os.Stat(late + local.PartialSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Abort after a failed Commit left the partial file: %v", err)
	}

	// With Overwrite, Commit replaces the file.
	s, err = local.Create(path, 4096, local.SinkOptions{BlockSize: 4096, Overwrite: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, old) {
		t.Error("Create with Overwrite changed the file before Commit")
	}
	if !commitBlocks(t, s, path, pattern(4096), 0) {
		t.Error("Commit with Overwrite did not replace the file")
	}
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		path string
		size int64
		opts local.SinkOptions
	}{
		{"negative size", filepath.Join(dir, "a.raw"), -1, local.SinkOptions{}},
		{"negative block size", filepath.Join(dir, "b.raw"), 10, local.SinkOptions{BlockSize: -1}},
		{"directory", dir, 10, local.SinkOptions{Overwrite: true}},
	} {
		if _, err := local.Create(c.path, c.size, c.opts); !errors.Is(err, draas.ErrInvalid) {
			t.Errorf("Create with %s: error %v, want ErrInvalid", c.name, err)
		}
	}
	s, err := local.Create(filepath.Join(dir, "c.raw"), 10, local.SinkOptions{BlockSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort(t.Context())
	data := []byte("abcd")
	b := draas.Block{Index: 1, Offset: 0, Data: data, Checksum: sha256.Sum256(data)}
	if err := s.WriteBlock(t.Context(), b); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("WriteBlock with a wrong index: error %v, want ErrInvalid", err)
	}
}

// TestBlockDevice runs the suites on a loop device, when the machine lets
// the test make one (root and losetup).
func TestBlockDevice(t *testing.T) {
	dev := loopDevice(t, make([]byte, 8<<20))
	draastest.TestBlockSource(t, func(t *testing.T, content []byte) draas.BlockSource {
		if len(content) == 0 || len(content)%512 != 0 {
			t.Skip("a loop device holds whole 512-byte sectors")
		}
		return openSource(t, loopDevice(t, content))
	})

	t.Run("Source", func(t *testing.T) {
		src := openSource(t, dev)
		exts, err := src.AllocatedExtents(t.Context())
		if err != nil || len(exts) != 1 || exts[0] != (draas.Extent{Offset: 0, Length: 8 << 20}) {
			t.Errorf("AllocatedExtents of a device = %v, %v; want the whole device", exts, err)
		}
	})

	draastest.TestVolumeSink(t, func(t *testing.T, size int64) draastest.SinkHarness {
		s, err := local.Create(dev, size, local.SinkOptions{BlockSize: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if !s.NeedsZeroWrites() {
			t.Error("a sink onto a device does not need zero writes")
		}
		return draastest.SinkHarness{
			Sink:    s,
			InPlace: true,
			ReadBack: func(ctx context.Context) ([]byte, error) {
				src, err := local.Open(dev)
				if err != nil {
					return nil, err
				}
				defer src.Close()
				p := make([]byte, size)
				if _, err := src.ReadAt(ctx, p, 0); err != nil {
					return nil, err
				}
				return p, nil
			},
		}
	})

	t.Run("TooSmall", func(t *testing.T) {
		if _, err := local.Create(dev, 9<<20, local.SinkOptions{}); !errors.Is(err, draas.ErrInvalid) {
			t.Errorf("Create onto a device smaller than the disk: error %v, want ErrInvalid", err)
		}
	})
}

// loopDevice attaches a loop device to a new file holding content and
// returns its path, or skips the test.
func loopDevice(t *testing.T, content []byte) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("making a loop device needs root")
	}
	losetup, err := exec.LookPath("losetup")
	if err != nil {
		t.Skip("losetup not found (Debian package mount)")
	}
	backing := filepath.Join(t.TempDir(), "loop.raw")
	writeSparse(t, backing, content)
	out, err := exec.Command(losetup, "--find", "--show", backing).CombinedOutput()
	if err != nil {
		t.Skipf("cannot attach a loop device: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(losetup, "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

// TestErrorMessages checks that errors name a path once and a file's type
// in words.
func TestErrorMessages(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.raw")
	_, err := local.Open(missing)
	if n := strings.Count(fmt.Sprint(err), missing); n != 1 {
		t.Errorf("Open of a missing file: %q names the path %d times, want once", err, n)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != missing {
		t.Errorf("Open of a missing file: %v does not carry the *fs.PathError", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "locked.raw"), []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		locked := filepath.Join(dir, "locked.raw")
		_, err := local.Open(locked)
		if n := strings.Count(fmt.Sprint(err), locked); err == nil || n != 1 || !errors.Is(err, fs.ErrPermission) {
			t.Errorf("Open of an unreadable file: %v, want fs.ErrPermission naming the path once", err)
		}
	}

	_, err = local.Open(dir)
	if !errors.Is(err, draas.ErrInvalid) || !strings.Contains(fmt.Sprint(err), "is a directory") {
		t.Errorf("Open of a directory: %v, want ErrInvalid saying it is a directory", err)
	}
	_, err = local.Create(dir, 1<<20, local.SinkOptions{})
	if !errors.Is(err, draas.ErrInvalid) || !strings.Contains(fmt.Sprint(err), "it is a directory") ||
		!strings.Contains(fmt.Sprint(err), filepath.Join(dir, "disk.raw")) || strings.Contains(fmt.Sprint(err), "d---") {
		t.Errorf("Create on a directory: %v, want ErrInvalid saying it is a directory and suggesting a file in it", err)
	}
	sub := filepath.Join(dir, "nodir", "x.raw")
	_, err = local.Create(sub, 1<<20, local.SinkOptions{})
	if n := strings.Count(fmt.Sprint(err), sub); err == nil || n != 1 {
		t.Errorf("Create in a missing directory: %q names %s %d times, want once", err, sub, n)
	}
}
