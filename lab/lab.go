// Package lab is a simulated DR environment for a plan, for tests of code
// that uses draas: one call gives an AWS account, an on-premises vSphere
// site and guests that answer the plan's health checks, all in the process
// and on 127.0.0.1, so a test can back up, replicate, drill, fail over and
// fail back without a cloud account or a vCenter.
//
// [Start] builds a [Lab] for a plan:
//
//   - an AWS account in [awssim] (EC2, EBS direct APIs, Route 53 and S3),
//     reached through the real AWS SDK clients, with the plan's production
//     and drill VPCs, subnets, security groups and DNS zones, and a bucket
//     for the backup store (Lab.Store);
//   - the on-premises site: a VM per plan VM whose disks hold generated
//     data, in memory (Lab.Site) or, with Options.VSphere, in vcsim,
//     govmomi's vCenter simulator, driven through package vsphere
//     (Lab.VCenter);
//   - guests: a listener on loopback that answers every TCP and HTTP health
//     check of the plan (Lab.Probe).
//
// Lab.Plan is the plan as the simulator knows it (subnet and security group
// IDs in place of names); pass it, not the original, to the workflows.
// [Lab.Replicator], [Lab.Failover] and [Lab.Failback] return the workflows
// wired to the lab, and [Lab.Snapshotter] the site as package backup reads
// it. [Test] starts a lab for a test and closes it when the test ends, in
// the way govmomi's simulator.Test does.
package lab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsebs "github.com/aws/aws-sdk-go-v2/service/ebs"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	awsr53 "github.com/aws/aws-sdk-go-v2/service/route53"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/account"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/aws/ec2"
	"github.com/opendraas/draas/aws/route53"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/backup/fromvsphere"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/failback"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/replicate"
	"github.com/opendraas/draas/vsphere"
)

// BlockSize of generated disks: the EBS and backup store block size.
const BlockSize = 512 << 10

// The backup store's bucket and key prefix in the simulator's S3.
const (
	BackupBucket = "draas-backups"
	BackupPrefix = "lab"
)

// Options tunes a lab. The zero value is useful.
type Options struct {
	// Seed makes the generated disks repeatable; 0 means 1.
	Seed uint64
	// DiskMiB is the size of generated disks for VMs whose plan lists
	// none; 0 means 64.
	DiskMiB int64
	// DataPercent is the share of generated disks that holds data; 0 means
	// 60.
	DataPercent int
	// VSphere runs the on-premises site on vcsim through package vsphere
	// (Lab.VCenter) instead of in memory (Lab.Site). vSphere names disks by
	// their slot ("scsi0:0"; "scsi0-0" in the backup store), not as the
	// plan does.
	VSphere bool
	// DatastoreOverTLS sends a VSphere site's disk data over loopback TLS,
	// as its other calls, instead of to vcsim in the process (see VCenter).
	DatastoreOverTLS bool
	// SiteRecords seeds the production DNS zone with each plan VM's A
	// records pointing at an on-premises address (192.168.10.x), as they
	// were before the disaster: a failover's report keeps them as its
	// PreviousRecords, and failback points DNS back to them.
	SiteRecords bool
}

// Lab is a simulated DR environment for one plan.
type Lab struct {
	// Plan is the plan with its subnet and security group names replaced
	// by the simulator's IDs, and the simulator's image and zone.
	Plan *plan.Plan
	// AWS is the simulated AWS account: tests read and write its volumes
	// and inspect its instances through it.
	AWS *awssim.Server
	// Store is the backup store, in the simulator's S3.
	Store *s3.Store
	// Copies keeps the DR copies (EBS snapshots).
	Copies *ebs.Copies
	// Launcher launches the plan's instances, in its availability zone.
	Launcher *ec2.Launcher
	// DNS serves the plan's production and drill zones (Route 53).
	DNS *route53.DNS
	// Account holds the AWS adapters and clients above (its Launcher knows
	// no zone: Launcher is the plan's).
	Account *account.Account
	// Site is the on-premises vSphere site in memory: a VM per plan VM,
	// with its disks. It is nil with Options.VSphere.
	Site *draastest.Hypervisor
	// VCenter is the on-premises site on vcsim with Options.VSphere, nil
	// without. Its VMs are powered on, as production VMs are.
	VCenter *VCenter
	// SiteRecords are the records Options.SiteRecords seeded.
	SiteRecords []draas.Record

	// EBS, EC2 and S3 are the SDK clients of the simulator.
	EBS *awsebs.Client
	EC2 *awsec2.Client
	S3  *awss3.Client
	// Probe answers the plan's TCP and HTTP health checks from the guests
	// on loopback: pass it as failover.Options.Prober.
	Probe failover.Prober

	closers []func()
	snaps   int
	tls     bool // Options.DatastoreOverTLS
}

// fastRetries back off in milliseconds: the simulator throttles only when
// told to (AWS.Throttle), and then a run retries as patiently as against
// AWS, only faster.
var fastRetries = account.RetryOptions{MaxBackoff: 20 * time.Millisecond}

// Start builds the lab for p (which it does not modify).
func Start(ctx context.Context, p *plan.Plan, opts Options) (*Lab, error) {
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.DiskMiB <= 0 {
		opts.DiskMiB = 64
	}
	if opts.DataPercent <= 0 {
		opts.DataPercent = 60
	}
	srv, err := awssim.New(awssim.Options{Buckets: []string{BackupBucket}})
	if err != nil {
		return nil, err
	}
	l := &Lab{AWS: srv, closers: []func(){srv.Close}}
	cfg := srv.Config()
	if l.Account, err = account.New(cfg, account.Options{
		Retry:    fastRetries,
		Launcher: ec2.Options{PollInterval: 5 * time.Millisecond},
		DNS:      route53.Options{PollInterval: 5 * time.Millisecond},
		Backup:   account.Backup{Endpoint: srv.S3URL},
	}); err != nil {
		l.Close()
		return nil, err
	}
	l.EBS, l.EC2, l.S3 = l.Account.EBS, l.Account.EC2, l.Account.S3
	r53 := l.Account.Route53
	if err := l.network(ctx, p); err != nil {
		l.Close()
		return nil, err
	}
	for _, zone := range []string{p.DNS.Zone, p.Drill.DNSZone} {
		if zone == "" {
			continue
		}
		if _, err := r53.CreateHostedZone(ctx, &awsr53.CreateHostedZoneInput{Name: aws.String(zone), CallerReference: aws.String("lab-" + zone)}); err != nil {
			l.Close()
			return nil, fmt.Errorf("lab: hosted zone %s: %w", zone, err)
		}
	}
	l.Store = l.Account.BackupStore(BackupBucket, BackupPrefix, s3.Options{})
	l.Copies = l.Account.Copies
	l.Launcher = l.Account.LauncherFor(l.Plan)
	l.DNS = l.Account.DNS
	if opts.SiteRecords {
		if err := l.seedRecords(ctx, p); err != nil {
			l.Close()
			return nil, err
		}
	}
	if l.Probe, err = l.guests(); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.site(ctx, p, opts); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// site makes the on-premises site: a VM per plan VM whose disks hold
// generated data, in memory or in vcsim.
func (l *Lab) site(ctx context.Context, p *plan.Plan, opts Options) error {
	if opts.VSphere {
		l.tls = opts.DatastoreOverTLS
		vc, err := startVCenter(ctx, l.tls)
		if err != nil {
			return err
		}
		l.VCenter = vc
		l.closers = append(l.closers, func() { // the current one: LoseSite replaces it
			if l.VCenter != nil {
				l.VCenter.close()
			}
		})
	} else {
		l.Site = draastest.NewHypervisor(nil)
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 7))
	for _, vm := range p.VMs {
		disks := vm.Disks
		if len(disks) == 0 {
			disks = []draas.Disk{{Name: "os", Size: opts.DiskMiB << 20}}
		}
		shape := draas.Shape{CPUs: 2, MemoryMiB: 4096, Firmware: "bios", Disks: disks}
		var contents []*draastest.Disk
		for _, d := range disks {
			contents = append(contents, generate(rng, d.Size, opts.DataPercent))
		}
		if l.Site != nil {
			if err := l.Site.AddVM(vm.Name, shape, contents...); err != nil {
				return err
			}
			continue
		}
		var srcs []draas.BlockSource
		for _, c := range contents {
			srcs = append(srcs, c)
		}
		if err := l.VCenter.createVM(ctx, vm.Name, shape, srcs); err != nil {
			return err
		}
		if err := l.VCenter.Hypervisor.PowerOn(ctx, vm.Name); err != nil {
			return fmt.Errorf("lab: power on VM %s: %w", vm.Name, err)
		}
	}
	return nil
}

// seedRecords points each plan VM's A records at an on-premises address.
func (l *Lab) seedRecords(ctx context.Context, p *plan.Plan) error {
	zone := p.DNS.Zone
	for i, vm := range p.VMs {
		for _, r := range vm.DNS {
			if r.Type != "" && r.Type != "A" {
				continue
			}
			name := r.Name
			if !strings.HasSuffix(name, ".") {
				name += "." + strings.TrimSuffix(zone, ".") + "."
			}
			rec := draas.Record{Zone: zone, Name: name, Type: "A", TTL: p.TTL(), Values: []string{fmt.Sprintf("192.168.10.%d", 10+i)}}
			if err := l.DNS.Upsert(ctx, rec); err != nil {
				return fmt.Errorf("lab: seed record %s of VM %s: %w", name, vm.Name, err)
			}
			l.SiteRecords = append(l.SiteRecords, rec)
		}
	}
	return nil
}

// Hypervisor returns the on-premises site: Site, or VCenter's Hypervisor.
func (l *Lab) Hypervisor() draas.Hypervisor {
	if l.VCenter != nil {
		return l.VCenter.Hypervisor
	}
	return l.Site
}

// network makes the plan's subnets and security groups, production and
// drill, and rewrites the plan to use their IDs.
func (l *Lab) network(ctx context.Context, p *plan.Plan) error {
	cp := *p
	cp.VMs = slices.Clone(p.VMs)
	azs := l.AWS.AvailabilityZones()
	cp.AWS.AvailabilityZone = azs[0]
	if cp.AWS.ImageID == "" {
		cp.AWS.ImageID = l.AWS.DefaultImageID()
	}
	prod, err := l.AWS.AddVPC("10.0.0.0/16", map[string]string{"Name": p.Name + "-production"})
	if err != nil {
		return err
	}
	drill, err := l.AWS.AddVPC("10.99.0.0/16", map[string]string{"Name": p.Name + "-drill"})
	if err != nil {
		return err
	}
	subnets := map[string]string{}
	next := 1
	subnet := func(vpc, name, prefix string, ip string) (string, error) {
		if name == "" {
			return "", nil
		}
		if id, ok := subnets[name]; ok {
			return id, nil
		}
		cidr := fmt.Sprintf("%s.%d.0/24", prefix, next)
		if a, err := netip.ParseAddr(ip); err == nil && a.Is4() && vpc == prod {
			b := a.As4()
			if b[0] == 10 && b[1] == 0 {
				cidr = fmt.Sprintf("10.0.%d.0/24", b[2])
			}
		}
		next++
		id, err := l.AWS.AddSubnet(vpc, azs[0], cidr, map[string]string{"Name": name})
		if err != nil {
			return "", fmt.Errorf("lab: subnet %s (%s): %w", name, cidr, err)
		}
		subnets[name] = id
		return id, nil
	}
	groups := map[string]string{}
	group := func(vpc, name string) (string, error) {
		key := vpc + "/" + name
		if id, ok := groups[key]; ok {
			return id, nil
		}
		out, err := l.EC2.CreateSecurityGroup(ctx, &awsec2.CreateSecurityGroupInput{GroupName: aws.String(name), Description: aws.String(name), VpcId: aws.String(vpc)})
		if err != nil {
			return "", fmt.Errorf("lab: security group %s: %w", name, err)
		}
		groups[key] = aws.ToString(out.GroupId)
		return groups[key], nil
	}
	groupsOf := func(vpc string, names []string) ([]string, error) {
		var ids []string
		for _, n := range names {
			id, err := group(vpc, n)
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
		return ids, nil
	}
	// VMs with fixed addresses first, so their subnets get matching ranges.
	order := slices.Clone(cp.VMs)
	slices.SortStableFunc(order, func(a, b plan.VM) int {
		if (a.PrivateIP != "") == (b.PrivateIP != "") {
			return 0
		}
		if a.PrivateIP != "" {
			return -1
		}
		return 1
	})
	for _, vm := range order {
		if _, err := subnet(prod, p.Subnet(vm), "10.0", vm.PrivateIP); err != nil {
			return err
		}
	}
	for i, vm := range cp.VMs {
		if vm.Subnet != "" {
			cp.VMs[i].Subnet = subnets[vm.Subnet]
		}
		if len(vm.SecurityGroups) > 0 {
			if cp.VMs[i].SecurityGroups, err = groupsOf(prod, vm.SecurityGroups); err != nil {
				return err
			}
		}
	}
	if cp.Defaults.Subnet != "" {
		if cp.Defaults.Subnet, err = subnet(prod, p.Defaults.Subnet, "10.0", ""); err != nil {
			return err
		}
	}
	if cp.Defaults.SecurityGroups, err = groupsOf(prod, p.Defaults.SecurityGroups); err != nil {
		return err
	}
	if p.Drill.Subnet != "" {
		if cp.Drill.Subnet, err = subnet(drill, p.Drill.Subnet, "10.99", ""); err != nil {
			return err
		}
		if cp.Drill.SecurityGroups, err = groupsOf(drill, p.Drill.SecurityGroups); err != nil {
			return err
		}
	}
	l.Plan = &cp
	return nil
}

// guests answers every TCP and HTTP health check on loopback: the prober's
// dialer sends every instance address there, so nothing leaves 127.0.0.1.
func (l *Lab) guests() (failover.Prober, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), ReadHeaderTimeout: time.Second}
	go srv.Serve(ln)
	l.closers = append(l.closers, func() { srv.Close() })
	return failover.NetProber{Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, ln.Addr().String())
	}}, nil
}

// generate returns a disk whose data lies in runs of 64 KiB to 2 MiB.
func generate(rng *rand.Rand, size int64, percent int) *draastest.Disk {
	d := draastest.NewDisk(size, BlockSize)
	const unit = 64 << 10
	buf := make([]byte, 32*unit)
	for off := int64(0); off < size; {
		n := min(int64(1+rng.IntN(32))*unit, size-off)
		if rng.IntN(100) < percent {
			p := buf[:n]
			for i := 0; i+8 <= len(p); i += 8 {
				v := rng.Uint64()
				for j := range 8 {
					p[i+j] = byte(v >> (8 * j))
				}
			}
			_, _ = d.WriteAt(p, off)
		}
		off += n
	}
	return d
}

// Test starts a lab for p with opts (at most one; none means the zero
// Options), calls f with it and a context that ends with the test, and
// closes the lab when f returns. A lab that does not start fails t at once.
func Test(t testing.TB, p *plan.Plan, f func(ctx context.Context, l *Lab), opts ...Options) {
	t.Helper()
	if len(opts) > 1 {
		t.Fatalf("lab.Test: %d Options, want at most one", len(opts))
	}
	var o Options
	if len(opts) == 1 {
		o = opts[0]
	}
	ctx := t.Context()
	l, err := Start(ctx, p, o)
	if err != nil {
		t.Fatalf("lab.Test: start the lab for plan %s: %v", p.Name, err)
	}
	defer l.Close()
	f(ctx, l)
}

// Close stops everything.
func (l *Lab) Close() {
	for i := len(l.closers) - 1; i >= 0; i-- {
		l.closers[i]()
	}
}

// Change writes new data into the given fraction of the blocks of every
// disk of vm on the site, as the running VM would, and returns how many
// blocks changed.
func (l *Lab) Change(vm string, fraction float64, seed uint64) (int, error) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 11))
	shape, err := l.Hypervisor().VMShape(ctx, vm)
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range shape.Disks {
		d, closeDisk, err := l.guestDisk(ctx, vm, i)
		if err != nil {
			return 0, err
		}
		blocks := int((d.Size() + BlockSize - 1) / BlockSize)
		p := make([]byte, 4096)
		for range max(1, int(float64(blocks)*fraction)) {
			for j := range p {
				p[j] = byte(rng.Uint32()) | 1
			}
			off := int64(rng.IntN(blocks)) * BlockSize
			if off+int64(len(p)) > d.Size() {
				off = d.Size() - int64(len(p))
			}
			if _, err := d.WriteAt(p, off); err != nil {
				closeDisk()
				return n, err
			}
			n++
		}
		closeDisk()
	}
	return n, nil
}

// guestDisk returns disk i of vm as its guest writes it, and a function
// that closes it.
func (l *Lab) guestDisk(ctx context.Context, vm string, i int) (interface {
	WriteAt(p []byte, off int64) (int, error)
	Size() int64
}, func(), error) {
	if l.VCenter != nil {
		d, err := l.VCenter.GuestDisk(ctx, vm, i)
		if err != nil {
			return nil, nil, err
		}
		return d, func() { d.Close() }, nil
	}
	d, err := l.Site.Disk(vm, i)
	if err != nil {
		return nil, nil, err
	}
	return d, func() {}, nil
}

// Snapshotter returns the site as a backup.Hypervisor. In memory, a
// snapshot records a version of each disk, whose name serves as its CBT
// change ID. On vcsim it is package fromvsphere's: a VM snapshot, and no
// change IDs (vcsim has no CBT), so every backup reads whole disks.
func (l *Lab) Snapshotter() backup.Hypervisor {
	if l.VCenter != nil {
		return fromvsphere.New(l.VCenter.Hypervisor, vsphere.BackupOptions{})
	}
	return siteSnapshots{l}
}

type siteSnapshots struct{ l *Lab }

type siteSnapshot struct {
	disks []*draastest.Disk
	spec  []draas.Disk
}

// Snapshot records a version of each disk of vm. The lab's VMs do not
// change while they are backed up, so the snapshot reads the disks
// themselves, which also answer ChangedExtents since earlier versions.
func (s siteSnapshots) Snapshot(ctx context.Context, vm string) (backup.Snapshot, error) {
	shape, err := s.l.Site.VMShape(ctx, vm)
	if err != nil {
		return nil, err
	}
	s.l.snaps++
	snap := &siteSnapshot{}
	for i, d := range shape.Disks {
		disk, err := s.l.Site.Disk(vm, i)
		if err != nil {
			return nil, err
		}
		d.ChangeID = fmt.Sprintf("52 %d/%d", s.l.snaps, i)
		disk.Version(d.ChangeID)
		snap.disks = append(snap.disks, disk)
		snap.spec = append(snap.spec, d)
	}
	return snap, nil
}

func (s *siteSnapshot) Disks() []draas.Disk { return s.spec }

func (s *siteSnapshot) Open(ctx context.Context, i int) (draas.BlockSource, error) {
	return s.disks[i], nil
}

func (s *siteSnapshot) Close(context.Context) error { return nil }

// Replicator returns a replicator for the lab's plan.
func (l *Lab) Replicator(opts replicate.Options) (*replicate.Replicator, error) {
	return replicate.New(l.Plan.ReplicationPlan(), l.Store, l.Copies, opts)
}

// PollInterval is how often the lab's failovers poll health: the
// simulated instances are ready at once.
const PollInterval = 5 * time.Millisecond

// Failover returns a failover runner for the lab: its launcher, DR copies,
// DNS (production and drill) and guests, polling every PollInterval.
func (l *Lab) Failover() (*failover.Runner, error) {
	return failover.New(l.Launcher, l.Copies, failover.Options{
		DNS: l.DNS, DrillDNS: l.DNS, Prober: l.Probe, PollInterval: PollInterval,
	})
}

// Failback returns a failback runner bringing VMs from the lab's EC2 back to
// its site (as it is now: call it again after LoseSite), pointing DNS back;
// failback.TargetsFromFailover gives a run its targets.
func (l *Lab) Failback(opts failback.Options) (*failback.Runner, error) {
	opts.DNS = l.DNS
	return failback.New(l.Launcher, l.Hypervisor(), l.Account.OpenSnapshot, opts)
}

// LoseSite replaces the on-premises site with a rebuilt, empty one: the
// disaster, as failback finds it. On vcsim, the simulator is stopped, its
// datastore deleted, and a new one started, at a new URL.
func (l *Lab) LoseSite() error {
	if l.VCenter == nil {
		l.Site = draastest.NewHypervisor(nil)
		return nil
	}
	l.VCenter.close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vc, err := startVCenter(ctx, l.tls)
	if err != nil {
		l.VCenter = nil
		return fmt.Errorf("lab: rebuild the site: %w", err)
	}
	l.VCenter = vc
	return nil
}
