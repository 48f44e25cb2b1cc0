package draastest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/draastest"
)

func TestDiskStoresOnlyNonZeroBlocks(t *testing.T) {
	data := make([]byte, 10*4096+100)
	data[5] = 1           // block 0
	data[3*4096+7] = 2    // block 3
	data[len(data)-1] = 3 // block 10, the short last one
	d := draastest.DiskFrom(data, 4096)
	if got := d.StoredBlocks(); got != 3 {
		t.Errorf("StoredBlocks() = %d, want 3", got)
	}
	if !bytes.Equal(d.Bytes(), data) {
		t.Error("Bytes() differs from the data the disk was made from")
	}
	exts, err := d.AllocatedExtents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []draas.Extent{{Offset: 0, Length: 4096}, {Offset: 3 * 4096, Length: 4096}, {Offset: 10 * 4096, Length: 100}}
	if !slices.Equal(exts, want) {
		t.Errorf("AllocatedExtents() = %v, want %v", exts, want)
	}

	// Zeroing a block frees it.
	d.WriteAt(make([]byte, 4096), 3*4096)
	if got := d.StoredBlocks(); got != 2 {
		t.Errorf("after zeroing block 3, StoredBlocks() = %d, want 2", got)
	}
}

func TestDiskWriteAtPastEnd(t *testing.T) {
	d := draastest.NewDisk(100, 16)
	n, err := d.WriteAt([]byte("0123456789"), 95)
	if n != 5 || !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("WriteAt across the end = %d, %v; want 5 and ErrInvalid", n, err)
	}
	if got := d.Bytes()[95:]; string(got) != "01234" {
		t.Errorf("bytes at the end = %q, want %q", got, "01234")
	}
	if _, err := d.WriteAt([]byte("x"), 101); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("WriteAt past the end: error %v, want ErrInvalid", err)
	}
}

func TestDiskChangedExtents(t *testing.T) {
	ctx := t.Context()
	d := draastest.DiskFrom(bytes.Repeat([]byte{1}, 8*1024), 1024)
	d.Version("v1")
	d.WriteAt([]byte{9}, 2*1024+5)                   // block 2 changes
	d.WriteAt([]byte{1}, 4*1024)                     // block 4 rewritten with the same byte
	d.WriteAt(make([]byte, 1024), 6*1024)            // block 6 zeroed
	d.WriteAt(bytes.Repeat([]byte{2}, 2048), 7*1024) // block 7 changes; write stops at the end
	got, err := d.ChangedExtents(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	want := []draas.Extent{{Offset: 2 * 1024, Length: 1024}, {Offset: 6 * 1024, Length: 2 * 1024}}
	if !slices.Equal(got, want) {
		t.Errorf("ChangedExtents(v1) = %v, want %v", got, want)
	}

	d.Version("v2")
	if got, err := d.ChangedExtents(ctx, "v2"); err != nil || len(got) != 0 {
		t.Errorf("ChangedExtents right after Version = %v, %v; want none", got, err)
	}
	if _, err := d.ChangedExtents(ctx, "v0"); !errors.Is(err, draas.ErrNotFound) {
		t.Errorf("ChangedExtents of an unknown version: error %v, want ErrNotFound", err)
	}
	if _, err := draas.ChangedExtents(ctx, draastest.PlainSource(d), "v1"); !errors.Is(err, draas.ErrNotFound) {
		t.Errorf("draas.ChangedExtents of a PlainSource: error %v, want ErrNotFound", err)
	}
}

func TestDiskCorruptIsDetectedByChecksum(t *testing.T) {
	ctx := t.Context()
	data := bytes.Repeat([]byte("draas"), 1000)
	d := draastest.DiskFrom(data, 1024)
	d.Corrupt(1500)
	d.Corrupt(4990) // in the short last block

	for _, off := range []int64{0, 1024, 4096} {
		p := make([]byte, min(1024, int64(len(data))-off))
		sum, ok, err := d.ReadBlock(ctx, p, off)
		if err != nil || !ok {
			t.Fatalf("ReadBlock(%d) = %v, %v", off, ok, err)
		}
		corrupted := off == 1024 || off == 4096
		if got := sha256.Sum256(p) != sum; got != corrupted {
			t.Errorf("block at %d: checksum mismatch = %v, want %v", off, got, corrupted)
		}
	}
	p := make([]byte, 1)
	d.ReadAt(ctx, p, 1500)
	if p[0] != data[1500]^0xff {
		t.Errorf("ReadAt of the corrupted byte = %#x, want %#x", p[0], data[1500]^0xff)
	}

	// Corruption of a hole makes a block whose data is not its sum's.
	h := draastest.NewDisk(4096, 1024)
	h.Corrupt(10)
	q := make([]byte, 1024)
	sum, ok, err := h.ReadBlock(ctx, q, 0)
	if err != nil || !ok || sum == sha256.Sum256(q) {
		t.Errorf("ReadBlock of a corrupted hole = ok %v, err %v, sum matches %v; want ok and a mismatch", ok, err, sum == sha256.Sum256(q))
	}
}

func TestDiskReadBlockArguments(t *testing.T) {
	ctx := t.Context()
	d := draastest.NewDisk(2500, 1024)
	if _, _, err := d.ReadBlock(ctx, make([]byte, 1024), 100); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("misaligned ReadBlock: error %v, want ErrInvalid", err)
	}
	if _, _, err := d.ReadBlock(ctx, make([]byte, 100), 0); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("ReadBlock into a short buffer: error %v, want ErrInvalid", err)
	}
	if _, ok, err := d.ReadBlock(ctx, make([]byte, 452), 2048); ok || err != nil {
		t.Errorf("ReadBlock of the short last hole = %v, %v; want not ok, nil", ok, err)
	}
	if _, _, err := d.ReadBlock(ctx, make([]byte, 1024), 3072); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("ReadBlock past the end: error %v, want ErrInvalid", err)
	}
}

func TestDiskReadAt(t *testing.T) {
	d := draastest.DiskFrom([]byte("hello, world"), 4)
	p := make([]byte, 8)
	n, err := d.ReadAt(t.Context(), p, 7)
	if n != 5 || err != io.EOF || string(p[:n]) != "world" {
		t.Errorf("ReadAt across the end = %d, %v, %q; want 5, io.EOF, world", n, err, p[:n])
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := d.ReadAt(ctx, p, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadAt with a cancelled context: error %v, want context.Canceled", err)
	}
}

func TestDiskCloneIsIndependent(t *testing.T) {
	d := draastest.DiskFrom([]byte("abcdefgh"), 4)
	c := d.Clone()
	d.WriteAt([]byte("X"), 0)
	d.Corrupt(5)
	if got := string(c.Bytes()); got != "abcdefgh" {
		t.Errorf("clone changed with the original: %q", got)
	}
	big := c.CloneSize(10)
	if got := big.Bytes(); string(got) != "abcdefgh\x00\x00" {
		t.Errorf("CloneSize(10) = %q", got)
	}
	small := c.CloneSize(6)
	p := make([]byte, 2)
	sum, ok, err := small.ReadBlock(t.Context(), p, 4)
	if err != nil || !ok || string(p) != "ef" || sum != sha256.Sum256([]byte("ef")) {
		t.Errorf("CloneSize(6) last block = %q, %v, %v, sum ok %v", p, ok, err, sum == sha256.Sum256([]byte("ef")))
	}
}

func TestPlainSourceHidesCapabilities(t *testing.T) {
	src := draastest.PlainSource(draastest.NewDisk(10, 0))
	if _, ok := draas.As[draas.ExtentSource](src); ok {
		t.Error("PlainSource is an ExtentSource")
	}
	if _, ok := draas.As[draas.ChecksumSource](src); ok {
		t.Error("PlainSource is a ChecksumSource")
	}
	if _, ok := draas.As[draas.ChangeTracker](src); ok {
		t.Error("PlainSource is a ChangeTracker")
	}
}
