// Package account builds draas's AWS adapters for one AWS account from one
// aws.Config: the EC2 [ec2.Launcher] (a draas.InstanceLauncher), the EBS
// [ebs.Copies] (a draas.CopyStore) on one shared, rate-limited EBS direct
// APIs client, [route53.DNS], and the S3 backup store ([s3.Store]).
//
// The backup store may live in another account than the DR copies, as a
// DR-as-a-service provider runs it: the provider's bucket, the customer's
// EBS snapshots and instances. [Backup] reaches that bucket with a
// configuration of its own or with a role assumed in the bucket's account;
// docs/iam.md says which policy goes in which account.
//
// [Account.ResolvePlan] turns the subnet and security group names of a plan
// into the IDs the launcher needs, and chooses the availability zone.
//
// Every client retries what AWS throttles or fails transiently for as long
// as the request's context allows ([NewRetryer]): in a disaster, when a
// whole region fails over at once, a run waits for AWS instead of failing.
// The retries count in the context's retry.Counter, which the workflows
// report.
//
// This package is the wiring that users who call the library against AWS
// would otherwise copy; each adapter can still be built alone from its own
// package.
package account

import (
	"cmp"
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	awsebs "github.com/aws/aws-sdk-go-v2/service/ebs"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	awsr53 "github.com/aws/aws-sdk-go-v2/service/route53"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/aws/ec2"
	"github.com/opendraas/draas/aws/route53"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/plan"
)

// Options tunes an [Account]. The zero value is useful: AWS's endpoints,
// the adapters' defaults, and the backup store in the same account.
//
// Endpoints come from the aws.Config given to [New]: BaseEndpoint points
// EC2, EBS and Route 53 (and S3, unless Backup.Endpoint is set) at a
// simulator. Every client retries with [NewRetryer] tuned by Retry, unless
// the configuration sets a Retryer of its own (see [WithRetries]); the EBS
// client's retryer is wrapped in the account's EBS limit.
type Options struct {
	// Retry tunes the retryer of every client: by default a request is
	// retried for as long as its context allows (see [NewRetryer]).
	Retry RetryOptions
	// EBSConcurrency is how many EBS direct API requests copies keep in
	// flight at once (blockcopy's Concurrency summed over parallel copies);
	// it sizes the EBS client's connection pool. 0 means 8.
	EBSConcurrency int
	// EBSLimit paces every EBS direct API request of the account, shared by
	// all copies and reads. Nil means ebs.NewAdaptiveLimit(50, 1000), as
	// [ebs.NewClient] has it. Per-snapshot limits go in Copies.Sink.Limits.
	EBSLimit *ebs.AdaptiveLimit
	// Copies configures the DR copy store: data path, proxy instance,
	// sink limits, extra tags.
	Copies ebs.CopiesOptions
	// Launcher configures the instance launcher: volume type, image,
	// zone, waits. [Account.LauncherFor] fills in a plan's image and zone.
	Launcher ec2.Options
	// DNS configures Route 53.
	DNS route53.Options
	// Backup says where the backup store's bucket is and how to reach it.
	Backup Backup
}

// Backup says how to reach the backup store's S3 bucket. The zero value is
// the S3 of the account the Account was made for, with its credentials.
type Backup struct {
	// Config, when not nil, is the configuration (credentials, region,
	// endpoint, API options) of the account that holds the bucket; nil
	// means the DR account's.
	Config *aws.Config
	// RoleARN, when set, is a role in the bucket's account to assume for
	// every S3 request, with Config's credentials (or the DR account's).
	// Its trust policy must name the principal that assumes it. The
	// credentials are fetched from STS on first use, cached, and renewed
	// before they expire.
	RoleARN string
	// ExternalID is passed when assuming RoleARN, for a trust policy with
	// an sts:ExternalId condition (the provider gives each customer one).
	ExternalID string
	// SessionName names the assumed role's sessions in CloudTrail; empty
	// means "draas".
	SessionName string
	// Duration of the assumed role's credentials; 0 means STS's default
	// (one hour).
	Duration time.Duration
	// Endpoint, when set, is the URL of S3, addressed path-style: a
	// simulator (awssim.Server.S3URL) or an S3-compatible store. Empty
	// means the configuration's: AWS's S3, or its BaseEndpoint.
	Endpoint string
}

// Account is the set of draas adapters for one AWS account and region. Its
// fields are ready to use and safe for concurrent use; pass them to the
// workflows (failover.Options.Launcher, replicate.New's copy store, ...).
type Account struct {
	// Launcher launches instances from DR copies (draas.InstanceLauncher)
	// with Options.Launcher. A failover's launcher also needs the plan's
	// zone: see [Account.LauncherFor].
	Launcher *ec2.Launcher
	// Copies is the store of DR copies as EBS snapshots (draas.CopyStore).
	Copies *ebs.Copies
	// DNS is Route 53 (draas.DNS).
	DNS *route53.DNS
	// Resolver finds subnets and security groups by ID or by name.
	Resolver *ec2.Resolver

	// The SDK clients the adapters use, for what they do not cover. EBS is
	// the one client every copy and snapshot read of the account shares.
	EC2     *awsec2.Client
	EBS     *awsebs.Client
	Route53 *awsr53.Client
	// S3 is the backup account's S3 client (see [Backup]).
	S3 *awss3.Client
	// EBSLimit is the account's EBS request rate (Options.EBSLimit or the
	// default): its Rate and Throttled say how hard AWS pushed back.
	EBSLimit *ebs.AdaptiveLimit

	opts Options
}

// New returns the adapters for the account and region of cfg. It makes no
// request: missing permissions, a missing bucket or a role that cannot be
// assumed surface on first use. It fails only when cfg (or Backup.Config)
// has no region.
func New(cfg aws.Config, opts Options) (*Account, error) {
	if cfg.Region == "" {
		return nil, draas.Invalidf("account: the AWS configuration has no region: set AWS_REGION or config.WithRegion")
	}
	bcfg := cfg
	if opts.Backup.Config != nil {
		bcfg = *opts.Backup.Config
		if bcfg.Region == "" {
			return nil, draas.Invalidf("account: Backup.Config has no region: set the bucket's region")
		}
	}
	cfg, bcfg = WithRetries(cfg, opts.Retry), WithRetries(bcfg, opts.Retry)
	if opts.Backup.RoleARN != "" {
		bcfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(bcfg), opts.Backup.RoleARN,
			func(o *stscreds.AssumeRoleOptions) {
				o.RoleSessionName = cmp.Or(opts.Backup.SessionName, "draas")
				if opts.Backup.ExternalID != "" {
					o.ExternalID = aws.String(opts.Backup.ExternalID)
				}
				if opts.Backup.Duration > 0 {
					o.Duration = opts.Backup.Duration
				}
			}))
	}
	limit := opts.EBSLimit
	if limit == nil {
		limit = ebs.NewAdaptiveLimit(50, 1000)
	}
	a := &Account{
		EC2:     awsec2.NewFromConfig(cfg),
		Route53: awsr53.NewFromConfig(cfg),
		EBS: ebs.NewClient(cfg, opts.EBSConcurrency, func(o *awsebs.Options) {
			o.Retryer = cfg.Retryer()
		}, ebs.WithAdaptiveLimit(limit)),
		S3: awss3.NewFromConfig(bcfg, func(o *awss3.Options) {
			if opts.Backup.Endpoint != "" {
				o.BaseEndpoint = aws.String(opts.Backup.Endpoint)
				o.UsePathStyle = true
			}
		}),
		EBSLimit: limit,
		opts:     opts,
	}
	a.Launcher = ec2.New(a.EC2, opts.Launcher)
	a.Copies = ebs.NewCopies(a.EBS, a.EC2, opts.Copies)
	a.DNS = route53.New(a.Route53, opts.DNS)
	a.Resolver = ec2.NewResolver(a.EC2)
	return a, nil
}

// LauncherFor returns a launcher for the instances of p, a plan resolved by
// [Account.ResolvePlan]: Options.Launcher with the plan's image
// (aws.imageId) and availability zone (aws.availabilityZone, which
// ResolvePlan fills in) where the plan sets them. Volumes are made in that
// zone, the zone of the subnets the instances launch in.
func (a *Account) LauncherFor(p *plan.Plan) *ec2.Launcher {
	opts := a.opts.Launcher
	opts.ImageID = cmp.Or(p.AWS.ImageID, opts.ImageID)
	opts.AvailabilityZone = cmp.Or(p.AWS.AvailabilityZone, opts.AvailabilityZone)
	return ec2.New(a.EC2, opts)
}

// BackupStore returns the backup store in bucket under prefix, through the
// backup account's S3 client. Like [s3.New] it makes no request.
func (a *Account) BackupStore(bucket, prefix string, opts s3.Options) *s3.Store {
	return s3.New(a.S3, bucket, prefix, opts)
}

// OpenSnapshot opens a completed EBS snapshot of the account for reading,
// through the shared EBS client: what failback.Options.OpenSnapshot wants.
func (a *Account) OpenSnapshot(ctx context.Context, id string) (draas.BlockSource, error) {
	return ebs.OpenSnapshot(ctx, a.EBS, id, ebs.SourceOptions{})
}
