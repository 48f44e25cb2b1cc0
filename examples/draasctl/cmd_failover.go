package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/report"
)

// failoverCmd fails the plan over.
func failoverCmd(fs *flag.FlagSet) action {
	return func(ctx context.Context, a *app, args []string) error {
		p, err := planArg(args)
		if err != nil {
			return err
		}
		c, err := a.openCloud(ctx, p, args[0], need{network: true, mode: failover.Failover})
		if err != nil {
			return err
		}
		defer c.close()
		if err := a.prepareSimulation(ctx, c, true); err != nil {
			return err
		}
		_, err = a.runFailover(ctx, c, p, failover.Failover, true)
		if done, ok := errors.AsType[*failover.AlreadyFailedOverError](err); ok {
			return a.alreadyFailedOver(done)
		}
		if exitCode(ctx, err) == exitFailed {
			a.failedRun(a.journalPath(p.Name, failover.Failover.String()))
		}
		return err
	}
}

// alreadyFailedOver answers a failover refused because an earlier one's
// instances run: with that run's report in the state directory, the
// failover is done and the command says where its report is (exit 0);
// without it (another --state, or another machine's run), it fails naming
// the instances.
func (a *app) alreadyFailedOver(done *failover.AlreadyFailedOverError) error {
	path, run, ok := a.findReport(report.KindFailover, done.Plan, done.RunIDs())
	if !ok {
		return failed(fmt.Errorf("%w\nNo report of that failover is in %s: it ran with another --state, or elsewhere", done, a.g.state))
	}
	a.say("plan %s is already failed over: run %s, finished %s (%s).\nreport: %s\nNothing was done. To fail over again, terminate its instances first (after a failback): %s",
		done.Plan, run.RunID, run.End.UTC().Format(time.RFC3339), verdictWord(run.Verdict().Overall), path, instanceList(done))
	return nil
}

func instanceList(done *failover.AlreadyFailedOverError) string {
	var parts []string
	for _, in := range done.Instances {
		parts = append(parts, in.VM+" "+in.InstanceID)
	}
	return strings.Join(parts, ", ")
}

// findReport returns the newest report (by end time) in the state
// directory of a run of kind and plan whose ID is one of runIDs.
func (a *app) findReport(kind report.Kind, planName string, runIDs []string) (string, report.Run, bool) {
	paths, _ := filepath.Glob(filepath.Join(a.g.state, string(kind)+"-*.json"))
	var best report.Run
	bestPath := ""
	for _, path := range paths {
		if strings.HasSuffix(path, ".detail.json") {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		run, err := report.ReadJSON(f)
		f.Close()
		if err != nil || run.Kind != kind || run.Plan != planName || !slices.Contains(runIDs, run.RunID) {
			continue
		}
		if bestPath == "" || run.End.After(best.End) {
			best, bestPath = run, path
		}
	}
	return bestPath, best, bestPath != ""
}

// drillCmd drills the plan and, with --cleanup, removes the drill again;
// or, with --cleanup --report, removes an earlier drill.
func drillCmd(fs *flag.FlagSet) action {
	cleanup := fs.Bool("cleanup", false, "remove the drill's instances, volumes and records afterwards and record the proof in its report")
	from := fs.String("report", "", "with --cleanup: remove the earlier drill this `FILE` (its JSON report) describes, instead of drilling")
	return func(ctx context.Context, a *app, args []string) error {
		if *from != "" {
			if !*cleanup {
				return usagef("--report names a drill to clean up: add --cleanup")
			}
			if len(args) > 1 {
				return usagef("drill --cleanup --report FILE takes at most the PLAN as an argument; got %q", args)
			}
			return a.cleanupEarlierDrill(ctx, *from, args)
		}
		p, err := planArg(args)
		if err != nil {
			return err
		}
		c, err := a.openCloud(ctx, p, args[0], need{network: true, mode: failover.Drill})
		if err != nil {
			return err
		}
		defer c.close()
		if err := a.prepareSimulation(ctx, c, true); err != nil {
			return err
		}
		done, err := a.runFailover(ctx, c, p, failover.Drill, !*cleanup)
		if done.rep == nil || ctx.Err() != nil {
			return err
		}
		if !*cleanup {
			if exitCode(ctx, err) == exitFailed {
				a.failedRun(a.journalPath(p.Name, failover.Drill.String()))
			}
			if c.lab != nil {
				a.say("The drill's resources end with the simulator; against AWS remove them with: draasctl drill --cleanup --report FILE")
			} else {
				a.say("The drill's resources remain until you run: draasctl drill --cleanup --report %s", done.path)
			}
			return err
		}
		cerr := a.cleanupDrill(ctx, c, done.rep, done.run, a.g.state)
		// The drill is gone: its journal must not be resumed.
		if jerr := a.retireDrillJournal(ctx, p.Name, done.rep.RunID); jerr != nil {
			cerr = errors.Join(cerr, jerr)
		}
		return errors.Join(err, cerr)
	}
}

// ran is a failover or drill that ran.
type ran struct {
	rep  *failover.Report // nil if the run did not start
	run  report.Run       // its report
	path string           // where the JSON report was written
}

// runFailover runs a failover or drill with the journal in the state
// directory, writes its report (on stdout with --json when final), and
// returns what ran and the command's result.
func (a *app) runFailover(ctx context.Context, c *cloud, p *plan.Plan, mode failover.Mode, final bool) (ran, error) {
	j, err := a.openJournal(ctx, p.Name, mode.String())
	if err != nil {
		return ran{}, err
	}
	launcher, err := pausePoint(c.launcher, a.getenv(pauseEnv), a.stderr)
	if err != nil {
		return ran{}, err
	}
	opts := failover.Options{
		DNS: c.dns, DrillDNS: c.dns, Prober: c.prober, EC2StatusOnly: c.ec2Only, Journal: j.orchestrate(), PollInterval: c.poll,
	}
	// The progress bar counts the compiled graph's steps; events reach it
	// only once the run has started.
	var progress *stepProgress
	opts.Events = a.orchestrateEvents(mode.String(), func(e orchestrate.Event) { progress.event(e) })
	runner, err := failover.New(launcher, c.copies, opts)
	if err != nil {
		return ran{}, err
	}
	g, err := runner.Compile(c.plan, mode)
	if err != nil {
		return ran{}, err
	}
	progress = a.newStepProgress(mode.String(), g.Len())
	rep, runErr := runner.Run(ctx, c.plan, mode)
	progress.done()
	if rep == nil {
		return ran{}, runErr
	}
	out := ran{rep: rep, run: report.FromFailover(rep, report.TargetsFromPlan(p, 0))}
	out.path, err = a.writeReport(a.g.state, out.run, detail{Failover: rep}, shown{summary: true, interrupted: ctx.Err() != nil, final: final})
	if err != nil {
		return out, errors.Join(runErr, err)
	}
	switch {
	case ctx.Err() != nil:
		a.interrupted(j)
		return out, runErr
	case runErr != nil:
		return out, failed(runErr)
	}
	if err := j.archive(rep.RunID); err != nil {
		return out, err
	}
	return out, verdictError(out.run)
}

// cleanupEarlierDrill removes the drill an earlier run's report describes
// and rewrites that report with the proof.
func (a *app) cleanupEarlierDrill(ctx context.Context, path string, args []string) error {
	if a.g.simulate {
		return usagef("--simulate cannot clean up an earlier drill: its simulated cloud ended with that process (and took the drill with it)")
	}
	f, err := os.Open(path)
	if err != nil {
		return usagef("drill report: %v", err)
	}
	run, err := report.ReadJSON(f)
	f.Close()
	if err != nil {
		return usagef("%s: %v: name the JSON report of a drill", path, err)
	}
	d, err := readDetail(path)
	if err != nil {
		return err
	}
	if d.Failover == nil || run.Kind != report.KindDrill {
		return usagef("%s is a %s report, not a drill's: only drills are cleaned up", path, run.Kind)
	}
	var p *plan.Plan
	if len(args) == 1 {
		if p, err = loadPlan(args[0]); err != nil {
			return err
		}
		if p.Name != run.Plan {
			return usagef("%s is a drill of plan %s, not of %s (%s)", path, run.Plan, p.Name, args[0])
		}
	}
	// The drill's region, not the configuration's default: listing another
	// region would find nothing and prove nothing.
	switch {
	case a.g.region == "":
		a.g.region = d.Region
	case d.Region != "" && a.g.region != d.Region:
		return usagef("%s is a drill in region %s, not %s: drop --region", path, d.Region, a.g.region)
	}
	c, err := a.openCloud(ctx, p, "", need{})
	if err != nil {
		return err
	}
	defer c.close()
	if err := a.cleanupDrill(ctx, c, d.Failover, run, filepath.Dir(path)); err != nil {
		return err
	}
	return a.retireDrillJournal(ctx, run.Plan, run.RunID)
}

// retireDrillJournal archives the drill journal if it records the drill
// runID: once a drill is cleaned up, what its journal records is gone and
// must not be resumed.
func (a *app) retireDrillJournal(ctx context.Context, planName, runID string) error {
	if a.g.simulate {
		return nil
	}
	path := a.journalPath(planName, failover.Drill.String())
	if id, err := journalRunID(ctx, path); err == nil && id == runID {
		return (&journal{path: path}).archive(runID)
	}
	return nil
}

// journalRunID returns the run ID a failover or drill journal records.
func journalRunID(ctx context.Context, path string) (string, error) {
	id, err := failover.JournalRunID(ctx, orchestrate.NewFileJournal(path))
	if err != nil {
		return "", fmt.Errorf("journal %s: %w", path, err)
	}
	return id, nil
}
