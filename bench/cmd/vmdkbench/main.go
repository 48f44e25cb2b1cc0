// Command vmdkbench converts a raw disk image to a streamOptimized VMDK, for
// bench/vmdk.sh: with draas (blockcopy from the raw file into a vmdk.Sink,
// grains deflated in parallel by the copier's workers) or with govmomi's
// single-threaded vmdk.StreamOptimizedWriter, to show what the parallel
// writer gains.
//
//	vmdkbench -impl draas|govmomi [-level N] [-concurrency N] IN.raw OUT.vmdk
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	govmdk "github.com/vmware/govmomi/vmdk"

	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/vmdk"
)

func main() {
	impl := flag.String("impl", "draas", "writer: draas or govmomi")
	level := flag.Int("level", 0, "deflate level for draas (0 means the default, 1)")
	conc := flag.Int("concurrency", 0, "blockcopy concurrency for draas (0 means its default)")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: vmdkbench -impl draas|govmomi [-level N] [-concurrency N] IN.raw OUT.vmdk")
		os.Exit(2)
	}
	in, out := flag.Arg(0), flag.Arg(1)
	start := time.Now()
	if err := convert(*impl, in, out, *level, *conc); err != nil {
		fmt.Fprintf(os.Stderr, "vmdkbench: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%s: %.3f s\n", *impl, time.Since(start).Seconds())
}

// rawSource is a raw image file as a draas.BlockSource.
type rawSource struct {
	f    *os.File
	size int64
}

func (r rawSource) Size() int64    { return r.size }
func (r rawSource) BlockSize() int { return 0 }
func (r rawSource) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return r.f.ReadAt(p, off)
}

// convert writes the raw image in as the streamOptimized VMDK out with the
// writer impl.
func convert(impl, in, out string, level, conc int) error {
	if impl != "draas" && impl != "govmomi" {
		return fmt.Errorf("unknown -impl %q", impl)
	}
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if impl == "govmomi" {
		return withGovmomi(f, fi.Size(), out)
	}
	return withDraas(rawSource{f, fi.Size()}, out, level, conc)
}

func withDraas(src rawSource, out string, level, conc int) error {
	sink, err := vmdk.Create(out, src.size, vmdk.CreateOptions{Overwrite: true, CompressionLevel: level})
	if err != nil {
		return err
	}
	st, err := blockcopy.Copy(context.Background(), sink, src, blockcopy.Options{Concurrency: conc})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "draas: %d blocks copied, %d zero blocks skipped\n", st.BlocksCopied, st.BlocksZero)
	return nil
}

func withGovmomi(f *os.File, size int64, out string) error {
	w, err := govmdk.NewStreamOptimizedWriter(out, size)
	if err != nil {
		return err
	}
	if err := w.Write(io.Reader(f)); err != nil {
		return err
	}
	return w.Close()
}
