package failover_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/orchestrate"
)

// liveVolumes returns the IDs of the volumes that are not deleted (or
// being deleted), and those of them that are available.
func liveVolumes(e *env) (live, available []string) {
	for _, v := range e.srv.Volumes() {
		switch v.State {
		case "deleted", "deleting":
		case "available":
			available = append(available, v.ID)
			live = append(live, v.ID)
		default:
			live = append(live, v.ID)
		}
	}
	return live, available
}

// TestRerunAfterCompletedFailover: a failover run again after it completed
// makes nothing: with its journal, it is a no-op that returns the same
// report; without it (journal gone or moved aside), it is refused before
// any volume is made, naming the running instances and the run that
// launched them.
func TestRerunAfterCompletedFailover(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	opts := e.opts
	opts.Journal = orchestrate.NewFileJournal(filepath.Join(t.TempDir(), "failover.journal"))
	first, err := e.runner(opts).Run(ctx, e.plan, failover.Failover)
	require.NoError(t, err)
	volumesBefore, _ := liveVolumes(e)
	creates, runs := e.srv.Calls("CreateVolume"), e.srv.Calls("RunInstances")

	again, err := e.runner(opts).Run(ctx, e.plan, failover.Failover)
	require.NoError(t, err, "a finished run's journal resumes as a no-op")
	assert.Equal(t, first.RunID, again.RunID)
	for _, v := range again.VMs {
		assert.True(t, v.Up, v.VM)
		want, _ := first.VM(v.VM)
		assert.Equal(t, want.InstanceID, v.InstanceID, v.VM)
		for _, s := range v.Steps {
			assert.Equal(t, orchestrate.Resumed, s.Status, "%s/%s", v.VM, s.Name)
		}
	}

	opts.Journal = nil
	rep, err := e.runner(opts).Run(ctx, e.plan, failover.Failover)
	require.ErrorIs(t, err, failover.ErrAlreadyFailedOver)
	require.ErrorIs(t, err, draas.ErrConflict)
	assert.Nil(t, rep)
	var done *failover.AlreadyFailedOverError
	require.True(t, errors.As(err, &done))
	assert.Equal(t, []string{first.RunID}, done.RunIDs())
	require.Len(t, done.Instances, 3)
	for _, in := range done.Instances {
		want, _ := first.VM(in.VM)
		assert.Equal(t, want.InstanceID, in.InstanceID, in.VM)
		assert.Contains(t, err.Error(), "VM "+in.VM+" runs on instance "+in.InstanceID)
	}

	// Neither rerun made anything.
	assert.Equal(t, creates, e.srv.Calls("CreateVolume"))
	assert.Equal(t, runs, e.srv.Calls("RunInstances"))
	volumesAfter, available := liveVolumes(e)
	assert.Equal(t, volumesBefore, volumesAfter)
	assert.Empty(t, available, "no available volume")
	assert.Len(t, instancesOf(e.srv), 3)

	// A drill is not a failover: it still runs beside it.
	drill, err := e.runner(e.opts).Run(ctx, e.plan, failover.Drill)
	require.NoError(t, err)
	require.NoError(t, e.runner(e.opts).Cleanup(ctx, drill))
}

// TestRunSweepsVolumesItNoLongerUses: a volume tagged with the run and a
// VM, available and not in the report (what a launch cut short between
// detaching the image's root volume and deleting it leaves) is deleted at
// the end of the run, and the report says so.
func TestRunSweepsVolumesItNoLongerUses(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	snaps := e.srv.Snapshots()
	require.NotEmpty(t, snaps)
	var leaked string
	opts := e.opts
	journal := orchestrate.NewFileJournal(filepath.Join(t.TempDir(), "failover.journal"))
	opts.Journal = journal
	opts.Events = func(ev orchestrate.Event) {
		if ev.Kind != orchestrate.EventSucceeded || ev.Step != "db/launch" {
			return
		}
		runID, err := failover.JournalRunID(ctx, journal)
		require.NoError(t, err)
		leaked, err = e.launcher.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: snaps[0].ID,
			Tags: map[string]string{draas.TagPlan: "shop", draas.TagVM: "db", draas.TagRole: "failover", failover.TagRun: runID}})
		require.NoError(t, err)
	}
	// Another run's volume, and a volume of no run, are not this run's.
	other, err := e.launcher.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: snaps[0].ID,
		Tags: map[string]string{draas.TagPlan: "shop", draas.TagVM: "db", draas.TagRole: "failover", failover.TagRun: "another"}})
	require.NoError(t, err)
	rep, err := e.runner(opts).Run(ctx, e.plan, failover.Failover)
	require.NoError(t, err)
	require.NotEmpty(t, leaked)
	db, _ := rep.VM("db")
	assert.Equal(t, []string{leaked}, db.RemovedVolumes)
	assert.Empty(t, db.Leftover)
	_, available := liveVolumes(e)
	assert.Equal(t, []string{other}, available, "only the other run's volume is left")
}
