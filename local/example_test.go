package local_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/local"
)

// This example makes a sparse 16 MiB image with two written regions, copies
// it block by block into a new image, skipping holes and zero blocks, and
// reads the copy back. Package blockcopy does the same in parallel, with
// retries and checkpoints.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "draas-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// A sparse source image: 16 MiB, data at 1 MiB and at 9 MiB.
	srcPath := filepath.Join(dir, "source.raw")
	f, err := os.Create(srcPath)
	if err != nil {
		log.Fatal(err)
	}
	f.Truncate(16 << 20)
	f.WriteAt(bytes.Repeat([]byte("boot"), 1024), 1<<20)
	f.WriteAt([]byte("data"), 9<<20+5)
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}

	src, err := local.Open(srcPath)
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	dstPath := filepath.Join(dir, "copy.raw")
	dst, err := local.Create(dstPath, src.Size(), local.SinkOptions{BlockSize: 64 << 10})
	if err != nil {
		log.Fatal(err)
	}
	defer dst.Abort(ctx) // a no-op once committed

	exts, err := draas.AllocatedExtents(ctx, src)
	if err != nil {
		log.Fatal(err)
	}
	bs := int64(dst.BlockSize())
	buf := make([]byte, bs)
	written := 0
	for _, e := range exts {
		for off := e.Offset - e.Offset%bs; off < e.End(); off += bs {
			n, err := src.ReadAt(ctx, buf[:min(bs, src.Size()-off)], off)
			if err != nil {
				log.Fatal(err)
			}
			data := buf[:n]
			if !draas.NeedsZeroWrites(dst) && draas.IsZero(data) {
				continue // the sink reads unwritten blocks as zeros
			}
			b := draas.Block{Index: off / bs, Offset: off, Data: data, Checksum: sha256.Sum256(data)}
			if err := dst.WriteBlock(ctx, b); err != nil {
				log.Fatal(err)
			}
			written++
		}
	}
	if err := dst.Commit(ctx); err != nil {
		log.Fatal(err)
	}

	orig, _ := os.ReadFile(srcPath)
	copied, _ := os.ReadFile(dstPath)
	fmt.Printf("wrote %d of %d blocks\n", written, src.Size()/bs)
	fmt.Println("identical:", bytes.Equal(orig, copied))
	// Output:
	// wrote 2 of 256 blocks
	// identical: true
}
