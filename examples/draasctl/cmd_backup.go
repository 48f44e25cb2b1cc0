package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/backup/fromvsphere"
	"github.com/opendraas/draas/vsphere"
)

// names is a flag that may be repeated.
type names []string

func (n *names) String() string     { return strings.Join(*n, ",") }
func (n *names) Set(v string) error { *n = append(*n, v); return nil }

// backupResult is one VM's backup as --json prints it: the result, and the
// error when the backup failed (no point was committed then).
type backupResult struct {
	backup.Result
	Error string `json:"error,omitempty"`
}

// backupCmd backs the plan's VMs (or those --vm names) up from vCenter
// into the backup store as new recovery points, one VM after another.
func backupCmd(fs *flag.FlagSet) action {
	var only names
	fs.Var(&only, "vm", "back up only the VM `NAME` of the plan (repeatable; default every VM)")
	return func(ctx context.Context, a *app, args []string) error {
		p, err := planArg(args)
		if err != nil {
			return err
		}
		var vms []string
		for _, vm := range p.VMs {
			vms = append(vms, vm.Name)
		}
		for _, n := range only {
			if !slices.Contains(vms, n) {
				return usagef("--vm %s: plan %s has no such VM (its VMs are %s)", n, p.Name, strings.Join(vms, ", "))
			}
		}
		if len(only) > 0 {
			vms = slices.DeleteFunc(vms, func(n string) bool { return !slices.Contains(only, n) })
		}
		if !a.g.simulate && a.g.vcenter == "" {
			return noVCenter("backup reads the VMs from vSphere")
		}
		c, err := a.openCloud(ctx, p, args[0], need{store: true})
		if err != nil {
			return err
		}
		defer c.close()
		var hv backup.Hypervisor
		if c.lab != nil {
			hv = c.lab.Snapshotter()
		} else {
			h, err := a.dialVCenter(ctx, "backup reads the VMs from vSphere")
			if err != nil {
				return err
			}
			defer h.Close(context.WithoutCancel(ctx))
			hv = fromvsphere.New(h, vsphere.BackupOptions{})
		}
		b, err := backup.New(hv, c.store, backup.Options{})
		if err != nil {
			return err
		}

		var (
			results []backupResult
			bad     []string
		)
		for _, vm := range vms {
			if ctx.Err() != nil {
				break
			}
			a.log.Info("backup started", "plan", p.Name, "vm", vm)
			res, err := b.Run(ctx, vm)
			br := backupResult{Result: res}
			if err != nil {
				br.Error = err.Error()
				if ctx.Err() == nil {
					bad = append(bad, vm)
				}
				a.log.Error("backup failed", "plan", p.Name, "vm", vm, "error", err)
				a.say("%s: FAILED after %s: %v", vm, res.Duration.Round(time.Millisecond), err)
			} else {
				a.log.Info("backup done", "plan", p.Name, "vm", vm, "point", res.Point, "duration", res.Duration)
				a.say("%s: recovery point %s in %s", vm, res.Point, res.Duration.Round(time.Millisecond))
				for _, d := range res.Disks {
					kind := "full"
					if d.Incremental {
						kind = "incremental"
					}
					a.say("  %-12s %-11s %s read", d.Disk.Name, kind, mib(d.Stats.BytesRead))
				}
			}
			results = append(results, br)
		}
		if a.g.json {
			if err := json.NewEncoder(a.stdout).Encode(results); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			a.hinted = true
			a.say("interrupted. The VM being backed up has no new point (a backup is committed whole or not at all); run again to back up the rest.")
			return ctx.Err()
		}
		if len(bad) > 0 {
			return failed(fmt.Errorf("backup of plan %s: %d of %d VMs failed: %s", p.Name, len(bad), len(vms), strings.Join(bad, ", ")))
		}
		return nil
	}
}

// mib formats a byte count.
func mib(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
