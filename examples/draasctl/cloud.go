package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awsebs "github.com/aws/aws-sdk-go-v2/service/ebs"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	awsr53 "github.com/aws/aws-sdk-go-v2/service/route53"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/aws/ec2"
	"github.com/opendraas/draas/aws/route53"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/examples/internal/lab"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/replicate"
)

// cloud is where DR copies, instances and DNS records live: AWS (or a
// simulator behind --endpoint), or with --simulate a lab in this process.
type cloud struct {
	// plan is the plan as the cloud knows it: subnet and security group
	// names resolved to IDs, the image and the zone filled in. Nil when
	// the cloud was opened without a plan.
	plan     *plan.Plan
	launcher *ec2.Launcher
	copies   *ebs.Copies
	dns      *route53.DNS
	ec2      *awsec2.Client
	ebs      *awsebs.Client
	r53      *awsr53.Client
	// store is the backup store; nil without --bucket.
	store  *s3.Store
	prober failover.Prober
	// poll is the failover's health poll interval; 0 for its default.
	poll time.Duration
	// lab is the simulated environment with --simulate.
	lab   *lab.Lab
	close func()
}

// need says what a command needs of the cloud.
type need struct {
	// network resolves the plan's subnets and security groups for a
	// failover or a drill (Mode), and requires an image.
	network bool
	mode    failover.Mode
	// store requires the backup store.
	store bool
}

// openCloud opens the cloud for plan p (nil for a command that needs no
// plan, such as cleaning up a drill from its report).
func (a *app) openCloud(ctx context.Context, p *plan.Plan, planPath string, n need) (*cloud, error) {
	if a.g.simulate {
		if p == nil {
			return nil, usagef("--simulate needs a plan: the simulated cloud of an earlier run ended with its process")
		}
		l, err := lab.Start(ctx, p, lab.Options{DiskMiB: a.g.diskMiB})
		if err != nil {
			return nil, fmt.Errorf("start the simulators: %w", err)
		}
		pl := *l.Plan
		if a.g.imageID != "" {
			pl.AWS.ImageID = a.g.imageID
		}
		c := &cloud{plan: &pl, launcher: l.Launcher, copies: l.Copies, dns: l.DNS, ec2: l.EC2, ebs: l.EBS,
			store: l.Store, prober: l.Probe, poll: a.g.poll, lab: l, close: l.Close}
		if c.poll == 0 {
			c.poll = lab.PollInterval // the lab's own, a few milliseconds
		}
		if a.g.health == "ec2" {
			c.prober = ec2Only{}
		}
		return c, nil
	}
	region := a.g.region
	if region == "" && p != nil {
		region = p.AWS.Region
	}
	cfg, err := a.awsConfig(ctx, region)
	if err != nil {
		return nil, err
	}
	c := &cloud{
		ec2:   awsec2.NewFromConfig(cfg),
		ebs:   ebs.NewClient(cfg, 0),
		r53:   awsr53.NewFromConfig(cfg),
		poll:  a.g.poll,
		close: func() {},
	}
	c.copies = ebs.NewCopies(c.ebs, c.ec2, ebs.CopiesOptions{})
	c.dns = route53.New(c.r53, route53.Options{PollInterval: a.g.poll})
	c.prober = failover.NetProber{}
	if a.g.health == "ec2" {
		c.prober = ec2Only{}
	}
	if a.g.bucket != "" {
		c.store = s3.New(a.s3Client(cfg), a.g.bucket, a.g.prefix, s3.Options{})
	} else if n.store {
		return nil, usagef("this command reads the backup store: pass --bucket (and --prefix, default %q)", a.g.prefix)
	}
	c.plan = p
	zone := ""
	if p != nil && n.network {
		image := cmp.Or(a.g.imageID, p.AWS.ImageID)
		if image == "" {
			return nil, usagef("%s: aws.imageId: the plan names no image to launch instances from: set aws.imageId or pass --image-id (an AMI of the DR copies' architecture and boot mode)", planPath)
		}
		if c.plan, err = resolveNetwork(ctx, c.ec2, p, planPath, n.mode); err != nil {
			return nil, err
		}
		c.plan.AWS.ImageID = image
		zone = c.plan.AWS.AvailabilityZone
	}
	c.launcher = ec2.New(c.ec2, ec2.Options{AvailabilityZone: zone, PollInterval: a.g.poll})
	return c, nil
}

// awsConfig loads the SDK's configuration (environment, ~/.aws files, SSO,
// instance role) with the region and endpoint the flags name.
func (a *app) awsConfig(ctx context.Context, region string) (aws.Config, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if region != "" {
		opts = append(opts, awsconfig.WithRegion(region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load the AWS configuration (environment, ~/.aws/config, ~/.aws/credentials): %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, usagef("no AWS region: set aws.region in the plan, pass --region, or set AWS_REGION")
	}
	a.region = cfg.Region
	if a.g.endpoint != "" {
		cfg.BaseEndpoint = aws.String(a.g.endpoint)
	}
	if a.metrics != nil {
		cfg.APIOptions = append(cfg.APIOptions, a.metrics.AWSAPIOption())
	}
	return cfg, nil
}

// s3Client returns an S3 client, path-style at --s3-endpoint when set.
func (a *app) s3Client(cfg aws.Config) *awss3.Client {
	return awss3.NewFromConfig(cfg, func(o *awss3.Options) {
		if a.g.s3Endpoint != "" {
			o.BaseEndpoint = aws.String(a.g.s3Endpoint)
			o.UsePathStyle = true
		}
	})
}

// backups is the backup store as replication reads it, or a stand-in that
// says why there is none (status reads only the DR copies).
func (c *cloud) backups() replicate.Backups {
	if c.store == nil {
		return noBackups{}
	}
	return replicate.BackupsOf(c.store)
}

type noBackups struct{}

var errNoBackups = errors.New("no backup store: pass --bucket (and --prefix)")

func (noBackups) Points(context.Context, string) ([]draas.RecoveryPoint, error) {
	return nil, errNoBackups
}

func (noBackups) OpenDisk(context.Context, string, string, string) (draas.BlockSource, error) {
	return nil, errNoBackups
}

// ec2Only passes TCP and HTTP health checks without running them
// (--health ec2): the EC2 status checks alone judge health, for a machine
// that cannot reach the instances' private addresses.
type ec2Only struct{}

func (ec2Only) Probe(context.Context, draas.Instance, plan.HealthCheck) error { return nil }

// prepareSimulation gives the simulated site's VMs what a real site would
// already have: a recovery point in the backup store each and, when copies
// is set, a DR copy each. It prints that it does.
func (a *app) prepareSimulation(ctx context.Context, c *cloud, copies bool) error {
	if c.lab == nil {
		return nil
	}
	var names []string
	for _, vm := range c.plan.VMs {
		res, err := backup.Run(ctx, c.lab.Snapshotter(), c.lab.BackupStore(), vm.Name, backup.Options{})
		if err != nil {
			return fmt.Errorf("simulate: back up %s: %w", vm.Name, err)
		}
		var size int64
		for _, d := range res.Disks {
			size += d.Disk.Size
		}
		names = append(names, fmt.Sprintf("%s (%d MiB)", vm.Name, size>>20))
	}
	a.say("simulate: backed up %s into the simulated backup store", strings.Join(names, ", "))
	if !copies {
		return nil
	}
	r, err := c.lab.Replicator(replicate.Options{})
	if err != nil {
		return err
	}
	results, err := r.ReplicateAll(ctx)
	if err != nil {
		return fmt.Errorf("simulate: replicate: %w", err)
	}
	var done []string
	for _, res := range results {
		done = append(done, fmt.Sprintf("%s (%s)", res.VM, res.Action))
	}
	a.say("simulate: replicated %s into DR copies (simulated EBS snapshots)", strings.Join(done, ", "))
	return nil
}

// ec2NetworkAPI is what resolving a plan's network needs of EC2.
type ec2NetworkAPI interface {
	DescribeSubnets(ctx context.Context, in *awsec2.DescribeSubnetsInput, optFns ...func(*awsec2.Options)) (*awsec2.DescribeSubnetsOutput, error)
	DescribeSecurityGroups(ctx context.Context, in *awsec2.DescribeSecurityGroupsInput, optFns ...func(*awsec2.Options)) (*awsec2.DescribeSecurityGroupsOutput, error)
}

// subnetInfo is a subnet found for a plan's name.
type subnetInfo struct{ id, vpc, zone string }

// resolveNetwork returns a copy of p whose subnets and security groups, as
// the mode uses them, are IDs: each name in the plan is looked up as an ID
// and then by its Name tag (security groups also by group name), so a plan
// may name them either way. The copy's availability zone is the plan's or
// the zone of the subnets the mode launches in, which must be one: volumes
// are made in one zone.
func resolveNetwork(ctx context.Context, api ec2NetworkAPI, p *plan.Plan, file string, mode failover.Mode) (*plan.Plan, error) {
	cp := *p
	cp.VMs = slices.Clone(p.VMs)
	subnets := map[string]subnetInfo{}
	var errs []error
	subnet := func(field, ref string) (subnetInfo, bool) {
		if s, ok := subnets[ref]; ok {
			return s, true
		}
		s, err := findSubnet(ctx, api, ref)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", file, field, err))
			return s, false
		}
		subnets[ref] = s
		return s, true
	}
	groups := func(field string, vpc string, refs []string) []string {
		var ids []string
		for i, ref := range refs {
			id, err := findGroup(ctx, api, vpc, ref)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %s[%d]: %w", file, field, i, err))
				continue
			}
			ids = append(ids, id)
		}
		return ids
	}
	zones := map[string]bool{}
	if mode == failover.Drill {
		if s, ok := subnet("drill.subnet", p.Drill.Subnet); ok {
			cp.Drill.Subnet = s.id
			cp.Drill.SecurityGroups = groups("drill.securityGroups", s.vpc, p.Drill.SecurityGroups)
			zones[s.zone] = true
		}
	} else {
		for i, vm := range p.VMs {
			field := fmt.Sprintf("vms[%d].subnet", i)
			if vm.Subnet == "" {
				field = "defaults.subnet"
			}
			s, ok := subnet(field, p.Subnet(vm))
			if !ok {
				continue
			}
			cp.VMs[i].Subnet = s.id
			gfield := fmt.Sprintf("vms[%d].securityGroups", i)
			if len(vm.SecurityGroups) == 0 {
				gfield = "defaults.securityGroups"
			}
			cp.VMs[i].SecurityGroups = groups(gfield, s.vpc, p.SecurityGroups(vm))
			zones[s.zone] = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, usagef("%w", err)
	}
	if cp.AWS.AvailabilityZone == "" {
		if len(zones) != 1 {
			return nil, usagef("%s: aws.availabilityZone: the subnets are in zones %s, and volumes are made in one: set aws.availabilityZone or use subnets of one zone",
				file, strings.Join(slices.Sorted(maps.Keys(zones)), ", "))
		}
		for z := range zones {
			cp.AWS.AvailabilityZone = z
		}
	}
	return &cp, nil
}

func findSubnet(ctx context.Context, api ec2NetworkAPI, ref string) (subnetInfo, error) {
	for _, f := range []string{"subnet-id", "tag:Name"} {
		out, err := api.DescribeSubnets(ctx, &awsec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: aws.String(f), Values: []string{ref}}}})
		if err != nil {
			return subnetInfo{}, fmt.Errorf("look up subnet %q: %w", ref, err)
		}
		switch len(out.Subnets) {
		case 0:
			continue
		case 1:
			s := out.Subnets[0]
			return subnetInfo{id: aws.ToString(s.SubnetId), vpc: aws.ToString(s.VpcId), zone: aws.ToString(s.AvailabilityZone)}, nil
		default:
			return subnetInfo{}, fmt.Errorf("%d subnets are named %q: name the subnet by its ID", len(out.Subnets), ref)
		}
	}
	return subnetInfo{}, fmt.Errorf("no subnet %q (looked up by ID and by Name tag): create it or name an existing subnet", ref)
}

func findGroup(ctx context.Context, api ec2NetworkAPI, vpc, ref string) (string, error) {
	for _, f := range []string{"group-id", "group-name", "tag:Name"} {
		out, err := api.DescribeSecurityGroups(ctx, &awsec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
			{Name: aws.String(f), Values: []string{ref}},
			{Name: aws.String("vpc-id"), Values: []string{vpc}},
		}})
		if err != nil {
			return "", fmt.Errorf("look up security group %q: %w", ref, err)
		}
		switch len(out.SecurityGroups) {
		case 0:
			continue
		case 1:
			return aws.ToString(out.SecurityGroups[0].GroupId), nil
		default:
			return "", fmt.Errorf("%d security groups in %s are named %q: name the group by its ID", len(out.SecurityGroups), vpc, ref)
		}
	}
	return "", fmt.Errorf("no security group %q in the subnet's VPC %s (looked up by ID, group name and Name tag): create it or name an existing group", ref, vpc)
}
