// Command drill is draas's demo of a DR cycle. It needs no flags, no
// network beyond 127.0.0.1 and no credentials:
//
//	go run ./examples/drill
//
// It starts the AWS simulator (package awssim) in the process, generates the
// disks of a small three-VM application (database, application server, web
// server), and backs every VM up into a backup store in the simulator's S3.
// Then it replicates the plan into EBS snapshots through the real AWS SDK
// clients: full DR copies first, each verified byte for byte against its
// VM's disk. It changes 1 % of every disk's blocks, backs up again and
// replicates again: the DR copies are now incremental on the previous ones,
// which are deleted once the new ones are verified. It reports what each
// step did and cost, the saving of the incremental run over the full one,
// and each VM's RPO.
//
// The drill is a list of steps so that it grows with the library: failover
// into EC2 and failback come next.
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
	flag.Float64Var(&opts.ChangePercent, "change", 0, "percentage of every disk's blocks to change between the two backups (0 means 1)")
	flag.Uint64Var(&opts.Seed, "seed", 0, "seed of the generated data and changes (0 means 1)")
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
