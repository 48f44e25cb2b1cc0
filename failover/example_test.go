package failover_test

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
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/plan"
)

// Example runs a DR drill of a two-VM plan in an isolated subnet and cleans
// it up; with mode failover.Failover (and Options.DNS) the same call fails
// over for real. It runs against awssim, where a DR copy is seeded as replication
// would leave it.
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
	az := aws.ToString(subnets.Subnets[0].AvailabilityZone)
	vpc, _ := srv.AddVPC("10.99.0.0/16", nil)
	drillSubnet, _ := srv.AddSubnet(vpc, az, "10.99.1.0/24", nil)
	for _, vm := range []string{"db", "web"} {
		_, err := srv.SeedSnapshot([]byte(vm+" boot disk"), map[string]string{
			draas.TagPlan: "shop", draas.TagVM: vm, draas.TagDisk: "os", draas.TagRecoveryPoint: "p1",
			draas.TagPointTime: "2026-11-26T06:00:00Z", draas.TagComplete: "true",
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	p, err := plan.Parse("shop.yaml", []byte(`name: shop
defaults: {instanceType: m5.large, subnet: `+aws.ToString(subnets.Subnets[0].SubnetId)+`}
vms:
  - name: db
  - name: web
    dependsOn: [db]
drill: {subnet: `+drillSubnet+`}
`))
	if err != nil {
		log.Fatal(err)
	}
	runner, err := failover.New(
		ec2.New(client, ec2.Options{ImageID: srv.DefaultImageID(), AvailabilityZone: az, PollInterval: time.Millisecond}),
		ebs.NewCopies(srv.EBS(), client, ebs.CopiesOptions{}),
		failover.Options{PollInterval: time.Millisecond},
	)
	if err != nil {
		log.Fatal(err)
	}
	rep, err := runner.Run(ctx, p, failover.Drill)
	if err != nil {
		log.Fatal(err)
	}
	for _, vm := range rep.VMs {
		fmt.Printf("%s up: %t, in the drill subnet: %t\n", vm.VM, vm.Up, vm.PrivateIP[:6] == "10.99.")
	}
	if err := runner.Cleanup(ctx, rep); err != nil {
		log.Fatal(err)
	}
	fmt.Println("cleaned up")
	// Output:
	// db up: true, in the drill subnet: true
	// web up: true, in the drill subnet: true
	// cleaned up
}
