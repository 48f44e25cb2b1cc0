// Package failover brings a plan's VMs up from their DR copies: for each VM,
// volumes from the DR copy's snapshots → guest preparation → an instance of
// the plan's type in the plan's subnet with the DR copy as its root volume
// → wait until healthy → DNS records pointed at it. VMs start in dependency
// order (a VM launches once the VMs it depends on are healthy) and
// independent work runs in parallel, through package orchestrate.
//
// A drill ([Drill] mode) does the same in the plan's isolated drill subnet,
// tags everything it makes as a drill, never calls the production DNS, and
// is removed again by [Cleanup], which deletes exactly what the drill made.
//
// Every create call carries a client token derived from the run's ID and the
// step, and with a journal a run killed half-way resumes without redoing
// finished steps, so a rerun never makes a second instance or volume.
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

// Options configures a run. Launcher and Copies are required; DNS is
// required for a failover of a plan with DNS records.
type Options struct {
	Mode     Mode
	Launcher draas.InstanceLauncher
	// Copies finds each VM's DR copy.
	Copies draas.CopyStore
	// DNS is the production DNS. A drill never calls it.
	DNS draas.DNS
	// DrillDNS receives a drill's records when the plan's drill section
	// names a DNS zone.
	DrillDNS draas.DNS
	// Preparer prepares volumes before launch; nil skips guest preparation
	// (the report says so).
	Preparer VolumePreparer
	// Prober runs TCP and HTTP health checks; default NetProber{}.
	Prober Prober
	// Journal makes the run resumable: a run with the same journal skips
	// the steps it records as finished.
	Journal orchestrate.Journal
	// Parallelism bounds the steps running at once; 0 means no limit.
	Parallelism int
	// Events receives the orchestration's events.
	Events func(orchestrate.Event)
	// PollInterval is the time between health polls; default 5s.
	PollInterval time.Duration
	// Retry is the retry policy of every step; the zero value is the
	// project's default.
	Retry retry.Policy
}

const runStep = "run"

// step IDs of a VM.
func sid(vm, step string) string { return vm + "/" + step }

// Compile turns the plan into the graph of a run, without running it: for a
// dry run, pass it to orchestrate.Plan.
func Compile(p *plan.Plan, opts Options) (*orchestrate.Graph, error) {
	if err := checkOptions(p, opts); err != nil {
		return nil, err
	}
	g := &orchestrate.Graph{}
	add := func(s orchestrate.Step) error {
		if s.Retry.MaxAttempts == 0 {
			s.Retry = opts.Retry
		}
		return g.Add(s)
	}
	if err := add(orchestrate.Step{ID: runStep, Priority: 100, Run: func(ctx context.Context) error {
		return orchestrate.SetOutput(ctx, "id", newRunID())
	}}); err != nil {
		return nil, err
	}
	for _, vm := range p.VMs {
		r := &vmRun{p: p, vm: vm, opts: opts}
		labels := map[string]string{"vm": vm.Name}
		steps := []orchestrate.Step{
			{ID: sid(vm.Name, "select"), Deps: []string{runStep}, Run: r.selectCopy},
			{ID: sid(vm.Name, "volumes"), Deps: []string{sid(vm.Name, "select")}, Run: r.volumes},
			{ID: sid(vm.Name, "prepare"), Deps: []string{sid(vm.Name, "volumes")}, Run: r.prepare},
			{ID: sid(vm.Name, "launch"), Deps: append([]string{sid(vm.Name, "prepare")}, depsHealthy(vm)...), Run: r.launch},
			{ID: sid(vm.Name, "healthy"), Deps: []string{sid(vm.Name, "launch")}, Run: r.healthy, Timeout: p.HealthTimeout(vm), Retry: retry.Policy{MaxAttempts: 1}},
		}
		if len(vm.DNS) > 0 && r.dns() != nil {
			steps = append(steps,
				orchestrate.Step{ID: sid(vm.Name, "dns-before"), Deps: []string{runStep}, Run: r.readDNS},
				orchestrate.Step{ID: sid(vm.Name, "dns"), Deps: []string{sid(vm.Name, "healthy"), sid(vm.Name, "dns-before")}, Run: r.updateDNS})
		}
		for _, s := range steps {
			s.Labels = labels
			if err := add(s); err != nil {
				return nil, err
			}
		}
	}
	return g, g.Validate()
}

func depsHealthy(vm plan.VM) []string {
	var out []string
	for _, d := range vm.DependsOn {
		out = append(out, sid(d, "healthy"))
	}
	return out
}

func checkOptions(p *plan.Plan, opts Options) error {
	if p == nil {
		return draas.Invalidf("failover: no plan")
	}
	if opts.Launcher == nil || opts.Copies == nil {
		return draas.Invalidf("failover: Options.Launcher and Options.Copies are required")
	}
	if opts.Mode == Drill {
		if p.Drill.Subnet == "" {
			return draas.Invalidf("failover: plan %s has no drill subnet: set drill.subnet to an isolated subnet (a drill never uses production subnets)", p.Name)
		}
		if p.Drill.DNSZone != "" && opts.DrillDNS == nil {
			return draas.Invalidf("failover: plan %s names drill DNS zone %s but Options.DrillDNS is not set", p.Name, p.Drill.DNSZone)
		}
		return nil
	}
	for _, vm := range p.VMs {
		if len(vm.DNS) > 0 && opts.DNS == nil {
			return draas.Invalidf("failover: VM %s has DNS records but Options.DNS is not set", vm.Name)
		}
	}
	return nil
}

// vmRun holds the steps of one VM.
type vmRun struct {
	p    *plan.Plan
	vm   plan.VM
	opts Options
}

func (r *vmRun) runID(ctx context.Context) string {
	id, _ := orchestrate.Output(ctx, runStep, "id")
	return id
}

// token derives a client token from the run, the VM and what is made.
func (r *vmRun) token(ctx context.Context, what string) string {
	h := sha256.Sum256([]byte(r.p.Name + "\x00" + r.runID(ctx) + "\x00" + r.vm.Name + "\x00" + what))
	return "draas-" + hex.EncodeToString(h[:])[:40]
}

func (r *vmRun) tags(ctx context.Context) map[string]string {
	t := map[string]string{draas.TagPlan: r.p.Name, draas.TagVM: r.vm.Name, draas.TagRole: r.opts.Mode.String()}
	if r.opts.Mode == Drill {
		t[draas.TagDrill] = r.runID(ctx)
	}
	return t
}

func (r *vmRun) dns() draas.DNS {
	if r.opts.Mode == Drill {
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
	all, err := r.opts.Copies.Copies(ctx, r.p.Name, r.vm.Name)
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
	if err := orchestrate.SetOutput(ctx, "point", chosen[0].RecoveryPoint); err != nil {
		return err
	}
	if err := orchestrate.SetOutput(ctx, "pointTime", chosen[0].PointTime.Format(time.RFC3339)); err != nil {
		return err
	}
	return orchestrate.SetOutput(ctx, "snapshots", strings.Join(ids, ","))
}

func list(ctx context.Context, step, key string) []string {
	v, _ := orchestrate.Output(ctx, step, key)
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// volumes makes a volume from each snapshot.
func (r *vmRun) volumes(ctx context.Context) error {
	snaps := list(ctx, sid(r.vm.Name, "select"), "snapshots")
	vols := make([]string, len(snaps))
	for i, snap := range snaps {
		v, err := r.opts.Launcher.CreateVolume(ctx, draas.VolumeRequest{
			SnapshotID:  snap,
			Tags:        r.tags(ctx),
			ClientToken: r.token(ctx, "volume/"+snap),
		})
		if err != nil {
			return fmt.Errorf("volume from DR copy %s: %w", snap, err)
		}
		vols[i] = v
	}
	return orchestrate.SetOutput(ctx, "volumes", strings.Join(vols, ","))
}

func (r *vmRun) prepare(ctx context.Context) error {
	if r.opts.Preparer == nil {
		return orchestrate.SetOutput(ctx, "skipped", "no guest preparer configured")
	}
	changes, err := r.opts.Preparer.PrepareVolumes(ctx, r.vm, list(ctx, sid(r.vm.Name, "volumes"), "volumes"))
	if err != nil {
		return err
	}
	return orchestrate.SetOutput(ctx, "changes", string(changes))
}

// UserData returns the user data that runs vm's boot scripts once at first
// boot: a shell script for Linux (run by cloud-init), PowerShell blocks for
// Windows (run by EC2Launch). It is empty when there are no scripts.
func UserData(vm plan.VM) []byte {
	if len(vm.BootScripts) == 0 {
		return nil
	}
	var b strings.Builder
	if vm.OS == "windows" {
		b.WriteString("<powershell>\n")
		for i, s := range vm.BootScripts {
			fmt.Fprintf(&b, "# draas boot script %d: %s\n%s\n", i+1, s.Name, strings.TrimRight(s.Run, "\n"))
		}
		b.WriteString("</powershell>\n")
		return []byte(b.String())
	}
	b.WriteString("#!/bin/sh\n# draas boot scripts, run once at first boot by cloud-init.\nset -e\nmkdir -p /var/lib/draas\n")
	for i, s := range vm.BootScripts {
		marker := fmt.Sprintf("DRAAS_BOOT_SCRIPT_%d_EOF", i+1)
		fmt.Fprintf(&b, "# %d: %s\ncat > /var/lib/draas/boot-%d <<'%s'\n%s\n%s\nchmod +x /var/lib/draas/boot-%d\n/var/lib/draas/boot-%d\n",
			i+1, s.Name, i+1, marker, strings.TrimRight(s.Run, "\n"), marker, i+1, i+1)
	}
	return []byte(b.String())
}

func (r *vmRun) launch(ctx context.Context) error {
	vols := list(ctx, sid(r.vm.Name, "volumes"), "volumes")
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
		Tags:             r.tags(ctx),
		RootVolumeID:     vols[0],
		DataVolumeIDs:    vols[1:],
		ClientToken:      r.token(ctx, "instance"),
	}
	if r.opts.Mode == Drill {
		// Never a production subnet, security group or address.
		req.Name += "-drill"
		req.SubnetID, req.SecurityGroupIDs, req.PrivateIP = r.p.Drill.Subnet, r.p.Drill.SecurityGroups, ""
	}
	inst, err := r.opts.Launcher.Launch(ctx, req)
	if err != nil {
		return err
	}
	if err := orchestrate.SetOutput(ctx, "instance", inst.ID); err != nil {
		return err
	}
	return orchestrate.SetOutput(ctx, "ip", inst.PrivateIP)
}

func (r *vmRun) instance(ctx context.Context) draas.Instance {
	id, _ := orchestrate.Output(ctx, sid(r.vm.Name, "launch"), "instance")
	ip, _ := orchestrate.Output(ctx, sid(r.vm.Name, "launch"), "ip")
	return draas.Instance{ID: id, PrivateIP: ip}
}

// healthy waits until the EC2 status checks and every health check pass.
func (r *vmRun) healthy(ctx context.Context) error {
	inst := r.instance(ctx)
	checks := r.vm.HealthChecks
	if len(checks) == 0 {
		checks = []plan.HealthCheck{{EC2: true}}
	}
	prober := r.opts.Prober
	if prober == nil {
		prober = NetProber{}
	}
	interval := r.opts.PollInterval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	var last error
	for {
		last = nil
		for _, hc := range checks {
			if hc.EC2 {
				st, err := r.opts.Launcher.Status(ctx, inst.ID)
				if err != nil {
					last = err
				} else if !st.SystemOK || !st.InstanceOK {
					last = fmt.Errorf("EC2 status checks of %s: system ok %t, instance ok %t", inst.ID, st.SystemOK, st.InstanceOK)
				}
			} else if err := prober.Probe(ctx, inst, hc); err != nil {
				last = err
			}
			if last != nil {
				break
			}
		}
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("VM %s is not healthy: %w (last check: %v)", r.vm.Name, context.Cause(ctx), last)
		case <-time.After(interval):
		}
	}
}

func (r *vmRun) zone() string {
	if r.opts.Mode == Drill {
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
	for _, rec := range r.records("") {
		prev, err := dns.Lookup(ctx, rec.Zone, rec.Name, rec.Type)
		switch {
		case err == nil:
			if err := orchestrate.SetOutput(ctx, "previous "+rec.Type+" "+rec.Name, strings.Join(prev.Values, ",")); err != nil {
				return err
			}
		case errors.Is(err, draas.ErrNotFound):
		default:
			return fmt.Errorf("read %s before pointing it at VM %s: %w", rec.Name, r.vm.Name, err)
		}
	}
	return nil
}

// updateDNS points the VM's records at its instance.
func (r *vmRun) updateDNS(ctx context.Context) error {
	dns := r.dns()
	for _, rec := range r.records(r.instance(ctx).PrivateIP) {
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
