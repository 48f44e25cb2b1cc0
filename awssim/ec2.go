package awssim

import (
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ec2Namespace is the XML namespace of every EC2 response.
const ec2Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

// amazonOwnerID owns the built-in images and their snapshots, the way
// Amazon's account owns public AMIs.
const amazonOwnerID = "137112412989"

// ec2State holds the simulated EC2 resources other than volumes and
// snapshots (which live in Server.vols and Server.snaps). Guarded by
// Server.mu.
type ec2State struct {
	azs        []string
	defaultVPC string // "" once the default VPC is deleted
	vpcs       map[string]*vpc
	subnets    map[string]*subnet
	groups     map[string]*securityGroup
	images     map[string]*image
	instances  map[string]*instance

	// snapTimers tracks snapshots made by CreateSnapshot(s) while they are
	// pending; the EBS direct APIs complete their own snapshots.
	snapTimers map[string]*stateTimer
	// amazonSnaps are the snapshots behind the built-in images: owned by
	// Amazon, not listed as the account's own.
	amazonSnaps map[string]bool
	// tokens maps "Action/ClientToken" to the request it made.
	tokens map[string]idempotentCall

	types                    map[string]instanceType // by name
	linuxImage, windowsImage string
}

// idempotentCall remembers a create call made with a client token: a retry
// with the same token and the same parameters gets the same resource, a
// different request with the same token an IdempotentParameterMismatch.
type idempotentCall struct {
	fingerprint string
	id          string
}

func (st *ec2State) init(s *Server) {
	st.vpcs = map[string]*vpc{}
	st.subnets = map[string]*subnet{}
	st.groups = map[string]*securityGroup{}
	st.images = map[string]*image{}
	st.instances = map[string]*instance{}
	st.snapTimers = map[string]*stateTimer{}
	st.amazonSnaps = map[string]bool{}
	st.tokens = map[string]idempotentCall{}
	st.types = instanceTypeTable()
	for _, z := range []string{"a", "b", "c"} {
		st.azs = append(st.azs, s.opts.Region+z)
	}

	// The default VPC: 172.31.0.0/16 with a default /20 subnet per zone.
	v, err := s.createVPC("172.31.0.0/16", nil)
	if err != nil {
		panic(err) // a constant that parses
	}
	v.isDefault = true
	st.defaultVPC = v.id
	for i, az := range st.azs {
		sn, err := s.createSubnet(v.id, az, fmt.Sprintf("172.31.%d.0/20", 16*i), nil)
		if err != nil {
			panic(err)
		}
		sn.defaultForAz = true
		sn.mapPublicIP = true
	}

	st.linuxImage = s.addBuiltinImage("awssim-linux-x86_64", "/dev/xvda", "", "awssim Linux boot disk\n")
	st.windowsImage = s.addBuiltinImage("awssim-windows-x86_64", "/dev/sda1", "windows", "awssim Windows boot disk\n")
}

// ec2Error is an EC2 API error: an HTTP status and an AWS error code.
type ec2Error struct {
	status int
	code   string
	msg    string
}

func (e *ec2Error) Error() string { return e.code + ": " + e.msg }

// ec2Err returns a client error (HTTP 400) with the given code.
func ec2Err(code, format string, a ...any) *ec2Error {
	return &ec2Error{status: http.StatusBadRequest, code: code, msg: fmt.Sprintf(format, a...)}
}

// ec2Body is a response body; embedding ec2Meta implements it.
type ec2Body interface{ setRequestID(string) }

type ec2Meta struct {
	RequestID string `xml:"requestId"`
}

func (m *ec2Meta) setRequestID(id string) { m.RequestID = id }

// returnBody is the answer of actions that return only <return>true</return>.
type returnBody struct {
	ec2Meta
	Return bool `xml:"return"`
}

func okBody() ec2Body { return &returnBody{Return: true} }

// emptyBody is the answer of actions whose response has no members.
type emptyBody struct{ ec2Meta }

// ec2Handler answers one EC2 action. Called with s.mu held.
type ec2Handler func(p ec2Params) (ec2Body, error)

// ec2Action returns the handler of an action, or nil for an action the
// simulator does not implement.
func (s *Server) ec2Action(action string) ec2Handler {
	switch action {
	// Volumes, snapshots, tags: ec2_volumes.go.
	case "CreateVolume":
		return s.ec2CreateVolume
	case "DescribeVolumes":
		return s.ec2DescribeVolumes
	case "AttachVolume":
		return s.ec2AttachVolume
	case "DetachVolume":
		return s.ec2DetachVolume
	case "DeleteVolume":
		return s.ec2DeleteVolume
	case "CreateSnapshot":
		return s.ec2CreateSnapshot
	case "CreateSnapshots":
		return s.ec2CreateSnapshots
	case "DescribeSnapshots":
		return s.ec2DescribeSnapshots
	case "DeleteSnapshot":
		return s.ec2DeleteSnapshot
	case "CreateTags":
		return s.ec2CreateTags
	case "DeleteTags":
		return s.ec2DeleteTags
	case "DescribeTags":
		return s.ec2DescribeTags
	// Instances, types, images: ec2_instances.go, ec2_types.go.
	case "RunInstances":
		return s.ec2RunInstances
	case "DescribeInstances":
		return s.ec2DescribeInstances
	case "StartInstances":
		return s.ec2StartInstances
	case "StopInstances":
		return s.ec2StopInstances
	case "TerminateInstances":
		return s.ec2TerminateInstances
	case "GetConsoleOutput":
		return s.ec2GetConsoleOutput
	case "DescribeInstanceStatus":
		return s.ec2DescribeInstanceStatus
	case "ModifyInstanceAttribute":
		return s.ec2ModifyInstanceAttribute
	case "DescribeInstanceAttribute":
		return s.ec2DescribeInstanceAttribute
	case "DescribeInstanceTypes":
		return s.ec2DescribeInstanceTypes
	case "DescribeImages":
		return s.ec2DescribeImages
	case "RegisterImage":
		return s.ec2RegisterImage
	case "DeregisterImage":
		return s.ec2DeregisterImage
	// Networks: ec2_network.go.
	case "DescribeAvailabilityZones":
		return s.ec2DescribeAvailabilityZones
	case "CreateVpc":
		return s.ec2CreateVpc
	case "DescribeVpcs":
		return s.ec2DescribeVpcs
	case "DeleteVpc":
		return s.ec2DeleteVpc
	case "CreateSubnet":
		return s.ec2CreateSubnet
	case "DescribeSubnets":
		return s.ec2DescribeSubnets
	case "DeleteSubnet":
		return s.ec2DeleteSubnet
	case "CreateSecurityGroup":
		return s.ec2CreateSecurityGroup
	case "DescribeSecurityGroups":
		return s.ec2DescribeSecurityGroups
	case "DeleteSecurityGroup":
		return s.ec2DeleteSecurityGroup
	}
	return nil
}

// serveEC2 answers an EC2 query-protocol request: a form with Action and
// Version, answered with an XML document in the EC2 namespace, or an
// <Response><Errors> document on failure.
func (s *Server) serveEC2(w http.ResponseWriter, r *http.Request) {
	reqID := newRequestID()
	if err := r.ParseForm(); err != nil {
		writeEC2Error(w, reqID, ec2Err("MalformedQueryString", "%v", err))
		return
	}
	action := r.Form.Get("Action")
	if action == "" {
		writeEC2Error(w, reqID, ec2Err("MissingAction", "The request must contain the parameter Action"))
		return
	}
	h := s.ec2Action(action)
	if h == nil {
		writeEC2Error(w, reqID, ec2Err("InvalidAction", "The action %s is not valid for this web service.", action))
		return
	}
	switch s.fault(action) {
	case faultThrottle:
		writeEC2Error(w, reqID, &ec2Error{http.StatusServiceUnavailable, "RequestLimitExceeded", "Request limit exceeded."})
		return
	case faultInternal:
		writeEC2Error(w, reqID, &ec2Error{http.StatusInternalServerError, "InternalError", "An internal error has occurred"})
		return
	}
	p := ec2Params{r.Form}
	if dry, _, _ := p.boolean("DryRun"); dry {
		writeEC2Error(w, reqID, &ec2Error{http.StatusPreconditionFailed, "DryRunOperation", "Request would have succeeded, but DryRun flag is set."})
		return
	}
	s.mu.Lock()
	body, err := h(p)
	s.mu.Unlock()
	if err != nil {
		writeEC2Error(w, reqID, err)
		return
	}
	body.setRequestID(reqID)
	out, err := xml.Marshal(ec2Envelope{action: action, body: body})
	if err != nil {
		writeEC2Error(w, reqID, &ec2Error{http.StatusInternalServerError, "InternalError", err.Error()})
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("x-amzn-RequestId", reqID)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(out)
}

// ec2Envelope marshals a body as <ActionResponse xmlns="…">.
type ec2Envelope struct {
	action string
	body   ec2Body
}

func (e ec2Envelope) MarshalXML(enc *xml.Encoder, _ xml.StartElement) error {
	return enc.EncodeElement(e.body, xml.StartElement{
		Name: xml.Name{Local: e.action + "Response"},
		Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: ec2Namespace}},
	})
}

func writeEC2Error(w http.ResponseWriter, reqID string, err error) {
	e, ok := err.(*ec2Error)
	if !ok {
		e = &ec2Error{http.StatusInternalServerError, "InternalError", err.Error()}
	}
	type xmlErr struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	doc := struct {
		XMLName   xml.Name `xml:"Response"`
		Errors    []xmlErr `xml:"Errors>Error"`
		RequestID string   `xml:"RequestID"`
	}{Errors: []xmlErr{{e.code, e.msg}}, RequestID: reqID}
	out, _ := xml.Marshal(doc)
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("x-amzn-RequestId", reqID)
	w.WriteHeader(e.status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(out)
}

// newRequestID returns a random UUID-shaped request ID.
func newRequestID() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rand.UintN(256))
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// ec2Time formats t the way EC2 does.
func ec2Time(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// ec2Params reads the parameters of a query-protocol request. Lists are
// flattened with 1-based indexes: Name.1, Name.2, Filter.1.Value.1.
type ec2Params struct{ v url.Values }

func (p ec2Params) str(k string) string { return p.v.Get(k) }

func (p ec2Params) has(k string) bool { _, ok := p.v[k]; return ok }

func (p ec2Params) required(k string) (string, error) {
	v := p.v.Get(k)
	if v == "" {
		return "", ec2Err("MissingParameter", "The request must contain the parameter %s", k)
	}
	return v, nil
}

// integer returns parameter k, or def when it is absent.
func (p ec2Params) integer(k string, def int64) (int64, error) {
	v := p.v.Get(k)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, ec2Err("InvalidParameterValue", "Value (%s) for parameter %s is invalid. Expected an integer.", v, k)
	}
	return n, nil
}

// boolean returns parameter k and whether it was given.
func (p ec2Params) boolean(k string) (val, set bool, err error) {
	v := p.v.Get(k)
	if v == "" {
		return false, false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, true, ec2Err("InvalidParameterValue", "Value (%s) for parameter %s is invalid. Expected a boolean.", v, k)
	}
	return b, true, nil
}

// members returns the prefixes "prefix.N" of the members of list prefix, in
// index order.
func (p ec2Params) members(prefix string) []string {
	seen := map[int]bool{}
	for k := range p.v {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok {
			continue
		}
		idx, _, _ := strings.Cut(rest, ".")
		if n, err := strconv.Atoi(idx); err == nil {
			seen[n] = true
		}
	}
	idx := make([]int, 0, len(seen))
	for n := range seen {
		idx = append(idx, n)
	}
	sort.Ints(idx)
	out := make([]string, len(idx))
	for i, n := range idx {
		out[i] = prefix + "." + strconv.Itoa(n)
	}
	return out
}

// list returns the values of the scalar list prefix.
func (p ec2Params) list(prefix string) []string {
	var out []string
	for _, m := range p.members(prefix) {
		out = append(out, p.v.Get(m))
	}
	return out
}

// tagList reads a list of Key/Value members (Tag.N.Key, Tag.N.Value).
func (p ec2Params) tagList(prefix string) (map[string]string, error) {
	tags := map[string]string{}
	for _, m := range p.members(prefix) {
		k := p.v.Get(m + ".Key")
		if k == "" {
			return nil, ec2Err("InvalidParameterValue", "Tag key must not be empty")
		}
		if strings.HasPrefix(strings.ToLower(k), "aws:") {
			return nil, ec2Err("InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use")
		}
		tags[k] = p.v.Get(m + ".Value")
	}
	if len(tags) > maxTags {
		return nil, ec2Err("TagLimitExceeded", "The maximum number of Tags for a resource has been reached.")
	}
	return tags, nil
}

// maxTags is the number of tags a resource may carry.
const maxTags = 50

// tagSpecs reads TagSpecification.N: tags per resource type. Types not in
// allowed are refused the way EC2 refuses them.
func (p ec2Params) tagSpecs(allowed ...string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, m := range p.members("TagSpecification") {
		rt := p.v.Get(m + ".ResourceType")
		ok := false
		for _, a := range allowed {
			ok = ok || a == rt
		}
		if !ok {
			return nil, ec2Err("InvalidParameterValue", "'%s' is not a valid taggable resource type for this operation.", rt)
		}
		tags, err := p.tagList(m + ".Tag")
		if err != nil {
			return nil, err
		}
		if out[rt] == nil {
			out[rt] = map[string]string{}
		}
		for k, v := range tags {
			out[rt][k] = v
		}
	}
	return out, nil
}

// fingerprint identifies a request's parameters other than its client
// token, for idempotency checks.
func (p ec2Params) fingerprint() string {
	v := url.Values{}
	for k, vals := range p.v {
		if k != "ClientToken" && k != "Version" {
			v[k] = vals
		}
	}
	return v.Encode()
}

// idempotent looks up a client token: it returns the ID the earlier call
// made, "" for a new token, or an error when the token was used with other
// parameters.
func (s *Server) idempotent(action string, p ec2Params) (string, error) {
	tok := p.str("ClientToken")
	if tok == "" {
		return "", nil
	}
	c, ok := s.ec2.tokens[action+"/"+tok]
	if !ok {
		return "", nil
	}
	if c.fingerprint != p.fingerprint() {
		return "", ec2Err("IdempotentParameterMismatch", "Client token '%s' was already used with a different request.", tok)
	}
	return c.id, nil
}

func (s *Server) rememberToken(action string, p ec2Params, id string) {
	if tok := p.str("ClientToken"); tok != "" {
		s.ec2.tokens[action+"/"+tok] = idempotentCall{fingerprint: p.fingerprint(), id: id}
	}
}

// xmlTag is a <tagSet><item>.
type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func xmlTags(m map[string]string) []xmlTag {
	out := make([]xmlTag, 0, len(m))
	for k, v := range m {
		out = append(out, xmlTag{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func copyTags(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ec2Filter is one Filter.N of a Describe call: the resource matches when
// any value matches (values may hold * and ? wildcards); all filters must
// match.
type ec2Filter struct {
	name   string
	values []string
}

func (p ec2Params) filters() []ec2Filter {
	var out []ec2Filter
	for _, m := range p.members("Filter") {
		out = append(out, ec2Filter{name: p.v.Get(m + ".Name"), values: p.list(m + ".Value")})
	}
	return out
}

// filterDefs maps a filter name to the values a resource has for it.
// tag:KEY, tag-key and tag-value are handled for every resource type.
type filterDefs[T any] map[string]func(T) []string

// applyFilters keeps the items matching every filter. An unknown filter
// name is an InvalidParameterValue, as in EC2.
func applyFilters[T any](items []T, fs []ec2Filter, defs filterDefs[T], tags func(T) map[string]string) ([]T, error) {
	for _, f := range fs {
		if _, ok := defs[f.name]; ok {
			continue
		}
		if tags != nil && (strings.HasPrefix(f.name, "tag:") || f.name == "tag-key" || f.name == "tag-value") {
			continue
		}
		return nil, ec2Err("InvalidParameterValue", "The filter '%s' is invalid", f.name)
	}
	var out []T
	for _, it := range items {
		ok := true
		for _, f := range fs {
			var have []string
			switch {
			case defs[f.name] != nil:
				have = defs[f.name](it)
			case strings.HasPrefix(f.name, "tag:"):
				if v, present := tags(it)[strings.TrimPrefix(f.name, "tag:")]; present {
					have = []string{v}
				}
			case f.name == "tag-key":
				for k := range tags(it) {
					have = append(have, k)
				}
			case f.name == "tag-value":
				for _, v := range tags(it) {
					have = append(have, v)
				}
			}
			if !anyMatch(f.values, have) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, it)
		}
	}
	return out, nil
}

func anyMatch(patterns, have []string) bool {
	for _, p := range patterns {
		for _, h := range have {
			if wildcardMatch(p, h) {
				return true
			}
		}
	}
	return false
}

// wildcardMatch matches s against pattern, where * matches any run of
// characters and ? any one character, as EC2 filters do.
func wildcardMatch(pattern, s string) bool {
	p, str := []rune(pattern), []rune(s)
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(str) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == str[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// paginate returns the page of items (sorted by id) that MaxResults and
// NextToken select, and the token for the next page ("" on the last).
// MaxResults below min is refused, above max clamped, as EC2 does.
func paginate[T any](items []T, id func(T) string, p ec2Params, min, max int64) ([]T, string, error) {
	start := 0
	if tok := p.str("NextToken"); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			return nil, "", ec2Err("InvalidPaginationToken", "Invalid pagination token: %s", tok)
		}
		after := string(raw)
		start = sort.Search(len(items), func(i int) bool { return id(items[i]) > after })
	}
	n, err := p.integer("MaxResults", 0)
	if err != nil {
		return nil, "", err
	}
	if !p.has("MaxResults") {
		return items[start:], "", nil
	}
	if n < min {
		return nil, "", ec2Err("InvalidParameterValue", "Value ( %d ) for parameter maxResults is invalid. Expecting a value greater than %d.", n, min-1)
	}
	if n > max {
		n = max
	}
	end := start + int(n)
	if end >= len(items) {
		return items[start:], "", nil
	}
	return items[start:end], base64.RawURLEncoding.EncodeToString([]byte(id(items[end-1]))), nil
}

// stateTimer tracks a resource in a transitional state (creating, pending,
// attaching, stopping…). The transition completes TransitionDelay after it
// began or, when the delay is zero, on the first look after a Describe has
// shown the transitional state, so a waiter sees every state at least once.
type stateTimer struct {
	since time.Time
	seen  bool
}

func (s *Server) startTimer(t *stateTimer) { *t = stateTimer{since: s.now()} }

// settled reports whether the transition t times is over. observe says the
// caller is about to show the transitional state to a client.
func (s *Server) settled(t *stateTimer, observe bool) bool {
	if d := s.opts.TransitionDelay; d > 0 {
		return s.now().Sub(t.since) >= d
	}
	if t.seen {
		return true
	}
	if observe {
		t.seen = true
	}
	return false
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkID refuses an ID that does not have the resource's prefix, the way
// EC2 refuses malformed IDs.
func checkID(id, prefix, code string) error {
	if !strings.HasPrefix(id, prefix+"-") {
		return ec2Err(code, "Invalid id: \"%s\" (expecting \"%s-...\")", id, prefix)
	}
	return nil
}
