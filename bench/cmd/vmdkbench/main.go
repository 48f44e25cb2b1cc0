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
	var err error
	switch *impl {
	case "draas":
		err = withDraas(in, out, *level, *conc)
	case "govmomi":
		err = withGovmomi(in, out)
	default:
		err = fmt.Errorf("unknown -impl %q", *impl)
	}
	if err != nil {
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

// openRaw opens the raw image in and returns it with its size.
func openRaw(in string) (*os.File, int64, error) {
	f, err := os.Open(in)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func withDraas(in, out string, level, conc int) error {
	f, size, err := openRaw(in)
	if err != nil {
		return err
	}
	defer f.Close()
	sink, err := vmdk.Create(out, size, vmdk.CreateOptions{Overwrite: true, CompressionLevel: level})
	if err != nil {
		return err
	}
	st, err := blockcopy.Copy(context.Background(), sink, rawSource{f, size}, blockcopy.Options{Concurrency: conc})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "draas: %d blocks copied, %d zero blocks skipped\n", st.BlocksCopied, st.BlocksZero)
	return nil
}

func withGovmomi(in, out string) error {
	f, size, err := openRaw(in)
	if err != nil {
		return err
	}
	defer f.Close()
	w, err := govmdk.NewStreamOptimizedWriter(out, size)
	if err != nil {
		return err
	}
	if err := w.Write(io.Reader(f)); err != nil {
		return err
	}
	return w.Close()
}
