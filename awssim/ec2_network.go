package awssim

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
)

// EC2 networking: availability zones, VPCs, subnets, security groups.

type vpc struct {
	id        string
	cidr      netip.Prefix
	isDefault bool
	tags      map[string]string
}

type subnet struct {
	id, vpcID, az string
	cidr          netip.Prefix
	defaultForAz  bool
	mapPublicIP   bool
	tags          map[string]string
	used          map[netip.Addr]string // private IP -> instance ID
}

type securityGroup struct {
	id, name, description, vpcID string
	tags                         map[string]string
}

// createVPC makes a VPC with its default security group. Callers hold s.mu
// (or own s, as New does).
func (s *Server) createVPC(cidr string, tags map[string]string) (*vpc, error) {
	pfx, err := netip.ParsePrefix(cidr)
	if err != nil || !pfx.Addr().Is4() || pfx.Bits() < 16 || pfx.Bits() > 28 {
		return nil, ec2Err("InvalidVpc.Range", "The CIDR '%s' is invalid.", cidr)
	}
	if tags == nil {
		tags = map[string]string{}
	}
	v := &vpc{id: s.newID("vpc"), cidr: pfx.Masked(), tags: tags}
	s.ec2.vpcs[v.id] = v
	g := &securityGroup{id: s.newID("sg"), name: "default", description: "default VPC security group", vpcID: v.id, tags: map[string]string{}}
	s.ec2.groups[g.id] = g
	return v, nil
}

// createSubnet makes a subnet of VPC vpcID. Callers hold s.mu (or own s).
func (s *Server) createSubnet(vpcID, az, cidr string, tags map[string]string) (*subnet, error) {
	v, err := s.vpcByID(vpcID)
	if err != nil {
		return nil, err
	}
	if az == "" {
		az = s.ec2.azs[0]
	}
	if !s.validAZ(az) {
		return nil, ec2Err("InvalidParameterValue", "Value (%s) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: %v.", az, s.ec2.azs)
	}
	pfx, err := netip.ParsePrefix(cidr)
	if err != nil || !pfx.Addr().Is4() || pfx.Bits() < 16 || pfx.Bits() > 28 ||
		pfx.Bits() < v.cidr.Bits() || !v.cidr.Contains(pfx.Addr()) {
		return nil, ec2Err("InvalidSubnet.Range", "The CIDR '%s' is invalid.", cidr)
	}
	pfx = pfx.Masked()
	for _, other := range s.ec2.subnets {
		if other.vpcID == vpcID && other.cidr.Overlaps(pfx) {
			return nil, ec2Err("InvalidSubnet.Conflict", "The CIDR '%s' conflicts with another subnet", cidr)
		}
	}
	if tags == nil {
		tags = map[string]string{}
	}
	sn := &subnet{id: s.newID("subnet"), vpcID: vpcID, az: az, cidr: pfx, tags: tags, used: map[netip.Addr]string{}}
	s.ec2.subnets[sn.id] = sn
	return sn, nil
}

func (s *Server) vpcByID(id string) (*vpc, error) {
	if err := checkID(id, "vpc", "InvalidVpcID.Malformed"); err != nil {
		return nil, err
	}
	v := s.ec2.vpcs[id]
	if v == nil {
		return nil, ec2Err("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", id)
	}
	return v, nil
}

func (s *Server) subnetByID(id string) (*subnet, error) {
	if err := checkID(id, "subnet", "InvalidSubnetID.Malformed"); err != nil {
		return nil, err
	}
	sn := s.ec2.subnets[id]
	if sn == nil {
		return nil, ec2Err("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", id)
	}
	return sn, nil
}

func (s *Server) groupByID(id string) (*securityGroup, error) {
	if err := checkID(id, "sg", "InvalidGroupId.Malformed"); err != nil {
		return nil, err
	}
	g := s.ec2.groups[id]
	if g == nil {
		return nil, ec2Err("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
	}
	return g, nil
}

// groupByName finds a security group by name in a VPC.
func (s *Server) groupByName(vpcID, name string) (*securityGroup, error) {
	for _, id := range sortedKeys(s.ec2.groups) {
		if g := s.ec2.groups[id]; g.vpcID == vpcID && g.name == name {
			return g, nil
		}
	}
	return nil, ec2Err("InvalidGroup.NotFound", "The security group '%s' does not exist in VPC '%s'", name, vpcID)
}

// broadcast returns the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	n |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// reserved reports whether EC2 reserves ip in the subnet: the first four
// addresses and the last.
func (sn *subnet) reserved(ip netip.Addr) bool {
	first := sn.cidr.Masked().Addr()
	for i := 0; i < 4; i++ {
		if ip == first {
			return true
		}
		first = first.Next()
	}
	return ip == broadcast(sn.cidr)
}

// allocate assigns a private IP to an instance: want, or the lowest free
// address when want is not valid.
func (sn *subnet) allocate(want netip.Addr, instID string) (netip.Addr, error) {
	if want.IsValid() {
		switch {
		case !sn.cidr.Contains(want):
			return netip.Addr{}, ec2Err("InvalidParameterValue", "Address %s does not fall within the subnet's address range", want)
		case sn.reserved(want):
			return netip.Addr{}, ec2Err("InvalidParameterValue", "Address %s is in subnet's reserved address range", want)
		case sn.used[want] != "":
			return netip.Addr{}, ec2Err("InvalidIPAddress.InUse", "Address %s is in use.", want)
		}
		sn.used[want] = instID
		return want, nil
	}
	for ip := sn.cidr.Masked().Addr(); sn.cidr.Contains(ip); ip = ip.Next() {
		if !sn.reserved(ip) && sn.used[ip] == "" {
			sn.used[ip] = instID
			return ip, nil
		}
	}
	return netip.Addr{}, ec2Err("InsufficientFreeAddressesInSubnet", "There are not enough free addresses in subnet '%s' to satisfy the requested number of instances.", sn.id)
}

func (sn *subnet) free() int {
	return 1<<(32-sn.cidr.Bits()) - 5 - len(sn.used)
}

type xmlAvailabilityZone struct {
	ZoneName           string `xml:"zoneName"`
	ZoneState          string `xml:"zoneState"`
	RegionName         string `xml:"regionName"`
	ZoneID             string `xml:"zoneId"`
	GroupName          string `xml:"groupName"`
	NetworkBorderGroup string `xml:"networkBorderGroup"`
	OptInStatus        string `xml:"optInStatus"`
	ZoneType           string `xml:"zoneType"`
}

type describeAZBody struct {
	ec2Meta
	Zones []xmlAvailabilityZone `xml:"availabilityZoneInfo>item"`
}

func (s *Server) ec2DescribeAvailabilityZones(p ec2Params) (ec2Body, error) {
	var zones []xmlAvailabilityZone
	for _, az := range s.ec2.azs {
		zones = append(zones, xmlAvailabilityZone{
			ZoneName: az, ZoneState: "available", RegionName: s.opts.Region, ZoneID: s.zoneID(az),
			GroupName: s.opts.Region, NetworkBorderGroup: s.opts.Region, OptInStatus: "opt-in-not-required",
			ZoneType: "availability-zone",
		})
	}
	if names := p.list("ZoneName"); len(names) > 0 {
		zones, _ = applyFilters(zones, []ec2Filter{{name: "zone-name", values: names}},
			filterDefs[xmlAvailabilityZone]{"zone-name": func(z xmlAvailabilityZone) []string { return []string{z.ZoneName} }}, nil)
	}
	one := func(f func(z xmlAvailabilityZone) string) func(xmlAvailabilityZone) []string {
		return func(z xmlAvailabilityZone) []string { return []string{f(z)} }
	}
	zones, err := applyFilters(zones, p.filters(), filterDefs[xmlAvailabilityZone]{
		"zone-name":   one(func(z xmlAvailabilityZone) string { return z.ZoneName }),
		"zone-id":     one(func(z xmlAvailabilityZone) string { return z.ZoneID }),
		"region-name": one(func(z xmlAvailabilityZone) string { return z.RegionName }),
		"state":       one(func(z xmlAvailabilityZone) string { return z.ZoneState }),
		"zone-type":   one(func(z xmlAvailabilityZone) string { return z.ZoneType }),
	}, nil)
	if err != nil {
		return nil, err
	}
	return &describeAZBody{Zones: append([]xmlAvailabilityZone{}, zones...)}, nil
}

type xmlCidrAssoc struct {
	AssociationID string `xml:"associationId"`
	CidrBlock     string `xml:"cidrBlock"`
	State         string `xml:"cidrBlockState>state"`
}

type xmlVpc struct {
	VpcID           string         `xml:"vpcId"`
	OwnerID         string         `xml:"ownerId"`
	State           string         `xml:"state"`
	CidrBlock       string         `xml:"cidrBlock"`
	CidrAssocs      []xmlCidrAssoc `xml:"cidrBlockAssociationSet>item"`
	DhcpOptionsID   string         `xml:"dhcpOptionsId"`
	InstanceTenancy string         `xml:"instanceTenancy"`
	IsDefault       bool           `xml:"isDefault"`
	TagSet          []xmlTag       `xml:"tagSet>item,omitempty"`
}

func (s *Server) vpcXML(v *vpc) xmlVpc {
	return xmlVpc{
		VpcID: v.id, OwnerID: s.opts.AccountID, State: "available", CidrBlock: v.cidr.String(),
		CidrAssocs:    []xmlCidrAssoc{{AssociationID: "vpc-cidr-assoc-" + v.id[len("vpc-"):], CidrBlock: v.cidr.String(), State: "associated"}},
		DhcpOptionsID: "dopt-00000000000000001", InstanceTenancy: "default", IsDefault: v.isDefault, TagSet: xmlTags(v.tags),
	}
}

type vpcBody struct {
	ec2Meta
	Vpc xmlVpc `xml:"vpc"`
}

func (s *Server) ec2CreateVpc(p ec2Params) (ec2Body, error) {
	cidr, err := p.required("CidrBlock")
	if err != nil {
		return nil, err
	}
	tags, err := p.tagSpecs("vpc")
	if err != nil {
		return nil, err
	}
	v, err := s.createVPC(cidr, tags["vpc"])
	if err != nil {
		return nil, err
	}
	return &vpcBody{Vpc: s.vpcXML(v)}, nil
}

type describeVpcsBody struct {
	ec2Meta
	Vpcs      []xmlVpc `xml:"vpcSet>item"`
	NextToken string   `xml:"nextToken,omitempty"`
}

func (s *Server) ec2DescribeVpcs(p ec2Params) (ec2Body, error) {
	var vpcs []*vpc
	if ids := p.list("VpcId"); len(ids) > 0 {
		for _, id := range ids {
			v, err := s.vpcByID(id)
			if err != nil {
				return nil, err
			}
			vpcs = append(vpcs, v)
		}
		sort.Slice(vpcs, func(i, j int) bool { return vpcs[i].id < vpcs[j].id })
	} else {
		for _, id := range sortedKeys(s.ec2.vpcs) {
			vpcs = append(vpcs, s.ec2.vpcs[id])
		}
	}
	one := func(f func(v *vpc) string) func(*vpc) []string {
		return func(v *vpc) []string { return []string{f(v)} }
	}
	cidr := one(func(v *vpc) string { return v.cidr.String() })
	vpcs, err := applyFilters(vpcs, p.filters(), filterDefs[*vpc]{
		"vpc-id":                            one(func(v *vpc) string { return v.id }),
		"cidr":                              cidr,
		"cidr-block-association.cidr-block": cidr,
		"is-default":                        one(func(v *vpc) string { return strconv.FormatBool(v.isDefault) }),
		"state":                             one(func(*vpc) string { return "available" }),
		"owner-id":                          one(func(*vpc) string { return s.opts.AccountID }),
	}, func(v *vpc) map[string]string { return v.tags })
	if err != nil {
		return nil, err
	}
	page, next, err := paginate(vpcs, func(v *vpc) string { return v.id }, p, 5, 1000)
	if err != nil {
		return nil, err
	}
	out := &describeVpcsBody{Vpcs: []xmlVpc{}, NextToken: next}
	for _, v := range page {
		out.Vpcs = append(out.Vpcs, s.vpcXML(v))
	}
	return out, nil
}

func (s *Server) ec2DeleteVpc(p ec2Params) (ec2Body, error) {
	id, err := p.required("VpcId")
	if err != nil {
		return nil, err
	}
	v, err := s.vpcByID(id)
	if err != nil {
		return nil, err
	}
	for _, sn := range s.ec2.subnets {
		if sn.vpcID == v.id {
			return nil, ec2Err("DependencyViolation", "The vpc '%s' has dependencies and cannot be deleted.", v.id)
		}
	}
	var defaultGroup string
	for _, g := range s.ec2.groups {
		if g.vpcID != v.id {
			continue
		}
		if g.name != "default" {
			return nil, ec2Err("DependencyViolation", "The vpc '%s' has dependencies and cannot be deleted.", v.id)
		}
		defaultGroup = g.id
	}
	delete(s.ec2.groups, defaultGroup)
	delete(s.ec2.vpcs, v.id)
	if s.ec2.defaultVPC == v.id {
		s.ec2.defaultVPC = ""
	}
	return okBody(), nil
}

type xmlSubnet struct {
	SubnetID                string `xml:"subnetId"`
	SubnetArn               string `xml:"subnetArn"`
	State                   string `xml:"state"`
	OwnerID                 string `xml:"ownerId"`
	VpcID                   string `xml:"vpcId"`
	CidrBlock               string `xml:"cidrBlock"`
	AvailableIPAddressCount int    `xml:"availableIpAddressCount"`
	AvailabilityZone        string `xml:"availabilityZone"`
	AvailabilityZoneID      string `xml:"availabilityZoneId"`
	DefaultForAz            bool   `xml:"defaultForAz"`
	MapPublicIPOnLaunch     bool   `xml:"mapPublicIpOnLaunch"`
	AssignIpv6OnCreation    bool   `xml:"assignIpv6AddressOnCreation"`
	Ipv6Native              bool   `xml:"ipv6Native"`
	PrivateDNSNameOptions   struct {
		HostnameType                    string `xml:"hostnameType"`
		EnableResourceNameDNSARecord    bool   `xml:"enableResourceNameDnsARecord"`
		EnableResourceNameDNSAAAARecord bool   `xml:"enableResourceNameDnsAAAARecord"`
	} `xml:"privateDnsNameOptionsOnLaunch"`
	TagSet []xmlTag `xml:"tagSet>item,omitempty"`
}

func (s *Server) subnetXML(sn *subnet) xmlSubnet {
	x := xmlSubnet{
		SubnetID: sn.id, SubnetArn: fmt.Sprintf("arn:aws:ec2:%s:%s:subnet/%s", s.opts.Region, s.opts.AccountID, sn.id),
		State: "available", OwnerID: s.opts.AccountID, VpcID: sn.vpcID, CidrBlock: sn.cidr.String(),
		AvailableIPAddressCount: sn.free(), AvailabilityZone: sn.az, AvailabilityZoneID: s.zoneID(sn.az),
		DefaultForAz: sn.defaultForAz, MapPublicIPOnLaunch: sn.mapPublicIP, TagSet: xmlTags(sn.tags),
	}
	x.PrivateDNSNameOptions.HostnameType = "ip-name"
	return x
}

type subnetBody struct {
	ec2Meta
	Subnet xmlSubnet `xml:"subnet"`
}

func (s *Server) ec2CreateSubnet(p ec2Params) (ec2Body, error) {
	vpcID, err := p.required("VpcId")
	if err != nil {
		return nil, err
	}
	cidr, err := p.required("CidrBlock")
	if err != nil {
		return nil, err
	}
	az := p.str("AvailabilityZone")
	if zid := p.str("AvailabilityZoneId"); az == "" && zid != "" {
		for _, z := range s.ec2.azs {
			if s.zoneID(z) == zid {
				az = z
			}
		}
		if az == "" {
			return nil, ec2Err("InvalidParameterValue", "Value (%s) for parameter availabilityZoneId is invalid.", zid)
		}
	}
	tags, err := p.tagSpecs("subnet")
	if err != nil {
		return nil, err
	}
	sn, err := s.createSubnet(vpcID, az, cidr, tags["subnet"])
	if err != nil {
		return nil, err
	}
	return &subnetBody{Subnet: s.subnetXML(sn)}, nil
}

type describeSubnetsBody struct {
	ec2Meta
	Subnets   []xmlSubnet `xml:"subnetSet>item"`
	NextToken string      `xml:"nextToken,omitempty"`
}

func (s *Server) ec2DescribeSubnets(p ec2Params) (ec2Body, error) {
	var subnets []*subnet
	if ids := p.list("SubnetId"); len(ids) > 0 {
		for _, id := range ids {
			sn, err := s.subnetByID(id)
			if err != nil {
				return nil, err
			}
			subnets = append(subnets, sn)
		}
		sort.Slice(subnets, func(i, j int) bool { return subnets[i].id < subnets[j].id })
	} else {
		for _, id := range sortedKeys(s.ec2.subnets) {
			subnets = append(subnets, s.ec2.subnets[id])
		}
	}
	one := func(f func(sn *subnet) string) func(*subnet) []string {
		return func(sn *subnet) []string { return []string{f(sn)} }
	}
	cidr := one(func(sn *subnet) string { return sn.cidr.String() })
	subnets, err := applyFilters(subnets, p.filters(), filterDefs[*subnet]{
		"subnet-id":            one(func(sn *subnet) string { return sn.id }),
		"vpc-id":               one(func(sn *subnet) string { return sn.vpcID }),
		"cidr-block":           cidr,
		"cidr":                 cidr,
		"cidrBlock":            cidr,
		"availability-zone":    one(func(sn *subnet) string { return sn.az }),
		"availability-zone-id": one(func(sn *subnet) string { return s.zoneID(sn.az) }),
		"default-for-az":       one(func(sn *subnet) string { return strconv.FormatBool(sn.defaultForAz) }),
		"state":                one(func(*subnet) string { return "available" }),
		"owner-id":             one(func(*subnet) string { return s.opts.AccountID }),
	}, func(sn *subnet) map[string]string { return sn.tags })
	if err != nil {
		return nil, err
	}
	page, next, err := paginate(subnets, func(sn *subnet) string { return sn.id }, p, 5, 1000)
	if err != nil {
		return nil, err
	}
	out := &describeSubnetsBody{Subnets: []xmlSubnet{}, NextToken: next}
	for _, sn := range page {
		out.Subnets = append(out.Subnets, s.subnetXML(sn))
	}
	return out, nil
}

func (s *Server) ec2DeleteSubnet(p ec2Params) (ec2Body, error) {
	id, err := p.required("SubnetId")
	if err != nil {
		return nil, err
	}
	sn, err := s.subnetByID(id)
	if err != nil {
		return nil, err
	}
	for _, in := range s.ec2.instances {
		if in.subnetID == sn.id && in.state != "terminated" {
			return nil, ec2Err("DependencyViolation", "The subnet '%s' has dependencies and cannot be deleted.", sn.id)
		}
	}
	delete(s.ec2.subnets, sn.id)
	return &emptyBody{}, nil
}

type xmlIPRange struct {
	CidrIP string `xml:"cidrIp"`
}

type xmlIPPermission struct {
	IPProtocol string       `xml:"ipProtocol"`
	IPRanges   []xmlIPRange `xml:"ipRanges>item"`
}

type xmlSecurityGroup struct {
	OwnerID          string            `xml:"ownerId"`
	GroupID          string            `xml:"groupId"`
	GroupName        string            `xml:"groupName"`
	GroupDescription string            `xml:"groupDescription"`
	VpcID            string            `xml:"vpcId"`
	SecurityGroupArn string            `xml:"securityGroupArn"`
	IPPermissions    []xmlIPPermission `xml:"ipPermissions>item"`
	IPPermissionsOut []xmlIPPermission `xml:"ipPermissionsEgress>item"`
	TagSet           []xmlTag          `xml:"tagSet>item,omitempty"`
}

func (s *Server) groupXML(g *securityGroup) xmlSecurityGroup {
	return xmlSecurityGroup{
		OwnerID: s.opts.AccountID, GroupID: g.id, GroupName: g.name, GroupDescription: g.description, VpcID: g.vpcID,
		SecurityGroupArn: fmt.Sprintf("arn:aws:ec2:%s:%s:security-group/%s", s.opts.Region, s.opts.AccountID, g.id),
		IPPermissionsOut: []xmlIPPermission{{IPProtocol: "-1", IPRanges: []xmlIPRange{{CidrIP: "0.0.0.0/0"}}}},
		TagSet:           xmlTags(g.tags),
	}
}

type createGroupBody struct {
	ec2Meta
	GroupID          string   `xml:"groupId"`
	SecurityGroupArn string   `xml:"securityGroupArn"`
	TagSet           []xmlTag `xml:"tagSet>item,omitempty"`
}

func (s *Server) ec2CreateSecurityGroup(p ec2Params) (ec2Body, error) {
	name, err := p.required("GroupName")
	if err != nil {
		return nil, err
	}
	desc, err := p.required("GroupDescription")
	if err != nil {
		return nil, err
	}
	vpcID := p.str("VpcId")
	if vpcID == "" {
		if vpcID = s.ec2.defaultVPC; vpcID == "" {
			return nil, ec2Err("VPCIdNotSpecified", "No default VPC for this user")
		}
	}
	if _, err := s.vpcByID(vpcID); err != nil {
		return nil, err
	}
	if name == "default" {
		return nil, ec2Err("InvalidParameterValue", "Cannot use reserved security group name: default")
	}
	if _, err := s.groupByName(vpcID, name); err == nil {
		return nil, ec2Err("InvalidGroup.Duplicate", "The security group '%s' already exists for VPC '%s'", name, vpcID)
	}
	tags, err := p.tagSpecs("security-group")
	if err != nil {
		return nil, err
	}
	g := &securityGroup{id: s.newID("sg"), name: name, description: desc, vpcID: vpcID, tags: tags["security-group"]}
	if g.tags == nil {
		g.tags = map[string]string{}
	}
	s.ec2.groups[g.id] = g
	x := s.groupXML(g)
	return &createGroupBody{GroupID: g.id, SecurityGroupArn: x.SecurityGroupArn, TagSet: x.TagSet}, nil
}

type describeGroupsBody struct {
	ec2Meta
	Groups    []xmlSecurityGroup `xml:"securityGroupInfo>item"`
	NextToken string             `xml:"nextToken,omitempty"`
}

func (s *Server) ec2DescribeSecurityGroups(p ec2Params) (ec2Body, error) {
	var groups []*securityGroup
	ids, names := p.list("GroupId"), p.list("GroupName")
	for _, id := range ids {
		g, err := s.groupByID(id)
		if err != nil {
			return nil, err
		}
		groups = append(groups, g)
	}
	for _, n := range names {
		g, err := s.groupByName(s.ec2.defaultVPC, n)
		if err != nil {
			return nil, err
		}
		groups = append(groups, g)
	}
	if len(ids)+len(names) == 0 {
		for _, id := range sortedKeys(s.ec2.groups) {
			groups = append(groups, s.ec2.groups[id])
		}
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].id < groups[j].id })
	one := func(f func(g *securityGroup) string) func(*securityGroup) []string {
		return func(g *securityGroup) []string { return []string{f(g)} }
	}
	groups, err := applyFilters(groups, p.filters(), filterDefs[*securityGroup]{
		"group-id":    one(func(g *securityGroup) string { return g.id }),
		"group-name":  one(func(g *securityGroup) string { return g.name }),
		"description": one(func(g *securityGroup) string { return g.description }),
		"vpc-id":      one(func(g *securityGroup) string { return g.vpcID }),
		"owner-id":    one(func(*securityGroup) string { return s.opts.AccountID }),
	}, func(g *securityGroup) map[string]string { return g.tags })
	if err != nil {
		return nil, err
	}
	page, next, err := paginate(groups, func(g *securityGroup) string { return g.id }, p, 5, 1000)
	if err != nil {
		return nil, err
	}
	out := &describeGroupsBody{Groups: []xmlSecurityGroup{}, NextToken: next}
	for _, g := range page {
		out.Groups = append(out.Groups, s.groupXML(g))
	}
	return out, nil
}

type deleteGroupBody struct {
	ec2Meta
	Return  bool   `xml:"return"`
	GroupID string `xml:"groupId"`
}

func (s *Server) ec2DeleteSecurityGroup(p ec2Params) (ec2Body, error) {
	var g *securityGroup
	var err error
	switch {
	case p.str("GroupId") != "":
		g, err = s.groupByID(p.str("GroupId"))
	case p.str("GroupName") != "":
		g, err = s.groupByName(s.ec2.defaultVPC, p.str("GroupName"))
	default:
		err = ec2Err("MissingParameter", "The request must contain the parameter groupName or groupId")
	}
	if err != nil {
		return nil, err
	}
	if g.name == "default" {
		return nil, ec2Err("CannotDelete", "the specified group: \"%s\" name: \"default\" cannot be deleted by a user", g.id)
	}
	for _, id := range sortedKeys(s.ec2.instances) {
		in := s.ec2.instances[id]
		if in.state == "terminated" {
			continue
		}
		for _, gid := range in.groups {
			if gid == g.id {
				return nil, ec2Err("DependencyViolation", "resource %s has a dependent object", g.id)
			}
		}
	}
	delete(s.ec2.groups, g.id)
	return &deleteGroupBody{Return: true, GroupID: g.id}, nil
}
