package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/failback"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/lab"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/replicate"
)

// defaultPlan is the plan the drill protects unless told otherwise, relative
// to the repository's root.
const defaultPlan = "examples/plans/three-tier.yaml"

// options configure a drill. The zero value runs the standard demo.
type options struct {
	// PlanFile is the plan to protect; "" means defaultPlan, looked up from
	// the working directory and its parents.
	PlanFile string
	// DiskMiB is the size of each VM's generated disk when the plan lists
	// none; 0 means 64.
	DiskMiB int64
	// ChangePercent is the share of each disk's blocks changed between
	// the two backups; 0 means 1.
	ChangePercent float64
	// Seed makes the generated data and the changes repeatable; 0 means 1.
	Seed uint64
	// ReportDir receives the drill's, the failover's and the failback's
	// reports; "" means a new temporary directory, which is kept.
	ReportDir string
	// DatastoreOverTLS moves vCenter disk data over loopback TLS too (see
	// lab.Options).
	DatastoreOverTLS bool
}

// drill is the state the steps share: the lab, and the figures the report
// prints and the tests check.
type drill struct {
	opts options
	rng  *rand.Rand
	src  *plan.Plan // the plan as loaded, with the names the lab rewrote
	lab  *lab.Lab
	plan *plan.Plan // the lab's plan: subnets and groups by ID
	rep  *replicate.Replicator

	// rounds are the replication runs, in order: the first made full DR
	// copies, the next incremental ones.
	rounds []round
	// changed counts the blocks the change step rewrote.
	changed int
	// verified counts the bytes compared at each hop, and snapshots the DR
	// copies (one per disk) compared with their disks.
	verified  hops
	snapshots int
	status    []replicate.VMStatus

	drill        *failover.Report
	drillCleanup cleanupProof
	// dnsBefore is the production zone before the drill: its records
	// ("name type" to values), and the Route 53 changes made so far.
	dnsBefore struct {
		records map[string]string
		changes int
	}
	failover *failover.Report
	// writes are the EC2 blocks written after the failover, in two rounds:
	// before the pre-seed and during it.
	writes           [2]int
	preSeed, cutOver *failback.Report
	reports          []string // paths of the written reports

	// dns is what the production records said after the failover and after
	// the failback: "name type" to values.
	dnsFailover, dnsFailback map[string][]string
}

// hops counts the bytes compared byte for byte at each hop of the cycle.
type hops struct {
	// Replicated: each vCenter disk against its DR copy, after each
	// replication.
	Replicated int64
	// FailedOver: each EC2 volume against its VM's disk (and zeros beyond).
	FailedOver int64
	// FailedBack: each new vCenter disk against its EC2 volume.
	FailedBack int64
}

func (h hops) total() int64 { return h.Replicated + h.FailedOver + h.FailedBack }

// round is one replication run of the whole plan.
type round struct {
	results []replicate.Result // in plan order
	wall    time.Duration
	puts    int // PutSnapshotBlock calls
}

// step is one stage of the drill. do returns its report, one or more lines.
type step struct {
	name string
	do   func(ctx context.Context) (string, error)
}

// steps is the drill in order: replication, a DR drill and its clean-up,
// a failover, life in EC2, failback, and the proof that every byte made
// the round trip.
func (d *drill) steps() []step {
	return []step{
		{"start the simulators on 127.0.0.1: AWS (S3, EBS, EC2, Route 53) and vCenter (vcsim)", d.start},
		{"back up every VM from vCenter into the S3 backup store", d.backup},
		{"replicate every VM into EBS snapshots: full DR copies", d.replicate},
		{"verify every DR copy byte for byte against its VM's disk", d.verify},
		{fmt.Sprintf("change %g %% of the blocks of every disk, as the running guests would", d.opts.ChangePercent), d.change},
		{"back up every VM again: a new recovery point", d.backup},
		{"replicate again: incremental DR copies on the previous ones", d.replicate},
		{"verify every DR copy byte for byte against its VM's disk", d.verify},
		{"replication status: the RPO each VM would fail over with", d.reportStatus},
		{"DR drill: bring the plan up in the isolated drill subnet", d.drillPlan},
		{"clean the drill up, and prove it", d.cleanupDrill},
		{"disaster: the site goes dark; fail over to EC2 for real", d.failoverPlan},
		{"life goes on in EC2: the instances write to their volumes", d.writeEC2(0)},
		{"the site is rebuilt: a new, empty vCenter", d.rebuildSite},
		{"fail back, pre-seed: copy the running instances into new vCenter VMs", d.failback(failback.PreSeed)},
		{"the instances keep serving during the pre-seed", d.writeEC2(1)},
		{"fail back, cut-over: stop, copy only what changed, power on, DNS back", d.failback(failback.CutOver)},
		{"verify every vCenter disk byte for byte against its EC2 volume", d.verifyFailback},
		{"write the reports of the drill, the failover and the failback", d.writeReports},
	}
}

// run performs the drill and writes its report to w.
func run(ctx context.Context, w io.Writer, opts options) error {
	_, err := runAll(ctx, w, opts)
	return err
}

// runAll performs the drill, writes its report to w and returns its state
// for tests to inspect.
func runAll(ctx context.Context, w io.Writer, opts options) (*drill, error) {
	if opts.DiskMiB == 0 {
		opts.DiskMiB = 64
	}
	if opts.ChangePercent == 0 {
		opts.ChangePercent = 1
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.ChangePercent < 0 || opts.ChangePercent > 100 {
		return nil, draas.Invalidf("drill: change of %g %% of the blocks: want a share from 0 to 100 %%", opts.ChangePercent)
	}
	if opts.DiskMiB < 1 || opts.DiskMiB > 1024 {
		return nil, draas.Invalidf("drill: disks of %d MiB: want 1 to 1024 MiB", opts.DiskMiB)
	}
	if opts.PlanFile == "" {
		path, err := findPlan()
		if err != nil {
			return nil, err
		}
		opts.PlanFile = path
	}
	src, err := plan.Load(opts.PlanFile)
	if err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	d := &drill{opts: opts, src: src, rng: newRand(opts.Seed)}
	defer d.close()

	fmt.Fprintf(w, "draas drill: the whole DR cycle of plan %s (%s, %d VMs) on simulators\n", src.Name, opts.PlanFile, len(src.VMs))
	all := d.steps()
	start := time.Now()
	for i, s := range all {
		t := time.Now()
		report, err := s.do(ctx)
		if err != nil {
			fmt.Fprintf(w, "[%d/%d] %s: FAILED\n", i+1, len(all), s.name)
			return d, fmt.Errorf("step %d (%s): %w", i+1, s.name, err)
		}
		fmt.Fprintf(w, "[%d/%d] %s (%s)\n", i+1, len(all), s.name, since(t))
		for line := range strings.SplitSeq(report, "\n") {
			fmt.Fprintf(w, "      %s\n", line)
		}
	}
	// The time counts the steps above, from starting the simulators to the
	// reports: not the compile that go run does first (a minute or two
	// from an empty build cache), nor loading the plan.
	fmt.Fprintf(w, "done in %s (the %d steps; compiling the program is not counted): %s\n", since(start), len(all), d.conclusion())
	return d, nil
}

// newRand returns the drill's source of generated changes.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6472696c6c)) }

// findPlan looks for defaultPlan in the working directory and its parents,
// so that the drill runs from anywhere in the repository.
func findPlan() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("drill: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		path := filepath.Join(dir, filepath.FromSlash(defaultPlan))
		if _, err := os.Stat(path); err == nil {
			if rel, err := filepath.Rel(wd, path); err == nil {
				return rel, nil
			}
			return path, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("drill: %s not found in %s or its parents: run the drill inside the repository, or pass -plan FILE", defaultPlan, wd)
		}
	}
}

// close stops the simulators, dropping everything they held.
func (d *drill) close() {
	if d.lab != nil {
		d.lab.Close()
	}
}

// start builds the lab: the AWS simulator with the plan's network and DNS
// zone, the backup store in its S3, and a vCenter simulator holding a VM per
// plan VM with generated disks, powered on.
func (d *drill) start(ctx context.Context) (string, error) {
	l, err := lab.Start(ctx, d.src, lab.Options{
		Seed: d.opts.Seed, DiskMiB: d.opts.DiskMiB,
		VSphere: true, DatastoreOverTLS: d.opts.DatastoreOverTLS, SiteRecords: true,
	})
	if err != nil {
		return "", err
	}
	d.lab, d.plan = l, l.Plan
	if d.rep, err = l.Replicator(replicate.Options{}); err != nil {
		return "", err
	}
	vc := l.VCenter
	lines := []string{
		fmt.Sprintf("AWS at %s (S3 at %s), through the aws-sdk-go-v2 clients", l.AWS.URL, l.AWS.S3URL),
		fmt.Sprintf("vCenter at %s, certificate pinned by SHA-256 %s…, through package vsphere (govmomi)", vc.URL, vc.Thumbprint[:23]),
		fmt.Sprintf("plan %s: production subnet %s, drill subnet %s, zone %s; RTO target %s, RPO target %s",
			d.plan.Name, d.src.Subnet(d.src.VMs[0]), d.src.Drill.Subnet, d.plan.DNS.Zone, time.Duration(d.plan.RTO), d.rpoTarget()),
	}
	var total int64
	for _, vm := range d.plan.VMs {
		shape, err := vc.Hypervisor.VMShape(ctx, vm.Name)
		if err != nil {
			return "", err
		}
		var disks []string
		for i, disk := range shape.Disks {
			blocks, data, err := d.dataBlocks(ctx, vm.Name, i)
			if err != nil {
				return "", err
			}
			disks = append(disks, fmt.Sprintf("%s %s (%d of %d blocks hold data)", disk.Name, formatBytes(disk.Size), data, blocks))
			total += disk.Size
		}
		lines = append(lines, fmt.Sprintf("%-4s VM in vCenter, powered on, %d CPUs, %d MiB: %s; DNS %s",
			vm.Name, shape.CPUs, shape.MemoryMiB, strings.Join(disks, ", "), d.siteRecords(vm.Name)))
	}
	lines = append(lines, fmt.Sprintf("%s of disks; backup store s3://%s/%s", formatBytes(total), lab.BackupBucket, lab.BackupPrefix))
	return strings.Join(lines, "\n"), nil
}

// rpoTarget is the plan's RPO: replication.rpo, else twice the interval.
func (d *drill) rpoTarget() time.Duration {
	if d.plan.Replication.RPO > 0 {
		return time.Duration(d.plan.Replication.RPO)
	}
	return 2 * time.Duration(d.plan.Replication.Interval)
}

// siteRecords lists the on-premises records of a VM: "db.example.com. A
// 192.168.10.10".
func (d *drill) siteRecords(vm string) string {
	var out []string
	for _, r := range d.lab.SiteRecords {
		if d.recordOf(r) == vm {
			out = append(out, r.Name+" A "+strings.Join(r.Values, ","))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// recordOf returns the plan VM a seeded record belongs to.
func (d *drill) recordOf(r draas.Record) string {
	for _, vm := range d.plan.VMs {
		for _, pr := range vm.DNS {
			if r.Name == pr.Name || strings.HasPrefix(r.Name, pr.Name+".") {
				return vm.Name
			}
		}
	}
	return ""
}

// backup writes a recovery point of every VM into the backup store through
// package backup: a vSphere snapshot, each disk read from it, only the
// chunks the store lacks uploaded, the snapshot removed.
func (d *drill) backup(ctx context.Context) (string, error) {
	b, err := backup.New(d.lab.Snapshotter(), d.lab.Store, backup.Options{})
	if err != nil {
		return "", err
	}
	var lines []string
	for _, vm := range d.plan.VMs {
		chunks, err := d.chunks(ctx)
		if err != nil {
			return "", err
		}
		res, err := b.Run(ctx, vm.Name)
		if err != nil {
			return "", fmt.Errorf("back up VM %s: %w", vm.Name, err)
		}
		after, err := d.chunks(ctx)
		if err != nil {
			return "", err
		}
		var read int64
		var names []string
		for _, dr := range res.Disks {
			read += dr.Stats.BytesRead
			names = append(names, dr.Disk.Name)
		}
		lines = append(lines, fmt.Sprintf("%-4s point %s of disk %s: read %s, uploaded %s, in %s",
			vm.Name, res.Point, strings.Join(names, ", "), formatBytes(read), plural(after-chunks, "new chunk"), dur(res.Duration)))
	}
	lines = append(lines, "vcsim has no Changed Block Tracking: every backup reads whole disks; the store uploads only the chunks it lacks")
	return strings.Join(lines, "\n"), nil
}

// chunks counts the chunks in the backup store.
func (d *drill) chunks(ctx context.Context) (int, error) {
	n := 0
	p := awss3.NewListObjectsV2Paginator(d.lab.S3, &awss3.ListObjectsV2Input{
		Bucket: aws.String(lab.BackupBucket), Prefix: aws.String(lab.BackupPrefix + "/chunks/"),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return 0, fmt.Errorf("count the chunks in s3://%s/%s: %w", lab.BackupBucket, lab.BackupPrefix, err)
		}
		n += len(page.Contents)
	}
	return n, nil
}

// replicate runs the plan once: every VM's latest recovery point becomes
// its DR copy, in full the first time and incrementally on the previous
// copy after that, verified before the previous copy is deleted.
func (d *drill) replicate(ctx context.Context) (string, error) {
	puts := d.lab.AWS.Calls("PutSnapshotBlock")
	start := time.Now()
	results, err := d.rep.ReplicateAll(ctx)
	if err != nil {
		return "", err
	}
	r := round{results: results, wall: time.Since(start), puts: d.lab.AWS.Calls("PutSnapshotBlock") - puts}
	d.rounds = append(d.rounds, r)
	var first *round
	if len(d.rounds) > 1 {
		first = &d.rounds[0]
	}
	var lines []string
	for i, res := range results {
		lines = append(lines, fmt.Sprintf("%-4s point %s: %s, sent %s (%s), skipped %d, in %s; RPO %s",
			res.VM, res.RecoveryPoint, res.Action, plural(int(res.BlocksSent), "block"), formatBytes(res.BytesSent), res.BlocksSkipped,
			res.Duration.Round(time.Millisecond), res.RPO.Round(100*time.Millisecond)))
		var snaps []string
		for _, dr := range res.Disks {
			s := dr.Disk + " -> " + dr.SnapshotID
			if dr.Parent != "" {
				s += " (on " + dr.Parent + ")"
			}
			snaps = append(snaps, s)
		}
		lines = append(lines, "     "+strings.Join(snaps, ", "))
		if first != nil {
			full := first.results[i]
			lines = append(lines, fmt.Sprintf("     saving: %s of the full copy's blocks, in %s of its time; deleted %s",
				percent(res.BlocksSent, full.BlocksSent), percent(int64(res.Duration), int64(full.Duration)), strings.Join(res.Deleted, ", ")))
		}
	}
	lines = append(lines, fmt.Sprintf("all VMs: %d PutSnapshotBlock calls in %s", r.puts, r.wall.Round(time.Millisecond)))
	return strings.Join(lines, "\n"), nil
}

// verify compares every VM disk, as its guest sees it in the datastore,
// with the snapshot of its newest DR copy, byte for byte, reading the
// snapshot from the simulator's storage, and checks that the previous DR
// copies are gone.
func (d *drill) verify(ctx context.Context) (string, error) {
	if len(d.rounds) == 0 {
		return "", errors.New("verify: nothing was replicated yet")
	}
	last := d.rounds[len(d.rounds)-1]
	want := map[string]bool{}
	var n int
	var compared int64
	for i, vm := range d.plan.VMs {
		for j, dr := range last.results[i].Disks {
			disk, err := d.lab.VCenter.GuestDisk(ctx, vm.Name, j)
			if err != nil {
				return "", err
			}
			err = compareBytes(disk.Size(), guestReader(disk), snapshotReader(d.lab.AWS, dr.SnapshotID))
			disk.Close()
			if err != nil {
				return "", fmt.Errorf("verify disk %s of VM %s against DR copy %s: %w", dr.Disk, vm.Name, dr.SnapshotID, err)
			}
			want[dr.SnapshotID] = true
			compared += disk.Size()
			n++
		}
	}
	for _, s := range d.lab.AWS.Snapshots() {
		if s.Tags[draas.TagPlan] != d.plan.Name {
			continue // not a DR copy (the simulator's own images have snapshots)
		}
		if !want[s.ID] {
			return "", fmt.Errorf("verify: snapshot %s (%s/%s, state %s) is left over: a replaced DR copy was not deleted", s.ID, s.Tags[draas.TagVM], s.Tags[draas.TagDisk], s.State)
		}
		if draas.CopyState(s.State) != draas.CopyCompleted || s.Tags[draas.TagComplete] != "true" {
			return "", fmt.Errorf("verify: DR copy %s is %s and tagged complete=%q, want completed and true", s.ID, s.State, s.Tags[draas.TagComplete])
		}
	}
	d.verified.Replicated += compared
	d.snapshots += n
	return fmt.Sprintf("%d snapshots, %s compared with the datastore's disk files: identical; no other DR copy exists", n, formatBytes(compared)), nil
}

// change rewrites ChangePercent % of every disk's blocks, as the running
// guests would between two backups: into the disks' files in the datastore.
func (d *drill) change(ctx context.Context) (string, error) {
	var parts []string
	var total, blocks int64
	for _, vm := range d.plan.VMs {
		shape, err := d.lab.VCenter.Hypervisor.VMShape(ctx, vm.Name)
		if err != nil {
			return "", err
		}
		for i, disk := range shape.Disks {
			g, err := d.lab.VCenter.GuestDisk(ctx, vm.Name, i)
			if err != nil {
				return "", err
			}
			n, err := changeDisk(d.rng, g, d.opts.ChangePercent)
			g.Close()
			if err != nil {
				return "", fmt.Errorf("change disk %s of VM %s: %w", disk.Name, vm.Name, err)
			}
			nblocks := (disk.Size + lab.BlockSize - 1) / lab.BlockSize
			parts = append(parts, fmt.Sprintf("%s/%s %d of %d", vm.Name, disk.Name, n, nblocks))
			d.changed += n
			total += int64(n)
			blocks += nblocks
		}
	}
	return fmt.Sprintf("changed blocks: %s; %d of %d in all (%s), a quarter of them zeroed whole (trimmed)",
		strings.Join(parts, ", "), total, blocks, percent(total, blocks)), nil
}

// reportStatus asks the replicator how fresh each VM's DR copy is: the RPO
// a failover now would achieve.
func (d *drill) reportStatus(ctx context.Context) (string, error) {
	st, err := d.rep.Status(ctx)
	if err != nil {
		return "", err
	}
	d.status = st
	var lines []string
	for _, s := range st {
		verdict := "OK"
		if !s.OK {
			verdict = "NOT OK"
		}
		lines = append(lines, fmt.Sprintf("%-4s DR copy of point %s, age %s, target %s: %s (%d complete copy, %d pending)",
			s.VM, s.RecoveryPoint, s.Age.Round(100*time.Millisecond), s.Target, verdict, s.Copies, s.Pending))
	}
	return strings.Join(lines, "\n"), nil
}

// dataBlocks counts the blocks of a VM's disk and those holding data.
func (d *drill) dataBlocks(ctx context.Context, vm string, i int) (blocks, data int64, err error) {
	g, err := d.lab.VCenter.GuestDisk(ctx, vm, i)
	if err != nil {
		return 0, 0, err
	}
	defer g.Close()
	buf := make([]byte, lab.BlockSize)
	for off := int64(0); off < g.Size(); off += lab.BlockSize {
		p := buf[:min(lab.BlockSize, g.Size()-off)]
		if _, err := g.ReadAt(p, off); err != nil {
			return 0, 0, fmt.Errorf("read disk %d of VM %s: %w", i, vm, err)
		}
		blocks++
		if !draas.IsZero(p) {
			data++
		}
	}
	return blocks, data, nil
}

// conclusion sums the cycle up.
func (d *drill) conclusion() string {
	if len(d.rounds) < 2 || d.failover == nil || d.cutOver == nil {
		return "the cycle did not finish"
	}
	full, incr := d.rounds[0], d.rounds[len(d.rounds)-1]
	var downtime time.Duration
	for _, v := range d.cutOver.VMs {
		downtime = max(downtime, v.Downtime)
	}
	return fmt.Sprintf("the incremental replication sent %s of the full one's blocks; the drill left nothing behind; failover RTO %s; failback downtime at most %s; %s verified byte for byte at every hop",
		percent(sent(incr), sent(full)), dur(d.failover.RTO), dur(downtime), formatBytes(d.verified.total()))
}

// sent returns the blocks a round sent.
func sent(r round) int64 {
	var n int64
	for _, res := range r.results {
		n += res.BlocksSent
	}
	return n
}
