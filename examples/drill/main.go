// Command drill is draas's demo. It needs no flags, no network and no
// credentials:
//
//	go run ./examples/drill
//
// It generates a sparse test disk (random data, written zeros and holes) in a
// temporary directory, copies it with package blockcopy into a first DR copy
// with the verify pass on, and compares the bytes. Then it changes 1 % of the
// disk's blocks and makes a second DR copy incrementally: a clone of the
// first plus only the changed extents, verified and compared in turn, after
// which the first copy is retired. It prints a short report of each step.
//
// The drill is a list of steps so that it can grow into a whole DR cycle
// (backup into an S3 store, replicate into EBS snapshots, fail over, fail
// back) step by step.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	var opts options
	flag.Int64Var(&opts.SizeMiB, "size-mib", 0, "size of the test disk in MiB (0 means 256)")
	flag.Float64Var(&opts.ChangePercent, "change", 0, "percentage of blocks to change before the incremental copy (0 means 1)")
	flag.Uint64Var(&opts.Seed, "seed", 0, "seed of the generated data (0 means 1)")
	flag.StringVar(&opts.Dir, "dir", "", "keep the disk and its DR copies in this `directory` (default: a temporary directory, removed at the end)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "drill: unexpected argument %q; run 'drill -h' for usage\n", flag.Arg(0))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stdout, opts)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "drill: %v\n", err)
		os.Exit(1)
	}
}
