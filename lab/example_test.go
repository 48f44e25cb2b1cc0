package lab_test

import (
	"context"
	"fmt"
	"log"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/lab"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/replicate"
)

// shop is a two-tier plan: the database starts first, the web server once
// the database is healthy.
const shop = `
name: shop
aws: {region: us-east-1}
defaults: {instanceType: m5.large, subnet: subnet-prod, securityGroups: [sg-prod], healthTimeout: 1m}
vms:
  - name: db
    healthChecks: [{ec2: true}, {tcp: 5432}]
  - name: web
    dependsOn: [db]
    healthChecks: [{ec2: true}, {http: "http://{ip}:8080/health"}]
drill: {subnet: subnet-drill, securityGroups: [sg-drill]}
`

// A drill of a plan against the lab: back every VM up, replicate the
// backups to DR copies, bring the VMs up in the drill subnet, clean up.
func Example() {
	ctx := context.Background()
	p, err := plan.Parse("shop.yaml", []byte(shop))
	if err != nil {
		log.Fatal(err)
	}
	l, err := lab.Start(ctx, p, lab.Options{DiskMiB: 4})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	b, err := backup.New(l.Snapshotter(), l.Store, backup.Options{})
	if err != nil {
		log.Fatal(err)
	}
	for _, vm := range l.Plan.VMs {
		if _, err := b.Run(ctx, vm.Name); err != nil {
			log.Fatal(err)
		}
	}
	r, err := l.Replicator(replicate.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := r.ReplicateAll(ctx); err != nil {
		log.Fatal(err)
	}

	fo, err := l.Failover()
	if err != nil {
		log.Fatal(err)
	}
	rep, err := fo.Run(ctx, l.Plan, failover.Drill)
	if err != nil {
		log.Fatal(err)
	}
	for _, v := range rep.VMs {
		fmt.Printf("%s up: %t\n", v.VM, v.Up)
	}
	if err := fo.Cleanup(ctx, rep); err != nil {
		log.Fatal(err)
	}
	fmt.Println("cleaned up")
	// Output:
	// db up: true
	// web up: true
	// cleaned up
}

// TestTest runs a function against a lab that closes when it returns.
func TestTest(t *testing.T) {
	p, err := plan.Parse("shop.yaml", []byte(shop))
	if err != nil {
		t.Fatal(err)
	}
	var got *lab.Lab
	lab.Test(t, p, func(ctx context.Context, l *lab.Lab) {
		got = l
		if l.Site == nil || len(l.Plan.VMs) != 2 {
			t.Fatalf("lab for %d VMs, site %v", len(l.Plan.VMs), l.Site)
		}
		if l.Plan.Drill.Subnet == "subnet-drill" {
			t.Error("the lab's plan keeps the drill subnet's name, want its ID")
		}
		if _, err := l.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); err != nil {
			t.Errorf("the lab's EC2 while f runs: %v", err)
		}
	}, lab.Options{DiskMiB: 1})
	if got == nil {
		t.Fatal("Test did not call f")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := got.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{}); err == nil {
		t.Error("the lab's EC2 answers after Test returned: want it closed")
	}
}
