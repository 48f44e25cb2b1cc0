package main

import (
	"context"
	"flag"
	"os"
	"time"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/failback"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/report"
)

// failbackCmd brings the VMs a failover moved to EC2 back to vSphere.
func failbackCmd(fs *flag.FlagSet) action {
	from := fs.String("from", "", "the failover's JSON `REPORT` (its .detail.json beside it names the instances)")
	preSeed := fs.Bool("pre-seed", false, "copy from snapshots of the running instances; the VMs stay off and the instances keep serving")
	cutOver := fs.Bool("cut-over", false, "stop the instances and copy only what changed since the pre-seed, then power the VMs on")
	preSeedReport := fs.String("pre-seed-report", "", "with --cut-over: the pre-seed run's JSON `FILE`")
	return func(ctx context.Context, a *app, args []string) error {
		if err := needArgs(args, "PLAN"); err != nil {
			return err
		}
		mode := failback.Direct
		switch {
		case *preSeed && *cutOver:
			return usagef("--pre-seed and --cut-over are two runs: first --pre-seed, then --cut-over --pre-seed-report FILE")
		case *cutOver && *preSeedReport == "" && !a.g.simulate:
			return usagef("--cut-over copies what changed since the pre-seed: pass --pre-seed-report FILE (the pre-seed run's report)")
		case *preSeedReport != "" && !*cutOver:
			return usagef("--pre-seed-report is for --cut-over")
		case *preSeed:
			mode = failback.PreSeed
		case *cutOver:
			mode = failback.CutOver
		}
		if a.g.simulate && (*from != "" || *preSeedReport != "") {
			return usagef("with --simulate, failback first fails over (and pre-seeds) in this process's simulators: drop --from and --pre-seed-report, which name instances in a real cloud")
		}
		if !a.g.simulate && *from == "" {
			return usagef("failback needs the failover's report: pass --from REPORT")
		}
		p, err := loadPlan(args[0])
		if err != nil {
			return err
		}
		c, err := a.openCloud(ctx, p, args[0], need{})
		if err != nil {
			return err
		}
		defer c.close()

		var pre *failback.Report
		var foRep *failover.Report
		if c.lab != nil {
			// The simulated cloud has no earlier failover: make one.
			if foRep, err = a.simulateFailover(ctx, c, p); err != nil {
				return err
			}
			if mode == failback.CutOver {
				a.say("simulate: pre-seeding first")
				if pre, err = a.runFailback(ctx, c, p, failback.PreSeed, foRep, nil, false); err != nil {
					return err
				}
			}
		} else {
			if foRep, err = readFailover(*from, p); err != nil {
				return err
			}
			if *preSeedReport != "" {
				d, err := readDetail(*preSeedReport)
				if err != nil {
					return err
				}
				if d.Failback == nil || d.Failback.Mode != failback.PreSeed.String() || d.Failback.Plan != p.Name {
					return usagef("%s is not a pre-seed failback's report of plan %s: pass the report of draasctl failback --pre-seed", *preSeedReport, p.Name)
				}
				pre = d.Failback
			}
		}
		_, err = a.runFailback(ctx, c, p, mode, foRep, pre, true)
		if exitCode(ctx, err) == exitFailed {
			a.failedRun(a.journalPath(p.Name, "failback-"+mode.String()))
		}
		return err
	}
}

// readFailover reads the failover report a failback starts from.
func readFailover(path string, p *plan.Plan) (*failover.Report, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, usagef("--from: %v", err)
	}
	d, err := readDetail(path)
	if err != nil {
		return nil, err
	}
	switch {
	case d.Failover == nil:
		return nil, usagef("%s is not a failover's report: pass the report draasctl failover wrote", path)
	case d.Failover.Mode != failover.Failover.String():
		return nil, usagef("%s is a %s's report: only a failover is failed back (a drill is cleaned up with drill --cleanup)", path, d.Failover.Mode)
	case d.Failover.Plan != p.Name:
		return nil, usagef("%s is a failover of plan %s, not of %s", path, d.Failover.Plan, p.Name)
	}
	return d.Failover, nil
}

// simulateFailover gives a simulated failback what it comes back from:
// the VMs backed up, replicated and failed over, then the site lost.
func (a *app) simulateFailover(ctx context.Context, c *cloud, p *plan.Plan) (*failover.Report, error) {
	if err := a.prepareSimulation(ctx, c, true); err != nil {
		return nil, err
	}
	a.say("simulate: failing over first")
	done, err := a.runFailover(ctx, c, p, failover.Failover, false)
	if err != nil {
		return nil, err
	}
	c.lab.LoseSite()
	a.say("simulate: the site was lost and rebuilt empty; failing back to it")
	return done.rep, nil
}

// runFailback runs a failback of mode from the failover fo (and, for a
// cut-over, the pre-seed run pre), writes its report (on stdout with
// --json when final), and returns the workflow's report and the command's
// result.
func (a *app) runFailback(ctx context.Context, c *cloud, p *plan.Plan, mode failback.Mode, fo *failover.Report, pre *failback.Report, final bool) (*failback.Report, error) {
	site, closeSite, err := a.site(ctx, c)
	if err != nil {
		return nil, err
	}
	defer closeSite()
	targets := failback.TargetsFromFailover(fo, pre)
	kind := "failback-" + mode.String()
	j, err := a.openJournal(ctx, p.Name, kind)
	if err != nil {
		return nil, err
	}
	// The progress bar counts the compiled graph's steps; events reach it
	// only once the run has started.
	var progress *stepProgress
	runner, err := a.failbackRunner(c, site, failback.Options{
		Journal: j.orchestrate(),
		Events:  a.orchestrateEvents("failback", func(e orchestrate.Event) { progress.event(e) }),
	})
	if err != nil {
		return nil, err
	}
	g, err := runner.Compile(p, mode, targets)
	if err != nil {
		return nil, err
	}
	progress = a.newStepProgress("failback", g.Len())
	rep, runErr := runner.Run(ctx, p, mode, targets)
	progress.done()
	if rep == nil {
		return nil, runErr
	}
	run := report.FromFailback(rep, report.TargetsFromPlan(p, 0))
	run.RunID = newID()
	if _, err := a.writeReport(a.g.state, run, detail{Failback: rep}, shown{summary: true, interrupted: ctx.Err() != nil, final: final}); err != nil {
		return rep, err
	}
	switch {
	case ctx.Err() != nil:
		a.interrupted(j)
		return rep, runErr
	case runErr != nil:
		return rep, failed(runErr)
	}
	if err := j.archive(run.RunID); err != nil {
		return rep, err
	}
	return rep, verdictError(run)
}

// failbackRunner returns a failback runner from c's EC2 to site, pointing
// c's DNS back.
func (a *app) failbackRunner(c *cloud, site draas.Hypervisor, opts failback.Options) (*failback.Runner, error) {
	opts.DNS = c.dns
	return failback.New(c.launcher, site, func(ctx context.Context, id string) (draas.BlockSource, error) {
		return ebs.OpenSnapshot(ctx, c.ebs, id, ebs.SourceOptions{})
	}, opts)
}

// site is the vSphere side failback writes to: the simulated site with
// --simulate, else vCenter.
func (a *app) site(ctx context.Context, c *cloud) (draas.Hypervisor, func(), error) {
	if c.lab != nil {
		return c.lab.Site, func() {}, nil
	}
	h, err := a.dialVSphere(ctx)
	if err != nil {
		return nil, nil, err
	}
	return h, func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		h.Close(ctx)
	}, nil
}
