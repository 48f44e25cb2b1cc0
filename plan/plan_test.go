package plan_test

import (
	"errors"
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

func FuzzParse(f *testing.F) {
	data, err := os.ReadFile("../examples/plans/three-tier.yaml")
	require.NoError(f, err)
	f.Add(data)
	f.Add([]byte(base))
	f.Add([]byte("vms: [{name: a, dependsOn: [a]}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := plan.Parse("fuzz.yaml", b)
		if err == nil && p.Name == "" {
			t.Fatal("a plan without a name validated")
		}
		if err != nil && !errors.Is(err, draas.ErrInvalid) {
			t.Fatalf("error %v is not ErrInvalid", err)
		}
	})
}
