package draastest_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/replicate"
)

// Example_workflowWithoutSimulator backs a VM up into an in-memory backup
// store and replicates it into an in-memory copy store: what a unit test of
// a workflow needs, with no AWS simulator. The same code runs against
// *s3.Store and *ebs.Copies.
func Example_workflowWithoutSimulator() {
	ctx := context.Background()
	backups := draastest.NewBackupStore(0, nil)
	copies := draastest.NewCopyStore(draastest.CopyStoreOptions{})

	// A VM with one 4 MiB disk with data in two 512 KiB blocks.
	disk := draastest.NewDisk(4<<20, 0)
	disk.WriteAt([]byte("boot sector"), 0)
	disk.WriteAt([]byte("data"), 1<<20-4)
	b, err := backup.New(oneDiskVM{disk}, backups, backup.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := b.Run(ctx, "db"); err != nil {
		log.Fatal(err)
	}

	plan := draas.Plan{Name: "shop", VMs: []draas.VM{{Name: "db"}}, ReplicationInterval: time.Hour}
	r, err := replicate.New(plan, backups, copies, replicate.Options{})
	if err != nil {
		log.Fatal(err)
	}
	res, err := r.ReplicateVM(ctx, "db")
	if err != nil {
		log.Fatal(err)
	}
	set, _ := draas.LatestComplete(copies.All())
	fmt.Printf("%s: %d bytes sent; complete set of %d copy, %s\n", res.Action, res.BytesSent, len(set.Copies), set.Copies[0].State)
	// Output:
	// full: 1048576 bytes sent; complete set of 1 copy, completed
}

// oneDiskVM is a backup.Hypervisor of a VM with one disk and no change
// tracking.
type oneDiskVM struct{ d *draastest.Disk }

func (v oneDiskVM) Snapshot(context.Context, string) (backup.Snapshot, error) { return v, nil }
func (v oneDiskVM) Disks() []draas.Disk                                       { return []draas.Disk{{Name: "os", Size: v.d.Size()}} }
func (v oneDiskVM) Open(context.Context, int) (draas.BlockSource, error)      { return v.d, nil }
func (v oneDiskVM) Close(context.Context) error                               { return nil }
