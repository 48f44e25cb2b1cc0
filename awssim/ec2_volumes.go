package awssim

import (
	"sort"
	"strconv"
	"strings"
	"time"
)

// EC2 volumes, snapshots and tags.

// volumeTypes are the EBS volume types and their size limits in GiB.
var volumeTypes = map[string][2]int64{
	"standard": {1, 1024},
	"gp2":      {1, 16384},
	"gp3":      {1, 65536},
	"io1":      {4, 16384},
	"io2":      {4, 65536},
	"st1":      {125, 16384},
	"sc1":      {125, 16384},
}

type xmlVolume struct {
	VolumeID           string          `xml:"volumeId"`
	Size               int64           `xml:"size"`
	SnapshotID         string          `xml:"snapshotId"`
	AvailabilityZone   string          `xml:"availabilityZone"`
	AvailabilityZoneID string          `xml:"availabilityZoneId"`
	Status             string          `xml:"status"`
	CreateTime         string          `xml:"createTime"`
	Attachments        []xmlAttachment `xml:"attachmentSet>item"`
	TagSet             []xmlTag        `xml:"tagSet>item,omitempty"`
	VolumeType         string          `xml:"volumeType"`
	Iops               int64           `xml:"iops,omitempty"`
	Throughput         int64           `xml:"throughput,omitempty"`
	Encrypted          bool            `xml:"encrypted"`
	KmsKeyID           string          `xml:"kmsKeyId,omitempty"`
	MultiAttachEnabled bool            `xml:"multiAttachEnabled"`
}

type xmlAttachment struct {
	VolumeID            string `xml:"volumeId"`
	InstanceID          string `xml:"instanceId"`
	Device              string `xml:"device"`
	Status              string `xml:"status"`
	AttachTime          string `xml:"attachTime"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type xmlSnapshot struct {
	SnapshotID     string   `xml:"snapshotId"`
	VolumeID       string   `xml:"volumeId"`
	Status         string   `xml:"status"`
	StartTime      string   `xml:"startTime"`
	Progress       string   `xml:"progress"`
	OwnerID        string   `xml:"ownerId"`
	OwnerAlias     string   `xml:"ownerAlias,omitempty"`
	VolumeSize     int64    `xml:"volumeSize"`
	Description    string   `xml:"description"`
	Encrypted      bool     `xml:"encrypted"`
	KmsKeyID       string   `xml:"kmsKeyId,omitempty"`
	StorageTier    string   `xml:"storageTier"`
	TagSet         []xmlTag `xml:"tagSet>item,omitempty"`
	AvailabilityZn string   `xml:"availabilityZone,omitempty"`
}

// xmlSnapshotInfo is CreateSnapshots' shape of a snapshot: "state", not
// "status".
type xmlSnapshotInfo struct {
	SnapshotID  string   `xml:"snapshotId"`
	VolumeID    string   `xml:"volumeId"`
	State       string   `xml:"state"`
	StartTime   string   `xml:"startTime"`
	Progress    string   `xml:"progress"`
	OwnerID     string   `xml:"ownerId"`
	VolumeSize  int64    `xml:"volumeSize"`
	Description string   `xml:"description"`
	Encrypted   bool     `xml:"encrypted"`
	TagSet      []xmlTag `xml:"tagSet>item,omitempty"`
}

// zoneID returns the zone ID ("use1-az1") of availability zone az.
func (s *Server) zoneID(az string) string {
	parts := strings.Split(s.opts.Region, "-")
	abbr := ""
	for i, p := range parts {
		if i == 1 && p != "" {
			abbr += p[:1]
		} else {
			abbr += p
		}
	}
	for i, z := range s.ec2.azs {
		if z == az {
			return abbr + "-az" + strconv.Itoa(i+1)
		}
	}
	return ""
}

func (s *Server) validAZ(az string) bool {
	for _, z := range s.ec2.azs {
		if z == az {
			return true
		}
	}
	return false
}

// settleVolume completes a volume's transition (creating, attaching,
// detaching) when it is due. Callers hold s.mu.
func (s *Server) settleVolume(v *volume, observe bool) {
	switch {
	case v.state == "creating":
		if s.settled(&v.timer, observe) {
			v.state = "available"
		}
	case v.attachState == "attaching":
		if s.settled(&v.timer, observe) {
			v.attachState = "attached"
		}
	case v.attachState == "detaching":
		if s.settled(&v.timer, observe) {
			v.state = "available"
			v.attachInstance, v.attachDevice, v.attachState = "", "", ""
			v.attachTime = time.Time{}
			v.deleteOnTermination = false
		}
	}
}

// volumeByID finds a volume and brings its state up to date. Callers hold
// s.mu.
func (s *Server) volumeByID(id string) (*volume, error) {
	if err := checkID(id, "vol", "InvalidVolumeID.Malformed"); err != nil {
		return nil, err
	}
	v := s.vols[id]
	if v == nil {
		return nil, ec2Err("InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
	}
	s.settleVolume(v, false)
	return v, nil
}

func (s *Server) volumeXML(v *volume) xmlVolume {
	x := xmlVolume{
		VolumeID:           v.id,
		Size:               v.sizeGiB,
		SnapshotID:         v.snapshotID,
		AvailabilityZone:   v.az,
		AvailabilityZoneID: s.zoneID(v.az),
		Status:             v.state,
		CreateTime:         ec2Time(v.created),
		TagSet:             xmlTags(v.tags),
		VolumeType:         v.volumeType,
		Iops:               v.iops,
		Throughput:         v.throughput,
		Encrypted:          v.encrypted,
		KmsKeyID:           v.kmsKeyID,
	}
	if v.attachInstance != "" {
		x.Attachments = []xmlAttachment{attachmentXML(v)}
	}
	return x
}

func attachmentXML(v *volume) xmlAttachment {
	return xmlAttachment{
		VolumeID:            v.id,
		InstanceID:          v.attachInstance,
		Device:              v.attachDevice,
		Status:              v.attachState,
		AttachTime:          ec2Time(v.attachTime),
		DeleteOnTermination: v.deleteOnTermination,
	}
}

type volumeBody struct {
	ec2Meta
	xmlVolume
}

// volumeSpec is what CreateVolume and RunInstances' block device mappings
// say about a new volume.
type volumeSpec struct {
	az, volumeType, snapshotID, kmsKeyID string
	sizeGiB, iops, throughput            int64
	encrypted                            bool
	tags                                 map[string]string
}

// newVolume validates spec and creates the volume, in state "creating".
// Callers hold s.mu.
func (s *Server) newVolume(spec volumeSpec) (*volume, error) {
	if !s.validAZ(spec.az) {
		return nil, ec2Err("InvalidParameterValue", "Invalid availability zone: [%s]", spec.az)
	}
	if spec.volumeType == "" {
		spec.volumeType = "gp2"
	}
	limits, ok := volumeTypes[spec.volumeType]
	if !ok {
		return nil, ec2Err("InvalidParameterValue", "Value (%s) for parameter volumeType is invalid. Valid values: standard, io1, io2, gp2, gp3, sc1, st1.", spec.volumeType)
	}
	blocks := map[int64]*block{}
	if spec.snapshotID != "" {
		if err := checkID(spec.snapshotID, "snap", "InvalidSnapshotID.Malformed"); err != nil {
			return nil, err
		}
		sn := s.snaps[spec.snapshotID]
		if sn == nil {
			return nil, ec2Err("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", spec.snapshotID)
		}
		s.settleSnapshot(sn, false)
		if sn.state != "completed" {
			return nil, ec2Err("IncorrectState", "Snapshot is in invalid state - %s", sn.state)
		}
		switch {
		case spec.sizeGiB == 0:
			spec.sizeGiB = sn.sizeGiB
		case spec.sizeGiB < sn.sizeGiB:
			return nil, ec2Err("InvalidParameterValue", "Volume of %dGiB is smaller than snapshot '%s', expect size >= %dGiB", spec.sizeGiB, sn.id, sn.sizeGiB)
		}
		blocks = cloneBlocks(sn.blocks)
		if sn.encrypted {
			spec.encrypted = true
			if spec.kmsKeyID == "" {
				spec.kmsKeyID = sn.kmsKeyArn
			}
		}
	} else if spec.sizeGiB == 0 {
		return nil, ec2Err("MissingParameter", "The request must contain the parameter size or snapshotId")
	}
	if spec.sizeGiB < limits[0] || spec.sizeGiB > limits[1] {
		return nil, ec2Err("InvalidParameterValue", "Volume of %dGiB is not in the range %d-%dGiB allowed for %s volumes.", spec.sizeGiB, limits[0], limits[1], spec.volumeType)
	}
	if spec.kmsKeyID != "" && !spec.encrypted {
		return nil, ec2Err("InvalidParameterDependency", "The parameter KmsKeyId requires the parameter Encrypted to be set.")
	}
	if spec.encrypted && spec.kmsKeyID == "" {
		spec.kmsKeyID = s.ebsDefaultKMSKeyARN()
	}
	switch spec.volumeType {
	case "gp2":
		spec.iops = min(max(3*spec.sizeGiB, 100), 16000)
		spec.throughput = 0
	case "gp3":
		if spec.iops == 0 {
			spec.iops = 3000
		}
		if spec.throughput == 0 {
			spec.throughput = 125
		}
	case "io1", "io2":
		if spec.iops == 0 {
			return nil, ec2Err("MissingParameter", "The parameter iops must be specified for %s volumes.", spec.volumeType)
		}
		spec.throughput = 0
	default:
		spec.iops, spec.throughput = 0, 0
	}
	if spec.tags == nil {
		spec.tags = map[string]string{}
	}
	v := &volume{
		id:         s.newID("vol"),
		snapshotID: spec.snapshotID,
		sizeGiB:    spec.sizeGiB,
		az:         spec.az,
		volumeType: spec.volumeType,
		state:      "creating",
		tags:       spec.tags,
		created:    s.now(),
		encrypted:  spec.encrypted,
		kmsKeyID:   spec.kmsKeyID,
		iops:       spec.iops,
		throughput: spec.throughput,
		blocks:     blocks,
	}
	if s.volumeDir != "" {
		if err := s.createVolumeFile(v); err != nil {
			return nil, err
		}
	}
	s.startTimer(&v.timer)
	s.vols[v.id] = v
	return v, nil
}

func (s *Server) ec2CreateVolume(p ec2Params) (ec2Body, error) {
	if id, err := s.idempotent("CreateVolume", p); err != nil {
		return nil, err
	} else if v := s.vols[id]; v != nil {
		s.settleVolume(v, false)
		return &volumeBody{xmlVolume: s.volumeXML(v)}, nil
	}
	az := p.str("AvailabilityZone")
	if az == "" {
		if zid := p.str("AvailabilityZoneId"); zid != "" {
			for _, z := range s.ec2.azs {
				if s.zoneID(z) == zid {
					az = z
				}
			}
			if az == "" {
				return nil, ec2Err("InvalidParameterValue", "Invalid availability zone ID: [%s]", zid)
			}
		}
	}
	if az == "" {
		return nil, ec2Err("MissingParameter", "The request must contain the parameter AvailabilityZone")
	}
	size, err := p.integer("Size", 0)
	if err != nil {
		return nil, err
	}
	iops, err := p.integer("Iops", 0)
	if err != nil {
		return nil, err
	}
	tput, err := p.integer("Throughput", 0)
	if err != nil {
		return nil, err
	}
	enc, _, err := p.boolean("Encrypted")
	if err != nil {
		return nil, err
	}
	tags, err := p.tagSpecs("volume")
	if err != nil {
		return nil, err
	}
	v, err := s.newVolume(volumeSpec{
		az: az, volumeType: p.str("VolumeType"), snapshotID: p.str("SnapshotId"), kmsKeyID: p.str("KmsKeyId"),
		sizeGiB: size, iops: iops, throughput: tput, encrypted: enc, tags: tags["volume"],
	})
	if err != nil {
		return nil, err
	}
	s.rememberToken("CreateVolume", p, v.id)
	return &volumeBody{xmlVolume: s.volumeXML(v)}, nil
}

func volumeFilters(s *Server) filterDefs[*volume] {
	one := func(f func(v *volume) string) func(*volume) []string {
		return func(v *volume) []string { return []string{f(v)} }
	}
	attached := func(f func(v *volume) string) func(*volume) []string {
		return func(v *volume) []string {
			if v.attachInstance == "" {
				return nil
			}
			return []string{f(v)}
		}
	}
	return filterDefs[*volume]{
		"volume-id":                        one(func(v *volume) string { return v.id }),
		"status":                           one(func(v *volume) string { return v.state }),
		"size":                             one(func(v *volume) string { return strconv.FormatInt(v.sizeGiB, 10) }),
		"snapshot-id":                      one(func(v *volume) string { return v.snapshotID }),
		"availability-zone":                one(func(v *volume) string { return v.az }),
		"availability-zone-id":             one(func(v *volume) string { return s.zoneID(v.az) }),
		"volume-type":                      one(func(v *volume) string { return v.volumeType }),
		"encrypted":                        one(func(v *volume) string { return strconv.FormatBool(v.encrypted) }),
		"create-time":                      one(func(v *volume) string { return ec2Time(v.created) }),
		"multi-attach-enabled":             one(func(*volume) string { return "false" }),
		"attachment.instance-id":           attached(func(v *volume) string { return v.attachInstance }),
		"attachment.device":                attached(func(v *volume) string { return v.attachDevice }),
		"attachment.status":                attached(func(v *volume) string { return v.attachState }),
		"attachment.attach-time":           attached(func(v *volume) string { return ec2Time(v.attachTime) }),
		"attachment.delete-on-termination": attached(func(v *volume) string { return strconv.FormatBool(v.deleteOnTermination) }),
	}
}

type describeVolumesBody struct {
	ec2Meta
	Volumes   []xmlVolume `xml:"volumeSet>item"`
	NextToken string      `xml:"nextToken,omitempty"`
}

func (s *Server) ec2DescribeVolumes(p ec2Params) (ec2Body, error) {
	ids := p.list("VolumeId")
	if len(ids) > 0 && p.has("MaxResults") {
		return nil, ec2Err("InvalidParameterCombination", "The parameter volumeSet cannot be used with the parameter maxResults")
	}
	var vols []*volume
	if len(ids) > 0 {
		seen := map[string]bool{}
		for _, id := range ids {
			v, err := s.volumeByID(id)
			if err != nil {
				return nil, err
			}
			if !seen[id] {
				seen[id] = true
				vols = append(vols, v)
			}
		}
		sort.Slice(vols, func(i, j int) bool { return vols[i].id < vols[j].id })
	} else {
		for _, id := range sortedKeys(s.vols) {
			v := s.vols[id]
			s.settleVolume(v, false)
			vols = append(vols, v)
		}
	}
	vols, err := applyFilters(vols, p.filters(), volumeFilters(s), func(v *volume) map[string]string { return v.tags })
	if err != nil {
		return nil, err
	}
	page, next, err := paginate(vols, func(v *volume) string { return v.id }, p, 5, 500)
	if err != nil {
		return nil, err
	}
	out := &describeVolumesBody{NextToken: next, Volumes: []xmlVolume{}}
	for _, v := range page {
		s.settleVolume(v, true)
		out.Volumes = append(out.Volumes, s.volumeXML(v))
	}
	return out, nil
}

type attachmentBody struct {
	ec2Meta
	xmlAttachment
}

// validDevice reports whether name is a device name EC2 accepts for an EBS
// volume: /dev/sd[f-p], /dev/xvd[a-z], /dev/sda1, /dev/nvme…
func validDevice(name string) bool {
	if strings.HasPrefix(name, "/dev/") {
		name = name[len("/dev/"):]
	}
	if len(name) < 3 || len(name) > 8 {
		return false
	}
	for _, p := range []string{"sd", "xvd", "hd"} {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			c := name[len(p)]
			return c >= 'a' && c <= 'z'
		}
	}
	return false
}

// attachedVolumes returns the volumes attached (or attaching, or detaching)
// to an instance, by device name. Callers hold s.mu.
func (s *Server) attachedVolumes(instID string) []*volume {
	var out []*volume
	for _, id := range sortedKeys(s.vols) {
		v := s.vols[id]
		s.settleVolume(v, false)
		if v.attachInstance == instID {
			out = append(out, v)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].attachDevice < out[j].attachDevice })
	return out
}

func (s *Server) ec2AttachVolume(p ec2Params) (ec2Body, error) {
	volID, err := p.required("VolumeId")
	if err != nil {
		return nil, err
	}
	instID, err := p.required("InstanceId")
	if err != nil {
		return nil, err
	}
	device, err := p.required("Device")
	if err != nil {
		return nil, err
	}
	v, err := s.volumeByID(volID)
	if err != nil {
		return nil, err
	}
	inst, err := s.instanceByID(instID)
	if err != nil {
		return nil, err
	}
	switch {
	case v.attachInstance != "":
		return nil, ec2Err("VolumeInUse", "%s is already attached to an instance", v.id)
	case v.state != "available":
		return nil, ec2Err("IncorrectState", "The volume '%s' is not in the 'available' state.", v.id)
	case inst.state != "running" && inst.state != "stopped":
		return nil, ec2Err("IncorrectState", "Instance '%s' is not 'running'.", inst.id)
	case v.az != inst.az:
		return nil, ec2Err("InvalidVolume.ZoneMismatch", "The volume '%s' is not in the same availability zone as instance '%s'", v.id, inst.id)
	case !validDevice(device):
		return nil, ec2Err("InvalidParameterValue", "Value (%s) for parameter device is invalid. %s is not a valid EBS device name.", device, device)
	}
	for _, other := range s.attachedVolumes(inst.id) {
		if other.attachDevice == device {
			return nil, ec2Err("InvalidParameterValue", "Invalid value '%s' for unixDevice. Attachment point %s is already in use", device, device)
		}
	}
	v.state = "in-use"
	v.attachInstance, v.attachDevice, v.attachState = inst.id, device, "attaching"
	v.attachTime = s.now()
	v.deleteOnTermination = false
	s.startTimer(&v.timer)
	return &attachmentBody{xmlAttachment: attachmentXML(v)}, nil
}

func (s *Server) ec2DetachVolume(p ec2Params) (ec2Body, error) {
	volID, err := p.required("VolumeId")
	if err != nil {
		return nil, err
	}
	v, err := s.volumeByID(volID)
	if err != nil {
		return nil, err
	}
	if v.attachInstance == "" {
		return nil, ec2Err("IncorrectState", "Volume '%s' is in the '%s' state.", v.id, v.state)
	}
	if id := p.str("InstanceId"); id != "" && id != v.attachInstance {
		return nil, ec2Err("InvalidAttachment.NotFound", "The volume '%s' is not attached to instance '%s'", v.id, id)
	}
	if d := p.str("Device"); d != "" && d != v.attachDevice {
		return nil, ec2Err("InvalidAttachment.NotFound", "The volume '%s' is not attached at device '%s'", v.id, d)
	}
	if inst := s.ec2.instances[v.attachInstance]; inst != nil && v.attachDevice == inst.rootDeviceName && inst.state != "stopped" {
		return nil, ec2Err("IncorrectState", "Unable to detach root volume '%s' from instance '%s'", v.id, inst.id)
	}
	if v.attachState != "detaching" {
		v.attachState = "detaching"
		s.startTimer(&v.timer)
	}
	return &attachmentBody{xmlAttachment: attachmentXML(v)}, nil
}

func (s *Server) ec2DeleteVolume(p ec2Params) (ec2Body, error) {
	volID, err := p.required("VolumeId")
	if err != nil {
		return nil, err
	}
	v, err := s.volumeByID(volID)
	if err != nil {
		return nil, err
	}
	if v.attachInstance != "" {
		return nil, ec2Err("VolumeInUse", "Volume %s is currently attached to %s", v.id, v.attachInstance)
	}
	s.dropVolume(v)
	return &emptyBody{}, nil
}

// settleSnapshot brings a snapshot's state up to date: a snapshot made by
// CreateSnapshot(s) completes when its transition is due; a pending EBS
// direct snapshot errs after its timeout. Callers hold s.mu.
func (s *Server) settleSnapshot(sn *snapshot, observe bool) {
	sn.checkTimeout(s.now())
	t := s.ec2.snapTimers[sn.id]
	if t == nil {
		return
	}
	if sn.state != "pending" {
		delete(s.ec2.snapTimers, sn.id)
		return
	}
	if s.settled(t, observe) {
		sn.state = "completed"
		sn.progress = "100%"
		delete(s.ec2.snapTimers, sn.id)
	}
}

// newEC2Snapshot snapshots volume v as it is now: the snapshot shares the
// volume's blocks, so later writes to the volume do not change it. Callers
// hold s.mu.
func (s *Server) newEC2Snapshot(v *volume, description string, tags map[string]string) (*snapshot, error) {
	blocks, err := s.volumeBlocks(v)
	if err != nil {
		return nil, err
	}
	if tags == nil {
		tags = map[string]string{}
	}
	sn := &snapshot{
		id:          s.newID("snap"),
		volumeID:    v.id,
		state:       "pending",
		sizeGiB:     v.sizeGiB,
		description: description,
		encrypted:   v.encrypted,
		kmsKeyArn:   v.kmsKeyID,
		tags:        tags,
		startTime:   s.now(),
		progress:    "0%",
		blocks:      blocks,
	}
	s.snaps[sn.id] = sn
	t := &stateTimer{}
	s.startTimer(t)
	s.ec2.snapTimers[sn.id] = t
	return sn, nil
}

func (s *Server) snapshotOwner(sn *snapshot) string {
	if s.ec2.amazonSnaps[sn.id] {
		return amazonOwnerID
	}
	return s.opts.AccountID
}

func (s *Server) snapshotXML(sn *snapshot) xmlSnapshot {
	x := xmlSnapshot{
		SnapshotID:  sn.id,
		VolumeID:    sn.volumeID,
		Status:      sn.state,
		StartTime:   ec2Time(sn.startTime),
		Progress:    sn.progress,
		OwnerID:     s.snapshotOwner(sn),
		VolumeSize:  sn.sizeGiB,
		Description: sn.description,
		Encrypted:   sn.encrypted,
		KmsKeyID:    sn.kmsKeyArn,
		StorageTier: "standard",
		TagSet:      xmlTags(sn.tags),
	}
	if x.Progress == "" && sn.state == "completed" {
		x.Progress = "100%"
	}
	if s.ec2.amazonSnaps[sn.id] {
		x.OwnerAlias = "amazon"
	}
	return x
}

type snapshotBody struct {
	ec2Meta
	xmlSnapshot
}

func (s *Server) ec2CreateSnapshot(p ec2Params) (ec2Body, error) {
	volID, err := p.required("VolumeId")
	if err != nil {
		return nil, err
	}
	v, err := s.volumeByID(volID)
	if err != nil {
		return nil, err
	}
	if v.state == "creating" {
		return nil, ec2Err("IncorrectState", "Volume '%s' is in the 'creating' state.", v.id)
	}
	tags, err := p.tagSpecs("snapshot")
	if err != nil {
		return nil, err
	}
	sn, err := s.newEC2Snapshot(v, p.str("Description"), tags["snapshot"])
	if err != nil {
		return nil, err
	}
	return &snapshotBody{xmlSnapshot: s.snapshotXML(sn)}, nil
}

type createSnapshotsBody struct {
	ec2Meta
	Snapshots []xmlSnapshotInfo `xml:"snapshotSet>item"`
}

func (s *Server) ec2CreateSnapshots(p ec2Params) (ec2Body, error) {
	instID, err := p.required("InstanceSpecification.InstanceId")
	if err != nil {
		return nil, err
	}
	inst, err := s.instanceByID(instID)
	if err != nil {
		return nil, err
	}
	excludeBoot, _, err := p.boolean("InstanceSpecification.ExcludeBootVolume")
	if err != nil {
		return nil, err
	}
	excluded := map[string]bool{}
	for _, id := range p.list("InstanceSpecification.ExcludeDataVolumeId") {
		excluded[id] = true
	}
	fromVolume := false
	switch c := p.str("CopyTagsFromSource"); c {
	case "":
	case "volume":
		fromVolume = true
	default:
		return nil, ec2Err("InvalidParameterValue", "Value (%s) for parameter CopyTagsFromSource is invalid.", c)
	}
	tags, err := p.tagSpecs("snapshot")
	if err != nil {
		return nil, err
	}
	// Every snapshot is taken at the same instant: crash-consistent.
	out := &createSnapshotsBody{Snapshots: []xmlSnapshotInfo{}}
	for _, v := range s.attachedVolumes(inst.id) {
		if (excludeBoot && v.attachDevice == inst.rootDeviceName) || excluded[v.id] {
			continue
		}
		t := map[string]string{}
		if fromVolume {
			t = copyTags(v.tags)
		}
		for k, val := range tags["snapshot"] {
			t[k] = val
		}
		sn, err := s.newEC2Snapshot(v, p.str("Description"), t)
		if err != nil {
			return nil, err
		}
		out.Snapshots = append(out.Snapshots, xmlSnapshotInfo{
			SnapshotID: sn.id, VolumeID: sn.volumeID, State: sn.state, StartTime: ec2Time(sn.startTime),
			Progress: sn.progress, OwnerID: s.opts.AccountID, VolumeSize: sn.sizeGiB,
			Description: sn.description, Encrypted: sn.encrypted, TagSet: xmlTags(sn.tags),
		})
	}
	return out, nil
}

func snapshotFilters(s *Server) filterDefs[*snapshot] {
	one := func(f func(sn *snapshot) string) func(*snapshot) []string {
		return func(sn *snapshot) []string { return []string{f(sn)} }
	}
	return filterDefs[*snapshot]{
		"snapshot-id": one(func(sn *snapshot) string { return sn.id }),
		"volume-id":   one(func(sn *snapshot) string { return sn.volumeID }),
		"status":      one(func(sn *snapshot) string { return sn.state }),
		"description": one(func(sn *snapshot) string { return sn.description }),
		"encrypted":   one(func(sn *snapshot) string { return strconv.FormatBool(sn.encrypted) }),
		"owner-id":    one(s.snapshotOwner),
		"owner-alias": func(sn *snapshot) []string {
			if s.ec2.amazonSnaps[sn.id] {
				return []string{"amazon"}
			}
			return nil
		},
		"progress":     one(func(sn *snapshot) string { return s.snapshotXML(sn).Progress }),
		"start-time":   one(func(sn *snapshot) string { return ec2Time(sn.startTime) }),
		"storage-tier": one(func(*snapshot) string { return "standard" }),
		"volume-size":  one(func(sn *snapshot) string { return strconv.FormatInt(sn.sizeGiB, 10) }),
	}
}

type describeSnapshotsBody struct {
	ec2Meta
	Snapshots []xmlSnapshot `xml:"snapshotSet>item"`
	NextToken string        `xml:"nextToken,omitempty"`
}

// ec2DescribeSnapshots lists snapshots. Without SnapshotId or Owner it
// lists the account's own snapshots; the snapshots behind the built-in
// images belong to Amazon (Owner "amazon").
func (s *Server) ec2DescribeSnapshots(p ec2Params) (ec2Body, error) {
	ids := p.list("SnapshotId")
	owners := map[string]bool{}
	for _, o := range p.list("Owner") {
		switch o {
		case "self":
			owners[s.opts.AccountID] = true
		case "amazon":
			owners[amazonOwnerID] = true
		default:
			owners[o] = true
		}
	}
	var snaps []*snapshot
	if len(ids) > 0 {
		seen := map[string]bool{}
		for _, id := range ids {
			if err := checkID(id, "snap", "InvalidSnapshotID.Malformed"); err != nil {
				return nil, err
			}
			sn := s.snaps[id]
			if sn == nil {
				return nil, ec2Err("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
			}
			if !seen[id] {
				seen[id] = true
				snaps = append(snaps, sn)
			}
		}
		sort.Slice(snaps, func(i, j int) bool { return snaps[i].id < snaps[j].id })
	} else {
		for _, id := range sortedKeys(s.snaps) {
			sn := s.snaps[id]
			if len(owners) == 0 && s.ec2.amazonSnaps[id] {
				continue
			}
			snaps = append(snaps, sn)
		}
	}
	if len(owners) > 0 {
		var keep []*snapshot
		for _, sn := range snaps {
			if owners[s.snapshotOwner(sn)] {
				keep = append(keep, sn)
			}
		}
		snaps = keep
	}
	for _, sn := range snaps {
		s.settleSnapshot(sn, false)
	}
	snaps, err := applyFilters(snaps, p.filters(), snapshotFilters(s), func(sn *snapshot) map[string]string { return sn.tags })
	if err != nil {
		return nil, err
	}
	page, next, err := paginate(snaps, func(sn *snapshot) string { return sn.id }, p, 5, 1000)
	if err != nil {
		return nil, err
	}
	out := &describeSnapshotsBody{NextToken: next, Snapshots: []xmlSnapshot{}}
	for _, sn := range page {
		s.settleSnapshot(sn, true)
		out.Snapshots = append(out.Snapshots, s.snapshotXML(sn))
	}
	return out, nil
}

func (s *Server) ec2DeleteSnapshot(p ec2Params) (ec2Body, error) {
	id, err := p.required("SnapshotId")
	if err != nil {
		return nil, err
	}
	if err := checkID(id, "snap", "InvalidSnapshotID.Malformed"); err != nil {
		return nil, err
	}
	if s.snaps[id] == nil {
		return nil, ec2Err("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
	}
	for _, imgID := range sortedKeys(s.ec2.images) {
		if s.ec2.images[imgID].usesSnapshot(id) {
			return nil, ec2Err("InvalidSnapshot.InUse", "The snapshot %s is currently in use by %s", id, imgID)
		}
	}
	delete(s.snaps, id)
	delete(s.ec2.snapTimers, id)
	return &emptyBody{}, nil
}

// taggable finds the tags of any taggable resource by ID, and its resource
// type as DescribeTags names it. Callers hold s.mu.
func (s *Server) taggable(id string) (*map[string]string, string, error) {
	prefix, _, _ := strings.Cut(id, "-")
	switch prefix {
	case "vol":
		if v := s.vols[id]; v != nil {
			return &v.tags, "volume", nil
		}
		return nil, "", ec2Err("InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
	case "snap":
		if sn := s.snaps[id]; sn != nil {
			return &sn.tags, "snapshot", nil
		}
		return nil, "", ec2Err("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
	case "i":
		if in := s.ec2.instances[id]; in != nil {
			return &in.tags, "instance", nil
		}
		return nil, "", ec2Err("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
	case "ami":
		if im := s.ec2.images[id]; im != nil {
			return &im.tags, "image", nil
		}
		return nil, "", ec2Err("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
	case "vpc":
		if v := s.ec2.vpcs[id]; v != nil {
			return &v.tags, "vpc", nil
		}
		return nil, "", ec2Err("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", id)
	case "subnet":
		if sn := s.ec2.subnets[id]; sn != nil {
			return &sn.tags, "subnet", nil
		}
		return nil, "", ec2Err("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", id)
	case "sg":
		if g := s.ec2.groups[id]; g != nil {
			return &g.tags, "security-group", nil
		}
		return nil, "", ec2Err("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
	}
	return nil, "", ec2Err("InvalidID", "The ID '%s' is not valid", id)
}

func (s *Server) ec2CreateTags(p ec2Params) (ec2Body, error) {
	ids := p.list("ResourceId")
	if len(ids) == 0 {
		return nil, ec2Err("MissingParameter", "The request must contain the parameter resourceIdSet")
	}
	tags, err := p.tagList("Tag")
	if err != nil {
		return nil, err
	}
	// Validate every resource first: the call changes all or nothing.
	var targets []*map[string]string
	for _, id := range ids {
		m, _, err := s.taggable(id)
		if err != nil {
			return nil, err
		}
		n := len(*m)
		for k := range tags {
			if _, ok := (*m)[k]; !ok {
				n++
			}
		}
		if n > maxTags {
			return nil, ec2Err("TagLimitExceeded", "The maximum number of Tags for a resource has been reached.")
		}
		targets = append(targets, m)
	}
	for _, m := range targets {
		if *m == nil {
			*m = map[string]string{}
		}
		for k, v := range tags {
			(*m)[k] = v
		}
	}
	return okBody(), nil
}

func (s *Server) ec2DeleteTags(p ec2Params) (ec2Body, error) {
	ids := p.list("ResourceId")
	if len(ids) == 0 {
		return nil, ec2Err("MissingParameter", "The request must contain the parameter resourceIdSet")
	}
	var targets []*map[string]string
	for _, id := range ids {
		m, _, err := s.taggable(id)
		if err != nil {
			return nil, err
		}
		targets = append(targets, m)
	}
	members := p.members("Tag")
	for _, m := range targets {
		if len(members) == 0 {
			*m = map[string]string{}
			continue
		}
		for _, t := range members {
			k := p.str(t + ".Key")
			if cur, ok := (*m)[k]; ok && (!p.has(t+".Value") || p.str(t+".Value") == cur) {
				delete(*m, k)
			}
		}
	}
	return okBody(), nil
}

type xmlTagDescription struct {
	ResourceID   string `xml:"resourceId"`
	ResourceType string `xml:"resourceType"`
	Key          string `xml:"key"`
	Value        string `xml:"value"`
}

type describeTagsBody struct {
	ec2Meta
	Tags      []xmlTagDescription `xml:"tagSet>item"`
	NextToken string              `xml:"nextToken,omitempty"`
}

func (s *Server) ec2DescribeTags(p ec2Params) (ec2Body, error) {
	var ids []string
	for _, m := range []map[string]bool{
		keysOf(s.vols), keysOf(s.snaps), keysOf(s.ec2.instances), keysOf(s.ec2.images),
		keysOf(s.ec2.vpcs), keysOf(s.ec2.subnets), keysOf(s.ec2.groups),
	} {
		for id := range m {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	var all []xmlTagDescription
	for _, id := range ids {
		m, rt, _ := s.taggable(id)
		for _, t := range xmlTags(*m) {
			all = append(all, xmlTagDescription{id, rt, t.Key, t.Value})
		}
	}
	one := func(f func(t xmlTagDescription) string) func(xmlTagDescription) []string {
		return func(t xmlTagDescription) []string { return []string{f(t)} }
	}
	defs := filterDefs[xmlTagDescription]{
		"key":           one(func(t xmlTagDescription) string { return t.Key }),
		"value":         one(func(t xmlTagDescription) string { return t.Value }),
		"resource-id":   one(func(t xmlTagDescription) string { return t.ResourceID }),
		"resource-type": one(func(t xmlTagDescription) string { return t.ResourceType }),
	}
	all, err := applyFilters(all, p.filters(), defs, nil)
	if err != nil {
		return nil, err
	}
	page, next, err := paginate(all, func(t xmlTagDescription) string { return t.ResourceID + "\x00" + t.Key }, p, 5, 1000)
	if err != nil {
		return nil, err
	}
	return &describeTagsBody{Tags: append([]xmlTagDescription{}, page...), NextToken: next}, nil
}

func keysOf[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}
