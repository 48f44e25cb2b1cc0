package vsphere

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/opendraas/draas"
)

// diskDev is one virtual disk of a VM or snapshot configuration.
type diskDev struct {
	name     string // "scsi0:1"
	dev      *types.VirtualDisk
	size     int64
	file     string // backing file, "[datastore] dir/name.vmdk"; "" for non-file backings
	ds       *types.ManagedObjectReference
	changeID string
	delta    bool // the backing has a parent: a snapshot's delta disk
	rank     [3]int32
}

// controller kinds in the order their disks are numbered.
var controllerRank = map[string]int32{"scsi": 0, "sata": 1, "nvme": 2, "ide": 3}

// disksOf returns the virtual disks among devices in controller order: SCSI,
// then SATA, NVMe and IDE controllers, each by bus number, then by unit
// number.
func disksOf(devices object.VirtualDeviceList) []diskDev {
	var disks []diskDev
	for _, d := range devices.SelectByType((*types.VirtualDisk)(nil)) {
		vd := d.(*types.VirtualDisk)
		kind, bus := "disk", int32(99)
		if c, ok := devices.FindByKey(vd.ControllerKey).(types.BaseVirtualController); ok {
			bus = c.GetVirtualController().BusNumber
			switch c.(type) {
			case types.BaseVirtualSCSIController:
				kind = "scsi"
			case types.BaseVirtualSATAController:
				kind = "sata"
			case *types.VirtualNVMEController:
				kind = "nvme"
			case *types.VirtualIDEController:
				kind = "ide"
			}
		}
		unit := int32(-1)
		if vd.UnitNumber != nil {
			unit = *vd.UnitNumber
		}
		rank, ok := controllerRank[kind]
		if !ok {
			rank = int32(len(controllerRank))
		}
		dd := diskDev{
			name: fmt.Sprintf("%s%d:%d", kind, bus, unit),
			dev:  vd,
			size: vd.CapacityInBytes,
			rank: [3]int32{rank, bus, unit},
		}
		if dd.size == 0 {
			dd.size = vd.CapacityInKB * 1024
		}
		if fb, ok := vd.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
			info := fb.GetVirtualDeviceFileBackingInfo()
			dd.file, dd.ds = info.FileName, info.Datastore
		}
		switch b := vd.Backing.(type) {
		case *types.VirtualDiskFlatVer2BackingInfo:
			dd.changeID, dd.delta = b.ChangeId, b.Parent != nil
		case *types.VirtualDiskSeSparseBackingInfo:
			dd.changeID, dd.delta = b.ChangeId, b.Parent != nil
		case *types.VirtualDiskSparseVer2BackingInfo:
			dd.changeID, dd.delta = b.ChangeId, b.Parent != nil
		case *types.VirtualDiskRawDiskMappingVer1BackingInfo:
			dd.changeID = b.ChangeId
		}
		disks = append(disks, dd)
	}
	slices.SortStableFunc(disks, func(a, b diskDev) int {
		return cmp.Or(cmp.Compare(a.rank[0], b.rank[0]), cmp.Compare(a.rank[1], b.rank[1]), cmp.Compare(a.rank[2], b.rank[2]))
	})
	return disks
}

func (v *vmInfo) disks() []diskDev {
	return disksOf(object.VirtualDeviceList(v.mo.Config.Hardware.Device))
}

// disk returns the VM's i-th disk or an error wrapping draas.ErrNotFound.
func (v *vmInfo) disk(op string, i int) (diskDev, error) {
	disks := v.disks()
	if i < 0 || i >= len(disks) {
		return diskDev{}, opErrorKind(op, fmt.Sprintf("disk %d of VM %q", i, v.name), draas.ErrNotFound,
			fmt.Errorf("the VM has %d disks, numbered from 0", len(disks)))
	}
	return disks[i], nil
}

func (v *vmInfo) shape() draas.Shape {
	hw := v.mo.Config.Hardware
	s := draas.Shape{CPUs: int(hw.NumCPU), MemoryMiB: int64(hw.MemoryMB), Firmware: v.mo.Config.Firmware}
	if s.Firmware == "" {
		s.Firmware = "bios"
	}
	for _, d := range v.disks() {
		s.Disks = append(s.Disks, draas.Disk{Name: d.name, Size: d.size})
	}
	return s
}

// VMShape returns the named VM's CPUs, memory in MiB, firmware ("bios" or
// "efi") and disks. Disks are in controller order (SCSI, SATA, NVMe, then
// IDE controllers; by bus, then unit number), named by their controller
// slot as in the VM's configuration file ("scsi0:0"), with their capacity
// in bytes. An unknown VM fails with draas.ErrNotFound.
func (h *Hypervisor) VMShape(ctx context.Context, name string) (draas.Shape, error) {
	v, err := h.lookup(ctx, "vsphere: read the shape of", name)
	if err != nil {
		return draas.Shape{}, err
	}
	return v.shape(), nil
}

// VM returns the named VM as a plan describes it: its shape (see
// [Hypervisor.VMShape]) and the names of the networks its NICs connect to,
// in device order.
func (h *Hypervisor) VM(ctx context.Context, name string) (draas.VM, error) {
	const op = "vsphere: describe"
	v, err := h.lookup(ctx, op, name)
	if err != nil {
		return draas.VM{}, err
	}
	s := v.shape()
	vm := draas.VM{Name: v.mo.Name, CPUs: s.CPUs, MemoryMiB: s.MemoryMiB, Firmware: s.Firmware, Disks: s.Disks}
	vm.Networks, err = h.networksOf(ctx, v)
	if err != nil {
		return draas.VM{}, opError(op, fmt.Sprintf("networks of VM %q", name), err)
	}
	return vm, nil
}

// networksOf returns the names of the networks of v's NICs in device order.
func (h *Hypervisor) networksOf(ctx context.Context, v *vmInfo) ([]string, error) {
	// Names of distributed port groups by key, and of opaque networks by ID.
	byKey := map[string]string{}
	if len(v.mo.Network) > 0 {
		var nets []mo.Network
		if err := property.DefaultCollector(h.c).Retrieve(ctx, v.mo.Network, []string{"name"}, &nets); err != nil {
			return nil, err
		}
		for _, n := range nets {
			byKey[n.Self.Value] = n.Name
		}
		var pgs []types.ManagedObjectReference
		for _, r := range v.mo.Network {
			if r.Type == "DistributedVirtualPortgroup" {
				pgs = append(pgs, r)
			}
		}
		if len(pgs) > 0 {
			var dvpgs []mo.DistributedVirtualPortgroup
			if err := property.DefaultCollector(h.c).Retrieve(ctx, pgs, []string{"name", "key"}, &dvpgs); err != nil {
				return nil, err
			}
			for _, pg := range dvpgs {
				byKey[pg.Key] = pg.Name
			}
		}
	}
	devices := object.VirtualDeviceList(v.mo.Config.Hardware.Device)
	nics := devices.SelectByType((*types.VirtualEthernetCard)(nil))
	slices.SortStableFunc(nics, func(a, b types.BaseVirtualDevice) int {
		return cmp.Compare(a.GetVirtualDevice().Key, b.GetVirtualDevice().Key)
	})
	var names []string
	for _, nic := range nics {
		switch b := nic.GetVirtualDevice().Backing.(type) {
		case *types.VirtualEthernetCardNetworkBackingInfo:
			names = append(names, b.DeviceName)
		case *types.VirtualEthernetCardDistributedVirtualPortBackingInfo:
			names = append(names, cmp.Or(byKey[b.Port.PortgroupKey], b.Port.PortgroupKey))
		case *types.VirtualEthernetCardOpaqueNetworkBackingInfo:
			names = append(names, b.OpaqueNetworkId)
		default:
			names = append(names, "")
		}
	}
	return names, nil
}

// Disk and shape limits of created VMs.
const (
	unitsPerController = 15 // SCSI units 0-15 without 7, which the controller uses
	maxControllers     = 4
)

// normalShape validates a requested shape and returns it as VMShape would
// report the VM created from it: firmware defaulted to "bios" and disk sizes
// rounded up to whole KiB (vSphere's granularity).
func normalShape(name string, s draas.Shape) (draas.Shape, error) {
	if name == "" {
		return s, draas.Invalidf("vsphere: create VM: no name; set VMRequest.Name")
	}
	if s.CPUs <= 0 || s.MemoryMiB <= 0 {
		return s, draas.Invalidf("vsphere: create VM %q: %d CPUs and %d MiB of memory; both must be positive", name, s.CPUs, s.MemoryMiB)
	}
	switch s.Firmware {
	case "":
		s.Firmware = "bios"
	case "bios", "efi":
	default:
		return s, draas.Invalidf("vsphere: create VM %q: firmware %q; use \"bios\" or \"efi\"", name, s.Firmware)
	}
	if len(s.Disks) > unitsPerController*maxControllers {
		return s, draas.Invalidf("vsphere: create VM %q: %d disks; at most %d fit on %d SCSI controllers", name, len(s.Disks), unitsPerController*maxControllers, maxControllers)
	}
	disks := make([]draas.Disk, len(s.Disks))
	for i, d := range s.Disks {
		if d.Size <= 0 {
			return s, draas.Invalidf("vsphere: create VM %q: disk %d has size %d; it must be positive", name, i, d.Size)
		}
		disks[i] = draas.Disk{Name: d.Name, Size: (d.Size + 1023) &^ 1023}
	}
	s.Disks = disks
	return s, nil
}

// shapeDiff describes how two shapes differ, or returns "" when they are the
// same hardware (disk names are not compared).
func shapeDiff(have, want draas.Shape) string {
	var diffs []string
	if have.CPUs != want.CPUs {
		diffs = append(diffs, fmt.Sprintf("%d CPUs, not %d", have.CPUs, want.CPUs))
	}
	if have.MemoryMiB != want.MemoryMiB {
		diffs = append(diffs, fmt.Sprintf("%d MiB of memory, not %d", have.MemoryMiB, want.MemoryMiB))
	}
	if have.Firmware != want.Firmware {
		diffs = append(diffs, fmt.Sprintf("firmware %s, not %s", have.Firmware, want.Firmware))
	}
	if len(have.Disks) != len(want.Disks) {
		diffs = append(diffs, fmt.Sprintf("%d disks, not %d", len(have.Disks), len(want.Disks)))
	} else {
		for i := range have.Disks {
			if have.Disks[i].Size != want.Disks[i].Size {
				diffs = append(diffs, fmt.Sprintf("disk %d of %d bytes, not %d", i, have.Disks[i].Size, want.Disks[i].Size))
			}
		}
	}
	return strings.Join(diffs, ", ")
}

// CreateVM creates a powered-off VM of the requested shape with empty thin
// disks of the requested sizes (rounded up to whole KiB) on SCSI
// controllers (Options.SCSIController; 15 disks each, up to 60), and one NIC
// (Options.NetworkAdapter) on the request's network.
//
// Placement comes from the request, else from the Options of the same name,
// else from the inventory: the first datacenter by name; the host or the
// cluster named, else Options.ResourcePool, else the first compute resource
// (cluster or standalone host) by name and its root resource pool; the
// datacenter's VM folder; the first accessible datastore of that compute
// resource by name; and its first network by name, standard port groups
// before distributed ones (uplink port groups are skipped). Production plans
// should name them all.
//
// CreateVM is idempotent by name within the datacenter: when a VM of that
// name exists with the same CPUs, memory, firmware and disk sizes it returns
// nil and changes nothing (placement is not compared); with another shape
// it fails with draas.ErrConflict naming the differences.
func (h *Hypervisor) CreateVM(ctx context.Context, req draas.VMRequest) error {
	const op = "vsphere: create"
	want, err := normalShape(req.Name, req.Shape)
	if err != nil {
		return err
	}
	res := fmt.Sprintf("VM %q", req.Name)
	dcName := cmp.Or(req.Datacenter, h.opts.Datacenter)
	if err := h.checkExisting(ctx, dcName, req.Name, want); !errors.Is(err, draas.ErrNotFound) {
		return err
	}
	p, err := h.place(ctx, req)
	if err != nil {
		return opError(op, res, err)
	}
	spec, err := h.configSpec(ctx, req.Name, want, p)
	if err != nil {
		return opError(op, res, err)
	}
	task, err := p.folder.CreateVM(ctx, spec, p.pool, p.host)
	if err == nil {
		_, err = task.WaitForResult(ctx)
	}
	if err != nil {
		if fault.Is(err, &types.DuplicateName{}) {
			// Created concurrently, or a VM of that name in the folder that
			// the lookup did not see: compare it.
			if cerr := h.checkExisting(ctx, dcName, req.Name, want); !errors.Is(cerr, draas.ErrNotFound) {
				return cerr
			}
		}
		return opError(op, fmt.Sprintf("%s on datastore %q", res, p.dsName), err)
	}
	// Its disks are new and empty: the first sink of each need not read
	// their (zero) content first.
	h.mu.Lock()
	if h.fresh == nil {
		h.fresh = map[string]bool{}
	}
	for i := range want.Disks {
		h.fresh[freshKey(req.Name, i)] = true
	}
	h.mu.Unlock()
	return nil
}

func freshKey(vm string, disk int) string { return fmt.Sprintf("%s\x00%d", vm, disk) }

// checkExisting returns nil when a VM named name exists with shape want, an
// error wrapping draas.ErrConflict when it exists with another shape, and
// one wrapping draas.ErrNotFound when there is none.
func (h *Hypervisor) checkExisting(ctx context.Context, dc, name string, want draas.Shape) error {
	const op = "vsphere: create"
	v, err := h.lookupIn(ctx, op, dc, name)
	if err != nil {
		return err
	}
	if diff := shapeDiff(v.shape(), want); diff != "" {
		return opErrorKind(op, fmt.Sprintf("VM %q", name), draas.ErrConflict,
			fmt.Errorf("a VM of that name exists with another shape (%s); delete or rename it, or request its shape", diff))
	}
	return nil
}

// configSpec builds the configuration of a new VM.
func (h *Hypervisor) configSpec(ctx context.Context, name string, s draas.Shape, p *placement) (types.VirtualMachineConfigSpec, error) {
	spec := types.VirtualMachineConfigSpec{
		Name:     name,
		GuestId:  cmp.Or(h.opts.GuestID, "otherGuest64"),
		NumCPUs:  int32(s.CPUs),
		MemoryMB: s.MemoryMiB,
		Firmware: s.Firmware,
		Files:    &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", p.dsName)},
	}
	add := func(d types.BaseVirtualDevice, op types.VirtualDeviceConfigSpecFileOperation) {
		spec.DeviceChange = append(spec.DeviceChange, &types.VirtualDeviceConfigSpec{
			Operation: types.VirtualDeviceConfigSpecOperationAdd, FileOperation: op, Device: d,
		})
	}
	nControllers := max(1, (len(s.Disks)+unitsPerController-1)/unitsPerController)
	for c := range nControllers {
		ctrl := h.scsiController(int32(c))
		add(ctrl, "")
		for u := range unitsPerController {
			i := c*unitsPerController + u
			if i >= len(s.Disks) {
				break
			}
			unit := int32(u)
			if unit >= 7 {
				unit++ // unit 7 is the controller's own
			}
			ds := p.ds.Reference()
			add(&types.VirtualDisk{
				VirtualDevice: types.VirtualDevice{
					Key:           -int32(1000 + i),
					ControllerKey: ctrl.GetVirtualDevice().Key,
					UnitNumber:    &unit,
					Backing: &types.VirtualDiskFlatVer2BackingInfo{
						VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{
							FileName:  fmt.Sprintf("[%s]", p.dsName),
							Datastore: &ds,
						},
						DiskMode:        string(types.VirtualDiskModePersistent),
						ThinProvisioned: types.NewBool(true),
					},
				},
				CapacityInBytes: s.Disks[i].Size,
				CapacityInKB:    s.Disks[i].Size / 1024,
			}, types.VirtualDeviceConfigSpecFileOperationCreate)
		}
	}
	backing, err := p.network.EthernetCardBackingInfo(ctx)
	if err != nil {
		return spec, fmt.Errorf("network %q: %w", p.netName, err)
	}
	nic, err := object.EthernetCardTypes().CreateEthernetCard(cmp.Or(h.opts.NetworkAdapter, "vmxnet3"), backing)
	if err != nil {
		return spec, err
	}
	nic.GetVirtualDevice().Key = -2000
	add(nic, "")
	return spec, nil
}

func (h *Hypervisor) scsiController(bus int32) types.BaseVirtualDevice {
	c := types.VirtualSCSIController{
		VirtualController: types.VirtualController{
			VirtualDevice: types.VirtualDevice{Key: -100 - bus},
			BusNumber:     bus,
		},
		SharedBus: types.VirtualSCSISharingNoSharing,
	}
	if h.opts.SCSIController == "lsilogic" {
		return &types.VirtualLsiLogicController{VirtualSCSIController: c}
	}
	return &types.ParaVirtualSCSIController{VirtualSCSIController: c}
}

// Reconfigure changes the named VM's CPUs and memory; a zero value leaves
// that setting as it is. Unless the VM supports hot-add, it must be powered
// off (draas.ErrConflict otherwise).
func (h *Hypervisor) Reconfigure(ctx context.Context, name string, cpus int, memoryMiB int64) error {
	const op = "vsphere: reconfigure"
	if cpus < 0 || memoryMiB < 0 {
		return draas.Invalidf("vsphere: reconfigure VM %q: %d CPUs and %d MiB; use positive values, or 0 to keep a setting", name, cpus, memoryMiB)
	}
	v, err := h.lookup(ctx, op, name)
	if err != nil {
		return err
	}
	var spec types.VirtualMachineConfigSpec
	if cpus > 0 && int32(cpus) != v.mo.Config.Hardware.NumCPU {
		spec.NumCPUs = int32(cpus)
	}
	if memoryMiB > 0 && int32(memoryMiB) != v.mo.Config.Hardware.MemoryMB {
		spec.MemoryMB = memoryMiB
	}
	if spec.NumCPUs == 0 && spec.MemoryMB == 0 {
		return nil
	}
	return h.reconfigure(ctx, op, v, spec)
}

func (h *Hypervisor) reconfigure(ctx context.Context, op string, v *vmInfo, spec types.VirtualMachineConfigSpec) error {
	task, err := v.obj.Reconfigure(ctx, spec)
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		if fault.Is(err, &types.InvalidPowerState{}) {
			return opErrorKind(op, fmt.Sprintf("VM %q", v.name), draas.ErrConflict, fmt.Errorf("%w; power the VM off first", err))
		}
		return opError(op, fmt.Sprintf("VM %q", v.name), err)
	}
	return nil
}

// SetChangeTracking turns Changed Block Tracking (CBT) of the named VM's
// disks on or off. With CBT on, the sources of [Hypervisor.ReadDisk] and
// [Hypervisor.BackupDisks] are draas.ChangeTracker and draas.ExtentSource
// values. vSphere starts tracking at the VM's next stun/unstun cycle (a power
// on, or a snapshot being taken and removed), so the first backup after
// enabling it is a full one; turning it off discards all change IDs.
func (h *Hypervisor) SetChangeTracking(ctx context.Context, name string, enabled bool) error {
	const op = "vsphere: set change tracking of"
	v, err := h.lookup(ctx, op, name)
	if err != nil {
		return err
	}
	if v.mo.Config.ChangeTrackingEnabled != nil && *v.mo.Config.ChangeTrackingEnabled == enabled {
		return nil
	}
	return h.reconfigure(ctx, op, v, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: &enabled})
}

// resetChangeTracking discards the change IDs of v's disks by turning CBT
// off and on, after its disks were written behind the back of the tracker.
func (h *Hypervisor) resetChangeTracking(ctx context.Context, op string, v *vmInfo) error {
	if !cbtEnabled(v.mo.Config) {
		return nil
	}
	for _, on := range []bool{false, true} {
		if err := h.reconfigure(ctx, op, v, types.VirtualMachineConfigSpec{ChangeTrackingEnabled: &on}); err != nil {
			return err
		}
	}
	return nil
}

func cbtEnabled(c *types.VirtualMachineConfigInfo) bool {
	return c != nil && c.ChangeTrackingEnabled != nil && *c.ChangeTrackingEnabled
}

// PowerOn powers the named VM on and waits until it is on. A powered-on VM
// is not an error; a suspended one is resumed. An unknown VM fails with
// draas.ErrNotFound.
func (h *Hypervisor) PowerOn(ctx context.Context, name string) error {
	return h.power(ctx, "vsphere: power on", name, types.VirtualMachinePowerStatePoweredOn)
}

// PowerOff powers the named VM off, as pulling the plug would (no guest
// shutdown), and waits until it is off. A powered-off VM is not an error.
// An unknown VM fails with draas.ErrNotFound.
func (h *Hypervisor) PowerOff(ctx context.Context, name string) error {
	return h.power(ctx, "vsphere: power off", name, types.VirtualMachinePowerStatePoweredOff)
}

func (h *Hypervisor) power(ctx context.Context, op, name string, want types.VirtualMachinePowerState) error {
	v, err := h.lookup(ctx, op, name)
	if err != nil {
		return err
	}
	if v.mo.Runtime.PowerState == want {
		return nil
	}
	var task *object.Task
	if want == types.VirtualMachinePowerStatePoweredOn {
		task, err = v.obj.PowerOn(ctx)
	} else {
		task, err = v.obj.PowerOff(ctx)
	}
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil && fault.Is(err, &types.InvalidPowerState{}) {
		// Changed concurrently: fine if it reached the wanted state.
		if state, serr := v.obj.PowerState(ctx); serr == nil && state == want {
			return nil
		}
	}
	return opError(op, fmt.Sprintf("VM %q", name), err)
}
