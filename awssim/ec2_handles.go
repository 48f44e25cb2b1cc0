package awssim

import (
	"fmt"
	"sort"
	"time"
)

// Test handles on the simulated EC2 state: what a guest does to its disks,
// and what a test needs to look at without going through the API.

// VolumeInfo describes a simulated EBS volume.
type VolumeInfo struct {
	ID               string
	SnapshotID       string // the snapshot it was created from, or ""
	SizeGiB          int64
	AvailabilityZone string
	VolumeType       string
	State            string // creating | available | in-use
	Encrypted        bool
	KmsKeyID         string
	Tags             map[string]string
	// InstanceID and Device say where the volume is attached; both are ""
	// when it is not.
	InstanceID          string
	Device              string
	AttachState         string // attaching | attached | detaching | ""
	DeleteOnTermination bool
}

// InstanceInfo describes a simulated EC2 instance.
type InstanceInfo struct {
	ID               string
	ReservationID    string
	ImageID          string
	InstanceType     string
	State            string // pending | running | stopping | stopped | shutting-down | terminated
	SubnetID         string
	VpcID            string
	AvailabilityZone string
	PrivateIPAddress string
	SecurityGroupIDs []string
	UserData         []byte // decoded
	ClientToken      string
	RootDeviceName   string
	// Volumes maps device names to the IDs of the volumes attached there.
	Volumes    map[string]string
	Tags       map[string]string
	LaunchTime time.Time
}

// Volumes returns every volume, sorted by ID. Looking does not advance
// their states the way a Describe call does.
func (s *Server) Volumes() []VolumeInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]VolumeInfo, 0, len(s.vols))
	for _, id := range sortedKeys(s.vols) {
		v := s.vols[id]
		s.settleVolume(v, false)
		out = append(out, VolumeInfo{
			ID: v.id, SnapshotID: v.snapshotID, SizeGiB: v.sizeGiB, AvailabilityZone: v.az,
			VolumeType: v.volumeType, State: v.state, Encrypted: v.encrypted, KmsKeyID: v.kmsKeyID,
			Tags: copyTags(v.tags), InstanceID: v.attachInstance, Device: v.attachDevice,
			AttachState: v.attachState, DeleteOnTermination: v.deleteOnTermination,
		})
	}
	return out
}

// Instances returns every instance, terminated ones included, sorted by ID.
func (s *Server) Instances() []InstanceInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]InstanceInfo, 0, len(s.ec2.instances))
	for _, id := range sortedKeys(s.ec2.instances) {
		in := s.ec2.instances[id]
		s.settleInstance(in, false)
		info := InstanceInfo{
			ID: in.id, ReservationID: in.reservationID, ImageID: in.imageID, InstanceType: in.instanceType,
			State: in.state, SubnetID: in.subnetID, VpcID: in.vpcID, AvailabilityZone: in.az,
			SecurityGroupIDs: append([]string(nil), in.groups...), UserData: append([]byte(nil), in.userData...),
			ClientToken: in.clientToken, RootDeviceName: in.rootDeviceName, Volumes: map[string]string{},
			Tags: copyTags(in.tags), LaunchTime: in.launchTime,
		}
		if in.privateIP.IsValid() {
			info.PrivateIPAddress = in.privateIP.String()
		}
		for _, v := range s.attachedVolumes(in.id) {
			info.Volumes[v.attachDevice] = v.id
		}
		out = append(out, info)
	}
	return out
}

// volumeRange finds volume id and checks that [off, off+n) lies inside it.
// Callers hold s.mu.
func (s *Server) volumeRange(id string, off int64, n int) (*volume, error) {
	v := s.vols[id]
	if v == nil {
		return nil, fmt.Errorf("awssim: volume %s does not exist", id)
	}
	if size := v.sizeGiB << 30; off < 0 || off+int64(n) > size {
		return nil, fmt.Errorf("awssim: range [%d, %d) outside volume %s of %d bytes", off, off+int64(n), id, size)
	}
	return v, nil
}

// eachVolumeBlock checks that [off, off+len(p)) lies inside volume id and,
// with s.mu held, calls file for a volume backed by a file, or else block for
// each block the range spans: the block's index, where the range starts
// inside it, and the part of p it covers.
func (s *Server) eachVolumeBlock(id string, off int64, p []byte, file func(*volume, []byte, int64) error, block func(v *volume, idx int64, in int, part []byte)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.volumeRange(id, off, len(p))
	if err != nil {
		return err
	}
	if v.file != nil {
		return file(v, p, off)
	}
	for len(p) > 0 {
		idx, in := off/BlockSize, int(off%BlockSize)
		n := min(len(p), BlockSize-in)
		block(v, idx, in, p[:n])
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// WriteVolume writes p at byte offset off of volume id, as a guest writing
// to its disk would. Writes are copy on write: snapshots taken before keep
// the old bytes. The range must lie inside the volume.
func (s *Server) WriteVolume(id string, off int64, p []byte) error {
	return s.eachVolumeBlock(id, off, p, writeVolumeAt, func(v *volume, idx int64, in int, part []byte) {
		buf := make([]byte, BlockSize)
		if old := v.blocks[idx]; old != nil {
			copy(buf, old.data)
		}
		copy(buf[in:], part)
		v.blocks[idx] = newBlock(buf)
	})
}

// ReadVolume reads len(p) bytes at byte offset off of volume id into p.
// Never-written blocks read as zeros. The range must lie inside the volume.
func (s *Server) ReadVolume(id string, off int64, p []byte) error {
	return s.eachVolumeBlock(id, off, p, readVolumeAt, func(v *volume, idx int64, in int, part []byte) {
		if b := v.blocks[idx]; b != nil {
			copy(part, b.data[in:])
		} else {
			clear(part)
		}
	})
}

// VolumeBytes returns volume id's content from the start up to the end of
// the last block that holds data; everything after it, up to the volume
// size, reads as zeros (the same convention as [Server.SnapshotBytes]).
func (s *Server) VolumeBytes(id string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vols[id]
	if v == nil {
		return nil, fmt.Errorf("awssim: volume %s does not exist", id)
	}
	if v.file != nil {
		return volumeFileBytes(v)
	}
	var end int64
	for idx := range v.blocks {
		end = max(end, (idx+1)*BlockSize)
	}
	out := make([]byte, end)
	for idx, b := range v.blocks {
		copy(out[idx*BlockSize:], b.data)
	}
	return out, nil
}

// DefaultImageID returns the ID of the built-in Linux image (root device
// /dev/xvda, an 8 GiB root snapshot). A Windows image with root device
// /dev/sda1 exists too; DescribeImages lists both (owner "amazon").
func (s *Server) DefaultImageID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ec2.linuxImage
}

// AddVPC creates a VPC with the given IPv4 CIDR block (a /16 to a /28) and
// its default security group, as CreateVpc does, and returns its ID.
func (s *Server) AddVPC(cidr string, tags map[string]string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.createVPC(cidr, copyTags(tags))
	if err != nil {
		return "", err
	}
	return v.id, nil
}

// AddSubnet creates a subnet of VPC vpcID in availability zone az ("" for
// the region's first) with the given CIDR block, as CreateSubnet does, and
// returns its ID.
func (s *Server) AddSubnet(vpcID, az, cidr string, tags map[string]string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, err := s.createSubnet(vpcID, az, cidr, copyTags(tags))
	if err != nil {
		return "", err
	}
	return sn.id, nil
}

// AvailabilityZones returns the simulated region's zones, in order.
func (s *Server) AvailabilityZones() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]string(nil), s.ec2.azs...)
	sort.Strings(out)
	return out
}

// VolumeDevice is a volume seen as the block device of the instance it is
// attached to: what a program on a proxy instance writes when it writes
// /dev/nvme1n1. It stands in for the device in tests of the volume data
// path. Reads and writes fail once the volume is no longer attached.
type VolumeDevice struct {
	s  *Server
	id string
}

// Device returns the block device of volume id, which must be attached to
// an instance.
func (s *Server) Device(id string) (*VolumeDevice, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vols[id]
	if v == nil {
		return nil, fmt.Errorf("awssim: no volume %s", id)
	}
	if v.attachInstance == "" {
		return nil, fmt.Errorf("awssim: volume %s is not attached to an instance", id)
	}
	return &VolumeDevice{s: s, id: id}, nil
}

func (d *VolumeDevice) attached() error {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	if v := d.s.vols[d.id]; v == nil || v.attachInstance == "" {
		return fmt.Errorf("awssim: volume %s is no longer attached", d.id)
	}
	return nil
}

// ReadAt reads the volume at off.
func (d *VolumeDevice) ReadAt(p []byte, off int64) (int, error) {
	return d.rw(d.s.ReadVolume, p, off)
}

// WriteAt writes the volume at off.
func (d *VolumeDevice) WriteAt(p []byte, off int64) (int, error) {
	return d.rw(d.s.WriteVolume, p, off)
}

// rw is ReadAt or WriteAt with f, ReadVolume or WriteVolume, while the
// volume is attached.
func (d *VolumeDevice) rw(f func(id string, off int64, p []byte) error, p []byte, off int64) (int, error) {
	if err := d.attached(); err != nil {
		return 0, err
	}
	if err := f(d.id, off, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Sync does nothing: the simulator's writes are durable at once.
func (d *VolumeDevice) Sync() error { return nil }

// Close does nothing.
func (d *VolumeDevice) Close() error { return nil }
