package draastest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/opendraas/draas"
)

// HypervisorBlockSize is the block size of the disks a [Hypervisor] creates
// and of the sinks its OpenDisk returns: 64 KiB, a VMDK grain.
const HypervisorBlockSize = 64 << 10

// Hypervisor is an in-memory draas.Hypervisor that models vSphere: VMs by
// name, each with a shape, a power state and a [Disk] per virtual disk.
//
// CreateVM makes a powered-off VM with empty disks; repeating it with the same
// shape is not an error, with another shape it fails with draas.ErrConflict.
// OpenDisk returns a [Sink] that writes into the VM's disk in place, as an
// NFC upload does: the VM must be powered off (draas.ErrConflict otherwise),
// Abort leaves what was written, and the sink needs zero writes when the disk
// held data when it was opened. ReadDisk returns the VM's live Disk. PowerOn
// and PowerOff are idempotent. Unknown VMs and disk indexes fail with
// draas.ErrNotFound.
//
// Every method counts its call and is subject to the [Faults] (named by the
// method: "CreateVM", "OpenDisk", ...). All methods are safe for concurrent
// use.
type Hypervisor struct {
	faults *Faults

	mu  sync.Mutex
	vms map[string]*vm
}

type vm struct {
	req     draas.VMRequest
	disks   []*Disk
	powered bool
}

var _ draas.Hypervisor = (*Hypervisor)(nil)

// NewHypervisor returns a hypervisor without VMs subject to the faults f; nil
// means a fresh Faults, available from [Hypervisor.Faults].
func NewHypervisor(f *Faults) *Hypervisor {
	if f == nil {
		f = new(Faults)
	}
	return &Hypervisor{faults: f, vms: map[string]*vm{}}
}

// Faults returns the faults the hypervisor is subject to, for configuring
// them and counting calls.
func (h *Hypervisor) Faults() *Faults { return h.faults }

// Calls returns the number of calls of the method op so far.
func (h *Hypervisor) Calls(op string) int { return h.faults.Calls(op) }

// AddVM adds a powered-off VM of the given shape whose disks hold disks (for
// example a protected VM to back up). disks must match shape.Disks in number
// and sizes; with no disks the VM gets empty ones. It fails with
// draas.ErrConflict when the name is taken and draas.ErrInvalid when the
// disks do not match.
func (h *Hypervisor) AddVM(name string, shape draas.Shape, disks ...*Disk) error {
	req := draas.VMRequest{Name: name, Shape: shape}
	if err := checkVMRequest(req); err != nil {
		return err
	}
	if disks == nil {
		disks = emptyDisks(shape)
	}
	if len(disks) != len(shape.Disks) {
		return draas.Invalidf("draastest: add VM %q: %d disks given for a shape with %d", name, len(disks), len(shape.Disks))
	}
	for i, d := range disks {
		if d.Size() != shape.Disks[i].Size {
			return draas.Invalidf("draastest: add VM %q: disk %d holds %d bytes, the shape says %d", name, i, d.Size(), shape.Disks[i].Size)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.vms[name]; ok {
		return fmt.Errorf("draastest: add VM %q: %w", name, draas.ErrConflict)
	}
	h.vms[name] = &vm{req: cloneVMRequest(req), disks: disks}
	return nil
}

func checkVMRequest(req draas.VMRequest) error {
	if req.Name == "" {
		return draas.Invalidf("draastest: VM without a name; set VMRequest.Name")
	}
	if req.Shape.CPUs <= 0 || req.Shape.MemoryMiB <= 0 {
		return draas.Invalidf("draastest: VM %q with %d CPUs and %d MiB; both must be positive", req.Name, req.Shape.CPUs, req.Shape.MemoryMiB)
	}
	for i, d := range req.Shape.Disks {
		if d.Size <= 0 {
			return draas.Invalidf("draastest: VM %q disk %d has size %d; it must be positive", req.Name, i, d.Size)
		}
	}
	return nil
}

func emptyDisks(shape draas.Shape) []*Disk {
	disks := make([]*Disk, len(shape.Disks))
	for i, d := range shape.Disks {
		disks[i] = NewDisk(d.Size, HypervisorBlockSize)
	}
	return disks
}

func cloneVMRequest(req draas.VMRequest) draas.VMRequest {
	req.Shape.Disks = slices.Clone(req.Shape.Disks)
	for i := range req.Shape.Disks {
		if req.Shape.Disks[i].Name == "" {
			req.Shape.Disks[i].Name = fmt.Sprintf("disk-%d", i)
		}
	}
	return req
}

// sameShape reports whether two shapes describe the same hardware; disk names
// are not compared, as the hypervisor names disks its own way.
func sameShape(a, b draas.Shape) bool {
	return a.CPUs == b.CPUs && a.MemoryMiB == b.MemoryMiB && a.Firmware == b.Firmware &&
		slices.EqualFunc(a.Disks, b.Disks, func(x, y draas.Disk) bool { return x.Size == y.Size })
}

// VMShape returns the shape of the named VM, its disks named "disk-0",
// "disk-1", ... unless the shape it was created with named them.
func (h *Hypervisor) VMShape(ctx context.Context, name string) (draas.Shape, error) {
	if err := h.faults.Inject(ctx, "VMShape"); err != nil {
		return draas.Shape{}, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	v, err := h.vm(name)
	if err != nil {
		return draas.Shape{}, err
	}
	return cloneVMRequest(v.req).Shape, nil
}

// CreateVM creates a powered-off VM with empty disks. Placement fields
// (Datacenter, Host, ...) are recorded but not checked.
func (h *Hypervisor) CreateVM(ctx context.Context, req draas.VMRequest) error {
	if err := h.faults.Inject(ctx, "CreateVM"); err != nil {
		return err
	}
	if err := checkVMRequest(req); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if v, ok := h.vms[req.Name]; ok {
		if !sameShape(v.req.Shape, req.Shape) {
			return fmt.Errorf("draastest: create VM %q: a VM of that name exists with another shape (%d CPUs, %d MiB, %d disks): %w",
				req.Name, v.req.Shape.CPUs, v.req.Shape.MemoryMiB, len(v.req.Shape.Disks), draas.ErrConflict)
		}
		return nil
	}
	h.vms[req.Name] = &vm{req: cloneVMRequest(req), disks: emptyDisks(req.Shape)}
	return nil
}

// OpenDisk returns a [Sink] writing the VM's i-th disk in place.
func (h *Hypervisor) OpenDisk(ctx context.Context, name string, disk int) (draas.VolumeSink, error) {
	if err := h.faults.Inject(ctx, "OpenDisk"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	d, err := h.disk(name, disk)
	if err != nil {
		return nil, err
	}
	if h.vms[name].powered {
		return nil, fmt.Errorf("draastest: open disk %d of VM %q for writing: the VM is powered on; power it off first: %w", disk, name, draas.ErrConflict)
	}
	return newSinkOn(d, d.StoredBlocks() > 0, true, fmt.Sprintf("draastest-vm://%s/disk-%d", name, disk)), nil
}

// ReadDisk returns the VM's i-th disk.
func (h *Hypervisor) ReadDisk(ctx context.Context, name string, disk int) (draas.BlockSource, error) {
	if err := h.faults.Inject(ctx, "ReadDisk"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.disk(name, disk)
}

// PowerOn powers the VM on; a powered-on VM is not an error.
func (h *Hypervisor) PowerOn(ctx context.Context, name string) error {
	return h.power(ctx, "PowerOn", name, true)
}

// PowerOff powers the VM off; a powered-off VM is not an error.
func (h *Hypervisor) PowerOff(ctx context.Context, name string) error {
	return h.power(ctx, "PowerOff", name, false)
}

func (h *Hypervisor) power(ctx context.Context, op, name string, on bool) error {
	if err := h.faults.Inject(ctx, op); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	v, err := h.vm(name)
	if err != nil {
		return err
	}
	v.powered = on
	return nil
}

// PoweredOn reports whether the named VM is powered on, or an error wrapping
// draas.ErrNotFound.
func (h *Hypervisor) PoweredOn(name string) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, err := h.vm(name)
	if err != nil {
		return false, err
	}
	return v.powered, nil
}

// Disk returns the VM's i-th disk, or an error wrapping draas.ErrNotFound.
func (h *Hypervisor) Disk(name string, disk int) (*Disk, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.disk(name, disk)
}

// VMs returns the names of all VMs, sorted.
func (h *Hypervisor) VMs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var names []string
	for name := range h.vms {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// vm returns the named VM or an error wrapping draas.ErrNotFound. h.mu is
// held.
func (h *Hypervisor) vm(name string) (*vm, error) {
	v, ok := h.vms[name]
	if !ok {
		return nil, fmt.Errorf("draastest: VM %q: %w", name, draas.ErrNotFound)
	}
	return v, nil
}

// disk returns a VM's disk or an error wrapping draas.ErrNotFound. h.mu is
// held.
func (h *Hypervisor) disk(name string, i int) (*Disk, error) {
	v, err := h.vm(name)
	if err != nil {
		return nil, err
	}
	if i < 0 || i >= len(v.disks) {
		return nil, fmt.Errorf("draastest: VM %q has %d disks, no disk %d: %w", name, len(v.disks), i, draas.ErrNotFound)
	}
	return v.disks[i], nil
}
