package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/report"
)

// cleanupDrill removes a drill, proves it by listing what is left, and
// rewrites the drill's report in dir with the proof.
//
// (*failover.Runner).Cleanup deletes what the drill's report names. A step
// interrupted after its cloud call and before the journal recorded it may
// have made an instance or volume the report does not name; every drill
// resource carries the drill's run ID as a tag (draas:drill), so such
// leftovers are found by it and removed too. The proof lists what the
// report names and what the sweep found as removed, and, from a fresh
// listing, what remains.
func (a *app) cleanupDrill(ctx context.Context, c *cloud, rep *failover.Report, run report.Run, dir string) error {
	if rep.Mode != failover.Drill.String() {
		return usagef("run %s of plan %s was a %s, not a drill: only drills are cleaned up (a failover is the new production)", rep.RunID, rep.Plan, rep.Mode)
	}
	runner, err := failover.New(c.launcher, c.copies, failover.Options{DrillDNS: c.dns})
	if err != nil {
		return err
	}
	cerr := runner.Cleanup(ctx, rep)
	named := drillResources(rep)
	left, verr := drillRemains(ctx, c.ec2, c.dns, rep)
	var swept []leftover
	if verr == nil && len(left) > 0 {
		swept, cerr = left, errors.Join(cerr, sweep(ctx, c, left))
		left, verr = drillRemains(ctx, c.ec2, c.dns, rep)
	}
	proof := report.CleanupProof{Verified: verr == nil}
	for _, l := range left {
		proof.Remaining = append(proof.Remaining, l.String())
	}
	for _, l := range append(named, swept...) {
		if s := l.String(); !slices.Contains(proof.Remaining, s) && !slices.Contains(proof.Removed, s) {
			proof.Removed = append(proof.Removed, s)
		}
	}
	if verr != nil {
		a.log.Warn("could not list the drill's resources after the clean-up", "error", verr)
	}
	run = report.WithCleanup(run, proof)
	a.say("clean-up of drill %s: %s, %d removed, %d remaining%s", rep.RunID, verdictWord(run.Verdict().Cleanup),
		len(proof.Removed), len(proof.Remaining), listed(proof.Remaining))
	path, err := a.writeReport(dir, run, detail{Failover: rep}, shown{final: true})
	if err != nil {
		return err
	}
	if proof.OK() {
		if cerr != nil {
			a.log.Warn("some clean-up calls failed, but nothing of the drill remains", "error", cerr)
		}
		return nil
	}
	return failed(errors.Join(fmt.Errorf("clean-up of drill %s is incomplete (%d remaining, verified %t): run draasctl drill --cleanup --report %s again",
		rep.RunID, len(proof.Remaining), proof.Verified, path), cerr, verr))
}

// leftover is a resource of a drill: an instance, a volume or a DNS
// record.
type leftover struct {
	kind string // "instance", "volume" or "record"
	id   string // the instance or volume ID; the record's type and name
	rec  draas.Record
}

func (l leftover) String() string { return l.kind + " " + l.id }

func recordLeftover(r draas.Record) leftover {
	return leftover{kind: "record", id: r.Type + " " + r.Name, rec: r}
}

// drillResources is what a drill's report says it made.
func drillResources(rep *failover.Report) []leftover {
	var out []leftover
	for _, vm := range rep.VMs {
		for _, r := range vm.Records {
			out = append(out, recordLeftover(r))
		}
		if vm.InstanceID != "" {
			out = append(out, leftover{kind: "instance", id: vm.InstanceID})
		}
		for _, v := range vm.VolumeIDs {
			out = append(out, leftover{kind: "volume", id: v})
		}
	}
	return out
}

// drillRemains lists what is left of a drill: instances and volumes
// tagged with its run ID, whether the report names them or not, that are
// not gone (a volume being deleted counts as gone), and the report's DNS
// records that still hold the drill's values.
func drillRemains(ctx context.Context, api *awsec2.Client, dns draas.DNS, rep *failover.Report) ([]leftover, error) {
	tag := []ec2types.Filter{{Name: aws.String("tag:" + draas.TagDrill), Values: []string{rep.RunID}}}
	var out []leftover
	ip := awsec2.NewDescribeInstancesPaginator(api, &awsec2.DescribeInstancesInput{Filters: tag})
	for ip.HasMorePages() {
		page, err := ip.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list the drill's instances: %w", err)
		}
		for _, res := range page.Reservations {
			for _, in := range res.Instances {
				if in.State == nil || in.State.Name != ec2types.InstanceStateNameTerminated {
					out = append(out, leftover{kind: "instance", id: aws.ToString(in.InstanceId)})
				}
			}
		}
	}
	vp := awsec2.NewDescribeVolumesPaginator(api, &awsec2.DescribeVolumesInput{Filters: tag})
	for vp.HasMorePages() {
		page, err := vp.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list the drill's volumes: %w", err)
		}
		for _, v := range page.Volumes {
			if v.State != ec2types.VolumeStateDeleted && v.State != ec2types.VolumeStateDeleting {
				out = append(out, leftover{kind: "volume", id: aws.ToString(v.VolumeId)})
			}
		}
	}
	for _, vm := range rep.VMs {
		for _, r := range vm.Records {
			got, err := dns.Lookup(ctx, r.Zone, r.Name, r.Type)
			switch {
			case errors.Is(err, draas.ErrNotFound):
			case err != nil:
				return nil, fmt.Errorf("look up drill record %s: %w", r.Name, err)
			case slices.Equal(got.Values, r.Values):
				out = append(out, recordLeftover(r))
			}
		}
	}
	return out, nil
}

// sweep removes leftovers: records first, then instances, then volumes
// (a volume is free once its instance is gone).
func sweep(ctx context.Context, c *cloud, left []leftover) error {
	var errs []error
	for _, kind := range []string{"record", "instance", "volume"} {
		for _, l := range left {
			if l.kind != kind {
				continue
			}
			var err error
			switch kind {
			case "record":
				err = c.dns.Delete(ctx, l.rec)
			case "instance":
				err = c.launcher.Terminate(ctx, l.id)
			case "volume":
				err = c.launcher.DeleteVolume(ctx, l.id)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("remove drill %s: %w", l, err))
			}
		}
	}
	return errors.Join(errs...)
}

func listed(items []string) string {
	if len(items) == 0 {
		return ""
	}
	return ": " + strings.Join(items, ", ")
}
