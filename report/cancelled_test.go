package report

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/replicate"
)

// TestCancelledIsNotFailed checks that a run interrupted while a VM was on
// its way calls that VM cancelled, not failed; a VM with a failed step stays
// failed and one that never started skipped.
func TestCancelledIsNotFailed(t *testing.T) {
	rep := drillReport()
	rep.Mode = "failover"
	// web: interrupted during its launch, after its earlier steps.
	web := &rep.VMs[1]
	web.Up, web.Ready, web.Records, web.InstanceID = false, 0, nil, ""
	web.Error = "launch: " + context.Canceled.Error()
	web.Steps = web.Steps[:4]
	web.Steps[3].Status, web.Steps[3].Error = orchestrate.Cancelled, context.Canceled.Error()
	// evil: nothing started before the interruption.
	evil := &rep.VMs[2]
	evil.Error = ""
	for i := range evil.Steps {
		evil.Steps[i] = failover.Step{Name: evil.Steps[i].Name, Status: orchestrate.Cancelled}
	}
	r := FromFailover(rep, Targets{})
	for i, want := range []Status{StatusOK, StatusCancelled, StatusSkipped} {
		if got := r.VMs[i].Status; got != want {
			t.Errorf("%s: status %s, want %s", r.VMs[i].Name, got, want)
		}
	}
	if v := r.Verdict(); v.Overall != Fail {
		t.Errorf("an interrupted run passes: %+v", v)
	}
	var html strings.Builder
	if err := WriteHTML(&html, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(html.String(), "1 ok, 0 failed, 1 cancelled, 1 skipped") {
		t.Errorf("the HTML report does not count the cancelled VM")
	}

	// A failed step makes the VM failed even when a later one was cancelled.
	web.Steps[2].Status, web.Steps[2].Error = orchestrate.Failed, "boom"
	if got := FromFailover(rep, Targets{}).VMs[1].Status; got != StatusFailed {
		t.Errorf("a VM with a failed and a cancelled step: %s, want failed", got)
	}

	// Replication: a copy stopped by the run's cancellation is cancelled.
	res := replicateResults()
	res[2].Action = replicate.ActionFailed
	res[2].Err = fmt.Errorf("replicate mail: copy disk os: %w", context.Canceled)
	res[2].Error = ""
	rr := FromReplicate("shop", res, Targets{})
	if mail := rr.VMs[2]; mail.Status != StatusCancelled || mail.Steps[0].Status != orchestrate.Cancelled {
		t.Errorf("interrupted replication of mail: %s, step %s; want cancelled", mail.Status, mail.Steps[0].Status)
	}
}
