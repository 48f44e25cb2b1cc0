package guest

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/opendraas/draas"
)

// prepareNetwork replaces static network configuration with DHCP, adds a
// DHCP configuration for the cloud NIC (whose name differs from the VMware
// one: ens5 on Nitro, ens192 on vSphere), and removes rules that pin
// interface names to VMware MAC addresses. Each handler acts only on the
// files it finds, so one pass serves every family.
func prepareNetwork(e *editor, o Options) error {
	for _, step := range []func(*editor) error{
		prepareIfcfgRHEL,
		prepareIfcfgSUSE,
		prepareKeyfiles,
		prepareNetplan,
		prepareInterfaces,
		preparePersistentNet,
	} {
		if err := step(e); err != nil {
			return err
		}
	}
	return nil
}

var (
	rhelAddressKey = regexp.MustCompile(`^(IPADDR|NETMASK|PREFIX|GATEWAY|BROADCAST|NETWORK)[0-9]*$`)
	suseAddressKey = regexp.MustCompile(`^(IPADDR|NETMASK|PREFIXLEN|BROADCAST|REMOTE_IPADDR)(_.*)?$`)
	runPartsName   = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// ifcfgToDHCP rewrites one ifcfg file's variables. When the file configures
// a static address it switches BOOTPROTO to dhcp and drops addresses,
// netmasks and gateways; in every file it drops MAC bindings (HWADDR and
// MACADDR, or SUSE's LLADDR), which no EC2 NIC matches. It reports whether
// anything changed.
func ifcfgToDHCP(v *shellVars, suse bool) bool {
	addressKey, macKeys := rhelAddressKey, []string{"HWADDR", "MACADDR"}
	if suse {
		addressKey, macKeys = suseAddressKey, []string{"LLADDR"}
	}
	boot, _ := v.get("BOOTPROTO")
	boot = strings.ToLower(boot)
	static := boot == "static" ||
		(boot == "" || boot == "none") && v.has(func(k string) bool { return strings.HasPrefix(k, "IPADDR") })
	changed := false
	if static {
		changed = v.set("BOOTPROTO", "dhcp")
	}
	return v.remove(func(k string) bool {
		return static && addressKey.MatchString(k) || slices.Contains(macKeys, k)
	}) || changed
}

// isLoopback reports whether an ifcfg file configures the loopback device.
func isLoopback(name string, v *shellVars) bool {
	dev, _ := v.get("DEVICE")
	return name == "ifcfg-lo" || dev == "lo"
}

func prepareIfcfgDir(e *editor, dir string, suse bool, why string) error {
	p, names, err := e.list(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "ifcfg-") || strings.HasSuffix(n, "~") || strings.Contains(n, ".rpm") || strings.HasSuffix(n, ".bak") {
			continue
		}
		fp, data, ok, err := e.read(path.Join(p, n))
		if err != nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		v := parseShellVars(data)
		if isLoopback(n, v) || !ifcfgToDHCP(v, suse) {
			continue
		}
		if err := e.write(fp, v.bytes(), 0o644, why); err != nil {
			return err
		}
	}
	return nil
}

func prepareIfcfgRHEL(e *editor) error {
	if err := prepareIfcfgDir(e, "etc/sysconfig/network-scripts", false, "network: static address to DHCP, no MAC binding"); err != nil {
		return err
	}
	// /etc/sysconfig/network may set a global GATEWAY that DHCP must not
	// be overridden by. (On SUSE it is a directory.)
	if isDir, err := e.isDir("etc/sysconfig/network"); err != nil || isDir {
		return err
	}
	p, data, ok, err := e.read("etc/sysconfig/network")
	if err != nil || !ok {
		return err
	}
	v := parseShellVars(data)
	if v.remove(func(k string) bool { return k == "GATEWAY" || k == "GATEWAYDEV" }) {
		return e.write(p, v.bytes(), 0o644, "network: drop the static default gateway")
	}
	return nil
}

func prepareIfcfgSUSE(e *editor) error {
	if ok, err := e.isDir("etc/sysconfig/network"); err != nil || !ok {
		return err
	}
	if err := prepareIfcfgDir(e, "etc/sysconfig/network", true, "network: static address to DHCP"); err != nil {
		return err
	}
	p, data, ok, err := e.read("etc/sysconfig/network/routes")
	if err != nil || !ok {
		return err
	}
	lines := strings.Split(string(data), "\n")
	kept := lines[:0]
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "default" {
			continue
		}
		kept = append(kept, l)
	}
	if len(kept) == len(strings.Split(string(data), "\n")) {
		return nil
	}
	return e.write(p, []byte(strings.Join(kept, "\n")), 0o644, "network: drop the static default route")
}

// NetworkManager keyfiles.

const (
	keyfileDir      = "etc/NetworkManager/system-connections"
	keyfileCatchAll = keyfileDir + "/draas-ec2.nmconnection"
)

const keyfileCatchAllText = `# ` + generatedBy + `
# DHCP on any Ethernet NIC (ens5 on Nitro); a profile bound to a NIC wins.
[connection]
id=draas-ec2
uuid=6f1c9d52-3b7e-4c1a-9f0e-8d2a5b4c7e31
type=ethernet
autoconnect-priority=-100

[ethernet]

[ipv4]
method=auto

[ipv6]
method=auto
`

// keyfileToDHCP switches manual IP methods to auto and drops static
// addresses, gateways and MAC bindings. It reports whether anything
// changed.
func keyfileToDHCP(data []byte) ([]byte, bool) {
	lines := strings.Split(string(data), "\n")
	out := lines[:0:0]
	section, changed := "", false
	staticKey := regexp.MustCompile(`^(address[0-9]*|addresses|gateway)$`)
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
			section = strings.TrimSpace(t[1 : len(t)-1])
			out = append(out, l)
			continue
		}
		key, val, isKV := strings.Cut(t, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch {
		case !isKV || strings.HasPrefix(t, "#") || strings.HasPrefix(t, ";"):
		case (section == "ipv4" || section == "ipv6") && key == "method" && val == "manual":
			l = l[:strings.Index(l, "=")+1] + strings.Replace(l[strings.Index(l, "=")+1:], "manual", "auto", 1)
			changed = true
		case (section == "ipv4" || section == "ipv6") && staticKey.MatchString(key):
			changed = true
			continue
		case (section == "ethernet" || section == "802-3-ethernet") && (key == "mac-address" || key == "cloned-mac-address"):
			changed = true
			continue
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "\n")), changed
}

func prepareKeyfiles(e *editor) error {
	dir, names, err := e.list(keyfileDir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if path.Join(dir, n) == keyfileCatchAll || strings.HasPrefix(n, ".") || strings.HasSuffix(n, "~") ||
			!(strings.HasSuffix(n, ".nmconnection") || !strings.Contains(n, ".")) {
			continue
		}
		p, data, ok, err := e.read(path.Join(dir, n))
		if err != nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		if out, changed := keyfileToDHCP(data); changed {
			if err := e.write(p, out, 0o600, "network: NetworkManager profile from manual addresses to DHCP, no MAC binding"); err != nil {
				return err
			}
		}
	}
	if f := e.c.Distro.Family; f != FamilyRHEL && f != FamilySUSE {
		return nil // Debian-family guests get netplan or ifupdown configuration
	}
	if ok, err := e.isDir("etc/NetworkManager"); err != nil || !ok {
		return err
	}
	return e.write(keyfileCatchAll, []byte(keyfileCatchAllText), 0o600, "network: DHCP on the cloud NIC (NetworkManager)")
}

// Netplan.

const (
	netplanDir      = "etc/netplan"
	netplanCatchAll = netplanDir + "/90-draas-ec2.yaml"
	disabledSuffix  = ".draas-disabled"
)

const netplanCatchAllText = `# ` + generatedBy + `
# DHCP on the cloud NIC (ens5 on Nitro, or eth0).
network:
  version: 2
  ethernets:
    draas-en:
      match:
        name: "en*"
      dhcp4: true
    draas-eth:
      match:
        name: "eth*"
      dhcp4: true
`

// netplanStatic reports whether a netplan file configures a static address
// or gateway on some device; such a file is moved aside.
func netplanStatic(data []byte) (bool, error) {
	type dev struct {
		Addresses []any  `yaml:"addresses"`
		Gateway4  string `yaml:"gateway4"`
		Gateway6  string `yaml:"gateway6"`
	}
	var doc struct {
		Network struct {
			Ethernets map[string]dev `yaml:"ethernets"`
			Bonds     map[string]dev `yaml:"bonds"`
			Bridges   map[string]dev `yaml:"bridges"`
			VLANs     map[string]dev `yaml:"vlans"`
		} `yaml:"network"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return false, err
	}
	n := doc.Network
	for _, devs := range []map[string]dev{n.Ethernets, n.Bonds, n.Bridges, n.VLANs} {
		for _, d := range devs {
			if len(d.Addresses) > 0 || d.Gateway4 != "" || d.Gateway6 != "" {
				return true, nil
			}
		}
	}
	return false, nil
}

func prepareNetplan(e *editor) error {
	dir, names, err := e.list(netplanDir)
	if err != nil || names == nil {
		return err
	}
	for _, n := range names {
		p := path.Join(dir, n)
		if !strings.HasSuffix(n, ".yaml") || p == netplanCatchAll {
			continue
		}
		fp, data, ok, err := e.read(p)
		if err != nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		static, err := netplanStatic(data)
		if err != nil {
			return draas.Invalidf("%s: %v: fix the file (netplan rejects it too), then try again", e.g.host(fp), err)
		}
		if !static {
			continue
		}
		st, err := e.g.state(fp)
		if err != nil {
			return err
		}
		if err := e.write(fp+disabledSuffix, data, st.Mode, "network: static netplan configuration moved aside (netplan reads only *.yaml)"); err != nil {
			return err
		}
		if err := e.remove(fp, "network: static netplan configuration moved aside to "+path.Base(fp)+disabledSuffix); err != nil {
			return err
		}
	}
	return e.write(netplanCatchAll, []byte(netplanCatchAllText), 0o600, "network: DHCP on the cloud NIC (netplan)")
}

// Debian's /etc/network/interfaces.

const interfacesFile = "etc/network/interfaces"

// interfacesTopLevel are the stanza keywords of interfaces(5); any other
// line belongs to the stanza above it.
var interfacesTopLevel = []string{"iface", "mapping", "auto", "source", "source-directory", "source-dir", "rename", "no-auto-down", "no-scripts"}

var staticOptions = []string{"address", "netmask", "gateway", "broadcast", "network", "pointopoint", "hwaddress"}

// interfacesToDHCP switches "iface NAME inet static" stanzas to dhcp and
// drops their address options. It returns the new text, whether it
// changed, and the interface names every iface stanza configures.
func interfacesToDHCP(data []byte) ([]byte, bool, []string) {
	lines := strings.Split(string(data), "\n")
	out := lines[:0:0]
	var names []string
	inStatic, changed := false, false
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			out = append(out, l)
			continue
		}
		if slices.Contains(interfacesTopLevel, f[0]) || strings.HasPrefix(f[0], "allow-") {
			inStatic = false
			if f[0] == "iface" && len(f) >= 2 {
				names = append(names, f[1])
			}
			if f[0] == "iface" && len(f) >= 4 && f[2] == "inet" && f[3] == "static" {
				i := strings.LastIndex(l, "static")
				l = l[:i] + "dhcp" + l[i+len("static"):]
				inStatic, changed = true, true
			}
			out = append(out, l)
			continue
		}
		if inStatic && slices.Contains(staticOptions, f[0]) {
			changed = true
			continue
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "\n")), changed, names
}

// cloudNICs are the names EC2 gives the primary NIC: ens5 on Nitro with
// predictable names, eth0 with net.ifnames=0 or on Xen.
var cloudNICs = []string{"ens5", "eth0"}

func prepareInterfaces(e *editor) error {
	p, data, ok, err := e.read(interfacesFile)
	if err != nil || !ok {
		return err
	}
	main, _, configured := interfacesToDHCP(data)
	dir, names, err := e.list("etc/network/interfaces.d")
	if err != nil {
		return err
	}
	for _, n := range names {
		if !runPartsName.MatchString(n) { // what ifupdown's source-directory reads
			continue
		}
		fp, fdata, ok, err := e.read(path.Join(dir, n))
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		out, changed, ifaces := interfacesToDHCP(fdata)
		configured = append(configured, ifaces...)
		if changed {
			if err := e.write(fp, out, 0o644, "network: ifupdown static stanza to DHCP"); err != nil {
				return err
			}
		}
	}
	// Add hotplug DHCP stanzas for the cloud NIC names that no stanza
	// configures, if the guest configures any real NIC with ifupdown.
	var add []string
	if slices.ContainsFunc(configured, func(n string) bool { return n != "lo" }) {
		for _, n := range cloudNICs {
			if !slices.Contains(configured, n) {
				add = append(add, n)
			}
		}
	}
	if len(add) > 0 {
		s := string(main)
		if s != "" && !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		s += "\n# Added by draas for EC2: DHCP on the cloud NIC; reverting the guest removes these lines.\n"
		for _, n := range add {
			s += fmt.Sprintf("allow-hotplug %s\niface %s inet dhcp\n", n, n)
		}
		main = []byte(s)
	}
	return e.write(p, main, 0o644, "network: ifupdown static stanza to DHCP, DHCP on the cloud NIC")
}

// persistentNetRules pin interface names to VMware MAC addresses, so the
// ENA NIC would come up as eth1 with no configuration.
const persistentNetRules = "etc/udev/rules.d/70-persistent-net.rules"

func preparePersistentNet(e *editor) error {
	return e.remove(persistentNetRules, "network: udev rules that pin NIC names to VMware MAC addresses")
}
