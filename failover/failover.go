// Package failover brings a plan's VMs up from their DR copies: for each VM,
// volumes from the DR copy's snapshots → guest preparation → an instance of
// the plan's type in the plan's subnet with the DR copy as its root volume
// → wait until healthy → DNS records pointed at it. VMs start in dependency
// order (a VM launches once the VMs it depends on are healthy) and
// independent work runs in parallel, through package orchestrate.
//
// A [Runner], made by [New] with the launcher and the DR copy store, runs
// a plan: [Runner.Compile] builds the graph of steps (for a dry run with
// orchestrate.Plan), [Runner.Run] runs it and returns a [Report].
//
// A drill ([Drill] mode) does the same in the plan's isolated drill subnet,
// tags everything it makes as a drill, never calls the production DNS, and
// is removed again by [Runner.Cleanup], which deletes exactly what the drill
// made.
//
// Every create call carries a client token derived from the run's ID and the
// step, and with a journal a run killed half-way resumes without redoing
// finished steps, so a rerun never makes a second instance or volume.
// Everything a run makes is tagged with its plan, VM, mode and run ID
// ([TagRun]); with a launcher that can find resources by tag ([Finder], as
// aws/ec2's Launcher can), a failover refuses to start while an earlier
// failover's instances of the plan run ([AlreadyFailedOverError]), and a
// run ends by deleting the volumes it made and no longer uses (the launch
// image's root volume of an interrupted launch). Steps
// pass what they made (the DR copy chosen, volumes, the instance, the
// records as they were) to the later steps as typed orchestrate outputs,
// kept in the journal. A journal written by a version before these outputs
// were typed resumes only its run ID: its later steps fail with an error
// wrapping orchestrate.ErrNoOutput or ErrOutputType; finish such a run with
// the version that started it, or remove the journal and run again.
package failover

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/retry"
)

// Mode is a failover or a drill.
type Mode int

const (
	// Failover brings VMs up in the production subnets and points the
	// production DNS at them.
	Failover Mode = iota
	// Drill brings them up in the plan's drill subnet, with DNS only in the
	// drill zone (or none), for a test that Cleanup removes.
	Drill
)

func (m Mode) String() string {
	if m == Drill {
		return "drill"
	}
	return "failover"
}

// VolumePreparer prepares a VM's volumes to boot on EC2 ("driver
// injection": see package guest) before the instance starts. It returns a
// record of its changes, kept in the report so failback can revert them.
type VolumePreparer interface {
	PrepareVolumes(ctx context.Context, vm plan.VM, volumeIDs []string) (changes []byte, err error)
}

// Prober runs a health check against an instance.
type Prober interface {
	Probe(ctx context.Context, inst draas.Instance, hc plan.HealthCheck) error
}

// NetProber probes TCP ports and HTTP URLs on an instance's private IP.
// The zero value dials with a net.Dialer.
type NetProber struct {
	// Dial, when set, replaces net.Dialer.DialContext, for tests and for
	// probing through a bastion.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Probe runs hc; EC2 checks are the caller's and always pass here.
func (p NetProber) Probe(ctx context.Context, inst draas.Instance, hc plan.HealthCheck) error {
	dial := p.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	switch {
	case hc.TCP != 0:
		c, err := dial(ctx, "tcp", net.JoinHostPort(inst.PrivateIP, strconv.Itoa(hc.TCP)))
		if err != nil {
			return fmt.Errorf("tcp port %d: %w", hc.TCP, err)
		}
		return c.Close()
	case hc.HTTP != "":
		u := strings.ReplaceAll(hc.HTTP, "{ip}", inst.PrivateIP)
		client := &http.Client{Transport: &http.Transport{DialContext: dial}}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("GET %s: %w", u, err)
		}
		resp.Body.Close()
		want := hc.ExpectStatus
		if (want == 0 && resp.StatusCode/100 != 2) || (want != 0 && resp.StatusCode != want) {
			return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
		}
	}
	return nil
}

// Options tunes a [Runner]. The zero value is useful: no DNS (a plan with
// DNS records then needs DNS for a failover, DrillDNS for a drill whose plan
// names a drill zone: Compile says so), no guest preparation, TCP and HTTP
// probes with [NetProber], no journal, no limit on parallelism.
type Options struct {
	// DNS is the production DNS. A drill never calls it.
	DNS draas.DNS
	// DrillDNS receives a drill's records when the plan's drill section
	// names a DNS zone.
	DrillDNS draas.DNS
	// Preparer prepares volumes before launch; nil skips guest preparation
	// (the prepare step records so).
	Preparer VolumePreparer
	// Prober runs TCP and HTTP health checks; nil means NetProber{}.
	Prober Prober
	// EC2StatusOnly judges every VM's health by its instance's EC2 status
	// checks alone, in place of the checks its plan lists, for a caller
	// that cannot reach the instances' private addresses (a laptop outside
	// the VPC, or a simulator whose instances have no network).
	EC2StatusOnly bool
	// ProbeTimeout bounds one run of one health check (a TCP connection,
	// an HTTP request or an EC2 status call); 0 means 10s. A check that
	// times out fails that attempt, and the wait polls again.
	ProbeTimeout time.Duration
	// Journal makes the run resumable: a run with the same journal skips
	// the steps it records as finished.
	Journal orchestrate.Journal
	// Parallelism bounds the steps running at once; 0 means no limit.
	Parallelism int
	// Events receives the orchestration's events, one call at a time.
	// While a VM's health checks fail, its healthy step reports each failed
	// round as an orchestrate.EventRetried: Attempt counts the rounds, Err
	// names the VM, the check and its error, Backoff is the wait before the
	// next round. The wait ends at the plan's health timeout with a
	// [*HealthError].
	Events func(orchestrate.Event)
	// PollInterval is the time between health polls; 0 means 5s.
	PollInterval time.Duration
	// Retry is the retry policy of every step but the health wait (which
	// polls until the plan's health timeout instead); the zero value is
	// the project's default.
	Retry retry.Policy
}

// TagRun is the tag key of the ID of the failover or drill run that made an
// instance or volume (a drill's resources carry it in draas.TagDrill too).
const TagRun = "draas:run"

// Finder is an optional capability of a draas.InstanceLauncher: finding
// instances and volumes by their tags. With it, [Runner.Run] refuses a
// failover of a plan whose earlier failover still runs, and deletes at the
// end of a run the volumes the run made that are neither in its report nor
// attached. aws/ec2's Launcher implements it; it is found through wrappers
// of the launcher that implement draas.Wrapper.
type Finder interface {
	// RunningInstances returns the pending or running instances that carry
	// every tag in tags, each with all its tags, by instance ID.
	RunningInstances(ctx context.Context, tags map[string]string) (map[string]map[string]string, error)
	// AvailableVolumes returns the IDs of the volumes that carry every tag
	// in tags and are attached to no instance.
	AvailableVolumes(ctx context.Context, tags map[string]string) ([]string, error)
}

// ErrAlreadyFailedOver marks a failover refused because an earlier
// failover of the plan still runs; see [AlreadyFailedOverError].
var ErrAlreadyFailedOver = errors.New("failover: the plan is already failed over")

// AlreadyFailedOverError is the error of a failover refused before it made
// anything, because instances that an earlier failover of the plan (another
// run, or a run whose journal is gone) launched are running: a second
// failover would launch every VM again. It wraps [ErrAlreadyFailedOver] and
// draas.ErrConflict.
type AlreadyFailedOverError struct {
	Plan string
	// Instances are the earlier failover's running instances, by VM.
	Instances []EarlierInstance
}

// EarlierInstance is a running instance of an earlier failover.
type EarlierInstance struct {
	VM         string
	InstanceID string
	// RunID is the ID of the run that launched it ("" if it carries none).
	RunID string
}

// RunIDs returns the IDs of the earlier runs, sorted, without duplicates.
func (e *AlreadyFailedOverError) RunIDs() []string {
	var ids []string
	for _, i := range e.Instances {
		if i.RunID != "" && !slices.Contains(ids, i.RunID) {
			ids = append(ids, i.RunID)
		}
	}
	slices.Sort(ids)
	return ids
}

func (e *AlreadyFailedOverError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "failover %s: already failed over: ", e.Plan)
	for i, in := range e.Instances {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "VM %s runs on instance %s", in.VM, in.InstanceID)
		if in.RunID != "" {
			fmt.Fprintf(&b, " (run %s)", in.RunID)
		}
	}
	b.WriteString("; nothing was made. A second failover would launch every VM again: if the plan failed back, or these instances are not wanted, terminate them first")
	return b.String()
}

// Unwrap returns ErrAlreadyFailedOver and draas.ErrConflict.
func (e *AlreadyFailedOverError) Unwrap() []error {
	return []error{ErrAlreadyFailedOver, draas.ErrConflict}
}

// Runner fails plans over, or drills them, with one launcher, copy store
// and set of options. It holds no state between runs: one Runner may run
// several plans, one after the other or at once (with a journal each).
type Runner struct {
	launcher draas.InstanceLauncher
	copies   draas.CopyStore
	opts     Options
}

// New returns a Runner that launches instances with launcher from the DR
// copies copies finds. Both are required: a nil one is an error wrapping
// [draas.ErrInvalid].
func New(launcher draas.InstanceLauncher, copies draas.CopyStore, opts Options) (*Runner, error) {
	switch {
	case launcher == nil:
		return nil, draas.Invalidf("failover.New: launcher is nil: pass a draas.InstanceLauncher, e.g. aws/ec2.New")
	case copies == nil:
		return nil, draas.Invalidf("failover.New: copies is nil: pass the draas.CopyStore holding the DR copies, e.g. aws/ebs.NewCopies")
	case opts.Parallelism < 0:
		return nil, draas.Invalidf("failover.New: Options.Parallelism is %d; use 0 for no limit or a positive limit", opts.Parallelism)
	}
	return &Runner{launcher: launcher, copies: copies, opts: opts}, nil
}

// errNilRunner is returned by the methods of a nil or zero Runner.
var errNilRunner = draas.Invalidf("failover: Runner not made by failover.New: make one with failover.New")

// valid reports whether r was made by New.
func (r *Runner) valid() bool { return r != nil && r.launcher != nil && r.copies != nil }

// The steps of a run. One step, run, gives the run its ID; then each VM has
// the steps of vmSteps, with IDs "VM/name".
const (
	runStep       = "run"
	stepSelect    = "select"
	stepVolumes   = "volumes"
	stepPrepare   = "prepare"
	stepLaunch    = "launch"
	stepHealthy   = "healthy"
	stepDNSBefore = "dns-before"
	stepDNS       = "dns"
)

// The outputs steps pass on, each recorded by one step (see vmSteps) and
// kept in the journal.
var (
	// runIDKey: the run's ID, by the run step. A journal written before
	// outputs were typed holds it too.
	runIDKey = orchestrate.NewKey[string]("id")
	// copyKey: the DR copy set chosen, by select.
	copyKey = orchestrate.NewKey[copySet]("copy")
	// volumesKey: the volumes made from it, in disk order, by volumes.
	volumesKey = orchestrate.NewKey[[]string]("volumes")
	// changesKey: the guest preparer's record of its changes, by prepare;
	// skippedKey says why there is none.
	changesKey = orchestrate.NewKey[string]("changes")
	skippedKey = orchestrate.NewKey[string]("skipped")
	// instanceKey: the instance launched (its ID and private IP), by
	// launch.
	instanceKey = orchestrate.NewKey[draas.Instance]("instance")
	// previousKey: the VM's records as they were before the failover (the
	// ones that existed), by dns-before.
	previousKey = orchestrate.NewKey[[]draas.Record]("previous")
)

// copySet is the DR copy set select chose for a VM.
type copySet struct {
	Point     string    `json:"point"`
	PointTime time.Time `json:"pointTime"`
	// Snapshots are the copies' snapshot IDs, in disk order.
	Snapshots []string `json:"snapshots"`
}

// vmStep is one row of the table of a VM's steps.
type vmStep struct {
	name string
	// after are the steps this one depends on: steps of the same VM by
	// name, or runStep.
	after []string
	// afterDeps, if set, is the step of each VM this one depends on
	// (plan.VM.DependsOn) that must succeed first.
	afterDeps string
	// dns marks the steps that exist only when the VM has DNS records and
	// the mode a DNS to put them in.
	dns bool
	// health marks the health wait: bounded by the plan's health timeout
	// and not retried (it polls instead).
	health bool
	run    func(r *vmRun, ctx context.Context) error
}

// vmSteps is the table of a VM's steps, in the order reports list them,
// with what each produces.
var vmSteps = []vmStep{
	// Choose the newest complete DR copy set (or the plan's recovery
	// point): copyKey.
	{name: stepSelect, after: []string{runStep}, run: (*vmRun).selectCopy},
	// A volume from each of its snapshots: volumesKey.
	{name: stepVolumes, after: []string{stepSelect}, run: (*vmRun).volumes},
	// Guest preparation of the volumes: changesKey or skippedKey.
	{name: stepPrepare, after: []string{stepVolumes}, run: (*vmRun).prepare},
	// The instance, once the VMs it depends on are healthy: instanceKey.
	{name: stepLaunch, after: []string{stepPrepare}, afterDeps: stepHealthy, run: (*vmRun).launch},
	// Wait until the EC2 status checks and the health checks pass.
	{name: stepHealthy, after: []string{stepLaunch}, health: true, run: (*vmRun).healthy},
	// Read the records before changing them: previousKey. A step of its
	// own so that the journal keeps them even if the run dies right after
	// the update.
	{name: stepDNSBefore, after: []string{runStep}, dns: true, run: (*vmRun).readDNS},
	// Point the records at the instance.
	{name: stepDNS, after: []string{stepHealthy, stepDNSBefore}, dns: true, run: (*vmRun).updateDNS},
}

// retryCounters are a run's retry counters, one per VM, in the context
// [Runner.Run] gives orchestrate.
type retryCounters map[string]*retry.Counter

type retryCountersKey struct{}

// countRetries returns ctx counting its retries (those of the launcher's,
// the copy store's and the DNS's requests) in the VM's counter of the run,
// if the run keeps counters.
func countRetries(ctx context.Context, vm string) context.Context {
	cs, _ := ctx.Value(retryCountersKey{}).(retryCounters)
	return retry.WithCounter(ctx, cs[vm])
}

// sid returns the ID of a VM's step.
func sid(vm, step string) string { return vm + "/" + step }

// Compile turns the plan into the graph of a run in mode, without running
// it: for a dry run, pass it to orchestrate.Plan. It returns an error
// wrapping [draas.ErrInvalid] if the plan cannot run in mode with r's
// options (a drill without a drill subnet, DNS records and no DNS).
func (r *Runner) Compile(p *plan.Plan, mode Mode) (*orchestrate.Graph, error) {
	if !r.valid() {
		return nil, errNilRunner
	}
	if err := r.check(p, mode); err != nil {
		return nil, err
	}
	g := &orchestrate.Graph{}
	add := func(s orchestrate.Step) error {
		if s.Retry.MaxAttempts == 0 {
			s.Retry = r.opts.Retry
		}
		return g.Add(s)
	}
	if err := add(orchestrate.Step{ID: runStep, Priority: 100, Run: func(ctx context.Context) error {
		return orchestrate.Put(ctx, runIDKey, newRunID())
	}}); err != nil {
		return nil, err
	}
	for _, vm := range p.VMs {
		v := &vmRun{Runner: r, p: p, vm: vm, mode: mode}
		labels := map[string]string{"vm": vm.Name}
		for _, st := range vmSteps {
			if st.dns && (len(vm.DNS) == 0 || v.dns() == nil) {
				continue
			}
			s := orchestrate.Step{ID: sid(vm.Name, st.name), Labels: labels, Run: func(ctx context.Context) error { return st.run(v, countRetries(ctx, vm.Name)) }}
			for _, a := range st.after {
				if a != runStep {
					a = sid(vm.Name, a)
				}
				s.Deps = append(s.Deps, a)
			}
			if st.afterDeps != "" {
				for _, d := range vm.DependsOn {
					s.Deps = append(s.Deps, sid(d, st.afterDeps))
				}
			}
			if st.health {
				s.Timeout, s.Retry = p.HealthTimeout(vm), retry.Policy{MaxAttempts: 1}
			}
			if err := add(s); err != nil {
				return nil, err
			}
		}
	}
	return g, g.Validate()
}

func (r *Runner) check(p *plan.Plan, mode Mode) error {
	if p == nil {
		return draas.Invalidf("failover: no plan")
	}
	switch mode {
	case Drill:
		if p.Drill.Subnet == "" {
			return draas.Invalidf("failover: plan %s has no drill subnet: set drill.subnet to an isolated subnet (a drill never uses production subnets)", p.Name)
		}
		if p.Drill.DNSZone != "" && r.opts.DrillDNS == nil {
			return draas.Invalidf("failover: plan %s names drill DNS zone %s but Options.DrillDNS is not set", p.Name, p.Drill.DNSZone)
		}
	case Failover:
		for _, vm := range p.VMs {
			if len(vm.DNS) > 0 && r.opts.DNS == nil {
				return draas.Invalidf("failover: VM %s has DNS records but Options.DNS is not set", vm.Name)
			}
		}
	default:
		return draas.Invalidf("failover: unknown mode %v: use failover.Failover or failover.Drill", mode)
	}
	return nil
}

// JournalRunID returns the ID of the run a failover or drill journal
// records (the ID a drill tags its resources with), or an error wrapping
// [draas.ErrNotFound] if the journal records no run.
func JournalRunID(ctx context.Context, j orchestrate.Journal) (string, error) {
	entries, err := j.Load(ctx)
	if err != nil {
		return "", err
	}
	id, found := "", false
	for _, e := range entries {
		switch {
		case e.Step != runStep:
		case e.Undone:
			id, found = "", false
		default:
			v, ok, err := runIDKey.From(e.Outputs)
			if err != nil {
				return "", err
			}
			id, found = v, ok
		}
	}
	if !found {
		return "", fmt.Errorf("failover: the journal records no run: %w", draas.ErrNotFound)
	}
	return id, nil
}

// vmRun holds the steps of one VM.
type vmRun struct {
	*Runner
	p    *plan.Plan
	vm   plan.VM
	mode Mode
}

// get reads output k of the VM's step name (or of runStep).
func get[T any](ctx context.Context, r *vmRun, name string, k orchestrate.Key[T]) (T, error) {
	if name != runStep {
		name = sid(r.vm.Name, name)
	}
	return orchestrate.Get(ctx, name, k)
}

// token derives a client token from the run, the VM and what is made.
func (r *vmRun) token(runID, what string) string {
	h := sha256.Sum256([]byte(r.p.Name + "\x00" + runID + "\x00" + r.vm.Name + "\x00" + what))
	return "draas-" + hex.EncodeToString(h[:])[:40]
}

func (r *vmRun) tags(runID string) map[string]string {
	t := map[string]string{draas.TagPlan: r.p.Name, draas.TagVM: r.vm.Name, draas.TagRole: r.mode.String(), TagRun: runID}
	if r.mode == Drill {
		t[draas.TagDrill] = runID
	}
	return t
}

func (r *vmRun) dns() draas.DNS {
	if r.mode == Drill {
		if r.p.Drill.DNSZone == "" {
			return nil
		}
		return r.opts.DrillDNS
	}
	return r.opts.DNS
}

// selectCopy finds the VM's DR copy set and records its snapshots in disk
// order.
func (r *vmRun) selectCopy(ctx context.Context) error {
	all, err := r.copies.Copies(ctx, r.p.Name, r.vm.Name)
	if err != nil {
		return err
	}
	var chosen []draas.DRCopy // the newest complete set (of the chosen point)
	sets := draas.CopySets(all)
	for i := len(sets) - 1; i >= 0; i-- {
		if (r.vm.RecoveryPoint == "" || r.vm.RecoveryPoint == sets[i].RecoveryPoint) && sets[i].Complete() {
			chosen = sets[i].Copies
			break
		}
	}
	if chosen == nil {
		what := "complete DR copy"
		if r.vm.RecoveryPoint != "" {
			what = "complete DR copy of recovery point " + r.vm.RecoveryPoint
		}
		return fmt.Errorf("failover %s: VM %s has no %s: replicate it first: %w", r.p.Name, r.vm.Name, what, draas.ErrNotFound)
	}
	slices.SortFunc(chosen, func(a, b draas.DRCopy) int {
		if a.DiskIndex != b.DiskIndex {
			return a.DiskIndex - b.DiskIndex
		}
		return strings.Compare(a.Disk, b.Disk)
	})
	ids := make([]string, len(chosen))
	for i, c := range chosen {
		ids[i] = c.SnapshotID
	}
	return orchestrate.Put(ctx, copyKey, copySet{Point: chosen[0].RecoveryPoint, PointTime: chosen[0].PointTime, Snapshots: ids})
}

// volumes makes a volume from each snapshot.
func (r *vmRun) volumes(ctx context.Context) error {
	runID, err := get(ctx, r, runStep, runIDKey)
	if err != nil {
		return err
	}
	set, err := get(ctx, r, stepSelect, copyKey)
	if err != nil {
		return err
	}
	vols := make([]string, len(set.Snapshots))
	for i, snap := range set.Snapshots {
		v, err := r.launcher.CreateVolume(ctx, draas.VolumeRequest{
			SnapshotID:  snap,
			Tags:        r.tags(runID),
			ClientToken: r.token(runID, "volume/"+snap),
		})
		if err != nil {
			return fmt.Errorf("volume from DR copy %s: %w", snap, err)
		}
		vols[i] = v
	}
	return orchestrate.Put(ctx, volumesKey, vols)
}

func (r *vmRun) prepare(ctx context.Context) error {
	if r.opts.Preparer == nil {
		return orchestrate.Put(ctx, skippedKey, "no guest preparer configured")
	}
	vols, err := get(ctx, r, stepVolumes, volumesKey)
	if err != nil {
		return err
	}
	changes, err := r.opts.Preparer.PrepareVolumes(ctx, r.vm, vols)
	if err != nil {
		return err
	}
	return orchestrate.Put(ctx, changesKey, string(changes))
}

// UserData returns the user data that runs vm's boot scripts once at first
// boot: a shell script for Linux (run by cloud-init), PowerShell blocks for
// Windows (run by EC2Launch). It is empty when there are no scripts. It is
// [plan.VM.UserData], whose size plan.Validate checks.
func UserData(vm plan.VM) []byte { return vm.UserData() }

func (r *vmRun) launch(ctx context.Context) error {
	runID, err := get(ctx, r, runStep, runIDKey)
	if err != nil {
		return err
	}
	vols, err := get(ctx, r, stepVolumes, volumesKey)
	if err != nil {
		return err
	}
	if len(vols) == 0 {
		return fmt.Errorf("VM %s has no volumes", r.vm.Name)
	}
	req := draas.LaunchRequest{
		Name:             r.p.Name + "-" + r.vm.Name,
		InstanceType:     r.p.InstanceType(r.vm),
		ImageID:          r.p.AWS.ImageID,
		SubnetID:         r.p.Subnet(r.vm),
		SecurityGroupIDs: r.p.SecurityGroups(r.vm),
		PrivateIP:        r.vm.PrivateIP,
		UserData:         UserData(r.vm),
		Tags:             r.tags(runID),
		RootVolumeID:     vols[0],
		DataVolumeIDs:    vols[1:],
		ClientToken:      r.token(runID, "instance"),
	}
	if r.mode == Drill {
		// Never a production subnet, security group or address.
		req.Name += "-drill"
		req.SubnetID, req.SecurityGroupIDs, req.PrivateIP = r.p.Drill.Subnet, r.p.Drill.SecurityGroups, ""
	}
	inst, err := r.launcher.Launch(ctx, req)
	if err != nil {
		return err
	}
	// Only what the later steps and the report use.
	return orchestrate.Put(ctx, instanceKey, draas.Instance{ID: inst.ID, PrivateIP: inst.PrivateIP})
}

func (r *vmRun) zone() string {
	if r.mode == Drill {
		return r.p.Drill.DNSZone
	}
	return r.p.DNS.Zone
}

func fqdn(name, zone string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "." + strings.TrimSuffix(zone, ".") + "."
}

func (r *vmRun) records(ip string) []draas.Record {
	zone := r.zone()
	var out []draas.Record
	for _, rec := range r.vm.DNS {
		typ, value := rec.Type, ip
		if typ == "" {
			typ = "A"
		}
		if typ == "CNAME" {
			value = rec.Target
		}
		out = append(out, draas.Record{Zone: zone, Name: fqdn(rec.Name, zone), Type: typ, TTL: r.p.TTL(), Values: []string{value}})
	}
	return out
}

// readDNS records what the VM's records say before the failover changes
// them (the on-premises addresses failback points them back to). It is a
// step of its own so that the journal keeps the old values even if the run
// dies right after the update.
func (r *vmRun) readDNS(ctx context.Context) error {
	dns := r.dns()
	var previous []draas.Record
	for _, rec := range r.records("") {
		prev, err := dns.Lookup(ctx, rec.Zone, rec.Name, rec.Type)
		switch {
		case err == nil && len(prev.Values) > 0:
			rec.Values = prev.Values
			previous = append(previous, rec)
		case err == nil:
		case errors.Is(err, draas.ErrNotFound):
		default:
			return fmt.Errorf("read %s before pointing it at VM %s: %w", rec.Name, r.vm.Name, err)
		}
	}
	return orchestrate.Put(ctx, previousKey, previous)
}

// updateDNS points the VM's records at its instance.
func (r *vmRun) updateDNS(ctx context.Context) error {
	inst, err := get(ctx, r, stepLaunch, instanceKey)
	if err != nil {
		return err
	}
	dns := r.dns()
	for _, rec := range r.records(inst.PrivateIP) {
		if err := dns.Upsert(ctx, rec); err != nil {
			return fmt.Errorf("point %s at VM %s: %w", rec.Name, r.vm.Name, err)
		}
	}
	return nil
}

func newRunID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ErrFailed marks a run in which some VM did not come up; the report says
// which and why.
var ErrFailed = errors.New("failover: not every VM came up")
