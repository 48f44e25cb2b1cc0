package awssim

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// EC2 instance types and images (AMIs).

// instanceType is a row of DescribeInstanceTypes, with AWS's real vCPU and
// memory figures.
type instanceType struct {
	name       string
	vcpus      int
	memMiB     int64
	threads    int // per core
	nitro      bool
	burstable  bool
	current    bool
	clockGHz   float64
	maker      string
	freeTier   bool
	networkBW  string
	maxENIs    int
	ipsPerENI  int
	hypervisor string
}

// instanceTypeTable returns the simulated instance types by name.
func instanceTypeTable() map[string]instanceType {
	out := map[string]instanceType{}
	type size struct {
		suffix string
		vcpus  int
		memMiB int64
	}
	family := func(prefix string, threads int, nitro, burstable bool, clock float64, maker string, sizes ...size) {
		for _, sz := range sizes {
			name := prefix + "." + sz.suffix
			bw := "Up to 10 Gigabit"
			switch {
			case burstable:
				bw = "Up to 5 Gigabit"
			case sz.vcpus >= 96:
				bw = "25 Gigabit"
			case sz.vcpus >= 32:
				bw = "10 Gigabit"
			}
			if !nitro {
				bw = "Low to Moderate"
			}
			hv := "nitro"
			if !nitro {
				hv = "xen"
			}
			out[name] = instanceType{
				name: name, vcpus: sz.vcpus, memMiB: sz.memMiB, threads: threads, nitro: nitro,
				burstable: burstable, current: prefix != "m1", clockGHz: clock, maker: maker,
				freeTier: name == "t2.micro" || name == "t3.micro", networkBW: bw,
				maxENIs: min(2+sz.vcpus/2, 15), ipsPerENI: min(2+sz.vcpus*2, 50), hypervisor: hv,
			}
		}
	}
	family("m1", 1, false, false, 0, "Intel", size{"small", 1, 1740})
	family("t2", 1, false, true, 3.3, "Intel",
		size{"nano", 1, 512}, size{"micro", 1, 1024}, size{"small", 1, 2048}, size{"medium", 2, 4096},
		size{"large", 2, 8192}, size{"xlarge", 4, 16384}, size{"2xlarge", 8, 32768})
	t3 := []size{{"nano", 2, 512}, {"micro", 2, 1024}, {"small", 2, 2048}, {"medium", 2, 4096},
		{"large", 2, 8192}, {"xlarge", 4, 16384}, {"2xlarge", 8, 32768}}
	family("t3", 2, true, true, 3.1, "Intel", t3...)
	family("t3a", 2, true, true, 2.5, "AMD", t3...)
	m := []size{{"large", 2, 8192}, {"xlarge", 4, 16384}, {"2xlarge", 8, 32768}, {"4xlarge", 16, 65536},
		{"8xlarge", 32, 131072}, {"12xlarge", 48, 196608}, {"16xlarge", 64, 262144}, {"24xlarge", 96, 393216}}
	family("m5", 2, true, false, 3.1, "Intel", m...)
	family("m6i", 2, true, false, 3.5, "Intel", append(m, size{"32xlarge", 128, 524288})...)
	family("c5", 2, true, false, 3.4, "Intel",
		size{"large", 2, 4096}, size{"xlarge", 4, 8192}, size{"2xlarge", 8, 16384}, size{"4xlarge", 16, 32768},
		size{"9xlarge", 36, 73728}, size{"12xlarge", 48, 98304}, size{"18xlarge", 72, 147456}, size{"24xlarge", 96, 196608})
	family("c6i", 2, true, false, 3.5, "Intel",
		size{"large", 2, 4096}, size{"xlarge", 4, 8192}, size{"2xlarge", 8, 16384}, size{"4xlarge", 16, 32768},
		size{"8xlarge", 32, 65536}, size{"12xlarge", 48, 98304}, size{"16xlarge", 64, 131072}, size{"24xlarge", 96, 196608},
		size{"32xlarge", 128, 262144})
	r := []size{{"large", 2, 16384}, {"xlarge", 4, 32768}, {"2xlarge", 8, 65536}, {"4xlarge", 16, 131072},
		{"8xlarge", 32, 262144}, {"12xlarge", 48, 393216}, {"16xlarge", 64, 524288}, {"24xlarge", 96, 786432}}
	family("r5", 2, true, false, 3.1, "Intel", r...)
	family("r6i", 2, true, false, 3.5, "Intel", append(r, size{"32xlarge", 128, 1048576})...)
	return out
}

type xmlInstanceTypeInfo struct {
	InstanceType                 string   `xml:"instanceType"`
	CurrentGeneration            bool     `xml:"currentGeneration"`
	FreeTierEligible             bool     `xml:"freeTierEligible"`
	SupportedUsageClasses        []string `xml:"supportedUsageClasses>item"`
	SupportedRootDeviceTypes     []string `xml:"supportedRootDeviceTypes>item"`
	SupportedVirtualizationTypes []string `xml:"supportedVirtualizationTypes>item"`
	BareMetal                    bool     `xml:"bareMetal"`
	Hypervisor                   string   `xml:"hypervisor"`
	ProcessorInfo                struct {
		SupportedArchitectures   []string `xml:"supportedArchitectures>item"`
		SustainedClockSpeedInGhz float64  `xml:"sustainedClockSpeedInGhz,omitempty"`
		Manufacturer             string   `xml:"manufacturer"`
	} `xml:"processorInfo"`
	VCpuInfo struct {
		DefaultVCpus          int `xml:"defaultVCpus"`
		DefaultCores          int `xml:"defaultCores"`
		DefaultThreadsPerCore int `xml:"defaultThreadsPerCore"`
	} `xml:"vCpuInfo"`
	MemoryInfo struct {
		SizeInMiB int64 `xml:"sizeInMiB"`
	} `xml:"memoryInfo"`
	InstanceStorageSupported bool `xml:"instanceStorageSupported"`
	EbsInfo                  struct {
		EbsOptimizedSupport string `xml:"ebsOptimizedSupport"`
		EncryptionSupport   string `xml:"encryptionSupport"`
		NvmeSupport         string `xml:"nvmeSupport"`
	} `xml:"ebsInfo"`
	NetworkInfo struct {
		NetworkPerformance        string `xml:"networkPerformance"`
		MaximumNetworkInterfaces  int    `xml:"maximumNetworkInterfaces"`
		Ipv4AddressesPerInterface int    `xml:"ipv4AddressesPerInterface"`
		EnaSupport                string `xml:"enaSupport"`
	} `xml:"networkInfo"`
	BurstablePerformanceSupported bool     `xml:"burstablePerformanceSupported"`
	HibernationSupported          bool     `xml:"hibernationSupported"`
	SupportedBootModes            []string `xml:"supportedBootModes>item"`
}

func instanceTypeXML(t instanceType) xmlInstanceTypeInfo {
	x := xmlInstanceTypeInfo{
		InstanceType: t.name, CurrentGeneration: t.current, FreeTierEligible: t.freeTier,
		SupportedUsageClasses:         []string{"on-demand", "spot"},
		SupportedRootDeviceTypes:      []string{"ebs"},
		SupportedVirtualizationTypes:  []string{"hvm"},
		Hypervisor:                    t.hypervisor,
		BurstablePerformanceSupported: t.burstable,
		HibernationSupported:          true,
		SupportedBootModes:            []string{"legacy-bios", "uefi"},
	}
	if !t.nitro {
		x.SupportedVirtualizationTypes = []string{"hvm", "paravirtual"}
		x.SupportedBootModes = []string{"legacy-bios"}
	}
	x.ProcessorInfo.SupportedArchitectures = []string{"x86_64"}
	if t.vcpus == 1 && !t.nitro {
		x.ProcessorInfo.SupportedArchitectures = []string{"i386", "x86_64"}
	}
	x.ProcessorInfo.SustainedClockSpeedInGhz = t.clockGHz
	x.ProcessorInfo.Manufacturer = t.maker
	x.VCpuInfo.DefaultVCpus = t.vcpus
	x.VCpuInfo.DefaultCores = t.vcpus / t.threads
	x.VCpuInfo.DefaultThreadsPerCore = t.threads
	x.MemoryInfo.SizeInMiB = t.memMiB
	x.EbsInfo.EbsOptimizedSupport = "default"
	x.EbsInfo.EncryptionSupport = "supported"
	x.EbsInfo.NvmeSupport = "unsupported"
	x.NetworkInfo.EnaSupport = "unsupported"
	if t.nitro {
		x.EbsInfo.NvmeSupport = "required"
		x.NetworkInfo.EnaSupport = "required"
	}
	x.NetworkInfo.NetworkPerformance = t.networkBW
	x.NetworkInfo.MaximumNetworkInterfaces = t.maxENIs
	x.NetworkInfo.Ipv4AddressesPerInterface = t.ipsPerENI
	return x
}

type describeInstanceTypesBody struct {
	ec2Meta
	InstanceTypes []xmlInstanceTypeInfo `xml:"instanceTypeSet>item"`
	NextToken     string                `xml:"nextToken,omitempty"`
}

func (s *Server) ec2DescribeInstanceTypes(p ec2Params) (ec2Body, error) {
	table := s.ec2.types
	var types []instanceType
	if names := p.list("InstanceType"); len(names) > 0 {
		var missing []string
		for _, n := range names {
			if t, ok := table[n]; ok {
				types = append(types, t)
			} else {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			return nil, ec2Err("InvalidInstanceType", "The following supplied instance types do not exist: [%s]", strings.Join(missing, ", "))
		}
	} else {
		for _, n := range sortedKeys(table) {
			types = append(types, table[n])
		}
	}
	sort.Slice(types, func(i, j int) bool { return types[i].name < types[j].name })
	one := func(f func(t instanceType) string) func(instanceType) []string {
		return func(t instanceType) []string { return []string{f(t)} }
	}
	types, err := applyFilters(types, p.filters(), filterDefs[instanceType]{
		"instance-type":                      one(func(t instanceType) string { return t.name }),
		"vcpu-info.default-vcpus":            one(func(t instanceType) string { return strconv.Itoa(t.vcpus) }),
		"vcpu-info.default-cores":            one(func(t instanceType) string { return strconv.Itoa(t.vcpus / t.threads) }),
		"vcpu-info.default-threads-per-core": one(func(t instanceType) string { return strconv.Itoa(t.threads) }),
		"memory-info.size-in-mib":            one(func(t instanceType) string { return strconv.FormatInt(t.memMiB, 10) }),
		"current-generation":                 one(func(t instanceType) string { return strconv.FormatBool(t.current) }),
		"burstable-performance-supported":    one(func(t instanceType) string { return strconv.FormatBool(t.burstable) }),
		"free-tier-eligible":                 one(func(t instanceType) string { return strconv.FormatBool(t.freeTier) }),
		"hypervisor":                         one(func(t instanceType) string { return t.hypervisor }),
		"processor-info.supported-architecture": func(t instanceType) []string {
			return instanceTypeXML(t).ProcessorInfo.SupportedArchitectures
		},
	}, nil)
	if err != nil {
		return nil, err
	}
	page, next, err := paginate(types, func(t instanceType) string { return t.name }, p, 5, 100)
	if err != nil {
		return nil, err
	}
	out := &describeInstanceTypesBody{InstanceTypes: []xmlInstanceTypeInfo{}, NextToken: next}
	for _, t := range page {
		out.InstanceTypes = append(out.InstanceTypes, instanceTypeXML(t))
	}
	return out, nil
}

// image is an AMI.
type image struct {
	id, name, description string
	ownerID               string
	public                bool
	rootDeviceName        string
	platform              string // "" or "windows"
	architecture          string
	virtualizationType    string
	enaSupport            bool
	bootMode              string
	mappings              []imageMapping
	tags                  map[string]string
	created               time.Time
}

// imageMapping is a block device mapping of an image.
type imageMapping struct {
	device              string
	snapshotID          string
	sizeGiB             int64
	volumeType          string
	deleteOnTermination bool
	encrypted           bool
}

func (im *image) usesSnapshot(id string) bool {
	for _, m := range im.mappings {
		if m.snapshotID == id {
			return true
		}
	}
	return false
}

// addBuiltinImage registers an Amazon-owned public image whose 8 GiB root
// snapshot starts with content. Called from New.
func (s *Server) addBuiltinImage(name, rootDevice, platform, content string) string {
	sn := &snapshot{
		id: s.newID("snap"), volumeID: ebsDirectVolumeID, state: "completed", sizeGiB: 8,
		description: "Root snapshot of " + name, tags: map[string]string{}, startTime: s.now(),
		progress: "100%", blocks: map[int64]*block{0: newBlock([]byte(content))},
	}
	s.snaps[sn.id] = sn
	s.ec2.amazonSnaps[sn.id] = true
	im := &image{
		id: s.newID("ami"), name: name, description: name, ownerID: amazonOwnerID, public: true,
		rootDeviceName: rootDevice, platform: platform, architecture: "x86_64", virtualizationType: "hvm",
		enaSupport: true, tags: map[string]string{}, created: s.now(),
		mappings: []imageMapping{{device: rootDevice, snapshotID: sn.id, sizeGiB: 8, volumeType: "gp3", deleteOnTermination: true}},
	}
	s.ec2.images[im.id] = im
	return im.id
}

func (s *Server) imageByID(id string) (*image, error) {
	if err := checkID(id, "ami", "InvalidAMIID.Malformed"); err != nil {
		return nil, err
	}
	im := s.ec2.images[id]
	if im == nil {
		return nil, ec2Err("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
	}
	return im, nil
}

type xmlEbsBlockDevice struct {
	SnapshotID          string `xml:"snapshotId,omitempty"`
	VolumeSize          int64  `xml:"volumeSize"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
	VolumeType          string `xml:"volumeType"`
	Encrypted           bool   `xml:"encrypted"`
}

type xmlImageMapping struct {
	DeviceName string            `xml:"deviceName"`
	Ebs        xmlEbsBlockDevice `xml:"ebs"`
}

type xmlImage struct {
	ImageID            string            `xml:"imageId"`
	ImageLocation      string            `xml:"imageLocation"`
	ImageState         string            `xml:"imageState"`
	ImageOwnerID       string            `xml:"imageOwnerId"`
	CreationDate       string            `xml:"creationDate"`
	IsPublic           bool              `xml:"isPublic"`
	Architecture       string            `xml:"architecture"`
	ImageType          string            `xml:"imageType"`
	Platform           string            `xml:"platform,omitempty"`
	PlatformDetails    string            `xml:"platformDetails"`
	UsageOperation     string            `xml:"usageOperation"`
	ImageOwnerAlias    string            `xml:"imageOwnerAlias,omitempty"`
	Name               string            `xml:"name"`
	Description        string            `xml:"description,omitempty"`
	RootDeviceType     string            `xml:"rootDeviceType"`
	RootDeviceName     string            `xml:"rootDeviceName"`
	BlockDeviceMapping []xmlImageMapping `xml:"blockDeviceMapping>item"`
	VirtualizationType string            `xml:"virtualizationType"`
	TagSet             []xmlTag          `xml:"tagSet>item,omitempty"`
	Hypervisor         string            `xml:"hypervisor"`
	EnaSupport         bool              `xml:"enaSupport"`
	BootMode           string            `xml:"bootMode,omitempty"`
}

func platformDetails(platform string) (details, usage string) {
	if platform == "windows" {
		return "Windows", "RunInstances:0002"
	}
	return "Linux/UNIX", "RunInstances"
}

func (s *Server) imageXML(im *image) xmlImage {
	details, usage := platformDetails(im.platform)
	x := xmlImage{
		ImageID: im.id, ImageLocation: im.ownerID + "/" + im.name, ImageState: "available", ImageOwnerID: im.ownerID,
		CreationDate: ec2Time(im.created), IsPublic: im.public, Architecture: im.architecture, ImageType: "machine",
		Platform: im.platform, PlatformDetails: details, UsageOperation: usage, Name: im.name, Description: im.description,
		RootDeviceType: "ebs", RootDeviceName: im.rootDeviceName, VirtualizationType: im.virtualizationType,
		TagSet: xmlTags(im.tags), Hypervisor: "xen", EnaSupport: im.enaSupport, BootMode: im.bootMode,
	}
	if im.ownerID == amazonOwnerID {
		x.ImageOwnerAlias = "amazon"
		x.ImageLocation = "amazon/" + im.name
	}
	for _, m := range im.mappings {
		x.BlockDeviceMapping = append(x.BlockDeviceMapping, xmlImageMapping{DeviceName: m.device, Ebs: xmlEbsBlockDevice{
			SnapshotID: m.snapshotID, VolumeSize: m.sizeGiB, DeleteOnTermination: m.deleteOnTermination,
			VolumeType: m.volumeType, Encrypted: m.encrypted,
		}})
	}
	return x
}

type describeImagesBody struct {
	ec2Meta
	Images    []xmlImage `xml:"imagesSet>item"`
	NextToken string     `xml:"nextToken,omitempty"`
}

func (s *Server) ec2DescribeImages(p ec2Params) (ec2Body, error) {
	var images []*image
	if ids := p.list("ImageId"); len(ids) > 0 {
		for _, id := range ids {
			im, err := s.imageByID(id)
			if err != nil {
				return nil, err
			}
			images = append(images, im)
		}
		sort.Slice(images, func(i, j int) bool { return images[i].id < images[j].id })
	} else {
		for _, id := range sortedKeys(s.ec2.images) {
			images = append(images, s.ec2.images[id])
		}
	}
	if owners := p.list("Owner"); len(owners) > 0 {
		want := map[string]bool{}
		for _, o := range owners {
			switch o {
			case "self":
				want[s.opts.AccountID] = true
			case "amazon":
				want[amazonOwnerID] = true
			default:
				want[o] = true
			}
		}
		var keep []*image
		for _, im := range images {
			if want[im.ownerID] {
				keep = append(keep, im)
			}
		}
		images = keep
	}
	one := func(f func(im *image) string) func(*image) []string {
		return func(im *image) []string { return []string{f(im)} }
	}
	images, err := applyFilters(images, p.filters(), filterDefs[*image]{
		"image-id":            one(func(im *image) string { return im.id }),
		"name":                one(func(im *image) string { return im.name }),
		"description":         one(func(im *image) string { return im.description }),
		"state":               one(func(*image) string { return "available" }),
		"architecture":        one(func(im *image) string { return im.architecture }),
		"root-device-name":    one(func(im *image) string { return im.rootDeviceName }),
		"root-device-type":    one(func(*image) string { return "ebs" }),
		"owner-id":            one(func(im *image) string { return im.ownerID }),
		"owner-alias":         one(func(im *image) string { return s.imageXML(im).ImageOwnerAlias }),
		"is-public":           one(func(im *image) string { return strconv.FormatBool(im.public) }),
		"platform":            one(func(im *image) string { return im.platform }),
		"virtualization-type": one(func(im *image) string { return im.virtualizationType }),
		"image-type":          one(func(*image) string { return "machine" }),
		"hypervisor":          one(func(*image) string { return "xen" }),
		"ena-support":         one(func(im *image) string { return strconv.FormatBool(im.enaSupport) }),
		"block-device-mapping.snapshot-id": func(im *image) []string {
			var out []string
			for _, m := range im.mappings {
				out = append(out, m.snapshotID)
			}
			return out
		},
	}, func(im *image) map[string]string { return im.tags })
	if err != nil {
		return nil, err
	}
	page, next, err := paginate(images, func(im *image) string { return im.id }, p, 5, 1000)
	if err != nil {
		return nil, err
	}
	out := &describeImagesBody{Images: []xmlImage{}, NextToken: next}
	for _, im := range page {
		out.Images = append(out.Images, s.imageXML(im))
	}
	return out, nil
}

type registerImageBody struct {
	ec2Meta
	ImageID string `xml:"imageId"`
}

// ec2RegisterImage registers an EBS-backed AMI from snapshots, the way a DR
// tool may turn a DR copy into an image. As in EC2, VirtualizationType
// defaults to paravirtual and EnaSupport to false, which nitro instance
// types refuse.
func (s *Server) ec2RegisterImage(p ec2Params) (ec2Body, error) {
	name, err := p.required("Name")
	if err != nil {
		return nil, err
	}
	for _, im := range s.ec2.images {
		if im.ownerID == s.opts.AccountID && im.name == name {
			return nil, ec2Err("InvalidAMIName.Duplicate", "AMI name %s is already in use by AMI %s", name, im.id)
		}
	}
	if p.str("ImageLocation") != "" {
		return nil, ec2Err("InvalidParameterValue", "awssim registers only EBS-backed images from snapshots")
	}
	arch := p.str("Architecture")
	switch arch {
	case "":
		arch = "x86_64"
	case "i386", "x86_64", "arm64":
	default:
		return nil, ec2Err("InvalidParameterValue", "Value (%s) for parameter architecture is invalid.", arch)
	}
	virt := p.str("VirtualizationType")
	switch virt {
	case "":
		virt = "paravirtual"
	case "hvm", "paravirtual":
	default:
		return nil, ec2Err("InvalidParameterValue", "Value (%s) for parameter virtualizationType is invalid.", virt)
	}
	ena, _, err := p.boolean("EnaSupport")
	if err != nil {
		return nil, err
	}
	var mappings []imageMapping
	for _, m := range p.members("BlockDeviceMapping") {
		dev := p.str(m + ".DeviceName")
		if dev == "" {
			return nil, ec2Err("MissingParameter", "The request must contain the parameter %s.DeviceName", m)
		}
		if p.has(m+".NoDevice") || p.str(m+".VirtualName") != "" {
			continue
		}
		im := imageMapping{device: dev, snapshotID: p.str(m + ".Ebs.SnapshotId"), volumeType: p.str(m + ".Ebs.VolumeType"), deleteOnTermination: true}
		if im.volumeType == "" {
			im.volumeType = "gp2"
		}
		if im.sizeGiB, err = p.integer(m+".Ebs.VolumeSize", 0); err != nil {
			return nil, err
		}
		if dot, set, err := p.boolean(m + ".Ebs.DeleteOnTermination"); err != nil {
			return nil, err
		} else if set {
			im.deleteOnTermination = dot
		}
		if im.snapshotID != "" {
			sn := s.snaps[im.snapshotID]
			if sn == nil {
				return nil, ec2Err("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", im.snapshotID)
			}
			s.settleSnapshot(sn, false)
			if sn.state != "completed" {
				return nil, ec2Err("IncorrectState", "Snapshot '%s' is not in the 'completed' state.", sn.id)
			}
			if im.sizeGiB == 0 {
				im.sizeGiB = sn.sizeGiB
			}
			im.encrypted = sn.encrypted
		} else if im.sizeGiB == 0 {
			return nil, ec2Err("InvalidBlockDeviceMapping", "The device '%s' needs a snapshot ID or a volume size.", dev)
		}
		mappings = append(mappings, im)
	}
	root := p.str("RootDeviceName")
	if root == "" && len(mappings) == 1 {
		root = mappings[0].device
	}
	if root == "" {
		return nil, ec2Err("MissingParameter", "The request must contain the parameter rootDeviceName")
	}
	hasRoot := false
	for _, m := range mappings {
		hasRoot = hasRoot || (m.device == root && m.snapshotID != "")
	}
	if !hasRoot {
		return nil, ec2Err("InvalidBlockDeviceMapping", "The root device %s must be mapped to a snapshot.", root)
	}
	tags, err := p.tagSpecs("image", "snapshot")
	if err != nil {
		return nil, err
	}
	if tags["image"] == nil {
		tags["image"] = map[string]string{}
	}
	im := &image{
		id: s.newID("ami"), name: name, description: p.str("Description"), ownerID: s.opts.AccountID,
		rootDeviceName: root, architecture: arch, virtualizationType: virt, enaSupport: ena,
		bootMode: p.str("BootMode"), mappings: mappings, tags: tags["image"], created: s.now(),
	}
	s.ec2.images[im.id] = im
	return &registerImageBody{ImageID: im.id}, nil
}

func (s *Server) ec2DeregisterImage(p ec2Params) (ec2Body, error) {
	id, err := p.required("ImageId")
	if err != nil {
		return nil, err
	}
	im, err := s.imageByID(id)
	if err != nil {
		return nil, err
	}
	if im.ownerID != s.opts.AccountID {
		return nil, &ec2Error{status: 403, code: "AuthFailure", msg: fmt.Sprintf("Not authorized for image:%s", id)}
	}
	delete(s.ec2.images, id)
	if del, _, _ := p.boolean("DeleteAssociatedSnapshots"); del {
		for _, m := range im.mappings {
			delete(s.snaps, m.snapshotID)
			delete(s.ec2.snapTimers, m.snapshotID)
		}
	}
	return okBody(), nil
}
