package diskurl_test

import (
	"context"
	"fmt"
	"log"
	"net/url"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/diskurl"
)

// Copy a disk from one URL to another: open the source, create the sink
// for its size, and let blockcopy move the blocks and commit the sink.
func Example() {
	dir, err := os.MkdirTemp("", "diskurl-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "disk.raw"), make([]byte, 1<<20), 0o644); err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	// An aws.Config from aws-sdk-go-v2/config.LoadDefaultConfig, or any
	// other, for s3:// and ebs:// URLs; it is asked for only when one is used.
	var cfg aws.Config
	disks := diskurl.New(diskurl.Options{
		AWSConfig: func(context.Context) (aws.Config, error) { return cfg, nil },
	})

	src, err := disks.Open(ctx, "file://"+filepath.Join(dir, "disk.raw"))
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	dst, err := disks.Create(ctx, "vmdk://"+filepath.Join(dir, "disk.vmdk")+"?subformat=streamOptimized", src.Size(), diskurl.SinkOptions{})
	if err != nil {
		log.Fatal(err)
	}
	exts, err := diskurl.Extents(ctx, src, dst)
	if err != nil {
		log.Fatal(err)
	}
	stats, err := blockcopy.Copy(ctx, dst, src, blockcopy.Options{Extents: exts, Verify: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("copied a %d-byte disk, verified: %t\n", stats.Size, stats.Verified)

	// A URL the registry cannot use says what is wrong and how to fix it.
	_, err = disks.Create(ctx, "ebs://snap-0123456789abcdef0", src.Size(), diskurl.SinkOptions{})
	fmt.Println(err)
	// Output:
	// copied a 1048576-byte disk, verified: true
	// sink URL "ebs://snap-0123456789abcdef0": a snapshot cannot be written once completed: write ebs://new, or ebs://new?parent=snap-0123456789abcdef0 for a new snapshot incremental on it
}

// Register a scheme of one's own next to the built-in ones.
func ExampleRegistry_Register() {
	disks := diskurl.New(diskurl.Options{})
	err := disks.Register(diskurl.Scheme{
		Name:    "backup",
		Example: "backup://vm/disk",
		About:   "a disk in our own backup system",
		Open: func(ctx context.Context, u *url.URL) (diskurl.Source, error) {
			return nil, fmt.Errorf("open %s: not in this example", u)
		},
	})
	fmt.Println(err)
	_, err = disks.Create(context.Background(), "backup://vm/disk", 1<<20, diskurl.SinkOptions{})
	fmt.Println(err)
	// Output:
	// <nil>
	// sink URL "backup://vm/disk": scheme "backup" can only be read, not written
}
