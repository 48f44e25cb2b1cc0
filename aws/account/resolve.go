package account

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ec2"
	"github.com/opendraas/draas/plan"
)

// Network is the part of a plan's network that [Account.ResolvePlan]
// resolves: the one the instances of a failover, or of a drill, launch in.
type Network int

const (
	// Production is every VM's subnet and security groups (or the
	// defaults'): what a failover launches in.
	Production Network = iota
	// Drill is the drill subnet and its security groups: what a drill
	// launches in, isolated from production.
	Drill
)

func (n Network) String() string {
	if n == Drill {
		return "drill"
	}
	return "production"
}

// ResolvePlan returns a copy of p whose subnets and security groups, in the
// part of the network n names, are IDs: each one the plan names is looked
// up as an ID, then by its Name tag (security groups also by group name, in
// the VPC of the subnet they go with), so a plan may name them either way.
// The other part is copied unchanged.
//
// The copy's availability zone (plan.AWS.AvailabilityZone) is the plan's,
// or else the zone of the subnets n launches in, which must be one: the
// volumes made from DR copies are made in one zone.
//
// Every problem of the plan is reported, each with the plan field it is
// about ("vms[1].subnet: no subnet ..."), joined into one error; it wraps
// draas.ErrNotFound for what does not exist, draas.ErrConflict for an
// ambiguous name and draas.ErrInvalid for a plan that cannot be resolved.
//
// A lookup that failed is not a problem of the plan: when one did (AWS
// still throttled it when ctx's deadline came, the network failed, a
// permission is missing), the error is only the failed lookups', each with
// its field, wrapping the EC2 error and its draas kind (draas.ErrThrottled,
// draas.ErrTransient, ...) and none of the three above, so that a caller
// never blames the plan for it. [IsPlanError] tells the two apart.
func (a *Account) ResolvePlan(ctx context.Context, p *plan.Plan, n Network) (*plan.Plan, error) {
	return resolvePlan(ctx, a.Resolver, p, n)
}

func resolvePlan(ctx context.Context, r *ec2.Resolver, p *plan.Plan, n Network) (*plan.Plan, error) {
	cp := *p
	cp.VMs = slices.Clone(p.VMs)
	subnets := map[string]ec2.Subnet{}
	// errs are the plan's problems, failed the lookups that failed.
	var errs, failed []error
	report := func(field string, err error) {
		err = fmt.Errorf("%s: %w", field, err)
		if IsPlanError(err) {
			errs = append(errs, err)
		} else {
			failed = append(failed, err)
		}
	}
	subnet := func(field, ref string) (ec2.Subnet, bool) {
		if s, ok := subnets[ref]; ok {
			return s, true
		}
		s, err := r.Subnet(ctx, ref)
		if err != nil {
			report(field, err)
			return s, false
		}
		subnets[ref] = s
		return s, true
	}
	groups := func(field string, vpc string, refs []string) []string {
		var ids []string
		for i, ref := range refs {
			id, err := r.SecurityGroup(ctx, vpc, ref)
			if err != nil {
				report(fmt.Sprintf("%s[%d]", field, i), err)
				continue
			}
			ids = append(ids, id)
		}
		return ids
	}
	zones := map[string]bool{}
	switch n {
	case Drill:
		if p.Drill.Subnet == "" {
			return nil, draas.Invalidf("drill.subnet: a drill launches in a subnet of its own, isolated from production: set drill.subnet")
		}
		if s, ok := subnet("drill.subnet", p.Drill.Subnet); ok {
			cp.Drill.Subnet = s.ID
			cp.Drill.SecurityGroups = groups("drill.securityGroups", s.VPC, p.Drill.SecurityGroups)
			zones[s.AvailabilityZone] = true
		}
	default:
		for i, vm := range p.VMs {
			field := fmt.Sprintf("vms[%d].subnet", i)
			if vm.Subnet == "" {
				field = "defaults.subnet"
			}
			s, ok := subnet(field, p.Subnet(vm))
			if !ok {
				continue
			}
			cp.VMs[i].Subnet = s.ID
			gfield := fmt.Sprintf("vms[%d].securityGroups", i)
			if len(vm.SecurityGroups) == 0 {
				gfield = "defaults.securityGroups"
			}
			cp.VMs[i].SecurityGroups = groups(gfield, s.VPC, p.SecurityGroups(vm))
			zones[s.AvailabilityZone] = true
		}
	}
	if err := errors.Join(failed...); err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cp.AWS.AvailabilityZone == "" {
		if len(zones) != 1 {
			return nil, draas.Invalidf("aws.availabilityZone: the %s subnets are in zones %s, and volumes are made in one: set aws.availabilityZone or use subnets of one zone",
				n, strings.Join(slices.Sorted(maps.Keys(zones)), ", "))
		}
		for z := range zones {
			cp.AWS.AvailabilityZone = z
		}
	}
	return &cp, nil
}

// IsPlanError reports whether err, from [Account.ResolvePlan], is a
// problem of the plan (a subnet or security group that does not exist or
// whose name is ambiguous, a plan that cannot be resolved): the user fixes
// the plan. Otherwise a lookup failed (draas.ErrThrottled when AWS still
// throttled it at the context's deadline): the plan may be right, and the
// same run may succeed later.
func IsPlanError(err error) bool {
	if err == nil || errors.Is(err, draas.ErrThrottled) || errors.Is(err, draas.ErrTransient) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	return errors.Is(err, draas.ErrNotFound) || errors.Is(err, draas.ErrConflict) || errors.Is(err, draas.ErrInvalid)
}
