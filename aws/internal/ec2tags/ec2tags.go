// Package ec2tags builds EC2 tag specifications, shared by the aws/
// packages that create EC2 resources.
package ec2tags

import (
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// Spec returns a tag specification for resources of type rt with tags, in
// key order (so requests are deterministic), or nil for no tags.
func Spec(rt types.ResourceType, tags map[string]string) []types.TagSpecification {
	if len(tags) == 0 {
		return nil
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	ts := types.TagSpecification{ResourceType: rt}
	for _, k := range keys {
		ts.Tags = append(ts.Tags, types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return []types.TagSpecification{ts}
}
