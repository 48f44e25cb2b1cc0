package s3_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/opendraas/draas"
	s3 "github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
)

// Back up a small disk into a bucket (here an in-process fake S3) with the
// copy engine, then list the recovery point and read the disk back.
func Example() {
	ctx := context.Background()

	// An S3 endpoint on loopback. With real S3 use s3.NewFromConfig.
	srv := httptest.NewServer(gofakes3.New(s3mem.New(), gofakes3.WithAutoBucket(true)).Server())
	defer srv.Close()
	client := awss3.New(awss3.Options{
		BaseEndpoint: aws.String(srv.URL),
		UsePathStyle: true,
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("id", "secret", ""),
	})
	store := s3.New(client, "backups", "site-a", s3.Options{Encryption: s3.EncryptionS3})

	// The disk to protect: 3 MiB, of which two regions hold data.
	disk := draastest.NewDisk(3<<20, 0)
	disk.WriteAt(bytes.Repeat([]byte("boot"), 1024), 0)
	disk.WriteAt(bytes.Repeat([]byte("data"), 1024), 2<<20)

	// Write a recovery point: one sink per disk, then commit the point.
	at := time.Date(2026, 11, 26, 6, 10, 0, 0, time.UTC)
	w, err := store.BeginPoint(ctx, "web-1", []draas.Disk{{Name: "disk-0", Size: disk.Size()}}, at)
	if err != nil {
		log.Fatal(err)
	}
	// The first point of a VM has no base: the sink starts empty.
	sink, err := w.DiskOnBase(ctx, "disk-0")
	if err != nil {
		log.Fatal(err)
	}
	stats, err := blockcopy.Copy(ctx, sink, disk, blockcopy.Options{Verify: true})
	if err != nil {
		log.Fatal(err) // Copy aborted the sink; w.Abort would clean up the point
	}
	if err := w.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("copied %d blocks, verified %t\n", stats.BlocksCopied, stats.Verified)

	// List and read back.
	points, err := store.Points(ctx, "web-1")
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range points {
		fmt.Println("point", p.Time.Format(time.RFC3339), p.Disks[0].Name, p.Disks[0].Size)
	}
	src, err := store.OpenDisk(ctx, "web-1", points[0].ID, "disk-0")
	if err != nil {
		log.Fatal(err)
	}
	exts, _ := draas.AllocatedExtents(ctx, src)
	fmt.Println("allocated:", exts)
	got := make([]byte, src.Size())
	if _, err := src.ReadAt(ctx, got, 0); err != nil {
		log.Fatal(err)
	}
	fmt.Println("identical:", bytes.Equal(got, disk.Bytes()))
	// Output:
	// copied 2 blocks, verified true
	// point 2026-11-26T06:10:00Z disk-0 3145728
	// allocated: [{0 524288} {2097152 524288}]
	// identical: true
}
