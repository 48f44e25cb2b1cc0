package awssim

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
)

// route53Namespace is the XML namespace of Route53 requests and responses.
const route53Namespace = "https://route53.amazonaws.com/doc/2013-04-01/"

// route53State holds the simulated Route53 resources. Guarded by Server.mu.
type route53State struct {
	zones   map[string]*hostedZone
	byRef   map[string]string // CallerReference -> zone ID, kept after deletion
	changes map[string]*r53Change
}

func (st *route53State) init(s *Server) {
	st.zones = map[string]*hostedZone{}
	st.byRef = map[string]string{}
	st.changes = map[string]*r53Change{}
}

type hostedZone struct {
	id, name, callerRef, comment string
	private                      bool
	vpcs                         []xmlZoneVPC
	nameServers                  []string
	records                      []xmlRRSet // sorted by rrsetLess
}

type r53Change struct {
	id, comment string
	submitted   time.Time
	timer       stateTimer
}

// RecordSet is a Route53 resource record set, as [Server.RecordSets]
// reports it.
type RecordSet struct {
	// Name is canonical: lowercase, with the trailing dot, a leading
	// wildcard written \052 (as Route53 returns it).
	Name          string
	Type          string
	SetIdentifier string
	TTL           int64    // 0 for alias records
	Values        []string // empty for alias records
	// AliasTarget is the DNS name an alias record points at, or "".
	AliasTarget string
	Weight      *int64
}

// HostedZoneInfo describes a simulated hosted zone.
type HostedZoneInfo struct {
	ID      string // without the /hostedzone/ prefix
	Name    string // with the trailing dot
	Private bool
	VPCIDs  []string // the VPCs a private zone is associated with
}

// HostedZones returns every hosted zone, sorted by ID.
func (s *Server) HostedZones() []HostedZoneInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []HostedZoneInfo
	for _, id := range sortedKeys(s.r53.zones) {
		z := s.r53.zones[id]
		info := HostedZoneInfo{ID: z.id, Name: z.name, Private: z.private}
		for _, v := range z.vpcs {
			info.VPCIDs = append(info.VPCIDs, v.VPCID)
		}
		out = append(out, info)
	}
	return out
}

// RecordSets returns the record sets of hosted zone zoneID (with or without
// the /hostedzone/ prefix) in Route53's order: by name with the labels
// reversed, then by type.
func (s *Server) RecordSets(zoneID string) ([]RecordSet, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.r53.zones[strings.TrimPrefix(zoneID, "/hostedzone/")]
	if z == nil {
		return nil, fmt.Errorf("awssim: no hosted zone %s", zoneID)
	}
	out := make([]RecordSet, 0, len(z.records))
	for _, r := range z.records {
		rs := RecordSet{Name: r.Name, Type: r.Type, SetIdentifier: r.SetIdentifier}
		if r.TTL != nil {
			rs.TTL = *r.TTL
		}
		for _, v := range r.ResourceRecords {
			rs.Values = append(rs.Values, v.Value)
		}
		if r.AliasTarget != nil {
			rs.AliasTarget = r.AliasTarget.DNSName
		}
		if r.Weight != nil {
			w := *r.Weight
			rs.Weight = &w
		}
		out = append(out, rs)
	}
	return out, nil
}

// r53Error is a Route53 API error.
type r53Error struct {
	status int
	code   string
	msg    string
}

func (e *r53Error) Error() string { return e.code + ": " + e.msg }

func r53Err(status int, code, format string, a ...any) *r53Error {
	return &r53Error{status: status, code: code, msg: fmt.Sprintf(format, a...)}
}

func r53Invalid(format string, a ...any) *r53Error {
	return r53Err(http.StatusBadRequest, "InvalidInput", format, a...)
}

func noSuchZone(id string) *r53Error {
	return r53Err(http.StatusNotFound, "NoSuchHostedZone", "No hosted zone found with ID: %s", id)
}

type xmlZoneVPC struct {
	VPCRegion string `xml:"VPCRegion,omitempty"`
	VPCID     string `xml:"VPCId"`
}

type xmlRR struct {
	Value string `xml:"Value"`
}

type xmlAliasTarget struct {
	HostedZoneID         string `xml:"HostedZoneId"`
	DNSName              string `xml:"DNSName"`
	EvaluateTargetHealth bool   `xml:"EvaluateTargetHealth"`
}

type xmlGeoLocation struct {
	ContinentCode   string `xml:"ContinentCode,omitempty"`
	CountryCode     string `xml:"CountryCode,omitempty"`
	SubdivisionCode string `xml:"SubdivisionCode,omitempty"`
}

// xmlRRSet is a ResourceRecordSet, in requests and responses alike.
type xmlRRSet struct {
	Name                    string          `xml:"Name"`
	Type                    string          `xml:"Type"`
	SetIdentifier           string          `xml:"SetIdentifier,omitempty"`
	Weight                  *int64          `xml:"Weight,omitempty"`
	Region                  string          `xml:"Region,omitempty"`
	GeoLocation             *xmlGeoLocation `xml:"GeoLocation,omitempty"`
	Failover                string          `xml:"Failover,omitempty"`
	MultiValueAnswer        *bool           `xml:"MultiValueAnswer,omitempty"`
	TTL                     *int64          `xml:"TTL,omitempty"`
	ResourceRecords         []xmlRR         `xml:"ResourceRecords>ResourceRecord"`
	AliasTarget             *xmlAliasTarget `xml:"AliasTarget,omitempty"`
	HealthCheckID           string          `xml:"HealthCheckId,omitempty"`
	TrafficPolicyInstanceID string          `xml:"TrafficPolicyInstanceId,omitempty"`
}

type xmlZoneConfig struct {
	Comment     string `xml:"Comment,omitempty"`
	PrivateZone bool   `xml:"PrivateZone"`
}

type xmlHostedZone struct {
	ID                     string        `xml:"Id"`
	Name                   string        `xml:"Name"`
	CallerReference        string        `xml:"CallerReference"`
	Config                 xmlZoneConfig `xml:"Config"`
	ResourceRecordSetCount int           `xml:"ResourceRecordSetCount"`
}

type xmlChangeInfo struct {
	ID          string `xml:"Id"`
	Status      string `xml:"Status"`
	SubmittedAt string `xml:"SubmittedAt"`
	Comment     string `xml:"Comment,omitempty"`
}

type xmlDelegationSet struct {
	NameServers []string `xml:"NameServers>NameServer"`
}

// serveRoute53 answers a Route53 REST-XML request under /2013-04-01/.
func (s *Server) serveRoute53(w http.ResponseWriter, r *http.Request) {
	reqID := newRequestID()
	op, h, arg := s.route53Route(r)
	if h == nil {
		writeR53Error(w, reqID, r53Err(http.StatusNotFound, "UnknownOperationException", "No such operation: %s %s", r.Method, r.URL.Path))
		return
	}
	switch s.fault(op) {
	case faultThrottle:
		writeR53Error(w, reqID, r53Err(http.StatusBadRequest, "Throttling", "Rate exceeded"))
		return
	case faultInternal:
		writeR53Error(w, reqID, r53Err(http.StatusInternalServerError, "InternalFailure", "An internal error has occurred"))
		return
	}
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			writeR53Error(w, reqID, r53Invalid("%v", err))
			return
		}
		body = b
	}
	s.mu.Lock()
	status, resp, err := h(r, arg, body)
	s.mu.Unlock()
	if err != nil {
		writeR53Error(w, reqID, err)
		return
	}
	out, err := xml.Marshal(resp)
	if err != nil {
		writeR53Error(w, reqID, r53Err(http.StatusInternalServerError, "InternalFailure", "%v", err))
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("x-amzn-RequestId", reqID)
	if c, ok := resp.(*createHostedZoneResponse); ok {
		w.Header().Set("Location", "https://route53.amazonaws.com/2013-04-01"+c.HostedZone.ID)
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(out)
}

type r53Handler func(r *http.Request, arg string, body []byte) (int, any, error)

// route53Route maps a request to its operation name, handler and path
// argument (a zone or change ID).
func (s *Server) route53Route(r *http.Request) (string, r53Handler, string) {
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/2013-04-01/"), "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] == "hostedzone" && r.Method == http.MethodPost:
		return "CreateHostedZone", s.r53CreateHostedZone, ""
	case len(parts) == 1 && parts[0] == "hostedzone" && r.Method == http.MethodGet:
		return "ListHostedZones", s.r53ListHostedZones, ""
	case len(parts) == 1 && parts[0] == "hostedzonesbyname" && r.Method == http.MethodGet:
		return "ListHostedZonesByName", s.r53ListHostedZonesByName, ""
	case len(parts) == 2 && parts[0] == "hostedzone" && r.Method == http.MethodGet:
		return "GetHostedZone", s.r53GetHostedZone, parts[1]
	case len(parts) == 2 && parts[0] == "hostedzone" && r.Method == http.MethodDelete:
		return "DeleteHostedZone", s.r53DeleteHostedZone, parts[1]
	case len(parts) == 3 && parts[0] == "hostedzone" && parts[2] == "rrset" && r.Method == http.MethodPost:
		return "ChangeResourceRecordSets", s.r53ChangeResourceRecordSets, parts[1]
	case len(parts) == 3 && parts[0] == "hostedzone" && parts[2] == "rrset" && r.Method == http.MethodGet:
		return "ListResourceRecordSets", s.r53ListResourceRecordSets, parts[1]
	case len(parts) == 2 && parts[0] == "change" && r.Method == http.MethodGet:
		return "GetChange", s.r53GetChange, parts[1]
	}
	return "", nil, ""
}

func writeR53Error(w http.ResponseWriter, reqID string, err error) {
	e, ok := err.(*r53Error)
	if !ok {
		e = r53Err(http.StatusInternalServerError, "InternalFailure", "%v", err)
	}
	typ := "Sender"
	if e.status >= 500 {
		typ = "Receiver"
	}
	doc := struct {
		XMLName   xml.Name `xml:"https://route53.amazonaws.com/doc/2013-04-01/ ErrorResponse"`
		Type      string   `xml:"Error>Type"`
		Code      string   `xml:"Error>Code"`
		Message   string   `xml:"Error>Message"`
		RequestID string   `xml:"RequestId"`
	}{Type: typ, Code: e.code, Message: e.msg, RequestID: reqID}
	out, _ := xml.Marshal(doc)
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("x-amzn-RequestId", reqID)
	w.WriteHeader(e.status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(out)
}

// canonicalName returns a DNS name the way Route53 stores it: lowercase,
// fully qualified, a leading wildcard escaped as \052.
func canonicalName(n string) string {
	n = strings.ToLower(strings.TrimSpace(n))
	if !strings.HasSuffix(n, ".") {
		n += "."
	}
	if strings.HasPrefix(n, "*.") {
		n = `\052` + n[1:]
	}
	return n
}

// validDomain reports whether a canonical name is a well-formed domain name.
func validDomain(n string) bool {
	if n == "." || len(n) > 255 {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(n, "."), ".") {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}

// reversedName is the sort key Route53 lists names by: the labels reversed,
// "www.example.com." → "com.example.www.".
func reversedName(n string) string {
	labels := strings.Split(strings.TrimSuffix(n, "."), ".")
	for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
		labels[i], labels[j] = labels[j], labels[i]
	}
	return strings.Join(labels, ".") + "."
}

func rrsetKey(name, typ, setID string) [3]string {
	return [3]string{reversedName(name), typ, setID}
}

func keyLess(a, b [3]string) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func (z *hostedZone) xml() xmlHostedZone {
	return xmlHostedZone{
		ID: "/hostedzone/" + z.id, Name: z.name, CallerReference: z.callerRef,
		Config: xmlZoneConfig{Comment: z.comment, PrivateZone: z.private}, ResourceRecordSetCount: len(z.records),
	}
}

// newChange records a change, PENDING until its transition is due.
func (s *Server) newChange(comment string) *r53Change {
	s.ids["route53-change"]++
	c := &r53Change{id: fmt.Sprintf("C%013d", s.ids["route53-change"]), comment: comment, submitted: s.now()}
	s.startTimer(&c.timer)
	s.r53.changes[c.id] = c
	return c
}

func (s *Server) changeXML(c *r53Change, observe bool) xmlChangeInfo {
	status := "PENDING"
	if s.settled(&c.timer, observe) {
		status = "INSYNC"
	}
	return xmlChangeInfo{ID: "/change/" + c.id, Status: status, SubmittedAt: ec2Time(c.submitted), Comment: c.comment}
}

type createHostedZoneRequest struct {
	Name             string         `xml:"Name"`
	CallerReference  string         `xml:"CallerReference"`
	VPC              *xmlZoneVPC    `xml:"VPC"`
	HostedZoneConfig *xmlZoneConfig `xml:"HostedZoneConfig"`
	DelegationSetID  string         `xml:"DelegationSetId"`
}

type createHostedZoneResponse struct {
	XMLName       xml.Name          `xml:"https://route53.amazonaws.com/doc/2013-04-01/ CreateHostedZoneResponse"`
	HostedZone    xmlHostedZone     `xml:"HostedZone"`
	ChangeInfo    xmlChangeInfo     `xml:"ChangeInfo"`
	DelegationSet *xmlDelegationSet `xml:"DelegationSet,omitempty"`
	VPC           *xmlZoneVPC       `xml:"VPC,omitempty"`
}

// r53CreateHostedZone creates a zone with its SOA and NS records. As in
// Route53, a CallerReference used before fails with HostedZoneAlreadyExists
// (the caller then finds its zone by name).
func (s *Server) r53CreateHostedZone(_ *http.Request, _ string, body []byte) (int, any, error) {
	var req createHostedZoneRequest
	if err := xml.Unmarshal(body, &req); err != nil {
		return 0, nil, r53Invalid("Invalid XML: %v", err)
	}
	if req.Name == "" || req.CallerReference == "" {
		return 0, nil, r53Invalid("Name and CallerReference are required")
	}
	name := canonicalName(req.Name)
	if !validDomain(name) || strings.HasPrefix(name, `\052`) {
		return 0, nil, r53Err(http.StatusBadRequest, "InvalidDomainName", "%s is reserved by AWS or is not a valid domain name", req.Name)
	}
	if _, ok := s.r53.byRef[req.CallerReference]; ok {
		return 0, nil, r53Err(http.StatusConflict, "HostedZoneAlreadyExists",
			"A hosted zone has already been created with the specified caller reference.")
	}
	z := &hostedZone{name: name, callerRef: req.CallerReference}
	if req.HostedZoneConfig != nil {
		z.comment = req.HostedZoneConfig.Comment
		z.private = req.HostedZoneConfig.PrivateZone
	}
	if req.VPC != nil {
		region := req.VPC.VPCRegion
		if region == "" {
			region = s.opts.Region
		}
		if region != s.opts.Region || s.ec2.vpcs[req.VPC.VPCID] == nil {
			return 0, nil, r53Err(http.StatusBadRequest, "InvalidVPCId", "The VPC ID '%s' is invalid or is not in region %s.", req.VPC.VPCID, region)
		}
		for _, other := range s.r53.zones {
			if other.private && other.name == name {
				for _, v := range other.vpcs {
					if v.VPCID == req.VPC.VPCID {
						return 0, nil, r53Err(http.StatusBadRequest, "ConflictingDomainExists",
							"A private hosted zone for %s is already associated with VPC %s.", name, v.VPCID)
					}
				}
			}
		}
		z.private = true
		z.vpcs = []xmlZoneVPC{{VPCRegion: region, VPCID: req.VPC.VPCID}}
	} else if z.private {
		return 0, nil, r53Invalid("A private hosted zone needs a VPC.")
	}
	s.ids["route53-zone"]++
	n := s.ids["route53-zone"]
	z.id = fmt.Sprintf("Z%013d", n)
	z.nameServers = []string{
		fmt.Sprintf("ns-%d.awsdns-%02d.com.", (n*37)%512, n%64),
		fmt.Sprintf("ns-%d.awsdns-%02d.net.", 512+(n*37)%512, n%64),
		fmt.Sprintf("ns-%d.awsdns-%02d.org.", 1024+(n*37)%512, n%64),
		fmt.Sprintf("ns-%d.awsdns-%02d.co.uk.", 1536+(n*37)%512, n%64),
	}
	soaTTL, nsTTL := int64(900), int64(172800)
	ns := xmlRRSet{Name: name, Type: "NS", TTL: &nsTTL}
	for _, v := range z.nameServers {
		ns.ResourceRecords = append(ns.ResourceRecords, xmlRR{v})
	}
	soa := xmlRRSet{Name: name, Type: "SOA", TTL: &soaTTL, ResourceRecords: []xmlRR{{
		z.nameServers[0] + " awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400",
	}}}
	z.records = []xmlRRSet{ns, soa}
	s.r53.zones[z.id] = z
	s.r53.byRef[req.CallerReference] = z.id
	resp := &createHostedZoneResponse{HostedZone: z.xml(), ChangeInfo: s.changeXML(s.newChange(""), false)}
	if z.private {
		resp.VPC = &z.vpcs[0]
	} else {
		resp.DelegationSet = &xmlDelegationSet{NameServers: z.nameServers}
	}
	return http.StatusCreated, resp, nil
}

type getHostedZoneResponse struct {
	XMLName       xml.Name          `xml:"https://route53.amazonaws.com/doc/2013-04-01/ GetHostedZoneResponse"`
	HostedZone    xmlHostedZone     `xml:"HostedZone"`
	DelegationSet *xmlDelegationSet `xml:"DelegationSet,omitempty"`
	VPCs          []xmlZoneVPC      `xml:"VPCs>VPC,omitempty"`
}

func (s *Server) r53GetHostedZone(_ *http.Request, id string, _ []byte) (int, any, error) {
	z := s.r53.zones[id]
	if z == nil {
		return 0, nil, noSuchZone(id)
	}
	resp := &getHostedZoneResponse{HostedZone: z.xml(), VPCs: z.vpcs}
	if !z.private {
		resp.DelegationSet = &xmlDelegationSet{NameServers: z.nameServers}
	}
	return http.StatusOK, resp, nil
}

type changeInfoResponse struct {
	XMLName    xml.Name
	ChangeInfo xmlChangeInfo `xml:"ChangeInfo"`
}

func changeInfoDoc(root string, ci xmlChangeInfo) *changeInfoResponse {
	return &changeInfoResponse{XMLName: xml.Name{Space: route53Namespace, Local: root}, ChangeInfo: ci}
}

func (s *Server) r53DeleteHostedZone(_ *http.Request, id string, _ []byte) (int, any, error) {
	z := s.r53.zones[id]
	if z == nil {
		return 0, nil, noSuchZone(id)
	}
	for _, r := range z.records {
		if !(r.Name == z.name && (r.Type == "SOA" || r.Type == "NS")) {
			return 0, nil, r53Err(http.StatusBadRequest, "HostedZoneNotEmpty",
				"The specified hosted zone contains non-required resource record sets and so cannot be deleted.")
		}
	}
	delete(s.r53.zones, id)
	return http.StatusOK, changeInfoDoc("DeleteHostedZoneResponse", s.changeXML(s.newChange(""), false)), nil
}

// maxItems parses a maxitems query parameter.
func maxItems(r *http.Request, def, limit int) (int, error) {
	v := r.URL.Query().Get("maxitems")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, r53Invalid("1 validation error detected: Value '%s' at 'maxItems' failed to satisfy constraint", v)
	}
	return min(n, limit), nil
}

type listHostedZonesResponse struct {
	XMLName     xml.Name        `xml:"https://route53.amazonaws.com/doc/2013-04-01/ ListHostedZonesResponse"`
	HostedZones []xmlHostedZone `xml:"HostedZones>HostedZone"`
	Marker      string          `xml:"Marker"`
	IsTruncated bool            `xml:"IsTruncated"`
	NextMarker  string          `xml:"NextMarker,omitempty"`
	MaxItems    string          `xml:"MaxItems"`
}

func (s *Server) r53ListHostedZones(r *http.Request, _ string, _ []byte) (int, any, error) {
	limit, err := maxItems(r, 100, 100)
	if err != nil {
		return 0, nil, err
	}
	q := r.URL.Query()
	marker := q.Get("marker")
	typ := q.Get("hostedzonetype")
	if typ != "" && typ != "PrivateHostedZone" {
		return 0, nil, r53Invalid("Invalid hostedzonetype: %s", typ)
	}
	resp := &listHostedZonesResponse{Marker: marker, MaxItems: strconv.Itoa(limit), HostedZones: []xmlHostedZone{}}
	for _, id := range sortedKeys(s.r53.zones) {
		z := s.r53.zones[id]
		if id < marker || (typ != "" && !z.private) {
			continue
		}
		if len(resp.HostedZones) == limit {
			resp.IsTruncated, resp.NextMarker = true, id
			break
		}
		resp.HostedZones = append(resp.HostedZones, z.xml())
	}
	return http.StatusOK, resp, nil
}

type listHostedZonesByNameResponse struct {
	XMLName          xml.Name        `xml:"https://route53.amazonaws.com/doc/2013-04-01/ ListHostedZonesByNameResponse"`
	HostedZones      []xmlHostedZone `xml:"HostedZones>HostedZone"`
	DNSName          string          `xml:"DNSName,omitempty"`
	HostedZoneID     string          `xml:"HostedZoneId,omitempty"`
	IsTruncated      bool            `xml:"IsTruncated"`
	NextDNSName      string          `xml:"NextDNSName,omitempty"`
	NextHostedZoneID string          `xml:"NextHostedZoneId,omitempty"`
	MaxItems         string          `xml:"MaxItems"`
}

func (s *Server) r53ListHostedZonesByName(r *http.Request, _ string, _ []byte) (int, any, error) {
	limit, err := maxItems(r, 100, 100)
	if err != nil {
		return 0, nil, err
	}
	q := r.URL.Query()
	dnsName, zoneID := q.Get("dnsname"), q.Get("hostedzoneid")
	if zoneID != "" && dnsName == "" {
		return 0, nil, r53Invalid("The input is not valid: HostedZoneId requires DNSName.")
	}
	zones := make([]*hostedZone, 0, len(s.r53.zones))
	for _, z := range s.r53.zones {
		zones = append(zones, z)
	}
	key := func(z *hostedZone) [3]string { return [3]string{reversedName(z.name), z.id} }
	sort.Slice(zones, func(i, j int) bool { return keyLess(key(zones[i]), key(zones[j])) })
	resp := &listHostedZonesByNameResponse{DNSName: dnsName, HostedZoneID: zoneID, MaxItems: strconv.Itoa(limit), HostedZones: []xmlHostedZone{}}
	var start [3]string
	if dnsName != "" {
		start = [3]string{reversedName(canonicalName(dnsName)), zoneID}
	}
	for _, z := range zones {
		if keyLess(key(z), start) {
			continue
		}
		if len(resp.HostedZones) == limit {
			resp.IsTruncated, resp.NextDNSName, resp.NextHostedZoneID = true, z.name, z.id
			break
		}
		resp.HostedZones = append(resp.HostedZones, z.xml())
	}
	return http.StatusOK, resp, nil
}

type changeBatchRequest struct {
	ChangeBatch struct {
		Comment string `xml:"Comment"`
		Changes []struct {
			Action            string   `xml:"Action"`
			ResourceRecordSet xmlRRSet `xml:"ResourceRecordSet"`
		} `xml:"Changes>Change"`
	} `xml:"ChangeBatch"`
}

var rrTypes = map[string]bool{
	"A": true, "AAAA": true, "CAA": true, "CNAME": true, "DS": true, "MX": true, "NAPTR": true,
	"NS": true, "PTR": true, "SOA": true, "SPF": true, "SRV": true, "TXT": true, "HTTPS": true,
	"SSHFP": true, "SVCB": true, "TLSA": true,
}

// sameRRSet reports whether a DELETE's record set matches the current one
// exactly: TTL, values (in any order), alias and routing.
func sameRRSet(a, b xmlRRSet) bool {
	norm := func(r xmlRRSet) string {
		vals := make([]string, len(r.ResourceRecords))
		for i, v := range r.ResourceRecords {
			vals[i] = v.Value
		}
		sort.Strings(vals)
		r.ResourceRecords = nil
		if r.AliasTarget != nil {
			at := *r.AliasTarget
			at.DNSName = canonicalName(at.DNSName)
			r.AliasTarget = &at
		}
		out, _ := xml.Marshal(r)
		return string(out) + strings.Join(vals, "\x00")
	}
	return norm(a) == norm(b)
}

// checkRRSet validates a record set of a change and canonicalizes its
// names; it returns the InvalidChangeBatch or InvalidInput message.
func checkRRSet(z *hostedZone, action string, rr *xmlRRSet) (batchMsg string, err error) {
	rr.Name = canonicalName(rr.Name)
	if !rrTypes[rr.Type] {
		return "", r53Invalid("Invalid XML ; cvc-enumeration-valid: Value '%s' is not facet-valid with respect to enumeration for type 'RRType'.", rr.Type)
	}
	hasRecords := rr.TTL != nil || len(rr.ResourceRecords) > 0
	switch {
	case rr.AliasTarget != nil && hasRecords:
		return "", r53Invalid("Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or TrafficPolicyInstanceId], but found more than one in Change with [Action=%s, Name=%s, Type=%s, SetIdentifier=%s]", action, rr.Name, rr.Type, orNull(rr.SetIdentifier))
	case rr.AliasTarget == nil && (rr.TTL == nil || len(rr.ResourceRecords) == 0):
		return "", r53Invalid("Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or TrafficPolicyInstanceId], but found none in Change with [Action=%s, Name=%s, Type=%s, SetIdentifier=%s]", action, rr.Name, rr.Type, orNull(rr.SetIdentifier))
	}
	if rr.AliasTarget != nil {
		rr.AliasTarget.DNSName = canonicalName(rr.AliasTarget.DNSName)
	}
	if rr.Name != z.name && !strings.HasSuffix(rr.Name, "."+z.name) {
		return fmt.Sprintf("RRSet with DNS name %s is not permitted in zone %s", rr.Name, z.name), nil
	}
	if rr.Type == "CNAME" && rr.Name == z.name {
		return fmt.Sprintf("RRSet of type CNAME with DNS name %s is not permitted at apex in zone %s", rr.Name, z.name), nil
	}
	for _, v := range rr.ResourceRecords {
		switch rr.Type {
		case "A":
			if ip, err := netip.ParseAddr(v.Value); err != nil || !ip.Is4() {
				return "ARRDATAIllegalIPv4Address (Value is not a valid IPv4 address) encountered with '" + v.Value + "'", nil
			}
		case "AAAA":
			if ip, err := netip.ParseAddr(v.Value); err != nil || !ip.Is6() {
				return "AAAARRDATAIllegalIPv6Address (Value is not a valid IPv6 address) encountered with '" + v.Value + "'", nil
			}
		}
	}
	if rr.Type == "CNAME" && len(rr.ResourceRecords) > 1 {
		return fmt.Sprintf("RRSet of type CNAME with DNS name %s has more than one value", rr.Name), nil
	}
	return "", nil
}

func orNull(s string) string {
	if s == "" {
		return "null"
	}
	return s
}

// r53ChangeResourceRecordSets applies a change batch atomically: every
// change succeeds or none is applied.
func (s *Server) r53ChangeResourceRecordSets(_ *http.Request, id string, body []byte) (int, any, error) {
	z := s.r53.zones[id]
	if z == nil {
		return 0, nil, noSuchZone(id)
	}
	var req changeBatchRequest
	if err := xml.Unmarshal(body, &req); err != nil {
		return 0, nil, r53Invalid("Invalid XML: %v", err)
	}
	changes := req.ChangeBatch.Changes
	if len(changes) == 0 {
		return 0, nil, r53Invalid("1 validation error detected: Value null at 'changeBatch.changes' failed to satisfy constraint: Member must not be null")
	}
	if len(changes) > 1000 {
		return 0, nil, r53Invalid("Number of records limit of 1000 exceeded.")
	}
	records := append([]xmlRRSet(nil), z.records...)
	find := func(rr xmlRRSet) int {
		for i, cur := range records {
			if cur.Name == rr.Name && cur.Type == rr.Type && cur.SetIdentifier == rr.SetIdentifier {
				return i
			}
		}
		return -1
	}
	var msgs []string
	for _, c := range changes {
		rr := c.ResourceRecordSet
		msg, err := checkRRSet(z, c.Action, &rr)
		if err != nil {
			return 0, nil, err
		}
		if msg != "" {
			msgs = append(msgs, msg)
			continue
		}
		desc := fmt.Sprintf("resource record set [name='%s', type='%s'", rr.Name, rr.Type)
		if rr.SetIdentifier != "" {
			desc += fmt.Sprintf(", set-identifier='%s'", rr.SetIdentifier)
		}
		desc += "]"
		i := find(rr)
		apex := rr.Name == z.name
		switch c.Action {
		case "CREATE":
			if i >= 0 {
				msgs = append(msgs, "Tried to create "+desc+" but it already exists")
				continue
			}
			records = append(records, rr)
		case "UPSERT":
			if i >= 0 {
				records[i] = rr
			} else {
				records = append(records, rr)
			}
		case "DELETE":
			switch {
			case apex && rr.Type == "SOA":
				msgs = append(msgs, "A HostedZone must contain exactly one SOA record.")
			case apex && rr.Type == "NS":
				msgs = append(msgs, "A HostedZone must contain at least one NS record for the zone itself.")
			case i < 0:
				msgs = append(msgs, "Tried to delete "+desc+" but it was not found")
			case !sameRRSet(records[i], rr):
				msgs = append(msgs, "Tried to delete "+desc+" but the values provided do not match the current values")
			default:
				records = append(records[:i], records[i+1:]...)
			}
		default:
			return 0, nil, r53Invalid("Invalid XML ; cvc-enumeration-valid: Value '%s' is not facet-valid with respect to enumeration '[CREATE, DELETE, UPSERT]'.", c.Action)
		}
	}
	// A CNAME may not share its name with any other record set.
	types := map[string][]string{}
	for _, r := range records {
		types[r.Name] = append(types[r.Name], r.Type)
	}
	for _, name := range sortedKeys(types) {
		ts := types[name]
		hasCNAME := false
		for _, t := range ts {
			hasCNAME = hasCNAME || t == "CNAME"
		}
		if !hasCNAME {
			continue
		}
		for _, t := range ts {
			if t != "CNAME" {
				msgs = append(msgs, fmt.Sprintf("RRSet of type CNAME with DNS name %s is not permitted because a conflicting RRSet of type %s with the same DNS name already exists in zone %s", name, t, z.name))
				break
			}
		}
	}
	if len(msgs) > 0 {
		return 0, nil, r53Err(http.StatusBadRequest, "InvalidChangeBatch", "[%s]", strings.Join(msgs, ", "))
	}
	sort.SliceStable(records, func(i, j int) bool {
		return keyLess(rrsetKey(records[i].Name, records[i].Type, records[i].SetIdentifier),
			rrsetKey(records[j].Name, records[j].Type, records[j].SetIdentifier))
	})
	z.records = records
	c := s.newChange(req.ChangeBatch.Comment)
	return http.StatusOK, changeInfoDoc("ChangeResourceRecordSetsResponse", s.changeXML(c, false)), nil
}

type listRRSetsResponse struct {
	XMLName              xml.Name   `xml:"https://route53.amazonaws.com/doc/2013-04-01/ ListResourceRecordSetsResponse"`
	ResourceRecordSets   []xmlRRSet `xml:"ResourceRecordSets>ResourceRecordSet"`
	IsTruncated          bool       `xml:"IsTruncated"`
	NextRecordName       string     `xml:"NextRecordName,omitempty"`
	NextRecordType       string     `xml:"NextRecordType,omitempty"`
	NextRecordIdentifier string     `xml:"NextRecordIdentifier,omitempty"`
	MaxItems             string     `xml:"MaxItems"`
}

func (s *Server) r53ListResourceRecordSets(r *http.Request, id string, _ []byte) (int, any, error) {
	z := s.r53.zones[id]
	if z == nil {
		return 0, nil, noSuchZone(id)
	}
	limit, err := maxItems(r, 300, 300)
	if err != nil {
		return 0, nil, err
	}
	q := r.URL.Query()
	name, typ, ident := q.Get("name"), q.Get("type"), q.Get("identifier")
	if typ != "" && name == "" {
		return 0, nil, r53Invalid("The input is not valid: Type is specified but Name is not.")
	}
	if typ != "" && !rrTypes[typ] {
		return 0, nil, r53Invalid("Invalid type: %s", typ)
	}
	if ident != "" && typ == "" {
		return 0, nil, r53Invalid("The input is not valid: Identifier is specified but Type is not.")
	}
	var start [3]string
	if name != "" {
		start = rrsetKey(canonicalName(name), typ, ident)
	}
	resp := &listRRSetsResponse{MaxItems: strconv.Itoa(limit), ResourceRecordSets: []xmlRRSet{}}
	for _, rr := range z.records {
		if keyLess(rrsetKey(rr.Name, rr.Type, rr.SetIdentifier), start) {
			continue
		}
		if len(resp.ResourceRecordSets) == limit {
			resp.IsTruncated = true
			resp.NextRecordName, resp.NextRecordType, resp.NextRecordIdentifier = rr.Name, rr.Type, rr.SetIdentifier
			break
		}
		resp.ResourceRecordSets = append(resp.ResourceRecordSets, rr)
	}
	return http.StatusOK, resp, nil
}

func (s *Server) r53GetChange(_ *http.Request, id string, _ []byte) (int, any, error) {
	c := s.r53.changes[id]
	if c == nil {
		return 0, nil, r53Err(http.StatusNotFound, "NoSuchChange", "A change with the specified change ID does not exist.")
	}
	return http.StatusOK, changeInfoDoc("GetChangeResponse", s.changeXML(c, true)), nil
}
