package orchestrate_test

import (
	"context"
	"encoding/json"
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

// The keys of the steps' outputs in these tests.
var (
	volumeKey   = orchestrate.NewKey[string]("volume")
	instanceKey = orchestrate.NewKey[string]("instance")
	idKey       = orchestrate.NewKey[string]("id")
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
			return orchestrate.Put(ctx, volumeKey, "vol-0abc")
		}),
		tr.step("other-vm", nil, nil),
		tr.step("launch", []string{"volume"}, func(ctx context.Context) error {
			if firstRun.Load() {
				// The process is "killed" while the instance launches.
				close(launchStarted)
				<-ctx.Done()
				return ctx.Err()
			}
			launchSaw, _ = orchestrate.Get(ctx, "volume", volumeKey)
			return orchestrate.Put(ctx, instanceKey, "i-0123")
		}),
		tr.step("dns", []string{"launch"}, func(ctx context.Context) error {
			dnsSaw, _ = orchestrate.Get(ctx, "volume", volumeKey)
			inst, _ := orchestrate.Get(ctx, "launch", instanceKey)
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
	assert.Equal(t, orchestrate.Outputs{"volume": json.RawMessage(`"vol-0abc"`)}, v.Outputs)
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
	require.NoError(t, j.Append(ctx, orchestrate.Entry{Step: "a", Start: now, End: now.Add(time.Second), Attempts: 1, Outputs: orchestrate.Outputs{"k": json.RawMessage(`"v"`)}}))
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
	assert.Equal(t, orchestrate.Outputs{"k": json.RawMessage(`"v"`)}, entries[0].Outputs)
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
			Run: func(ctx context.Context) error { return orchestrate.Put(ctx, idKey, "vol-1") },
			Undo: func(ctx context.Context) error {
				deleted, _ = orchestrate.Get(ctx, "volume", idKey)
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

// TestTypedOutputsSurviveResume records structured outputs in a FileJournal
// and reads them in a later run, through a new journal on the same file.
func TestTypedOutputsSurviveResume(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	type volumes struct {
		IDs  []string      `json:"ids"`
		Took time.Duration `json:"took"`
	}
	volumesKey := orchestrate.NewKey[volumes]("volumes")
	countKey := orchestrate.NewKey[int64]("bytes")
	fail := true
	var got volumes
	var n int64
	g := mustAdd(t,
		orchestrate.Step{ID: "volumes", Run: func(ctx context.Context) error {
			if err := orchestrate.Put(ctx, countKey, 1<<40); err != nil {
				return err
			}
			return orchestrate.Put(ctx, volumesKey, volumes{IDs: []string{"vol-1", "vol-2"}, Took: time.Second})
		}},
		orchestrate.Step{ID: "launch", Deps: []string{"volumes"}, Retry: noRetry, Run: func(ctx context.Context) error {
			if fail {
				return errBoom
			}
			var err error
			if got, err = orchestrate.Get(ctx, "volumes", volumesKey); err != nil {
				return err
			}
			n, err = orchestrate.Get(ctx, "volumes", countKey)
			return err
		}},
	)
	_, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Journal: orchestrate.NewFileJournal(path)})
	require.ErrorIs(t, err, errBoom)
	fail = false
	rep, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Journal: orchestrate.NewFileJournal(path)})
	require.NoError(t, err)
	assert.Equal(t, orchestrate.Resumed, rep.Steps[0].Status)
	assert.Equal(t, volumes{IDs: []string{"vol-1", "vol-2"}, Took: time.Second}, got, "a resumed step's outputs reach its dependents")
	assert.Equal(t, int64(1<<40), n)
	v, ok, err := volumesKey.From(rep.Steps[0].Outputs)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, got, v, "the report holds the resumed step's outputs")
}

// TestJournalReadsUntypedEntries resumes from a journal written when outputs
// were plain strings: they read as JSON strings.
func TestJournalReadsUntypedEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	require.NoError(t, os.WriteFile(path, []byte(`{"step":"run","start":"2026-01-01T00:00:00Z","end":"2026-01-01T00:00:01Z","attempts":1,"outputs":{"id":"0a1b2c"}}`+"\n"), 0o644))
	var id string
	g := mustAdd(t,
		orchestrate.Step{ID: "run", Run: func(ctx context.Context) error { return errBoom }},
		orchestrate.Step{ID: "next", Deps: []string{"run"}, Run: func(ctx context.Context) error {
			var err error
			id, err = orchestrate.Get(ctx, "run", idKey)
			return err
		}},
	)
	_, err := orchestrate.Run(context.Background(), g, orchestrate.Options{Journal: orchestrate.NewFileJournal(path)})
	require.NoError(t, err)
	assert.Equal(t, "0a1b2c", id)
}
