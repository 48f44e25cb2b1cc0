package draastest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/opendraas/draas"
)

// TestBackupStore checks that an implementation of draas.BackupStore meets
// its contract: a point is invisible until its Commit and absent after its
// Abort, Points lists committed points oldest first, OpenDisk reads back
// what was written and fails with draas.ErrNotFound for unknown names, a
// sink from DiskOnBase on a VM's second point starts from the first point's
// disk (so writing only the changed extents gives the new disk), and the
// source of the second point reports (at least) the changed blocks since the
// first when it is a draas.ChangeTracker. open returns an empty store; the
// suite uses VM names "vm-a" and "vm-b".
//
// The [BackupStore] fake runs it, and so does the S3 store in aws/s3.
func TestBackupStore(t *testing.T, open func(t *testing.T) draas.BackupStore) {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)

	t.Run("Empty", func(t *testing.T) {
		s := open(t)
		pts, err := s.Points(ctx, "vm-a")
		if err != nil || len(pts) != 0 {
			t.Fatalf("Points of an unknown VM = %v, %v; want none and no error", pts, err)
		}
		if _, err := s.OpenDisk(ctx, "vm-a", "nope", "os"); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("OpenDisk of an unknown point: %v; want ErrNotFound", err)
		}
		if _, err := s.BeginPoint(ctx, "vm-a", nil, t0); !errors.Is(err, draas.ErrInvalid) {
			t.Errorf("BeginPoint without disks: %v; want ErrInvalid", err)
		}
	})

	t.Run("CommitThenIncremental", func(t *testing.T) {
		s := open(t)
		os1 := suiteDisk(1<<20+4096, 1)
		data1 := suiteDisk(2<<20, 2)
		w := beginAndWrite(t, s, "vm-a", t0, map[string]*Disk{"os": os1, "data": data1}, nil)
		if pts, err := s.Points(ctx, "vm-a"); err != nil || len(pts) != 0 {
			t.Fatalf("before Commit Points = %v, %v; want none", pts, err)
		}
		if _, err := s.OpenDisk(ctx, "vm-a", w.ID(), "os"); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("OpenDisk of an uncommitted point: %v; want ErrNotFound", err)
		}
		if err := w.Commit(ctx); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		pts, err := s.Points(ctx, "vm-a")
		if err != nil || len(pts) != 1 || pts[0].ID != w.ID() || len(pts[0].Disks) != 2 {
			t.Fatalf("after Commit Points = %+v, %v; want the point with 2 disks", pts, err)
		}
		if pts, _ := s.Points(ctx, "vm-b"); len(pts) != 0 {
			t.Errorf("another VM's Points = %v; want none", pts)
		}
		checkPointDisk(t, s, "vm-a", w.ID(), "os", os1.Bytes())
		checkPointDisk(t, s, "vm-a", w.ID(), "data", data1.Bytes())
		if _, err := s.OpenDisk(ctx, "vm-a", w.ID(), "nope"); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("OpenDisk of an unknown disk: %v; want ErrNotFound", err)
		}

		// The second point writes only what changed, on the first's disks.
		os2 := os1.Clone()
		os2.WriteAt(bytes.Repeat([]byte{9}, 4096), 512<<10)
		os2.WriteAt(make([]byte, 4096), 0) // data zeroed
		data2 := data1.Clone()
		changes := map[string][]draas.Extent{
			"os":   {{Offset: 0, Length: 4096}, {Offset: 512 << 10, Length: 4096}},
			"data": {},
		}
		w2 := beginAndWrite(t, s, "vm-a", t0.Add(time.Hour), map[string]*Disk{"os": os2, "data": data2}, changes)
		if err := w2.Commit(ctx); err != nil {
			t.Fatalf("Commit of the second point: %v", err)
		}
		pts, err = s.Points(ctx, "vm-a")
		if err != nil || len(pts) != 2 || pts[0].ID != w.ID() || pts[1].ID != w2.ID() || pts[0].ID >= pts[1].ID {
			t.Fatalf("Points = %+v, %v; want both, oldest first, IDs in time order", pts, err)
		}
		checkPointDisk(t, s, "vm-a", w2.ID(), "os", os2.Bytes())
		checkPointDisk(t, s, "vm-a", w2.ID(), "data", data2.Bytes())
		checkPointDisk(t, s, "vm-a", w.ID(), "os", os1.Bytes()) // unchanged

		src, err := s.OpenDisk(ctx, "vm-a", w2.ID(), "os")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := draas.As[draas.ChangeTracker](src); ok {
			exts, err := draas.ChangedExtents(ctx, src, w.ID())
			if err != nil {
				t.Fatalf("ChangedExtents since the first point: %v", err)
			}
			for _, c := range changes["os"] {
				if !covers(exts, c) {
					t.Errorf("ChangedExtents = %v does not cover the change %v", exts, c)
				}
			}
			if _, err := draas.ChangedExtents(ctx, src, "unknown-point"); !errors.Is(err, draas.ErrNotFound) {
				t.Errorf("ChangedExtents since an unknown point: %v; want ErrNotFound", err)
			}
		}
	})

	t.Run("Abort", func(t *testing.T) {
		s := open(t)
		w := beginAndWrite(t, s, "vm-b", t0, map[string]*Disk{"os": suiteDisk(1<<20, 3)}, nil)
		if err := w.Abort(ctx); err != nil {
			t.Fatalf("Abort: %v", err)
		}
		if pts, err := s.Points(ctx, "vm-b"); err != nil || len(pts) != 0 {
			t.Errorf("after Abort Points = %v, %v; want none", pts, err)
		}
		if err := w.Commit(ctx); err == nil {
			t.Error("Commit after Abort succeeded")
		}
	})
}

// suiteDisk returns a disk with data in some of its 64 KiB stretches.
func suiteDisk(size int64, seed byte) *Disk {
	d := NewDisk(size, 0)
	for off := int64(0); off < size; off += 192 << 10 {
		d.WriteAt(bytes.Repeat([]byte{seed, byte(off >> 16)}, 32<<10)[:min(64<<10, size-off)], off)
	}
	return d
}

// beginAndWrite begins a point of vm with the disks and writes each through
// DiskOnBase: everything, or with changes the given extents of each disk
// (the sink must then start from the previous point's disk).
func beginAndWrite(t *testing.T, s draas.BackupStore, vm string, at time.Time, disks map[string]*Disk, changes map[string][]draas.Extent) draas.PointWriter {
	t.Helper()
	ctx := context.Background()
	var spec []draas.Disk
	for _, name := range []string{"os", "data"} {
		if d, ok := disks[name]; ok {
			spec = append(spec, draas.Disk{Name: name, Size: d.Size()})
		}
	}
	w, err := s.BeginPoint(ctx, vm, spec, at)
	if err != nil {
		t.Fatalf("BeginPoint: %v", err)
	}
	for _, d := range spec {
		sink, err := w.DiskOnBase(ctx, d.Name)
		if err != nil {
			t.Fatalf("DiskOnBase(%s): %v", d.Name, err)
		}
		exts, incremental := changes[d.Name]
		if incremental && !draas.NeedsZeroWrites(sink) {
			t.Fatalf("DiskOnBase(%s) on a VM's second point does not start from the first (NeedsZeroWrites is false)", d.Name)
		}
		if err := writeExtents(ctx, sink, disks[d.Name], exts, incremental); err != nil {
			t.Fatalf("write disk %s: %v", d.Name, err)
		}
	}
	return w
}

// writeExtents writes the blocks of src that meet exts (all of src's
// blocks when !only) into sink and commits it.
func writeExtents(ctx context.Context, sink draas.VolumeSink, src *Disk, exts []draas.Extent, only bool) error {
	bs := int64(sink.BlockSize())
	for off := int64(0); off < src.Size(); off += bs {
		blk := draas.Extent{Offset: off, Length: min(bs, src.Size()-off)}
		if only && !overlaps(exts, blk) {
			continue
		}
		p := make([]byte, blk.Length)
		if _, err := src.ReadAt(ctx, p, off); err != nil {
			return err
		}
		if !only && !draas.NeedsZeroWrites(sink) && draas.IsZero(p) {
			continue
		}
		if err := sink.WriteBlock(ctx, draas.Block{Index: off / bs, Offset: off, Data: p, Checksum: sha256.Sum256(p)}); err != nil {
			return err
		}
	}
	return sink.Commit(ctx)
}

func overlaps(exts []draas.Extent, e draas.Extent) bool {
	for _, x := range exts {
		if x.Offset < e.End() && e.Offset < x.End() {
			return true
		}
	}
	return false
}

func covers(exts []draas.Extent, e draas.Extent) bool {
	for _, x := range draas.NormalizeExtents(exts) {
		if x.Offset <= e.Offset && e.End() <= x.End() {
			return true
		}
	}
	return false
}

func checkPointDisk(t *testing.T, s draas.BackupReader, vm, point, disk string, want []byte) {
	t.Helper()
	src, err := s.OpenDisk(context.Background(), vm, point, disk)
	if err != nil {
		t.Fatalf("OpenDisk(%s, %s, %s): %v", vm, point, disk, err)
	}
	if src.Size() != int64(len(want)) {
		t.Fatalf("disk %s of point %s has size %d, want %d", disk, point, src.Size(), len(want))
	}
	if got := ReadAll(t, src); !bytes.Equal(got, want) {
		t.Errorf("disk %s of point %s does not read back what was written", disk, point)
	}
}

// TestCopyStore checks that an implementation of draas.CopyStore meets its
// contract: a new copy is listed at once, pending and not complete; its
// committed sink makes it completed; MarkComplete marks the set complete
// (and may move it to a newer point), so that draas.LatestComplete finds
// it; a copy on a parent needs only the changed blocks; a pending copy
// resumes from its sink's ResumeState into the same snapshot; DeleteCopy
// removes a copy and ignores a missing one. open returns an empty store;
// the suite uses plan "suite" and VMs "vm-a" and "vm-b". Completion may be
// asynchronous: the suite waits up to a minute for a committed copy to be
// listed as draas.CopyCompleted.
//
// The [CopyStore] fake runs it, and so does the EBS copy store in aws/ebs.
func TestCopyStore(t *testing.T, open func(t *testing.T) draas.CopyStore) {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	req := func(vm, disk string, idx int, point string, at time.Time, size int64, parent, token string) draas.CopyRequest {
		return draas.CopyRequest{Plan: "suite", VM: vm, Disk: disk, DiskIndex: idx, RecoveryPoint: point, PointTime: at, Size: size, Parent: parent, ClientToken: token}
	}

	t.Run("Lifecycle", func(t *testing.T) {
		s := open(t)
		const size = 2 << 20
		content := suiteDisk(size, 5)
		var set []draas.DRCopy
		for i, disk := range []string{"os", "data"} {
			sink, err := s.NewCopy(ctx, req("vm-a", disk, i, "p1", t0, size, "", "suite-"+disk+"-p1"))
			if err != nil {
				t.Fatalf("NewCopy(%s): %v", disk, err)
			}
			c := findCopy(t, s, "vm-a", sink.SnapshotID())
			if c.Complete || c.State == draas.CopyCompleted {
				t.Errorf("a new copy is %s, complete %t; want pending and not complete", c.State, c.Complete)
			}
			if c.Disk != disk || c.DiskIndex != i || c.RecoveryPoint != "p1" || c.Plan != "suite" {
				t.Errorf("the new copy is listed as %+v; want the request's plan, disk, index and point", c)
			}
			if err := writeExtents(ctx, sink, content, nil, false); err != nil {
				t.Fatalf("write and commit %s: %v", disk, err)
			}
			c = waitCompleted(t, s, "vm-a", sink.SnapshotID())
			if c.Complete {
				t.Error("a copy is complete before MarkComplete")
			}
			set = append(set, c)
		}
		if _, ok := draas.LatestComplete(listCopies(t, s, "vm-a")); ok {
			t.Error("a set counts before MarkComplete")
		}
		// Mark the set complete, moved to a newer point of the same content.
		t1 := t0.Add(time.Hour)
		for i := range set {
			set[i].RecoveryPoint, set[i].PointTime = "p2", t1
		}
		if err := s.MarkComplete(ctx, set); err != nil {
			t.Fatalf("MarkComplete: %v", err)
		}
		got, ok := draas.LatestComplete(listCopies(t, s, "vm-a"))
		if !ok || got.RecoveryPoint != "p2" || !got.PointTime.Equal(t1) || len(got.Copies) != 2 {
			t.Fatalf("LatestComplete after MarkComplete = %+v, %t; want the set at p2", got, ok)
		}
		if other := listCopies(t, s, "vm-b"); len(other) != 0 {
			t.Errorf("another VM lists %v", other)
		}

		// An incremental copy on the os copy writes one block.
		sink, err := s.NewCopy(ctx, req("vm-a", "os", 0, "p3", t1.Add(time.Hour), size, set[0].SnapshotID, "suite-os-p3"))
		if err != nil {
			t.Fatalf("NewCopy on a parent: %v", err)
		}
		if !draas.NeedsZeroWrites(sink) {
			t.Error("a copy on a parent does not need zero writes: it would not start from the parent")
		}
		changed := content.Clone()
		changed.WriteAt(make([]byte, 4096), 0)
		if err := writeExtents(ctx, sink, changed, []draas.Extent{{Offset: 0, Length: 4096}}, true); err != nil {
			t.Fatalf("write the change: %v", err)
		}
		waitCompleted(t, s, "vm-a", sink.SnapshotID())
		if !committedHolds(t, sink, changed.Bytes()) {
			t.Error("the incremental copy does not hold the parent's content with the change")
		}

		if err := s.DeleteCopy(ctx, sink.SnapshotID()); err != nil {
			t.Fatalf("DeleteCopy: %v", err)
		}
		for _, c := range listCopies(t, s, "vm-a") {
			if c.ID() == sink.SnapshotID() {
				t.Errorf("copy %s is listed after DeleteCopy", c.ID())
			}
		}
		if err := s.DeleteCopy(ctx, sink.SnapshotID()); err != nil {
			t.Errorf("deleting a missing copy: %v; want nil", err)
		}
	})

	t.Run("Resume", func(t *testing.T) {
		s := open(t)
		const size = 2 << 20
		content := suiteDisk(size, 6)
		r := req("vm-b", "os", 0, "p1", t0, size, "", "suite-resume")
		sink, err := s.NewCopy(ctx, r)
		if err != nil {
			t.Fatalf("NewCopy: %v", err)
		}
		rs, ok := draas.As[draas.ResumableSink](sink)
		if !ok {
			t.Skip("the store's sinks are not resumable")
		}
		// Write the first block, then "die" and resume from the state.
		bs := int64(sink.BlockSize())
		p := make([]byte, bs)
		if _, err := content.ReadAt(ctx, p, 0); err != nil {
			t.Fatal(err)
		}
		if err := sink.WriteBlock(ctx, draas.Block{Index: 0, Offset: 0, Data: p, Checksum: sha256.Sum256(p)}); err != nil {
			t.Fatalf("WriteBlock: %v", err)
		}
		if f, ok := draas.As[draas.Flusher](sink); ok {
			if err := f.Flush(ctx); err != nil {
				t.Fatalf("Flush: %v", err)
			}
		}
		state, err := rs.ResumeState()
		if err != nil {
			t.Fatalf("ResumeState: %v", err)
		}
		resumed, err := s.ResumeCopy(ctx, r, state)
		if err != nil {
			t.Fatalf("ResumeCopy: %v", err)
		}
		if resumed.SnapshotID() != sink.SnapshotID() {
			t.Errorf("ResumeCopy continues %s, want %s", resumed.SnapshotID(), sink.SnapshotID())
		}
		if err := writeExtents(ctx, resumed, content, []draas.Extent{{Offset: bs, Length: size - bs}}, true); err != nil {
			t.Fatalf("write the rest and commit: %v", err)
		}
		waitCompleted(t, s, "vm-b", sink.SnapshotID())
		if !committedHolds(t, resumed, content.Bytes()) {
			t.Error("the resumed copy does not hold the whole disk")
		}
	})
}

func listCopies(t *testing.T, s draas.CopyStore, vm string) []draas.DRCopy {
	t.Helper()
	cs, err := s.Copies(context.Background(), "suite", vm)
	if err != nil {
		t.Fatalf("Copies(%s): %v", vm, err)
	}
	return cs
}

func findCopy(t *testing.T, s draas.CopyStore, vm, id string) draas.DRCopy {
	t.Helper()
	for _, c := range listCopies(t, s, vm) {
		if c.ID() == id {
			return c
		}
	}
	t.Fatalf("copy %s of %s is not listed", id, vm)
	return draas.DRCopy{}
}

// waitCompleted waits for copy id to be listed as completed.
func waitCompleted(t *testing.T, s draas.CopyStore, vm, id string) draas.DRCopy {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		c := findCopy(t, s, vm, id)
		if c.State == draas.CopyCompleted {
			return c
		}
		if c.State == draas.CopyError || time.Now().After(deadline) {
			t.Fatalf("copy %s is %s after its sink's Commit; want %s", id, c.State, draas.CopyCompleted)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readN reads the first n bytes of src (a snapshot may be larger than the
// disk it holds: EBS sizes are whole GiB).
// committedHolds reports whether the committed copy of sink holds want; a
// sink that cannot be read back (not a draas.VerifiableSink) holds it.
func committedHolds(t *testing.T, sink draas.VolumeSink, want []byte) bool {
	t.Helper()
	v, ok := draas.As[draas.VerifiableSink](sink)
	if !ok {
		return true
	}
	src, err := v.Committed(t.Context())
	if err != nil {
		t.Fatalf("Committed: %v", err)
	}
	return bytes.Equal(readN(t, src, int64(len(want))), want)
}

func readN(t *testing.T, src draas.BlockSource, n int64) []byte {
	t.Helper()
	if c, ok := src.(interface{ Close() error }); ok {
		defer c.Close()
	}
	p := make([]byte, n)
	if _, err := src.ReadAt(context.Background(), p, 0); err != nil {
		t.Fatalf("read back %d bytes: %v", n, err)
	}
	return p
}
