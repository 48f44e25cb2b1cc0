// Package ec2 implements draas.InstanceLauncher on Amazon EC2: volumes from
// DR copies, instances of a type in a subnet with the DR copy swapped in as
// their root volume, status checks, and instance shape lookup for failback.
// [Resolver] finds subnets and security groups by ID or by name, for plans
// that name them (the Launcher needs IDs).
//
// Every create call carries a client token, so a retried or resumed step
// returns the resource the first attempt made instead of a second one.
package ec2

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/internal/awserr"
	"github.com/opendraas/draas/aws/internal/ec2tags"
)

// API is the part of the EC2 client this package uses; *ec2.Client
// implements it.
type API interface {
	awsec2.DescribeInstancesAPIClient
	awsec2.DescribeVolumesAPIClient
	awsec2.DescribeInstanceStatusAPIClient
	awsec2.DescribeInstanceTypesAPIClient
	awsec2.DescribeSnapshotsAPIClient
	CreateVolume(ctx context.Context, in *awsec2.CreateVolumeInput, optFns ...func(*awsec2.Options)) (*awsec2.CreateVolumeOutput, error)
	DeleteVolume(ctx context.Context, in *awsec2.DeleteVolumeInput, optFns ...func(*awsec2.Options)) (*awsec2.DeleteVolumeOutput, error)
	AttachVolume(ctx context.Context, in *awsec2.AttachVolumeInput, optFns ...func(*awsec2.Options)) (*awsec2.AttachVolumeOutput, error)
	DetachVolume(ctx context.Context, in *awsec2.DetachVolumeInput, optFns ...func(*awsec2.Options)) (*awsec2.DetachVolumeOutput, error)
	RunInstances(ctx context.Context, in *awsec2.RunInstancesInput, optFns ...func(*awsec2.Options)) (*awsec2.RunInstancesOutput, error)
	StartInstances(ctx context.Context, in *awsec2.StartInstancesInput, optFns ...func(*awsec2.Options)) (*awsec2.StartInstancesOutput, error)
	StopInstances(ctx context.Context, in *awsec2.StopInstancesInput, optFns ...func(*awsec2.Options)) (*awsec2.StopInstancesOutput, error)
	TerminateInstances(ctx context.Context, in *awsec2.TerminateInstancesInput, optFns ...func(*awsec2.Options)) (*awsec2.TerminateInstancesOutput, error)
	CreateSnapshots(ctx context.Context, in *awsec2.CreateSnapshotsInput, optFns ...func(*awsec2.Options)) (*awsec2.CreateSnapshotsOutput, error)
	DeleteSnapshot(ctx context.Context, in *awsec2.DeleteSnapshotInput, optFns ...func(*awsec2.Options)) (*awsec2.DeleteSnapshotOutput, error)
	CreateTags(ctx context.Context, in *awsec2.CreateTagsInput, optFns ...func(*awsec2.Options)) (*awsec2.CreateTagsOutput, error)
}

// TagReplacedRoot marks the launch image's root volume that [Launcher.Launch]
// replaces with the DR copy; its value is the instance's ID. Launch tags the
// volume before detaching it, so that a launch interrupted or retried after
// the detach still finds it and deletes it.
const TagReplacedRoot = "draas:replaced-root-of"

var _ API = (*awsec2.Client)(nil)

// Options tunes a [Launcher]. The zero value is useful.
type Options struct {
	// VolumeType for new volumes; default "gp3".
	VolumeType string
	// ImageID is the image instances boot from before their root volume is
	// swapped for the DR copy, used when a LaunchRequest names none. It only
	// needs to match the DR copy's architecture and boot mode.
	ImageID string
	// SubnetID is the subnet for instances whose LaunchRequest names none.
	SubnetID string
	// AvailabilityZone is the zone for volumes whose VolumeRequest names
	// none; it must be the zone of the subnets instances launch in.
	AvailabilityZone string
	// WaitTimeout bounds each wait for a state; default 15 minutes.
	WaitTimeout time.Duration
	// PollInterval is the waiters' minimum delay; default 2s. Tests against
	// a simulator set it low.
	PollInterval time.Duration
}

// Launcher is a draas.InstanceLauncher on EC2.
type Launcher struct {
	api  API
	opts Options
}

var (
	_ draas.InstanceLauncher    = (*Launcher)(nil)
	_ draas.InstanceSnapshotter = (*Launcher)(nil)
)

// New returns a Launcher using api.
func New(api API, opts Options) *Launcher {
	if opts.VolumeType == "" {
		opts.VolumeType = "gp3"
	}
	if opts.WaitTimeout <= 0 {
		opts.WaitTimeout = 15 * time.Minute
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	return &Launcher{api: api, opts: opts}
}

// CreateVolume makes a volume from req.SnapshotID and waits until it is
// available.
func (l *Launcher) CreateVolume(ctx context.Context, req draas.VolumeRequest) (string, error) {
	az := cmp.Or(req.AvailabilityZone, l.opts.AvailabilityZone)
	if req.SnapshotID == "" || az == "" {
		return "", draas.Invalidf("ec2: CreateVolume needs a snapshot ID and an availability zone (got %q, %q): set them in the request or Options.AvailabilityZone", req.SnapshotID, az)
	}
	in := &awsec2.CreateVolumeInput{
		SnapshotId:        aws.String(req.SnapshotID),
		AvailabilityZone:  aws.String(az),
		VolumeType:        types.VolumeType(cmp.Or(req.VolumeType, l.opts.VolumeType)),
		TagSpecifications: ec2tags.Spec(types.ResourceTypeVolume, req.Tags),
	}
	if req.SizeGiB > 0 {
		in.Size = aws.Int32(req.SizeGiB)
	}
	if req.ClientToken != "" {
		in.ClientToken = aws.String(req.ClientToken)
	}
	out, err := l.api.CreateVolume(ctx, in)
	if err != nil {
		return "", awserr.Wrap("CreateVolume", "from "+req.SnapshotID, err)
	}
	id := aws.ToString(out.VolumeId)
	w := awsec2.NewVolumeAvailableWaiter(l.api, func(o *awsec2.VolumeAvailableWaiterOptions) { o.MinDelay = l.opts.PollInterval })
	if err := w.Wait(ctx, &awsec2.DescribeVolumesInput{VolumeIds: []string{id}}, l.opts.WaitTimeout); err != nil {
		return id, awserr.Wrap("wait volume available", id, err)
	}
	return id, nil
}

// DeleteVolume deletes a volume; a missing one is not an error.
func (l *Launcher) DeleteVolume(ctx context.Context, volumeID string) error {
	_, err := l.api.DeleteVolume(ctx, &awsec2.DeleteVolumeInput{VolumeId: aws.String(volumeID)})
	if err != nil {
		err = awserr.Wrap("DeleteVolume", volumeID, err)
		if errors.Is(err, draas.ErrNotFound) {
			return nil
		}
	}
	return err
}

// Launch runs an instance, stops it, swaps req.RootVolumeID in as its root
// volume (deleting the image's root volume), attaches the data volumes in
// order, starts it and waits until it runs. The image's root volume is
// tagged [TagReplacedRoot] before it is detached, and every Launch of the
// instance deletes the volumes so tagged: a launch cut short between the
// detach and the delete leaves it for the next call with the same
// ClientToken to remove. The subnet and security groups
// are IDs; when EC2 knows no such ID, the error says how to resolve a name
// (see [Resolver]). Each stage checks the state
// first, so a launch interrupted at any point and called again with the same
// ClientToken finishes the same instance.
func (l *Launcher) Launch(ctx context.Context, req draas.LaunchRequest) (draas.Instance, error) {
	image := cmp.Or(req.ImageID, l.opts.ImageID)
	subnet := cmp.Or(req.SubnetID, l.opts.SubnetID)
	if req.InstanceType == "" || subnet == "" || image == "" {
		return draas.Instance{}, draas.Invalidf("ec2: Launch %q needs an instance type, a subnet and an image (got %q, %q, %q): set them in the plan or in Options.SubnetID and Options.ImageID", req.Name, req.InstanceType, subnet, image)
	}
	tags := map[string]string{}
	for k, v := range req.Tags {
		tags[k] = v
	}
	if req.Name != "" {
		tags["Name"] = req.Name
	}
	in := &awsec2.RunInstancesInput{
		ImageId:           aws.String(image),
		InstanceType:      types.InstanceType(req.InstanceType),
		MinCount:          aws.Int32(1),
		MaxCount:          aws.Int32(1),
		SubnetId:          aws.String(subnet),
		SecurityGroupIds:  req.SecurityGroupIDs,
		TagSpecifications: append(ec2tags.Spec(types.ResourceTypeInstance, tags), ec2tags.Spec(types.ResourceTypeVolume, tags)...),
	}
	if req.PrivateIP != "" {
		in.PrivateIpAddress = aws.String(req.PrivateIP)
	}
	if len(req.UserData) > 0 {
		in.UserData = aws.String(base64.StdEncoding.EncodeToString(req.UserData))
	}
	if req.ClientToken != "" {
		in.ClientToken = aws.String(req.ClientToken)
	}
	out, err := l.api.RunInstances(ctx, in)
	if err != nil {
		return draas.Instance{}, launchError(req, subnet, err)
	}
	if len(out.Instances) != 1 {
		return draas.Instance{}, fmt.Errorf("ec2: RunInstances %s returned %d instances, want 1", req.Name, len(out.Instances))
	}
	id := aws.ToString(out.Instances[0].InstanceId)
	inst, err := l.settle(ctx, id)
	if err != nil {
		return draas.Instance{}, err
	}
	// A launch resumed after a crash may find the instance stopped half-way
	// through the swap: finish it from whatever state it is in.
	if needsSwap(inst, req) {
		if inst, err = l.swapVolumes(ctx, inst, req); err != nil {
			return draas.Instance{}, err
		}
	}
	if err := l.deleteReplaced(ctx, id); err != nil {
		return draas.Instance{}, err
	}
	if inst.State == nil || inst.State.Name != types.InstanceStateNameRunning {
		if _, err := l.api.StartInstances(ctx, &awsec2.StartInstancesInput{InstanceIds: []string{id}}); err != nil {
			return draas.Instance{}, awserr.Wrap("StartInstances", id, err)
		}
		if err := l.waitRunning(ctx, id); err != nil {
			return draas.Instance{}, err
		}
		if inst, err = l.describe(ctx, id); err != nil {
			return draas.Instance{}, err
		}
	}
	return toInstance(inst), nil
}

// settle waits for an instance in a transitional state (pending, stopping)
// to reach the state it is heading for, and returns it.
func (l *Launcher) settle(ctx context.Context, id string) (types.Instance, error) {
	inst, err := l.describe(ctx, id)
	if err != nil {
		return inst, err
	}
	if inst.State != nil {
		switch inst.State.Name {
		case types.InstanceStateNamePending:
			err = l.waitRunning(ctx, id)
		case types.InstanceStateNameStopping:
			w := awsec2.NewInstanceStoppedWaiter(l.api, func(o *awsec2.InstanceStoppedWaiterOptions) { o.MinDelay = l.opts.PollInterval })
			err = awserr.Wrap("wait instance stopped", id, w.Wait(ctx, &awsec2.DescribeInstancesInput{InstanceIds: []string{id}}, l.opts.WaitTimeout))
		case types.InstanceStateNameShuttingDown, types.InstanceStateNameTerminated:
			return inst, &draas.OpError{Op: "Launch", Resource: id, Kind: draas.ErrConflict,
				Err: fmt.Errorf("instance is %s; a launch with a new client token makes a new one", inst.State.Name)}
		}
		if err != nil {
			return inst, err
		}
		return l.describe(ctx, id)
	}
	return inst, nil
}

// wanted returns the volume req wants at each device of inst.
func wanted(inst types.Instance, req draas.LaunchRequest) map[string]string {
	want := map[string]string{}
	if req.RootVolumeID != "" {
		want[aws.ToString(inst.RootDeviceName)] = req.RootVolumeID
	}
	for i, v := range req.DataVolumeIDs {
		want[dataDevice(i)] = v
	}
	return want
}

func attachedVolumes(inst types.Instance) map[string]string {
	attached := map[string]string{} // device -> volume
	for _, m := range inst.BlockDeviceMappings {
		if m.Ebs != nil {
			attached[aws.ToString(m.DeviceName)] = aws.ToString(m.Ebs.VolumeId)
		}
	}
	return attached
}

func needsSwap(inst types.Instance, req draas.LaunchRequest) bool {
	attached := attachedVolumes(inst)
	for dev, v := range wanted(inst, req) {
		if attached[dev] != v {
			return true
		}
	}
	return false
}

// swapVolumes stops the instance and makes req's volumes its disks; the
// caller starts it again.
func (l *Launcher) swapVolumes(ctx context.Context, inst types.Instance, req draas.LaunchRequest) (types.Instance, error) {
	id := aws.ToString(inst.InstanceId)
	rootDev := aws.ToString(inst.RootDeviceName)
	attached := attachedVolumes(inst)
	want := wanted(inst, req)
	if err := l.Stop(ctx, id); err != nil {
		return inst, err
	}
	devs := make([]string, 0, len(want))
	for dev := range want {
		devs = append(devs, dev)
	}
	slices.Sort(devs)
	for _, dev := range devs {
		v := want[dev]
		if old := attached[dev]; old != "" && old != v {
			if dev == rootDev {
				// Recorded before the detach: once detached, only the tag
				// says whose root it was (deleteReplaced).
				if _, err := l.api.CreateTags(ctx, &awsec2.CreateTagsInput{
					Resources: []string{old},
					Tags:      []types.Tag{{Key: aws.String(TagReplacedRoot), Value: aws.String(id)}},
				}); err != nil {
					return inst, awserr.Wrap("CreateTags", old, err)
				}
			}
			if _, err := l.api.DetachVolume(ctx, &awsec2.DetachVolumeInput{VolumeId: aws.String(old), InstanceId: aws.String(id)}); err != nil && !errors.Is(awserr.Wrap("", "", err), draas.ErrNotFound) {
				return inst, awserr.Wrap("DetachVolume", old+" from "+id, err)
			}
			if err := l.waitVolume(ctx, old, "available"); err != nil {
				return inst, err
			}
			if dev == rootDev {
				// The image's root volume is ours to remove.
				if err := l.DeleteVolume(ctx, old); err != nil {
					return inst, err
				}
			}
		}
		if attached[dev] != v {
			if _, err := l.api.AttachVolume(ctx, &awsec2.AttachVolumeInput{VolumeId: aws.String(v), InstanceId: aws.String(id), Device: aws.String(dev)}); err != nil {
				return inst, awserr.Wrap("AttachVolume", v+" to "+id+" at "+dev, err)
			}
			if err := l.waitVolume(ctx, v, "in-use"); err != nil {
				return inst, err
			}
		}
	}
	return l.describe(ctx, id)
}

// deleteReplaced deletes the image root volumes swapped out of instance id
// (tagged TagReplacedRoot) that an earlier, interrupted attempt left,
// waiting for one still detaching.
func (l *Launcher) deleteReplaced(ctx context.Context, id string) error {
	vols, err := l.volumes(ctx, map[string]string{TagReplacedRoot: id})
	if err != nil {
		return err
	}
	for _, v := range vols {
		vid := aws.ToString(v.VolumeId)
		switch v.State {
		case types.VolumeStateDeleting, types.VolumeStateDeleted:
			continue
		case types.VolumeStateInUse:
			if err := l.waitVolume(ctx, vid, "available"); err != nil {
				return err
			}
		}
		if err := l.DeleteVolume(ctx, vid); err != nil {
			return fmt.Errorf("ec2: delete the image root volume %s replaced in %s: %w", vid, id, err)
		}
	}
	return nil
}

// volumes lists the volumes carrying every tag in tags.
func (l *Launcher) volumes(ctx context.Context, tags map[string]string) ([]types.Volume, error) {
	var out []types.Volume
	p := awsec2.NewDescribeVolumesPaginator(l.api, &awsec2.DescribeVolumesInput{Filters: tagFilters(tags)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, awserr.Wrap("DescribeVolumes", filterString(tags), err)
		}
		out = append(out, page.Volumes...)
	}
	return out, nil
}

// AvailableVolumes returns the IDs of the volumes that carry every tag in
// tags and are available (attached to no instance), in ID order. With no
// tags it is an error wrapping [draas.ErrInvalid]: it never lists a whole
// account.
func (l *Launcher) AvailableVolumes(ctx context.Context, tags map[string]string) ([]string, error) {
	if len(tags) == 0 {
		return nil, draas.Invalidf("ec2: AvailableVolumes needs at least one tag")
	}
	vols, err := l.volumes(ctx, tags)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, v := range vols {
		if v.State == types.VolumeStateAvailable {
			ids = append(ids, aws.ToString(v.VolumeId))
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// RunningInstances returns the instances that carry every tag in tags and
// are pending or running, each with all its tags, by instance ID. With no
// tags it is an error wrapping [draas.ErrInvalid].
func (l *Launcher) RunningInstances(ctx context.Context, tags map[string]string) (map[string]map[string]string, error) {
	if len(tags) == 0 {
		return nil, draas.Invalidf("ec2: RunningInstances needs at least one tag")
	}
	in := &awsec2.DescribeInstancesInput{Filters: append(tagFilters(tags), types.Filter{
		Name: aws.String("instance-state-name"), Values: []string{"pending", "running"},
	})}
	out := map[string]map[string]string{}
	p := awsec2.NewDescribeInstancesPaginator(l.api, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, awserr.Wrap("DescribeInstances", filterString(tags), err)
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				if i.State == nil || (i.State.Name != types.InstanceStateNamePending && i.State.Name != types.InstanceStateNameRunning) {
					continue
				}
				t := map[string]string{}
				for _, tag := range i.Tags {
					t[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
				}
				out[aws.ToString(i.InstanceId)] = t
			}
		}
	}
	return out, nil
}

// tagFilters returns a tag:KEY filter for each tag, in key order.
func tagFilters(tags map[string]string) []types.Filter {
	keys := slices.Sorted(maps.Keys(tags))
	fs := make([]types.Filter, len(keys))
	for i, k := range keys {
		fs[i] = types.Filter{Name: aws.String("tag:" + k), Values: []string{tags[k]}}
	}
	return fs
}

func filterString(tags map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(tags)) {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(k + "=" + tags[k])
	}
	return "tagged " + b.String()
}

// dataDevice names the i-th data volume's device: /dev/sdf, /dev/sdg, ...
func dataDevice(i int) string { return "/dev/sd" + string(rune('f'+i)) }

func (l *Launcher) waitVolume(ctx context.Context, id, state string) error {
	in := &awsec2.DescribeVolumesInput{VolumeIds: []string{id}}
	var err error
	switch state {
	case "available":
		err = awsec2.NewVolumeAvailableWaiter(l.api, func(o *awsec2.VolumeAvailableWaiterOptions) { o.MinDelay = l.opts.PollInterval }).Wait(ctx, in, l.opts.WaitTimeout)
	default:
		err = awsec2.NewVolumeInUseWaiter(l.api, func(o *awsec2.VolumeInUseWaiterOptions) { o.MinDelay = l.opts.PollInterval }).Wait(ctx, in, l.opts.WaitTimeout)
	}
	return awserr.Wrap("wait volume "+state, id, err)
}

func (l *Launcher) waitRunning(ctx context.Context, id string) error {
	w := awsec2.NewInstanceRunningWaiter(l.api, func(o *awsec2.InstanceRunningWaiterOptions) { o.MinDelay = l.opts.PollInterval })
	return awserr.Wrap("wait instance running", id, w.Wait(ctx, &awsec2.DescribeInstancesInput{InstanceIds: []string{id}}, l.opts.WaitTimeout))
}

func (l *Launcher) describe(ctx context.Context, id string) (types.Instance, error) {
	out, err := l.api.DescribeInstances(ctx, &awsec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		return types.Instance{}, awserr.Wrap("DescribeInstances", id, err)
	}
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			if aws.ToString(i.InstanceId) == id {
				return i, nil
			}
		}
	}
	return types.Instance{}, &draas.OpError{Op: "DescribeInstances", Resource: id, Kind: draas.ErrNotFound}
}

func toInstance(i types.Instance) draas.Instance {
	out := draas.Instance{
		ID:           aws.ToString(i.InstanceId),
		InstanceType: string(i.InstanceType),
		PrivateIP:    aws.ToString(i.PrivateIpAddress),
		SubnetID:     aws.ToString(i.SubnetId),
	}
	if i.State != nil {
		out.State = string(i.State.Name)
	}
	for _, d := range devices(i) {
		out.VolumeIDs = append(out.VolumeIDs, d.vol)
	}
	return out
}

type device struct{ name, vol string }

// devices returns the instance's EBS volumes, the root first, then by
// device name.
func devices(inst types.Instance) []device {
	var devs []device
	root := aws.ToString(inst.RootDeviceName)
	for _, m := range inst.BlockDeviceMappings {
		if m.Ebs != nil {
			devs = append(devs, device{aws.ToString(m.DeviceName), aws.ToString(m.Ebs.VolumeId)})
		}
	}
	slices.SortFunc(devs, func(a, b device) int {
		if (a.name == root) != (b.name == root) {
			if a.name == root {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	return devs
}

// Status returns the instance's state and its two status checks.
func (l *Launcher) Status(ctx context.Context, instanceID string) (draas.InstanceStatus, error) {
	out, err := l.api.DescribeInstanceStatus(ctx, &awsec2.DescribeInstanceStatusInput{InstanceIds: []string{instanceID}, IncludeAllInstances: aws.Bool(true)})
	if err != nil {
		return draas.InstanceStatus{}, awserr.Wrap("DescribeInstanceStatus", instanceID, err)
	}
	for _, s := range out.InstanceStatuses {
		if aws.ToString(s.InstanceId) != instanceID {
			continue
		}
		st := draas.InstanceStatus{}
		if s.InstanceState != nil {
			st.State = string(s.InstanceState.Name)
		}
		st.SystemOK = s.SystemStatus != nil && s.SystemStatus.Status == types.SummaryStatusOk
		st.InstanceOK = s.InstanceStatus != nil && s.InstanceStatus.Status == types.SummaryStatusOk
		return st, nil
	}
	return draas.InstanceStatus{}, &draas.OpError{Op: "DescribeInstanceStatus", Resource: instanceID, Kind: draas.ErrNotFound}
}

// Stop stops the instance and waits until it is stopped.
func (l *Launcher) Stop(ctx context.Context, instanceID string) error {
	if _, err := l.api.StopInstances(ctx, &awsec2.StopInstancesInput{InstanceIds: []string{instanceID}}); err != nil {
		return awserr.Wrap("StopInstances", instanceID, err)
	}
	w := awsec2.NewInstanceStoppedWaiter(l.api, func(o *awsec2.InstanceStoppedWaiterOptions) { o.MinDelay = l.opts.PollInterval })
	return awserr.Wrap("wait instance stopped", instanceID, w.Wait(ctx, &awsec2.DescribeInstancesInput{InstanceIds: []string{instanceID}}, l.opts.WaitTimeout))
}

// Terminate terminates the instance and waits until it is gone; a missing
// instance is not an error.
func (l *Launcher) Terminate(ctx context.Context, instanceID string) error {
	if _, err := l.api.TerminateInstances(ctx, &awsec2.TerminateInstancesInput{InstanceIds: []string{instanceID}}); err != nil {
		err = awserr.Wrap("TerminateInstances", instanceID, err)
		if errors.Is(err, draas.ErrNotFound) {
			return nil
		}
		return err
	}
	w := awsec2.NewInstanceTerminatedWaiter(l.api, func(o *awsec2.InstanceTerminatedWaiterOptions) { o.MinDelay = l.opts.PollInterval })
	return awserr.Wrap("wait instance terminated", instanceID, w.Wait(ctx, &awsec2.DescribeInstancesInput{InstanceIds: []string{instanceID}}, l.opts.WaitTimeout))
}

// Shape returns the instance's vCPUs and memory (from its instance type)
// and its volumes in device order, the root volume first.
func (l *Launcher) Shape(ctx context.Context, instanceID string) (draas.Shape, error) {
	inst, err := l.describe(ctx, instanceID)
	if err != nil {
		return draas.Shape{}, err
	}
	it, err := l.api.DescribeInstanceTypes(ctx, &awsec2.DescribeInstanceTypesInput{InstanceTypes: []types.InstanceType{inst.InstanceType}})
	if err != nil {
		return draas.Shape{}, awserr.Wrap("DescribeInstanceTypes", string(inst.InstanceType), err)
	}
	if len(it.InstanceTypes) != 1 {
		return draas.Shape{}, &draas.OpError{Op: "DescribeInstanceTypes", Resource: string(inst.InstanceType), Kind: draas.ErrNotFound}
	}
	info := it.InstanceTypes[0]
	shape := draas.Shape{Firmware: "bios"}
	if info.VCpuInfo != nil {
		shape.CPUs = int(aws.ToInt32(info.VCpuInfo.DefaultVCpus))
	}
	if info.MemoryInfo != nil {
		shape.MemoryMiB = aws.ToInt64(info.MemoryInfo.SizeInMiB)
	}
	if inst.BootMode == types.BootModeValuesUefi || inst.CurrentInstanceBootMode == types.InstanceBootModeValuesUefi {
		shape.Firmware = "efi"
	}
	devs := devices(inst)
	if len(devs) == 0 {
		return shape, nil
	}
	ids := make([]string, len(devs))
	for i, d := range devs {
		ids[i] = d.vol
	}
	vols, err := l.api.DescribeVolumes(ctx, &awsec2.DescribeVolumesInput{VolumeIds: ids})
	if err != nil {
		return draas.Shape{}, awserr.Wrap("DescribeVolumes", instanceID, err)
	}
	size := map[string]int64{}
	for _, v := range vols.Volumes {
		size[aws.ToString(v.VolumeId)] = int64(aws.ToInt32(v.Size)) << 30
	}
	for _, d := range devs {
		shape.Disks = append(shape.Disks, draas.Disk{Name: d.vol, Size: size[d.vol]})
	}
	return shape, nil
}

// SnapshotInstance snapshots all of the instance's volumes at one instant
// (CreateSnapshots: crash-consistent), waits until they are completed and
// returns their IDs in disk order, the root volume first.
func (l *Launcher) SnapshotInstance(ctx context.Context, instanceID string, tags map[string]string) ([]string, error) {
	inst, err := l.describe(ctx, instanceID)
	if err != nil {
		return nil, err
	}
	out, err := l.api.CreateSnapshots(ctx, &awsec2.CreateSnapshotsInput{
		InstanceSpecification: &types.InstanceSpecification{InstanceId: aws.String(instanceID)},
		Description:           aws.String("draas failback of " + instanceID),
		TagSpecifications:     ec2tags.Spec(types.ResourceTypeSnapshot, tags),
	})
	if err != nil {
		return nil, awserr.Wrap("CreateSnapshots", instanceID, err)
	}
	byVolume := map[string]string{}
	var ids []string
	for _, s := range out.Snapshots {
		byVolume[aws.ToString(s.VolumeId)] = aws.ToString(s.SnapshotId)
		ids = append(ids, aws.ToString(s.SnapshotId))
	}
	w := awsec2.NewSnapshotCompletedWaiter(l.api, func(o *awsec2.SnapshotCompletedWaiterOptions) { o.MinDelay = l.opts.PollInterval })
	if err := w.Wait(ctx, &awsec2.DescribeSnapshotsInput{SnapshotIds: ids}, l.opts.WaitTimeout); err != nil {
		return nil, awserr.Wrap("wait snapshots completed", instanceID, err)
	}
	var ordered []string
	for _, d := range devices(inst) {
		id, ok := byVolume[d.vol]
		if !ok {
			return nil, fmt.Errorf("ec2: CreateSnapshots of %s made no snapshot of volume %s", instanceID, d.vol)
		}
		ordered = append(ordered, id)
	}
	return ordered, nil
}

// DeleteSnapshot deletes a snapshot; a missing one is not an error.
func (l *Launcher) DeleteSnapshot(ctx context.Context, snapshotID string) error {
	_, err := l.api.DeleteSnapshot(ctx, &awsec2.DeleteSnapshotInput{SnapshotId: aws.String(snapshotID)})
	if err = awserr.Wrap("DeleteSnapshot", snapshotID, err); errors.Is(err, draas.ErrNotFound) {
		return nil
	}
	return err
}
