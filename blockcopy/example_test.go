package blockcopy_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"

	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/local"
)

// ExampleCopy copies a sparse raw disk image into a new file: the holes cost
// nothing, the data is hashed once per block, and the verify pass reads the
// result back.
func ExampleCopy() {
	dir, err := os.MkdirTemp("", "draas-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// A 4 MiB disk that holds 1 MiB of data at 1 MiB; the rest is a hole.
	disk := filepath.Join(dir, "disk.raw")
	if err := writeSparseFile(disk, 4<<20, 1<<20, bytes.Repeat([]byte("draas"), 1<<20/5+1)[:1<<20]); err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	src, err := local.Open(disk)
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	dst, err := local.Create(filepath.Join(dir, "copy.raw"), src.Size(), local.SinkOptions{})
	if err != nil {
		log.Fatal(err)
	}
	stats, err := blockcopy.Copy(ctx, dst, src, blockcopy.Options{
		Concurrency: 4,    // blocks in flight
		Verify:      true, // read the committed copy back and compare
	})
	if err != nil {
		log.Fatal(err) // dst was aborted: no half-written copy.raw is left
	}
	fmt.Printf("copied %d bytes, skipped %d zero bytes, verified: %t\n",
		stats.BytesCopied, stats.BytesZero, stats.Verified)
	// Output:
	// copied 1048576 bytes, skipped 3145728 zero bytes, verified: true
}

// writeSparseFile creates a sparse file of size bytes holding data at off.
func writeSparseFile(path string, size, off int64, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteAt(data, off); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ExampleProgressMux watches two copies running at once through one
// callback: each event says which VM and disk it belongs to, and the callback
// is never called twice at the same time, so it needs no lock.
func ExampleProgressMux() {
	const size, blockSize = 1 << 20, 64 << 10
	done := map[string]int64{}
	mux := blockcopy.NewProgressMux(func(p blockcopy.DiskProgress) {
		if p.Done {
			done[p.VM+" "+p.Disk] = p.Written + p.SkippedZero
		}
	})

	var wg sync.WaitGroup
	for _, disk := range []string{"2000", "2001"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := draastest.DiskFrom(bytes.Repeat([]byte{1}, size), blockSize)
			dst := draastest.NewSink(size, blockSize, draastest.SinkOptions{})
			if _, err := blockcopy.Copy(context.Background(), dst, src, blockcopy.Options{
				Progress: mux.For("web", disk),
			}); err != nil {
				log.Fatal(err)
			}
		}()
	}
	wg.Wait()
	fmt.Println(done["web 2000"], done["web 2001"])
	// Output:
	// 1048576 1048576
}
