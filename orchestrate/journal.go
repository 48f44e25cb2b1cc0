package orchestrate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Journal records which steps of a graph have finished, so that a run that
// was cancelled or killed can be resumed: [Run] with a journal skips the
// steps it records as finished (status [Resumed]) and gives their outputs to
// their dependents.
//
// Run calls Load once, before any step starts, and then Append as each step
// finishes; it never calls Append concurrently. Append is called with a
// context that is not cancelled when the run is, so that a step that
// finished while the run was being cancelled is still recorded.
//
// A journal belongs to one graph and one run at a time; entries for steps
// the graph does not have are ignored.
type Journal interface {
	// Load returns the entries appended so far, oldest first, or none for
	// a new journal.
	Load(ctx context.Context) ([]Entry, error)
	// Append records e. When it returns nil, e MUST survive a crash of the
	// process or the machine: Run reports a step as finished only after
	// Append returned.
	Append(ctx context.Context, e Entry) error
}

// Entry is one record of a [Journal]: a step finished or, when Undone is
// set, a finished step was undone by rollback and is no longer finished.
type Entry struct {
	Step string `json:"step"`
	// Undone marks a step whose Undo succeeded: a resumed run runs it again.
	Undone bool `json:"undone,omitempty"`
	// Start and End bound the step's Run (or Undo).
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Attempts is the number of attempts it took.
	Attempts int `json:"attempts"`
	// Outputs are the values the step recorded with [Put], each as JSON.
	// Entries written before outputs were typed hold plain strings, which
	// read as JSON strings: a [Key] of type string reads them.
	Outputs Outputs `json:"outputs,omitempty"`
}

// finished folds journal entries into the last "finished" entry per step,
// dropping steps whose last entry says they were undone.
func finished(entries []Entry) map[string]Entry {
	m := make(map[string]Entry)
	for _, e := range entries {
		if e.Undone {
			delete(m, e.Step)
		} else {
			m[e.Step] = e
		}
	}
	return m
}

// FileJournal is a [Journal] kept in a local file as JSON lines, one entry
// per line, appended and fsynced one at a time. A crash during an append
// leaves at most a torn last line, which was never acknowledged; Load
// ignores it and the next Append removes it. A FileJournal is safe for
// concurrent use within one process; two processes must not share the file.
type FileJournal struct {
	path string

	mu        sync.Mutex
	dirSynced bool
}

var _ Journal = (*FileJournal)(nil)

// NewFileJournal returns a journal kept in the file at path, which is
// created, with its directory entry made durable, by the first Append. To
// start over rather than resume, remove the file.
func NewFileJournal(path string) *FileJournal {
	return &FileJournal{path: path}
}

// Load reads the journal's entries. A missing file is an empty journal.
func (j *FileJournal) Load(ctx context.Context) ([]Entry, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	data, err := os.ReadFile(j.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("orchestrate: load journal: %w", err)
	}
	// Only complete lines count: a last line without its newline is an
	// append that a crash interrupted.
	data = data[:bytes.LastIndexByte(data, '\n')+1]
	var entries []Entry
	for n, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("orchestrate: journal %s line %d is corrupt: %w", j.path, n+1, err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// Append writes e as one line at the end of the file and fsyncs it.
func (j *FileJournal) Append(ctx context.Context, e Entry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("orchestrate: journal entry for step %q: %w", e.Step, err)
	}
	line = append(line, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.append(line); err != nil {
		return fmt.Errorf("orchestrate: append to journal %s: %w", j.path, err)
	}
	return nil
}

func (j *FileJournal) append(line []byte) (err error) {
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	end, err := completeLength(f)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(line, end); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if !j.dirSynced {
		if err := syncDir(filepath.Dir(j.path)); err != nil {
			return err
		}
		j.dirSynced = true
	}
	return nil
}

// completeLength returns the length of f's complete lines, truncating a torn
// last line left by a crash so that the next entry starts on a line of its
// own.
func completeLength(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	if size == 0 {
		return 0, nil
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, size-1); err != nil {
		return 0, err
	}
	if last[0] == '\n' {
		return size, nil
	}
	data := make([]byte, size)
	if _, err := f.ReadAt(data, 0); err != nil {
		return 0, err
	}
	end := int64(bytes.LastIndexByte(data, '\n') + 1)
	if err := f.Truncate(end); err != nil {
		return 0, err
	}
	return end, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
