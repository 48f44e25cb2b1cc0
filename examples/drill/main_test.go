package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/replicate"
)

// smallApp is a two-VM application small enough for -short.
func smallApp() []vmSpec {
	return []vmSpec{
		{Name: "db", Role: "database", Disks: []diskSpec{{"os", 8, 60}, {"data", 16, 70}}},
		{Name: "web", Role: "web server", Disks: []diskSpec{{"os", 8, 50}}},
	}
}

// TestDemo runs the drill exactly as `go run ./examples/drill` does (with a
// smaller application under -short) and checks its report and the figures
// behind it.
func TestDemo(t *testing.T) {
	var opts options
	if testing.Short() {
		opts.App = smallApp()
	}
	var out bytes.Buffer
	d, err := runDrill(context.Background(), &out, opts)
	if err != nil {
		t.Fatalf("drill failed: %v\n%s", err, out.String())
	}
	report := out.String()
	t.Logf("\n%s", report)
	for _, want := range []string{
		"start the AWS simulator",
		"back up every VM into the S3 backup store",
		"new chunks uploaded",
		"full DR copies",
		"incremental DR copies",
		": full, sent",
		": incremental, sent",
		"saving:",
		"compared: identical",
		"RPO",
		"replication status",
		"the incremental replication sent",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(report, "FAILED") || strings.Contains(report, "NOT OK") {
		t.Errorf("a step failed or a VM misses its RPO")
	}

	if len(d.rounds) != 2 {
		t.Fatalf("%d replication rounds, want 2", len(d.rounds))
	}
	full, incr := d.rounds[0], d.rounds[1]
	var dataBlocks int64
	for i, v := range d.vms {
		if a := full.results[i].Action; a != replicate.ActionFull {
			t.Errorf("%s: first run did %s, want full", v.spec.Name, a)
		}
		if a := incr.results[i].Action; a != replicate.ActionIncremental {
			t.Errorf("%s: second run did %s, want incremental", v.spec.Name, a)
		}
		if n := len(incr.results[i].Deleted); n != len(v.disks) {
			t.Errorf("%s: second run deleted %d old copies, want %d (one per disk)", v.spec.Name, n, len(v.disks))
		}
		for _, disk := range v.disks {
			dataBlocks += int64(disk.StoredBlocks())
		}
	}
	// The first full copy sent the blocks with data of the first backup;
	// the incremental one exactly the changed blocks.
	if got := sent(incr); got != int64(d.changed) {
		t.Errorf("incremental run sent %d blocks, want the %d changed", got, d.changed)
	}
	if got := int64(incr.puts); got != int64(d.changed) {
		t.Errorf("incremental run made %d PutSnapshotBlock calls, want %d", got, d.changed)
	}
	if !testing.Short() {
		// The standard application: 1 % of the blocks changed is at most
		// 2 % of what the full copy sent.
		if ratio := float64(sent(incr)) / float64(sent(full)); ratio > 0.02 {
			t.Errorf("incremental run sent %d blocks, %.1f %% of the full run's %d; want at most 2 %%", sent(incr), 100*ratio, sent(full))
		}
	}
	// Every byte of every disk was compared, after each run.
	var size int64
	var disks int
	for _, v := range d.vms {
		for _, disk := range v.disks {
			size += disk.Size()
			disks++
		}
	}
	if d.verified != 2*size || d.snapshots != 2*disks {
		t.Errorf("verified %d bytes in %d snapshots, want %d bytes in %d", d.verified, d.snapshots, 2*size, 2*disks)
	}
	for _, s := range d.status {
		if !s.OK || s.Copies != 1 || s.Pending != 0 {
			t.Errorf("status %+v: want OK with one complete copy and nothing pending", s)
		}
	}
}

// TestCompareSnapshotFindsDifference checks that verification fails, naming
// the offset, when a snapshot differs from its disk.
func TestCompareSnapshotFindsDifference(t *testing.T) {
	ctx := context.Background()
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
	if err := compareSnapshot(ctx, srv, sink.SnapshotID(), disk); err != nil {
		t.Fatalf("snapshot of the disk: %v", err)
	}
	disk.WriteAt([]byte{8}, 2<<20+5)
	err = compareSnapshot(ctx, srv, sink.SnapshotID(), disk)
	if !errors.Is(err, draas.ErrChecksumMismatch) || !strings.Contains(err.Error(), "byte 2097157") {
		t.Errorf("compareSnapshot = %v, want a mismatch at byte 2097157", err)
	}
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	err := run(ctx, &out, options{App: smallApp()})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("run with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestBadOptions(t *testing.T) {
	for _, opts := range []options{
		{ChangePercent: 150},
		{App: []vmSpec{{Name: "db"}}},
		{App: []vmSpec{{Name: "db", Disks: []diskSpec{{"os", 0, 50}}}}},
	} {
		var out bytes.Buffer
		if err := run(context.Background(), &out, opts); !errors.Is(err, draas.ErrInvalid) {
			t.Errorf("run(%+v) = %v, want draas.ErrInvalid", opts, err)
		}
	}
}
