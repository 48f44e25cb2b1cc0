package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/replicate"
	"github.com/opendraas/draas/report"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// vcsim logs every file name it tries for a new disk; keep its log for
	// -v runs.
	if !testing.Verbose() {
		log.SetOutput(io.Discard)
	}
	os.Exit(m.Run())
}

// TestDemo runs the drill exactly as `go run ./examples/drill` does (with
// smaller disks under -short) and checks its report and the figures behind
// it, hop by hop.
func TestDemo(t *testing.T) {
	opts := options{ReportDir: t.TempDir()}
	if testing.Short() {
		opts.DiskMiB = 16
	}
	var out bytes.Buffer
	d, err := runAll(t.Context(), &out, opts)
	if err != nil {
		t.Fatalf("drill failed: %v\n%s", err, out.String())
	}
	text := out.String()
	t.Logf("\n%s", text)
	for _, want := range []string{
		"vCenter at https://127.0.0.1:",
		"vcsim has no Changed Block Tracking",
		": full, sent",
		": incremental, sent",
		"saving:",
		"compared with the datastore's disk files: identical",
		"timeline: start offset +duration",
		"critical path",
		"instances none, volumes none",
		"unchanged: true; Route 53 changes during the drill: 0",
		"DNS back on premises:",
		"identical; powered on again",
		".html",
		"steps; compiling the program is not counted):",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(text, "FAILED") || strings.Contains(text, "NOT OK") || strings.Contains(text, "MISSED") {
		t.Errorf("a step failed, a VM misses its RPO or the RTO was missed")
	}

	t.Run("replication", func(t *testing.T) { checkReplication(t, d) })
	t.Run("drill", func(t *testing.T) { checkDrill(t, d) })
	t.Run("failover", func(t *testing.T) { checkFailover(t, d) })
	t.Run("failback", func(t *testing.T) { checkFailback(t, d) })
	t.Run("reports", func(t *testing.T) { checkReports(t, d) })
}

// checkReplication: full copies, then incremental ones sending exactly the
// changed blocks, every disk compared after each run.
func checkReplication(t *testing.T, d *drill) {
	if len(d.rounds) != 2 {
		t.Fatalf("%d replication rounds, want 2", len(d.rounds))
	}
	full, incr := d.rounds[0], d.rounds[1]
	for i, vm := range d.plan.VMs {
		if a := full.results[i].Action; a != replicate.ActionFull {
			t.Errorf("%s: first run did %s, want full", vm.Name, a)
		}
		if a := incr.results[i].Action; a != replicate.ActionIncremental {
			t.Errorf("%s: second run did %s, want incremental", vm.Name, a)
		}
		if n, want := len(incr.results[i].Deleted), len(full.results[i].Disks); n != want {
			t.Errorf("%s: second run deleted %d old copies, want %d (one per disk)", vm.Name, n, want)
		}
	}
	if got := sent(incr); got != int64(d.changed) {
		t.Errorf("incremental run sent %d blocks, want the %d changed", got, d.changed)
	}
	if got := incr.puts; got != d.changed {
		t.Errorf("incremental run made %d PutSnapshotBlock calls, want %d", got, d.changed)
	}
	if !testing.Short() {
		// The standard disks: 1 % of the blocks changed is at most 2 % of
		// what the full copy sent.
		if ratio := float64(sent(incr)) / float64(sent(full)); ratio > 0.02 {
			t.Errorf("incremental run sent %d blocks, %.1f %% of the full run's %d; want at most 2 %%", sent(incr), 100*ratio, sent(full))
		}
	}
	disks := len(d.plan.VMs) // one disk per VM
	size := int64(disks) * d.opts.DiskMiB << 20
	if d.verified.Replicated != 2*size || d.snapshots != 2*disks {
		t.Errorf("verified %d bytes in %d snapshots, want %d bytes in %d", d.verified.Replicated, d.snapshots, 2*size, 2*disks)
	}
	for _, s := range d.status {
		if !s.OK || s.Copies != 1 || s.Pending != 0 {
			t.Errorf("status %+v: want OK with one complete copy and nothing pending", s)
		}
	}
}

// checkDrill: every VM came up in the drill subnet, and the clean-up left
// nothing and touched no production record.
func checkDrill(t *testing.T, d *drill) {
	if d.drill == nil || d.drill.Mode != "drill" {
		t.Fatalf("no drill report")
	}
	for _, v := range d.drill.VMs {
		if !v.Up || v.InstanceID == "" || !strings.HasPrefix(v.PrivateIP, "10.99.") {
			t.Errorf("drill VM %s: up %t, instance %q at %q; want up in the drill VPC (10.99.0.0/16)", v.VM, v.Up, v.InstanceID, v.PrivateIP)
		}
		if len(v.Records) > 0 {
			t.Errorf("drill VM %s made DNS records %v; the plan's drill has no zone", v.VM, v.Records)
		}
	}
	if d.drill.RTO <= 0 || len(d.drill.CriticalPath) == 0 {
		t.Errorf("drill RTO %s, critical path %v: want both", d.drill.RTO, d.drill.CriticalPath)
	}
	p := d.drillCleanup
	if !p.OK() || len(p.Instances) > 0 || len(p.Volumes) > 0 {
		t.Errorf("clean-up proof %+v: want verified with nothing remaining", p)
	}
	if want := 2 * len(d.drill.VMs); len(p.Removed) != want {
		t.Errorf("clean-up removed %v, want %d instances and volumes", p.Removed, want)
	}
	if !p.ProductionUnchanged || p.DNSChanges != 0 {
		t.Errorf("production DNS: unchanged %t, %d Route 53 changes; want untouched", p.ProductionUnchanged, p.DNSChanges)
	}
}

// checkFailover: every VM came up in production, DNS points at the new
// addresses, and every volume holds its VM's bytes.
func checkFailover(t *testing.T, d *drill) {
	if d.failover == nil {
		t.Fatalf("no failover report")
	}
	for _, v := range d.failover.VMs {
		if !v.Up || !strings.HasPrefix(v.PrivateIP, "10.0.") {
			t.Errorf("VM %s: up %t at %q; want up in the production VPC", v.VM, v.Up, v.PrivateIP)
		}
		if len(v.Records) == 0 || len(v.PreviousRecords) != len(v.Records) {
			t.Errorf("VM %s: records %v, previous %v; want each record with its on-premises value", v.VM, v.Records, v.PreviousRecords)
		}
		for _, r := range v.Records {
			if got := d.dnsFailover[r.Name+" "+r.Type]; !slices.Equal(got, []string{v.PrivateIP}) {
				t.Errorf("after the failover %s says %v, want %s", r.Name, got, v.PrivateIP)
			}
		}
	}
	if want := int64(len(d.failover.VMs)) << 30; d.verified.FailedOver != want {
		t.Errorf("compared %d bytes of volumes, want %d (one 1 GiB volume per VM)", d.verified.FailedOver, want)
	}
}

// checkFailback: the pre-seed copied the disks while the instances ran,
// the cut-over only what changed since, DNS points back on premises, and
// every vCenter disk equals its EC2 volume.
func checkFailback(t *testing.T, d *drill) {
	if d.preSeed == nil || d.cutOver == nil {
		t.Fatalf("no failback reports")
	}
	for _, v := range d.preSeed.VMs {
		if v.Downtime != 0 || v.BytesCopied == 0 {
			t.Errorf("pre-seed of %s: downtime %s, %d bytes copied; want none and some", v.VM, v.Downtime, v.BytesCopied)
		}
	}
	for _, v := range d.cutOver.VMs {
		pre, _ := d.preSeed.VM(v.VM)
		if !v.Up || v.Downtime <= 0 {
			t.Errorf("cut-over of %s: up %t, downtime %s; want up after some downtime", v.VM, v.Up, v.Downtime)
		}
		// Each EC2 write round touched 8 blocks per volume; a copied block is
		// vCenter's 1 MiB, which holds two EBS blocks.
		if v.BlocksCopied == 0 || v.BlocksCopied > 8 || v.BytesCopied >= pre.BytesCopied {
			t.Errorf("cut-over of %s copied %d blocks (%d bytes), the pre-seed %d bytes; want 1 to 8 blocks, less than the pre-seed",
				v.VM, v.BlocksCopied, v.BytesCopied, pre.BytesCopied)
		}
	}
	for _, r := range d.lab.SiteRecords {
		if got := d.dnsFailback[r.Name+" "+r.Type]; !slices.Equal(got, r.Values) {
			t.Errorf("after the failback %s says %v, want the on-premises %v", r.Name, got, r.Values)
		}
	}
	if want := int64(len(d.cutOver.VMs)) << 30; d.verified.FailedBack != want {
		t.Errorf("compared %d bytes of vCenter disks, want %d (one 1 GiB disk per VM)", d.verified.FailedBack, want)
	}
}

// checkReports: three runs, each as JSON and HTML, judged pass, the drill's
// with its clean-up proof.
func checkReports(t *testing.T, d *drill) {
	if len(d.reports) != 6 {
		t.Fatalf("reports %v, want JSON and HTML of three runs", d.reports)
	}
	kinds := map[report.Kind]bool{}
	for _, path := range d.reports {
		if !strings.HasSuffix(path, ".json") {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		r, err := report.ReadJSON(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		kinds[r.Kind] = true
		if v := r.Verdict(); v.Overall != report.Pass {
			t.Errorf("%s report: verdict %+v, errors %v; want pass", r.Kind, v, r.Errors)
		}
		if r.Kind == report.KindDrill && (r.Cleanup == nil || r.Verdict().Cleanup != report.Pass) {
			t.Errorf("drill report has clean-up %+v, want a passing proof", r.Cleanup)
		}
	}
	if len(kinds) != 3 {
		t.Errorf("report kinds %v, want drill, failover and failback", kinds)
	}
}

// TestCompareFindsDifference checks that verification fails, naming the
// offset, when a snapshot differs from its disk.
func TestCompareFindsDifference(t *testing.T) {
	ctx := t.Context()
	srv, err := awssim.New(awssim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	disk := draastest.NewDisk(3<<20+4096, blockSize)
	disk.WriteAt(bytes.Repeat([]byte{7}, 1<<20), 1<<20)
	sink, err := ebs.NewSink(ctx, srv.EBS(), disk.Size(), ebs.SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blockcopy.Copy(ctx, sink, disk, blockcopy.Options{}); err != nil {
		t.Fatal(err)
	}
	src := sourceReader(ctx, "the disk", disk)
	if err := compareBytes(disk.Size(), src, snapshotReader(srv, sink.SnapshotID())); err != nil {
		t.Fatalf("snapshot of the disk: %v", err)
	}
	disk.WriteAt([]byte{8}, 2<<20+5)
	err = compareBytes(disk.Size(), src, snapshotReader(srv, sink.SnapshotID()))
	if !errors.Is(err, draas.ErrChecksumMismatch) || !strings.Contains(err.Error(), "byte 2097157") {
		t.Errorf("compareBytes = %v, want a mismatch at byte 2097157", err)
	}
}

// TestChangeDisk checks that changeDisk changes the number of blocks it
// reports, and only those.
func TestChangeDisk(t *testing.T) {
	disk := draastest.NewDisk(64<<20, blockSize)
	disk.WriteAt(bytes.Repeat([]byte{1}, 32<<20), 0)
	before := slices.Clone(disk.Bytes())
	n, err := changeDisk(newRand(1), guestOf{disk}, 10)
	if err != nil {
		t.Fatal(err)
	}
	after := disk.Bytes()
	changed := 0
	for off := 0; off < len(after); off += blockSize {
		if !bytes.Equal(before[off:off+blockSize], after[off:off+blockSize]) {
			changed++
		}
	}
	if n != 13 || changed != n {
		t.Errorf("changeDisk reported %d blocks and changed %d, want 13 (10 %% of 128, rounded)", n, changed)
	}
}

// guestOf gives a draastest.Disk the io.ReaderAt of a guest's disk.
type guestOf struct{ *draastest.Disk }

func (g guestOf) ReadAt(p []byte, off int64) (int, error) {
	return g.Disk.ReadAt(context.Background(), p, off)
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var out bytes.Buffer
	err := run(ctx, &out, options{ReportDir: t.TempDir()})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("run with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestBadOptions(t *testing.T) {
	for _, opts := range []options{
		{ChangePercent: 150},
		{DiskMiB: -1},
		{DiskMiB: 4096},
	} {
		var out bytes.Buffer
		if err := run(t.Context(), &out, opts); !errors.Is(err, draas.ErrInvalid) {
			t.Errorf("run(%+v) = %v, want draas.ErrInvalid", opts, err)
		}
	}
	var out bytes.Buffer
	if err := run(t.Context(), &out, options{PlanFile: "no-such-plan.yaml"}); err == nil || !strings.Contains(err.Error(), "no-such-plan.yaml") {
		t.Errorf("run with a missing plan = %v, want an error naming the file", err)
	}
}
