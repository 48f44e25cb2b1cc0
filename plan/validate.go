package plan

import (
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Validate checks the plan and returns every problem found (as [Errors],
// at most 20 of them and a count of the rest). It checks everything a
// failover reads from the plan, as far as it can without asking AWS, so
// that a drill, not a disaster, is where a plan is found wrong.
func (p *Plan) Validate() error {
	v := &validator{p: p}
	v.top()
	v.aws()
	v.defaults()
	v.zone()
	names := v.vmNames()
	all := slices.Sorted(maps.Keys(names))
	for i, vm := range p.VMs {
		f := fmt.Sprintf("vms[%d]", i)
		v.vm(f, vm, names, all)
		v.checkUserData(f, vm)
		v.disks(f, vm)
		v.healthChecks(f, vm.HealthChecks)
		v.dns(f, vm)
	}
	v.drill()
	if cyc := p.cycle(); cyc != nil {
		i := names[cyc[0]]
		v.add(fmt.Sprintf("vms[%d].dependsOn", i), "dependency cycle %s: remove one of these dependencies", strings.Join(cyc, " → "))
	}
	if len(v.es) > 0 {
		return v.es.bound()
	}
	return nil
}

// validator gathers the problems Validate finds, each at its line.
type validator struct {
	p  *Plan
	es Errors
	// ips and records map a private address and a record's name and type
	// to the field that first uses them.
	ips     map[string]string
	records map[string]string
	// zoneReported is set once the missing dns.zone is reported.
	zoneReported bool
}

func (v *validator) add(field, format string, args ...any) {
	path := fieldPath(field)
	v.es = append(v.es, &Error{File: v.p.file, Line: v.p.line(path...), Field: field, Message: fmt.Sprintf(format, args...)})
}

const maxNameLen = 128

// nameProblem says what is wrong with the name of a plan, a VM, a disk or
// a recovery point (what), or "" if nothing is. Names go into tags,
// client tokens and object keys of the backup store: 1-128 letters,
// digits, '.', '_' or '-', starting with a letter or a digit.
func nameProblem(what, name string) string {
	const rule = "use letters, digits, '.', '_' and '-'"
	switch {
	case name == "":
		return fmt.Sprintf("the %s has no name", what)
	case len(name) > maxNameLen:
		return fmt.Sprintf("%q is %d characters long: a %s name has at most %d", short(name), utf8.RuneCountInString(name), what, maxNameLen)
	case !isAlnum(rune(name[0])):
		r, _ := utf8.DecodeRuneInString(name)
		return fmt.Sprintf("%q starts with %q: start with a letter or a digit", name, r)
	}
	for i, r := range name {
		if !isAlnum(r) && r != '.' && r != '_' && r != '-' {
			return fmt.Sprintf("%q has %q at position %d, which cannot be used in tags, client tokens and object keys: %s", name, r, utf8.RuneCountInString(name[:i])+1, rule)
		}
	}
	return ""
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// short abbreviates a long value for a message.
func short(s string) string {
	if len(s) <= 40 {
		return s
	}
	return s[:37] + "..."
}

// top checks the plan's own fields.
func (v *validator) top() {
	p := v.p
	if p.Name == "" {
		v.add("name", "the plan has no name: add `name: my-plan`")
	} else if msg := nameProblem("plan", p.Name); msg != "" {
		v.add("name", "%s", msg)
	}
	v.notNegative("rto", p.RTO, "leave it out for no RTO target")
	v.notNegative("replication.interval", p.Replication.Interval, "it is how often each VM is replicated")
	v.notNegative("replication.rpo", p.Replication.RPO, "leave it out for twice the interval")
	if r := p.Replication; r.RPO > 0 && r.RPO < r.Interval {
		v.add("replication.rpo", "%s is shorter than the interval (%s): every VM's copy would be over its RPO before the next one starts; make rpo at least the interval, or leave it out for twice the interval", time.Duration(r.RPO), time.Duration(r.Interval))
	}
	if p.Replication.Keep < 0 {
		v.add("replication.keep", "%d copies: keep at least 1 (0 means 1)", p.Replication.Keep)
	}
	if len(p.VMs) == 0 {
		v.add("vms", "the plan protects no VM: list them under `vms:`")
	}
}

func (v *validator) notNegative(field string, d Duration, why string) {
	if d < 0 {
		v.add(field, "%s is negative: write a positive duration (%s)", time.Duration(d), why)
	}
}

var (
	regionRE       = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	zoneRE         = regexp.MustCompile(`^[a-z]{2}(-[a-z0-9]+)+[a-z]$`)
	imageRE        = regexp.MustCompile(`^ami-[0-9a-f]{8,17}$`)
	instanceTypeRE = regexp.MustCompile(`^[a-z][a-z0-9-]*\.[a-z0-9-]+$`)
	hostedZoneRE   = regexp.MustCompile(`^Z[A-Z0-9]{1,31}$`)
)

// aws checks the aws section.
func (v *validator) aws() {
	a := v.p.AWS
	if a.Region != "" && !regionRE.MatchString(a.Region) {
		v.add("aws.region", "%q is not an AWS region: write its code, like us-east-1 or eu-west-2", a.Region)
	}
	if a.AvailabilityZone != "" {
		switch {
		case !zoneRE.MatchString(a.AvailabilityZone):
			v.add("aws.availabilityZone", "%q is not an availability zone: write its name, like us-east-1a", a.AvailabilityZone)
		case a.Region != "" && !strings.HasPrefix(a.AvailabilityZone, a.Region):
			v.add("aws.availabilityZone", "%s is not in region %s: name a zone of the region, like %sa", a.AvailabilityZone, a.Region, a.Region)
		}
	}
	if a.ImageID != "" && !imageRE.MatchString(a.ImageID) {
		v.add("aws.imageId", "%q is not an AMI ID: write it like ami-0a1b2c3d4e5f60718", a.ImageID)
	}
}

// defaults checks the defaults section.
func (v *validator) defaults() {
	d := v.p.Defaults
	v.instanceType("defaults.instanceType", d.InstanceType)
	v.ref("defaults.subnet", "subnet", d.Subnet)
	v.groups("defaults.securityGroups", d.SecurityGroups)
	v.notNegative("defaults.healthTimeout", d.HealthTimeout, "leave it out for 15m")
}

func (v *validator) instanceType(field, t string) {
	if t != "" && !instanceTypeRE.MatchString(t) {
		v.add(field, "%q is not an EC2 instance type: write it like m5.large", t)
	}
}

// ref checks a subnet or security group, given by ID or by Name tag.
func (v *validator) ref(field, what, ref string) {
	switch {
	case ref == "":
	case len(ref) > 256:
		v.add(field, "%q is %d characters long: a %s ID or Name tag has at most 256", short(ref), len(ref), what)
	case strings.TrimSpace(ref) != ref || strings.ContainsFunc(ref, func(r rune) bool { return r < ' ' || r == 0x7f }):
		v.add(field, "%q has blanks at its ends or control characters: write the %s's ID or Name tag exactly", ref, what)
	}
}

func (v *validator) groups(field string, groups []string) {
	seen := map[string]bool{}
	for i, g := range groups {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case g == "":
			v.add(f, "the security group is empty: write its ID or Name tag, or remove the entry")
		case seen[g]:
			v.add(f, "%q is listed twice: remove one", g)
		default:
			v.ref(f, "security group", g)
		}
		seen[g] = true
	}
}

// zone checks the dns section.
func (v *validator) zone() {
	d := v.p.DNS
	if d.Zone != "" && !hostedZoneRE.MatchString(d.Zone) {
		if msg := dnsNameProblem(d.Zone); msg != "" {
			v.add("dns.zone", "%q is neither a zone name (example.com.) nor a hosted zone ID: %s", d.Zone, msg)
		}
	}
	ttl := time.Duration(d.TTL)
	switch {
	case ttl == 0:
	case ttl < time.Second || ttl%time.Second != 0:
		v.add("dns.ttl", "%s: a TTL is in whole seconds, at least 1s", ttl)
	case ttl > (1<<31-1)*time.Second:
		v.add("dns.ttl", "%s is longer than DNS allows (2147483647s); a DR record wants a short TTL, like 60s", ttl)
	}
}

// dnsNameProblem says what is wrong with a DNS name (relative or ending in
// a dot), or "" if nothing is.
func dnsNameProblem(name string) string {
	n := strings.TrimSuffix(name, ".")
	if n == "" {
		return "the name is empty"
	}
	if len(n) > 253 {
		return fmt.Sprintf("it is %d characters long, DNS allows 253", len(n))
	}
	for i, label := range strings.Split(n, ".") {
		switch {
		case label == "":
			return "it has an empty label (two dots in a row)"
		case len(label) > 63:
			return fmt.Sprintf("label %q is longer than 63 characters", short(label))
		case label == "*" && i == 0:
			continue
		}
		for _, r := range label {
			if !isAlnum(r) && r != '-' && r != '_' {
				return fmt.Sprintf("%q cannot be part of a DNS name: use letters, digits, '-' and '.'", r)
			}
		}
	}
	return ""
}

// vmNames checks the VMs' names and returns the index of each valid one.
func (v *validator) vmNames() map[string]int {
	names := map[string]int{}
	for i, vm := range v.p.VMs {
		f := fmt.Sprintf("vms[%d]", i)
		if msg := nameProblem("VM", vm.Name); msg != "" {
			v.add(f+".name", "%s", msg)
			continue
		}
		if j, dup := names[vm.Name]; dup {
			v.add(f+".name", "VM %q is listed twice (also vms[%d])", vm.Name, j)
			continue
		}
		names[vm.Name] = i
		// Failover names the instance PLAN-VM, and PLAN-VM-drill in a
		// drill, in its Name tag.
		if tag := v.p.Name + "-" + vm.Name + "-drill"; nameProblem("plan", v.p.Name) == "" && utf8.RuneCountInString(tag) > 256 {
			v.add(f+".name", "the instance's Name tag (plan-VM-drill) would be %d characters, EC2 allows 256: shorten the plan's or the VM's name by %d", len(tag), len(tag)-256)
		}
	}
	return names
}

// vm checks the VM at field f: its OS, shape, network, dependencies (on
// the VMs in names; all lists them for the message), boot scripts and
// recovery point.
func (v *validator) vm(f string, vm VM, names map[string]int, all []string) {
	if vm.OS != "" && vm.OS != "linux" && vm.OS != "windows" {
		v.add(f+".os", "%q is not an OS this plan knows: use linux or windows", vm.OS)
	}
	if v.p.InstanceType(vm) == "" {
		v.add(f+".instanceType", "VM %s has no instance type: set it or defaults.instanceType", vm.Name)
	}
	v.instanceType(f+".instanceType", vm.InstanceType)
	if v.p.Subnet(vm) == "" {
		v.add(f+".subnet", "VM %s has no subnet: set it or defaults.subnet", vm.Name)
	}
	v.ref(f+".subnet", "subnet", vm.Subnet)
	v.groups(f+".securityGroups", vm.SecurityGroups)
	v.notNegative(f+".healthTimeout", vm.HealthTimeout, "leave it out for defaults.healthTimeout")
	v.privateIP(f, vm.PrivateIP)
	seen := map[string]int{}
	for j, d := range vm.DependsOn {
		df := fmt.Sprintf("%s.dependsOn[%d]", f, j)
		if k, dup := seen[d]; dup {
			v.add(df, "%q is listed twice (also dependsOn[%d]): remove one", d, k)
			continue
		}
		seen[d] = j
		switch {
		case d == vm.Name:
			v.add(df, "VM %s depends on itself", vm.Name)
		case !hasKey(names, d):
			v.add(df, "unknown VM %q (the plan's VMs are %s)", d, strings.Join(all, ", "))
		}
	}
	for j, s := range vm.BootScripts {
		if strings.TrimSpace(s.Run) == "" {
			v.add(fmt.Sprintf("%s.bootScripts[%d].run", f, j), "the boot script is empty")
		}
	}
	if vm.RecoveryPoint != "" {
		if msg := storeNameProblem(vm.RecoveryPoint); msg != "" {
			v.add(f+".recoveryPoint", "%q is not a recovery point ID: %s; copy the point ID from `draasctl status` or the backup report, like 20261126T061000.000Z-5f3a9c0e", short(vm.RecoveryPoint), msg)
		}
	}
}

// storeNameProblem checks a name as the backup store does for VMs, disks
// and recovery points (aws/s3): 1-128 letters, digits, '.', '_' or '-',
// not starting with '.'.
func storeNameProblem(name string) string {
	if len(name) > maxNameLen {
		return fmt.Sprintf("it is %d characters long, at most %d", len(name), maxNameLen)
	}
	for i, r := range name {
		if !isAlnum(r) && r != '.' && r != '_' && r != '-' {
			return fmt.Sprintf("it has %q at position %d: use letters, digits, '.', '_' and '-'", r, utf8.RuneCountInString(name[:i])+1)
		}
	}
	if name[0] == '.' {
		return "it starts with '.'"
	}
	return ""
}

// privateIP checks the fixed address of the VM at field f: an IPv4
// address an instance can have, used by no other VM.
func (v *validator) privateIP(f, ip string) {
	if ip == "" {
		return
	}
	a, err := netip.ParseAddr(ip)
	switch {
	case err != nil || !a.Is4():
		v.add(f+".privateIP", "%q is not an IPv4 address", ip)
		return
	case a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		v.add(f+".privateIP", "%s is not an address an instance can have: give an address of the VM's subnet", ip)
		return
	}
	if v.ips == nil {
		v.ips = map[string]string{}
	}
	if other, dup := v.ips[a.String()]; dup {
		v.add(f+".privateIP", "%s is also %s's: the second launch would fail (InvalidIPAddress.InUse); give each VM its own address", ip, other)
		return
	}
	v.ips[a.String()] = f
}

// maxDiskSize is the largest EBS volume (io2 Block Express), 64 TiB.
const maxDiskSize = 64 << 40

// disks checks the disks of the VM at field f.
func (v *validator) disks(f string, vm VM) {
	seen := map[string]int{}
	for j, d := range vm.Disks {
		df := fmt.Sprintf("%s.disks[%d]", f, j)
		if d.Name == "" {
			v.add(df+".name", "the disk has no name: give the name the backups use, like disk-0")
		} else if msg := storeNameProblem(d.Name); msg != "" {
			v.add(df+".name", "%q cannot be a disk name: %s", short(d.Name), msg)
		} else if k, dup := seen[d.Name]; dup {
			v.add(df+".name", "disk %q is listed twice (also disks[%d]): give each disk its own name", d.Name, k)
		} else {
			seen[d.Name] = j
		}
		switch {
		case d.Size <= 0:
			v.add(df+".size", "%d: a disk's size is a positive number of bytes, like 10737418240 for 10 GiB", d.Size)
		case d.Size > maxDiskSize:
			v.add(df+".size", "%d bytes is more than the largest EBS volume (64 TiB)", d.Size)
		}
	}
}

// healthChecks checks the health checks of the VM at field f. Whether a
// field is set is read from the file where there is one, so that tcp: 0
// is a bad port rather than a check without a field.
func (v *validator) healthChecks(f string, checks []HealthCheck) {
	for j, h := range checks {
		hf := fmt.Sprintf("%s.healthChecks[%d]", f, j)
		node := v.p.node(fieldPath(hf)...)
		has := func(key string, set bool) bool { return set || hasField(node, key) }
		var tests []string
		if has("ec2", h.EC2) {
			if h.EC2 {
				tests = append(tests, "ec2")
			} else {
				v.add(hf+".ec2", "ec2: false checks nothing: write ec2: true, or remove the check")
			}
		}
		if has("tcp", h.TCP != 0) {
			tests = append(tests, "tcp")
			if h.TCP < 1 || h.TCP > 65535 {
				v.add(hf+".tcp", "port %d is out of range 1-65535: give the port the service listens on", h.TCP)
			}
		}
		http := has("http", h.HTTP != "")
		if http {
			tests = append(tests, "http")
			if u, err := url.Parse(strings.ReplaceAll(h.HTTP, "{ip}", "192.0.2.1")); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				v.add(hf+".http", "%q is not an http(s) URL: write it like http://{ip}:8080/health", h.HTTP)
			}
		}
		if has("expectStatus", h.ExpectStatus != 0) {
			switch {
			case !http:
				v.add(hf+".expectStatus", "expectStatus works only with http: add the URL, or remove it")
			case h.ExpectStatus < 100 || h.ExpectStatus > 599:
				v.add(hf+".expectStatus", "%d is not an HTTP status: use 100-599", h.ExpectStatus)
			}
		}
		switch {
		case len(tests) > 1:
			v.add(hf, "the check sets %s: a check tests one thing; split it into one check each", strings.Join(tests, " and "))
		case len(tests) == 0 && !has("ec2", false):
			v.add(hf, "the check tests nothing: give one of ec2: true, tcp: PORT or http: URL")
		}
	}
}

// dns checks the DNS records of the VM at field f.
func (v *validator) dns(f string, vm VM) {
	zone := v.p.DNS.Zone
	if len(vm.DNS) > 0 && zone == "" && !v.zoneReported {
		v.zoneReported = true
		v.add("dns.zone", "VM %s has DNS records but the plan has no zone: set dns.zone", vm.Name)
	}
	zoneName := ""
	if zone != "" && !hostedZoneRE.MatchString(zone) {
		zoneName = strings.ToLower(strings.TrimSuffix(zone, ".")) + "."
	}
	for j, r := range vm.DNS {
		rf := fmt.Sprintf("%s.dns[%d]", f, j)
		name := ""
		if r.Name == "" {
			v.add(rf+".name", "the record has no name")
		} else if msg := dnsNameProblem(r.Name); msg != "" {
			v.add(rf+".name", "%q is not a DNS name: %s", r.Name, msg)
		} else {
			name = strings.ToLower(r.Name)
			if !strings.HasSuffix(name, ".") && zoneName != "" {
				name += "." + zoneName
			}
			if zoneName != "" && name != zoneName && !strings.HasSuffix(name, "."+zoneName) {
				v.add(rf+".name", "%s is not in zone %s: write a name relative to the zone (without a final dot), or one ending in .%s", r.Name, zoneName, zoneName)
				name = ""
			}
		}
		typ := r.Type
		switch r.Type {
		case "", "A":
			typ = "A"
			if r.Target != "" {
				v.add(rf+".target", "an A record points at the instance's address and takes no target: remove it, or set type: CNAME")
			}
		case "CNAME":
			switch {
			case r.Target == "":
				v.add(rf+".target", "a CNAME record needs a target")
			case dnsNameProblem(r.Target) != "":
				v.add(rf+".target", "%q is not a DNS name: %s", r.Target, dnsNameProblem(r.Target))
			}
			if name != "" && name == zoneName {
				v.add(rf+".type", "a CNAME cannot be at the zone's apex (%s): use type A, or another name", zoneName)
			}
		default:
			v.add(rf+".type", "%q: use A or CNAME", r.Type)
		}
		if name == "" {
			continue
		}
		key := name + " " + typ
		if v.records == nil {
			v.records = map[string]string{}
		}
		if other, dup := v.records[key]; dup {
			v.add(rf+".name", "%s %s is also %s: failover would point it at two VMs, the last one winning; keep one", typ, name, other)
			continue
		}
		v.records[key] = rf
	}
}

// drill checks the drill section: well-formed, and apart from production.
func (v *validator) drill() {
	d := v.p.Drill
	v.ref("drill.subnet", "subnet", d.Subnet)
	v.groups("drill.securityGroups", d.SecurityGroups)
	if d.Subnet != "" {
		if d.Subnet == v.p.Defaults.Subnet {
			v.add("drill.subnet", "%s is the production subnet (defaults.subnet): a drill runs in an isolated subnet of its own, so that it cannot reach or disturb production", d.Subnet)
		} else if i := slices.IndexFunc(v.p.VMs, func(vm VM) bool { return vm.Subnet == d.Subnet }); i >= 0 {
			v.add("drill.subnet", "%s is a production subnet (vms[%d].subnet): a drill runs in an isolated subnet of its own, so that it cannot reach or disturb production", d.Subnet, i)
		}
	}
	if d.DNSZone != "" {
		if !hostedZoneRE.MatchString(d.DNSZone) {
			if msg := dnsNameProblem(d.DNSZone); msg != "" {
				v.add("drill.dnsZone", "%q is neither a zone name nor a hosted zone ID: %s", d.DNSZone, msg)
			}
		}
		norm := func(z string) string { return strings.ToLower(strings.TrimSuffix(z, ".")) }
		if v.p.DNS.Zone != "" && norm(d.DNSZone) == norm(v.p.DNS.Zone) {
			v.add("drill.dnsZone", "%s is the production zone (dns.zone): a drill would repoint production records; give the drill a zone of its own, or leave it empty", d.DNSZone)
		}
	}
}

func hasKey(m map[string]int, k string) bool { _, ok := m[k]; return ok }

// hasField reports whether mapping n (following aliases and merge keys)
// has key.
func hasField(n *yaml.Node, key string) bool {
	if n == nil {
		return false
	}
	k, _ := get(deref(n), key, 0)
	return k != nil
}
