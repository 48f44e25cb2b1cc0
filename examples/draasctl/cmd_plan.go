package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/failback"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/plan"
)

// validateCmd checks a plan file.
func validateCmd(fs *flag.FlagSet) action {
	return func(ctx context.Context, a *app, args []string) error {
		p, err := planArg(args)
		if err != nil {
			return err
		}
		order := p.Order()
		if a.g.json {
			return json.NewEncoder(a.stdout).Encode(struct {
				Plan  string   `json:"plan"`
				File  string   `json:"file"`
				Order []string `json:"order"`
			}{p.Name, args[0], order})
		}
		a.say("%s: plan %s is valid: %d VMs, started in the order %s", args[0], p.Name, len(p.VMs), strings.Join(order, " → "))
		return nil
	}
}

// planCmd prints the steps a failover, drill or failback would run, in
// order and in waves, without running any. With a journal in the state
// directory, the steps it records are shown as done: what a resumed run
// would skip.
func planCmd(fs *flag.FlagSet) action {
	drill := fs.Bool("drill", false, "plan a drill (in the isolated drill network) instead of a failover")
	back := fs.Bool("failback", false, "plan a failback (direct, or with --pre-seed or --cut-over) instead of a failover")
	preSeed := fs.Bool("pre-seed", false, "with --failback: plan the pre-seed run")
	cutOver := fs.Bool("cut-over", false, "with --failback: plan the cut-over run")
	from := fs.String("from", "", "with --failback: the failover's JSON `REPORT`, for its instances and DNS records (without it, every VM is assumed to have its plan's records to point back)")
	return func(ctx context.Context, a *app, args []string) error {
		if err := needArgs(args, "PLAN"); err != nil {
			return err
		}
		switch {
		case *back && *drill:
			return usagef("--drill and --failback plan different runs: pick one")
		case !*back && (*preSeed || *cutOver || *from != ""):
			return usagef("--pre-seed, --cut-over and --from plan a failback: add --failback")
		case *preSeed && *cutOver:
			return usagef("--pre-seed and --cut-over are two runs: plan one at a time")
		}
		p, err := loadPlan(args[0])
		if err != nil {
			return err
		}
		var kind string
		var g *orchestrate.Graph
		dry := dryRun{}
		if *back {
			mode := failback.Direct
			switch {
			case *preSeed:
				mode = failback.PreSeed
			case *cutOver:
				mode = failback.CutOver
			}
			kind = "failback-" + mode.String()
			targets, err := dryRunTargets(p, mode, *from)
			if err != nil {
				return err
			}
			r, err := failback.New(dry, dry, func(context.Context, string) (draas.BlockSource, error) { return nil, errDryRun }, failback.Options{DNS: dry})
			if err != nil {
				return err
			}
			if g, err = r.Compile(p, mode, targets); err != nil {
				return err
			}
		} else {
			mode := failover.Failover
			if *drill {
				mode = failover.Drill
			}
			kind = mode.String()
			r, err := failover.New(dry, dry, failover.Options{DNS: dry, DrillDNS: dry})
			if err != nil {
				return err
			}
			if g, err = r.Compile(p, mode); err != nil {
				return err
			}
		}
		var opts orchestrate.Options
		path := filepath.Join(a.g.state, p.Name+"-"+kind+".journal")
		if _, err := os.Stat(path); err == nil && !a.g.simulate {
			opts.Journal = orchestrate.NewFileJournal(path)
		}
		sc, err := orchestrate.Plan(ctx, g, opts)
		if err != nil {
			return err
		}
		if a.g.json {
			return json.NewEncoder(a.stdout).Encode(sc)
		}
		waves := sc.Waves()
		a.say("%s of plan %s: %d VMs, %d steps to run in %d waves (VMs start in the order %s)",
			kind, p.Name, len(p.VMs), len(sc.Order()), len(waves), strings.Join(p.Order(), " → "))
		if opts.Journal != nil {
			a.say("resuming %s: steps marked done finished in an earlier run", path)
		}
		fmt.Fprint(a.out, "\n", sc.String(), "\n")
		for i, w := range waves {
			a.say("wave %d: %s", i+1, strings.Join(w, ", "))
		}
		return nil
	}
}

// dryRunTargets are the targets of a failback's dry run: from the
// failover's report when there is one, else a stand-in per VM, with the
// plan's records and, for a cut-over, a pre-seed snapshot per disk, which
// the dry run never reads.
func dryRunTargets(p *plan.Plan, mode failback.Mode, from string) (map[string]failback.Target, error) {
	if from != "" {
		fo, err := readFailover(from, p)
		if err != nil {
			return nil, err
		}
		targets := failback.TargetsFromFailover(fo, nil)
		if mode == failback.CutOver {
			for vm, t := range targets {
				t.PreSeedSnapshots = []string{"(pre-seed)"}
				targets[vm] = t
			}
		}
		return targets, nil
	}
	targets := map[string]failback.Target{}
	for _, vm := range p.VMs {
		t := failback.Target{InstanceID: "(instance of " + vm.Name + ")"}
		for _, r := range vm.DNS {
			t.Records = append(t.Records, draas.Record{Name: r.Name, Type: r.Type})
		}
		if mode == failback.CutOver {
			t.PreSeedSnapshots = []string{"(pre-seed)"}
		}
		targets[vm.Name] = t
	}
	return targets, nil
}

// dryRun stands in for the cloud and the site when a run is only planned:
// the failover and failback runners need a launcher, a copy store, DNS and
// a hypervisor, but orchestrate.Plan calls no step, so none of these
// methods runs.
type dryRun struct{}

var errDryRun = errors.New("draasctl: a dry run makes no cloud call")

var (
	_ draas.InstanceLauncher = dryRun{}
	_ draas.CopyStore        = dryRun{}
	_ draas.DNS              = dryRun{}
	_ failback.Cloud         = dryRun{}
	_ draas.Hypervisor       = dryRun{}
)

func (dryRun) CreateVolume(context.Context, draas.VolumeRequest) (string, error) {
	return "", errDryRun
}
func (dryRun) DeleteVolume(context.Context, string) error { return errDryRun }
func (dryRun) Launch(context.Context, draas.LaunchRequest) (draas.Instance, error) {
	return draas.Instance{}, errDryRun
}
func (dryRun) Status(context.Context, string) (draas.InstanceStatus, error) {
	return draas.InstanceStatus{}, errDryRun
}
func (dryRun) Stop(context.Context, string) error                 { return errDryRun }
func (dryRun) Terminate(context.Context, string) error            { return errDryRun }
func (dryRun) Shape(context.Context, string) (draas.Shape, error) { return draas.Shape{}, errDryRun }
func (dryRun) Copies(context.Context, string, string) ([]draas.DRCopy, error) {
	return nil, errDryRun
}
func (dryRun) NewCopy(context.Context, draas.CopyRequest) (draas.SnapshotSink, error) {
	return nil, errDryRun
}
func (dryRun) ResumeCopy(context.Context, draas.CopyRequest, []byte) (draas.SnapshotSink, error) {
	return nil, errDryRun
}
func (dryRun) MarkComplete(context.Context, []draas.DRCopy) error { return errDryRun }
func (dryRun) DeleteCopy(context.Context, string) error           { return errDryRun }
func (dryRun) Upsert(context.Context, draas.Record) error         { return errDryRun }
func (dryRun) Delete(context.Context, draas.Record) error         { return errDryRun }
func (dryRun) Lookup(context.Context, string, string, string) (draas.Record, error) {
	return draas.Record{}, errDryRun
}
func (dryRun) SnapshotInstance(context.Context, string, map[string]string) ([]string, error) {
	return nil, errDryRun
}
func (dryRun) DeleteSnapshot(context.Context, string) error { return errDryRun }
func (dryRun) VMShape(context.Context, string) (draas.Shape, error) {
	return draas.Shape{}, errDryRun
}
func (dryRun) CreateVM(context.Context, draas.VMRequest) error { return errDryRun }
func (dryRun) OpenDisk(context.Context, string, int) (draas.VolumeSink, error) {
	return nil, errDryRun
}
func (dryRun) ReadDisk(context.Context, string, int) (draas.BlockSource, error) {
	return nil, errDryRun
}
func (dryRun) PowerOn(context.Context, string) error  { return errDryRun }
func (dryRun) PowerOff(context.Context, string) error { return errDryRun }
