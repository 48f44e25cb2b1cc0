package draastest

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"

	"github.com/opendraas/draas"
)

// GiB is a gibibyte, the unit of EBS volume sizes.
const GiB = 1 << 30

// instanceTypes is the instance-type table of a [Cloud].
var instanceTypes = map[string]struct {
	cpus      int
	memoryMiB int64
}{
	"t3.micro":   {2, 1024},
	"t3.small":   {2, 2048},
	"t3.medium":  {2, 4096},
	"m5.large":   {2, 8192},
	"m5.xlarge":  {4, 16384},
	"m5.2xlarge": {8, 32768},
	"c5.large":   {2, 4096},
	"c5.xlarge":  {4, 8192},
	"c5.2xlarge": {8, 16384},
	"r5.large":   {2, 16384},
	"r5.xlarge":  {4, 32768},
}

// Cloud is an in-memory draas.InstanceLauncher that models EC2: snapshots
// registered with [Cloud.AddSnapshot], volumes made from them, and instances
// with the lifecycle pending → running → stopping → stopped and
// shutting-down → terminated. Create calls are idempotent through client
// tokens: a repeated token returns the resource it made first, and the same
// token with different parameters fails with draas.ErrConflict, as EC2's
// IdempotentParameterMismatch does.
//
// Instance types are t3.micro, t3.small, t3.medium, m5.large, m5.xlarge,
// m5.2xlarge, c5.large, c5.xlarge, c5.2xlarge, r5.large and r5.xlarge, with
// their real CPU and memory sizes; others fail with draas.ErrInvalid. A
// volume is as large as its snapshot rounded up to whole GiB (or larger when
// asked) and holds an independent copy of the snapshot's content. A launch
// without RootVolumeID gets an empty 8 GiB root volume that is deleted when
// the instance terminates; volumes given in the request are detached and left
// available, so a DR copy's volume survives a terminated drill instance.
// Terminated instances stay visible with state "terminated".
//
// Every method counts its call and is subject to the [Faults] (named by the
// method: "CreateVolume", "Launch", ...). All methods are safe for concurrent
// use.
type Cloud struct {
	faults *Faults

	mu         sync.Mutex
	snapshots  map[string]*Disk
	volumes    map[string]*volume
	instances  map[string]*instance
	volTokens  map[string]volumeToken
	instTokens map[string]instanceToken
	tags       map[string]map[string]string
	nextID     int
}

type volume struct {
	info Volume
	disk *Disk
	// deleteOnTermination is set on root volumes made from an image.
	deleteOnTermination bool
}

type instance struct {
	inst    draas.Instance
	history []string
}

type volumeToken struct {
	id  string
	req draas.VolumeRequest
}

type instanceToken struct {
	id  string
	req draas.LaunchRequest
}

var _ draas.InstanceLauncher = (*Cloud)(nil)

// Volume describes a volume of a [Cloud].
type Volume struct {
	ID               string
	SnapshotID       string // empty for a root volume made from an image
	AvailabilityZone string
	VolumeType       string
	SizeGiB          int32
	// State is "available", "in-use" or "deleted".
	State string
	// AttachedTo is the instance ID when State is "in-use".
	AttachedTo string
}

// NewCloud returns an empty cloud subject to the faults f; nil means a fresh
// Faults, available from [Cloud.Faults].
func NewCloud(f *Faults) *Cloud {
	if f == nil {
		f = new(Faults)
	}
	return &Cloud{
		faults:     f,
		snapshots:  map[string]*Disk{},
		volumes:    map[string]*volume{},
		instances:  map[string]*instance{},
		volTokens:  map[string]volumeToken{},
		instTokens: map[string]instanceToken{},
		tags:       map[string]map[string]string{},
	}
}

// Faults returns the faults the cloud is subject to, for configuring them
// and counting calls.
func (c *Cloud) Faults() *Faults { return c.faults }

// Calls returns the number of calls of the method op so far.
func (c *Cloud) Calls(op string) int { return c.faults.Calls(op) }

// AddSnapshot registers d as the completed snapshot id, from which
// CreateVolume makes volumes. Later changes to d do not affect volumes
// already made.
func (c *Cloud) AddSnapshot(id string, d *Disk) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.snapshots[id] = d
}

// CreateVolume makes a volume from req.SnapshotID and returns its ID once it
// is available. An unknown snapshot fails with draas.ErrNotFound; a SizeGiB
// smaller than the snapshot with draas.ErrInvalid.
func (c *Cloud) CreateVolume(ctx context.Context, req draas.VolumeRequest) (string, error) {
	if err := c.faults.Inject(ctx, "CreateVolume"); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if req.ClientToken != "" {
		if t, ok := c.volTokens[req.ClientToken]; ok {
			if !sameVolumeRequest(t.req, req) {
				return "", &draas.OpError{Op: "CreateVolume", Resource: "client token " + req.ClientToken, Kind: draas.ErrConflict,
					Err: fmt.Errorf("token already used for a different request (snapshot %s)", t.req.SnapshotID)}
			}
			return t.id, nil
		}
	}
	snap, ok := c.snapshots[req.SnapshotID]
	if !ok {
		return "", &draas.OpError{Op: "CreateVolume", Resource: "snapshot " + req.SnapshotID, Kind: draas.ErrNotFound}
	}
	size := max((snap.Size()+GiB-1)/GiB, 1)
	if req.SizeGiB != 0 {
		if int64(req.SizeGiB) < size {
			return "", draas.Invalidf("CreateVolume from snapshot %s: SizeGiB %d is smaller than the snapshot's %d GiB; ask for at least that or 0", req.SnapshotID, req.SizeGiB, size)
		}
		size = int64(req.SizeGiB)
	}
	v := &volume{
		info: Volume{
			ID:               c.newID("vol"),
			SnapshotID:       req.SnapshotID,
			AvailabilityZone: cmp.Or(req.AvailabilityZone, "us-east-1a"),
			VolumeType:       cmp.Or(req.VolumeType, "gp3"),
			SizeGiB:          int32(size),
			State:            "available", // after "creating"; CreateVolume waits
		},
		disk: snap.CloneSize(size * GiB),
	}
	c.volumes[v.info.ID] = v
	c.tags[v.info.ID] = maps.Clone(req.Tags)
	if req.ClientToken != "" {
		c.volTokens[req.ClientToken] = volumeToken{v.info.ID, req}
	}
	return v.info.ID, nil
}

func sameVolumeRequest(a, b draas.VolumeRequest) bool {
	return a.SnapshotID == b.SnapshotID && a.AvailabilityZone == b.AvailabilityZone &&
		a.VolumeType == b.VolumeType && a.SizeGiB == b.SizeGiB
}

// DeleteVolume deletes a volume; a missing or already deleted volume is not
// an error, an attached one fails with draas.ErrConflict.
func (c *Cloud) DeleteVolume(ctx context.Context, volumeID string) error {
	if err := c.faults.Inject(ctx, "DeleteVolume"); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.volumes[volumeID]
	if !ok {
		return nil
	}
	if v.info.State == "in-use" {
		return &draas.OpError{Op: "DeleteVolume", Resource: volumeID, Kind: draas.ErrConflict,
			Err: fmt.Errorf("attached to %s; stop and terminate the instance first", v.info.AttachedTo)}
	}
	v.info.State = "deleted"
	return nil
}

// Launch creates an instance with the requested volumes attached, starts it
// and returns it running. The instance type must be in the table; the
// volumes must exist and be available (draas.ErrNotFound, draas.ErrConflict).
// A repeated ClientToken returns the instance as it is now.
func (c *Cloud) Launch(ctx context.Context, req draas.LaunchRequest) (draas.Instance, error) {
	if err := c.faults.Inject(ctx, "Launch"); err != nil {
		return draas.Instance{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if req.ClientToken != "" {
		if t, ok := c.instTokens[req.ClientToken]; ok {
			if !sameLaunchRequest(t.req, req) {
				return draas.Instance{}, &draas.OpError{Op: "RunInstances", Resource: "client token " + req.ClientToken, Kind: draas.ErrConflict,
					Err: fmt.Errorf("token already used for a different request (instance %s)", t.id)}
			}
			return cloneInstance(c.instances[t.id].inst), nil
		}
	}
	if _, ok := instanceTypes[req.InstanceType]; !ok {
		return draas.Instance{}, draas.Invalidf("launch %q: unknown instance type %q; use one of %v", req.Name, req.InstanceType, slices.Sorted(maps.Keys(instanceTypes)))
	}
	want := req.DataVolumeIDs
	if req.RootVolumeID != "" {
		want = append([]string{req.RootVolumeID}, want...)
	}
	seen := map[string]bool{}
	for _, id := range want {
		v, ok := c.volumes[id]
		switch {
		case seen[id]:
			return draas.Instance{}, draas.Invalidf("launch %q: volume %s requested twice", req.Name, id)
		case !ok || v.info.State == "deleted":
			return draas.Instance{}, &draas.OpError{Op: "RunInstances", Resource: "volume " + id, Kind: draas.ErrNotFound}
		case v.info.State != "available":
			return draas.Instance{}, &draas.OpError{Op: "RunInstances", Resource: "volume " + id, Kind: draas.ErrConflict,
				Err: fmt.Errorf("volume is %s (attached to %s)", v.info.State, v.info.AttachedTo)}
		}
		seen[id] = true
	}
	id := c.newID("i")
	var vols []string
	if req.RootVolumeID == "" {
		root := &volume{
			info: Volume{ID: c.newID("vol"), AvailabilityZone: "us-east-1a", VolumeType: "gp3", SizeGiB: 8, State: "available"},
			disk: NewDisk(8*GiB, DefaultBlockSize), deleteOnTermination: true,
		}
		c.volumes[root.info.ID] = root
		vols = append(vols, root.info.ID)
	}
	vols = append(vols, want...)
	for _, vid := range vols {
		v := c.volumes[vid]
		v.info.State, v.info.AttachedTo = "in-use", id
	}
	inst := &instance{
		inst: draas.Instance{
			ID:           id,
			InstanceType: req.InstanceType,
			State:        "running",
			PrivateIP:    cmp.Or(req.PrivateIP, fmt.Sprintf("10.0.%d.%d", c.nextID/250%250, c.nextID%250+4)),
			SubnetID:     cmp.Or(req.SubnetID, "subnet-default"),
			VolumeIDs:    vols,
		},
		history: []string{"pending", "running"},
	}
	c.instances[id] = inst
	tags := maps.Clone(req.Tags)
	if tags == nil {
		tags = map[string]string{}
	}
	if req.Name != "" {
		tags["Name"] = req.Name
	}
	c.tags[id] = tags
	if req.ClientToken != "" {
		c.instTokens[req.ClientToken] = instanceToken{id, req}
	}
	return cloneInstance(inst.inst), nil
}

func sameLaunchRequest(a, b draas.LaunchRequest) bool {
	return a.InstanceType == b.InstanceType && a.ImageID == b.ImageID && a.SubnetID == b.SubnetID &&
		a.RootVolumeID == b.RootVolumeID && slices.Equal(a.DataVolumeIDs, b.DataVolumeIDs) && a.PrivateIP == b.PrivateIP
}

// Status returns an instance's state; both status checks pass while it runs.
// An unknown instance fails with draas.ErrNotFound.
func (c *Cloud) Status(ctx context.Context, instanceID string) (draas.InstanceStatus, error) {
	if err := c.faults.Inject(ctx, "Status"); err != nil {
		return draas.InstanceStatus{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	inst, err := c.instance("DescribeInstanceStatus", instanceID)
	if err != nil {
		return draas.InstanceStatus{}, err
	}
	running := inst.inst.State == "running"
	return draas.InstanceStatus{State: inst.inst.State, SystemOK: running, InstanceOK: running}, nil
}

// Stop stops a running instance and returns once it is stopped; stopping a
// stopped instance is not an error. An unknown instance fails with
// draas.ErrNotFound, a terminated one with draas.ErrConflict.
func (c *Cloud) Stop(ctx context.Context, instanceID string) error {
	if err := c.faults.Inject(ctx, "Stop"); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	inst, err := c.instance("StopInstances", instanceID)
	if err != nil {
		return err
	}
	switch inst.inst.State {
	case "stopped":
		return nil
	case "terminated":
		return &draas.OpError{Op: "StopInstances", Resource: instanceID, Kind: draas.ErrConflict, Err: fmt.Errorf("instance is terminated")}
	}
	inst.setState("stopping", "stopped")
	return nil
}

// Terminate terminates an instance and returns once it is terminated; a
// missing or terminated instance is not an error.
func (c *Cloud) Terminate(ctx context.Context, instanceID string) error {
	if err := c.faults.Inject(ctx, "Terminate"); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	inst, ok := c.instances[instanceID]
	if !ok || inst.inst.State == "terminated" {
		return nil
	}
	inst.setState("shutting-down", "terminated")
	for _, vid := range inst.inst.VolumeIDs {
		v := c.volumes[vid]
		v.info.State, v.info.AttachedTo = "available", ""
		if v.deleteOnTermination {
			v.info.State = "deleted"
		}
	}
	return nil
}

// Shape returns the CPUs and memory of an instance's type and its volumes as
// disks named by volume ID, root first. An unknown instance fails with
// draas.ErrNotFound.
func (c *Cloud) Shape(ctx context.Context, instanceID string) (draas.Shape, error) {
	if err := c.faults.Inject(ctx, "Shape"); err != nil {
		return draas.Shape{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	inst, err := c.instance("DescribeInstances", instanceID)
	if err != nil {
		return draas.Shape{}, err
	}
	t := instanceTypes[inst.inst.InstanceType]
	shape := draas.Shape{CPUs: t.cpus, MemoryMiB: t.memoryMiB, Firmware: "bios"}
	for _, vid := range inst.inst.VolumeIDs {
		shape.Disks = append(shape.Disks, draas.Disk{Name: vid, Size: int64(c.volumes[vid].info.SizeGiB) * GiB})
	}
	return shape, nil
}

// instance returns the instance id or an error wrapping draas.ErrNotFound.
// c.mu is held.
func (c *Cloud) instance(op, id string) (*instance, error) {
	inst, ok := c.instances[id]
	if !ok {
		return nil, &draas.OpError{Op: op, Resource: "instance " + id, Kind: draas.ErrNotFound}
	}
	return inst, nil
}

func (i *instance) setState(states ...string) {
	i.history = append(i.history, states...)
	i.inst.State = states[len(states)-1]
}

// newID returns a new EC2-style ID with the given prefix. c.mu is held.
func (c *Cloud) newID(prefix string) string {
	c.nextID++
	return fmt.Sprintf("%s-%017x", prefix, c.nextID)
}

// Instance returns the instance with the given ID as it is now.
func (c *Cloud) Instance(id string) (draas.Instance, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	inst, ok := c.instances[id]
	if !ok {
		return draas.Instance{}, false
	}
	return cloneInstance(inst.inst), true
}

// Instances returns every instance, terminated ones included, sorted by ID.
func (c *Cloud) Instances() []draas.Instance {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []draas.Instance
	for _, inst := range c.instances {
		out = append(out, cloneInstance(inst.inst))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// History returns the states the instance went through, in order, e.g.
// [pending running stopping stopped].
func (c *Cloud) History(instanceID string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if inst, ok := c.instances[instanceID]; ok {
		return slices.Clone(inst.history)
	}
	return nil
}

// Volume returns the volume with the given ID, deleted ones included.
func (c *Cloud) Volume(id string) (Volume, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.volumes[id]
	if !ok {
		return Volume{}, false
	}
	return v.info, true
}

// Volumes returns every volume, deleted ones included, sorted by ID.
func (c *Cloud) Volumes() []Volume {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Volume
	for _, v := range c.volumes {
		out = append(out, v.info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// VolumeDisk returns the content of a volume that is not deleted, or an error
// wrapping draas.ErrNotFound.
func (c *Cloud) VolumeDisk(id string) (*Disk, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.volumes[id]
	if !ok || v.info.State == "deleted" {
		return nil, fmt.Errorf("draastest: volume %s: %w", id, draas.ErrNotFound)
	}
	return v.disk, nil
}

// Tags returns a copy of the tags of a volume or instance (an instance's
// includes "Name" when the launch request named it).
func (c *Cloud) Tags(resourceID string) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.tags[resourceID])
}

func cloneInstance(i draas.Instance) draas.Instance {
	i.VolumeIDs = slices.Clone(i.VolumeIDs)
	return i
}
