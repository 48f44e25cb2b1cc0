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
	"io"
	"os"
	"path/filepath"
	"reflect"
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

// Load reads and validates the plan file at path. A path that is not a
// plan file (a directory, a file over [MaxFileSize]) is a plan error too,
// wrapping draas.ErrInvalid; a file that does not exist gives an error
// wrapping fs.ErrNotExist.
func Load(path string) (*Plan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, &Error{File: path, Message: "is a directory: name the plan's YAML file (e.g. " + filepath.Join(path, "plan.yaml") + ")"}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("plan: read %s: %w", path, err)
	}
	return Parse(path, data)
}

var lineRE = regexp.MustCompile(`^yaml: (?:unmarshal errors:\n\s*)?line (\d+): (.*)$`)

// Parse parses and validates a plan; name is used in error messages.
func Parse(name string, data []byte) (*Plan, error) {
	if len(data) > MaxFileSize {
		return nil, &Error{File: name, Message: fmt.Sprintf("the file is larger than %d MiB: is it the plan? A plan is a YAML file of a few KiB", MaxFileSize>>20)}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(name, err)
	}
	if len(root.Content) == 0 {
		return nil, &Error{File: name, Message: "the file is empty: a plan needs at least a name and vms"}
	}
	if e := aliasBomb(name, &root); e != nil {
		return nil, Errors{e}
	}
	sh := &shape{file: name}
	sh.check(root.Content[0], reflect.TypeFor[Plan](), "")
	if len(sh.es) > 0 {
		return nil, sh.es.bound()
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
func (p *Plan) line(path ...any) int { l, _ := p.lookup(path...); return l }

// node returns the node at path, or nil.
func (p *Plan) node(path ...any) *yaml.Node { _, n := p.lookup(path...); return n }

// lookup returns the node at path, following aliases and merge keys (<<),
// and its line: that of its key for a mapping's value. When the path is
// not all there, it returns the line of the deepest node found and nil.
func (p *Plan) lookup(path ...any) (int, *yaml.Node) {
	if p.root == nil || len(p.root.Content) == 0 {
		return 0, nil
	}
	n := deref(p.root.Content[0])
	line := n.Line
	for _, step := range path {
		switch s := step.(type) {
		case string:
			k, v := get(n, s, 0)
			if k == nil {
				return line, nil
			}
			line, n = k.Line, deref(v)
		case int:
			if n.Kind != yaml.SequenceNode || s >= len(n.Content) {
				return line, nil
			}
			n = deref(n.Content[s])
			line = n.Line
		}
	}
	return line, n
}

// deref follows aliases.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// get returns the key and value nodes of key in mapping n, looking into
// merged mappings (<<) when n does not set it itself.
func get(n *yaml.Node, key string, depth int) (k, v *yaml.Node) {
	if n.Kind != yaml.MappingNode || depth > 100 {
		return nil, nil
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch {
		case n.Content[i].ShortTag() == "!!merge":
			merges = append(merges, deref(n.Content[i+1]))
		case n.Content[i].Value == key:
			return n.Content[i], n.Content[i+1]
		}
	}
	for _, m := range merges {
		list := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			list = m.Content
		}
		for _, m := range list {
			if k, v := get(deref(m), key, depth+1); k != nil {
				return k, v
			}
		}
	}
	return nil, nil
}

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
