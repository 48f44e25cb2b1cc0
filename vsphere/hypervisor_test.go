package vsphere_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/vsphere"
)

func TestHypervisor(t *testing.T) {
	s := newSim(t)
	h := s.dial(t, vsphere.Options{})
	draastest.TestHypervisor(t, func(t *testing.T) draas.Hypervisor { return h })
}

// vmCounter names the VMs the conformance suites create.
var vmCounter atomic.Int64

func newVM(t *testing.T, h *vsphere.Hypervisor, sizes ...int64) string {
	t.Helper()
	name := fmt.Sprintf("draas-test-%d", vmCounter.Add(1))
	shape := draas.Shape{CPUs: 1, MemoryMiB: 256}
	for _, sz := range sizes {
		shape.Disks = append(shape.Disks, draas.Disk{Size: sz})
	}
	if err := h.CreateVM(t.Context(), draas.VMRequest{Name: name, Shape: shape}); err != nil {
		t.Fatalf("CreateVM: %v", err)
	}
	return name
}

// writeDisk writes content to a VM's disk through OpenDisk, skipping zero
// blocks as a copier does.
func writeDisk(t *testing.T, h *vsphere.Hypervisor, vm string, disk int, content []byte) {
	t.Helper()
	ctx := t.Context()
	sink, err := h.OpenDisk(ctx, vm, disk)
	if err != nil {
		t.Fatalf("OpenDisk(%s, %d): %v", vm, disk, err)
	}
	// Pad the content to the disk's size: vSphere rounds sizes up to KiB.
	if size := sink.(*vsphere.Sink).Size(); int64(len(content)) < size {
		content = append(content[:len(content):len(content)], make([]byte, size-int64(len(content)))...)
	}
	bs := sink.BlockSize()
	for off := 0; off < len(content); off += bs {
		data := content[off:min(off+bs, len(content))]
		if draas.IsZero(data) {
			continue
		}
		b := draas.Block{Index: int64(off / bs), Offset: int64(off), Data: data, Checksum: sha256.Sum256(data)}
		if err := sink.WriteBlock(ctx, b); err != nil {
			sink.Abort(ctx)
			t.Fatalf("WriteBlock at %d: %v", off, err)
		}
	}
	if err := sink.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), 'v', 's', 'p', 'h', 'e', 'r', 'e'})
	p := make([]byte, n)
	r.Read(p)
	return p
}

func TestVolumeSink(t *testing.T) {
	s := newSim(t)
	s.cbt.fastReads.Store(true)
	tmp := t.TempDir()
	h := s.dial(t, vsphere.Options{TempDir: tmp})
	draastest.TestVolumeSink(t, func(t *testing.T, size int64) draastest.SinkHarness {
		vm := newVM(t, h, size)
		sink, err := h.OpenDisk(t.Context(), vm, 0)
		if err != nil {
			t.Fatalf("OpenDisk: %v", err)
		}
		vs := sink.(*vsphere.Sink)
		local := s.localPath(t, vs.Path())
		return draastest.SinkHarness{
			Sink: sink,
			Size: vs.Size(),
			// ReadBack reads the datastore file vcsim keeps on local disk,
			// independently of this package. vcsim creates a disk's flat
			// file empty; only a Commit fills it.
			ReadBack: func(ctx context.Context) ([]byte, error) {
				data, err := os.ReadFile(local)
				if err != nil {
					return nil, err
				}
				if len(data) == 0 {
					return nil, fmt.Errorf("%s is empty: %w", local, draas.ErrNotFound)
				}
				if int64(len(data)) != vs.Size() {
					return nil, fmt.Errorf("%s holds %d bytes, want %d", local, len(data), vs.Size())
				}
				return data, nil
			},
		}
	})
	// Every sink was committed or aborted: no temporary file is left.
	if left, err := os.ReadDir(tmp); err != nil || len(left) > 0 {
		t.Errorf("temporary files left in Options.TempDir: %v (%v)", left, err)
	}
}

func TestBlockSource(t *testing.T) {
	s := newSim(t)
	s.cbt.fastReads.Store(true)
	h := s.dial(t, vsphere.Options{})
	open := func(t *testing.T, content []byte) *vsphere.Source {
		if len(content) == 0 {
			t.Skip("vSphere has no empty disks")
		}
		vm := newVM(t, h, int64(len(content)))
		writeDisk(t, h, vm, 0, content)
		src, err := h.ReadDisk(t.Context(), vm, 0)
		if err != nil {
			t.Fatalf("ReadDisk: %v", err)
		}
		return src.(*vsphere.Source)
	}
	t.Run("ReadDisk", func(t *testing.T) {
		draastest.TestBlockSource(t, func(t *testing.T, content []byte) draas.BlockSource { return open(t, content) })
	})
	t.Run("Backup", func(t *testing.T) {
		// A snapshot's disks with CBT: a ChangeTracker and ExtentSource.
		draastest.TestBlockSource(t, func(t *testing.T, content []byte) draas.BlockSource {
			if len(content) == 0 {
				t.Skip("vSphere has no empty disks")
			}
			if len(content) > 64<<10 && !hasZeroGrain(content) {
				t.Skip("a dense disk: the ReadDisk run checks reading it, this one CBT's extents of sparse ones")
			}
			vm := newVM(t, h, int64(len(content)))
			writeDisk(t, h, vm, 0, content)
			if err := h.SetChangeTracking(t.Context(), vm, true); err != nil {
				t.Fatalf("SetChangeTracking: %v", err)
			}
			b, err := h.BackupDisks(t.Context(), vm, vsphere.BackupOptions{})
			if err != nil {
				t.Fatalf("BackupDisks: %v", err)
			}
			t.Cleanup(func() { b.Close(context.Background()) })
			src := b.Disks[0].Source
			if _, ok := draas.As[draas.ChangeTracker](src); !ok {
				t.Fatalf("the source of a tracked disk is a %T, not a draas.ChangeTracker", src)
			}
			return src
		})
	})
}

// hasZeroGrain reports whether p holds an all-zero, aligned 64 KiB grain.
func hasZeroGrain(p []byte) bool {
	for off := 0; off+64<<10 <= len(p); off += 64 << 10 {
		if draas.IsZero(p[off : off+64<<10]) {
			return true
		}
	}
	return false
}

// TestShapeRoundTrip reads the shape of one of vcsim's VMs, creates a VM of
// that shape and reads it back.
func TestShapeRoundTrip(t *testing.T) {
	s := newSim(t)
	h := s.dial(t, vsphere.Options{})
	ctx := t.Context()
	src, err := h.VM(ctx, "DC0_H0_VM0")
	if err != nil {
		t.Fatalf("VM: %v", err)
	}
	if src.CPUs <= 0 || src.MemoryMiB <= 0 || len(src.Disks) == 0 || len(src.Networks) == 0 {
		t.Fatalf("VM(DC0_H0_VM0) = %+v, want CPUs, memory, disks and networks", src)
	}
	want := draas.Shape{CPUs: 4, MemoryMiB: 2048, Firmware: "efi", Disks: append(src.Disks, draas.Disk{Size: 3<<20 + 100})}
	req := draas.VMRequest{Name: "copy-of-vm0", Shape: want}
	if err := h.CreateVM(ctx, req); err != nil {
		t.Fatalf("CreateVM: %v", err)
	}
	got, err := h.VMShape(ctx, req.Name)
	if err != nil {
		t.Fatalf("VMShape: %v", err)
	}
	want.Disks[len(want.Disks)-1].Size = 3<<20 + 1024 // rounded up to KiB
	if got.CPUs != want.CPUs || got.MemoryMiB != want.MemoryMiB || got.Firmware != want.Firmware ||
		!slices.EqualFunc(got.Disks, want.Disks, func(a, b draas.Disk) bool { return a.Size == b.Size }) {
		t.Errorf("VMShape = %+v, want %+v", got, want)
	}
	for i, d := range got.Disks {
		if wantName := fmt.Sprintf("scsi0:%d", i); d.Name != wantName {
			t.Errorf("disk %d is named %q, want %q", i, d.Name, wantName)
		}
	}
	vm, err := h.VM(ctx, req.Name)
	if err != nil {
		t.Fatalf("VM: %v", err)
	}
	if !slices.Equal(vm.Networks, []string{"VM Network"}) {
		t.Errorf("VM networks = %q, want the default [VM Network]", vm.Networks)
	}
	// The same request again is a no-op; the rounded size is the same shape.
	if err := h.CreateVM(ctx, req); err != nil {
		t.Errorf("CreateVM again: %v", err)
	}
	if err := h.Reconfigure(ctx, req.Name, 2, 4096); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if got, err := h.VMShape(ctx, req.Name); err != nil || got.CPUs != 2 || got.MemoryMiB != 4096 {
		t.Errorf("VMShape after Reconfigure(2, 4096) = %+v, %v", got, err)
	}
	if err := h.CreateVM(ctx, req); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("CreateVM after Reconfigure: %v, want draas.ErrConflict", err)
	}
}

func TestCreateVMPlacement(t *testing.T) {
	s := newSim(t)
	h := s.dial(t, vsphere.Options{SCSIController: "lsilogic"})
	ctx := t.Context()
	shape := draas.Shape{CPUs: 1, MemoryMiB: 128, Disks: make([]draas.Disk, 17)}
	for i := range shape.Disks {
		shape.Disks[i].Size = 1 << 20
	}
	req := draas.VMRequest{Name: "placed", Shape: shape, Datacenter: "DC0", Host: "DC0_H0", Datastore: "LocalDS_0", Network: "DC0_DVPG0"}
	if err := h.CreateVM(ctx, req); err != nil {
		t.Fatalf("CreateVM: %v", err)
	}
	vm, err := h.VM(ctx, "placed")
	if err != nil {
		t.Fatalf("VM: %v", err)
	}
	if len(vm.Disks) != 17 || vm.Disks[14].Name != "scsi0:15" || vm.Disks[15].Name != "scsi1:0" {
		t.Errorf("17 disks are named %v, want scsi0:0…scsi0:15 without scsi0:7, then scsi1:0", vm.Disks)
	}
	if !slices.Equal(vm.Networks, []string{"DC0_DVPG0"}) {
		t.Errorf("networks = %q, want [DC0_DVPG0]", vm.Networks)
	}
	// Disks on the second controller work like the others.
	content := randomBytes(3, 1<<20)
	writeDisk(t, h, "placed", 16, content)
	src, err := h.ReadDisk(ctx, "placed", 16)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(draastest.ReadAll(t, src), content) {
		t.Error("disk 16 does not read back what was written")
	}

	for _, bad := range []draas.VMRequest{
		{Name: "", Shape: shape},
		{Name: "x", Shape: draas.Shape{CPUs: 0, MemoryMiB: 1}},
		{Name: "x", Shape: draas.Shape{CPUs: 1, MemoryMiB: 1, Firmware: "uefi"}},
		{Name: "x", Shape: draas.Shape{CPUs: 1, MemoryMiB: 1, Disks: []draas.Disk{{Size: 0}}}},
	} {
		if err := h.CreateVM(ctx, bad); !errors.Is(err, draas.ErrInvalid) {
			t.Errorf("CreateVM(%+v): %v, want draas.ErrInvalid", bad, err)
		}
	}
	for _, bad := range []draas.VMRequest{
		{Name: "x", Shape: shape, Datastore: "NoSuchDS"},
		{Name: "x", Shape: shape, Cluster: "NoSuchCluster"},
		{Name: "x", Shape: shape, Network: "NoSuchNet"},
	} {
		err := h.CreateVM(ctx, bad)
		if !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("CreateVM with %+v: %v, want draas.ErrNotFound", bad, err)
		}
	}
}

func TestDisksWhilePoweredOn(t *testing.T) {
	s := newSim(t)
	h := s.dial(t, vsphere.Options{})
	ctx := t.Context()
	vm := newVM(t, h, 1<<20)
	sink, err := h.OpenDisk(ctx, vm, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.PowerOn(ctx, vm); err != nil {
		t.Fatal(err)
	}
	if _, err := h.OpenDisk(ctx, vm, 0); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("OpenDisk of a running VM: %v, want draas.ErrConflict", err)
	}
	if _, err := h.ReadDisk(ctx, vm, 0); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("ReadDisk of a running VM: %v, want draas.ErrConflict", err)
	}
	// A sink opened before the VM was powered on refuses to commit.
	if err := sink.Commit(ctx); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("Commit after PowerOn: %v, want draas.ErrConflict", err)
	}
	if err := sink.Abort(ctx); err != nil {
		t.Errorf("Abort after a failed Commit: %v", err)
	}
}

func TestSourceErrors(t *testing.T) {
	s := newSim(t)
	h := s.dial(t, vsphere.Options{})
	ctx := t.Context()
	vm := newVM(t, h, 2<<20)
	src, err := h.ReadDisk(ctx, vm, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := draas.As[draas.ChangeTracker](src); ok {
		t.Error("the source of a VM without CBT is a draas.ChangeTracker")
	}
	if _, err := draas.ChangedExtents(ctx, src, "*"); !errors.Is(err, draas.ErrNotFound) {
		t.Errorf("ChangedExtents without CBT: %v, want draas.ErrNotFound", err)
	}
	// A thin flat file shorter than its disk reads as zeros past its end,
	// also in a read that spans the end.
	content := randomBytes(5, 2<<20)
	writeDisk(t, h, vm, 0, content)
	if err := os.Truncate(s.localPath(t, src.(*vsphere.Source).Path()), 1<<20+100); err != nil {
		t.Fatal(err)
	}
	clear(content[1<<20+100:])
	if !bytes.Equal(draastest.ReadAll(t, src), content) {
		t.Error("a short flat file does not read as its data followed by zeros")
	}
	p := make([]byte, 1000)
	if n, err := src.ReadAt(ctx, p, 1<<20+50); n != len(p) || err != nil || !bytes.Equal(p, content[1<<20+50:1<<20+1050]) {
		t.Errorf("ReadAt across the file's end = %d, %v, or wrong bytes", n, err)
	}

	// The flat file disappears: reads fail with draas.ErrNotFound naming it.
	if err := os.Remove(s.localPath(t, src.(*vsphere.Source).Path())); err != nil {
		t.Fatal(err)
	}
	_, err = src.ReadAt(ctx, make([]byte, 10), 0)
	if !errors.Is(err, draas.ErrNotFound) || !contains(err.Error(), src.(*vsphere.Source).Path()) {
		t.Errorf("ReadAt of a deleted file: %v, want draas.ErrNotFound naming the file", err)
	}
	if n, err := src.ReadAt(ctx, p[:1], src.Size()); n != 0 || err != io.EOF {
		t.Errorf("ReadAt at Size = %d, %v; want 0, io.EOF", n, err)
	}
}

// TestOpenDiskWritesInPlace checks that a second sink keeps every block it
// does not write: failback's cut-over copies only changed blocks onto the
// disk its pre-seed filled.
func TestOpenDiskWritesInPlace(t *testing.T) {
	s := newSim(t)
	h := s.dial(t, vsphere.Options{})
	ctx := t.Context()
	const size = 4 << 20
	req := draas.VMRequest{Name: "in-place", Shape: draas.Shape{CPUs: 1, MemoryMiB: 512, Disks: []draas.Disk{{Size: size}}}}
	if err := h.CreateVM(ctx, req); err != nil {
		t.Fatalf("CreateVM: %v", err)
	}
	content := bytes.Repeat([]byte("draas in place "), size/15+1)[:size]
	full := draastest.DiskFrom(content, vsphere.SinkBlockSize)
	sink, err := h.OpenDisk(ctx, req.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if draas.NeedsZeroWrites(sink) {
		t.Error("a new, empty disk needs no zero writes")
	}
	if _, err := blockcopy.Copy(ctx, sink, full, blockcopy.Options{}); err != nil {
		t.Fatalf("full copy: %v", err)
	}
	// Change one block, zero another, and copy only those two.
	full.WriteAt(bytes.Repeat([]byte{9}, 100), 1<<20+5)
	full.WriteAt(make([]byte, vsphere.SinkBlockSize), 3<<20)
	sink, err = h.OpenDisk(ctx, req.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !draas.NeedsZeroWrites(sink) {
		t.Error("a disk with data needs zero writes")
	}
	st, err := blockcopy.Copy(ctx, sink, full, blockcopy.Options{Verify: true, Extents: []draas.Extent{{Offset: 1 << 20, Length: 1 << 20}, {Offset: 3 << 20, Length: 1 << 20}}})
	if err != nil {
		t.Fatalf("incremental copy: %v", err)
	}
	if st.BlocksCopied != 2 {
		t.Errorf("copied %d blocks, want 2", st.BlocksCopied)
	}
	src, err := h.ReadDisk(ctx, req.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size)
	if _, err := src.ReadAt(ctx, got, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if !bytes.Equal(got, full.Bytes()) {
		t.Error("the disk does not hold the full copy plus the two changed blocks")
	}
}
