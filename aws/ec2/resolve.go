package ec2

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/internal/awserr"
)

// NetworkAPI is the part of the EC2 client a [Resolver] uses;
// *ec2.Client implements it.
type NetworkAPI interface {
	DescribeSubnets(ctx context.Context, in *awsec2.DescribeSubnetsInput, optFns ...func(*awsec2.Options)) (*awsec2.DescribeSubnetsOutput, error)
	DescribeSecurityGroups(ctx context.Context, in *awsec2.DescribeSecurityGroupsInput, optFns ...func(*awsec2.Options)) (*awsec2.DescribeSecurityGroupsOutput, error)
}

var _ NetworkAPI = (*awsec2.Client)(nil)

// Resolver finds subnets and security groups by ID or by name, so that
// people may name them in a plan as they see them in the console, while
// [Launcher] needs IDs. It keeps no state; it is safe for concurrent use.
type Resolver struct {
	api NetworkAPI
}

// NewResolver returns a Resolver using api.
func NewResolver(api NetworkAPI) *Resolver { return &Resolver{api: api} }

// Subnet is a subnet a [Resolver] found.
type Subnet struct {
	ID               string
	VPC              string
	AvailabilityZone string
}

// Subnet returns the subnet ref names: ref is looked up as a subnet ID, then
// as the value of a Name tag. The error wraps [draas.ErrNotFound] when no
// subnet matches, and [draas.ErrConflict] when several subnets have that
// name (name it by its ID then). When a lookup itself fails, the error is a
// *draas.OpError of the EC2 call, whose kind says why: draas.ErrThrottled
// when AWS still throttled it (the client's retryer gave up, at the
// context's deadline with aws/account's), never ErrNotFound: the name may
// well exist.
func (r *Resolver) Subnet(ctx context.Context, ref string) (Subnet, error) {
	if ref == "" {
		return Subnet{}, draas.Invalidf("ec2: an empty subnet name")
	}
	for _, f := range []string{"subnet-id", "tag:Name"} {
		out, err := r.api.DescribeSubnets(ctx, &awsec2.DescribeSubnetsInput{Filters: []types.Filter{{Name: aws.String(f), Values: []string{ref}}}})
		if err != nil {
			return Subnet{}, awserr.Wrap("DescribeSubnets", fmt.Sprintf("look up subnet %q", ref), err)
		}
		switch len(out.Subnets) {
		case 0:
			continue
		case 1:
			s := out.Subnets[0]
			return Subnet{ID: aws.ToString(s.SubnetId), VPC: aws.ToString(s.VpcId), AvailabilityZone: aws.ToString(s.AvailabilityZone)}, nil
		default:
			return Subnet{}, fmt.Errorf("%w: %d subnets are named %q: name the subnet by its ID", draas.ErrConflict, len(out.Subnets), ref)
		}
	}
	return Subnet{}, fmt.Errorf("%w: no subnet %q (looked up by ID and by Name tag): create it or name an existing subnet", draas.ErrNotFound, ref)
}

// SecurityGroup returns the ID of the security group ref names in the VPC
// vpc: ref is looked up as a group ID, then as a group name, then as the
// value of a Name tag. Errors wrap [draas.ErrNotFound] or
// [draas.ErrConflict] as [Resolver.Subnet]'s do.
func (r *Resolver) SecurityGroup(ctx context.Context, vpc, ref string) (string, error) {
	if ref == "" || vpc == "" {
		return "", draas.Invalidf("ec2: a security group lookup needs a VPC and a name (got %q, %q)", vpc, ref)
	}
	for _, f := range []string{"group-id", "group-name", "tag:Name"} {
		out, err := r.api.DescribeSecurityGroups(ctx, &awsec2.DescribeSecurityGroupsInput{Filters: []types.Filter{
			{Name: aws.String(f), Values: []string{ref}},
			{Name: aws.String("vpc-id"), Values: []string{vpc}},
		}})
		if err != nil {
			return "", awserr.Wrap("DescribeSecurityGroups", fmt.Sprintf("look up security group %q", ref), err)
		}
		switch len(out.SecurityGroups) {
		case 0:
			continue
		case 1:
			return aws.ToString(out.SecurityGroups[0].GroupId), nil
		default:
			return "", fmt.Errorf("%w: %d security groups in %s are named %q: name the group by its ID", draas.ErrConflict, len(out.SecurityGroups), vpc, ref)
		}
	}
	return "", fmt.Errorf("%w: no security group %q in the subnet's VPC %s (looked up by ID, group name and Name tag): create it or name an existing group", draas.ErrNotFound, ref, vpc)
}

// resolveHint is what a launch that EC2 refused for an unknown subnet or
// security group adds to its error.
const resolveHint = "Launch needs IDs: if the plan names it (a Name tag or a group name), resolve the plan first with account.ResolvePlan (package github.com/opendraas/draas/aws/account) or ec2.Resolver"

// launchError wraps a RunInstances error. When EC2 does not know the subnet
// or a security group as an ID, the usual cause is a plan that names them,
// and the error says how to resolve the names.
func launchError(req draas.LaunchRequest, subnet string, err error) error {
	err = awserr.Wrap("RunInstances", req.Name, err)
	var api smithy.APIError
	if !errors.As(err, &api) {
		return err
	}
	switch api.ErrorCode() {
	case "InvalidSubnetID.NotFound", "InvalidSubnetID.Malformed", "InvalidSubnet.NotFound":
		return fmt.Errorf("%w; subnet %q: no subnet has that ID; a name? %s", err, subnet, resolveHint)
	case "InvalidGroup.NotFound", "InvalidGroupId.Malformed", "InvalidSecurityGroupID.NotFound":
		return fmt.Errorf("%w; security groups %s: not all are IDs of groups in the subnet's VPC; names? %s",
			err, strings.Join(req.SecurityGroupIDs, ", "), resolveHint)
	}
	return err
}
