package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	awsr53 "github.com/aws/aws-sdk-go-v2/service/route53"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/lab"
	"github.com/opendraas/draas/plan"
)

// seedCmd prepares a long-running simulator for a plan, so that the other
// commands can run against it with --endpoint as against a real account
// and site: it creates the plan's network (VPCs, and subnets and security
// groups with the plan's names as Name tags) and DNS zones, generates each
// VM's disks and backs them up into the backup store. It refuses to run
// without --endpoint: it is for simulators, never a real account.
func seedCmd(fs *flag.FlagSet) action {
	return func(ctx context.Context, a *app, args []string) error {
		if err := needArgs(args, "PLAN"); err != nil {
			return err
		}
		if a.g.simulate {
			return usagef("seed prepares a long-running simulator; --simulate starts its own each time: drop --simulate")
		}
		if a.g.endpoint == "" || a.g.s3Endpoint == "" {
			return usagef("seed creates networks and generated backups for tests, so it runs only against a simulator: pass --endpoint and --s3-endpoint of examples/awssim")
		}
		if a.g.bucket == "" {
			return usagef("seed writes the backups into the backup store: pass --bucket (and --prefix)")
		}
		p, err := loadPlan(args[0])
		if err != nil {
			return err
		}
		cfg, err := a.awsConfig(ctx, p.AWS.Region)
		if err != nil {
			return err
		}
		if err := seedNetwork(ctx, awsec2.NewFromConfig(cfg), p); err != nil {
			return fmt.Errorf("seed the network: %w", err)
		}
		if err := seedZones(ctx, awsr53.NewFromConfig(cfg), p); err != nil {
			return fmt.Errorf("seed the DNS zones: %w", err)
		}
		s3c := awss3.NewFromConfig(cfg, func(o *awss3.Options) {
			o.BaseEndpoint, o.UsePathStyle = aws.String(a.g.s3Endpoint), true
		})
		if err := seedBucket(ctx, s3c, a.g.bucket); err != nil {
			return fmt.Errorf("seed the bucket: %w", err)
		}
		a.say("seeded the network, DNS zones and bucket %s of plan %s", a.g.bucket, p.Name)
		// The lab generates the site's disks (and runs a simulator of its
		// own, unused here); the backups go to the store at --s3-endpoint.
		l, err := lab.Start(ctx, p, lab.Options{DiskMiB: a.g.diskMiB})
		if err != nil {
			return err
		}
		defer l.Close()
		c, err := a.openCloud(ctx, p, args[0], need{store: true})
		if err != nil {
			return err
		}
		defer c.close()
		b, err := backup.New(l.Snapshotter(), c.store, backup.Options{})
		if err != nil {
			return err
		}
		var results []backup.Result
		for _, vm := range p.VMs {
			res, err := b.Run(ctx, vm.Name)
			if err != nil {
				return fmt.Errorf("back up %s: %w", vm.Name, err)
			}
			results = append(results, res)
			a.say("backed up %s: recovery point %s", vm.Name, res.Point)
		}
		if a.g.json {
			return json.NewEncoder(a.stdout).Encode(results)
		}
		return nil
	}
}

// seedBucket creates the backup store's bucket, as an account would have
// it; one that exists is fine.
func seedBucket(ctx context.Context, api *awss3.Client, bucket string) error {
	_, err := api.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *s3types.BucketAlreadyOwnedByYou
	var exists *s3types.BucketAlreadyExists
	if errors.As(err, &owned) || errors.As(err, &exists) {
		return nil
	}
	return err
}

// seedNetwork creates what the plan names: a production VPC with a
// subnet per subnet name (the /24 of a VM's fixed address, when it has
// one) and its security groups, and a drill VPC with the drill subnet and
// groups. Names are Name tags (and group names); what exists is kept.
func seedNetwork(ctx context.Context, api *awsec2.Client, p *plan.Plan) error {
	zones, err := api.DescribeAvailabilityZones(ctx, &awsec2.DescribeAvailabilityZonesInput{})
	if err != nil {
		return err
	}
	if len(zones.AvailabilityZones) == 0 {
		return fmt.Errorf("the simulator lists no availability zone")
	}
	zone := aws.ToString(zones.AvailabilityZones[0].ZoneName)
	if p.AWS.AvailabilityZone != "" {
		zone = p.AWS.AvailabilityZone
	}
	prod, err := seedVPC(ctx, api, p.Name+"-production", "10.0.0.0/16")
	if err != nil {
		return err
	}
	used := map[int]bool{} // third octets of 10.0.X.0/24 taken
	cidrs := map[string]string{}
	for _, vm := range p.VMs {
		if a, err := netip.ParseAddr(vm.PrivateIP); err == nil && a.Is4() {
			if b := a.As4(); b[0] == 10 && b[1] == 0 {
				cidrs[p.Subnet(vm)] = fmt.Sprintf("10.0.%d.0/24", b[2])
				used[int(b[2])] = true
			}
		}
	}
	next := func() string {
		i := 1
		for used[i] {
			i++
		}
		used[i] = true
		return fmt.Sprintf("10.0.%d.0/24", i)
	}
	names := []string{p.Defaults.Subnet}
	for _, vm := range p.VMs {
		names = append(names, p.Subnet(vm))
	}
	groups := slices.Clone(p.Defaults.SecurityGroups)
	for _, vm := range p.VMs {
		groups = append(groups, p.SecurityGroups(vm)...)
	}
	for _, name := range compactNames(names) {
		cidr, ok := cidrs[name]
		if !ok {
			cidr = next()
		}
		if err := seedSubnet(ctx, api, prod, zone, name, cidr); err != nil {
			return err
		}
	}
	for _, g := range compactNames(groups) {
		if err := seedGroup(ctx, api, prod, g); err != nil {
			return err
		}
	}
	if p.Drill.Subnet == "" {
		return nil
	}
	drill, err := seedVPC(ctx, api, p.Name+"-drill", "10.99.0.0/16")
	if err != nil {
		return err
	}
	if err := seedSubnet(ctx, api, drill, zone, p.Drill.Subnet, "10.99.1.0/24"); err != nil {
		return err
	}
	for _, g := range compactNames(p.Drill.SecurityGroups) {
		if err := seedGroup(ctx, api, drill, g); err != nil {
			return err
		}
	}
	return nil
}

func compactNames(names []string) []string {
	var out []string
	for _, n := range names {
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

func nameFilter(name string) []ec2types.Filter {
	return []ec2types.Filter{{Name: aws.String("tag:Name"), Values: []string{name}}}
}

func nameTags(rt ec2types.ResourceType, name string) []ec2types.TagSpecification {
	return []ec2types.TagSpecification{{ResourceType: rt, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(name)}}}}
}

func seedVPC(ctx context.Context, api *awsec2.Client, name, cidr string) (string, error) {
	out, err := api.DescribeVpcs(ctx, &awsec2.DescribeVpcsInput{Filters: nameFilter(name)})
	if err != nil {
		return "", err
	}
	if len(out.Vpcs) > 0 {
		return aws.ToString(out.Vpcs[0].VpcId), nil
	}
	v, err := api.CreateVpc(ctx, &awsec2.CreateVpcInput{CidrBlock: aws.String(cidr), TagSpecifications: nameTags(ec2types.ResourceTypeVpc, name)})
	if err != nil {
		return "", fmt.Errorf("VPC %s: %w", name, err)
	}
	return aws.ToString(v.Vpc.VpcId), nil
}

func seedSubnet(ctx context.Context, api *awsec2.Client, vpc, zone, name, cidr string) error {
	out, err := api.DescribeSubnets(ctx, &awsec2.DescribeSubnetsInput{Filters: nameFilter(name)})
	if err != nil || len(out.Subnets) > 0 {
		return err
	}
	_, err = api.CreateSubnet(ctx, &awsec2.CreateSubnetInput{VpcId: aws.String(vpc), AvailabilityZone: aws.String(zone),
		CidrBlock: aws.String(cidr), TagSpecifications: nameTags(ec2types.ResourceTypeSubnet, name)})
	if err != nil {
		return fmt.Errorf("subnet %s (%s): %w", name, cidr, err)
	}
	return nil
}

func seedGroup(ctx context.Context, api *awsec2.Client, vpc, name string) error {
	out, err := api.DescribeSecurityGroups(ctx, &awsec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("group-name"), Values: []string{name}}, {Name: aws.String("vpc-id"), Values: []string{vpc}},
	}})
	if err != nil || len(out.SecurityGroups) > 0 {
		return err
	}
	_, err = api.CreateSecurityGroup(ctx, &awsec2.CreateSecurityGroupInput{GroupName: aws.String(name), Description: aws.String(name),
		VpcId: aws.String(vpc), TagSpecifications: nameTags(ec2types.ResourceTypeSecurityGroup, name)})
	if err != nil {
		return fmt.Errorf("security group %s: %w", name, err)
	}
	return nil
}

// seedZones creates the plan's hosted zones that do not exist.
func seedZones(ctx context.Context, api *awsr53.Client, p *plan.Plan) error {
	for _, zone := range compactNames([]string{p.DNS.Zone, p.Drill.DNSZone}) {
		name := strings.TrimSuffix(zone, ".") + "."
		out, err := api.ListHostedZonesByName(ctx, &awsr53.ListHostedZonesByNameInput{DNSName: aws.String(name)})
		if err != nil {
			return err
		}
		if len(out.HostedZones) > 0 && aws.ToString(out.HostedZones[0].Name) == name {
			continue
		}
		if _, err := api.CreateHostedZone(ctx, &awsr53.CreateHostedZoneInput{Name: aws.String(name), CallerReference: aws.String("draasctl-seed-" + name)}); err != nil {
			return fmt.Errorf("hosted zone %s: %w", name, err)
		}
	}
	return nil
}
