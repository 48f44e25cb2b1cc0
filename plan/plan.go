// Package plan reads and validates DR plan files (YAML): the VMs a plan
// protects, how often they are replicated, and how each one fails over —
// its DR copy, instance type, network, boot scripts, health checks, the VMs
// it depends on and the DNS records that point at it — plus the isolated
// network a drill uses.
//
// Errors name the file, the line and the field, and say how to fix them:
//
//	plan.yaml:14: vms[2].dependsOn: unknown VM "dbb" (the plan's VMs are db, app, web)
package plan

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/opendraas/draas"
)

// Plan is a DR plan: the whole plan file, which failover and failback
// take. Replication needs only a part of it, the vocabulary's draas.Plan,
// which [Plan.ReplicationPlan] returns for replicate.New.
type Plan struct {
	// Name identifies the plan; DR copies and failover resources are tagged
	// with it.
	Name string `yaml:"name"`
	// RTO is the recovery time objective failover and drill reports are
	// judged against; 0 means none.
	RTO         Duration    `yaml:"rto"`
	Replication Replication `yaml:"replication"`
	AWS         AWS         `yaml:"aws"`
	// Defaults apply to every VM that does not set the field itself.
	Defaults Defaults `yaml:"defaults"`
	DNS      DNS      `yaml:"dns"`
	VMs      []VM     `yaml:"vms"`
	Drill    Drill    `yaml:"drill"`

	file string
	root *yaml.Node
}

// Replication says how often VMs are replicated and how many DR copies to
// keep.
type Replication struct {
	Interval Duration `yaml:"interval"`
	// Keep is the number of DR copies kept per VM; 0 means 1.
	Keep int `yaml:"keep"`
	// RPO is the target for status reports; 0 means twice Interval.
	RPO Duration `yaml:"rpo"`
}

// AWS is where the plan fails over to.
type AWS struct {
	Region string `yaml:"region"`
	// AvailabilityZone of the subnets instances launch in; volumes are made
	// there.
	AvailabilityZone string `yaml:"availabilityZone"`
	// ImageID is the image instances boot from before their root volume is
	// swapped for the DR copy.
	ImageID string `yaml:"imageId"`
}

// Defaults are VM settings shared by every VM.
type Defaults struct {
	InstanceType   string   `yaml:"instanceType"`
	Subnet         string   `yaml:"subnet"`
	SecurityGroups []string `yaml:"securityGroups"`
	// HealthTimeout bounds the wait for a VM to become healthy; default 15m.
	HealthTimeout Duration `yaml:"healthTimeout"`
}

// DNS is the production DNS zone records point into: the plan's settings,
// not the draas.DNS provider interface that changes records.
type DNS struct {
	// Zone is a hosted zone name ("example.com.") or ID.
	Zone string `yaml:"zone"`
	// TTL of the records; default 60s.
	TTL Duration `yaml:"ttl"`
}

// VM is one protected VM and how it fails over. (draas.VM, its twin in the
// vocabulary, is the VM's name and disks as replication and backups know
// them; [Plan.ReplicationPlan] turns one into the other.)
type VM struct {
	Name string `yaml:"name"`
	// OS is "linux" (default) or "windows": it decides how boot scripts run.
	OS             string   `yaml:"os"`
	InstanceType   string   `yaml:"instanceType"`
	Subnet         string   `yaml:"subnet"`
	SecurityGroups []string `yaml:"securityGroups"`
	// PrivateIP fixes the instance's address in the subnet.
	PrivateIP string `yaml:"privateIP"`
	// DependsOn names the VMs that must be healthy before this one starts.
	DependsOn []string `yaml:"dependsOn"`
	// BootScripts run once at first boot, in order, through user data.
	BootScripts []Script `yaml:"bootScripts"`
	// HealthChecks must all pass before the VM counts as healthy; none
	// means the EC2 status checks.
	HealthChecks []HealthCheck `yaml:"healthChecks"`
	// HealthTimeout overrides Defaults.HealthTimeout.
	HealthTimeout Duration `yaml:"healthTimeout"`
	// DNS lists the records to point at the VM's private IP.
	DNS []Record `yaml:"dns"`
	// Disks optionally lists the VM's disks; by default the DR copy's disks
	// are used.
	Disks []draas.Disk `yaml:"disks"`
	// RecoveryPoint selects the DR copy to fail over to (when the plan keeps
	// several); empty means the newest complete one.
	RecoveryPoint string `yaml:"recoveryPoint"`
}

// Script is a boot script.
type Script struct {
	Name string `yaml:"name"`
	// Run is the script: shell for Linux, PowerShell for Windows.
	Run string `yaml:"run"`
}

// HealthCheck is one check of a VM's health. Exactly one field is set.
type HealthCheck struct {
	// EC2 requires both EC2 status checks to pass.
	EC2 bool `yaml:"ec2"`
	// TCP requires a TCP connection to this port of the instance to open.
	TCP int `yaml:"tcp"`
	// HTTP requires a GET of this URL to answer 2xx (or ExpectStatus);
	// "{ip}" in it is replaced by the instance's private IP.
	HTTP         string `yaml:"http"`
	ExpectStatus int    `yaml:"expectStatus"`
}

// Record is a DNS record pointed at a VM, as the plan file asks for it.
// Failover turns it into a draas.Record (zone, fully qualified name, values)
// for a draas.DNS provider.
type Record struct {
	// Name is the record's name; a name without a final dot is relative to
	// the zone.
	Name string `yaml:"name"`
	// Type is "A" (default, the instance's private IP) or "CNAME" (the
	// instance's private DNS name is not modelled; CNAME needs Target).
	Type   string `yaml:"type"`
	Target string `yaml:"target"`
}

// Drill is where a DR drill runs: an isolated subnet, and optionally a DNS
// zone of its own. A drill never touches the production subnets or zone.
type Drill struct {
	Subnet         string   `yaml:"subnet"`
	SecurityGroups []string `yaml:"securityGroups"`
	// DNSZone receives the drill's records; empty means the drill makes no
	// DNS change at all.
	DNSZone string `yaml:"dnsZone"`
}

// Duration is a time.Duration written as "15m", "1h30m", "60s".
type Duration time.Duration

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration: write it like 15m, 1h or 90s", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Error is a problem in a plan file: its position, the field, and the
// message. It wraps draas.ErrInvalid.
type Error struct {
	File    string
	Line    int
	Field   string
	Message string
}

func (e *Error) Error() string {
	pos := e.File
	if e.Line > 0 {
		pos = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", pos, e.Field, e.Message)
	}
	return fmt.Sprintf("%s: %s", pos, e.Message)
}

// Unwrap returns draas.ErrInvalid.
func (e *Error) Unwrap() error { return draas.ErrInvalid }

// Errors is every problem found in a plan file.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the errors.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Load reads and validates the plan file at path.
func Load(path string) (*Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	return Parse(path, data)
}

var lineRE = regexp.MustCompile(`^yaml: (?:unmarshal errors:\n\s*)?line (\d+): (.*)$`)

// Parse parses and validates a plan; name is used in error messages.
func Parse(name string, data []byte) (*Plan, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(name, err)
	}
	if len(root.Content) == 0 {
		return nil, &Error{File: name, Message: "the file is empty: a plan needs at least a name and vms"}
	}
	p := &Plan{file: name, root: &root}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(p); err != nil {
		return nil, yamlError(name, err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

func yamlError(name string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var es Errors
		for _, msg := range te.Errors {
			es = append(es, lineError(name, msg))
		}
		return es
	}
	return lineError(name, err.Error())
}

func lineError(name, msg string) *Error {
	e := &Error{File: name, Message: strings.TrimPrefix(msg, "yaml: ")}
	defer func() {
		if !strings.Contains(msg, "not found in type") && !strings.Contains(e.Message, "duration") && !strings.Contains(msg, "cannot unmarshal") {
			e.Message += " (YAML syntax)"
		}
	}()
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		fmt.Sscanf(m[1], "%d", &e.Line)
		e.Message = m[2]
	} else if m := regexp.MustCompile(`^line (\d+): (.*)$`).FindStringSubmatch(msg); m != nil {
		fmt.Sscanf(m[1], "%d", &e.Line)
		e.Message = m[2]
	}
	if strings.Contains(e.Message, "not found in type") {
		field := strings.TrimPrefix(strings.Fields(e.Message)[1], "field ")
		e.Message = fmt.Sprintf("unknown field %q: check its spelling against the plan format (docs/plan-format.md)", field)
	}
	return e
}

// line returns the line of the node at path (mapping keys and sequence
// indices), or of the deepest node found on the way.
func (p *Plan) line(path ...any) int {
	if p.root == nil || len(p.root.Content) == 0 {
		return 0
	}
	n := p.root.Content[0]
	line := n.Line
	for _, step := range path {
		switch s := step.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return line
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == s {
					line, n, found = n.Content[i].Line, n.Content[i+1], true
					break
				}
			}
			if !found {
				return line
			}
		case int:
			if n.Kind != yaml.SequenceNode || s >= len(n.Content) {
				return line
			}
			n = n.Content[s]
			line = n.Line
		}
	}
	return line
}

// Validate checks the plan and returns every problem found (as [Errors]).
func (p *Plan) Validate() error {
	v := &validator{p: p}
	v.top()
	names := v.vmNames()
	all := slices.Sorted(maps.Keys(names))
	for i, vm := range p.VMs {
		f := fmt.Sprintf("vms[%d]", i)
		v.vm(f, vm, names, all)
		v.healthChecks(f, vm.HealthChecks)
		v.dns(f, vm)
	}
	if cyc := p.cycle(); cyc != nil {
		i := names[cyc[0]]
		v.add(fmt.Sprintf("vms[%d].dependsOn", i), "dependency cycle %s: remove one of these dependencies", strings.Join(cyc, " → "))
	}
	if len(v.es) > 0 {
		return v.es
	}
	return nil
}

// validator gathers the problems Validate finds, each at its line.
type validator struct {
	p  *Plan
	es Errors
}

func (v *validator) add(field, format string, args ...any) {
	path := fieldPath(field)
	v.es = append(v.es, &Error{File: v.p.file, Line: v.p.line(path...), Field: field, Message: fmt.Sprintf(format, args...)})
}

// top checks the plan's own fields.
func (v *validator) top() {
	p := v.p
	if p.Name == "" {
		v.add("name", "the plan has no name: add `name: my-plan`")
	} else if !nameRE.MatchString(p.Name) {
		v.add("name", "%q has characters that cannot be used in tags and IDs: use letters, digits, '.', '_' and '-'", p.Name)
	}
	if p.Replication.Interval < 0 || p.Replication.Keep < 0 || p.Replication.RPO < 0 {
		v.add("replication", "interval, keep and rpo must not be negative")
	}
	if len(p.VMs) == 0 {
		v.add("vms", "the plan protects no VM: list them under `vms:`")
	}
}

// vmNames checks the VMs' names and returns the index of each valid one.
func (v *validator) vmNames() map[string]int {
	names := map[string]int{}
	for i, vm := range v.p.VMs {
		f := fmt.Sprintf("vms[%d]", i)
		switch {
		case vm.Name == "":
			v.add(f+".name", "the VM has no name")
		case !nameRE.MatchString(vm.Name):
			v.add(f+".name", "%q has characters that cannot be used in tags and IDs: use letters, digits, '.', '_' and '-'", vm.Name)
		default:
			if j, dup := names[vm.Name]; dup {
				v.add(f+".name", "VM %q is listed twice (also vms[%d])", vm.Name, j)
			}
			names[vm.Name] = i
		}
	}
	return names
}

// vm checks the VM at field f: its OS, shape, network, dependencies (on
// the VMs in names; all lists them for the message) and boot scripts.
func (v *validator) vm(f string, vm VM, names map[string]int, all []string) {
	if vm.OS != "" && vm.OS != "linux" && vm.OS != "windows" {
		v.add(f+".os", "%q is not an OS this plan knows: use linux or windows", vm.OS)
	}
	if v.p.InstanceType(vm) == "" {
		v.add(f+".instanceType", "VM %s has no instance type: set it or defaults.instanceType", vm.Name)
	}
	if v.p.Subnet(vm) == "" {
		v.add(f+".subnet", "VM %s has no subnet: set it or defaults.subnet", vm.Name)
	}
	if vm.PrivateIP != "" {
		if a, err := netip.ParseAddr(vm.PrivateIP); err != nil || !a.Is4() {
			v.add(f+".privateIP", "%q is not an IPv4 address", vm.PrivateIP)
		}
	}
	for j, d := range vm.DependsOn {
		switch {
		case d == vm.Name:
			v.add(fmt.Sprintf("%s.dependsOn[%d]", f, j), "VM %s depends on itself", vm.Name)
		case !hasKey(names, d):
			v.add(fmt.Sprintf("%s.dependsOn[%d]", f, j), "unknown VM %q (the plan's VMs are %s)", d, strings.Join(all, ", "))
		}
	}
	for j, s := range vm.BootScripts {
		if strings.TrimSpace(s.Run) == "" {
			v.add(fmt.Sprintf("%s.bootScripts[%d].run", f, j), "the boot script is empty")
		}
	}
}

// healthChecks checks the health checks of the VM at field f.
func (v *validator) healthChecks(f string, checks []HealthCheck) {
	for j, h := range checks {
		hf := fmt.Sprintf("%s.healthChecks[%d]", f, j)
		set := 0
		if h.EC2 {
			set++
		}
		if h.TCP != 0 {
			set++
			if h.TCP < 1 || h.TCP > 65535 {
				v.add(hf+".tcp", "port %d is out of range 1-65535", h.TCP)
			}
		}
		if h.HTTP != "" {
			set++
			if u, err := url.Parse(strings.ReplaceAll(h.HTTP, "{ip}", "192.0.2.1")); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.add(hf+".http", "%q is not an http(s) URL", h.HTTP)
			}
		}
		if set != 1 {
			v.add(hf, "a health check sets exactly one of ec2, tcp or http")
		}
	}
}

// dns checks the DNS records of the VM at field f.
func (v *validator) dns(f string, vm VM) {
	for j, r := range vm.DNS {
		rf := fmt.Sprintf("%s.dns[%d]", f, j)
		if r.Name == "" {
			v.add(rf+".name", "the record has no name")
		}
		switch r.Type {
		case "", "A":
		case "CNAME":
			if r.Target == "" {
				v.add(rf+".target", "a CNAME record needs a target")
			}
		default:
			v.add(rf+".type", "%q: use A or CNAME", r.Type)
		}
		if v.p.DNS.Zone == "" {
			v.add("dns.zone", "VM %s has DNS records but the plan has no zone: set dns.zone", vm.Name)
		}
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func hasKey(m map[string]int, k string) bool { _, ok := m[k]; return ok }

// fieldPath turns "vms[2].dependsOn[0]" into the node path vms, 2,
// dependsOn, 0.
func fieldPath(field string) []any {
	var path []any
	for _, part := range strings.Split(field, ".") {
		name, rest, _ := strings.Cut(part, "[")
		path = append(path, name)
		for rest != "" {
			var idx int
			fmt.Sscanf(rest, "%d", &idx)
			path = append(path, idx)
			_, rest, _ = strings.Cut(rest, "[")
		}
	}
	return path
}

// cycle returns a dependency cycle as VM names, first repeated last, or nil.
func (p *Plan) cycle() []string {
	deps := map[string][]string{}
	for _, vm := range p.VMs {
		deps[vm.Name] = vm.DependsOn
	}
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var found []string
	var visit func(string) bool
	visit = func(n string) bool {
		color[n] = grey
		stack = append(stack, n)
		for _, d := range deps[n] {
			if _, known := deps[d]; !known || d == n {
				continue
			}
			switch color[d] {
			case grey:
				i := slices.Index(stack, d)
				found = append(slices.Clone(stack[i:]), d)
				return true
			case white:
				if visit(d) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		return false
	}
	for _, vm := range p.VMs {
		if color[vm.Name] == white && visit(vm.Name) {
			return found
		}
	}
	return nil
}

// VM returns the VM with the given name.
func (p *Plan) VM(name string) (VM, bool) {
	i := slices.IndexFunc(p.VMs, func(v VM) bool { return v.Name == name })
	if i < 0 {
		return VM{}, false
	}
	return p.VMs[i], true
}

// InstanceType returns vm's instance type, or the default.
func (p *Plan) InstanceType(vm VM) string { return or(vm.InstanceType, p.Defaults.InstanceType) }

// Subnet returns vm's subnet, or the default.
func (p *Plan) Subnet(vm VM) string { return or(vm.Subnet, p.Defaults.Subnet) }

// SecurityGroups returns vm's security groups, or the default ones.
func (p *Plan) SecurityGroups(vm VM) []string {
	if len(vm.SecurityGroups) > 0 {
		return vm.SecurityGroups
	}
	return p.Defaults.SecurityGroups
}

// HealthTimeout returns how long vm may take to become healthy.
func (p *Plan) HealthTimeout(vm VM) time.Duration {
	if vm.HealthTimeout > 0 {
		return time.Duration(vm.HealthTimeout)
	}
	if p.Defaults.HealthTimeout > 0 {
		return time.Duration(p.Defaults.HealthTimeout)
	}
	return 15 * time.Minute
}

// TTL returns the DNS records' TTL.
func (p *Plan) TTL() time.Duration {
	if p.DNS.TTL > 0 {
		return time.Duration(p.DNS.TTL)
	}
	return time.Minute
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// ReplicationPlan returns the part of the plan replication needs, as the
// vocabulary's draas.Plan that replicate.New takes: the name, interval,
// copies to keep, RPO and each VM's name and disks.
func (p *Plan) ReplicationPlan() draas.Plan {
	out := draas.Plan{
		Name:                p.Name,
		ReplicationInterval: time.Duration(p.Replication.Interval),
		KeepCopies:          p.Replication.Keep,
		RPO:                 time.Duration(p.Replication.RPO),
	}
	for _, vm := range p.VMs {
		out.VMs = append(out.VMs, draas.VM{Name: vm.Name, Disks: vm.Disks})
	}
	return out
}

// Order returns the VMs in an order that respects their dependencies
// (dependencies first; otherwise the file's order).
func (p *Plan) Order() []string {
	done := map[string]bool{}
	var out []string
	var visit func(VM)
	visit = func(vm VM) {
		if done[vm.Name] {
			return
		}
		done[vm.Name] = true
		for _, d := range vm.DependsOn {
			if dep, ok := p.VM(d); ok {
				visit(dep)
			}
		}
		out = append(out, vm.Name)
	}
	for _, vm := range p.VMs {
		visit(vm)
	}
	return out
}
