package vmdk_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/vmdk"
)

var subformats = []vmdk.Format{vmdk.StreamOptimized, vmdk.MonolithicSparse, vmdk.MonolithicFlat}

// oracleCase is a disk for the oracle tests.
type oracleCase struct {
	kind string
	size int
}

// oracleCases are the disks of the oracle tests: one grain; sizes that are
// not a whole number of grains nor of sectors (every VMDK rounds them up to
// sectors); and a sparse disk past the 32 MiB that one grain table covers.
// Random data is kept small: qemu-img compresses it slowly.
var oracleCases = []oracleCase{
	{"random", 64 << 10},
	{"random", 2<<20 + 12345},
	{"sparse", 10<<20 + 12345},
	{"sparse", 33<<20 + 512},
	{"compressible", 1<<20 + 12345},
	{"zero", 10<<20 + 12345},
}

// eachOracleCase runs f, after skipping without qemu-img, in a subtest for
// each of oracleCases' raw images and each subformat, with the raw image,
// the file that holds it and the path of the VMDK to make.
func eachOracleCase(t *testing.T, f func(t *testing.T, format vmdk.Format, raw []byte, rawPath, out string)) {
	qemuImg(t)
	for _, c := range oracleCases {
		raw := content(c.kind, c.size)
		dir := t.TempDir()
		rawPath := writeFile(t, dir, "disk.raw", raw)
		for _, format := range subformats {
			t.Run(fmt.Sprintf("%s/%d/%s", c.kind, c.size, format), func(t *testing.T) {
				f(t, format, raw, rawPath, filepath.Join(dir, format.String()+".vmdk"))
			})
		}
	}
}

// TestOpenQemuImages converts raw images with qemu-img to every subformat
// and reads them back through Open: byte-identical to the raw image, zeros
// up to the sector-rounded size, and every non-zero byte inside an
// allocated extent.
func TestOpenQemuImages(t *testing.T) {
	eachOracleCase(t, func(t *testing.T, f vmdk.Format, raw []byte, rawPath, out string) {
		size := len(raw)
		qemuConvert(t, rawPath, out, f.String())
		src := openT(t, out)
		if got, want := src.Size(), roundSector(int64(size)); got != want {
			t.Fatalf("Size() = %d, want %d (the raw size rounded up to sectors)", got, want)
		}
		if info := src.Info(); info.CreateType != f.String() || info.AdapterType != "ide" || info.Geometry.Heads != 16 {
			t.Errorf("Info() = %+v, want createType %s, adapter ide, 16 heads", info, f)
		}
		got := draastest.ReadAll(t, src)
		if i := firstDiff(got[:size], raw); i >= 0 {
			t.Fatalf("byte %d is %#x, want %#x", i, got[i], raw[i])
		}
		if !draas.IsZero(got[size:]) {
			t.Fatal("bytes past the raw size are not zero")
		}
		checkExtentsCover(t, src, raw)
	})
}

// checkExtentsCover checks that every non-zero byte of want lies in an
// allocated extent of src.
func checkExtentsCover(t *testing.T, src *vmdk.Source, want []byte) {
	t.Helper()
	exts, err := src.AllocatedExtents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	covered := make([]bool, len(want))
	for _, e := range exts {
		for i := e.Offset; i < min(e.End(), int64(len(want))); i++ {
			covered[i] = true
		}
	}
	for i, b := range want {
		if b != 0 && !covered[i] {
			t.Fatalf("byte %d is non-zero but lies in no allocated extent %v", i, exts)
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// TestSinkQemuCheck copies raw disks into our VMDK sinks with blockcopy
// (parallel, out of order) and checks the result with qemu-img: check finds
// no errors, info reports the subformat, and compare finds the image
// identical to the raw disk.
func TestSinkQemuCheck(t *testing.T) {
	eachOracleCase(t, func(t *testing.T, f vmdk.Format, raw []byte, rawPath, out string) {
		size := len(raw)
		sink, err := vmdk.Create(out, int64(size), vmdk.CreateOptions{Format: f})
		if err != nil {
			t.Fatal(err)
		}
		src := draastest.DiskFrom(raw, 64<<10)
		if _, err := blockcopy.Copy(t.Context(), sink, src, blockcopy.Options{Verify: true}); err != nil {
			t.Fatal(err)
		}
		if out := run(t, "check", out); !strings.Contains(out, "No errors were found") {
			t.Errorf("qemu-img check: %s", out)
		}
		info := run(t, "info", out)
		if !strings.Contains(info, "create type: "+f.String()) {
			t.Errorf("qemu-img info does not report create type %s:\n%s", f, info)
		}
		if want := fmt.Sprintf("(%d bytes)", roundSector(int64(size))); !strings.Contains(info, want) {
			t.Errorf("qemu-img info does not report a virtual size of %s:\n%s", want, info)
		}
		if out := run(t, "compare", "-f", "raw", "-F", "vmdk", rawPath, out); !strings.Contains(out, "Images are identical") {
			t.Errorf("qemu-img compare: %s", out)
		}
	})
}

// TestStreamGrainsOutOfOrder checks that a streamOptimized file whose
// grains are stored in descending LBA order reads correctly in qemu-img and
// in Open.
func TestStreamGrainsOutOfOrder(t *testing.T) {
	raw := content("random", 3<<20)
	path := filepath.Join(t.TempDir(), "desc.vmdk")
	writeVMDK(t, path, raw, vmdk.CreateOptions{}) // writes blocks last first
	if got := draastest.ReadAll(t, openT(t, path)); !bytes.Equal(got, raw) {
		t.Fatal("Open reads back different bytes")
	}
	qemuImg(t)
	rawPath := writeFile(t, t.TempDir(), "disk.raw", raw)
	if out := run(t, "compare", "-f", "raw", "-F", "vmdk", rawPath, path); !strings.Contains(out, "Images are identical") {
		t.Errorf("qemu-img compare: %s", out)
	}
}

// TestCopyThroughVMDK copies raw → VMDK sink → VMDK source → raw through
// blockcopy, for every subformat, and checks the bytes at the end are the
// bytes at the start.
func TestCopyThroughVMDK(t *testing.T) {
	for _, kind := range []string{"random", "sparse"} {
		raw := content(kind, 7<<20+1000)
		for _, f := range subformats {
			t.Run(kind+"/"+f.String(), func(t *testing.T) {
				ctx := t.Context()
				path := filepath.Join(t.TempDir(), "disk.vmdk")
				sink, err := vmdk.Create(path, int64(len(raw)), vmdk.CreateOptions{Format: f})
				if err != nil {
					t.Fatal(err)
				}
				st, err := blockcopy.Copy(ctx, sink, draastest.DiskFrom(raw, 0), blockcopy.Options{Concurrency: 4, Verify: true})
				if err != nil {
					t.Fatal(err)
				}
				if !st.Verified {
					t.Error("the verify pass did not run")
				}
				src := openT(t, path)
				back := draastest.NewSink(src.Size(), 0, draastest.SinkOptions{})
				if _, err := blockcopy.Copy(ctx, back, src, blockcopy.Options{}); err != nil {
					t.Fatal(err)
				}
				got := back.Disk().Bytes()
				if i := firstDiff(got[:len(raw)], raw); i >= 0 {
					t.Fatalf("byte %d differs after raw → %s → raw", i, f)
				}
				if !draas.IsZero(got[len(raw):]) {
					t.Fatal("bytes past the raw size are not zero")
				}
			})
		}
	}
}

// TestReadBackIndependent makes sure the sink conformance suite's read-back
// really uses qemu-img when it is present, so that it checks our files with
// a reader we did not write.
func TestReadBackIndependent(t *testing.T) {
	qemuImg(t)
	raw := content("sparse", 2<<20)
	path := filepath.Join(t.TempDir(), "d.vmdk")
	writeVMDK(t, path, raw, vmdk.CreateOptions{})
	got, err := readBack(t, path, int64(len(raw)))
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("readBack: %v, equal %t", err, bytes.Equal(got, raw))
	}
}

// TestQemuRejectsEmptyVMDK is why vmdk.Create refuses a 0-byte disk:
// qemu-img cannot open a VMDK of 0 sectors even when it made the file
// itself. Our reader is lenient and opens the sparse ones as empty disks
// (a monolithicFlat one has no extent line at all, which it refuses).
func TestQemuRejectsEmptyVMDK(t *testing.T) {
	qemu := qemuImg(t)
	for _, f := range subformats {
		path := filepath.Join(t.TempDir(), "e.vmdk")
		run(t, "create", "-f", "vmdk", "-o", "subformat="+f.String(), path, "0")
		if out, err := exec.Command(qemu, "info", path).CombinedOutput(); err == nil {
			t.Errorf("%s: qemu-img info of a 0-byte VMDK succeeds, so vmdk.Create could write one:\n%s", f, out)
		}
		if f == vmdk.MonolithicFlat {
			continue
		}
		s, err := vmdk.Open(path)
		if err != nil {
			t.Errorf("%s: Open of qemu-img's 0-byte VMDK: %v", f, err)
			continue
		}
		if s.Size() != 0 {
			t.Errorf("%s: Size() = %d, want 0", f, s.Size())
		}
		s.Close()
	}
}
