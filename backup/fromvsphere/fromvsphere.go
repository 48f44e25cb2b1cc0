// Package fromvsphere lets package backup back up vSphere VMs: it adapts a
// *vsphere.Hypervisor to backup.Hypervisor, snapshotting a VM with
// vsphere.Hypervisor.BackupDisks and naming its disks for the backup store
// (vSphere's "scsi0:1" becomes "scsi0-1": store names allow letters,
// digits, '.', '_' and '-').
package fromvsphere

import (
	"context"
	"strings"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/vsphere"
)

// New returns h as a backup.Hypervisor, for backup.New; opts apply to every
// snapshot. A nil h gives nil, which backup.New rejects.
func New(h *vsphere.Hypervisor, opts vsphere.BackupOptions) backup.Hypervisor {
	if h == nil {
		return nil
	}
	return hypervisor{h: h, opts: opts}
}

type hypervisor struct {
	h    *vsphere.Hypervisor
	opts vsphere.BackupOptions
}

func (v hypervisor) Snapshot(ctx context.Context, vm string) (backup.Snapshot, error) {
	b, err := v.h.BackupDisks(ctx, vm, v.opts)
	if err != nil {
		return nil, err
	}
	return snapshot{b}, nil
}

type snapshot struct{ b *vsphere.Backup }

// DiskName turns a vSphere disk name ("scsi0:1") into a backup store disk
// name ("scsi0-1").
func DiskName(name string) string {
	return strings.NewReplacer(":", "-", " ", "-", "/", "-").Replace(name)
}

func (s snapshot) Disks() []draas.Disk {
	out := make([]draas.Disk, len(s.b.Disks))
	for i, d := range s.b.Disks {
		out[i] = d.Disk
		out[i].Name = DiskName(d.Name)
	}
	return out
}

func (s snapshot) Open(ctx context.Context, i int) (draas.BlockSource, error) {
	return s.b.Disks[i].Source, nil
}

func (s snapshot) Close(ctx context.Context) error { return s.b.Close(ctx) }
