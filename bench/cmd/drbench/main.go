// Command drbench measures draas's DR data path on the AWS simulator
// (package awssim) over loopback, through the real aws-sdk-go-v2 clients,
// for bench/backup2ebs.sh and bench/replicate.sh:
//
//	drbench backup2ebs [flags] IMAGE
//	drbench replicate  [flags] IMAGE...
//
// backup2ebs backs the raw IMAGE up into a backup store in the simulator's
// S3 and copies the recovery point into a new EBS snapshot (full). Then,
// -rounds times, it changes a percentage of the image's blocks in place,
// backs it up again and copies only the changed blocks into a snapshot on
// the previous one (incremental). It reports throughput, requests per GiB
// and the incremental/full ratios (of the median incremental copy).
//
// replicate makes a plan of one VM per IMAGE and runs replicate's
// ReplicateAll: once in full, then -rounds times incrementally, each after
// the same kind of change.
//
// Both compare every snapshot with its image byte for byte, outside the
// timings. The images are modified: pass copies.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "backup2ebs" && os.Args[1] != "replicate") {
		fmt.Fprintln(os.Stderr, "usage: drbench backup2ebs|replicate [-change-percent P] [-rounds N] [-concurrency N] [-vm-concurrency N] [-seed S] [-cpuprofile FILE] IMAGE...")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet("drbench "+mode, flag.ExitOnError)
	var cfg config
	fs.Float64Var(&cfg.changePercent, "change-percent", 1, "percentage of each image's blocks changed between the full and the incremental round")
	fs.IntVar(&cfg.concurrency, "concurrency", 0, "blocks in flight per copy (0: blockcopy's default, 8)")
	fs.IntVar(&cfg.vmConcurrency, "vm-concurrency", 0, "VMs replicated at once (0: replicate's default, 2)")
	fs.Uint64Var(&cfg.seed, "seed", 1, "seed of the changes")
	fs.IntVar(&cfg.rounds, "rounds", 3, "incremental rounds after the full one; the ratios use their median")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `FILE`")
	_ = fs.Parse(os.Args[2:])
	cfg.images = fs.Args()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "drbench: -cpuprofile: %v\n", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	run := runBackup2EBS
	if mode == "replicate" {
		run = runReplicate
	}
	if err := run(ctx, os.Stdout, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "drbench %s: %v\n", mode, err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}
