package awssim_test

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/plan"
)

// Instances that really boot: a guest's disk image as an AMI's root
// snapshot, an instance that QEMU boots from it, its serial console, and a
// health check that reaches the guest through the forwarded port. (Not run:
// it needs QEMU, a bootable image and minutes under TCG.)
func ExampleOptions_qemu() {
	sim, err := awssim.New(awssim.Options{
		VolumeDir: os.TempDir(),
		QEMU:      &awssim.QEMUOptions{Ports: []int{22, 80}, Log: os.Stderr},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sim.Close() // kills every VM
	ctx := context.Background()
	c := sim.EC2()
	snap, err := sim.SeedSnapshotFile("disk.raw", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	img, err := c.RegisterImage(ctx, &ec2.RegisterImageInput{
		Name: aws.String("guest"), RootDeviceName: aws.String("/dev/xvda"), VirtualizationType: aws.String("hvm"),
		EnaSupport:          aws.Bool(true),
		BlockDeviceMappings: []ec2types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"), Ebs: &ec2types.EbsBlockDevice{SnapshotId: &snap}}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	run, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: img.ImageId, InstanceType: "t3.micro",
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		fmt.Println(err)
		return
	}
	inst := run.Instances[0]
	// ... wait for the guest ...
	out, err := c.GetConsoleOutput(ctx, &ec2.GetConsoleOutputInput{InstanceId: inst.InstanceId, Latest: aws.Bool(true)})
	if err == nil {
		fmt.Println("console (base64):", len(aws.ToString(out.Output)), "bytes")
	}
	fmt.Println("ssh at", sim.ForwardedAddr(aws.ToString(inst.InstanceId), 22))
	prober := failover.NetProber{Dial: sim.DialInstance}
	err = prober.Probe(ctx, draas.Instance{ID: aws.ToString(inst.InstanceId), PrivateIP: aws.ToString(inst.PrivateIpAddress)},
		plan.HealthCheck{HTTP: "http://{ip}/"})
	fmt.Println("health check:", err)
}
