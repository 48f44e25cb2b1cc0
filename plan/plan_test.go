package plan_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/plan"
)

func TestLoadExample(t *testing.T) {
	p, err := plan.Load("../examples/plans/three-tier.yaml")
	require.NoError(t, err)
	assert.Equal(t, "shop", p.Name)
	assert.Equal(t, []string{"db", "app", "web"}, p.Order())
	db, ok := p.VM("db")
	require.True(t, ok)
	assert.Equal(t, "r5.large", p.InstanceType(db))
	app, _ := p.VM("app")
	assert.Equal(t, "m5.large", p.InstanceType(app))
	assert.Equal(t, "subnet-prod", p.Subnet(app))
	assert.Equal(t, 10*time.Minute, p.HealthTimeout(app))
	rp := p.ReplicationPlan()
	assert.Equal(t, 15*time.Minute, rp.ReplicationInterval)
	assert.Equal(t, 30*time.Minute, rp.RPO)
	assert.Len(t, rp.VMs, 3)
}

func parseErr(t *testing.T, yaml string) string {
	t.Helper()
	_, err := plan.Parse("plan.yaml", []byte(yaml))
	require.Error(t, err)
	require.ErrorIs(t, err, draas.ErrInvalid)
	return err.Error()
}

const base = `name: shop
defaults:
  instanceType: m5.large
  subnet: subnet-1
vms:
  - name: db
  - name: app
    dependsOn: [db]
`

func TestErrorsNameFileLineAndField(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"syntax", "name: [shop\n", []string{"plan.yaml:1:", "YAML syntax"}},
		{"unknown field", base + "    instanceTyp: m5.large\n", []string{"plan.yaml:9:", `unknown field "instanceTyp"`}},
		{"unknown dependency", strings.Replace(base, "[db]", "[dbb]", 1), []string{"plan.yaml:8:", "vms[1].dependsOn[0]", `unknown VM "dbb"`, "app, db"}},
		{"cycle", base + "  - name: web\n    dependsOn: [app, web2]\n  - name: web2\n    dependsOn: [web]\n", []string{"dependency cycle", "web → web2 → web"}},
		{"missing subnet", strings.Replace(base, "  subnet: subnet-1\n", "", 1), []string{"plan.yaml:6:", "vms[0].subnet", "VM db has no subnet", "defaults.subnet"}},
		{"duplicate", base + "  - name: db\n", []string{"plan.yaml:9:", "listed twice"}},
		{"bad duration", "replication:\n  interval: fast\n" + base, []string{"plan.yaml:2:", "not a duration"}},
		{"health check", base + "    healthChecks:\n      - tcp: 70000\n", []string{"plan.yaml:10:", "out of range"}},
		{"no vms", "name: x\n", []string{"vms", "protects no VM"}},
		{"dns without zone", base + "    dns:\n      - name: app\n", []string{"dns.zone"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := parseErr(t, c.yaml)
			for _, w := range c.want {
				assert.Contains(t, msg, w)
			}
		})
	}
}

func TestErrorsAreTyped(t *testing.T) {
	_, err := plan.Parse("p.yaml", []byte(strings.Replace(base, "[db]", "[nope]", 1)))
	var pe *plan.Error
	require.True(t, errors.As(err, &pe))
	assert.Equal(t, "p.yaml", pe.File)
	assert.Equal(t, 8, pe.Line)
	assert.Equal(t, "vms[1].dependsOn[0]", pe.Field)
}

func TestLoadMissingFile(t *testing.T) {
	_, err := plan.Load(filepath.Join(t.TempDir(), "nope.yaml"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// FuzzParse checks that no input makes Parse panic or answer with anything
// but a bounded list of plan errors, and that what it accepts is a plan a
// failover can launch. Seeds are the examples here and testdata/fuzz.
func FuzzParse(f *testing.F) {
	data, err := os.ReadFile("../examples/plans/three-tier.yaml")
	require.NoError(f, err)
	f.Add(data)
	f.Add([]byte(base))
	f.Add([]byte("vms: [{name: a, dependsOn: [a]}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := plan.Parse("fuzz.yaml", b)
		if err != nil {
			if !errors.Is(err, draas.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n > 21 {
				t.Fatalf("%d lines of errors, want at most 21", n)
			}
			return
		}
		if p.Name == "" || len(p.VMs) == 0 {
			t.Fatal("a plan without a name or VMs validated")
		}
		for _, vm := range p.VMs {
			if len(vm.UserData()) > plan.MaxUserData {
				t.Fatalf("VM %s: %d bytes of user data validated", vm.Name, len(vm.UserData()))
			}
			if p.InstanceType(vm) == "" || p.Subnet(vm) == "" {
				t.Fatalf("VM %s without an instance type or subnet validated", vm.Name)
			}
		}
		if len(p.Order()) != len(p.VMs) {
			t.Fatalf("order %v of %d VMs", p.Order(), len(p.VMs))
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("a parsed plan does not validate again: %v", err)
		}
	})
}

// vmsWith is base with extra lines added to the VM app (vms[1]).
func vmsWith(lines string) string { return base + lines }

// Each of these plans validated before, then failed during a failover (or
// gave the wrong reason): a drill, not a disaster, must be where they are
// found wrong.
func TestPlansThatWouldFailMidDisaster(t *testing.T) {
	long := strings.Repeat("x", 200)
	script := func(n int) string {
		return "    bootScripts:\n      - name: big\n        run: |\n          " + strings.Repeat("e", n) + "\n"
	}
	cases := []struct {
		name, yaml string
		want       []string
		not        []string
	}{
		{"user data over 16 KiB", vmsWith(script(16 << 10)), []string{"plan.yaml:9:", "vms[1].bootScripts", "bytes of user data", "at most 16384 bytes, counted before base64", "once base64-encoded"}, nil},
		{"negative disk size", vmsWith("    disks:\n      - name: disk-0\n        size: -1\n"), []string{"plan.yaml:11:", "vms[1].disks[0].size", "-1", "positive"}, nil},
		{"zero disk size", vmsWith("    disks:\n      - name: disk-0\n"), []string{"vms[1].disks[0].size", "positive"}, nil},
		{"duplicate disk", vmsWith("    disks:\n      - {name: d, size: 1}\n      - {name: d, size: 1}\n"), []string{"vms[1].disks[1].name", `"d"`, "twice"}, nil},
		{"bad disk name", vmsWith("    disks:\n      - {name: a/b, size: 1}\n"), []string{"vms[1].disks[0].name", `"a/b"`, `'/'`}, nil},
		{"recovery point path", vmsWith("    recoveryPoint: ../../etc\n"), []string{"plan.yaml:9:", "vms[1].recoveryPoint", `"../../etc"`, `'/' at position 3`, "point ID"}, nil},
		{"duplicate dependsOn", strings.Replace(base, "[db]", "[db, db]", 1), []string{"plan.yaml:8:", "vms[1].dependsOn[1]", `"db" is listed twice`, "remove"}, nil},
		{"long name", strings.Replace(base, "name: shop", "name: "+long, 1), []string{"plan.yaml:1:", "name:", "200 characters long", "at most 128"}, []string{"cannot be used"}},
		{"leading dot", strings.Replace(base, "name: db", "name: .db", 1), []string{"vms[0].name", `".db" starts with '.'`, "start with a letter or a digit"}, []string{"cannot be used"}},
		{"bad character", strings.Replace(base, "name: db", "name: d b", 1), []string{"vms[0].name", `' ' at position 2`}, nil},
		{"tcp 0", vmsWith("    healthChecks:\n      - tcp: 0\n"), []string{"plan.yaml:10:", "vms[1].healthChecks[0].tcp", "port 0", "1-65535"}, []string{"exactly one"}},
		{"two checks in one", vmsWith("    healthChecks:\n      - {tcp: 80, http: 'http://{ip}/'}\n"), []string{"vms[1].healthChecks[0]", "sets tcp and http", "split"}, nil},
		{"empty check", vmsWith("    healthChecks:\n      - {}\n"), []string{"vms[1].healthChecks[0]", "ec2: true, tcp: PORT or http: URL"}, nil},
		{"ec2 false", vmsWith("    healthChecks:\n      - ec2: false\n"), []string{"vms[1].healthChecks[0].ec2", "checks nothing"}, nil},
		{"expectStatus without http", vmsWith("    healthChecks:\n      - {tcp: 80, expectStatus: 204}\n"), []string{"vms[1].healthChecks[0].expectStatus", "only with http"}, nil},
		{"expectStatus range", vmsWith("    healthChecks:\n      - {http: 'http://{ip}/', expectStatus: 2000}\n"), []string{"vms[1].healthChecks[0].expectStatus", "2000", "100-599"}, nil},
		{"same private IP", strings.Replace(vmsWith("    privateIP: 10.0.0.5\n"), "  - name: db\n", "  - name: db\n    privateIP: 10.0.0.5\n", 1), []string{"vms[1].privateIP", "10.0.0.5", "also vms[0]"}, nil},
		{"private IP not unicast", vmsWith("    privateIP: 255.255.255.255\n"), []string{"vms[1].privateIP", "not an address an instance can have"}, nil},
		{"Name tag too long", strings.Replace(strings.Replace(base, "name: shop", "name: "+strings.Repeat("p", 128), 1), "name: db", "name: "+strings.Repeat("d", 128), 1), []string{"vms[0].name", "Name tag", "256"}, nil},
		{"script name with a line break", vmsWith("    bootScripts:\n      - name: \"a\\nrm -rf /\"\n        run: echo hi\n"), []string{"vms[1].bootScripts[0].name", "line break"}, nil},
		{"script ends the here-document", vmsWith("    bootScripts:\n      - name: a\n        run: |\n          echo hi\n          DRAAS_BOOT_SCRIPT_1_EOF\n          reboot\n"), []string{"vms[1].bootScripts[0].run", "ends the script early"}, nil},
		{"powershell ends the block", vmsWith("    os: windows\n    bootScripts:\n      - name: a\n        run: \"echo hi\\n</powershell>\"\n"), []string{"vms[1].bootScripts[0].run", "</powershell>"}, nil},
		{"negative health timeout", vmsWith("    healthTimeout: -5m\n"), []string{"vms[1].healthTimeout", "-5m", "positive"}, nil},
		{"powershell in a script name", vmsWith("    os: windows\n    bootScripts:\n      - name: \"a </PowerShell>\"\n        run: echo hi\n"), []string{"vms[1].bootScripts[0].name", "</powershell>"}, nil},
		{"rpo shorter than the interval", "replication: {interval: 1h, rpo: 30m}\n" + base, []string{"plan.yaml:1:", "replication.rpo", "30m0s is shorter than the interval (1h0m0s)"}, nil},
		{"negative default health timeout", strings.Replace(base, "defaults:\n", "defaults:\n  healthTimeout: -1s\n", 1), []string{"defaults.healthTimeout"}, nil},
		{"negative rto", "rto: -1h\n" + base, []string{"plan.yaml:1:", "rto", "-1h"}, nil},
		{"negative keep", "replication:\n  keep: -1\n" + base, []string{"plan.yaml:2:", "replication.keep", "-1"}, nil},
		{"negative interval", "replication:\n  interval: -1m\n" + base, []string{"plan.yaml:2:", "replication.interval", "-1m"}, nil},
		{"sub-second TTL", base + "dns:\n  zone: example.com.\n  ttl: 500ms\n", []string{"dns.ttl", "500ms", "whole seconds"}, nil},
		{"bad zone", base + "dns:\n  zone: exa mple.com\n", []string{"dns.zone", `"exa mple.com"`}, nil},
		{"bad record name", "dns: {zone: example.com.}\n" + vmsWith("    dns:\n      - name: 'a b'\n"), []string{"vms[1].dns[0].name", `"a b"`}, nil},
		{"record outside the zone", "dns: {zone: example.com.}\n" + vmsWith("    dns:\n      - name: app.example.org.\n"), []string{"vms[1].dns[0].name", "not in zone example.com."}, nil},
		{"record twice", "dns: {zone: example.com.}\n" + strings.Replace(vmsWith("    dns:\n      - name: www\n"), "  - name: db\n", "  - name: db\n    dns:\n      - name: www.example.com.\n", 1), []string{"vms[1].dns[0].name", "www.example.com.", "also vms[0].dns[0]"}, nil},
		{"bad CNAME target", "dns: {zone: example.com.}\n" + vmsWith("    dns:\n      - {name: app, type: CNAME, target: 'http://x'}\n"), []string{"vms[1].dns[0].target", `"http://x"`}, nil},
		{"dns zone once", vmsWith("    dns:\n      - name: app\n      - name: app2\n"), []string{"dns.zone", "VM app has DNS records"}, nil},
		{"region", "aws:\n  region: US East\n" + base, []string{"aws.region", `"US East"`, "us-east-1"}, nil},
		{"zone outside the region", "aws:\n  region: us-east-1\n  availabilityZone: eu-west-1a\n" + base, []string{"aws.availabilityZone", "eu-west-1a", "us-east-1"}, nil},
		{"image", "aws:\n  imageId: 'ami 123'\n" + base, []string{"aws.imageId", `"ami 123"`}, nil},
		{"instance type", strings.Replace(base, "m5.large", "m5large", 1), []string{"defaults.instanceType", `"m5large"`, "m5.large"}, nil},
		{"duplicate security group", strings.Replace(base, "defaults:\n", "defaults:\n  securityGroups: [sg-1, sg-1]\n", 1), []string{"defaults.securityGroups[1]", `"sg-1" is listed twice`}, nil},
		{"empty security group", vmsWith("    securityGroups: ['']\n"), []string{"vms[1].securityGroups[0]", "empty"}, nil},
		{"drill in production subnet", base + "drill:\n  subnet: subnet-1\n", []string{"drill.subnet", "production subnet", "defaults.subnet"}, nil},
		{"drill in production zone", base + "dns: {zone: example.com.}\ndrill:\n  subnet: subnet-drill\n  dnsZone: example.com\n", []string{"drill.dnsZone", "production zone"}, nil},
		{"os case", vmsWith("    os: Windows\n"), []string{"vms[1].os", `"Windows"`, "linux or windows"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := parseErr(t, c.yaml)
			for _, w := range c.want {
				assert.Contains(t, msg, w)
			}
			for _, n := range c.not {
				assert.NotContains(t, msg, n)
			}
		})
	}
}

// A plan near each limit still validates.
func TestPlanAtTheLimitsIsValid(t *testing.T) {
	p, err := plan.Parse("plan.yaml", []byte(base+"    bootScripts:\n      - name: big\n        run: |\n          "+strings.Repeat("e", 16000)+"\n"+
		"    disks:\n      - {name: disk-0, size: 1073741824}\n    recoveryPoint: 20261126T061000.000Z-5f3a9c0e\n"+
		"    healthChecks:\n      - ec2: true\n      - tcp: 65535\n      - {http: 'https://{ip}:8443/health', expectStatus: 204}\n"+
		"    dns:\n      - name: app\n      - {name: db-alias.example.com., type: CNAME, target: db.example.com.}\n"+
		"dns: {zone: example.com., ttl: 5m}\naws: {region: us-gov-west-1, availabilityZone: us-gov-west-1a, imageId: ami-0a1b2c3d}\n"+
		"drill: {subnet: subnet-drill, dnsZone: drill.example.com.}\nrto: 1h\n"))
	require.NoError(t, err)
	vm, _ := p.VM("app")
	assert.LessOrEqual(t, len(vm.UserData()), plan.MaxUserData)
	assert.Greater(t, len(vm.UserData()), 16000)
}

// Errors of the wrong type name the field, its line, the type expected and
// how to write it, instead of the decoder's "cannot unmarshal".
func TestTypeErrorsNameTheField(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"list for a string", strings.Replace(base, "name: db", "name: [db]", 1), []string{"plan.yaml:6:", "vms[0].name", "expected a string, got a list", "single value"}},
		{"string for a list", strings.Replace(base, "[db]", "db", 1), []string{"plan.yaml:8:", "vms[1].dependsOn", "expected a list of strings", "[db]"}},
		{"word for a number", "replication:\n  keep: two\n" + base, []string{"plan.yaml:2:", "replication.keep", `expected a whole number, got "two"`}},
		{"disk size with a unit", vmsWith("    disks:\n      - {name: d, size: 10G}\n"), []string{"plan.yaml:10:", "vms[1].disks[0].size", `got "10G"`}},
		{"bad duration", "rto: soon\n" + base, []string{"plan.yaml:1:", "rto", `"soon" is not a duration`}},
		{"scalar for a mapping", "defaults: m5.large\nname: x\nvms: [{name: a}]\n", []string{"plan.yaml:1:", "defaults", "expected a mapping"}},
		{"unknown field with a guess", vmsWith("    instanceTyp: m5.large\n"), []string{"plan.yaml:9:", "vms[1].instanceTyp", `did you mean "instanceType"`}},
		{"not a mapping at all", "- a\n- b\n", []string{"plan.yaml:1:", "expected a mapping"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := parseErr(t, c.yaml)
			assert.NotContains(t, msg, "cannot unmarshal")
			for _, w := range c.want {
				assert.Contains(t, msg, w)
			}
		})
	}
}

// Aliases and merge keys still work, within bounds.
func TestAliases(t *testing.T) {
	p, err := plan.Parse("plan.yaml", []byte(`name: shop
defaults: {instanceType: m5.large, subnet: subnet-1}
vms:
  - &vm
    name: db
    healthChecks: [{tcp: 5432}]
  - <<: *vm
    name: db2
`))
	require.NoError(t, err)
	db2, ok := p.VM("db2")
	require.True(t, ok)
	assert.Equal(t, 5432, db2.HealthChecks[0].TCP)

	_, err = plan.Parse("plan.yaml", []byte("name: shop\nvms:\n  - &vm {name: db, subnet: s, instanceType: m5.large}\n  - <<: *vm\n    nme: x\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `vms[1].nme: unknown field "nme": did you mean "name"?`)
}

// A YAML alias bomb gets one short answer, not a flood of errors or an
// expansion to millions of values.
func TestAliasBombIsRefused(t *testing.T) {
	bomb := `name: shop
x: &a ["x","x","x","x","x","x","x","x","x"]
defaults:
  securityGroups: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
vms:
  - &c {name: a, dependsOn: [*b,*b,*b,*b,*b,*b,*b,*b,*b]}
  - &d {name: b, dependsOn: [*c,*c,*c,*c,*c,*c,*c,*c,*c]}
  - {name: c, dependsOn: [*d,*d,*d,*d,*d,*d,*d,*d,*d]}
  - &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  - &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  - &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  - [*g,*g,*g,*g,*g,*g,*g,*g,*g]
  - [*g,*g,*g,*g,*g,*g,*g,*g,*g]
`
	msg := parseErr(t, bomb)
	assert.NotContains(t, msg, "\n", "one problem, not a flood")
	assert.Contains(t, msg, "YAML aliases (*name) expand to more than 10000 values: a plan needs no such expansion; write the values out or use fewer aliases")
}

// A problem repeated through an alias is reported once.
func TestRepeatedErrorsAreReportedOnce(t *testing.T) {
	msg := parseErr(t, "name: shop\nvms:\n  - &a {name: a, subnet: s, instanceType: m5.large, bogus: 1}\n  - *a\n  - *a\n  - *a\n  - *a\n")
	assert.Equal(t, 1, strings.Count(msg, `unknown field "bogus"`), msg)
	assert.Equal(t, 1, strings.Count(msg, "\n")+1, msg)
}

// A plan with many problems lists the first ones and counts the rest.
func TestManyErrorsAreCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("name: shop\nvms:\n")
	for i := range 100 {
		fmt.Fprintf(&b, "  - name: vm%d\n", i)
	}
	_, err := plan.Parse("plan.yaml", []byte(b.String()))
	require.Error(t, err)
	var es plan.Errors
	require.ErrorAs(t, err, &es)
	assert.Len(t, es, 21)
	assert.Contains(t, es[20].Error(), "and 180 more problems")
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := plan.Load(dir)
	require.ErrorIs(t, err, draas.ErrInvalid)
	assert.Contains(t, err.Error(), "is a directory")
	assert.Contains(t, err.Error(), "name the plan's YAML file")
}

func TestLoadTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	require.NoError(t, os.WriteFile(path, make([]byte, plan.MaxFileSize+1), 0o600))
	_, err := plan.Load(path)
	require.ErrorIs(t, err, draas.ErrInvalid)
	assert.Contains(t, err.Error(), "larger than")
}
