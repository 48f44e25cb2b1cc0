// Command awssim serves the in-process AWS simulator (the EBS direct APIs,
// EC2, Route53 and S3) on loopback, so that any AWS client can be pointed at
// it, and can make it a hostile account: throttled, slow or failing.
//
// The first line of its output is the endpoint of EBS, EC2 and Route53; the
// second, "s3 URL", the endpoint of S3 (path-style addressing). A hint on
// using them with the aws CLI follows. It serves until interrupted (SIGINT
// or SIGTERM).
//
//	awssim [--addr 127.0.0.1:PORT] [--region R] [--env-file FILE] [--bucket NAME]...
//	       [--throttle OP=FRACTION]... [--latency OP=DURATION]...
//	       [--fail-nth OP=N]... [--throttle-nth OP=N]... [--ebs-quotas]
//	       [--volume-dir DIR] [--qemu] [--qemu-accel tcg|kvm] [--qemu-ports 22,80,443]
//
// --env-file writes, once the simulator listens, a file that a shell can
// source: AWSSIM_ENDPOINT, AWSSIM_S3_ENDPOINT and AWSSIM_PID (to stop it
// with kill). The file is written whole (renamed into place) and removed
// when the simulator stops, so a script can wait for it:
//
//	go run ./examples/awssim --env-file awssim.env &
//	until [ -s awssim.env ]; do sleep 0.2; done; . ./awssim.env
//
// As in a real account, S3 buckets do not exist until created: --bucket
// creates one at the start (repeat it for more), and so do CreateBucket
// calls (aws s3 mb) and draasctl seed.
//
// The fault flags use the simulator's fault API (awssim.Server.Throttle,
// Latency, FailNth and ThrottleNth). OP is an operation name as in the AWS
// API ("RunInstances", "PutSnapshotBlock", "ChangeResourceRecordSets",
// "GetObject", ...) or "*" for every operation of every service; each flag
// may be repeated:
//
//	--throttle '*=0.2'              20 % of all calls fail with the service's
//	                                throttling error (RequestLimitExceeded,
//	                                SlowDown, ...), pseudo-randomly but the
//	                                same from run to run
//	--latency PutSnapshotBlock=50ms every PutSnapshotBlock takes 50 ms longer
//	--fail-nth RunInstances=2       the 2nd RunInstances fails with HTTP 500
//	--throttle-nth CreateTags=1     the 1st CreateTags is throttled
//
// --ebs-quotas enforces AWS's documented request-rate quotas of the EBS
// direct APIs (awssim.AWSEBSRateLimits: PutSnapshotBlock and GetSnapshotBlock
// 1,000 requests per second per snapshot and 5,000 per account,
// ListChangedBlocks and ListSnapshotBlocks 50 per account, ...): requests
// beyond them fail with RequestThrottledException, as in AWS, so that a
// benchmark measures the share of the real ceiling a client reaches.
//
// --volume-dir keeps the volumes' data in sparse files in DIR rather than in
// memory. --qemu has instances really run: RunInstances and StartInstances
// boot the instance's root volume in a QEMU virtual machine (TCG unless
// --qemu-accel kvm; package qemu-system-x86), its volumes as NVMe disks;
// Stop and Terminate kill it; aws ec2 get-console-output shows its serial
// console. The guest ports of --qemu-ports are forwarded from 127.0.0.1: a
// line on the output says where when a VM starts (in Go,
// awssim.Server.ForwardedAddr).
//
// Bad flags exit with code 2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opendraas/draas/awssim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// fault is one fault flag: what to do to which operation.
type fault struct {
	kind string // "throttle", "latency", "fail-nth", "throttle-nth"
	op   string
	frac float64       // throttle
	d    time.Duration // latency
	n    int           // fail-nth, throttle-nth
}

// apply configures f on srv.
func (f fault) apply(srv *awssim.Server) {
	switch f.kind {
	case "throttle":
		srv.Throttle(f.op, f.frac)
	case "latency":
		srv.Latency(f.op, f.d)
	case "fail-nth":
		srv.FailNth(f.op, f.n)
	case "throttle-nth":
		srv.ThrottleNth(f.op, f.n)
	}
}

func (f fault) String() string {
	switch f.kind {
	case "throttle":
		return fmt.Sprintf("throttle %g of %s", f.frac, f.opName())
	case "latency":
		return fmt.Sprintf("add %s to %s", f.d, f.opName())
	case "fail-nth":
		return fmt.Sprintf("fail call %d of %s", f.n, f.opName())
	}
	return fmt.Sprintf("throttle call %d of %s", f.n, f.opName())
}

func (f fault) opName() string {
	if f.op == "*" {
		return "every operation"
	}
	return f.op
}

// parseFault parses the value of a fault flag of the given kind: OP=VALUE.
func parseFault(kind, s string) (fault, error) {
	op, val, ok := strings.Cut(s, "=")
	op, val = strings.TrimSpace(op), strings.TrimSpace(val)
	if !ok || op == "" || val == "" {
		return fault{}, fmt.Errorf("%q: want OP=VALUE, OP an operation name such as RunInstances or * for all", s)
	}
	if op != "*" && strings.ContainsAny(op, " */=") {
		return fault{}, fmt.Errorf("%q: operation %q is not an operation name (such as RunInstances) or *", s, op)
	}
	f := fault{kind: kind, op: op}
	switch kind {
	case "throttle":
		v, err := strconv.ParseFloat(strings.TrimSuffix(val, "%"), 64)
		if err == nil && strings.HasSuffix(val, "%") {
			v /= 100
		}
		if err != nil || v < 0 || v > 1 {
			return fault{}, fmt.Errorf("%q: the fraction must be between 0 and 1 (or 0%% and 100%%)", s)
		}
		f.frac = v
	case "latency":
		d, err := time.ParseDuration(val)
		if err != nil || d < 0 {
			return fault{}, fmt.Errorf("%q: the latency must be a duration such as 50ms", s)
		}
		f.d = d
	default:
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 {
			return fault{}, fmt.Errorf("%q: N must be a call number, 1 or more", s)
		}
		f.n = n
	}
	return f, nil
}

// run is the command: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("awssim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "address to listen on (port 0: a free port)")
	region := fs.String("region", "us-east-1", "region the simulator reports")
	envFile := fs.String("env-file", "", "once listening, write AWSSIM_ENDPOINT, AWSSIM_S3_ENDPOINT and AWSSIM_PID into `FILE` for a shell to source; removed on exit")
	volumeDir := fs.String("volume-dir", "", "keep volume data in sparse files in `DIR` (it must exist) instead of memory")
	useQEMU := fs.Bool("qemu", false, "run instances as QEMU virtual machines booting their root volumes (package qemu-system-x86)")
	qemuAccel := fs.String("qemu-accel", "tcg", "QEMU accelerator for --qemu: tcg or kvm")
	qemuPorts := fs.String("qemu-ports", "22,80,443", "guest TCP `PORTS` forwarded from 127.0.0.1 under --qemu (comma-separated)")
	var buckets []string
	fs.Func("bucket", "create the S3 bucket `NAME` at the start (repeatable)", func(s string) error {
		buckets = append(buckets, s)
		return nil
	})
	quotas := fs.Bool("ebs-quotas", false, "enforce AWS's request-rate quotas of the EBS direct APIs (1,000 PutSnapshotBlock and GetSnapshotBlock per second per snapshot, ...)")
	var faults []fault
	for _, k := range []struct{ name, usage string }{
		{"throttle", "throttle a fraction of the calls to an operation: `OP=FRACTION` (0 to 1, or a percentage), OP * for all (repeatable)"},
		{"latency", "add a latency to every call to an operation: `OP=DURATION` (repeatable)"},
		{"fail-nth", "fail the N-th call to an operation with HTTP 500: `OP=N` (repeatable)"},
		{"throttle-nth", "throttle the N-th call to an operation: `OP=N` (repeatable)"},
	} {
		fs.Func(k.name, k.usage, func(s string) error {
			f, err := parseFault(k.name, s)
			if err != nil {
				return err
			}
			faults = append(faults, f)
			return nil
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "awssim: unexpected arguments %q; it takes only flags\n", fs.Args())
		return 2
	}

	opts := awssim.Options{Addr: *addr, Region: *region, Buckets: buckets, VolumeDir: *volumeDir}
	if *useQEMU {
		q := &awssim.QEMUOptions{Accel: *qemuAccel, Ports: []int{}, Log: stdout}
		for _, f := range strings.Split(*qemuPorts, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			p, err := strconv.Atoi(f)
			if err != nil || p < 1 || p > 65535 {
				fmt.Fprintf(stderr, "awssim: --qemu-ports: %q is not a port\n", f)
				return 2
			}
			q.Ports = append(q.Ports, p)
		}
		opts.QEMU = q
	}
	if *quotas {
		l := awssim.AWSEBSRateLimits()
		opts.EBSRateLimits = &l
	}
	srv, err := awssim.New(opts)
	if err != nil {
		fmt.Fprintf(stderr, "awssim: %v\n", err)
		return 1
	}
	defer srv.Close()
	for _, f := range faults {
		f.apply(srv)
	}
	if *envFile != "" {
		if err := writeEnvFile(*envFile, srv.URL, srv.S3URL); err != nil {
			fmt.Fprintf(stderr, "awssim: %v\n", err)
			return 1
		}
		defer os.Remove(*envFile)
	}

	fmt.Fprintln(stdout, srv.URL)
	fmt.Fprintf(stdout, "s3 %s\n", srv.S3URL)
	fmt.Fprintf(stdout, `
The first line is the endpoint of EBS, EC2 and Route53; S3 (path-style)
has its own, on the second line. Point any AWS client at them with dummy
credentials, for example:

  export AWS_ACCESS_KEY_ID=AKID AWS_SECRET_ACCESS_KEY=SECRET AWS_REGION=%s AWS_DEFAULT_REGION=%s
  aws --endpoint-url %s ebs start-snapshot --volume-size 1
  aws --endpoint-url %s ec2 describe-snapshots
  aws --endpoint-url %s s3 mb s3://backups
  aws --endpoint-url %s s3 ls
`, *region, *region, srv.URL, srv.URL, srv.S3URL, srv.S3URL)
	if len(buckets) > 0 {
		fmt.Fprintf(stdout, "\nBuckets: %s\n", strings.Join(buckets, ", "))
	}
	if len(faults) > 0 {
		fmt.Fprintln(stdout, "\nFaults:")
		for _, f := range faults {
			fmt.Fprintf(stdout, "  %s\n", f)
		}
	}
	if *quotas {
		fmt.Fprintln(stdout, "\nEBS direct API quotas enforced: AWS's defaults (1,000 PutSnapshotBlock and GetSnapshotBlock per second per snapshot).")
	}
	fmt.Fprintln(stdout, "\nServing until interrupted.")

	<-ctx.Done()
	return 0
}

// writeEnvFile writes the simulator's endpoints and process ID as shell
// assignments into path, through a temporary file renamed into place so that
// a reader never sees a partial file.
func writeEnvFile(path, endpoint, s3Endpoint string) error {
	content := fmt.Sprintf("AWSSIM_ENDPOINT=%s\nAWSSIM_S3_ENDPOINT=%s\nAWSSIM_PID=%d\n", endpoint, s3Endpoint, os.Getpid())
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
