package failback

import "github.com/opendraas/draas/failover"

// TargetsFromFailover returns the targets of a failback of the VMs that
// the failover fo brought up: each VM's instance, and its DNS records as
// they were before the failover (which the failback points back to). For
// a cut-over, pass the pre-seed run's report as preSeed: each VM's target
// then names the snapshots it copied. preSeed may be nil. Placement is
// left empty (the hypervisor's defaults); set it per VM where needed.
func TargetsFromFailover(fo *failover.Report, preSeed *Report) map[string]Target {
	targets := map[string]Target{}
	if fo == nil {
		return targets
	}
	for _, v := range fo.VMs {
		targets[v.VM] = Target{InstanceID: v.InstanceID, Records: v.PreviousRecords}
	}
	if preSeed != nil {
		for _, v := range preSeed.VMs {
			if t, ok := targets[v.VM]; ok {
				t.PreSeedSnapshots = v.Snapshots
				targets[v.VM] = t
			}
		}
	}
	return targets
}
