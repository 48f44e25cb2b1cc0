// Command quickdr is the library path in one page: it backs up a two-VM
// plan's disks into an S3 backup store, replicates them into DR copies (EBS
// snapshots), drills the plan (brings the VMs up in the drill subnet, waits
// until they are healthy) and cleans the drill up, against the AWS
// simulator, using only draas's public packages. It finishes in seconds.
//
//	go run ./examples/quickdr
//
// starts the simulator (package awssim) in the process. To run it against
// examples/awssim in a process of its own, pass its endpoints:
//
//	go run ./examples/awssim --env-file awssim.env &
//	until [ -s awssim.env ]; do sleep 0.2; done; . ./awssim.env
//	go run ./examples/quickdr -endpoint $AWSSIM_ENDPOINT -s3-endpoint $AWSSIM_S3_ENDPOINT
//	kill $AWSSIM_PID
//
// Against a real account the same calls apply, with a configuration from
// config.LoadDefaultConfig, the account's own subnets and an image of its
// own, and a site read through package vsphere instead of the disks made
// here.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/opendraas/draas/aws/account"
	"github.com/opendraas/draas/aws/ec2"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/replicate"
)

// shop is the plan: the database first, the web server once the database
// is healthy. Subnets and security groups are named; ResolvePlan finds them.
const shop = `
name: shop
aws: {region: us-east-1}
defaults: {instanceType: m5.large, subnet: shop-prod, securityGroups: [shop-prod], healthTimeout: 1m}
vms:
  - {name: db, healthChecks: [{ec2: true}, {tcp: 5432}]}
  - {name: web, dependsOn: [db], healthChecks: [{ec2: true}, {http: "http://{ip}/health"}]}
drill: {subnet: shop-drill, securityGroups: [shop-drill]}
`

func main() {
	endpoint := flag.String("endpoint", "", "EBS, EC2 and Route 53 endpoint of a running examples/awssim (default: start a simulator in this process)")
	s3Endpoint := flag.String("s3-endpoint", "", "S3 endpoint of that simulator")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, *endpoint, *s3Endpoint); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, w io.Writer, endpoint, s3Endpoint string) error {
	cfg := aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDAWSSIM", "awssim-secret", "")}
	if endpoint == "" {
		srv, err := awssim.New(awssim.Options{})
		if err != nil {
			return err
		}
		defer srv.Close()
		cfg, s3Endpoint = srv.Config(), srv.S3URL
	}
	p, err := plan.Parse("shop.yaml", []byte(shop))
	if err != nil {
		return err
	}
	// The simulator is ready at once: poll it every few milliseconds.
	acct, err := account.New(cfg, account.Options{
		Launcher: ec2.Options{PollInterval: 10 * time.Millisecond},
		Backup:   account.Backup{Endpoint: s3Endpoint},
	})
	if err != nil {
		return err
	}
	image, err := sandbox(ctx, acct)
	if err != nil {
		return err
	}

	// 1. Back the site's VMs up into the backup store.
	store := acct.BackupStore(bucket, "shop", s3.Options{})
	b, err := backup.New(newSite(p), store, backup.Options{})
	if err != nil {
		return err
	}
	for _, vm := range p.VMs {
		res, err := b.Run(ctx, vm.Name)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "backup     %-4s point %s\n", vm.Name, res.Point)
	}

	// 2. Replicate the newest backups into DR copies.
	r, err := replicate.New(p.ReplicationPlan(), store, acct.Copies, replicate.Options{})
	if err != nil {
		return err
	}
	results, err := r.ReplicateAll(ctx)
	if err != nil {
		return err
	}
	for _, res := range results {
		fmt.Fprintf(w, "replicate  %-4s %s, %d blocks sent\n", res.VM, res.Action, res.BlocksSent)
	}

	// 3. Drill: the drill subnet and groups by name, the simulator's image.
	dp, err := acct.ResolvePlan(ctx, p, account.Drill)
	if err != nil {
		return err
	}
	dp.AWS.ImageID = image
	runner, err := failover.New(acct.LauncherFor(dp), acct.Copies, failover.Options{
		// The simulated instances have no network: TCP and HTTP checks
		// would wait until healthTimeout. Judge health by EC2's status.
		EC2StatusOnly: true,
		PollInterval:  10 * time.Millisecond,
		// A health check that keeps failing shows here, round by round.
		Events: func(e orchestrate.Event) {
			if e.Kind == orchestrate.EventRetried || e.Kind == orchestrate.EventFailed {
				fmt.Fprintln(w, "drill     ", e)
			}
		},
	})
	if err != nil {
		return err
	}
	rep, runErr := runner.Run(ctx, dp, failover.Drill)
	if rep == nil {
		return runErr
	}
	for _, v := range rep.VMs {
		fmt.Fprintf(w, "drill      %-4s up %t on %s (%s) after %v\n", v.VM, v.Up, v.InstanceID, v.PrivateIP, v.Ready.Round(time.Millisecond))
	}
	// 4. Remove what the drill made, even after a failure.
	if err := runner.Cleanup(context.WithoutCancel(ctx), rep); err != nil {
		return err
	}
	fmt.Fprintf(w, "cleanup    %d instances terminated; RTO %v\n", len(rep.VMs), rep.RTO.Round(time.Millisecond))
	return runErr
}
