package account_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/account"
	"github.com/opendraas/draas/aws/ec2"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/plan"
)

// network is a production VPC with subnets "app" and "data" in one zone and
// "other-zone" in another, and a drill VPC with subnet "drill"; groups
// "web" and "db" exist in both VPCs, "db" in production by its Name tag
// only.
type network struct {
	srv                                *awssim.Server
	a                                  *account.Account
	zone, zone2                        string
	app, data, otherZone, drill        string
	prodWeb, prodDB, drillWeb, drillDB string
}

func newNetwork(t *testing.T) *network {
	t.Helper()
	srv := sim(t, awssim.Options{})
	a, err := account.New(srv.Config(), account.Options{Launcher: ec2.Options{PollInterval: time.Millisecond}})
	require.NoError(t, err)
	n := &network{srv: srv, a: a, zone: srv.AvailabilityZones()[0], zone2: srv.AvailabilityZones()[1]}
	prod, err := srv.AddVPC("10.0.0.0/16", map[string]string{"Name": "production"})
	require.NoError(t, err)
	drill, err := srv.AddVPC("10.99.0.0/16", map[string]string{"Name": "drill"})
	require.NoError(t, err)
	subnet := func(vpc, zone, cidr, name string) string {
		id, err := srv.AddSubnet(vpc, zone, cidr, map[string]string{"Name": name})
		require.NoError(t, err)
		return id
	}
	n.app = subnet(prod, n.zone, "10.0.1.0/24", "app")
	n.data = subnet(prod, n.zone, "10.0.2.0/24", "data")
	n.otherZone = subnet(prod, n.zone2, "10.0.3.0/24", "other-zone")
	n.drill = subnet(drill, n.zone2, "10.99.1.0/24", "drill")
	group := func(vpc, name, tag string) string {
		in := &awsec2.CreateSecurityGroupInput{GroupName: aws.String(name), Description: aws.String(name), VpcId: aws.String(vpc)}
		if tag != "" {
			in.TagSpecifications = []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup,
				Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(tag)}}}}
		}
		out, err := a.EC2.CreateSecurityGroup(context.Background(), in)
		require.NoError(t, err)
		return aws.ToString(out.GroupId)
	}
	n.prodWeb, n.prodDB = group(prod, "web", ""), group(prod, "db-sg-2026", "db")
	n.drillWeb, n.drillDB = group(drill, "web", ""), group(drill, "db", "")
	return n
}

func parse(t *testing.T, yaml string) *plan.Plan {
	t.Helper()
	p, err := plan.Parse("shop.yaml", []byte(yaml))
	require.NoError(t, err)
	return p
}

const shop = `name: shop
defaults: {instanceType: m5.large, subnet: app, securityGroups: [web]}
vms:
  - name: db
    subnet: data
    securityGroups: [db, web]
  - name: web
    dependsOn: [db]
drill: {subnet: drill, securityGroups: [web, db]}
`

func TestResolvePlanByNameAndByID(t *testing.T) {
	n := newNetwork(t)
	ctx := context.Background()
	p := parse(t, shop)

	got, err := n.a.ResolvePlan(ctx, p, account.Production)
	require.NoError(t, err)
	assert.Equal(t, n.data, got.VMs[0].Subnet)
	assert.Equal(t, []string{n.prodDB, n.prodWeb}, got.VMs[0].SecurityGroups, "by Name tag and by group name")
	assert.Equal(t, n.app, got.VMs[1].Subnet, "the default subnet")
	assert.Equal(t, []string{n.prodWeb}, got.VMs[1].SecurityGroups, "the default groups, in the subnet's VPC")
	assert.Equal(t, n.zone, got.AWS.AvailabilityZone, "the subnets' zone")
	assert.Equal(t, "drill", got.Drill.Subnet, "a failover leaves the drill network alone")
	assert.Equal(t, "data", p.VMs[0].Subnet, "the plan itself is not modified")

	got, err = n.a.ResolvePlan(ctx, p, account.Drill)
	require.NoError(t, err)
	assert.Equal(t, n.drill, got.Drill.Subnet)
	assert.Equal(t, []string{n.drillWeb, n.drillDB}, got.Drill.SecurityGroups, "the drill VPC's groups, not production's")
	assert.Equal(t, n.zone2, got.AWS.AvailabilityZone, "the drill subnet's zone")
	assert.Equal(t, "data", got.VMs[0].Subnet, "a drill leaves the production network alone")

	// IDs resolve to themselves; a zone the plan sets is kept.
	byID := parse(t, `name: shop
aws: {availabilityZone: `+n.zone+`}
defaults: {instanceType: m5.large, subnet: `+n.app+`, securityGroups: [`+n.prodWeb+`]}
vms: [{name: db}]
`)
	got, err = n.a.ResolvePlan(ctx, byID, account.Production)
	require.NoError(t, err)
	assert.Equal(t, n.app, got.VMs[0].Subnet)
	assert.Equal(t, []string{n.prodWeb}, got.VMs[0].SecurityGroups)
	assert.Equal(t, n.zone, got.AWS.AvailabilityZone)
}

func TestResolvePlanReportsEveryProblem(t *testing.T) {
	n := newNetwork(t)
	ctx := context.Background()
	p := parse(t, `name: shop
defaults: {instanceType: m5.large, subnet: app}
vms:
  - name: db
    subnet: nosuch
  - name: web
    securityGroups: [web, nosuch-group]
drill: {subnet: drill-typo}
`)
	_, err := n.a.ResolvePlan(ctx, p, account.Production)
	require.Error(t, err)
	assert.ErrorIs(t, err, draas.ErrNotFound)
	assert.ErrorContains(t, err, `vms[0].subnet: `)
	assert.ErrorContains(t, err, `no subnet "nosuch" (looked up by ID and by Name tag)`)
	assert.ErrorContains(t, err, `vms[1].securityGroups[1]: `)
	assert.ErrorContains(t, err, `no security group "nosuch-group"`)
	assert.NotContains(t, err.Error(), "drill", "a failover does not look at the drill network")

	_, err = n.a.ResolvePlan(ctx, p, account.Drill)
	assert.ErrorIs(t, err, draas.ErrNotFound)
	assert.ErrorContains(t, err, `drill.subnet: `)
	assert.ErrorContains(t, err, `no subnet "drill-typo"`)

	_, err = n.a.ResolvePlan(ctx, parse(t, `name: shop
defaults: {instanceType: m5.large, subnet: app}
vms: [{name: db}]
`), account.Drill)
	assert.ErrorIs(t, err, draas.ErrInvalid)
	assert.ErrorContains(t, err, "set drill.subnet")

	// Subnets in two zones, and no zone in the plan.
	_, err = n.a.ResolvePlan(ctx, parse(t, `name: shop
defaults: {instanceType: m5.large, subnet: app}
vms:
  - name: db
  - name: web
    subnet: other-zone
`), account.Production)
	assert.ErrorIs(t, err, draas.ErrInvalid)
	assert.ErrorContains(t, err, "aws.availabilityZone: the production subnets are in zones "+n.zone+", "+n.zone2)
}

// A launcher for a resolved plan makes volumes in the plan's zone and
// launches from its image.
func TestLauncherForMakesVolumesInThePlansZone(t *testing.T) {
	n := newNetwork(t)
	ctx := context.Background()
	p := parse(t, shop)
	p.AWS.ImageID = n.srv.DefaultImageID()
	drill, err := n.a.ResolvePlan(ctx, p, account.Drill)
	require.NoError(t, err)
	snap, err := n.srv.SeedSnapshot([]byte("boot"), nil)
	require.NoError(t, err)
	l := n.a.LauncherFor(drill)
	vol, err := l.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: snap})
	require.NoError(t, err)
	for _, v := range n.srv.Volumes() {
		if v.ID == vol {
			assert.Equal(t, n.zone2, v.AvailabilityZone, "the drill subnet's zone")
		}
	}
	inst, err := l.Launch(ctx, draas.LaunchRequest{Name: "db", InstanceType: "m5.large", SubnetID: drill.Drill.Subnet,
		SecurityGroupIDs: drill.Drill.SecurityGroups, RootVolumeID: vol})
	require.NoError(t, err, "the plan's image, the resolved subnet and groups")
	assert.Equal(t, drill.Drill.Subnet, inst.SubnetID)

	_, err = n.a.Launcher.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: snap})
	assert.ErrorIs(t, err, draas.ErrInvalid, "the account's own launcher knows no zone")
}

// Throttling is not a problem of the plan: under heavy throttling the plan
// resolves as without it, and a lookup AWS still throttles at the
// context's deadline fails as throttled, never as a missing or invalid
// subnet or group.
func TestResolvePlanUnderThrottling(t *testing.T) {
	n := newNetwork(t)
	p := parse(t, shop)
	want, err := n.a.ResolvePlan(context.Background(), p, account.Production)
	require.NoError(t, err)
	assert.False(t, account.IsPlanError(nil))

	a, err := account.New(n.srv.Config(), account.Options{Retry: account.RetryOptions{MaxBackoff: 5 * time.Millisecond}})
	require.NoError(t, err)
	n.srv.Throttle("*", 0.5)
	got, err := a.ResolvePlan(context.Background(), p, account.Production)
	require.NoError(t, err, "50 % of the lookups throttled")
	assert.Equal(t, want, got)

	n.srv.ClearFaults()
	n.srv.Throttle("DescribeSecurityGroups", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = a.ResolvePlan(ctx, p, account.Production)
	require.Error(t, err)
	assert.False(t, account.IsPlanError(err), "%v", err)
	assert.ErrorIs(t, err, draas.ErrThrottled)
	for _, plan := range []error{draas.ErrNotFound, draas.ErrConflict, draas.ErrInvalid} {
		assert.NotErrorIs(t, err, plan)
	}
	assert.ErrorContains(t, err, "vms[0].securityGroups[0]: ")
	assert.ErrorContains(t, err, "RequestLimitExceeded")

	// A missing subnet and a throttled lookup: the lookup's error alone,
	// since the throttled group may be missing too or not.
	n.srv.ClearFaults()
	n.srv.Throttle("DescribeSecurityGroups", 1)
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = a.ResolvePlan(ctx, parse(t, `name: shop
defaults: {instanceType: m5.large, subnet: app, securityGroups: [web]}
vms: [{name: db, subnet: nosuch}, {name: web}]
`), account.Production)
	assert.False(t, account.IsPlanError(err), "%v", err)
	assert.NotContains(t, err.Error(), "nosuch")

	n.srv.ClearFaults()
	_, err = a.ResolvePlan(context.Background(), parse(t, `name: shop
defaults: {instanceType: m5.large, subnet: nosuch}
vms: [{name: db}]
`), account.Production)
	assert.True(t, account.IsPlanError(err), "%v", err)
}
