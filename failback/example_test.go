package failback_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/aws/ec2"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/failback"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/plan"
)

// Example fails a VM running on EC2 back to a rebuilt vSphere site (here an
// in-memory one; package vsphere is the real one): a VM of the instance's
// shape, its disk copied from a snapshot of the instance, powered on.
func Example() {
	ctx := context.Background()
	srv, err := awssim.New(awssim.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client := srv.EC2()
	subnets, err := client.DescribeSubnets(ctx, &awsec2.DescribeSubnetsInput{})
	if err != nil {
		log.Fatal(err)
	}
	launcher := ec2.New(client, ec2.Options{ImageID: srv.DefaultImageID(), SubnetID: aws.ToString(subnets.Subnets[0].SubnetId),
		AvailabilityZone: aws.ToString(subnets.Subnets[0].AvailabilityZone), PollInterval: time.Millisecond})

	// The VM as the failover left it: an r5.large booting from its DR copy.
	snap, _ := srv.SeedSnapshot([]byte("db boot disk"), nil)
	root, err := launcher.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: snap})
	if err != nil {
		log.Fatal(err)
	}
	inst, err := launcher.Launch(ctx, draas.LaunchRequest{Name: "db", InstanceType: "r5.large", RootVolumeID: root})
	if err != nil {
		log.Fatal(err)
	}

	site := draastest.NewHypervisor(nil)
	p, _ := plan.Parse("shop.yaml", []byte("name: shop\ndefaults: {instanceType: r5.large, subnet: s}\nvms: [{name: db}]\n"))
	ebsClient := srv.EBS()
	runner, err := failback.New(launcher, site, func(ctx context.Context, id string) (draas.BlockSource, error) {
		return ebs.OpenSnapshot(ctx, ebsClient, id, ebs.SourceOptions{})
	}, failback.Options{})
	if err != nil {
		log.Fatal(err)
	}
	// The failover's report names the instance: failback.TargetsFromFailover
	// makes the targets from it.
	targets := map[string]failback.Target{"db": {InstanceID: inst.ID}}
	rep, err := runner.Run(ctx, p, failback.Direct, targets)
	if err != nil {
		log.Fatal(err)
	}
	shape, _ := site.VMShape(ctx, "db")
	on, _ := site.PoweredOn("db")
	db, _ := rep.VM("db")
	fmt.Printf("db: %d CPUs, %d MiB, %d disk, powered on %t, %d bytes copied\n", shape.CPUs, shape.MemoryMiB, len(shape.Disks), on, db.BytesCopied)
	// Output:
	// db: 2 CPUs, 16384 MiB, 1 disk, powered on true, 65536 bytes copied
}

// ExampleTargetsFromFailover makes a failback's targets from the failover's
// report (here one VM's, as failover.Runner.Run returns it): the instance
// to copy from and the records to point back.
func ExampleTargetsFromFailover() {
	fo := &failover.Report{Plan: "shop", Mode: "failover", VMs: []failover.VMReport{{
		VM: "db", InstanceID: "i-0123", PrivateIP: "10.0.1.5",
		PreviousRecords: []draas.Record{{Zone: "example.com.", Name: "db.example.com.", Type: "A", Values: []string{"192.168.10.10"}}},
	}}}
	targets := failback.TargetsFromFailover(fo, nil)
	db := targets["db"]
	fmt.Println(db.InstanceID, db.Records[0].Name, db.Records[0].Values)
	// Output:
	// i-0123 db.example.com. [192.168.10.10]
}
