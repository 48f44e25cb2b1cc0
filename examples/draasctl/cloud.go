package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awsebs "github.com/aws/aws-sdk-go-v2/service/ebs"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	awsr53 "github.com/aws/aws-sdk-go-v2/service/route53"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/account"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/aws/ec2"
	"github.com/opendraas/draas/aws/route53"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/lab"
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
	// ec2Only judges health by the EC2 status checks alone (--health ec2).
	ec2Only bool
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
		c.ec2Only = a.g.health == "ec2"
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
	acct, err := account.New(cfg, account.Options{
		Retry:    a.retryOptions(),
		Launcher: ec2.Options{PollInterval: a.g.poll},
		DNS:      route53.Options{PollInterval: a.g.poll},
		Backup:   account.Backup{Endpoint: a.g.s3Endpoint, RoleARN: a.g.backupRole, ExternalID: a.g.backupExternalID},
	})
	if err != nil {
		return nil, err
	}
	c := &cloud{
		launcher: acct.Launcher,
		copies:   acct.Copies,
		dns:      acct.DNS,
		ec2:      acct.EC2,
		ebs:      acct.EBS,
		r53:      acct.Route53,
		prober:   failover.NetProber{},
		poll:     a.g.poll,
		close:    func() {},
	}
	c.ec2Only = a.g.health == "ec2"
	if a.g.bucket != "" {
		c.store = acct.BackupStore(a.g.bucket, a.g.prefix, s3.Options{})
	} else if n.store {
		return nil, usagef("this command reads the backup store: pass --bucket (and --prefix, default %q)", a.g.prefix)
	}
	c.plan = p
	if p != nil && n.network {
		image := cmp.Or(a.g.imageID, p.AWS.ImageID)
		if image == "" {
			return nil, usagef("%s: aws.imageId: the plan names no image to launch instances from: set aws.imageId or pass --image-id (an AMI of the DR copies' architecture and boot mode)", planPath)
		}
		network := account.Production
		if n.mode == failover.Drill {
			network = account.Drill
		}
		if c.plan, err = acct.ResolvePlan(ctx, p, network); err != nil {
			return nil, resolveError(planPath, err)
		}
		c.plan.AWS.ImageID = image
		c.launcher = acct.LauncherFor(c.plan)
	}
	return c, nil
}

// resolveError gives a failed plan resolution its exit code: 2 (usage) for
// a problem of the plan, which names the file; 1 (failed) for a lookup
// that failed, such as one AWS still throttled: the plan is not to blame,
// and the same command may succeed later.
func resolveError(planPath string, err error) error {
	if account.IsPlanError(err) {
		return usagef("%s: %w", planPath, err)
	}
	return failed(fmt.Errorf("%s: resolve the plan's network: %w", planPath, err))
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
	// Every client, the seed command's too, retries throttled and failed
	// requests until the command is interrupted.
	return account.WithRetries(cfg, a.retryOptions()), nil
}

// retryOptions tunes the retryer of every AWS client (--max-backoff).
func (a *app) retryOptions() account.RetryOptions {
	return account.RetryOptions{MaxBackoff: a.g.maxBackoff}
}

// backups is the backup store as replication reads it, or a stand-in that
// says why there is none (status reads only the DR copies).
func (c *cloud) backups() draas.BackupReader {
	if c.store == nil {
		return noBackups{}
	}
	return c.store
}

type noBackups struct{}

var errNoBackups = errors.New("no backup store: pass --bucket (and --prefix)")

func (noBackups) Points(context.Context, string) ([]draas.RecoveryPoint, error) {
	return nil, errNoBackups
}

func (noBackups) OpenDisk(context.Context, string, string, string) (draas.BlockSource, error) {
	return nil, errNoBackups
}

// prepareSimulation gives the simulated site's VMs what a real site would
// already have: a recovery point in the backup store each and, when copies
// is set, a DR copy each. It prints that it does.
func (a *app) prepareSimulation(ctx context.Context, c *cloud, copies bool) error {
	if c.lab == nil {
		return nil
	}
	b, err := backup.New(c.lab.Snapshotter(), c.lab.Store, backup.Options{})
	if err != nil {
		return err
	}
	var names []string
	for _, vm := range c.plan.VMs {
		res, err := b.Run(ctx, vm.Name)
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
