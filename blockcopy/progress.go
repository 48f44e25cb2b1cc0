package blockcopy

import "sync"

// DiskProgress is a [Progress] event of one disk of one VM, as a workflow
// that runs several copies at once (replicate, backup, failback) reports it.
// It encodes to JSON as the Progress fields plus "vm" and "disk".
type DiskProgress struct {
	// VM names the VM the copied disk belongs to (as in the plan).
	VM string `json:"vm"`
	// Disk names the disk within the VM (a key, label or device node,
	// whatever the workflow names disks by).
	Disk string `json:"disk"`
	Progress
}

// ProgressMux merges the progress events of parallel copies into one
// callback. Each copy gets its own Options.Progress from [ProgressMux.For],
// which tags its events with VM and disk; the mux calls the callback for one
// event at a time, never concurrently, so the callback needs no locking of
// its own. This keeps [Options.Progress]'s one-goroutine promise for a
// caller that watches many copies.
//
// A nil *ProgressMux, or one made with a nil callback, is valid and drops
// every event; its For returns nil, so the copies it would serve skip their
// progress goroutine altogether.
type ProgressMux struct {
	mu sync.Mutex
	fn func(DiskProgress)
}

// NewProgressMux returns a mux that passes every event to fn, one call at a
// time. fn may be nil (no events). fn runs on the copies' progress
// goroutines while holding the mux, so a slow fn delays the other copies'
// events (not their data): it must not block for long, and must not call
// back into a Progress function of the same mux.
func NewProgressMux(fn func(DiskProgress)) *ProgressMux {
	return &ProgressMux{fn: fn}
}

// For returns the Options.Progress for the copy of disk of vm: each event it
// receives reaches the mux's callback as a DiskProgress tagged with vm and
// disk. It returns nil when the mux has no callback.
func (m *ProgressMux) For(vm, disk string) func(Progress) {
	if m == nil || m.fn == nil {
		return nil
	}
	return func(p Progress) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.fn(DiskProgress{VM: vm, Disk: disk, Progress: p})
	}
}
