package vsphere_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/vsphere"
)

// TestChangedBlockTracking runs the backup workflow on a VM with CBT: a full
// backup, guest writes, then an incremental backup that asks vSphere (here
// the simulator's cbtSim) what changed since the first one's change IDs.
func TestChangedBlockTracking(t *testing.T) {
	s := newSim(t)
	h := s.dial(t, vsphere.Options{})
	ctx := t.Context()
	const grain = 64 << 10

	disk0 := randomBytes(7, 4<<20)
	clear(disk0[2<<20 : 3<<20]) // a hole
	disk1 := randomBytes(8, 1<<20)
	vm := newVM(t, h, int64(len(disk0)), int64(len(disk1)))
	writeDisk(t, h, vm, 0, disk0)
	writeDisk(t, h, vm, 1, disk1)
	if err := h.SetChangeTracking(ctx, vm, true); err != nil {
		t.Fatalf("SetChangeTracking: %v", err)
	}
	if err := h.PowerOn(ctx, vm); err != nil {
		t.Fatal(err)
	}

	// Full backup: read everything, keep the change IDs.
	full, err := h.BackupDisks(ctx, vm, vsphere.BackupOptions{})
	if err != nil {
		t.Fatalf("BackupDisks: %v", err)
	}
	if len(full.Disks) != 2 || full.Disks[0].ChangeID == "" || full.Disks[1].ChangeID == "" {
		t.Fatalf("BackupDisks returned disks %+v, want two with change IDs", full.Disks)
	}
	if !bytes.Equal(draastest.ReadAll(t, full.Disks[0].Source), disk0) || !bytes.Equal(draastest.ReadAll(t, full.Disks[1].Source), disk1) {
		t.Fatal("the full backup does not read what the disks hold")
	}
	alloc, err := draas.AllocatedExtents(ctx, full.Disks[0].Source)
	if err != nil {
		t.Fatalf("AllocatedExtents: %v", err)
	}
	if want := []draas.Extent{{Offset: 0, Length: 2 << 20}, {Offset: 3 << 20, Length: 1 << 20}}; !slices.Equal(alloc, want) {
		t.Errorf("AllocatedExtents = %v, want %v (the hole left out)", alloc, want)
	}
	if err := full.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := full.Close(ctx); err != nil {
		t.Errorf("Close again: %v", err)
	}

	// The guest writes three grains of disk 0, and rewrites one with the
	// same data (which cbtSim, comparing data, does not report).
	src, ok := draas.As[*vsphere.Source](full.Disks[0].Source)
	if !ok {
		t.Fatalf("draas.As finds no *vsphere.Source in a backup's %T", full.Disks[0].Source)
	}
	for _, off := range []int64{100, 1<<20 + 5, 3<<20 + 3*grain + grain - 1} {
		s.guestWrite(t, src.Path(), off, []byte{^disk0[off]})
		disk0[off] = ^disk0[off]
	}
	s.guestWrite(t, src.Path(), 30*grain, disk0[30*grain:31*grain])
	want := []draas.Extent{{Offset: 0, Length: grain}, {Offset: 1 << 20, Length: grain}, {Offset: 3<<20 + 3*grain, Length: grain}}

	// Incremental backup.
	queries := s.cbt.Queries()
	incr, err := h.BackupDisks(ctx, vm, vsphere.BackupOptions{})
	if err != nil {
		t.Fatalf("BackupDisks: %v", err)
	}
	defer incr.Close(context.Background())
	if incr.Disks[0].ChangeID == full.Disks[0].ChangeID {
		t.Errorf("the second backup has the first one's change ID %q", incr.Disks[0].ChangeID)
	}
	got, err := draas.ChangedExtents(ctx, incr.Disks[0].Source, full.Disks[0].ChangeID)
	if err != nil {
		t.Fatalf("ChangedExtents: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("ChangedExtents of disk 0 = %v, want %v", got, want)
	}
	if n := s.cbt.Queries() - queries; n != 4 {
		t.Errorf("ChangedExtents of a 4 MiB disk made %d QueryChangedDiskAreas calls, want 4 (the simulator answers a MiB at a time)", n)
	}
	if got, err := draas.ChangedExtents(ctx, incr.Disks[1].Source, full.Disks[1].ChangeID); err != nil || len(got) != 0 {
		t.Errorf("ChangedExtents of the unchanged disk 1 = %v, %v; want none", got, err)
	}
	if !bytes.Equal(draastest.ReadAll(t, incr.Disks[0].Source), disk0) {
		t.Error("the incremental backup does not read the changed disk")
	}
	for _, base := range []string{"52 0d vm-0 1/99", "draas-not-a-change-id", ""} {
		if _, err := draas.ChangedExtents(ctx, incr.Disks[0].Source, base); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("ChangedExtents since %q: %v, want draas.ErrNotFound", base, err)
		}
	}
	if err := incr.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Once the snapshot is gone, the sources would read the running disk.
	if _, err := incr.Disks[0].Source.ReadAt(ctx, make([]byte, 10), 0); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("ReadAt after Backup.Close: %v, want draas.ErrInvalid", err)
	}

	// A backup left open by a dead process is found and removed.
	leftover, err := h.BackupDisks(ctx, vm, vsphere.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := h.RemoveBackupSnapshots(ctx, vm); n != 1 || err != nil {
		t.Errorf("RemoveBackupSnapshots = %d, %v; want 1", n, err)
	}
	if err := leftover.Close(ctx); err != nil {
		t.Errorf("Close of a backup whose snapshot was removed: %v", err)
	}
	if n, err := h.RemoveBackupSnapshots(ctx, vm); n != 0 || err != nil {
		t.Errorf("RemoveBackupSnapshots again = %d, %v; want 0", n, err)
	}

	// Writing a disk through OpenDisk bypasses the tracker, so it resets
	// CBT: the old change IDs no longer work, and the caller copies all.
	if err := h.PowerOff(ctx, vm); err != nil {
		t.Fatal(err)
	}
	writeDisk(t, h, vm, 1, randomBytes(9, 1<<20))
	after, err := h.BackupDisks(ctx, vm, vsphere.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close(context.Background())
	if _, err := draas.ChangedExtents(ctx, after.Disks[0].Source, incr.Disks[0].ChangeID); !errors.Is(err, draas.ErrNotFound) {
		t.Errorf("ChangedExtents since a change ID from before OpenDisk: %v, want draas.ErrNotFound", err)
	}

	// A powered-off VM's live disk is tracked too: changes since the last
	// snapshot's change ID.
	s.guestWrite(t, src.Path(), 2<<20, []byte{1})
	live, err := h.ReadDisk(ctx, vm, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err = draas.ChangedExtents(ctx, live, after.Disks[0].ChangeID)
	if err != nil || !slices.Equal(got, []draas.Extent{{Offset: 2 << 20, Length: grain}}) {
		t.Errorf("ChangedExtents of the live disk = %v, %v; want the grain at 2 MiB", got, err)
	}
}

func TestBackupWithoutCBT(t *testing.T) {
	s := newSim(t)
	h := s.dial(t, vsphere.Options{})
	ctx := t.Context()
	content := randomBytes(4, 1<<20)
	vm := newVM(t, h, int64(len(content)))
	writeDisk(t, h, vm, 0, content)
	b, err := h.BackupDisks(ctx, vm, vsphere.BackupOptions{})
	if err != nil {
		t.Fatalf("BackupDisks: %v", err)
	}
	defer b.Close(ctx)
	d := b.Disks[0]
	if d.ChangeID != "" || d.Name != "scsi0:0" || d.Size != 1<<20 {
		t.Errorf("disk = %+v, want scsi0:0 of 1 MiB without a change ID", d)
	}
	if _, ok := draas.As[draas.ChangeTracker](d.Source); ok {
		t.Error("the source of an untracked disk is a draas.ChangeTracker")
	}
	if !bytes.Equal(draastest.ReadAll(t, d.Source), content) {
		t.Error("the backup does not read the disk")
	}
	if _, err := h.BackupDisks(ctx, "no-such-vm", vsphere.BackupOptions{}); !errors.Is(err, draas.ErrNotFound) {
		t.Errorf("BackupDisks of an unknown VM: %v, want draas.ErrNotFound", err)
	}
}
