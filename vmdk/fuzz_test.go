package vmdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendraas/draas"
)

// fuzzSeeds returns small valid images and corruptions of them: the seeds
// of FuzzOpen, also committed in testdata/fuzz/FuzzOpen.
func fuzzSeeds() map[string][]byte {
	data := testData(5*testGrain + 3*sectorSize) // last grain partial
	stream, streamGD, streamGrains := image{stream: true, data: data}.build()
	sparse, sparseGD, _ := image{data: data}.build()
	noFooter, _, _ := image{stream: true, data: data, noFooter: true}.build()
	bare, _, _ := image{data: data[:2*testGrain], noDesc: true}.build()
	seeds := map[string][]byte{
		"stream":          stream,
		"sparse":          sparse,
		"stream-nofooter": noFooter,
		"sparse-nodesc":   bare,
		"descriptor-flat": []byte("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"flat.bin\" 4\nRW 100 ZERO\nddb.adapterType = \"ide\"\nddb.geometry.cylinders = \"1\"\n"),
		"descriptor-bad":  []byte("# Disk DescriptorFile\ncreateType=\"monolithicFlat\"\nRW 99999999 FLAT \"../flat.bin\" 0\n"),
	}
	// Corruptions at the places the reader trusts least.
	mutate := func(name string, src []byte, off int, b ...byte) {
		p := bytes.Clone(src)
		if off < 0 {
			off += len(p)
		}
		copy(p[off:], b)
		seeds[name] = p
	}
	mutate("stream-gd-far", stream, int(streamGD)*sectorSize, 0xff, 0xff, 0xff, 0x7f)
	mutate("stream-capacity-huge", stream, 12, 0, 0, 0, 0, 0, 0x01)
	mutate("stream-footer-capacity", stream, -2*sectorSize+12, 0xff, 0xff)
	mutate("stream-grain-size", stream, 20, 0x00, 0x10)
	mutate("stream-cmpsize", stream, int(streamGrains[0])*sectorSize+8, 0xff, 0xff, 0xff, 0x0f)
	mutate("stream-grain-lba", stream, int(streamGrains[2])*sectorSize, 0x08)
	mutate("stream-deflate", stream, int(streamGrains[0])*sectorSize+grainMarkerSize+40, 0xde, 0xad)
	mutate("sparse-gt-far", sparse, int(sparseGD+1)*sectorSize, 0xff, 0xff, 0xff, 0xff)
	big, bigGD, _ := image{data: testData(130 * testGrain)}.build()
	mutate("sparse-gd-shared", big, int(bigGD)*sectorSize+4, big[int(bigGD)*sectorSize:int(bigGD)*sectorSize+4]...)
	mutate("sparse-newline", sparse, 73, '\n', ' ', '\n', '\n')
	mutate("sparse-gtes", sparse, 44, 0x00, 0x00, 0x01, 0x00)
	seeds["stream-truncated"] = stream[:len(stream)/2]
	seeds["sparse-truncated"] = sparse[:len(sparse)-100]
	seeds["empty"] = nil
	seeds["cowd"] = []byte("COWD\x01\x00\x00\x00")
	return seeds
}

// FuzzOpen opens arbitrary bytes as a VMDK and reads what Open accepts. Open
// and ReadAt must never panic, hang or allocate without bound; Open's errors
// name the file and wrap draas.ErrInvalid or draas.ErrNotFound; reads obey
// the draas.BlockSource contract.
func FuzzOpen(f *testing.F) {
	for _, p := range fuzzSeeds() {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		// A flat extent file that descriptors may name.
		if err := os.WriteFile(filepath.Join(dir, "flat.bin"), bytes.Repeat([]byte("flat"), 1024), 0o644); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "disk.vmdk")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		src, err := Open(path)
		if err != nil {
			var op *draas.OpError
			if !errors.As(err, &op) || op.Resource != path || !strings.Contains(err.Error(), path) {
				t.Fatalf("Open error %q does not name the file", err)
			}
			if !errors.Is(err, draas.ErrInvalid) && !errors.Is(err, draas.ErrNotFound) {
				t.Fatalf("Open error %q wraps neither draas.ErrInvalid nor draas.ErrNotFound", err)
			}
			return
		}
		defer src.Close()
		checkReads(t, src)
	})
}

// checkReads reads a bounded part of src: the start, the end and the start
// of each allocated extent, checking the ReadAt contract. Corrupt grains may
// fail to read, but must fail with an error.
func checkReads(t *testing.T, src *Source) {
	ctx := context.Background()
	size := src.Size()
	if size < 0 || size%sectorSize != 0 {
		t.Fatalf("Size() = %d, want a non-negative multiple of 512", size)
	}
	exts, err := src.AllocatedExtents(ctx)
	if err != nil {
		t.Fatalf("AllocatedExtents: %v", err)
	}
	var prev draas.Extent
	for i, e := range exts {
		if e.Length <= 0 || e.Offset < 0 || e.End() > size || (i > 0 && e.Offset < prev.End()) {
			t.Fatalf("extent %d %+v: empty, outside the %d-byte disk or out of order", i, e, size)
		}
		prev = e
	}
	budget := 1 << 20
	read := func(off int64, n int) {
		if budget <= 0 {
			return
		}
		n = min(n, budget)
		budget -= n
		p := make([]byte, n)
		got, err := src.ReadAt(ctx, p, off)
		switch {
		case got < 0 || got > n:
			t.Fatalf("ReadAt(%d bytes at %d) = %d", n, off, got)
		case off >= size && (got != 0 || err == nil):
			t.Fatalf("ReadAt(%d bytes at %d) past the %d-byte disk = (%d, %v), want 0 and an error", n, off, size, got, err)
		case got < n && err == nil:
			t.Fatalf("ReadAt(%d bytes at %d) = %d with no error", n, off, got)
		case err == nil && off+int64(n) > size:
			t.Fatalf("ReadAt(%d bytes at %d) past the %d-byte disk succeeded", n, off, size)
		case errors.Is(err, io.EOF) && int64(got) != min(int64(n), max(size-off, 0)):
			t.Fatalf("ReadAt(%d bytes at %d) = (%d, EOF) on a %d-byte disk", n, off, got, size)
		}
	}
	read(0, 64<<10)
	read(max(size-1000, 0), 2000)
	for _, e := range exts {
		read(e.Offset, int(min(e.Length, 64<<10)))
	}
	if _, err := src.ReadAt(ctx, make([]byte, 1), -1); err == nil {
		t.Fatal("ReadAt at -1 succeeded")
	}
}

// TestWriteFuzzSeeds writes fuzzSeeds to testdata/fuzz/FuzzOpen when
// VMDK_WRITE_FUZZ_SEEDS=1, so that the committed corpus follows the
// builder; otherwise it checks that the committed corpus holds every seed.
func TestWriteFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzOpen")
	for name, p := range fuzzSeeds() {
		file := filepath.Join(dir, name)
		text := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", p)
		if os.Getenv("VMDK_WRITE_FUZZ_SEEDS") == "1" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(file)
		if err != nil || string(got) != text {
			t.Errorf("committed seed %s is missing or stale (%v): run VMDK_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds ./vmdk/", file, err)
		}
	}
}
