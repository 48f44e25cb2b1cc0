package retry_test

import (
	"context"
	"testing"

	"github.com/opendraas/draas/retry"
)

func TestCounters(t *testing.T) {
	retry.Count(context.Background(), 1) // no counter: nothing to do

	var run, vm, other retry.Counter
	ctx := retry.WithCounter(context.Background(), &run)
	vmCtx := retry.WithCounter(ctx, &vm)
	retry.Count(vmCtx, 2)
	retry.Count(ctx, 1)
	retry.Count(retry.WithCounter(context.Background(), &other), 5)
	if got := vm.Load(); got != 2 {
		t.Errorf("the VM's counter = %d, want 2", got)
	}
	if got := run.Load(); got != 3 {
		t.Errorf("the run's counter = %d, want 3 (its own and the VM's)", got)
	}
	if got := other.Load(); got != 5 {
		t.Errorf("an unrelated counter = %d, want 5", got)
	}
	if retry.WithCounter(ctx, nil) != ctx {
		t.Error("WithCounter(ctx, nil) must return ctx")
	}
}
