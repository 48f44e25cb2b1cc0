package draas_test

import (
	"testing"
	"time"

	"github.com/opendraas/draas"
)

func TestCopySets(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	done := func(point string, at time.Time, disk string, idx int, id string) draas.DRCopy {
		return draas.DRCopy{VM: "db", RecoveryPoint: point, PointTime: at, Disk: disk, DiskIndex: idx, SnapshotID: id, State: draas.CopyCompleted, Complete: true}
	}
	p1a := done("p1", t0, "os", 0, "snap-1")
	p1b := done("p1", t0, "data", 1, "snap-2")
	p2a := done("p2", t0.Add(time.Hour), "os", 0, "snap-3")
	p2b := done("p2", t0.Add(time.Hour), "data", 1, "snap-4")
	pending := p2b
	pending.SnapshotID, pending.State, pending.Complete = "snap-5", draas.CopyPending, false
	writing := draas.DRCopy{VM: "db", RecoveryPoint: "p2", PointTime: p2a.PointTime, Disk: "data", DiskIndex: 1, VolumeID: "vol-1", State: draas.CopyWriting}
	unmarked := p2b
	unmarked.Complete = false

	for _, c := range []struct {
		name      string
		copies    []draas.DRCopy
		wantSets  int
		wantPoint string   // of LatestComplete, "" for none
		wantIDs   []string // its snapshots in disk order
	}{
		{"none", nil, 0, "", nil},
		{"newest complete", []draas.DRCopy{p1a, p1b, p2b, p2a}, 2, "p2", []string{"snap-3", "snap-4"}},
		{"newest incomplete: a member pending", []draas.DRCopy{p1b, p1a, p2a, pending}, 2, "p1", []string{"snap-1", "snap-2"}},
		{"newest incomplete: a member not marked", []draas.DRCopy{p1a, p1b, p2a, unmarked}, 2, "p1", []string{"snap-1", "snap-2"}},
		{"a complete duplicate stands, an orphan does not", []draas.DRCopy{p2a, pending, writing, p2b, p1a, p1b}, 2, "p2", []string{"snap-3", "snap-4"}},
		{"listed newest first", []draas.DRCopy{p2a, p2b, p1a, p1b}, 2, "p2", []string{"snap-3", "snap-4"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sets := draas.CopySets(c.copies)
			if len(sets) != c.wantSets {
				t.Fatalf("CopySets: %d sets, want %d", len(sets), c.wantSets)
			}
			for i := 1; i < len(sets); i++ {
				if sets[i].PointTime.Before(sets[i-1].PointTime) {
					t.Errorf("sets are not oldest first: %v", sets)
				}
			}
			got, ok := draas.LatestComplete(c.copies)
			if ok != (c.wantPoint != "") || got.RecoveryPoint != c.wantPoint {
				t.Fatalf("LatestComplete = %q, %t; want %q", got.RecoveryPoint, ok, c.wantPoint)
			}
			if ids := got.SnapshotIDs(); len(ids) != len(c.wantIDs) || (len(ids) > 0 && (ids[0] != c.wantIDs[0] || ids[1] != c.wantIDs[1])) {
				t.Errorf("snapshots %q, want %q", ids, c.wantIDs)
			}
		})
	}
	if (draas.CopySet{}).Complete() {
		t.Error("an empty set is complete")
	}
	if d, ok := (draas.CopySet{Copies: []draas.DRCopy{p1a, p1b}}).Disk("data"); !ok || d.SnapshotID != "snap-2" {
		t.Errorf("Disk(data) = %v, %t", d, ok)
	}
}
