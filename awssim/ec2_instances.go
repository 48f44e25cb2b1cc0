package awssim

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
)

// EC2 instances.

// instance is an EC2 instance. Its volumes are the volumes whose
// attachInstance is its ID.
type instance struct {
	id, reservationID, imageID, instanceType string
	state                                    string // pending | running | stopping | stopped | shutting-down | terminated
	reason, stateReason                      string
	subnetID, vpcID, az                      string
	privateIP                                netip.Addr
	publicIP                                 netip.Addr // while running, in a subnet that maps public IPs
	eniID                                    string
	groups                                   []string
	userData                                 []byte
	keyName                                  string
	tags                                     map[string]string
	launchTime                               time.Time
	clientToken                              string
	launchIndex                              int
	rootDeviceName                           string
	platform, architecture                   string
	virtualizationType                       string
	enaSupport                               bool
	disableAPITermination                    bool
	shutdownBehavior                         string // stop | terminate
	sourceDestCheck                          bool
	ebsOptimized                             bool

	vm          *qemuVM    // the running virtual machine (Options.QEMU), or nil
	timer       stateTimer // pending, stopping, shutting-down
	statusTimer stateTimer // status checks: initializing until settled
}

var stateCodes = map[string]int{
	"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80,
}

// settleInstance completes an instance's transition when it is due.
// Callers hold s.mu.
func (s *Server) settleInstance(in *instance, observe bool) {
	next := map[string]string{"pending": "running", "stopping": "stopped", "shutting-down": "terminated"}[in.state]
	if next == "" || !s.settled(&in.timer, observe) {
		return
	}
	in.state = next
	if next == "running" {
		s.startTimer(&in.statusTimer)
	}
}

func (s *Server) instanceByID(id string) (*instance, error) {
	if err := checkID(id, "i", "InvalidInstanceID.Malformed"); err != nil {
		return nil, err
	}
	in := s.ec2.instances[id]
	if in == nil {
		return nil, ec2Err("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
	}
	s.settleInstance(in, false)
	return in, nil
}

// instancesByID looks up every ID of the list InstanceId.N, which must not
// be empty.
func (s *Server) instancesByID(p ec2Params) ([]*instance, error) {
	ids := p.list("InstanceId")
	if len(ids) == 0 {
		return nil, ec2Err("MissingParameter", "The request must contain the parameter InstanceId")
	}
	var out []*instance
	var missing []string
	for _, id := range ids {
		if err := checkID(id, "i", "InvalidInstanceID.Malformed"); err != nil {
			return nil, err
		}
		in := s.ec2.instances[id]
		if in == nil {
			missing = append(missing, id)
			continue
		}
		s.settleInstance(in, false)
		out = append(out, in)
	}
	switch len(missing) {
	case 0:
	case 1:
		return nil, ec2Err("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", missing[0])
	default:
		return nil, ec2Err("InvalidInstanceID.NotFound", "The instance IDs '%s' do not exist", strings.Join(missing, ", "))
	}
	return out, nil
}

type xmlInstanceState struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

func stateXML(state string) xmlInstanceState { return xmlInstanceState{stateCodes[state], state} }

type xmlGroup struct {
	GroupID   string `xml:"groupId"`
	GroupName string `xml:"groupName"`
}

type xmlInstanceEbs struct {
	VolumeID            string `xml:"volumeId"`
	Status              string `xml:"status"`
	AttachTime          string `xml:"attachTime"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type xmlInstanceMapping struct {
	DeviceName string         `xml:"deviceName"`
	Ebs        xmlInstanceEbs `xml:"ebs"`
}

type xmlENIAssociation struct {
	PublicIP      string `xml:"publicIp"`
	PublicDNSName string `xml:"publicDnsName"`
	IPOwnerID     string `xml:"ipOwnerId"`
}

type xmlPrivateIP struct {
	PrivateIPAddress string             `xml:"privateIpAddress"`
	PrivateDNSName   string             `xml:"privateDnsName"`
	Primary          bool               `xml:"primary"`
	Association      *xmlENIAssociation `xml:"association,omitempty"`
}

type xmlENI struct {
	NetworkInterfaceID string             `xml:"networkInterfaceId"`
	SubnetID           string             `xml:"subnetId"`
	VpcID              string             `xml:"vpcId"`
	Description        string             `xml:"description"`
	OwnerID            string             `xml:"ownerId"`
	Status             string             `xml:"status"`
	MacAddress         string             `xml:"macAddress"`
	PrivateIPAddress   string             `xml:"privateIpAddress"`
	PrivateDNSName     string             `xml:"privateDnsName"`
	SourceDestCheck    bool               `xml:"sourceDestCheck"`
	Groups             []xmlGroup         `xml:"groupSet>item"`
	Association        *xmlENIAssociation `xml:"association,omitempty"`
	PrivateIPAddresses []xmlPrivateIP     `xml:"privateIpAddressesSet>item"`
	Attachment         struct {
		AttachmentID        string `xml:"attachmentId"`
		DeviceIndex         int    `xml:"deviceIndex"`
		Status              string `xml:"status"`
		AttachTime          string `xml:"attachTime"`
		DeleteOnTermination bool   `xml:"deleteOnTermination"`
	} `xml:"attachment"`
	InterfaceType string `xml:"interfaceType"`
}

type xmlStateReason struct {
	Code    string `xml:"code"`
	Message string `xml:"message"`
}

type xmlInstance struct {
	InstanceID      string           `xml:"instanceId"`
	ImageID         string           `xml:"imageId"`
	State           xmlInstanceState `xml:"instanceState"`
	PrivateDNSName  string           `xml:"privateDnsName"`
	DNSName         string           `xml:"dnsName"`
	PublicIPAddress string           `xml:"ipAddress,omitempty"`
	Reason          string           `xml:"reason"`
	KeyName         string           `xml:"keyName,omitempty"`
	AmiLaunchIndex  int              `xml:"amiLaunchIndex"`
	InstanceType    string           `xml:"instanceType"`
	LaunchTime      string           `xml:"launchTime"`
	Placement       struct {
		AvailabilityZone   string `xml:"availabilityZone"`
		AvailabilityZoneID string `xml:"availabilityZoneId"`
		GroupName          string `xml:"groupName"`
		Tenancy            string `xml:"tenancy"`
	} `xml:"placement"`
	Platform           string               `xml:"platform,omitempty"`
	PlatformDetails    string               `xml:"platformDetails"`
	UsageOperation     string               `xml:"usageOperation"`
	MonitoringState    string               `xml:"monitoring>state"`
	SubnetID           string               `xml:"subnetId,omitempty"`
	VpcID              string               `xml:"vpcId,omitempty"`
	PrivateIPAddress   string               `xml:"privateIpAddress,omitempty"`
	SourceDestCheck    bool                 `xml:"sourceDestCheck"`
	Groups             []xmlGroup           `xml:"groupSet>item"`
	StateReason        *xmlStateReason      `xml:"stateReason,omitempty"`
	Architecture       string               `xml:"architecture"`
	RootDeviceType     string               `xml:"rootDeviceType"`
	RootDeviceName     string               `xml:"rootDeviceName"`
	BlockDeviceMapping []xmlInstanceMapping `xml:"blockDeviceMapping>item"`
	VirtualizationType string               `xml:"virtualizationType"`
	ClientToken        string               `xml:"clientToken"`
	TagSet             []xmlTag             `xml:"tagSet>item,omitempty"`
	Hypervisor         string               `xml:"hypervisor"`
	NetworkInterfaces  []xmlENI             `xml:"networkInterfaceSet>item"`
	EbsOptimized       bool                 `xml:"ebsOptimized"`
	EnaSupport         bool                 `xml:"enaSupport"`
	CPUOptions         struct {
		CoreCount      int `xml:"coreCount"`
		ThreadsPerCore int `xml:"threadsPerCore"`
	} `xml:"cpuOptions"`
	MetadataOptions struct {
		State                   string `xml:"state"`
		HTTPTokens              string `xml:"httpTokens"`
		HTTPPutResponseHopLimit int    `xml:"httpPutResponseHopLimit"`
		HTTPEndpoint            string `xml:"httpEndpoint"`
		HTTPProtocolIpv6        string `xml:"httpProtocolIpv6"`
		InstanceMetadataTags    string `xml:"instanceMetadataTags"`
	} `xml:"metadataOptions"`
}

func (s *Server) privateDNSName(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	host := "ip-" + strings.ReplaceAll(ip.String(), ".", "-")
	if s.opts.Region == "us-east-1" {
		return host + ".ec2.internal"
	}
	return host + "." + s.opts.Region + ".compute.internal"
}

func (s *Server) publicDNSName(ip netip.Addr) string {
	host := "ec2-" + strings.ReplaceAll(ip.String(), ".", "-")
	if s.opts.Region == "us-east-1" {
		return host + ".compute-1.amazonaws.com"
	}
	return host + "." + s.opts.Region + ".compute.amazonaws.com"
}

// assignPublicIP gives a starting instance a new public IP when its subnet
// maps public IPs on launch, as EC2 does (a stop releases it).
func (s *Server) assignPublicIP(in *instance) {
	if sn := s.ec2.subnets[in.subnetID]; sn == nil || !sn.mapPublicIP {
		return
	}
	s.ids["public-ip"]++
	n := s.ids["public-ip"]
	in.publicIP = netip.AddrFrom4([4]byte{3, byte(80 + n>>16), byte(n >> 8), byte(n)})
}

// macAddress derives a stable MAC address from a network interface ID.
func macAddress(eniID string) string {
	h := eniID[len(eniID)-8:]
	return fmt.Sprintf("0e:%s:%s:%s:%s:01", h[0:2], h[2:4], h[4:6], h[6:8])
}

func (s *Server) instanceXML(in *instance) xmlInstance {
	details, usage := platformDetails(in.platform)
	x := xmlInstance{
		InstanceID: in.id, ImageID: in.imageID, State: stateXML(in.state), Reason: in.reason, KeyName: in.keyName,
		AmiLaunchIndex: in.launchIndex, InstanceType: in.instanceType, LaunchTime: ec2Time(in.launchTime),
		Platform: in.platform, PlatformDetails: details, UsageOperation: usage, MonitoringState: "disabled",
		SourceDestCheck: in.sourceDestCheck, Architecture: in.architecture, RootDeviceType: "ebs",
		RootDeviceName: in.rootDeviceName, VirtualizationType: in.virtualizationType, ClientToken: in.clientToken,
		TagSet: xmlTags(in.tags), Hypervisor: "xen", EbsOptimized: in.ebsOptimized, EnaSupport: in.enaSupport,
		Groups: []xmlGroup{},
	}
	x.Placement.AvailabilityZone = in.az
	x.Placement.AvailabilityZoneID = s.zoneID(in.az)
	x.Placement.Tenancy = "default"
	x.MetadataOptions.State, x.MetadataOptions.HTTPTokens, x.MetadataOptions.HTTPPutResponseHopLimit = "applied", "required", 2
	x.MetadataOptions.HTTPEndpoint, x.MetadataOptions.HTTPProtocolIpv6, x.MetadataOptions.InstanceMetadataTags = "enabled", "disabled", "disabled"
	if t, ok := s.ec2.types[in.instanceType]; ok {
		x.CPUOptions.CoreCount = t.vcpus / t.threads
		x.CPUOptions.ThreadsPerCore = t.threads
		if t.nitro {
			x.Hypervisor = "nitro"
		}
	}
	if in.stateReason != "" {
		x.StateReason = &xmlStateReason{Code: in.stateReason, Message: in.stateReason + ": User initiated shutdown"}
	}
	for _, gid := range in.groups {
		name := ""
		if g := s.ec2.groups[gid]; g != nil {
			name = g.name
		}
		x.Groups = append(x.Groups, xmlGroup{gid, name})
	}
	for _, v := range s.attachedVolumes(in.id) {
		x.BlockDeviceMapping = append(x.BlockDeviceMapping, xmlInstanceMapping{DeviceName: v.attachDevice, Ebs: xmlInstanceEbs{
			VolumeID: v.id, Status: v.attachState, AttachTime: ec2Time(v.attachTime), DeleteOnTermination: v.deleteOnTermination,
		}})
	}
	if in.state != "terminated" {
		x.SubnetID, x.VpcID = in.subnetID, in.vpcID
		x.PrivateIPAddress = in.privateIP.String()
		x.PrivateDNSName = s.privateDNSName(in.privateIP)
		eni := xmlENI{
			NetworkInterfaceID: in.eniID, SubnetID: in.subnetID, VpcID: in.vpcID, OwnerID: s.opts.AccountID,
			Status: "in-use", MacAddress: macAddress(in.eniID), PrivateIPAddress: x.PrivateIPAddress,
			PrivateDNSName: x.PrivateDNSName, SourceDestCheck: in.sourceDestCheck, Groups: x.Groups,
			InterfaceType: "interface",
		}
		var assoc *xmlENIAssociation
		if in.publicIP.IsValid() {
			x.PublicIPAddress, x.DNSName = in.publicIP.String(), s.publicDNSName(in.publicIP)
			assoc = &xmlENIAssociation{PublicIP: x.PublicIPAddress, PublicDNSName: x.DNSName, IPOwnerID: "amazon"}
		}
		eni.Association = assoc
		eni.PrivateIPAddresses = []xmlPrivateIP{{
			PrivateIPAddress: x.PrivateIPAddress, PrivateDNSName: x.PrivateDNSName, Primary: true, Association: assoc,
		}}
		eni.Attachment.AttachmentID = "eni-attach-" + in.eniID[len("eni-"):]
		eni.Attachment.Status = "attached"
		eni.Attachment.AttachTime = ec2Time(in.launchTime)
		eni.Attachment.DeleteOnTermination = true
		x.NetworkInterfaces = []xmlENI{eni}
	}
	return x
}

type xmlReservation struct {
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Groups        []xmlGroup    `xml:"groupSet>item"`
	Instances     []xmlInstance `xml:"instancesSet>item"`
}

type reservationBody struct {
	ec2Meta
	xmlReservation
}

// reservation renders the instances of one reservation, in launch order.
func (s *Server) reservation(resID string) xmlReservation {
	r := xmlReservation{ReservationID: resID, OwnerID: s.opts.AccountID, Groups: []xmlGroup{}}
	var ins []*instance
	for _, in := range s.ec2.instances {
		if in.reservationID == resID {
			s.settleInstance(in, false)
			ins = append(ins, in)
		}
	}
	sort.Slice(ins, func(i, j int) bool { return ins[i].launchIndex < ins[j].launchIndex })
	for _, in := range ins {
		r.Instances = append(r.Instances, s.instanceXML(in))
	}
	return r
}

// launchMapping is a block device mapping of RunInstances merged with the
// image's.
type launchMapping struct {
	device              string
	spec                volumeSpec
	deleteOnTermination bool
}

// launchMappings merges the image's block device mappings with the
// request's BlockDeviceMapping.N.
func (s *Server) launchMappings(p ec2Params, im *image, az string) ([]launchMapping, error) {
	var out []launchMapping
	for _, m := range im.mappings {
		out = append(out, launchMapping{device: m.device, deleteOnTermination: m.deleteOnTermination, spec: volumeSpec{
			az: az, volumeType: m.volumeType, snapshotID: m.snapshotID, sizeGiB: m.sizeGiB, encrypted: m.encrypted,
		}})
	}
	for _, m := range p.members("BlockDeviceMapping") {
		dev := p.str(m + ".DeviceName")
		if dev == "" {
			return nil, ec2Err("MissingParameter", "The request must contain the parameter %s.DeviceName", m)
		}
		idx := -1
		for i := range out {
			if out[i].device == dev {
				idx = i
			}
		}
		if p.has(m + ".NoDevice") {
			if dev == im.rootDeviceName {
				return nil, ec2Err("InvalidBlockDeviceMapping", "The root device %s cannot be suppressed.", dev)
			}
			if idx >= 0 {
				out = append(out[:idx], out[idx+1:]...)
			}
			continue
		}
		if p.str(m+".VirtualName") != "" {
			continue // instance store: not simulated
		}
		if !validDevice(dev) {
			return nil, ec2Err("InvalidBlockDeviceMapping", "Invalid device name %s", dev)
		}
		if idx < 0 {
			out = append(out, launchMapping{device: dev, deleteOnTermination: true, spec: volumeSpec{az: az}})
			idx = len(out) - 1
		}
		lm := &out[idx]
		e := m + ".Ebs."
		var err error
		if id := p.str(e + "SnapshotId"); id != "" {
			if dev == im.rootDeviceName && id != lm.spec.snapshotID {
				// As in EC2: a replicated boot disk cannot replace the
				// image's root at launch; swap the root volume instead.
				return nil, ec2Err("InvalidBlockDeviceMapping", "snapshotId cannot be modified on root device")
			}
			lm.spec.snapshotID = id
		}
		if p.has(e + "VolumeSize") {
			if lm.spec.sizeGiB, err = p.integer(e+"VolumeSize", 0); err != nil {
				return nil, err
			}
		}
		if t := p.str(e + "VolumeType"); t != "" {
			lm.spec.volumeType = t
		}
		if lm.spec.iops, err = p.integer(e+"Iops", lm.spec.iops); err != nil {
			return nil, err
		}
		if lm.spec.throughput, err = p.integer(e+"Throughput", lm.spec.throughput); err != nil {
			return nil, err
		}
		if dot, set, err := p.boolean(e + "DeleteOnTermination"); err != nil {
			return nil, err
		} else if set {
			lm.deleteOnTermination = dot
		}
		if enc, set, err := p.boolean(e + "Encrypted"); err != nil {
			return nil, err
		} else if set {
			lm.spec.encrypted = enc
		}
		if k := p.str(e + "KmsKeyId"); k != "" {
			lm.spec.kmsKeyID = k
		}
		if lm.spec.snapshotID == "" && lm.spec.sizeGiB == 0 {
			return nil, ec2Err("InvalidBlockDeviceMapping", "The device '%s' needs a snapshot ID or a volume size.", dev)
		}
	}
	return out, nil
}

// ec2RunInstances launches MaxCount instances. A ClientToken makes it
// idempotent: the same request again returns the same reservation.
func (s *Server) ec2RunInstances(p ec2Params) (ec2Body, error) {
	if resID, err := s.idempotent("RunInstances", p); err != nil {
		return nil, err
	} else if resID != "" {
		return &reservationBody{xmlReservation: s.reservation(resID)}, nil
	}
	l, err := s.parseLaunch(p)
	if err != nil {
		return nil, err
	}

	// Everything is valid but the volumes; create them first so a bad
	// mapping leaves nothing behind.
	now := s.now()
	resID := s.newID("r")
	vols, err := s.launchVolumes(l, now)
	if err != nil {
		return nil, err
	}
	for i := range l.count {
		in := &instance{
			id: s.newID("i"), reservationID: resID, imageID: l.im.id, instanceType: l.itype.name, state: "pending",
			subnetID: l.sn.id, vpcID: l.sn.vpcID, az: l.sn.az, eniID: s.newID("eni"), groups: l.groups,
			userData: l.userData, keyName: p.str("KeyName"), tags: copyTags(l.tags["instance"]), launchTime: now,
			clientToken: p.str("ClientToken"), launchIndex: int(i), rootDeviceName: l.im.rootDeviceName,
			platform: l.im.platform, architecture: l.im.architecture, virtualizationType: l.im.virtualizationType,
			enaSupport: l.im.enaSupport, disableAPITermination: l.noTerminate, shutdownBehavior: l.shutdown,
			sourceDestCheck: true, ebsOptimized: l.ebsOptimized,
		}
		if in.privateIP, err = l.sn.allocate(l.ip, in.id); err != nil {
			return nil, err // not reached: checked by parseLaunch
		}
		for _, v := range vols[i] {
			v.attachInstance = in.id
		}
		s.assignPublicIP(in)
		s.startTimer(&in.timer)
		s.ec2.instances[in.id] = in
		s.startVM(in)
	}
	s.rememberToken("RunInstances", p, resID)
	return &reservationBody{xmlReservation: s.reservation(resID)}, nil
}

// launch is a RunInstances request, checked.
type launch struct {
	im       *image
	itype    instanceType
	count    int64 // MaxCount
	sn       *subnet
	groups   []string
	ip       netip.Addr // the private IP asked for, if any
	userData []byte
	shutdown string // "stop" or "terminate"

	noTerminate, ebsOptimized bool

	tags     map[string]map[string]string // by resource type
	mappings []launchMapping
}

// parseLaunch checks everything in a RunInstances request but what only
// creating its volumes can find wrong.
func (s *Server) parseLaunch(p ec2Params) (*launch, error) {
	l := &launch{}
	var err error
	if l.im, l.itype, err = s.launchImage(p); err != nil {
		return nil, err
	}
	if l.count, err = launchCount(p); err != nil {
		return nil, err
	}
	if err := s.launchNetwork(p, l); err != nil {
		return nil, err
	}
	if err := launchOptions(p, l); err != nil {
		return nil, err
	}
	if l.tags, err = p.tagSpecs("instance", "volume", "network-interface"); err != nil {
		return nil, err
	}
	if l.mappings, err = s.launchMappings(p, l.im, l.sn.az); err != nil {
		return nil, err
	}
	rootMapped := false
	for _, m := range l.mappings {
		rootMapped = rootMapped || m.device == l.im.rootDeviceName
	}
	if !rootMapped {
		return nil, ec2Err("InvalidBlockDeviceMapping", "The image %s has no mapping for its root device %s.", l.im.id, l.im.rootDeviceName)
	}
	return l, nil
}

// launchImage returns the image and instance type to launch, checking that
// the one runs on the other.
func (s *Server) launchImage(p ec2Params) (*image, instanceType, error) {
	imageID, err := p.required("ImageId")
	if err != nil {
		return nil, instanceType{}, err
	}
	im, err := s.imageByID(imageID)
	if err != nil {
		return nil, instanceType{}, err
	}
	typeName := p.str("InstanceType")
	if typeName == "" {
		typeName = "m1.small"
	}
	itype, ok := s.ec2.types[typeName]
	if !ok {
		return nil, instanceType{}, ec2Err("InvalidParameterValue", "Invalid value '%s' for InstanceType.", typeName)
	}
	if err := checkLaunchable(itype, im.virtualizationType, im.enaSupport); err != nil {
		return nil, instanceType{}, err
	}
	return im, itype, nil
}

// launchCount returns MaxCount, checking it against MinCount.
func launchCount(p ec2Params) (int64, error) {
	if _, err := p.required("MinCount"); err != nil {
		return 0, err
	}
	if _, err := p.required("MaxCount"); err != nil {
		return 0, err
	}
	minCount, err := p.integer("MinCount", 1)
	if err != nil {
		return 0, err
	}
	maxCount, err := p.integer("MaxCount", 1)
	if err != nil {
		return 0, err
	}
	if minCount < 1 || maxCount < minCount {
		return 0, ec2Err("InvalidParameterValue", "Invalid MinCount %d / MaxCount %d: need 1 <= MinCount <= MaxCount", minCount, maxCount)
	}
	return maxCount, nil
}

// launchNetwork sets the subnet, security groups and private IP of l:
// SubnetId (or the first network interface's), else the default subnet of
// the zone; the groups given, else the VPC's default group.
func (s *Server) launchNetwork(p ec2Params, l *launch) error {
	subnetID := p.str("SubnetId")
	wantIP := p.str("PrivateIpAddress")
	groupIDs := p.list("SecurityGroupId")
	if subnetID == "" {
		subnetID = p.str("NetworkInterface.1.SubnetId")
	}
	if wantIP == "" {
		wantIP = p.str("NetworkInterface.1.PrivateIpAddress")
	}
	groupIDs = append(groupIDs, p.list("NetworkInterface.1.SecurityGroupId")...)
	sn, err := s.launchSubnet(subnetID, p.str("Placement.AvailabilityZone"))
	if err != nil {
		return err
	}
	l.sn = sn
	if l.groups, err = s.launchGroups(sn, groupIDs, p.list("SecurityGroup")); err != nil {
		return err
	}
	if wantIP != "" {
		if l.count > 1 {
			return ec2Err("InvalidParameterCombination", "A private IP address cannot be specified when launching more than one instance.")
		}
		ip, err := netip.ParseAddr(wantIP)
		if err != nil || !ip.Is4() {
			return ec2Err("InvalidParameterValue", "Invalid IPv4 address: %s", wantIP)
		}
		switch {
		case !sn.cidr.Contains(ip):
			return ec2Err("InvalidParameterValue", "Address %s does not fall within the subnet's address range", ip)
		case sn.reserved(ip):
			return ec2Err("InvalidParameterValue", "Address %s is in subnet's reserved address range", ip)
		case sn.used[ip] != "":
			return ec2Err("InvalidIPAddress.InUse", "Address %s is in use.", ip)
		}
		l.ip = ip
	} else if int64(sn.free()) < l.count {
		return ec2Err("InsufficientFreeAddressesInSubnet", "There are not enough free addresses in subnet '%s' to satisfy the requested number of instances.", sn.id)
	}
	return nil
}

// launchSubnet returns the subnet named by id, in zone az if az is set, or
// when id is empty the default subnet of az (or of the first zone).
func (s *Server) launchSubnet(id, az string) (*subnet, error) {
	if id != "" {
		sn, err := s.subnetByID(id)
		if err != nil {
			return nil, err
		}
		if az != "" && az != sn.az {
			return nil, ec2Err("InvalidParameterValue", "Value (%s) for parameter availabilityZone is invalid. Subnet '%s' is in the availability zone %s", az, sn.id, sn.az)
		}
		return sn, nil
	}
	if s.ec2.defaultVPC == "" {
		return nil, ec2Err("VPCIdNotSpecified", "No default VPC for this user")
	}
	if az == "" {
		az = s.ec2.azs[0]
	}
	var sn *subnet
	for _, id := range sortedKeys(s.ec2.subnets) {
		if c := s.ec2.subnets[id]; c.vpcID == s.ec2.defaultVPC && c.az == az && c.defaultForAz {
			sn = c
		}
	}
	if sn == nil {
		return nil, ec2Err("InvalidParameterValue", "Value (%s) for parameter availabilityZone is invalid.", az)
	}
	return sn, nil
}

// launchGroups returns the IDs of the security groups given by ID and by
// name, which must be in the subnet's VPC, or of the VPC's default group.
func (s *Server) launchGroups(sn *subnet, ids, names []string) ([]string, error) {
	var groups []string
	for _, gid := range ids {
		g, err := s.groupByID(gid)
		if err != nil {
			return nil, err
		}
		if g.vpcID != sn.vpcID {
			return nil, ec2Err("InvalidParameter", "Security group %s and subnet %s belong to different networks.", g.id, sn.id)
		}
		groups = append(groups, g.id)
	}
	for _, name := range names {
		g, err := s.groupByName(sn.vpcID, name)
		if err != nil {
			return nil, err
		}
		groups = append(groups, g.id)
	}
	if len(groups) == 0 {
		g, err := s.groupByName(sn.vpcID, "default")
		if err != nil {
			return nil, err
		}
		groups = []string{g.id}
	}
	return groups, nil
}

// launchOptions sets the user data, shutdown behaviour and flags of l.
func launchOptions(p ec2Params, l *launch) error {
	var err error
	if ud := p.str("UserData"); ud != "" {
		if l.userData, err = base64.StdEncoding.DecodeString(ud); err != nil {
			return ec2Err("InvalidParameterValue", "Invalid BASE64 encoding of user data.")
		}
		if len(l.userData) > 16<<10 {
			return ec2Err("InvalidParameterValue", "User data is limited to 16384 bytes")
		}
	}
	l.shutdown = p.str("InstanceInitiatedShutdownBehavior")
	switch l.shutdown {
	case "":
		l.shutdown = "stop"
	case "stop", "terminate":
	default:
		return ec2Err("InvalidParameterValue", "Value (%s) for parameter instanceInitiatedShutdownBehavior is invalid.", l.shutdown)
	}
	if l.noTerminate, _, err = p.boolean("DisableApiTermination"); err != nil {
		return err
	}
	if l.ebsOptimized, _, err = p.boolean("EbsOptimized"); err != nil {
		return err
	}
	return nil
}

// launchVolumes creates the volumes of every instance of l, attached as of
// now: vols[i] are instance i's. When one fails, none is left.
func (s *Server) launchVolumes(l *launch, now time.Time) ([][]*volume, error) {
	var made []*volume
	vols := make([][]*volume, l.count)
	for i := range vols {
		for _, m := range l.mappings {
			spec := m.spec
			spec.tags = copyTags(l.tags["volume"])
			v, err := s.newVolume(spec)
			if err != nil {
				for _, v := range made {
					s.dropVolume(v)
				}
				if e, ok := err.(*ec2Error); ok && strings.HasPrefix(e.msg, "Volume of") {
					e.code = "InvalidBlockDeviceMapping"
				}
				return nil, err
			}
			v.state, v.attachDevice, v.attachState, v.attachTime = "in-use", m.device, "attached", now
			v.deleteOnTermination = m.deleteOnTermination
			made = append(made, v)
			vols[i] = append(vols[i], v)
		}
	}
	return vols, nil
}

// checkLaunchable refuses what EC2 refuses: paravirtual images and images
// without ENA on nitro instance types.
func checkLaunchable(t instanceType, virtualization string, ena bool) error {
	if !t.nitro {
		return nil
	}
	if virtualization != "hvm" {
		return ec2Err("InvalidParameterCombination", "Virtualization type 'hvm' is required for instances of type '%s'.", t.name)
	}
	if !ena {
		return ec2Err("InvalidParameterCombination", "Enhanced networking with the Elastic Network Adapter (ENA) is required for the '%s' instance type. Ensure that you are using an AMI that is enabled for ENA.", t.name)
	}
	return nil
}

func instanceFilters(s *Server) filterDefs[*instance] {
	one := func(f func(in *instance) string) func(*instance) []string {
		return func(in *instance) []string { return []string{f(in)} }
	}
	groups := func(in *instance) []string { return in.groups }
	groupNames := func(in *instance) []string {
		var out []string
		for _, g := range in.groups {
			if sg := s.ec2.groups[g]; sg != nil {
				out = append(out, sg.name)
			}
		}
		return out
	}
	vols := func(f func(v *volume) string) func(*instance) []string {
		return func(in *instance) []string {
			var out []string
			for _, v := range s.attachedVolumes(in.id) {
				out = append(out, f(v))
			}
			return out
		}
	}
	subnet := one(func(in *instance) string { return in.subnetID })
	return filterDefs[*instance]{
		"instance-id":                      one(func(in *instance) string { return in.id }),
		"instance-state-name":              one(func(in *instance) string { return in.state }),
		"instance-state-code":              one(func(in *instance) string { return strconv.Itoa(stateCodes[in.state]) }),
		"instance-type":                    one(func(in *instance) string { return in.instanceType }),
		"image-id":                         one(func(in *instance) string { return in.imageID }),
		"subnet-id":                        subnet,
		"network-interface.subnet-id":      subnet,
		"vpc-id":                           one(func(in *instance) string { return in.vpcID }),
		"availability-zone":                one(func(in *instance) string { return in.az }),
		"private-ip-address":               one(func(in *instance) string { return in.privateIP.String() }),
		"private-dns-name":                 one(func(in *instance) string { return s.privateDNSName(in.privateIP) }),
		"reservation-id":                   one(func(in *instance) string { return in.reservationID }),
		"client-token":                     one(func(in *instance) string { return in.clientToken }),
		"key-name":                         one(func(in *instance) string { return in.keyName }),
		"architecture":                     one(func(in *instance) string { return in.architecture }),
		"root-device-name":                 one(func(in *instance) string { return in.rootDeviceName }),
		"root-device-type":                 one(func(*instance) string { return "ebs" }),
		"launch-index":                     one(func(in *instance) string { return strconv.Itoa(in.launchIndex) }),
		"platform":                         one(func(in *instance) string { return in.platform }),
		"instance.group-id":                groups,
		"group-id":                         groups,
		"instance.group-name":              groupNames,
		"group-name":                       groupNames,
		"block-device-mapping.volume-id":   vols(func(v *volume) string { return v.id }),
		"block-device-mapping.device-name": vols(func(v *volume) string { return v.attachDevice }),
		"block-device-mapping.status":      vols(func(v *volume) string { return v.attachState }),
		"block-device-mapping.delete-on-termination": vols(func(v *volume) string { return strconv.FormatBool(v.deleteOnTermination) }),
	}
}

type describeInstancesBody struct {
	ec2Meta
	Reservations []xmlReservation `xml:"reservationSet>item"`
	NextToken    string           `xml:"nextToken,omitempty"`
}

// listedInstances returns the instances p names by InstanceId, sorted by
// ID, or when it names none every instance.
func (s *Server) listedInstances(p ec2Params) ([]*instance, error) {
	if len(p.list("InstanceId")) > 0 {
		ins, err := s.instancesByID(p)
		if err != nil {
			return nil, err
		}
		sort.Slice(ins, func(i, j int) bool { return ins[i].id < ins[j].id })
		return ins, nil
	}
	var ins []*instance
	for _, id := range sortedKeys(s.ec2.instances) {
		in := s.ec2.instances[id]
		s.settleInstance(in, false)
		ins = append(ins, in)
	}
	return ins, nil
}

func (s *Server) ec2DescribeInstances(p ec2Params) (ec2Body, error) {
	if len(p.list("InstanceId")) > 0 && p.has("MaxResults") {
		return nil, ec2Err("InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults")
	}
	ins, err := s.listedInstances(p)
	if err != nil {
		return nil, err
	}
	ins, err = applyFilters(ins, p.filters(), instanceFilters(s), func(in *instance) map[string]string { return in.tags })
	if err != nil {
		return nil, err
	}
	page, next, err := paginate(ins, func(in *instance) string { return in.id }, p, 5, 1000)
	if err != nil {
		return nil, err
	}
	out := &describeInstancesBody{Reservations: []xmlReservation{}, NextToken: next}
	byRes := map[string]int{}
	for _, in := range page {
		s.settleInstance(in, true)
		i, ok := byRes[in.reservationID]
		if !ok {
			i = len(out.Reservations)
			byRes[in.reservationID] = i
			out.Reservations = append(out.Reservations, xmlReservation{
				ReservationID: in.reservationID, OwnerID: s.opts.AccountID, Groups: []xmlGroup{},
			})
		}
		out.Reservations[i].Instances = append(out.Reservations[i].Instances, s.instanceXML(in))
	}
	return out, nil
}

type xmlStateChange struct {
	InstanceID    string           `xml:"instanceId"`
	CurrentState  xmlInstanceState `xml:"currentState"`
	PreviousState xmlInstanceState `xml:"previousState"`
}

type stateChangeBody struct {
	ec2Meta
	Instances []xmlStateChange `xml:"instancesSet>item"`
}

// changeStates validates every instance with check, then applies change to
// each: all or nothing, as EC2 does.
func (s *Server) changeStates(p ec2Params, check func(*instance) error, change func(*instance)) (ec2Body, error) {
	ins, err := s.instancesByID(p)
	if err != nil {
		return nil, err
	}
	for _, in := range ins {
		if err := check(in); err != nil {
			return nil, err
		}
	}
	out := &stateChangeBody{}
	for _, in := range ins {
		prev := in.state
		change(in)
		out.Instances = append(out.Instances, xmlStateChange{in.id, stateXML(in.state), stateXML(prev)})
	}
	return out, nil
}

func (s *Server) userReason() string {
	return fmt.Sprintf("User initiated (%s GMT)", s.now().UTC().Format("2006-01-02 15:04:05"))
}

func (s *Server) ec2StartInstances(p ec2Params) (ec2Body, error) {
	table := s.ec2.types
	return s.changeStates(p, func(in *instance) error {
		switch in.state {
		case "pending", "running":
			return nil
		case "stopped":
		default:
			return ec2Err("IncorrectInstanceState", "The instance '%s' is not in a state from which it can be started.", in.id)
		}
		hasRoot := false
		for _, v := range s.attachedVolumes(in.id) {
			hasRoot = hasRoot || (v.attachDevice == in.rootDeviceName && v.attachState != "detaching")
		}
		if !hasRoot {
			return ec2Err("InvalidParameterValue", "Invalid value '%s' for instanceId. Instance does not have a volume attached at root (%s)", in.id, in.rootDeviceName)
		}
		return checkLaunchable(table[in.instanceType], in.virtualizationType, in.enaSupport)
	}, func(in *instance) {
		if in.state == "stopped" {
			in.state, in.reason, in.stateReason = "pending", "", ""
			s.assignPublicIP(in)
			s.startTimer(&in.timer)
			s.startVM(in)
		}
	})
}

func (s *Server) ec2StopInstances(p ec2Params) (ec2Body, error) {
	return s.changeStates(p, func(in *instance) error {
		switch in.state {
		case "running", "stopping", "stopped":
			return nil
		}
		return ec2Err("IncorrectInstanceState", "The instance '%s' is not in a state from which it can be stopped.", in.id)
	}, func(in *instance) {
		if in.state == "running" {
			in.state, in.reason, in.stateReason = "stopping", s.userReason(), "Client.UserInitiatedShutdown"
			in.publicIP = netip.Addr{}
			s.stopVM(in)
			s.startTimer(&in.timer)
		}
	})
}

// ec2TerminateInstances terminates instances: their DeleteOnTermination
// volumes are deleted, the others detached, their private IPs released.
func (s *Server) ec2TerminateInstances(p ec2Params) (ec2Body, error) {
	return s.changeStates(p, func(in *instance) error {
		if in.disableAPITermination {
			return ec2Err("OperationNotPermitted", "The instance '%s' may not be terminated. Modify its 'disableApiTermination' instance attribute and try again.", in.id)
		}
		return nil
	}, func(in *instance) {
		if in.state == "terminated" || in.state == "shutting-down" {
			return
		}
		in.state, in.reason, in.stateReason = "shutting-down", s.userReason(), "Client.UserInitiatedShutdown"
		in.publicIP = netip.Addr{}
		s.stopVM(in)
		s.startTimer(&in.timer)
		for _, v := range s.attachedVolumes(in.id) {
			if v.deleteOnTermination {
				s.dropVolume(v)
				continue
			}
			v.state = "available"
			v.attachInstance, v.attachDevice, v.attachState = "", "", ""
			v.attachTime = time.Time{}
		}
		if sn := s.ec2.subnets[in.subnetID]; sn != nil {
			delete(sn.used, in.privateIP)
		}
	})
}

type xmlStatusDetail struct {
	Name   string `xml:"name"`
	Status string `xml:"status"`
}

type xmlStatusSummary struct {
	Status  string            `xml:"status"`
	Details []xmlStatusDetail `xml:"details>item"`
}

type xmlInstanceStatus struct {
	InstanceID         string           `xml:"instanceId"`
	AvailabilityZone   string           `xml:"availabilityZone"`
	AvailabilityZoneID string           `xml:"availabilityZoneId"`
	State              xmlInstanceState `xml:"instanceState"`
	SystemStatus       xmlStatusSummary `xml:"systemStatus"`
	InstanceStatus     xmlStatusSummary `xml:"instanceStatus"`
}

type describeInstanceStatusBody struct {
	ec2Meta
	Statuses  []xmlInstanceStatus `xml:"instanceStatusSet>item"`
	NextToken string              `xml:"nextToken,omitempty"`
}

// statusOf is the status-check result of an instance: "initializing" on
// the first look after it started running, "ok" after, "not-applicable"
// when it is not running.
func (s *Server) statusOf(in *instance, observe bool) string {
	if in.state != "running" {
		return "not-applicable"
	}
	if s.settled(&in.statusTimer, observe) {
		return "ok"
	}
	return "initializing"
}

func (s *Server) ec2DescribeInstanceStatus(p ec2Params) (ec2Body, error) {
	all, _, err := p.boolean("IncludeAllInstances")
	if err != nil {
		return nil, err
	}
	ins, err := s.listedInstances(p)
	if err != nil {
		return nil, err
	}
	if !all {
		var running []*instance
		for _, in := range ins {
			if in.state == "running" {
				running = append(running, in)
			}
		}
		ins = running
	}
	one := func(f func(in *instance) string) func(*instance) []string {
		return func(in *instance) []string { return []string{f(in)} }
	}
	status := one(func(in *instance) string { return s.statusOf(in, false) })
	ins, err = applyFilters(ins, p.filters(), filterDefs[*instance]{
		"instance-state-name":    one(func(in *instance) string { return in.state }),
		"instance-state-code":    one(func(in *instance) string { return strconv.Itoa(stateCodes[in.state]) }),
		"availability-zone":      one(func(in *instance) string { return in.az }),
		"instance-status.status": status,
		"system-status.status":   status,
	}, nil)
	if err != nil {
		return nil, err
	}
	page, next, err := paginate(ins, func(in *instance) string { return in.id }, p, 5, 1000)
	if err != nil {
		return nil, err
	}
	out := &describeInstanceStatusBody{Statuses: []xmlInstanceStatus{}, NextToken: next}
	for _, in := range page {
		st := s.statusOf(in, true)
		sum := xmlStatusSummary{Status: st}
		switch st {
		case "ok":
			sum.Details = []xmlStatusDetail{{"reachability", "passed"}}
		case "initializing":
			sum.Details = []xmlStatusDetail{{"reachability", "initializing"}}
		}
		out.Statuses = append(out.Statuses, xmlInstanceStatus{
			InstanceID: in.id, AvailabilityZone: in.az, AvailabilityZoneID: s.zoneID(in.az),
			State: stateXML(in.state), SystemStatus: sum, InstanceStatus: sum,
		})
	}
	return out, nil
}

// ec2ModifyInstanceAttribute changes one attribute, given either as
// Attribute+Value or as its own structure (InstanceType.Value, …). As in
// EC2, the instance type and user data change only while stopped.
func (s *Server) ec2ModifyInstanceAttribute(p ec2Params) (ec2Body, error) {
	id, err := p.required("InstanceId")
	if err != nil {
		return nil, err
	}
	in, err := s.instanceByID(id)
	if err != nil {
		return nil, err
	}
	value := func(attr string) (string, bool) {
		if p.str("Attribute") == attr {
			return p.str("Value"), true
		}
		key := strings.ToUpper(attr[:1]) + attr[1:] + ".Value"
		return p.str(key), p.has(key)
	}
	mustStop := func() error {
		if in.state != "stopped" {
			return ec2Err("IncorrectInstanceState", "The instance '%s' is not in the 'stopped' state.", in.id)
		}
		return nil
	}
	boolean := func(attr, v string) (bool, error) {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, ec2Err("InvalidParameterValue", "Value (%s) for parameter %s is invalid.", v, attr)
		}
		return b, nil
	}
	changed := false
	if v, ok := value("instanceType"); ok {
		if err := mustStop(); err != nil {
			return nil, err
		}
		if _, ok := s.ec2.types[v]; !ok {
			return nil, ec2Err("InvalidInstanceAttributeValue", "Value (%s) for parameter instanceType is invalid.", v)
		}
		in.instanceType, changed = v, true
	}
	if v, ok := value("userData"); ok {
		if err := mustStop(); err != nil {
			return nil, err
		}
		raw, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, ec2Err("InvalidParameterValue", "Invalid BASE64 encoding of user data.")
		}
		in.userData, changed = raw, true
	}
	for attr, dst := range map[string]*bool{
		"disableApiTermination": &in.disableAPITermination,
		"sourceDestCheck":       &in.sourceDestCheck,
		"ebsOptimized":          &in.ebsOptimized,
		"enaSupport":            &in.enaSupport,
	} {
		if v, ok := value(attr); ok {
			b, err := boolean(attr, v)
			if err != nil {
				return nil, err
			}
			*dst, changed = b, true
		}
	}
	if v, ok := value("instanceInitiatedShutdownBehavior"); ok {
		if v != "stop" && v != "terminate" {
			return nil, ec2Err("InvalidParameterValue", "Value (%s) for parameter instanceInitiatedShutdownBehavior is invalid.", v)
		}
		in.shutdownBehavior, changed = v, true
	}
	if ids := p.list("GroupId"); len(ids) > 0 {
		for _, gid := range ids {
			g, err := s.groupByID(gid)
			if err != nil {
				return nil, err
			}
			if g.vpcID != in.vpcID {
				return nil, ec2Err("InvalidGroup.NotFound", "The security group '%s' does not exist in VPC '%s'", gid, in.vpcID)
			}
		}
		in.groups, changed = ids, true
	}
	for _, m := range p.members("BlockDeviceMapping") {
		dev := p.str(m + ".DeviceName")
		dot, set, err := p.boolean(m + ".Ebs.DeleteOnTermination")
		if err != nil {
			return nil, err
		}
		var target *volume
		for _, v := range s.attachedVolumes(in.id) {
			if v.attachDevice == dev {
				target = v
			}
		}
		if target == nil {
			return nil, ec2Err("InvalidInstanceAttributeValue", "No device is currently mapped at %s", dev)
		}
		if set {
			target.deleteOnTermination = dot
		}
		changed = true
	}
	if !changed {
		return nil, ec2Err("InvalidParameterCombination", "No attributes specified.")
	}
	return okBody(), nil
}

type xmlAttrValue struct {
	Value string `xml:"value"`
}

type describeInstanceAttributeBody struct {
	ec2Meta
	InstanceID                        string               `xml:"instanceId"`
	InstanceType                      *xmlAttrValue        `xml:"instanceType,omitempty"`
	UserData                          *xmlAttrValue        `xml:"userData,omitempty"`
	DisableAPITermination             *xmlAttrValue        `xml:"disableApiTermination,omitempty"`
	InstanceInitiatedShutdownBehavior *xmlAttrValue        `xml:"instanceInitiatedShutdownBehavior,omitempty"`
	RootDeviceName                    *xmlAttrValue        `xml:"rootDeviceName,omitempty"`
	BlockDeviceMapping                []xmlInstanceMapping `xml:"blockDeviceMapping>item,omitempty"`
	GroupSet                          []xmlGroup           `xml:"groupSet>item,omitempty"`
	SourceDestCheck                   *xmlAttrValue        `xml:"sourceDestCheck,omitempty"`
	EbsOptimized                      *xmlAttrValue        `xml:"ebsOptimized,omitempty"`
	EnaSupport                        *xmlAttrValue        `xml:"enaSupport,omitempty"`
	Kernel                            *xmlAttrValue        `xml:"kernel,omitempty"`
	Ramdisk                           *xmlAttrValue        `xml:"ramdisk,omitempty"`
}

func (s *Server) ec2DescribeInstanceAttribute(p ec2Params) (ec2Body, error) {
	id, err := p.required("InstanceId")
	if err != nil {
		return nil, err
	}
	attr, err := p.required("Attribute")
	if err != nil {
		return nil, err
	}
	in, err := s.instanceByID(id)
	if err != nil {
		return nil, err
	}
	out := &describeInstanceAttributeBody{InstanceID: in.id}
	val := func(v string) *xmlAttrValue { return &xmlAttrValue{v} }
	x := s.instanceXML(in)
	switch attr {
	case "instanceType":
		out.InstanceType = val(in.instanceType)
	case "userData":
		out.UserData = &xmlAttrValue{}
		if len(in.userData) > 0 {
			out.UserData.Value = base64.StdEncoding.EncodeToString(in.userData)
		}
	case "disableApiTermination":
		out.DisableAPITermination = val(strconv.FormatBool(in.disableAPITermination))
	case "instanceInitiatedShutdownBehavior":
		out.InstanceInitiatedShutdownBehavior = val(in.shutdownBehavior)
	case "rootDeviceName":
		out.RootDeviceName = val(in.rootDeviceName)
	case "blockDeviceMapping":
		out.BlockDeviceMapping = x.BlockDeviceMapping
	case "groupSet":
		out.GroupSet = x.Groups
	case "sourceDestCheck":
		out.SourceDestCheck = val(strconv.FormatBool(in.sourceDestCheck))
	case "ebsOptimized":
		out.EbsOptimized = val(strconv.FormatBool(in.ebsOptimized))
	case "enaSupport":
		out.EnaSupport = val(strconv.FormatBool(in.enaSupport))
	case "kernel":
		out.Kernel = &xmlAttrValue{}
	case "ramdisk":
		out.Ramdisk = &xmlAttrValue{}
	default:
		return nil, ec2Err("InvalidParameterValue", "Value (%s) for parameter attribute is invalid. Unknown attribute.", attr)
	}
	return out, nil
}
