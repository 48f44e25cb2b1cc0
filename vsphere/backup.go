package vsphere

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/opendraas/draas"
)

// BackupSnapshotName is the name of the VM snapshots [Hypervisor.BackupDisks]
// takes; [Hypervisor.RemoveBackupSnapshots] removes leftovers by it.
const BackupSnapshotName = "draas-backup"

// BackupOptions tunes [Hypervisor.BackupDisks]. The zero value is useful.
type BackupOptions struct {
	// Quiesce asks VMware Tools in the guest to flush and freeze its file
	// systems (and, on Windows, VSS writers) for the snapshot. Taking the
	// snapshot fails when the VM runs without Tools.
	Quiesce bool
}

// Backup is a consistent, read-only view of all disks of a VM at one time:
// a VM snapshot, and a source per disk reading the disk as the snapshot
// froze it. Close removes the snapshot; until then the VM runs on delta
// disks that grow with its writes, so keep a Backup open only for the copy.
type Backup struct {
	// VM is the name the backup was asked for.
	VM string
	// Snapshot is the VM snapshot the sources read.
	Snapshot types.ManagedObjectReference
	// Disks are the VM's disks at the snapshot, in the order of
	// [Hypervisor.VMShape].
	Disks []BackupDisk

	h         *Hypervisor
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// BackupDisk is one disk of a [Backup].
type BackupDisk struct {
	// Disk names the disk and gives its size, and its ChangeID is the
	// disk's CBT change ID at the snapshot, empty when the VM had Changed
	// Block Tracking off. Keep it with the backup: the next backup passes
	// it to draas.ChangedExtents of its Source to copy only what changed
	// since.
	draas.Disk
	// Source reads the disk at the snapshot: a *[Source], or, when ChangeID
	// is set, a wrapper around one that is also a draas.ChangeTracker and a
	// draas.ExtentSource (draas.As finds both).
	Source draas.BlockSource
}

// BackupDisks takes a snapshot of the named VM (without memory; quiesced if
// asked) and returns sources reading each of its disks as the snapshot froze
// them, with their CBT change IDs. The VM may run meanwhile. The caller MUST
// Close the backup to remove the snapshot; a process that dies first leaves
// a snapshot named [BackupSnapshotName], which
// [Hypervisor.RemoveBackupSnapshots] removes.
//
// The sources read the disks' flat extents over the datastore HTTP
// endpoint, so the VM must have no earlier snapshots (the snapshot would
// freeze a delta disk: draas.ErrConflict naming the fix).
func (h *Hypervisor) BackupDisks(ctx context.Context, name string, opts BackupOptions) (*Backup, error) {
	const op = "vsphere: back up"
	v, err := h.lookup(ctx, op, name)
	if err != nil {
		return nil, err
	}
	for _, d := range v.disks() {
		if d.delta {
			return nil, opErrorKind(op, fmt.Sprintf("VM %q", name), draas.ErrConflict,
				fmt.Errorf("disk %s runs on a snapshot's delta disk (%s); delete or consolidate the VM's snapshots first", d.name, d.file))
		}
	}
	task, err := v.obj.CreateSnapshot(ctx, BackupSnapshotName, "Taken by draas for a backup; removed when the backup ends.", false, opts.Quiesce)
	var info *types.TaskInfo
	if err == nil {
		info, err = task.WaitForResult(ctx)
	}
	if err != nil {
		return nil, opError(op, fmt.Sprintf("VM %q: create snapshot", name), err)
	}
	ref, ok := info.Result.(types.ManagedObjectReference)
	if !ok {
		return nil, opErrorKind(op, fmt.Sprintf("VM %q: create snapshot", name), draas.ErrTransient, fmt.Errorf("the task returned %T, not a snapshot", info.Result))
	}
	b := &Backup{VM: name, Snapshot: ref, h: h}
	if err := b.open(ctx, v); err != nil {
		return nil, errors.Join(err, b.Close(context.WithoutCancel(ctx)))
	}
	return b, nil
}

// open fills in the disks of the snapshot.
func (b *Backup) open(ctx context.Context, v *vmInfo) error {
	const op = "vsphere: back up"
	var snap mo.VirtualMachineSnapshot
	if err := property.DefaultCollector(b.h.c).RetrieveOne(ctx, b.Snapshot, []string{"config"}, &snap); err != nil {
		return opError(op, fmt.Sprintf("VM %q: configuration of snapshot %s", b.VM, b.Snapshot.Value), err)
	}
	tracked := cbtEnabled(&snap.Config)
	for i, d := range disksOf(object.VirtualDeviceList(snap.Config.Hardware.Device)) {
		f, err := b.h.flatExtent(ctx, op, b.VM, i, d)
		if err != nil {
			return err
		}
		src := &Source{h: b.h, file: f, vm: v.obj.Reference(), snapshot: &b.Snapshot, backup: b}
		bd := BackupDisk{Disk: draas.Disk{Name: d.name, Size: d.size}, Source: src}
		if tracked {
			src.changeID = d.changeID
			bd.ChangeID = d.changeID
			bd.Source = trackedSource{src}
		}
		b.Disks = append(b.Disks, bd)
	}
	return nil
}

// Close removes the backup's snapshot, consolidating the VM's disks. It is
// safe to call more than once. Afterwards the sources fail with
// draas.ErrInvalid: they would read the running VM's disk.
func (b *Backup) Close(ctx context.Context) error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		b.closeErr = b.h.removeSnapshot(ctx, b.VM, b.Snapshot)
	})
	return b.closeErr
}

func (h *Hypervisor) removeSnapshot(ctx context.Context, vm string, ref types.ManagedObjectReference) error {
	res, err := methods.RemoveSnapshot_Task(ctx, h.c, &types.RemoveSnapshot_Task{This: ref, RemoveChildren: false, Consolidate: types.NewBool(true)})
	if err == nil {
		err = object.NewTask(h.c, res.Returnval).Wait(ctx)
	}
	if err != nil && !fault.Is(err, &types.ManagedObjectNotFound{}) {
		return opError("vsphere: remove snapshot", fmt.Sprintf("%s of VM %q (remove it in vCenter, or with RemoveBackupSnapshots)", ref.Value, vm), err)
	}
	return nil
}

// RemoveBackupSnapshots removes the snapshots named [BackupSnapshotName]
// that backups of the named VM left behind (a process that died before
// Backup.Close), and returns how many it removed. Do not call it while a
// backup of the VM is open.
func (h *Hypervisor) RemoveBackupSnapshots(ctx context.Context, name string) (int, error) {
	const op = "vsphere: remove backup snapshots of"
	v, err := h.lookup(ctx, op, name)
	if err != nil {
		return 0, err
	}
	if v.mo.Snapshot == nil {
		return 0, nil
	}
	var refs []types.ManagedObjectReference
	var walk func([]types.VirtualMachineSnapshotTree)
	walk = func(trees []types.VirtualMachineSnapshotTree) {
		for _, t := range trees {
			if t.Name == BackupSnapshotName {
				refs = append(refs, t.Snapshot)
			}
			walk(t.ChildSnapshotList)
		}
	}
	walk(v.mo.Snapshot.RootSnapshotList)
	for i, ref := range refs {
		if err := h.removeSnapshot(ctx, name, ref); err != nil {
			return i, err
		}
	}
	return len(refs), nil
}
