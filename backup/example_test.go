package backup_test

import (
	"context"
	"fmt"
	"log"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/draastest"
)

// vm is a one-disk VM whose snapshots record a version of the disk as their
// change ID, as vSphere's CBT would (backup/fromvsphere adapts a real
// vSphere VM).
type vm struct {
	disk *draastest.Disk
	n    int
}

func (v *vm) Snapshot(ctx context.Context, name string) (backup.Snapshot, error) {
	v.n++
	id := fmt.Sprintf("52 %d", v.n)
	v.disk.Version(id)
	return snap{v.disk, id}, nil
}

type snap struct {
	d  *draastest.Disk
	id string
}

func (s snap) Disks() []draas.Disk {
	return []draas.Disk{{Name: "os", Size: s.d.Size(), ChangeID: s.id}}
}
func (s snap) Open(context.Context, int) (draas.BlockSource, error) { return s.d, nil }
func (s snap) Close(context.Context) error                          { return nil }

// Example backs a VM up twice: the first time in full, the second reading
// only what its change tracking reports.
func Example() {
	ctx := context.Background()
	srv, err := awssim.New(awssim.Options{Buckets: []string{"backups"}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	store := s3.New(srv.S3(), "backups", "site-a", s3.Options{})
	v := &vm{disk: draastest.NewDisk(8<<20, 512<<10)}
	v.disk.WriteAt([]byte("boot"), 0)
	v.disk.WriteAt([]byte("data"), 5<<20)

	b, err := backup.New(v, store, backup.Options{})
	if err != nil {
		log.Fatal(err)
	}
	for i := range 2 {
		res, err := b.Run(ctx, "db")
		if err != nil {
			log.Fatal(err)
		}
		d := res.Disks[0]
		fmt.Printf("backup %d: incremental %t, read %d KiB\n", i+1, d.Incremental, d.Stats.BytesRead>>10)
		v.disk.WriteAt([]byte("new"), 7<<20) // the guest writes
	}
	// Output:
	// backup 1: incremental false, read 1024 KiB
	// backup 2: incremental true, read 512 KiB
}
