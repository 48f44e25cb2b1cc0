package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/failback"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/report"
	"github.com/opendraas/draas/vsphere"
)

// cleanupProof is what the drill's clean-up left and touched.
type cleanupProof struct {
	report.CleanupProof
	// Instances and Volumes are the drill's resources found by its tag
	// after the clean-up.
	Instances, Volumes []string
	// ProductionUnchanged is true when the production zone's records were
	// the same after the clean-up as before the drill, and DNSChanges
	// counts the Route 53 changes made meanwhile.
	ProductionUnchanged bool
	DNSChanges          int
}

// drillPlan runs a DR drill: the plan comes up in the isolated drill
// subnet from the DR copies, in dependency order, and the production DNS
// is not called.
func (d *drill) drillPlan(ctx context.Context) (string, error) {
	// The proof that production DNS is untouched spans the drill and its
	// clean-up: keep what it was before.
	var err error
	if d.dnsBefore.records, err = d.productionRecords(); err != nil {
		return "", err
	}
	d.dnsBefore.changes = d.lab.AWS.Calls("ChangeResourceRecordSets")
	fo, err := d.lab.Failover()
	if err != nil {
		return "", err
	}
	rep, err := fo.Run(ctx, d.plan, failover.Drill)
	d.drill = rep
	if err != nil {
		return "", err
	}

	subnet := d.plan.Drill.Subnet
	var lines []string
	for _, v := range rep.VMs {
		inst, err := d.instance(v.InstanceID)
		if err != nil {
			return "", err
		}
		if inst.SubnetID != subnet {
			return "", fmt.Errorf("drill instance %s of VM %s is in subnet %s, not the drill subnet %s", v.InstanceID, v.VM, inst.SubnetID, subnet)
		}
		lines = append(lines, fmt.Sprintf("%-4s up at %s: %s at %s in the drill subnet, from point %s; volumes %s",
			v.VM, dur(v.Ready), v.InstanceID, v.PrivateIP, v.RecoveryPoint, strings.Join(v.VolumeIDs, ", ")))
	}
	lines = append(lines, timeline(rep, d.plan.Order())...)
	lines = append(lines, rto(rep, time.Duration(d.plan.RTO)))
	return strings.Join(lines, "\n"), nil
}

// cleanupDrill removes the drill with (*failover.Runner).Cleanup and proves it: no
// instance or volume tagged with the drill's run ID remains, and the
// production zone holds what it held before the drill.
func (d *drill) cleanupDrill(ctx context.Context) (string, error) {
	fo, err := d.lab.Failover()
	if err != nil {
		return "", err
	}
	if err := fo.Cleanup(ctx, d.drill); err != nil {
		return "", err
	}
	p := &d.drillCleanup
	for _, v := range d.drill.VMs {
		p.Removed = append(p.Removed, v.InstanceID)
		p.Removed = append(p.Removed, v.VolumeIDs...)
	}
	if p.Instances, p.Volumes, err = d.drillRemains(ctx); err != nil {
		return "", err
	}
	p.Remaining = append(slices.Clone(p.Instances), p.Volumes...)
	p.Verified = true
	after, err := d.productionRecords()
	if err != nil {
		return "", err
	}
	p.ProductionUnchanged = maps.Equal(d.dnsBefore.records, after)
	p.DNSChanges = d.lab.AWS.Calls("ChangeResourceRecordSets") - d.dnsBefore.changes
	lines := []string{
		fmt.Sprintf("removed %d instances and %d volumes named by the drill's report", len(d.drill.VMs), len(p.Removed)-len(d.drill.VMs)),
		fmt.Sprintf("left with tag %s=%s: instances %s, volumes %s", draas.TagDrill, d.drill.RunID, none(p.Instances), none(p.Volumes)),
		fmt.Sprintf("production zone %s: %d records, unchanged: %t; Route 53 changes during the drill: %d",
			d.plan.DNS.Zone, len(after), p.ProductionUnchanged, p.DNSChanges),
	}
	if len(p.Remaining) > 0 || !p.ProductionUnchanged || p.DNSChanges != 0 {
		return strings.Join(lines, "\n"), errors.New("the drill left something behind or touched production DNS")
	}
	return strings.Join(lines, "\n"), nil
}

// drillRemains lists the instances and volumes tagged with the drill's run
// ID that are not gone.
func (d *drill) drillRemains(ctx context.Context) (instances, volumes []string, err error) {
	tag := []ec2types.Filter{{Name: aws.String("tag:" + draas.TagDrill), Values: []string{d.drill.RunID}}}
	ip := awsec2.NewDescribeInstancesPaginator(d.lab.EC2, &awsec2.DescribeInstancesInput{Filters: tag})
	for ip.HasMorePages() {
		page, err := ip.NextPage(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("list the drill's instances: %w", err)
		}
		for _, res := range page.Reservations {
			for _, in := range res.Instances {
				if in.State == nil || in.State.Name != ec2types.InstanceStateNameTerminated {
					instances = append(instances, aws.ToString(in.InstanceId))
				}
			}
		}
	}
	vp := awsec2.NewDescribeVolumesPaginator(d.lab.EC2, &awsec2.DescribeVolumesInput{Filters: tag})
	for vp.HasMorePages() {
		page, err := vp.NextPage(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("list the drill's volumes: %w", err)
		}
		for _, v := range page.Volumes {
			if v.State != ec2types.VolumeStateDeleted && v.State != ec2types.VolumeStateDeleting {
				volumes = append(volumes, aws.ToString(v.VolumeId))
			}
		}
	}
	return instances, volumes, nil
}

// productionRecords returns the production zone's records as Route 53
// holds them: "name type" to values.
func (d *drill) productionRecords() (map[string]string, error) {
	zone := strings.TrimSuffix(d.plan.DNS.Zone, ".") + "."
	for _, z := range d.lab.AWS.HostedZones() {
		if z.Name != zone {
			continue
		}
		sets, err := d.lab.AWS.RecordSets(z.ID)
		if err != nil {
			return nil, fmt.Errorf("records of zone %s: %w", zone, err)
		}
		out := map[string]string{}
		for _, s := range sets {
			out[s.Name+" "+s.Type] = strings.Join(s.Values, ",")
		}
		return out, nil
	}
	return nil, fmt.Errorf("no hosted zone %s in the simulator", zone)
}

// failoverPlan powers the site's VMs off (the disaster), fails the plan
// over into the production subnets, checks DNS and compares each
// instance's volumes with the VM's disks.
func (d *drill) failoverPlan(ctx context.Context) (string, error) {
	h := d.lab.VCenter.Hypervisor
	var names []string
	for _, vm := range d.plan.VMs {
		if err := h.PowerOff(ctx, vm.Name); err != nil {
			return "", err
		}
		names = append(names, vm.Name)
	}
	fo, err := d.lab.Failover()
	if err != nil {
		return "", err
	}
	rep, err := fo.Run(ctx, d.plan, failover.Failover)
	d.failover = rep
	if err != nil {
		return "", err
	}
	lines := []string{"vCenter VMs powered off: " + strings.Join(names, ", ")}
	for _, v := range rep.VMs {
		lines = append(lines, fmt.Sprintf("%-4s up at %s: %s at %s, from point %s; volumes %s",
			v.VM, dur(v.Ready), v.InstanceID, v.PrivateIP, v.RecoveryPoint, strings.Join(v.VolumeIDs, ", ")))
	}
	lines = append(lines, timeline(rep, d.plan.Order())...)
	lines = append(lines, rto(rep, time.Duration(d.plan.RTO)))
	var dns []string
	d.dnsFailover = map[string][]string{}
	for _, v := range rep.VMs {
		for _, r := range v.Records {
			got, err := d.lab.DNS.Lookup(ctx, r.Zone, r.Name, r.Type)
			if err != nil {
				return "", fmt.Errorf("look up %s after the failover: %w", r.Name, err)
			}
			d.dnsFailover[r.Name+" "+r.Type] = got.Values
			if !slices.Equal(got.Values, []string{v.PrivateIP}) {
				return "", fmt.Errorf("%s says %v after the failover, want VM %s's new address %s", r.Name, got.Values, v.VM, v.PrivateIP)
			}
			was := "nothing"
			for _, p := range v.PreviousRecords {
				if p.Name == r.Name && p.Type == r.Type {
					was = strings.Join(p.Values, ",")
				}
			}
			dns = append(dns, fmt.Sprintf("%s %s -> %s", r.Name, was, v.PrivateIP))
		}
	}
	lines = append(lines, "DNS: "+strings.Join(dns, ", "))

	// Each instance boots from its VM's bytes: the VM's disk, read through
	// vCenter, then zeros up to the volume's whole GiB.
	var compared int64
	for _, v := range rep.VMs {
		shape, err := h.VMShape(ctx, v.VM)
		if err != nil {
			return "", err
		}
		if len(shape.Disks) != len(v.VolumeIDs) {
			return "", fmt.Errorf("VM %s has %d disks but its instance %d volumes", v.VM, len(shape.Disks), len(v.VolumeIDs))
		}
		for i, disk := range shape.Disks {
			vol, err := d.volume(v.VolumeIDs[i])
			if err != nil {
				return "", err
			}
			src, err := h.ReadDisk(ctx, v.VM, i)
			if err != nil {
				return "", err
			}
			volume := volumeReader(d.lab.AWS, vol.ID)
			err = compareBytes(disk.Size, sourceReader(ctx, "disk "+disk.Name+" of VM "+v.VM, src), volume)
			if err == nil {
				err = compareRange(disk.Size, vol.SizeGiB<<30, zeroReader, volume)
			}
			if err != nil {
				return "", fmt.Errorf("verify volume %s of VM %s: %w", vol.ID, v.VM, err)
			}
			compared += vol.SizeGiB << 30
		}
	}
	d.verified.FailedOver += compared
	lines = append(lines, fmt.Sprintf("volumes compared with the VMs' disks read through vCenter: identical, %s (each disk, then zeros to the volume's whole GiB)", formatBytes(compared)))
	return strings.Join(lines, "\n"), nil
}

// writeEC2 returns a step that writes new data into every instance's
// volumes, as the applications running in EC2 would: 4 KiB pieces at
// random 512 KiB blocks of the whole volume.
func (d *drill) writeEC2(n int) func(ctx context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		const perVolume = 8
		var lines []string
		p := make([]byte, 4096)
		for _, v := range d.failover.VMs {
			var parts []string
			for _, id := range v.VolumeIDs {
				vol, err := d.volume(id)
				if err != nil {
					return "", err
				}
				blocks := map[int64]bool{}
				for range perVolume {
					b := d.rng.Int64N(vol.SizeGiB << 30 / blockSize)
					off := b*blockSize + d.rng.Int64N(blockSize/4096)*4096
					fillRandom(d.rng, p)
					if err := d.lab.AWS.WriteVolume(id, off, p); err != nil {
						return "", fmt.Errorf("write to volume %s of VM %s: %w", id, v.VM, err)
					}
					blocks[b] = true
				}
				d.writes[n] += len(blocks)
				parts = append(parts, fmt.Sprintf("%s: %d writes of 4 KiB in %d blocks", id, perVolume, len(blocks)))
			}
			lines = append(lines, fmt.Sprintf("%-4s %s", v.VM, strings.Join(parts, "; ")))
		}
		return strings.Join(lines, "\n"), nil
	}
}

// rebuildSite replaces the vCenter with a new, empty one, as failback finds
// a rebuilt site.
func (d *drill) rebuildSite(ctx context.Context) (string, error) {
	old := d.lab.VCenter.URL
	if err := d.lab.LoseSite(); err != nil {
		return "", err
	}
	vc := d.lab.VCenter
	for _, vm := range d.plan.VMs {
		if _, err := vc.Hypervisor.VMShape(ctx, vm.Name); !errors.Is(err, draas.ErrNotFound) {
			return "", fmt.Errorf("VM %s in the rebuilt vCenter: %v, want not found", vm.Name, err)
		}
	}
	return fmt.Sprintf("vCenter at %s stopped and its datastore deleted; new vCenter at %s, none of the plan's VMs in it", old, vc.URL), nil
}

// failback returns the step of a failback run in mode: pre-seed copies the
// running instances into new vCenter VMs; cut-over stops them, copies only
// the blocks changed since the pre-seed, powers the VMs on and points DNS
// back.
func (d *drill) failback(mode failback.Mode) func(ctx context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		var pre *failback.Report
		if mode == failback.CutOver {
			pre = d.preSeed
			for _, v := range d.failover.VMs {
				if _, ok := pre.VM(v.VM); !ok {
					return "", fmt.Errorf("the pre-seed run has no VM %s", v.VM)
				}
			}
		}
		fb, err := d.lab.Failback(failback.Options{})
		if err != nil {
			return "", err
		}
		rep, err := fb.Run(ctx, d.plan, mode, failback.TargetsFromFailover(d.failover, pre))
		if mode == failback.PreSeed {
			d.preSeed = rep
		} else {
			d.cutOver = rep
		}
		if err != nil {
			return "", err
		}
		var lines []string
		var bytes int64
		for _, v := range rep.VMs {
			inst, err := d.instance(v.InstanceID)
			if err != nil {
				return "", err
			}
			bytes += v.BytesCopied
			if mode == failback.PreSeed {
				if inst.State != "running" {
					return "", fmt.Errorf("instance %s of VM %s is %s after the pre-seed, want running", v.InstanceID, v.VM, inst.State)
				}
				var disks []string
				for _, disk := range v.Shape.Disks {
					disks = append(disks, formatBytes(disk.Size))
				}
				lines = append(lines, fmt.Sprintf("%-4s new VM of the instance's shape (%d CPUs, %d MiB, %s, disks %s), off; copied %s (%d blocks of %s) from %s; %s still %s",
					v.VM, v.Shape.CPUs, v.Shape.MemoryMiB, v.Shape.Firmware, strings.Join(disks, ", "),
					formatBytes(v.BytesCopied), v.BlocksCopied, formatBytes(vsphere.SinkBlockSize), strings.Join(v.Snapshots, ", "), v.InstanceID, inst.State))
				continue
			}
			lines = append(lines, fmt.Sprintf("%-4s copied %s (%d blocks of %s) changed since the pre-seed, from %s; downtime %s; VM powered on, %s %s",
				v.VM, formatBytes(v.BytesCopied), v.BlocksCopied, formatBytes(vsphere.SinkBlockSize), strings.Join(v.Snapshots, ", "), dur(v.Downtime), v.InstanceID, inst.State))
		}
		if mode == failback.PreSeed {
			lines = append(lines, fmt.Sprintf("all VMs: %s copied in %s, no downtime: the instances kept serving", formatBytes(bytes), dur(rep.End.Sub(rep.Start))))
			return strings.Join(lines, "\n"), nil
		}
		var dns []string
		d.dnsFailback = map[string][]string{}
		for _, want := range d.lab.SiteRecords {
			got, err := d.lab.DNS.Lookup(ctx, want.Zone, want.Name, want.Type)
			if err != nil {
				return "", fmt.Errorf("look up %s after the failback: %w", want.Name, err)
			}
			d.dnsFailback[want.Name+" "+want.Type] = got.Values
			if !slices.Equal(got.Values, want.Values) {
				return "", fmt.Errorf("%s says %v after the failback, want the on-premises %v", want.Name, got.Values, want.Values)
			}
			dns = append(dns, fmt.Sprintf("%s -> %s", want.Name, strings.Join(got.Values, ",")))
		}
		lines = append(lines, fmt.Sprintf("all VMs: %s copied in %s (the pre-seed copied %s)", formatBytes(bytes), dur(rep.End.Sub(rep.Start)), formatBytes(totalCopied(d.preSeed))))
		lines = append(lines, "DNS back on premises: "+strings.Join(dns, ", "))
		return strings.Join(lines, "\n"), nil
	}
}

func totalCopied(rep *failback.Report) int64 {
	var n int64
	for _, v := range rep.VMs {
		n += v.BytesCopied
	}
	return n
}

// verifyFailback powers each vCenter VM off, reads its disks through
// vCenter and compares them with the EC2 volumes it came from (the
// instances are stopped: their volumes hold their last bytes), then powers
// the VM on again.
func (d *drill) verifyFailback(ctx context.Context) (string, error) {
	h := d.lab.VCenter.Hypervisor
	var lines []string
	var total int64
	for _, v := range d.cutOver.VMs {
		if err := h.PowerOff(ctx, v.VM); err != nil {
			return "", err
		}
		shape, err := h.VMShape(ctx, v.VM)
		if err != nil {
			return "", err
		}
		if len(shape.Disks) != len(v.Shape.Disks) {
			return "", fmt.Errorf("VM %s has %d disks, its instance %d volumes", v.VM, len(shape.Disks), len(v.Shape.Disks))
		}
		var parts []string
		for i, disk := range shape.Disks {
			vol := v.Shape.Disks[i].Name // the volume ID
			if disk.Size != v.Shape.Disks[i].Size {
				return "", fmt.Errorf("disk %s of VM %s holds %d bytes, volume %s %d", disk.Name, v.VM, disk.Size, vol, v.Shape.Disks[i].Size)
			}
			src, err := h.ReadDisk(ctx, v.VM, i)
			if err != nil {
				return "", err
			}
			if err := compareBytes(disk.Size, volumeReader(d.lab.AWS, vol), sourceReader(ctx, "disk "+disk.Name+" of VM "+v.VM, src)); err != nil {
				return "", fmt.Errorf("verify VM %s against its EC2 volume: %w", v.VM, err)
			}
			parts = append(parts, fmt.Sprintf("%s = %s (%s)", disk.Name, vol, formatBytes(disk.Size)))
			total += disk.Size
		}
		if err := h.PowerOn(ctx, v.VM); err != nil {
			return "", err
		}
		lines = append(lines, fmt.Sprintf("%-4s %s: identical; powered on again", v.VM, strings.Join(parts, ", ")))
	}
	d.verified.FailedBack += total
	lines = append(lines, fmt.Sprintf("%s compared, including every block written in EC2 (%d before the pre-seed, %d during it)", formatBytes(total), d.writes[0], d.writes[1]))
	return strings.Join(lines, "\n"), nil
}

// writeReports writes the JSON and HTML reports of the drill (with its
// clean-up proof), the failover and the failback's cut-over.
func (d *drill) writeReports(ctx context.Context) (string, error) {
	dir := d.opts.ReportDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "draas-drill-"); err != nil {
			return "", fmt.Errorf("make a directory for the reports: %w", err)
		}
	}
	targets := report.TargetsFromPlan(d.plan, 0)
	runs := []report.Run{
		report.WithCleanup(report.FromFailover(d.drill, targets), d.drillCleanup.CleanupProof),
		report.FromFailover(d.failover, targets),
		report.FromFailback(d.cutOver, targets),
	}
	var lines []string
	for _, r := range runs {
		js, html, err := report.Write(dir, r)
		if err != nil {
			return "", fmt.Errorf("write the %s report: %w", r.Kind, err)
		}
		d.reports = append(d.reports, js, html)
		v := r.Verdict()
		lines = append(lines, fmt.Sprintf("%-8s verdict %s (RTO %s, RPO %s, clean-up %s): %s",
			r.Kind, v.Overall, v.RTO, v.RPO, v.Cleanup, html))
	}
	lines = append(lines, "JSON beside each: "+dir)
	return strings.Join(lines, "\n"), nil
}

// instance returns the simulator's record of an instance.
func (d *drill) instance(id string) (awssim.InstanceInfo, error) {
	for _, in := range d.lab.AWS.Instances() {
		if in.ID == id {
			return in, nil
		}
	}
	return awssim.InstanceInfo{}, fmt.Errorf("no instance %s in the simulator: %w", id, draas.ErrNotFound)
}

// volume returns the simulator's record of a volume.
func (d *drill) volume(id string) (awssim.VolumeInfo, error) {
	for _, v := range d.lab.AWS.Volumes() {
		if v.ID == id {
			return v, nil
		}
	}
	return awssim.VolumeInfo{}, fmt.Errorf("no volume %s in the simulator: %w", id, draas.ErrNotFound)
}

// timeline lays a failover's steps out per VM, in the plan's dependency
// order: each step's start offset from the run's start and its duration,
// marked * on the critical path.
func timeline(rep *failover.Report, order []string) []string {
	critical := map[string]bool{}
	for _, s := range rep.CriticalPath {
		critical[s] = true
	}
	var vms []failover.VMReport
	for _, name := range order {
		if v, ok := rep.VM(name); ok {
			vms = append(vms, v)
		}
	}
	if len(vms) == 0 {
		return nil
	}
	const col = 20
	header := fmt.Sprintf("  %-11s", "step")
	for _, v := range vms {
		header += fmt.Sprintf("%-*s", col, v.VM)
	}
	lines := []string{"timeline: start offset +duration (* on the critical path)", strings.TrimRight(header, " ")}
	var names []string
	for _, s := range vms[0].Steps {
		names = append(names, s.Name)
	}
	// A VM's steps in dependency order: dns-before only waits for the run
	// to start.
	rank := func(name string) int {
		i := slices.Index([]string{"select", "dns-before", "volumes", "prepare", "launch", "healthy", "dns"}, name)
		if i < 0 {
			return 100
		}
		return i
	}
	slices.SortStableFunc(names, func(a, b string) int { return rank(a) - rank(b) })
	for _, name := range names {
		row := fmt.Sprintf("  %-11s", name)
		for _, v := range vms {
			cell := "-"
			i := slices.IndexFunc(v.Steps, func(s failover.Step) bool { return s.Name == name })
			if i >= 0 && !v.Steps[i].Start.IsZero() {
				st := v.Steps[i]
				cell = fmt.Sprintf("%s +%s", dur(st.Start.Sub(rep.Start)), dur(st.Duration))
				if critical[v.VM+"/"+st.Name] {
					cell += "*"
				}
			}
			row += fmt.Sprintf("%-*s", col, cell)
		}
		lines = append(lines, strings.TrimRight(row, " "))
	}
	return lines
}

// rto reports a run's RTO against the plan's target, and its critical path.
func rto(rep *failover.Report, target time.Duration) string {
	verdict := "no target"
	if target > 0 {
		verdict = "target " + target.String() + ": met"
		if rep.RTO > target {
			verdict = "target " + target.String() + ": MISSED"
		}
	}
	return fmt.Sprintf("RTO %s (%s); critical path (%s): %s", dur(rep.RTO), verdict, dur(rep.CriticalPathDuration), strings.Join(rep.CriticalPath, " → "))
}

func none(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}
