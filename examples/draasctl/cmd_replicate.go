package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/replicate"
	"github.com/opendraas/draas/report"
)

// replicator makes the plan's replicator, with checkpoints under the state
// directory (a killed copy resumes) except with --simulate.
func (a *app) replicator(c *cloud, progress func(replicate.Event)) (*replicate.Replicator, error) {
	opts := replicate.Options{Events: a.replicateEvents(progress)}
	if !a.g.simulate {
		dir := filepath.Join(a.g.state, "checkpoints", c.plan.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("state directory: %w", err)
		}
		opts.Checkpoints = func(vm, disk string) blockcopy.CheckpointStore {
			return blockcopy.FileCheckpoint(filepath.Join(dir, vm+"-"+disk+".ckpt"))
		}
	}
	return replicate.New(c.plan.ReplicationPlan(), c.backups(), c.copies, opts)
}

// replicateCmd replicates every VM once, or with --watch on the plan's
// schedule until interrupted.
func replicateCmd(fs *flag.FlagSet) action {
	watch := fs.Bool("watch", false, "replicate on the plan's schedule (replication.interval) until Ctrl-C, writing a report after each round")
	return func(ctx context.Context, a *app, args []string) error {
		p, err := planArg(args)
		if err != nil {
			return err
		}
		c, err := a.openCloud(ctx, p, args[0], need{store: true})
		if err != nil {
			return err
		}
		defer c.close()
		if err := a.prepareSimulation(ctx, c, false); err != nil {
			return err
		}
		progress := a.newCopyProgress()
		defer progress.done()
		r, err := a.replicator(c, progress.event)
		if err != nil {
			return err
		}
		if *watch {
			return a.watch(ctx, c, p, r, progress)
		}
		results, _ := r.ReplicateAll(ctx)
		progress.done()
		run := report.FromReplicate(p.Name, results, report.TargetsFromPlan(p, 0))
		run.RunID = newID()
		if _, err := a.writeReport(a.g.state, run, detail{Replicate: results}, shown{summary: true, interrupted: ctx.Err() != nil, final: true}); err != nil {
			return err
		}
		if ctx.Err() != nil {
			a.hinted = true
			a.say("interrupted. The previous DR copies are intact; the next replicate resumes or redoes the copies in progress.")
			return ctx.Err()
		}
		a.observeStatus(ctx, r)
		return verdictError(run)
	}
}

// watch replicates on the schedule until ctx ends, writing a report each
// time every VM has had a run. Ctrl-C is its normal end: it returns nil.
func (a *app) watch(ctx context.Context, c *cloud, p *plan.Plan, r *replicate.Replicator, progress *copyProgress) error {
	var (
		mu    sync.Mutex
		round []replicate.Result
	)
	write := func(results []replicate.Result) {
		run := report.FromReplicate(p.Name, results, report.TargetsFromPlan(p, 0))
		run.RunID = newID()
		// With --json, each round's report is one JSON document on stdout.
		if _, err := a.writeReport(a.g.state, run, detail{Replicate: results}, shown{summary: true, final: true}); err != nil {
			a.log.Error("write replication report", "error", err)
		}
	}
	s, err := replicate.NewScheduler(r, replicate.ScheduleOptions{OnResult: func(res replicate.Result) {
		mu.Lock()
		defer mu.Unlock()
		round = slices.DeleteFunc(round, func(old replicate.Result) bool { return old.VM == res.VM })
		round = append(round, res)
		if len(round) == len(p.VMs) {
			a.observeStatus(ctx, r)
			write(round)
			round = nil
		}
	}})
	if err != nil {
		return err
	}
	a.say("replicating plan %s every %s until interrupted (Ctrl-C)", p.Name, time.Duration(p.Replication.Interval))
	s.Run(ctx)
	progress.done()
	mu.Lock()
	defer mu.Unlock()
	if len(round) > 0 {
		write(round)
	}
	a.hinted = true
	a.say("stopped.")
	return nil
}

// observeStatus feeds the DR copies' ages to the metrics.
func (a *app) observeStatus(ctx context.Context, r *replicate.Replicator) {
	if a.metrics == nil {
		return
	}
	st, err := r.Status(context.WithoutCancel(ctx))
	if err != nil {
		a.log.Warn("DR copy status for metrics", "error", err)
		return
	}
	a.metrics.ObserveStatus(st)
}

// statusCmd prints each VM's DR copy age against its RPO target.
func statusCmd(fs *flag.FlagSet) action {
	return func(ctx context.Context, a *app, args []string) error {
		p, err := planArg(args)
		if err != nil {
			return err
		}
		c, err := a.openCloud(ctx, p, args[0], need{})
		if err != nil {
			return err
		}
		defer c.close()
		if err := a.prepareSimulation(ctx, c, true); err != nil {
			return err
		}
		r, err := a.replicator(c, nil)
		if err != nil {
			return err
		}
		st, err := r.Status(ctx)
		if err != nil {
			return err
		}
		if a.metrics != nil {
			a.metrics.ObserveStatus(st)
		}
		if a.g.json {
			if err := json.NewEncoder(a.stdout).Encode(st); err != nil {
				return err
			}
		}
		printStatus(a.out, st)
		var late []string
		for _, s := range st {
			if !s.OK {
				late = append(late, s.VM)
			}
		}
		if len(late) > 0 {
			return missed(fmt.Errorf("%d of %d VMs of plan %s have no DR copy within their RPO: %s (run draasctl replicate)",
				len(late), len(st), p.Name, strings.Join(late, ", ")))
		}
		return nil
	}
}

func printStatus(w io.Writer, st []replicate.VMStatus) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VM\tRECOVERY POINT\tAGE\tRPO\tCOPIES\tPENDING\tSTATUS")
	for _, s := range st {
		point, age := "none", "-"
		if s.RecoveryPoint != "" {
			point, age = s.RecoveryPoint, s.Age.Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.VM, point, age, s.Target, s.Copies, s.Pending, s.Condition())
	}
	tw.Flush()
	for _, s := range st {
		switch {
		case s.Failed > 0:
			fmt.Fprintf(w, "%s: %d copies of recovery point %s failed; the next replicate deletes them and copies again\n", s.VM, s.Failed, s.PendingPoint)
		case s.PendingPoint != "":
			fmt.Fprintf(w, "%s: the copy of recovery point %s is not complete: a replicate is running, or one failed or was interrupted (run draasctl replicate; its report says why)\n", s.VM, s.PendingPoint)
		}
	}
}
