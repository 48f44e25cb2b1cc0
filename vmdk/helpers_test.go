package vmdk_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/internal/oracle"
	"github.com/opendraas/draas/vmdk"
)

// qemuImg returns the path of qemu-img, the oracle for VMDK files (see
// oracle.Require).
func qemuImg(t testing.TB) string {
	t.Helper()
	return oracle.Require(t, "qemu-img", "install qemu-utils (apt-get install -y qemu-utils) to run the VMDK oracle tests")
}

// run runs qemu-img with args and returns its combined output, failing the
// test when it fails.
func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(qemuImg(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// randomBytes returns n pseudo-random bytes, the same for the same seed.
func randomBytes(seed uint64, n int) []byte {
	p := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 'v', 'm', 'd', 'k'}).Read(p)
	return p
}

// content returns test disk content of the given kind and size: "random"
// everywhere, "sparse" (random runs between holes of several grains, one run
// unaligned and one at the very end), "compressible" (text-like) or "zero".
func content(kind string, size int) []byte {
	switch kind {
	case "random":
		return randomBytes(uint64(size), size)
	case "sparse":
		p := make([]byte, size)
		r := rand.New(rand.NewPCG(uint64(size), 3))
		for off := 0; off < size; off += 1 << 20 {
			n := min(size-off, 1+r.IntN(300<<10))
			start := off + r.IntN(1<<20-n+1)
			copy(p[min(start, size-n):], randomBytes(uint64(off), n))
		}
		copy(p[max(0, size-777):], randomBytes(9, min(size, 777)))
		return p
	case "compressible":
		p := make([]byte, size)
		words := []string{"disaster ", "recovery ", "vmdk ", "grain ", "\n"}
		r := rand.New(rand.NewPCG(uint64(size), 5))
		for i := 0; i < size; {
			i += copy(p[i:], words[r.IntN(len(words))])
		}
		return p
	case "zero":
		return make([]byte, size)
	}
	panic("unknown content kind " + kind)
}

// roundSector returns n rounded up to whole 512-byte sectors.
func roundSector(n int64) int64 { return (n + 511) / 512 * 512 }

// writeFile writes p to a new file in dir and returns its path.
func writeFile(t testing.TB, dir, name string, p []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, p, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// qemuConvert converts the raw image at raw to a VMDK of the subformat at
// out with qemu-img.
func qemuConvert(t testing.TB, raw, out, subformat string) {
	t.Helper()
	run(t, "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat="+subformat, raw, out)
}

// writeVMDK writes p as a VMDK with our Sink, block by block in reverse
// order (so a stream's grains are not in LBA order), skipping zero blocks as
// a copier does.
func writeVMDK(t testing.TB, path string, p []byte, opts vmdk.CreateOptions) {
	t.Helper()
	ctx := context.Background()
	s, err := vmdk.Create(path, int64(len(p)), opts)
	if err != nil {
		t.Fatal(err)
	}
	const bs = vmdk.SinkBlockSize
	for off := (len(p) - 1) / bs * bs; off >= 0; off -= bs {
		d := p[off:min(off+bs, len(p))]
		if draas.IsZero(d) {
			continue
		}
		b := draas.Block{Index: int64(off / bs), Offset: int64(off), Data: d, Checksum: sha256.Sum256(d)}
		if err := s.WriteBlock(ctx, b); err != nil {
			s.Abort(ctx)
			t.Fatal(err)
		}
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// openT opens path with vmdk.Open and closes it when the test ends.
func openT(t testing.TB, path string) *vmdk.Source {
	t.Helper()
	s, err := vmdk.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readBack returns the content of the committed VMDK at path as qemu-img
// converts it to raw (independently of our reader), or as our reader reads
// it when qemu-img is missing. A missing file is draas.ErrNotFound.
func readBack(t testing.TB, path string, size int64) ([]byte, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, &draas.OpError{Op: "readBack", Resource: path, Kind: draas.ErrNotFound, Err: err}
	}
	if _, err := exec.LookPath("qemu-img"); err == nil && size > 0 {
		raw := filepath.Join(t.TempDir(), "readback.raw")
		out, err := exec.Command("qemu-img", "convert", "-O", "raw", path, raw).CombinedOutput()
		if err != nil {
			return nil, errors.New("qemu-img convert: " + err.Error() + ": " + string(out))
		}
		return os.ReadFile(raw)
	}
	s, err := vmdk.Open(path)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	p := make([]byte, s.Size())
	_, err = s.ReadAt(context.Background(), p, 0)
	if err != nil && len(p) > 0 {
		return nil, err
	}
	return p, nil
}
