package replicate_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/replicate"
)

// Example replicates a VM's recovery points from a backup store in S3 into
// DR copies (EBS snapshots): in full the first time, then only what
// changed. It runs against awssim; against AWS, build the clients from
// config.LoadDefaultConfig instead.
func Example() {
	ctx := context.Background()
	srv, err := awssim.New(awssim.Options{Buckets: []string{"backups"}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	store := s3.New(srv.S3(), "backups", "prod", s3.Options{})
	copies := ebs.NewCopies(srv.EBS(), srv.EC2(), ebs.CopiesOptions{})

	// A recovery point of VM db: a 4 MiB disk with two blocks of data.
	disk := draastest.NewDisk(4<<20, 512<<10)
	disk.WriteAt([]byte("boot"), 0)
	disk.WriteAt([]byte("data"), 3<<20)
	backup := func(t time.Time) {
		w, err := store.BeginPoint(ctx, "db", []draas.Disk{{Name: "os", Size: disk.Size()}}, t)
		if err != nil {
			log.Fatal(err)
		}
		sink, err := w.DiskOnBase(ctx, "os") // starts from the previous point's disk

		if err != nil {
			log.Fatal(err)
		}
		if _, err := blockcopy.Copy(ctx, sink, disk, blockcopy.Options{}); err != nil {
			log.Fatal(err)
		}
		if err := w.Commit(ctx); err != nil {
			log.Fatal(err)
		}
	}
	t0 := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	backup(t0)

	plan := draas.Plan{Name: "shop", VMs: []draas.VM{{Name: "db"}}, ReplicationInterval: 15 * time.Minute}
	r, err := replicate.New(plan, store, copies, replicate.Options{})
	if err != nil {
		log.Fatal(err)
	}
	res, err := r.ReplicateVM(ctx, "db")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Action, res.BlocksSent, "blocks")

	disk.WriteAt([]byte("more"), 2<<20) // the guest writes; a new backup follows
	backup(t0.Add(15 * time.Minute))
	res, err = r.ReplicateVM(ctx, "db")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Action, res.BlocksSent, "block, old copy deleted:", len(res.Deleted) == 1)
	// Output:
	// full 2 blocks
	// incremental 1 block, old copy deleted: true
}
