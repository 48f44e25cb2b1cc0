package vsphere

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/opendraas/draas"
)

// placement is where a new VM goes.
type placement struct {
	dc      *object.Datacenter
	folder  *object.Folder
	pool    *object.ResourcePool
	host    *object.HostSystem // nil: the cluster (DRS) chooses
	ds      *object.Datastore
	dsName  string
	network object.NetworkReference
	netName string
}

// place resolves a request's placement; see [Hypervisor.CreateVM] for the
// defaults.
func (h *Hypervisor) place(ctx context.Context, req draas.VMRequest) (*placement, error) {
	f := h.finder()
	p := new(placement)
	var err error

	// Datacenter: named, or the first by name.
	if name := cmp.Or(req.Datacenter, h.opts.Datacenter); name != "" {
		if p.dc, err = f.Datacenter(ctx, name); err != nil {
			return nil, fmt.Errorf("datacenter %q: %w", name, err)
		}
	} else {
		dcs, err := f.DatacenterList(ctx, "*")
		if err != nil {
			return nil, fmt.Errorf("no datacenter in the inventory: %w", err)
		}
		slices.SortFunc(dcs, func(a, b *object.Datacenter) int { return strings.Compare(a.InventoryPath, b.InventoryPath) })
		p.dc = dcs[0]
	}
	f.SetDatacenter(p.dc)

	// Compute: a host, a cluster, a resource pool, or the first compute
	// resource. owner is the one whose datastores and networks the defaults
	// come from.
	var owner types.ManagedObjectReference
	hostName, clusterName, poolName := req.Host, req.Cluster, ""
	if hostName == "" && clusterName == "" {
		hostName, clusterName, poolName = h.opts.Host, h.opts.Cluster, h.opts.ResourcePool
	}
	switch {
	case hostName != "":
		if p.host, err = f.HostSystem(ctx, hostName); err != nil {
			return nil, fmt.Errorf("host %q: %w", hostName, err)
		}
		if p.pool, err = p.host.ResourcePool(ctx); err != nil {
			return nil, fmt.Errorf("resource pool of host %q: %w", hostName, err)
		}
		owner = p.host.Reference()
	case clusterName != "":
		cl, err := f.ClusterComputeResource(ctx, clusterName)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", clusterName, err)
		}
		if p.pool, err = cl.ResourcePool(ctx); err != nil {
			return nil, fmt.Errorf("resource pool of cluster %q: %w", clusterName, err)
		}
		owner = cl.Reference()
	case poolName != "":
		if p.pool, err = f.ResourcePool(ctx, poolName); err != nil {
			return nil, fmt.Errorf("resource pool %q: %w", poolName, err)
		}
		var rp mo.ResourcePool
		if err := p.pool.Properties(ctx, p.pool.Reference(), []string{"owner"}, &rp); err != nil {
			return nil, fmt.Errorf("owner of resource pool %q: %w", poolName, err)
		}
		owner = rp.Owner
	default:
		cr, err := h.firstComputeResource(ctx, p.dc)
		if err != nil {
			return nil, err
		}
		p.pool = object.NewResourcePool(h.c, *cr.ResourcePool)
		owner = cr.Self
	}

	// Folder: named, or the datacenter's VM folder.
	if name := cmp.Or(req.Folder, h.opts.Folder); name != "" {
		if p.folder, err = f.Folder(ctx, name); err != nil {
			return nil, fmt.Errorf("folder %q: %w", name, err)
		}
	} else {
		folders, err := p.dc.Folders(ctx)
		if err != nil {
			return nil, fmt.Errorf("folders of datacenter %q: %w", p.dc.Name(), err)
		}
		p.folder = folders.VmFolder
	}

	// Datastore and network: named, or the first of the owner's.
	var o struct {
		Datastore []types.ManagedObjectReference
		Network   []types.ManagedObjectReference
	}
	if name := cmp.Or(req.Datastore, h.opts.Datastore); name != "" {
		if p.ds, err = f.Datastore(ctx, name); err != nil {
			return nil, fmt.Errorf("datastore %q: %w", name, err)
		}
		p.dsName = p.ds.Name()
	}
	if name := cmp.Or(req.Network, h.opts.Network); name != "" {
		if p.network, err = f.Network(ctx, name); err != nil {
			return nil, fmt.Errorf("network %q: %w", name, err)
		}
		p.netName = name
	}
	if p.ds == nil || p.network == nil {
		if err := h.ownerResources(ctx, owner, &o.Datastore, &o.Network); err != nil {
			return nil, err
		}
	}
	if p.ds == nil {
		if p.ds, p.dsName, err = h.firstDatastore(ctx, o.Datastore); err != nil {
			return nil, err
		}
	}
	if p.network == nil {
		if p.network, p.netName, err = h.firstNetwork(ctx, o.Network); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// ownerResources retrieves the datastores and networks of a host, cluster or
// standalone compute resource.
func (h *Hypervisor) ownerResources(ctx context.Context, owner types.ManagedObjectReference, ds, nets *[]types.ManagedObjectReference) error {
	var o mo.ComputeResource
	if owner.Type == "HostSystem" {
		var hs mo.HostSystem
		if err := property.DefaultCollector(h.c).RetrieveOne(ctx, owner, []string{"datastore", "network"}, &hs); err != nil {
			return fmt.Errorf("datastores and networks of %s: %w", owner, err)
		}
		*ds, *nets = hs.Datastore, hs.Network
		return nil
	}
	if err := property.DefaultCollector(h.c).RetrieveOne(ctx, owner, []string{"datastore", "network"}, &o); err != nil {
		return fmt.Errorf("datastores and networks of %s: %w", owner, err)
	}
	*ds, *nets = o.Datastore, o.Network
	return nil
}

// firstComputeResource returns the datacenter's first compute resource
// (cluster or standalone host) by name that has a resource pool.
func (h *Hypervisor) firstComputeResource(ctx context.Context, dc *object.Datacenter) (*mo.ComputeResource, error) {
	folders, err := dc.Folders(ctx)
	if err != nil {
		return nil, fmt.Errorf("folders of datacenter %q: %w", dc.Name(), err)
	}
	v, err := view.NewManager(h.c).CreateContainerView(ctx, folders.HostFolder.Reference(), []string{"ComputeResource"}, true)
	if err != nil {
		return nil, err
	}
	defer v.Destroy(context.WithoutCancel(ctx))
	var crs []mo.ComputeResource
	if err := v.Retrieve(ctx, []string{"ComputeResource"}, []string{"name", "resourcePool"}, &crs); err != nil {
		return nil, fmt.Errorf("compute resources of datacenter %q: %w", dc.Name(), err)
	}
	crs = slices.DeleteFunc(crs, func(cr mo.ComputeResource) bool { return cr.ResourcePool == nil })
	if len(crs) == 0 {
		return nil, fmt.Errorf("datacenter %q has no cluster or host with a resource pool; add one, or set VMRequest.Host: %w", dc.Name(), draas.ErrNotFound)
	}
	slices.SortFunc(crs, func(a, b mo.ComputeResource) int { return strings.Compare(a.Name, b.Name) })
	return &crs[0], nil
}

// firstDatastore returns the first accessible datastore by name.
func (h *Hypervisor) firstDatastore(ctx context.Context, refs []types.ManagedObjectReference) (*object.Datastore, string, error) {
	var dss []mo.Datastore
	if len(refs) > 0 {
		if err := property.DefaultCollector(h.c).Retrieve(ctx, refs, []string{"name", "summary.accessible"}, &dss); err != nil {
			return nil, "", fmt.Errorf("datastores: %w", err)
		}
	}
	dss = slices.DeleteFunc(dss, func(d mo.Datastore) bool { return !d.Summary.Accessible })
	if len(dss) == 0 {
		return nil, "", fmt.Errorf("no accessible datastore where the VM would run; set VMRequest.Datastore: %w", draas.ErrNotFound)
	}
	slices.SortFunc(dss, func(a, b mo.Datastore) int { return strings.Compare(a.Name, b.Name) })
	ds := object.NewDatastore(h.c, dss[0].Self)
	return ds, dss[0].Name, nil
}

// firstNetwork returns the first standard port group by name, else the first
// distributed port group that is not an uplink.
func (h *Hypervisor) firstNetwork(ctx context.Context, refs []types.ManagedObjectReference) (object.NetworkReference, string, error) {
	var std, dv []types.ManagedObjectReference
	for _, r := range refs {
		switch r.Type {
		case "Network":
			std = append(std, r)
		case "DistributedVirtualPortgroup":
			dv = append(dv, r)
		}
	}
	pc := property.DefaultCollector(h.c)
	if len(std) > 0 {
		var nets []mo.Network
		if err := pc.Retrieve(ctx, std, []string{"name"}, &nets); err != nil {
			return nil, "", fmt.Errorf("networks: %w", err)
		}
		slices.SortFunc(nets, func(a, b mo.Network) int { return strings.Compare(a.Name, b.Name) })
		return object.NewNetwork(h.c, nets[0].Self), nets[0].Name, nil
	}
	if len(dv) > 0 {
		var pgs []mo.DistributedVirtualPortgroup
		if err := pc.Retrieve(ctx, dv, []string{"name", "config.uplink", "tag"}, &pgs); err != nil {
			return nil, "", fmt.Errorf("distributed port groups: %w", err)
		}
		pgs = slices.DeleteFunc(pgs, func(pg mo.DistributedVirtualPortgroup) bool {
			if pg.Config.Uplink != nil && *pg.Config.Uplink {
				return true
			}
			return slices.ContainsFunc(pg.Tag, func(t types.Tag) bool { return t.Key == "SYSTEM/DVS.UPLINKPG" })
		})
		slices.SortFunc(pgs, func(a, b mo.DistributedVirtualPortgroup) int { return strings.Compare(a.Name, b.Name) })
		if len(pgs) > 0 {
			pg := object.NewDistributedVirtualPortgroup(h.c, pgs[0].Self)
			return pg, pgs[0].Name, nil
		}
	}
	return nil, "", fmt.Errorf("no network where the VM would run; set VMRequest.Network: %w", draas.ErrNotFound)
}
