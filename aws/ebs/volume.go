package ebs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/internal/awserr"
	"github.com/opendraas/draas/aws/internal/ec2tags"
)

// VolumeAPI is the part of the EC2 client the volume path uses;
// *ec2.Client implements it.
type VolumeAPI interface {
	awsec2.DescribeVolumesAPIClient
	awsec2.DescribeSnapshotsAPIClient
	CreateVolume(ctx context.Context, in *awsec2.CreateVolumeInput, optFns ...func(*awsec2.Options)) (*awsec2.CreateVolumeOutput, error)
	AttachVolume(ctx context.Context, in *awsec2.AttachVolumeInput, optFns ...func(*awsec2.Options)) (*awsec2.AttachVolumeOutput, error)
	DetachVolume(ctx context.Context, in *awsec2.DetachVolumeInput, optFns ...func(*awsec2.Options)) (*awsec2.DetachVolumeOutput, error)
	DeleteVolume(ctx context.Context, in *awsec2.DeleteVolumeInput, optFns ...func(*awsec2.Options)) (*awsec2.DeleteVolumeOutput, error)
	CreateSnapshot(ctx context.Context, in *awsec2.CreateSnapshotInput, optFns ...func(*awsec2.Options)) (*awsec2.CreateSnapshotOutput, error)
}

var _ VolumeAPI = (*awsec2.Client)(nil)

// Device is the block device of an EBS volume attached to the proxy.
type Device interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Close() error
}

// DeviceOpener finds and opens the block device of a volume attached to the
// proxy instance, by volume ID (and the device name it was attached as).
type DeviceOpener interface {
	OpenDevice(ctx context.Context, volumeID, deviceName string) (Device, error)
}

// DeviceOpenerFunc is a function that is a [DeviceOpener].
type DeviceOpenerFunc func(ctx context.Context, volumeID, deviceName string) (Device, error)

// OpenDevice calls f.
func (f DeviceOpenerFunc) OpenDevice(ctx context.Context, volumeID, deviceName string) (Device, error) {
	return f(ctx, volumeID, deviceName)
}

// LocalDevices opens the devices of volumes attached to the machine it runs
// on. On Nitro instances a volume appears as an NVMe device whose serial is
// its ID, linked as /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_volXXXX;
// on Xen instances it appears under the attachment's name with sd replaced
// by xvd. OpenDevice polls until the device appears.
type LocalDevices struct {
	// Root is the device directory; default "/dev". Tests point it at a
	// directory where a file stands in for the device.
	Root string
	// Timeout bounds the wait for the device to appear; default 2 minutes.
	Timeout time.Duration
}

// OpenDevice opens the device of volumeID for reading and writing.
func (d LocalDevices) OpenDevice(ctx context.Context, volumeID, deviceName string) (Device, error) {
	root := cmp.Or(d.Root, "/dev")
	candidates := []string{
		filepath.Join(root, "disk", "by-id", "nvme-Amazon_Elastic_Block_Store_"+strings.ReplaceAll(volumeID, "-", "")),
	}
	if name, ok := strings.CutPrefix(deviceName, "/dev/"); ok {
		candidates = append(candidates,
			filepath.Join(root, strings.Replace(name, "sd", "xvd", 1)),
			filepath.Join(root, name))
	}
	deadline := time.Now().Add(cmp.Or(d.Timeout, 2*time.Minute))
	for {
		for _, p := range candidates {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err == nil {
				return f, nil
			}
			if !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("ebs: open device of %s at %s: %w", volumeID, p, err)
			}
		}
		if time.Now().After(deadline) {
			return nil, &draas.OpError{Op: "find device", Resource: volumeID, Kind: draas.ErrNotFound,
				Err: fmt.Errorf("none of %s appeared; is the volume attached to this instance?", strings.Join(candidates, ", "))}
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// VolumeSinkOptions configures a [VolumeSink].
type VolumeSinkOptions struct {
	// ProxyInstanceID is the instance the volume is attached to: the one
	// this program runs on. Required.
	ProxyInstanceID string
	// AvailabilityZone of the proxy instance. Required.
	AvailabilityZone string
	// BaseSnapshotID, when set, is the previous DR copy: the volume is made
	// from it, so only changed blocks need writing, and the new snapshot is
	// incremental on it inside EBS.
	BaseSnapshotID string
	// DeviceName to attach the volume as; default "/dev/sdf". When it is
	// taken, the next free name up to /dev/sdp is used.
	DeviceName string
	// VolumeType of the temporary volume; default "gp3".
	VolumeType string
	// Description and Tags are set on the snapshot; the temporary volume
	// gets the tags too, plus draas:role=replication-volume, so that a
	// crashed run's volume can be found and removed.
	Description string
	Tags        map[string]string
	// ClientToken makes CreateVolume idempotent.
	ClientToken string
	// Devices finds the attached volume's device; default LocalDevices{}.
	Devices DeviceOpener
	// EBS, when set, lets Committed read the snapshot back through the EBS
	// direct APIs for a verify pass.
	EBS API
	// PollInterval and WaitTimeout tune the waits for volume and snapshot
	// states; defaults 2s and 30 minutes.
	PollInterval time.Duration
	WaitTimeout  time.Duration
}

// VolumeSink is the product description's data path: it makes a volume
// (from the previous DR copy when there is one), attaches it to the proxy
// instance, writes blocks to its device, and on Commit detaches it, takes a
// snapshot, waits for the snapshot to complete and deletes the volume. Abort
// detaches and deletes the volume. It implements draas.VolumeSink,
// draas.ZeroWriteSink, draas.Flusher, draas.ResumableSink and
// draas.VerifiableSink (with VolumeSinkOptions.EBS set).
type VolumeSink struct {
	api      VolumeAPI
	opts     VolumeSinkOptions
	size     int64
	volumeID string
	dev      Device

	// life holds off Commit and Abort while WriteBlock and Flush run; a
	// failed Commit leaves only Abort.
	life       draas.SinkLifecycle
	mu         sync.Mutex
	snapshotID string
	written    map[int32][32]byte // checksums of the blocks written, for Checksum
}

var (
	_ draas.ZeroWriteSink  = (*VolumeSink)(nil)
	_ draas.Flusher        = (*VolumeSink)(nil)
	_ draas.ResumableSink  = (*VolumeSink)(nil)
	_ draas.VerifiableSink = (*VolumeSink)(nil)
)

func (o *VolumeSinkOptions) defaults() error {
	if o.ProxyInstanceID == "" || o.AvailabilityZone == "" {
		return draas.Invalidf("ebs: the volume path needs the proxy's instance ID and availability zone (got %q, %q)", o.ProxyInstanceID, o.AvailabilityZone)
	}
	o.DeviceName = cmp.Or(o.DeviceName, "/dev/sdf")
	o.VolumeType = cmp.Or(o.VolumeType, "gp3")
	o.PollInterval = cmp.Or(o.PollInterval, 2*time.Second)
	o.WaitTimeout = cmp.Or(o.WaitTimeout, 30*time.Minute)
	if o.Devices == nil {
		o.Devices = LocalDevices{}
	}
	return nil
}

// NewVolumeSink creates, attaches and opens a volume able to hold size
// bytes.
func NewVolumeSink(ctx context.Context, api VolumeAPI, size int64, opts VolumeSinkOptions) (*VolumeSink, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if size <= 0 {
		return nil, draas.Invalidf("ebs: volume size %d: the disk size must be positive", size)
	}
	tags := map[string]string{draas.TagRole: "replication-volume"}
	for k, v := range opts.Tags {
		tags[k] = v
	}
	in := &awsec2.CreateVolumeInput{
		AvailabilityZone:  aws.String(opts.AvailabilityZone),
		VolumeType:        ec2types.VolumeType(opts.VolumeType),
		Size:              aws.Int32(int32((size + gib - 1) / gib)),
		TagSpecifications: ec2tags.Spec(ec2types.ResourceTypeVolume, tags),
	}
	if opts.BaseSnapshotID != "" {
		in.SnapshotId = aws.String(opts.BaseSnapshotID)
	}
	if opts.ClientToken != "" {
		in.ClientToken = aws.String(opts.ClientToken)
	}
	out, err := api.CreateVolume(ctx, in)
	if err != nil {
		return nil, awserr.Wrap("CreateVolume", "replication volume", err)
	}
	s := &VolumeSink{api: api, opts: opts, size: size, volumeID: aws.ToString(out.VolumeId)}
	if err := s.attach(ctx); err != nil {
		return s, errors.Join(err, s.Abort(context.WithoutCancel(ctx)))
	}
	return s, nil
}

// volumeState is what ResumeState saves.
type volumeState struct {
	VolumeID string `json:"volumeId"`
	Size     int64  `json:"size"`
}

// Target returns the volume's ID. It implements draas.ResumableSink.
func (s *VolumeSink) Target() string { return "ebs-volume://" + s.volumeID }

// ResumeState returns the volume's ID, for [ResumeVolumeSink].
func (s *VolumeSink) ResumeState() ([]byte, error) {
	return json.Marshal(volumeState{VolumeID: s.volumeID, Size: s.size})
}

// ResumeVolumeSink continues writing the volume of a previous VolumeSink,
// from its ResumeState: it attaches the volume again if needed and opens its
// device. opts must be those the sink was made with.
func ResumeVolumeSink(ctx context.Context, api VolumeAPI, state []byte, opts VolumeSinkOptions) (*VolumeSink, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	var st volumeState
	if err := json.Unmarshal(state, &st); err != nil || st.VolumeID == "" {
		return nil, draas.Invalidf("ebs: resume state is not a volume sink's state (%v): start a new volume instead", err)
	}
	s := &VolumeSink{api: api, opts: opts, size: st.Size, volumeID: st.VolumeID}
	if err := s.attach(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// attach waits for the volume, attaches it to the proxy unless it already
// is, and opens its device.
func (s *VolumeSink) attach(ctx context.Context) error {
	v, err := s.describe(ctx)
	if err != nil {
		return err
	}
	attached := false
	for _, a := range v.Attachments {
		if aws.ToString(a.InstanceId) == s.opts.ProxyInstanceID {
			attached = true
			s.opts.DeviceName = cmp.Or(aws.ToString(a.Device), s.opts.DeviceName)
		}
	}
	if !attached {
		if err := s.wait(ctx, "available"); err != nil {
			return err
		}
		if err := s.attachFree(ctx); err != nil {
			return err
		}
	}
	if err := s.wait(ctx, "in-use"); err != nil {
		return err
	}
	dev, err := s.opts.Devices.OpenDevice(ctx, s.volumeID, s.opts.DeviceName)
	if err != nil {
		return err
	}
	s.dev = dev
	return nil
}

// attachFree attaches the volume to the proxy at the first device name from
// DeviceName on (/dev/sdf … /dev/sdp) that is free, trying the next when
// another copy took one in the meantime.
func (s *VolumeSink) attachFree(ctx context.Context) error {
	start := s.opts.DeviceName
	base, last := start[:len(start)-1], start[len(start)-1]
	var err error
	for c := last; c <= 'p'; c++ {
		dev := base + string(c)
		_, err = s.api.AttachVolume(ctx, &awsec2.AttachVolumeInput{
			VolumeId: aws.String(s.volumeID), InstanceId: aws.String(s.opts.ProxyInstanceID), Device: aws.String(dev),
		})
		if err == nil {
			s.opts.DeviceName = dev
			return nil
		}
		if werr := awserr.Wrap("", "", err); !errors.Is(werr, draas.ErrInvalid) && !errors.Is(werr, draas.ErrConflict) {
			break
		}
	}
	return awserr.Wrap("AttachVolume", s.volumeID+" to "+s.opts.ProxyInstanceID, err)
}

func (s *VolumeSink) describe(ctx context.Context) (ec2types.Volume, error) {
	out, err := s.api.DescribeVolumes(ctx, &awsec2.DescribeVolumesInput{VolumeIds: []string{s.volumeID}})
	if err != nil {
		return ec2types.Volume{}, awserr.Wrap("DescribeVolumes", s.volumeID, err)
	}
	if len(out.Volumes) != 1 {
		return ec2types.Volume{}, &draas.OpError{Op: "DescribeVolumes", Resource: s.volumeID, Kind: draas.ErrNotFound}
	}
	return out.Volumes[0], nil
}

func (s *VolumeSink) wait(ctx context.Context, state string) error {
	in := &awsec2.DescribeVolumesInput{VolumeIds: []string{s.volumeID}}
	var err error
	switch state {
	case "available":
		err = awsec2.NewVolumeAvailableWaiter(s.api, func(o *awsec2.VolumeAvailableWaiterOptions) { o.MinDelay = s.opts.PollInterval }).Wait(ctx, in, s.opts.WaitTimeout)
	case "in-use":
		err = awsec2.NewVolumeInUseWaiter(s.api, func(o *awsec2.VolumeInUseWaiterOptions) { o.MinDelay = s.opts.PollInterval }).Wait(ctx, in, s.opts.WaitTimeout)
	case "deleted":
		err = awsec2.NewVolumeDeletedWaiter(s.api, func(o *awsec2.VolumeDeletedWaiterOptions) { o.MinDelay = s.opts.PollInterval }).Wait(ctx, in, s.opts.WaitTimeout)
	}
	return awserr.Wrap("wait volume "+state, s.volumeID, err)
}

// VolumeID returns the temporary volume's ID.
func (s *VolumeSink) VolumeID() string { return s.volumeID }

// SnapshotID returns the snapshot's ID once Commit has created it.
func (s *VolumeSink) SnapshotID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotID
}

// BlockSize returns 512 KiB, the EBS block size.
func (s *VolumeSink) BlockSize() int { return BlockSize }

// NeedsZeroWrites reports true when the volume was made from a base
// snapshot, whose data zero blocks must overwrite.
func (s *VolumeSink) NeedsZeroWrites() bool { return s.opts.BaseSnapshotID != "" }

// WriteBlock writes b to the device.
func (s *VolumeSink) WriteBlock(ctx context.Context, b draas.Block) error {
	if err := s.life.BeginWrite(); err != nil {
		return fmt.Errorf("ebs: write volume %s at %d: %w", s.volumeID, b.Offset, err)
	}
	defer s.life.EndWrite()
	if err := draas.CheckBlock(b, BlockSize, s.size); err != nil {
		return fmt.Errorf("ebs: write volume %s: %w", s.volumeID, err)
	}
	if _, err := s.dev.WriteAt(b.Data, b.Offset); err != nil {
		return fmt.Errorf("ebs: write volume %s at %d: %w", s.volumeID, b.Offset, err)
	}
	s.mu.Lock()
	if s.written == nil {
		s.written = map[int32][32]byte{}
	}
	s.written[int32(b.Offset/BlockSize)] = b.Checksum
	s.mu.Unlock()
	return nil
}

// Checksum returns the copy's checksum summary, "sha256-linear:DIGEST:N",
// over the N blocks written since the sink was made (or resumed).
func (s *VolumeSink) Checksum() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return summary(s.written)
}

// Flush makes written blocks durable on the volume.
func (s *VolumeSink) Flush(ctx context.Context) error {
	if err := s.life.BeginWrite(); err != nil {
		return fmt.Errorf("ebs: sync volume %s: %w", s.volumeID, err)
	}
	defer s.life.EndWrite()
	if err := s.dev.Sync(); err != nil {
		return fmt.Errorf("ebs: sync volume %s: %w", s.volumeID, err)
	}
	return nil
}

// Commit syncs and detaches the volume, snapshots it, waits for the
// snapshot to complete and deletes the volume.
func (s *VolumeSink) Commit(ctx context.Context) error {
	if err := s.life.BeginCommit(); err != nil {
		return fmt.Errorf("ebs: commit volume %s: %w", s.volumeID, err)
	}
	return s.life.EndCommit(s.snapshot(ctx))
}

// snapshot is Commit's work once the sink is closed to writes.
func (s *VolumeSink) snapshot(ctx context.Context) error {
	if err := s.dev.Sync(); err != nil {
		return fmt.Errorf("ebs: sync volume %s: %w", s.volumeID, err)
	}
	if err := s.detach(ctx); err != nil {
		return err
	}
	out, err := s.api.CreateSnapshot(ctx, &awsec2.CreateSnapshotInput{
		VolumeId:          aws.String(s.volumeID),
		Description:       aws.String(cmp.Or(s.opts.Description, "draas DR copy")),
		TagSpecifications: ec2tags.Spec(ec2types.ResourceTypeSnapshot, s.opts.Tags),
	})
	if err != nil {
		return awserr.Wrap("CreateSnapshot", s.volumeID, err)
	}
	id := aws.ToString(out.SnapshotId)
	s.mu.Lock()
	s.snapshotID = id
	s.mu.Unlock()
	w := awsec2.NewSnapshotCompletedWaiter(s.api, func(o *awsec2.SnapshotCompletedWaiterOptions) { o.MinDelay = s.opts.PollInterval })
	if err := w.Wait(ctx, &awsec2.DescribeSnapshotsInput{SnapshotIds: []string{id}}, s.opts.WaitTimeout); err != nil {
		return awserr.Wrap("wait snapshot completed", id, err)
	}
	return s.deleteVolume(ctx)
}

// detach closes the device and detaches the volume from whatever instance
// holds it, then waits until it is available.
func (s *VolumeSink) detach(ctx context.Context) error {
	if s.dev != nil {
		_ = s.dev.Close()
		s.dev = nil
	}
	v, err := s.describe(ctx)
	if err != nil {
		return err
	}
	for _, a := range v.Attachments {
		_, err := s.api.DetachVolume(ctx, &awsec2.DetachVolumeInput{VolumeId: aws.String(s.volumeID), InstanceId: a.InstanceId})
		if err = awserr.Wrap("DetachVolume", s.volumeID, err); err != nil && !errors.Is(err, draas.ErrNotFound) && !errors.Is(err, draas.ErrConflict) {
			return err
		}
	}
	return s.wait(ctx, "available")
}

func (s *VolumeSink) deleteVolume(ctx context.Context) error {
	_, err := s.api.DeleteVolume(ctx, &awsec2.DeleteVolumeInput{VolumeId: aws.String(s.volumeID)})
	if err = awserr.Wrap("DeleteVolume", s.volumeID, err); err != nil && !errors.Is(err, draas.ErrNotFound) {
		return err
	}
	return nil
}

// Abort detaches and deletes the temporary volume. No snapshot is made.
func (s *VolumeSink) Abort(ctx context.Context) error {
	if cleanup, err := s.life.BeginAbort(); !cleanup {
		if errors.Is(err, draas.ErrConflict) {
			return fmt.Errorf("ebs: abort volume %s: %w", s.volumeID, err)
		}
		return nil // committed (the volume is gone) or aborted before
	}
	if err := s.detach(ctx); err != nil && !errors.Is(err, draas.ErrNotFound) {
		return err
	}
	return s.deleteVolume(ctx)
}

// Committed reads the snapshot back through the EBS direct APIs; it needs
// VolumeSinkOptions.EBS.
func (s *VolumeSink) Committed(ctx context.Context) (draas.BlockSource, error) {
	if s.opts.EBS == nil {
		return nil, draas.Invalidf("ebs: reading back snapshot %s needs VolumeSinkOptions.EBS (an EBS direct APIs client)", s.SnapshotID())
	}
	return OpenSnapshot(ctx, s.opts.EBS, s.SnapshotID(), SourceOptions{})
}
