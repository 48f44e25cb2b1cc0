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
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/orchestrate"
)

// validateCmd checks a plan file.
func validateCmd(fs *flag.FlagSet) action {
	return func(ctx context.Context, a *app, args []string) error {
		if err := needArgs(args, "PLAN"); err != nil {
			return err
		}
		p, err := loadPlan(args[0])
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

// planCmd prints the steps a failover or drill would run, in order and in
// waves, without running any. With a journal in the state directory, the
// steps it records are shown as done: what a resumed run would skip.
func planCmd(fs *flag.FlagSet) action {
	drill := fs.Bool("drill", false, "plan a drill (in the isolated drill network) instead of a failover")
	return func(ctx context.Context, a *app, args []string) error {
		if err := needArgs(args, "PLAN"); err != nil {
			return err
		}
		p, err := loadPlan(args[0])
		if err != nil {
			return err
		}
		mode := failover.Failover
		if *drill {
			mode = failover.Drill
		}
		dry := dryRun{}
		g, err := failover.Compile(p, failover.Options{Mode: mode, Launcher: dry, Copies: dry, DNS: dry, DrillDNS: dry})
		if err != nil {
			return err
		}
		var opts orchestrate.Options
		path := filepath.Join(a.g.state, p.Name+"-"+mode.String()+".journal")
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
			mode, p.Name, len(p.VMs), len(sc.Order()), len(waves), strings.Join(p.Order(), " → "))
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

// dryRun stands in for the cloud when a run is only planned:
// failover.Compile needs a launcher, a copy store and DNS, but
// orchestrate.Plan calls no step, so none of these methods runs.
type dryRun struct{}

var errDryRun = errors.New("draasctl: a dry run makes no cloud call")

var (
	_ draas.InstanceLauncher = dryRun{}
	_ draas.CopyStore        = dryRun{}
	_ draas.DNS              = dryRun{}
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
