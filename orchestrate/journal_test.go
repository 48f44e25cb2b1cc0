package orchestrate_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/orchestrate"
)

func TestResumeAfterKill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "failover.journal")
	tr := newTracker()
	var firstRun atomic.Bool
	firstRun.Store(true)
	launchStarted := make(chan struct{})
	var launchSaw, dnsSaw string
	g := mustAdd(t,
		tr.step("volume", nil, func(ctx context.Context) error {
			return orchestrate.SetOutput(ctx, "volume", "vol-0abc")
		}),
		tr.step("other-vm", nil, nil),
		tr.step("launch", []string{"volume"}, func(ctx context.Context) error {
			if firstRun.Load() {
				// The process is "killed" while the instance launches.
				close(launchStarted)
				<-ctx.Done()
				return ctx.Err()
			}
			launchSaw, _ = orchestrate.Output(ctx, "volume", "volume")
			return orchestrate.SetOutput(ctx, "instance", "i-0123")
		}),
		tr.step("dns", []string{"launch"}, func(ctx context.Context) error {
			dnsSaw, _ = orchestrate.Output(ctx, "volume", "volume")
			inst, _ := orchestrate.Output(ctx, "launch", "instance")
			dnsSaw += "/" + inst
			return nil
		}),
	)

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-launchStarted
		cancel()
	}()
	rep, err := orchestrate.Run(ctx, g, orchestrate.Options{Journal: orchestrate.NewFileJournal(path)})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, map[string]orchestrate.Status{
		"volume": orchestrate.Succeeded, "other-vm": orchestrate.Succeeded,
		"launch": orchestrate.Cancelled, "dns": orchestrate.Cancelled,
	}, statuses(rep))

	// A new process resumes with the same journal file.
	firstRun.Store(false)
	var ev events
	plan, err := orchestrate.Plan(context.Background(), g, orchestrate.Options{Journal: orchestrate.NewFileJournal(path)})
	require.NoError(t, err)
	assert.Equal(t, []string{"launch", "dns"}, plan.Order())
	rep, err = orchestrate.Run(context.Background(), g, orchestrate.Options{Journal: orchestrate.NewFileJournal(path), Events: ev.add})
	require.NoError(t, err)
	assert.Equal(t, map[string]orchestrate.Status{
		"volume": orchestrate.Resumed, "other-vm": orchestrate.Resumed,
		"launch": orchestrate.Succeeded, "dns": orchestrate.Succeeded,
	}, statuses(rep))
	assert.Equal(t, 1, tr.calls("volume"), "finished steps are not run again")
	assert.Equal(t, 1, tr.calls("other-vm"))
	assert.Equal(t, 2, tr.calls("launch"))
	assert.Equal(t, 1, tr.calls("dns"))
	assert.Equal(t, "vol-0abc", launchSaw, "outputs of resumed steps reach their dependents")
	assert.Equal(t, "vol-0abc/i-0123", dnsSaw)
	assert.Equal(t, []orchestrate.EventKind{orchestrate.EventResumed}, ev.kinds("volume"))
	v, _ := rep.Step("volume")
	assert.Equal(t, map[string]string{"volume": "vol-0abc"}, v.Outputs)
	assert.False(t, v.Start.IsZero())

	// A third run has nothing left to do.
	rep, err = orchestrate.Run(context.Background(), g, orchestrate.Options{Journal: orchestrate.NewFileJournal(path)})
	require.NoError(t, err)
	for _, s := range rep.Steps {
		assert.Equal(t, orchestrate.Resumed, s.Status, s.ID)
	}
	assert.Equal(t, 2, tr.calls("launch"))
}

func TestFileJournalTornWrite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "j")
	j := orchestrate.NewFileJournal(path)
	entries, err := j.Load(ctx)
	require.NoError(t, err)
	assert.Empty(t, entries)

	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	require.NoError(t, j.Append(ctx, orchestrate.Entry{Step: "a", Start: now, End: now.Add(time.Second), Attempts: 1, Outputs: map[string]string{"k": "v"}}))
	// A crash in the middle of the next append leaves half a line.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"step":"b","sta`)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	j = orchestrate.NewFileJournal(path)
	entries, err = j.Load(ctx)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "a", entries[0].Step)
	assert.Equal(t, map[string]string{"k": "v"}, entries[0].Outputs)
	assert.True(t, entries[0].End.Equal(now.Add(time.Second)))

	require.NoError(t, j.Append(ctx, orchestrate.Entry{Step: "c", Attempts: 2}))
	entries, err = j.Load(ctx)
	require.NoError(t, err)
	require.Len(t, entries, 2)
	assert.Equal(t, "c", entries[1].Step)

	// Corruption in the middle is reported, not skipped.
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, append([]byte("garbage\n"), data...), 0o644))
	_, err = j.Load(ctx)
	assert.ErrorContains(t, err, "line 1 is corrupt")
}

// failingJournal fails every Append.
type failingJournal struct{}

func (failingJournal) Load(context.Context) ([]orchestrate.Entry, error) { return nil, nil }
func (failingJournal) Append(context.Context, orchestrate.Entry) error {
	return errors.New("disk full")
}

func TestJournalFailureFailsStep(t *testing.T) {
	tr := newTracker()
	g := mustAdd(t, tr.step("a", nil, nil), tr.step("b", []string{"a"}, nil))
	rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Journal: failingJournal{}})
	require.Error(t, err)
	assert.ErrorContains(t, err, `record step "a" in journal: disk full`)
	assert.Equal(t, orchestrate.Failed, rep.Steps[0].Status)
	assert.Equal(t, orchestrate.Skipped, rep.Steps[1].Status, "no dependent starts before its dependency is recorded")
	assert.Zero(t, tr.calls("b"))
}

func TestRollbackIsJournaled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	tr := newTracker()
	var fail atomic.Bool
	fail.Store(true)
	g := mustAdd(t,
		tr.step("a", nil, nil),
		tr.step("keep", nil, nil), // no dependency on a failure, but rollback undoes it too
		tr.step("b", []string{"a"}, func(context.Context) error {
			if fail.Load() {
				return errBoom
			}
			return nil
		}),
	)
	keep := g // same graph
	_, err := orchestrate.Run(context.Background(), keep, orchestrate.Options{Journal: orchestrate.NewFileJournal(path), Rollback: true})
	require.ErrorIs(t, err, errBoom)
	assert.ElementsMatch(t, []string{"a", "keep"}, tr.undos)

	// Undone steps run again on resume.
	fail.Store(false)
	rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Journal: orchestrate.NewFileJournal(path)})
	require.NoError(t, err)
	assert.Equal(t, map[string]orchestrate.Status{
		"a": orchestrate.Succeeded, "keep": orchestrate.Succeeded, "b": orchestrate.Succeeded,
	}, statuses(rep))
	assert.Equal(t, 2, tr.calls("a"))
}

func TestRollbackUndoesResumedSteps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	var deleted string
	g := mustAdd(t,
		orchestrate.Step{ID: "volume",
			Run: func(ctx context.Context) error { return orchestrate.SetOutput(ctx, "id", "vol-1") },
			Undo: func(ctx context.Context) error {
				deleted, _ = orchestrate.Output(ctx, "volume", "id")
				return nil
			},
		},
		orchestrate.Step{ID: "launch", Deps: []string{"volume"}, Retry: noRetry, Run: func(ctx context.Context) error {
			return errBoom
		}},
	)
	// The first run stops (ContinueIndependent, no rollback) with the volume
	// made; the second one, resumed, fails again and rolls back.
	_, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Journal: orchestrate.NewFileJournal(path)})
	require.ErrorIs(t, err, errBoom)
	rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Journal: orchestrate.NewFileJournal(path), Rollback: true})
	require.ErrorIs(t, err, errBoom)
	assert.Equal(t, "vol-1", deleted, "Undo reads the outputs of the run that finished the step")
	assert.Equal(t, orchestrate.Resumed, rep.Steps[0].Status)
	assert.Equal(t, orchestrate.Succeeded, rep.Steps[0].Undo.Status)

	entries, err := orchestrate.NewFileJournal(path).Load(context.Background())
	require.NoError(t, err)
	require.Len(t, entries, 2)
	assert.True(t, entries[1].Undone)
}
