// Package orchestrate runs a graph of dependent steps: the control plane of
// a failover or failback (volume from a DR copy → guest preparation →
// launch → attach → start → wait until healthy → boot scripts → DNS, and,
// across VMs, web after app after database). It knows nothing of AWS or
// vSphere: a step is a function.
//
// A [Graph] holds [Step]s, each with an ID, the IDs of the steps it depends
// on, a priority, a per-attempt timeout, a retry policy, a Run function and
// an optional Undo. [Run] starts each step once all its dependencies have
// succeeded, up to a parallelism limit, higher priority first and otherwise
// in the order the steps were added, so that with the same graph and options
// the order is deterministic; [Plan] returns that order without running
// anything (a dry run), and with Parallelism 1 Run follows it exactly.
//
// When a step fails, [ContinueIndependent] skips its transitive dependents
// and lets the rest finish, while [StopAll] cancels everything. With
// Options.Rollback, a failed run then calls the Undo of the finished steps in
// reverse dependency order. Cancelling Run's context cancels the running
// steps' contexts and makes Run return as soon as they have returned.
//
// With a [Journal] (for example a [FileJournal]), every step that finishes is
// recorded durably before its dependents start; a run with the same journal
// after a crash or a cancellation skips the recorded steps (status
// [Resumed]) and runs the rest. Steps pass small typed results (an
// instance, a list of volume IDs) to their dependents with [Put] and [Get],
// under a [Key] each workflow declares once; outputs are journaled as JSON,
// so they survive a resume.
//
// Progress is an [Event] stream (Options.Events); the [Report] returned by
// Run holds each step's outcome, times and attempts, and the run's critical
// path. A step's panic is recovered and reported as its failure (see
// [ErrPanic]).
package orchestrate
