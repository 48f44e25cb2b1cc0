package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/replicate"
)

// options configure a drill. The zero value runs the standard demo.
type options struct {
	// App is the application to protect; nil means standardApp().
	App []vmSpec
	// ChangePercent is the share of each disk's blocks changed between
	// the two backups; 0 means 1.
	ChangePercent float64
	// Seed makes the generated data and the changes repeatable; 0 means 1.
	Seed uint64
}

// The names the drill gives what it creates in the simulator.
const (
	planName     = "shop"
	backupBucket = "backups"
	backupPrefix = "drill"
)

// drill is the state the steps share: the simulated cloud, the protected
// VMs, and the figures the report compares.
type drill struct {
	opts options
	rng  *rand.Rand

	srv    *awssim.Server
	s3api  *countingS3
	store  *s3.Store
	copies *ebs.Copies
	plan   draas.Plan
	rep    *replicate.Replicator

	vms       []*vm
	lastPoint time.Time // of the latest backup round

	// rounds are the replication runs, in order: the first made full DR
	// copies, the next incremental ones.
	rounds []round
	// changed counts the blocks the change step rewrote.
	changed int
	// verified counts the bytes the verify steps compared, and snapshots
	// the DR copies (one per disk) they compared.
	verified  int64
	snapshots int
	status    []replicate.VMStatus
}

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

// steps is the drill in order. The DR cycle grows here: failover (DR copies
// into EC2 instances in dependency order, then DNS) and failback come next.
func (d *drill) steps() []step {
	return []step{
		{"start the AWS simulator on 127.0.0.1 (S3, EBS direct APIs, EC2)", d.start},
		{"generate the application's VM disks", d.generate},
		{"back up every VM into the S3 backup store", d.backup},
		{"replicate every VM into EBS snapshots: full DR copies", d.replicate},
		{"verify every DR copy byte for byte against its VM's disk", d.verify},
		{fmt.Sprintf("change %g %% of the blocks of every disk", d.opts.ChangePercent), d.change},
		{"back up every VM again: a new recovery point", d.backup},
		{"replicate again: incremental DR copies on the previous ones", d.replicate},
		{"verify every DR copy byte for byte against its VM's disk", d.verify},
		{"replication status: the RPO each VM would fail over with", d.reportStatus},
	}
}

// run performs the drill and writes its report to w.
func run(ctx context.Context, w io.Writer, opts options) error {
	_, err := runDrill(ctx, w, opts)
	return err
}

// runDrill performs the drill, writes its report to w and returns its state
// for tests to inspect.
func runDrill(ctx context.Context, w io.Writer, opts options) (*drill, error) {
	if opts.App == nil {
		opts.App = standardApp()
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
	for _, v := range opts.App {
		if len(v.Disks) == 0 {
			return nil, draas.Invalidf("drill: VM %q has no disks: give it at least one", v.Name)
		}
		for _, s := range v.Disks {
			if s.SizeMiB <= 0 || s.DataPercent < 0 || s.DataPercent > 100 {
				return nil, draas.Invalidf("drill: disk %s of VM %s: %d MiB with %d %% data: want a positive size and 0 to 100 %% data", s.Name, v.Name, s.SizeMiB, s.DataPercent)
			}
		}
	}
	d := &drill{opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, 0x6472696c6c))}
	defer d.close()

	fmt.Fprintf(w, "draas drill: protect a %d-VM application, replicate it into EBS twice, verify every byte\n", len(opts.App))
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
		for _, line := range strings.Split(report, "\n") {
			fmt.Fprintf(w, "      %s\n", line)
		}
	}
	fmt.Fprintf(w, "done in %s: %s\n", since(start), d.conclusion())
	return d, nil
}

// close stops the simulator, dropping everything it held.
func (d *drill) close() {
	if d.srv != nil {
		d.srv.Close()
	}
}

// start starts the simulator and the stores on it: the backup store in its
// S3, the DR copies as snapshots through its EBS direct APIs, found by
// their tags through its EC2. The clients are the real aws-sdk-go-v2 ones.
func (d *drill) start(ctx context.Context) (string, error) {
	srv, err := awssim.New(awssim.Options{})
	if err != nil {
		return "", fmt.Errorf("start the AWS simulator: %w", err)
	}
	d.srv = srv
	d.s3api = &countingS3{API: srv.S3()}
	d.store = s3.New(d.s3api, backupBucket, backupPrefix, s3.Options{})
	d.copies = ebs.NewCopies(ebs.NewClient(srv.Config(), 0), srv.EC2(), ebs.CopiesOptions{})
	return fmt.Sprintf("EBS and EC2 at %s, S3 at %s\nbackup store s3://%s/%s, DR copies tagged %s=%s",
		srv.URL, srv.S3URL, backupBucket, backupPrefix, draas.TagPlan, planName), nil
}

// generate makes the VMs' disks and the plan that protects them.
func (d *drill) generate(ctx context.Context) (string, error) {
	d.plan = draas.Plan{Name: planName, ReplicationInterval: 15 * time.Minute}
	var lines []string
	var total int64
	for _, spec := range d.opts.App {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		v := &vm{spec: spec}
		var parts []string
		for _, ds := range spec.Disks {
			disk := generateDisk(d.rng, ds)
			v.disks = append(v.disks, disk)
			parts = append(parts, describeDisk(ds.Name, disk))
			total += disk.Size()
		}
		d.vms = append(d.vms, v)
		d.plan.VMs = append(d.plan.VMs, v.draasVM())
		lines = append(lines, fmt.Sprintf("%-4s %s: %s", spec.Name, spec.Role, strings.Join(parts, ", ")))
	}
	rep, err := replicate.New(d.plan, replicate.BackupsOf(d.store), d.copies, replicate.Options{})
	if err != nil {
		return "", err
	}
	d.rep = rep
	lines = append(lines, fmt.Sprintf("plan %s: %d VMs, %s of disks, replicated every %s (RPO target %s)",
		planName, len(d.vms), formatBytes(total), d.plan.ReplicationInterval, 2*d.plan.ReplicationInterval))
	return strings.Join(lines, "\n"), nil
}

// backup writes a recovery point of every VM into the backup store: all its
// disks at one point in time, committed together. The store uploads only
// the chunks it does not hold yet, so a second backup uploads what changed.
func (d *drill) backup(ctx context.Context) (string, error) {
	at, err := d.pointTime(ctx)
	if err != nil {
		return "", err
	}
	var lines []string
	for _, v := range d.vms {
		chunks := d.s3api.chunks.Load()
		start := time.Now()
		id, blocks, err := backupVM(ctx, d.store, v, at)
		if err != nil {
			return "", err
		}
		lines = append(lines, fmt.Sprintf("%-4s point %s: %d blocks with data, %d new chunks uploaded, in %s",
			v.spec.Name, id, blocks, d.s3api.chunks.Load()-chunks, since(start)))
	}
	return strings.Join(lines, "\n"), nil
}

// backupVM writes one recovery point of v taken at t and returns its ID and
// the number of blocks with data it holds.
func backupVM(ctx context.Context, store *s3.Store, v *vm, t time.Time) (string, int64, error) {
	w, err := store.BeginPoint(ctx, v.spec.Name, v.draasVM().Disks, t)
	if err != nil {
		return "", 0, fmt.Errorf("back up %s: %w", v.spec.Name, err)
	}
	var blocks int64
	for i, disk := range v.disks {
		name := v.spec.Disks[i].Name
		sink, err := w.Disk(name)
		if err == nil {
			var st blockcopy.Stats
			st, err = blockcopy.Copy(ctx, sink, disk, blockcopy.Options{})
			blocks += st.BlocksCopied
		}
		if err != nil {
			_ = w.Abort(context.WithoutCancel(ctx))
			return "", 0, fmt.Errorf("back up disk %s of %s: %w", name, v.spec.Name, err)
		}
	}
	if err := w.Commit(ctx); err != nil {
		_ = w.Abort(context.WithoutCancel(ctx))
		return "", 0, fmt.Errorf("commit the recovery point of %s: %w", v.spec.Name, err)
	}
	return w.ID(), blocks, nil
}

// pointTime returns the time of a new round of recovery points: now, to
// the second. Point IDs sort by time to the second, so two points of a VM
// in the same second could sort out of order and the older one look like
// the latest; pointTime waits for the next second instead.
func (d *drill) pointTime(ctx context.Context) (time.Time, error) {
	for {
		t := time.Now().Truncate(time.Second)
		if t.After(d.lastPoint) {
			d.lastPoint = t
			return t, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(time.Until(t.Add(time.Second))):
		}
	}
}

// replicate runs the plan once: every VM's latest recovery point becomes
// its DR copy, in full the first time and incrementally on the previous
// copy after that, verified before the previous copy is deleted.
func (d *drill) replicate(ctx context.Context) (string, error) {
	puts := d.srv.Calls("PutSnapshotBlock")
	start := time.Now()
	results, err := d.rep.ReplicateAll(ctx)
	if err != nil {
		return "", err
	}
	r := round{results: results, wall: time.Since(start), puts: d.srv.Calls("PutSnapshotBlock") - puts}
	d.rounds = append(d.rounds, r)
	var first *round
	if len(d.rounds) > 1 {
		first = &d.rounds[0]
	}
	var lines []string
	for i, res := range results {
		lines = append(lines, fmt.Sprintf("%-4s point %s: %s, sent %d blocks (%s), skipped %d, in %s; RPO %s",
			res.VM, res.RecoveryPoint, res.Action, res.BlocksSent, formatBytes(res.BytesSent), res.BlocksSkipped,
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

// verify compares every VM disk with the snapshot of its newest DR copy,
// byte for byte, reading the snapshot from the simulator's storage, and
// checks that the previous DR copies are gone.
func (d *drill) verify(ctx context.Context) (string, error) {
	if len(d.rounds) == 0 {
		return "", fmt.Errorf("verify: nothing was replicated yet")
	}
	last := d.rounds[len(d.rounds)-1]
	want := map[string]bool{}
	var n int
	var compared int64
	for i, v := range d.vms {
		snaps := map[string]string{} // disk name -> snapshot of the new DR copy
		for _, dr := range last.results[i].Disks {
			snaps[dr.Disk] = dr.SnapshotID
		}
		for j, disk := range v.disks {
			name := v.spec.Disks[j].Name
			id := snaps[name]
			if id == "" {
				return "", fmt.Errorf("verify %s: the replication run made no DR copy of disk %s", v.spec.Name, name)
			}
			if err := compareSnapshot(ctx, d.srv, id, disk); err != nil {
				return "", fmt.Errorf("verify disk %s of %s: %w", name, v.spec.Name, err)
			}
			want[id] = true
			compared += disk.Size()
			n++
		}
	}
	for _, s := range d.srv.Snapshots() {
		if s.Tags[draas.TagPlan] != planName {
			continue // not a DR copy (the simulator's own images have snapshots)
		}
		if !want[s.ID] {
			return "", fmt.Errorf("verify: snapshot %s (%s/%s, state %s) is left over: a replaced DR copy was not deleted", s.ID, s.Tags[draas.TagVM], s.Tags[draas.TagDisk], s.State)
		}
		if s.State != "completed" || s.Tags[draas.TagComplete] != "true" {
			return "", fmt.Errorf("verify: DR copy %s is %s and tagged complete=%q, want completed and true", s.ID, s.State, s.Tags[draas.TagComplete])
		}
	}
	d.verified += compared
	d.snapshots += n
	return fmt.Sprintf("%d snapshots, %s compared: identical; no other DR copy exists", n, formatBytes(compared)), nil
}

// compareSnapshot reads the snapshot and the disk in 4 MiB pieces and fails
// at the first difference, naming its offset.
func compareSnapshot(ctx context.Context, srv *awssim.Server, id string, disk *draastest.Disk) error {
	const piece = 4 << 20
	a, b := make([]byte, piece), make([]byte, piece)
	for off := int64(0); off < disk.Size(); off += piece {
		n := int(min(piece, disk.Size()-off))
		if _, err := disk.ReadAt(ctx, a[:n], off); err != nil && err != io.EOF {
			return err
		}
		if _, err := srv.ReadSnapshotAt(id, b[:n], off); err != nil && err != io.EOF {
			return fmt.Errorf("read snapshot %s: %w", id, err)
		}
		if !bytes.Equal(a[:n], b[:n]) {
			i := 0
			for a[i] == b[i] {
				i++
			}
			return fmt.Errorf("snapshot %s differs from the disk at byte %d: %w", id, off+int64(i), draas.ErrChecksumMismatch)
		}
	}
	return nil
}

// change rewrites ChangePercent % of every disk's blocks, as the running
// VMs would between two backups.
func (d *drill) change(ctx context.Context) (string, error) {
	var parts []string
	var total, blocks int64
	for _, v := range d.vms {
		for i, disk := range v.disks {
			if err := ctx.Err(); err != nil {
				return "", err
			}
			n := changeDisk(d.rng, disk, d.opts.ChangePercent)
			nblocks := (disk.Size() + blockSize - 1) / blockSize
			parts = append(parts, fmt.Sprintf("%s/%s %d of %d", v.spec.Name, v.spec.Disks[i].Name, n, nblocks))
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

// conclusion compares the incremental replication with the full one.
func (d *drill) conclusion() string {
	if len(d.rounds) < 2 {
		return "nothing to compare"
	}
	full, incr := d.rounds[0], d.rounds[len(d.rounds)-1]
	return fmt.Sprintf("the incremental replication sent %d blocks where the full one sent %d (%s), in %s of its time; %d DR copies, %s, verified byte for byte",
		sent(incr), sent(full), percent(sent(incr), sent(full)), percent(int64(incr.wall), int64(full.wall)), d.snapshots, formatBytes(d.verified))
}

// sent returns the blocks a round sent.
func sent(r round) int64 {
	var n int64
	for _, res := range r.results {
		n += res.BlocksSent
	}
	return n
}

// countingS3 counts the chunks the backup store uploads.
type countingS3 struct {
	s3.API
	chunks atomic.Int64
}

// PutObject counts chunk uploads (keys under the store's chunks/ folder;
// see docs/backup-store.md) and passes the call on.
func (c *countingS3) PutObject(ctx context.Context, in *awss3.PutObjectInput, optFns ...func(*awss3.Options)) (*awss3.PutObjectOutput, error) {
	out, err := c.API.PutObject(ctx, in, optFns...)
	if err == nil && in.Key != nil && strings.Contains(*in.Key, "/chunks/") {
		c.chunks.Add(1)
	}
	return out, err
}

// percent formats part/whole as a percentage.
func percent(part, whole int64) string {
	if whole <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f %%", 100*float64(part)/float64(whole))
}

// formatBytes formats n bytes in binary units: "1.5 GiB".
func formatBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	unit := "B"
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if f < 1024 {
			break
		}
		f, unit = f/1024, u
	}
	return fmt.Sprintf("%.1f %s", f, unit)
}

func since(t time.Time) string {
	return time.Since(t).Round(time.Millisecond).String()
}
