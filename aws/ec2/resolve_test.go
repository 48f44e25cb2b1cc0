package ec2_test

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ec2"
)

// group makes a security group in vpc, tagged Name=tag when tag is set.
func (e *env) group(t *testing.T, vpc, name, tag string) string {
	t.Helper()
	in := &awsec2.CreateSecurityGroupInput{GroupName: aws.String(name), Description: aws.String(name), VpcId: aws.String(vpc)}
	if tag != "" {
		in.TagSpecifications = []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup,
			Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(tag)}}}}
	}
	out, err := e.client.CreateSecurityGroup(context.Background(), in)
	require.NoError(t, err)
	return aws.ToString(out.GroupId)
}

func TestResolverFindsSubnetsAndGroupsByIDOrName(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	vpc, err := e.srv.AddVPC("10.99.0.0/16", map[string]string{"Name": "drill"})
	require.NoError(t, err)
	az := e.srv.AvailabilityZones()[1]
	drill, err := e.srv.AddSubnet(vpc, az, "10.99.1.0/24", map[string]string{"Name": "subnet-drill"})
	require.NoError(t, err)
	_, err = e.srv.AddSubnet(vpc, az, "10.99.2.0/24", map[string]string{"Name": "twin"})
	require.NoError(t, err)
	_, err = e.srv.AddSubnet(vpc, az, "10.99.3.0/24", map[string]string{"Name": "twin"})
	require.NoError(t, err)
	web := e.group(t, vpc, "web", "")
	tagged := e.group(t, vpc, "db-20261207", "db")
	r := ec2.NewResolver(e.client)

	for _, ref := range []string{drill, "subnet-drill"} {
		s, err := r.Subnet(ctx, ref)
		require.NoError(t, err, ref)
		assert.Equal(t, ec2.Subnet{ID: drill, VPC: vpc, AvailabilityZone: az}, s, "subnet %q by ID or Name tag", ref)
	}
	_, err = r.Subnet(ctx, "twin")
	assert.ErrorIs(t, err, draas.ErrConflict, "two subnets named twin")
	assert.ErrorContains(t, err, "name the subnet by its ID")
	_, err = r.Subnet(ctx, "nosuch")
	assert.ErrorIs(t, err, draas.ErrNotFound)
	assert.ErrorContains(t, err, `no subnet "nosuch"`)
	_, err = r.Subnet(ctx, "")
	assert.ErrorIs(t, err, draas.ErrInvalid)

	for ref, want := range map[string]string{web: web, "web": web, "db": tagged, "db-20261207": tagged} {
		id, err := r.SecurityGroup(ctx, vpc, ref)
		require.NoError(t, err, ref)
		assert.Equal(t, want, id, "group %q by ID, group name or Name tag", ref)
	}
	_, err = r.SecurityGroup(ctx, vpc, "nosuch")
	assert.ErrorIs(t, err, draas.ErrNotFound)
	// A group of the same name in another VPC is not the subnet's.
	other, err := e.srv.AddVPC("10.98.0.0/16", nil)
	require.NoError(t, err)
	_, err = r.SecurityGroup(ctx, other, "web")
	assert.ErrorIs(t, err, draas.ErrNotFound)
	assert.ErrorContains(t, err, "in the subnet's VPC "+other)
}

// A plan that names its subnet or security groups, given to the launcher
// unresolved, fails with an error that says how to resolve the names
// (issue 12, item 4).
func TestLaunchWithNamesSaysHowToResolveThem(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.l.Launch(ctx, draas.LaunchRequest{Name: "web", InstanceType: "t3.micro", SubnetID: "subnet-drill"})
	require.Error(t, err)
	assert.ErrorIs(t, err, draas.ErrNotFound, "the EC2 error's kind is kept")
	var api interface{ ErrorCode() string }
	require.True(t, errors.As(err, &api), "the SDK's error is kept")
	assert.Equal(t, "InvalidSubnetID.NotFound", api.ErrorCode())
	assert.ErrorContains(t, err, `subnet "subnet-drill": no subnet has that ID; a name?`)
	assert.ErrorContains(t, err, "account.ResolvePlan")

	_, err = e.l.Launch(ctx, draas.LaunchRequest{Name: "web", InstanceType: "t3.micro", SecurityGroupIDs: []string{"web"}})
	require.Error(t, err)
	assert.ErrorIs(t, err, draas.ErrInvalid, "a malformed group ID")
	assert.ErrorContains(t, err, "security groups web: not all are IDs of groups in the subnet's VPC; names?")
	assert.ErrorContains(t, err, "ec2.Resolver")

	// Other errors say nothing of names.
	_, err = e.l.Launch(ctx, draas.LaunchRequest{Name: "web", InstanceType: "t3.micro", ImageID: "ami-nosuch"})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "a name?")
}
