// Command drill is draas's demo of a whole DR cycle. It needs no flags, no
// network beyond 127.0.0.1 and no credentials:
//
//	go run ./examples/drill
//
// It starts two simulators in the process: the AWS simulator (package
// awssim: S3, the EBS direct APIs, EC2 and Route 53), talked to by the real
// aws-sdk-go-v2 clients, and vcsim, govmomi's vCenter simulator, talked to
// by package vsphere. Package lab shapes them after the
// plan examples/plans/three-tier.yaml (a database, an application server and
// a web server): VPCs, subnets, security groups and the DNS zone, with each
// VM's records pointing at an on-premises address, and a vCenter VM per
// plan VM whose disk holds generated data. Then the drill:
//
//   - backs every VM up from vCenter into a backup store in S3 (package
//     backup through backup/fromvsphere: a VM snapshot, the disks read from
//     it; vcsim has no Changed Block Tracking, so every backup reads whole
//     disks), and replicates the plan into EBS snapshots: full DR copies,
//     each verified byte for byte against its VM's disk;
//   - changes 1 % of every disk's blocks, backs up and replicates again: the
//     DR copies are now incremental on the previous ones, which are deleted
//     once the new ones are verified; and reports each VM's RPO;
//   - runs a DR drill in the isolated drill subnet, with its timeline (every
//     step's start and duration, per VM, in dependency order), the RTO
//     achieved and the critical path; cleans it up and proves it: no
//     instance or volume of the drill remains, and production DNS was not
//     touched;
//   - powers the site off and fails over for real: instances in the
//     production subnets, DNS pointed at their new addresses, each volume
//     compared with its VM's disk;
//   - writes new data on the instances' volumes, as life goes on in EC2;
//   - rebuilds the site (a new, empty vCenter) and fails back into it:
//     a pre-seed copies the running instances into new VMs, then a
//     cut-over stops them and copies only what changed since, powers the
//     VMs on and points DNS back; and compares every vCenter disk with the
//     EC2 volume it came from;
//   - writes the reports of the drill, the failover and the failback (JSON
//     and HTML, package report) into a temporary directory.
//
// Each step prints what it did and what it cost.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	var opts options
	flag.StringVar(&opts.PlanFile, "plan", "", "the plan to protect (default "+defaultPlan+", found from the working directory up)")
	flag.Int64Var(&opts.DiskMiB, "disk-mib", 0, "size in MiB of each VM's generated disk (0 means 64)")
	flag.Float64Var(&opts.ChangePercent, "change", 0, "percentage of every disk's blocks to change between the two backups (0 means 1)")
	flag.Uint64Var(&opts.Seed, "seed", 0, "seed of the generated data and changes (0 means 1)")
	flag.StringVar(&opts.ReportDir, "reports", "", "directory for the reports (default: a new temporary directory)")
	flag.BoolVar(&opts.DatastoreOverTLS, "datastore-tls", false, "move vCenter disk data over loopback TLS too, instead of handing it to vcsim in the process (slow)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "drill: unexpected argument %q; run 'drill -h' for usage\n", flag.Arg(0))
		os.Exit(2)
	}
	// vcsim logs to the standard logger (every file name it tries for a new
	// disk); the drill reports what matters itself.
	log.SetOutput(io.Discard)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stdout, opts)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "drill: %v\n", err)
		os.Exit(1)
	}
}
