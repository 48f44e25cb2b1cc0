package vmdk_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/vmdk"
)

func block(idx int64, data []byte) draas.Block {
	return draas.Block{Index: idx, Offset: idx * vmdk.SinkBlockSize, Data: data, Checksum: sha256.Sum256(data)}
}

func TestCreateOptions(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		size int64
		opts vmdk.CreateOptions
	}{
		{"negative size", -1, vmdk.CreateOptions{}},
		{"unknown format", 1 << 20, vmdk.CreateOptions{Format: 7}},
		{"unknown adapter", 1 << 20, vmdk.CreateOptions{AdapterType: "scsi"}},
		{"compression level", 1 << 20, vmdk.CreateOptions{CompressionLevel: 10}},
	} {
		path := filepath.Join(dir, "x.vmdk")
		if s, err := vmdk.Create(path, c.size, c.opts); !errors.Is(err, draas.ErrInvalid) {
			if s != nil {
				s.Abort(context.Background())
			}
			t.Errorf("%s: Create: %v, want an error wrapping draas.ErrInvalid", c.name, err)
		}
	}
	for _, s := range []string{"", "streamoptimized", "monolithicSparse", "MONOLITHICFLAT"} {
		if _, err := vmdk.ParseFormat(s); err != nil {
			t.Errorf("ParseFormat(%q): %v", s, err)
		}
	}
	if _, err := vmdk.ParseFormat("vmfs"); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("ParseFormat(vmfs): %v, want draas.ErrInvalid", err)
	}
}

// TestCreateNoClobber checks that an existing disk is never replaced
// without Overwrite, and replaced only at Commit with it.
func TestCreateNoClobber(t *testing.T) {
	ctx := context.Background()
	for _, f := range subformats {
		t.Run(f.String(), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "d.vmdk")
			old := content("random", 1<<20)
			writeVMDK(t, path, old, vmdk.CreateOptions{Format: f})
			if _, err := vmdk.Create(path, 1<<20, vmdk.CreateOptions{Format: f}); !errors.Is(err, draas.ErrConflict) {
				t.Fatalf("Create over an existing disk: %v, want draas.ErrConflict", err)
			}

			s, err := vmdk.Create(path, 1<<20, vmdk.CreateOptions{Format: f, Overwrite: true})
			if err != nil {
				t.Fatal(err)
			}
			neu := content("sparse", 1<<20)
			for i := range int64(2) {
				if err := s.WriteBlock(ctx, block(i, neu[i*vmdk.SinkBlockSize:(i+1)*vmdk.SinkBlockSize])); err != nil {
					t.Fatal(err)
				}
			}
			if got := draastest.ReadAll(t, openT(t, path)); !bytes.Equal(got, old) {
				t.Fatal("the old disk changed before Commit")
			}
			if err := s.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if got := draastest.ReadAll(t, openT(t, path)); !bytes.Equal(got, neu) {
				t.Fatal("the new disk is not in place after Commit")
			}
			assertNoPartials(t, dir)
		})
	}
}

// TestCommitRefusesNewFile checks that a file that appears at the path
// while the sink writes is not replaced without Overwrite.
func TestCommitRefusesNewFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "d.vmdk")
	s, err := vmdk.Create(path, 1<<20, vmdk.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); !errors.Is(err, draas.ErrConflict) {
		t.Fatalf("Commit: %v, want draas.ErrConflict", err)
	}
	if err := s.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "precious" {
		t.Fatalf("the file that appeared was replaced: %q", got)
	}
	assertNoPartials(t, dir)
}

// TestAbortRemovesPartials checks that Abort leaves nothing behind.
func TestAbortRemovesPartials(t *testing.T) {
	ctx := context.Background()
	for _, f := range subformats {
		dir := t.TempDir()
		s, err := vmdk.Create(filepath.Join(dir, "d.vmdk"), 3<<20, vmdk.CreateOptions{Format: f})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WriteBlock(ctx, block(1, content("random", vmdk.SinkBlockSize))); err != nil {
			t.Fatal(err)
		}
		if err := s.Abort(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Abort(ctx); err != nil {
			t.Errorf("%s: second Abort: %v", f, err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%s: Abort left %v", f, ents)
		}
	}
}

func assertNoPartials(t *testing.T, dir string) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.draas-partial"))
	if len(m) > 0 {
		t.Errorf("temporary files left behind: %v", m)
	}
}

// TestSinkSectorRounding checks a disk whose size is not a whole number of
// sectors: Size rounds up, and the last block may end at either size.
func TestSinkSectorRounding(t *testing.T) {
	ctx := context.Background()
	const size = vmdk.SinkBlockSize + 1000
	data := content("random", size)
	for _, f := range subformats {
		for _, end := range []int{size, 1024 + vmdk.SinkBlockSize} {
			path := filepath.Join(t.TempDir(), "d.vmdk")
			s, err := vmdk.Create(path, size, vmdk.CreateOptions{Format: f})
			if err != nil {
				t.Fatal(err)
			}
			if s.Size() != vmdk.SinkBlockSize+1024 {
				t.Fatalf("Size() = %d, want %d", s.Size(), vmdk.SinkBlockSize+1024)
			}
			last := append(bytes.Clone(data[vmdk.SinkBlockSize:]), make([]byte, end-size)...)
			if err := s.WriteBlock(ctx, block(1, data[vmdk.SinkBlockSize-1000:vmdk.SinkBlockSize+999])); !errors.Is(err, draas.ErrInvalid) {
				t.Errorf("a misaligned block: %v, want draas.ErrInvalid", err)
			}
			if err := s.WriteBlock(ctx, block(1, last[:999])); !errors.Is(err, draas.ErrInvalid) {
				t.Errorf("a last block ending before the size: %v, want draas.ErrInvalid", err)
			}
			if err := s.WriteBlock(ctx, block(1, last)); err != nil {
				t.Fatalf("%s: a last block of %d bytes: %v", f, len(last), err)
			}
			if err := s.WriteBlock(ctx, block(0, data[:vmdk.SinkBlockSize])); err != nil {
				t.Fatal(err)
			}
			if err := s.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			got := draastest.ReadAll(t, openT(t, path))
			if !bytes.Equal(got[:size], data) || !draas.IsZero(got[size:]) {
				t.Errorf("%s, last block ending at %d: content differs", f, end)
			}
		}
	}
}

// TestSinkRewriteSameData checks that writing a block again with the same
// data stores nothing more, and with other data stores the new data.
func TestSinkRewriteSameData(t *testing.T) {
	ctx := context.Background()
	for _, f := range []vmdk.Format{vmdk.StreamOptimized, vmdk.MonolithicSparse} {
		path := filepath.Join(t.TempDir(), "d.vmdk")
		s, err := vmdk.Create(path, 2*vmdk.SinkBlockSize, vmdk.CreateOptions{Format: f})
		if err != nil {
			t.Fatal(err)
		}
		a, b := content("random", vmdk.SinkBlockSize), content("compressible", vmdk.SinkBlockSize)
		for range 3 {
			if err := s.WriteBlock(ctx, block(0, a)); err != nil {
				t.Fatal(err)
			}
		}
		fi, _ := os.Stat(path + ".draas-partial")
		if err := s.WriteBlock(ctx, block(1, b)); err != nil {
			t.Fatal(err)
		}
		if err := s.WriteBlock(ctx, block(1, a)); err != nil { // new data
			t.Fatal(err)
		}
		if err := s.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 2*vmdk.SinkBlockSize {
			t.Errorf("%s: three writes of one block took %d bytes", f, fi.Size())
		}
		if got := draastest.ReadAll(t, openT(t, path)); !bytes.Equal(got, append(bytes.Clone(a), a...)) {
			t.Errorf("%s: the rewritten block does not read back its new data", f)
		}
	}
}

// TestSinkMetadata checks what the descriptor records: adapter type and
// geometry, and that the compression level option takes effect.
func TestSinkMetadata(t *testing.T) {
	dir := t.TempDir()
	data := content("compressible", 1<<20)
	sizes := map[int]int64{}
	for _, level := range []int{0, 9} {
		path := filepath.Join(dir, "l.vmdk")
		writeVMDK(t, path, data, vmdk.CreateOptions{CompressionLevel: level, AdapterType: "ide", Overwrite: true})
		fi, _ := os.Stat(path)
		sizes[level] = fi.Size()
		info := openT(t, path).Info()
		want := vmdk.Info{CreateType: "streamOptimized", AdapterType: "ide", Geometry: vmdk.Geometry{Cylinders: 3, Heads: 16, Sectors: 63}, GrainSize: 64 << 10, Compressed: true}
		info.CID, info.Files = 0, nil
		if !reflect.DeepEqual(info, want) {
			t.Errorf("Info() = %+v, want %+v", info, want)
		}
	}
	if sizes[9] >= sizes[0] {
		t.Errorf("level 9 made %d bytes, level 1 %d: the level has no effect", sizes[9], sizes[0])
	}
	path := filepath.Join(dir, "f.vmdk")
	writeVMDK(t, path, data, vmdk.CreateOptions{Format: vmdk.MonolithicFlat})
	info := openT(t, path).Info()
	if info.AdapterType != "lsilogic" || info.Geometry.Heads != 255 || len(info.Files) != 2 || filepath.Base(info.Files[1]) != "f-flat.vmdk" {
		t.Errorf("monolithicFlat Info() = %+v", info)
	}
}

// TestSinkEmptyDisk checks that a disk of size 0 is refused with
// draas.ErrInvalid in every subformat, leaving no file behind: no reader
// accepts a VMDK of 0 sectors (see TestQemuRejectsEmptyVMDK).
func TestSinkEmptyDisk(t *testing.T) {
	for _, f := range subformats {
		dir := t.TempDir()
		path := filepath.Join(dir, "e.vmdk")
		s, err := vmdk.Create(path, 0, vmdk.CreateOptions{Format: f})
		if !errors.Is(err, draas.ErrInvalid) || !strings.Contains(fmt.Sprint(err), "0 bytes") {
			if s != nil {
				s.Abort(context.Background())
			}
			t.Errorf("%s: Create of a 0-byte disk: %v, want draas.ErrInvalid saying why", f, err)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("%s: a refused Create left %v", f, left)
		}
	}
}

// TestFlatHoles checks that a monolithicFlat disk keeps its zero blocks as
// holes and that Source reports only the data as allocated.
func TestFlatHoles(t *testing.T) {
	data := make([]byte, 12<<20)
	copy(data, content("random", 64<<10))
	copy(data[len(data)-1000:], content("random", 1000))
	path := filepath.Join(t.TempDir(), "h.vmdk")
	writeVMDK(t, path, data, vmdk.CreateOptions{Format: vmdk.MonolithicFlat})
	src := openT(t, path)
	exts, err := src.AllocatedExtents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, e := range exts {
		total += e.Length
	}
	if total == src.Size() {
		t.Skip("the file system reports no holes (SEEK_DATA)")
	}
	if total > 4<<20 {
		t.Errorf("AllocatedExtents cover %d bytes of a disk with 65 KiB of data: %v", total, exts)
	}
	checkExtentsCover(t, src, data)
}
