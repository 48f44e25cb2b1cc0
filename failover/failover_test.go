package failover_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	awsr53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/aws/ec2"
	"github.com/opendraas/draas/aws/route53"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/plan"
)

// env is a simulated AWS account holding DR copies of a three-tier
// application, and "guests" on loopback that answer the health checks.
type env struct {
	t      *testing.T
	srv    *awssim.Server
	ec2    *awsec2.Client
	zoneID string
	plan   *plan.Plan
	// launcher and copies are the Runner's required collaborators; opts
	// its options.
	launcher *ec2.Launcher
	// launcherOpts are launcher's options, for launchers on other clients.
	launcherOpts ec2.Options
	copies       *ebs.Copies
	opts         failover.Options
	disks        map[string][]byte
}

// runner returns a Runner with the env's collaborators and opts.
func (e *env) runner(opts failover.Options) *failover.Runner {
	e.t.Helper()
	r, err := failover.New(e.launcher, e.copies, opts)
	require.NoError(e.t, err)
	return r
}

const planYAML = `name: shop
defaults:
  instanceType: m5.large
  subnet: %s
dns:
  zone: example.com.
  ttl: 60s
vms:
  - name: db
    instanceType: r5.large
    healthChecks: [{ec2: true}, {tcp: 5432}]
    dns: [{name: db}]
  - name: app
    dependsOn: [db]
    bootScripts:
      - name: configure
        run: "echo db_host=db.example.com > /etc/app.conf"
    healthChecks: [{ec2: true}, {http: "http://{ip}:8080/health"}]
    dns: [{name: app}]
  - name: web
    dependsOn: [app]
    healthChecks: [{tcp: 443}]
    dns: [{name: www}]
drill:
  subnet: %s
`

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	srv, err := awssim.New(awssim.Options{})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv, ec2: srv.EC2(), disks: map[string][]byte{}}

	subnets, err := e.ec2.DescribeSubnets(ctx, &awsec2.DescribeSubnetsInput{})
	require.NoError(t, err)
	prod := subnets.Subnets[0]
	az := aws.ToString(prod.AvailabilityZone)
	vpc, err := srv.AddVPC("10.99.0.0/16", map[string]string{"Name": "drill"})
	require.NoError(t, err)
	drill, err := srv.AddSubnet(vpc, az, "10.99.1.0/24", map[string]string{"Name": "drill"})
	require.NoError(t, err)
	e.plan, err = plan.Parse("shop.yaml", fmt.Appendf(nil, planYAML, aws.ToString(prod.SubnetId), drill))
	require.NoError(t, err)

	// A complete DR copy of each VM, as replication leaves it.
	for i, vm := range []string{"db", "app", "web"} {
		data := bytes.Repeat([]byte(vm+" root disk "), 50000)
		e.disks[vm] = data
		snap, err := srv.SeedSnapshot(data, map[string]string{
			draas.TagPlan: "shop", draas.TagVM: vm, draas.TagDisk: "os", draas.TagDiskIndex: "0",
			draas.TagRecoveryPoint: "p" + strconv.Itoa(i), draas.TagPointTime: "2026-11-26T00:00:00Z", draas.TagComplete: "true",
		})
		require.NoError(t, err)
		_ = snap
	}
	zone, err := srv.Route53().CreateHostedZone(ctx, &awsr53.CreateHostedZoneInput{Name: aws.String("example.com"), CallerReference: aws.String("t")})
	require.NoError(t, err)
	e.zoneID = aws.ToString(zone.HostedZone.Id)

	e.launcherOpts = ec2.Options{ImageID: srv.DefaultImageID(), AvailabilityZone: az, PollInterval: time.Millisecond}
	e.launcher = ec2.New(e.ec2, e.launcherOpts)
	e.copies = ebs.NewCopies(srv.EBS(), e.ec2, ebs.CopiesOptions{})
	e.opts = failover.Options{
		DNS:          route53.New(srv.Route53(), route53.Options{PollInterval: time.Millisecond}),
		Prober:       guests(t),
		PollInterval: 5 * time.Millisecond,
	}
	return e
}

// guests answers the plan's TCP and HTTP health checks on loopback: the
// prober's dialer sends every instance address to these listeners, so no
// test traffic leaves 127.0.0.1.
func guests(t *testing.T) failover.Prober {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
		}
	})}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go web.Serve(hl)
	t.Cleanup(func() { tcp.Close(); web.Close() })
	return failover.NetProber{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		target := tcp.Addr().String()
		if port == "8080" {
			target = hl.Addr().String()
		}
		return (&net.Dialer{}).DialContext(ctx, network, target)
	}}
}

// order records when each step started and finished.
type order struct {
	mu    sync.Mutex
	start map[string]time.Time
	end   map[string]time.Time
}

func (o *order) events(ev orchestrate.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch ev.Kind {
	case orchestrate.EventStarted:
		o.start[ev.Step] = ev.Time
	case orchestrate.EventSucceeded:
		o.end[ev.Step] = ev.Time
	}
}

func instancesOf(srv *awssim.Server) []awssim.InstanceInfo {
	var out []awssim.InstanceInfo
	for _, i := range srv.Instances() {
		if i.State != "terminated" {
			out = append(out, i)
		}
	}
	return out
}

func TestThreeTierFailover(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	// db.example.com points at the old site before the failover.
	require.NoError(t, e.opts.DNS.Upsert(ctx, draas.Record{Zone: "example.com.", Name: "db.example.com.", Type: "A", TTL: time.Minute, Values: []string{"192.168.1.10"}}))
	o := &order{start: map[string]time.Time{}, end: map[string]time.Time{}}
	opts := e.opts
	opts.Events = o.events
	rep, err := e.runner(opts).Run(ctx, e.plan, failover.Failover)
	require.NoError(t, err)
	require.Len(t, rep.VMs, 3)

	// Dependency order: a VM launches only after its dependencies are healthy.
	assert.False(t, o.start["app/launch"].Before(o.end["db/healthy"]), "app starts after db is healthy")
	assert.False(t, o.start["web/launch"].Before(o.end["app/healthy"]), "web starts after app is healthy")
	// Volumes are made in parallel, before the dependencies are up.
	assert.True(t, o.start["web/volumes"].Before(o.end["db/healthy"]), "volume creation does not wait for other VMs")

	for _, vm := range []string{"db", "app", "web"} {
		v, ok := rep.VM(vm)
		require.True(t, ok)
		assert.True(t, v.Up, vm)
		require.NotEmpty(t, v.PrivateIP, vm)
		// DNS points at the new private IP.
		name := map[string]string{"db": "db", "app": "app", "web": "www"}[vm] + ".example.com."
		rec, err := e.opts.DNS.Lookup(ctx, "example.com.", name, "A")
		require.NoError(t, err)
		assert.Equal(t, []string{v.PrivateIP}, rec.Values, vm)
		// The instance boots from the DR copy's bytes.
		got := make([]byte, len(e.disks[vm]))
		require.NoError(t, e.srv.ReadVolume(v.VolumeIDs[0], 0, got))
		assert.True(t, bytes.Equal(e.disks[vm], got), vm)
	}
	assert.Len(t, instancesOf(e.srv), 3)
	app, _ := rep.VM("app")
	for _, i := range e.srv.Instances() {
		if i.ID == app.InstanceID {
			assert.Contains(t, string(i.UserData), "db_host=db.example.com", "boot scripts run through user data")
			assert.Equal(t, "m5.large", i.InstanceType)
		}
	}
	db, _ := rep.VM("db")
	require.Len(t, db.PreviousRecords, 1, "the old address is kept for failback")
	assert.Equal(t, []string{"192.168.1.10"}, db.PreviousRecords[0].Values)
	assert.Positive(t, rep.RTO)
	assert.NotEmpty(t, rep.CriticalPath)
	assert.Equal(t, "run", rep.CriticalPath[0])
}

func TestKillMidFailoverThenResume(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	journal := orchestrate.NewFileJournal(filepath.Join(t.TempDir(), "failover.journal"))
	cctx, cancel := context.WithCancel(ctx)
	opts := e.opts
	opts.Journal = journal
	opts.Events = func(ev orchestrate.Event) {
		if ev.Kind == orchestrate.EventStarted && ev.Step == "app/launch" {
			cancel() // killed while app is launching
		}
	}
	_, err := e.runner(opts).Run(cctx, e.plan, failover.Failover)
	require.ErrorIs(t, err, context.Canceled)
	first, err := failover.JournalRunID(ctx, journal)
	require.NoError(t, err)

	opts.Events = nil
	rep, err := e.runner(opts).Run(ctx, e.plan, failover.Failover)
	require.NoError(t, err)
	assert.Equal(t, first, rep.RunID, "the resumed run keeps the first run's ID")
	for _, v := range rep.VMs {
		assert.True(t, v.Up, v.VM)
	}
	db, _ := rep.VM("db")
	assert.Equal(t, orchestrate.Resumed, db.Steps[3].Status, "db's launch is not redone")
	for _, v := range rep.VMs {
		assert.Positive(t, v.Ready, "%s: ready counts from the first run's start", v.VM)
	}
	assert.Positive(t, rep.RTO)
	assert.Len(t, instancesOf(e.srv), 3, "no duplicate instance")
	vols := 0
	for _, v := range e.srv.Volumes() {
		if v.State != "deleted" {
			vols++
		}
	}
	assert.Equal(t, 3, vols, "no duplicate volume")
}

func TestDrillLeavesNoTraceAndSparesProductionDNS(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	before := e.srv.Calls("ChangeResourceRecordSets")
	r := e.runner(e.opts)
	instancesBefore := len(instancesOf(e.srv))
	rep, err := r.Run(ctx, e.plan, failover.Drill)
	require.NoError(t, err)
	assert.Equal(t, "drill", rep.Mode)
	assert.Equal(t, before, e.srv.Calls("ChangeResourceRecordSets"), "a drill never changes production DNS")
	for _, i := range instancesOf(e.srv) {
		assert.Equal(t, e.plan.Drill.Subnet, i.SubnetID, "drill instances run only in the drill subnet")
		assert.Equal(t, rep.RunID, i.Tags[draas.TagDrill])
	}
	assert.Len(t, instancesOf(e.srv), instancesBefore+3)

	require.NoError(t, r.Cleanup(ctx, rep))
	require.NoError(t, r.Cleanup(ctx, rep), "cleanup can be repeated")
	assert.Len(t, instancesOf(e.srv), instancesBefore, "no drill instance left")
	for _, v := range e.srv.Volumes() {
		assert.NotContains(t, v.Tags, draas.TagDrill, "no drill volume left: %s is %s", v.ID, v.State)
	}
	snaps := 0
	for _, s := range e.srv.Snapshots() {
		if s.Tags[draas.TagPlan] == "shop" {
			snaps++
		}
	}
	assert.Equal(t, 3, snaps, "the DR copies are untouched")

	// Cleanup refuses a real failover's report.
	err = r.Cleanup(ctx, &failover.Report{Mode: "failover"})
	require.ErrorIs(t, err, draas.ErrInvalid)
}

func TestDryRunMatchesOrder(t *testing.T) {
	e := newEnv(t)
	g, err := e.runner(e.opts).Compile(e.plan, failover.Failover)
	require.NoError(t, err)
	sched, err := orchestrate.Plan(context.Background(), g, orchestrate.Options{Parallelism: 1})
	require.NoError(t, err)
	order := strings.Join(sched.Order(), " ")
	assert.Less(t, strings.Index(order, "db/healthy"), strings.Index(order, "app/launch"))
	assert.Less(t, strings.Index(order, "app/healthy"), strings.Index(order, "web/launch"))
}

func TestMissingDRCopy(t *testing.T) {
	e := newEnv(t)
	e.plan.VMs[0].RecoveryPoint = "no-such-point"
	rep, err := e.runner(e.opts).Run(context.Background(), e.plan, failover.Failover)
	require.ErrorIs(t, err, failover.ErrFailed)
	require.ErrorIs(t, err, draas.ErrNotFound)
	db, _ := rep.VM("db")
	assert.False(t, db.Up)
	assert.Contains(t, db.Error, "replicate it first")
	web, _ := rep.VM("web")
	assert.False(t, web.Up, "dependents of a failed VM do not start")
	assert.Empty(t, instancesOf(e.srv))
}

func TestNewNeedsLauncherAndCopies(t *testing.T) {
	e := newEnv(t)
	_, err := failover.New(nil, e.copies, failover.Options{})
	require.ErrorIs(t, err, draas.ErrInvalid)
	assert.Contains(t, err.Error(), "failover.New: launcher is nil")
	_, err = failover.New(e.launcher, nil, failover.Options{})
	require.ErrorIs(t, err, draas.ErrInvalid)
	assert.Contains(t, err.Error(), "failover.New: copies is nil")
	_, err = failover.New(e.launcher, e.copies, failover.Options{Parallelism: -1})
	require.ErrorIs(t, err, draas.ErrInvalid)

	// A nil Runner is an error, never a panic.
	var r *failover.Runner
	require.ErrorIs(t, r.Cleanup(context.Background(), &failover.Report{Mode: "drill"}), draas.ErrInvalid)
	_, err = r.Run(context.Background(), e.plan, failover.Drill)
	require.ErrorIs(t, err, draas.ErrInvalid)
	// So is a zero one.
	require.ErrorIs(t, new(failover.Runner).Cleanup(context.Background(), &failover.Report{Mode: "drill"}), draas.ErrInvalid)
	_, err = new(failover.Runner).Compile(e.plan, failover.Drill)
	require.ErrorIs(t, err, draas.ErrInvalid)
}

func TestCompileChecksPlanAgainstOptions(t *testing.T) {
	e := newEnv(t)
	opts := e.opts
	opts.DNS = nil
	_, err := e.runner(opts).Compile(e.plan, failover.Failover)
	require.ErrorIs(t, err, draas.ErrInvalid)
	assert.Contains(t, err.Error(), "Options.DNS is not set")
	// A drill needs no production DNS.
	_, err = e.runner(opts).Compile(e.plan, failover.Drill)
	require.NoError(t, err)
	_, err = e.runner(e.opts).Compile(e.plan, failover.Mode(7))
	require.ErrorIs(t, err, draas.ErrInvalid)
	_, err = e.runner(e.opts).Compile(nil, failover.Failover)
	require.ErrorIs(t, err, draas.ErrInvalid)
}

// TestCleanupDrillRecordsNeedDrillDNS: a drill's records are removed with
// Options.DrillDNS; without it, Cleanup says so instead of panicking.
func TestCleanupDrillRecordsNeedDrillDNS(t *testing.T) {
	e := newEnv(t)
	rep := &failover.Report{Mode: "drill", RunID: "r1", VMs: []failover.VMReport{{VM: "db", Records: []draas.Record{{Zone: "drill.example.", Name: "db.drill.example.", Type: "A"}}}}}
	err := e.runner(failover.Options{}).Cleanup(context.Background(), rep)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Options.DrillDNS is not set")
}
