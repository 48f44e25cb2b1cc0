package main

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/account"
	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/plan"
)

// bucket holds the backup store.
const bucket = "shop-backups"

// sandbox gives the simulated account what a real one would already have:
// the plan's production and drill networks (named, as the plan names
// them) and the backup bucket. It returns the simulator's Linux image.
func sandbox(ctx context.Context, a *account.Account) (image string, err error) {
	for i, name := range []string{"shop-prod", "shop-drill"} {
		vpc, err := a.EC2.CreateVpc(ctx, &awsec2.CreateVpcInput{CidrBlock: aws.String(fmt.Sprintf("10.%d.0.0/16", 10+i)), TagSpecifications: named(types.ResourceTypeVpc, name)})
		if err != nil {
			return "", err
		}
		if _, err := a.EC2.CreateSubnet(ctx, &awsec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String(fmt.Sprintf("10.%d.1.0/24", 10+i)), TagSpecifications: named(types.ResourceTypeSubnet, name)}); err != nil {
			return "", err
		}
		if _, err := a.EC2.CreateSecurityGroup(ctx, &awsec2.CreateSecurityGroupInput{GroupName: aws.String(name), Description: aws.String(name), VpcId: vpc.Vpc.VpcId}); err != nil {
			return "", err
		}
	}
	if _, err := a.S3.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return "", err
	}
	images, err := a.EC2.DescribeImages(ctx, &awsec2.DescribeImagesInput{})
	if err != nil {
		return "", err
	}
	for _, im := range images.Images {
		if aws.ToString(im.Name) == "awssim-linux-x86_64" {
			return aws.ToString(im.ImageId), nil
		}
	}
	return "", fmt.Errorf("the simulator has no image awssim-linux-x86_64")
}

func named(t types.ResourceType, name string) []types.TagSpecification {
	return []types.TagSpecification{{ResourceType: t, Tags: []types.Tag{{Key: aws.String("Name"), Value: aws.String(name)}}}}
}

// site stands in for vSphere: each VM has one 8 MiB disk, half data. It is
// a backup.Hypervisor whose snapshots read the disks as they are (nothing
// writes them while the program runs).
type site map[string]*draastest.Disk

func newSite(p *plan.Plan) site {
	s := site{}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, vm := range p.VMs {
		d := draastest.NewDisk(8<<20, 512<<10)
		buf := make([]byte, 64<<10)
		for off := int64(0); off < d.Size(); off += 2 * int64(len(buf)) {
			for i := range buf {
				buf[i] = byte(rng.Uint32())
			}
			d.WriteAt(buf, off)
		}
		s[vm.Name] = d
	}
	return s
}

func (s site) Snapshot(ctx context.Context, vm string) (backup.Snapshot, error) {
	d, ok := s[vm]
	if !ok {
		return nil, fmt.Errorf("VM %s: %w", vm, draas.ErrNotFound)
	}
	return snapshot{d}, nil
}

type snapshot struct{ d *draastest.Disk }

func (s snapshot) Disks() []draas.Disk { return []draas.Disk{{Name: "os", Size: s.d.Size()}} }

func (s snapshot) Open(context.Context, int) (draas.BlockSource, error) { return s.d, nil }

func (s snapshot) Close(context.Context) error { return nil }
