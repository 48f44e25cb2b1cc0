package ec2_test

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ec2"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/draastest"
)

type env struct {
	srv    *awssim.Server
	client *awsec2.Client
	l      *ec2.Launcher
	subnet string
	az     string
	image  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv, err := awssim.New(awssim.Options{})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	client := srv.EC2()
	ctx := context.Background()
	subnets, err := client.DescribeSubnets(ctx, &awsec2.DescribeSubnetsInput{})
	require.NoError(t, err)
	require.NotEmpty(t, subnets.Subnets, "the simulator has a default VPC with subnets")
	images, err := client.DescribeImages(ctx, &awsec2.DescribeImagesInput{})
	require.NoError(t, err)
	require.NotEmpty(t, images.Images, "the simulator has a default image")
	e := &env{
		srv:    srv,
		client: client,
		subnet: aws.ToString(subnets.Subnets[0].SubnetId),
		az:     aws.ToString(subnets.Subnets[0].AvailabilityZone),
		image:  aws.ToString(images.Images[0].ImageId),
	}
	e.l = ec2.New(client, ec2.Options{
		ImageID: e.image, SubnetID: e.subnet, AvailabilityZone: e.az, PollInterval: 10 * time.Millisecond,
	})
	return e
}

func TestLauncherConformance(t *testing.T) {
	draastest.TestInstanceLauncher(t, func(t *testing.T) (draas.InstanceLauncher, string) {
		e := newEnv(t)
		snap, err := e.srv.SeedSnapshot(bytes.Repeat([]byte("draas"), 1000), nil)
		require.NoError(t, err)
		return e.l, snap
	})
}

func TestLaunchSwapsInTheDRCopy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	data := bytes.Repeat([]byte("root-disk "), 100000)
	snap, err := e.srv.SeedSnapshot(data, map[string]string{draas.TagVM: "db"})
	require.NoError(t, err)

	vol, err := e.l.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: snap, ClientToken: "db-root"})
	require.NoError(t, err)
	again, err := e.l.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: snap, ClientToken: "db-root"})
	require.NoError(t, err)
	assert.Equal(t, vol, again, "the client token makes CreateVolume idempotent")

	req := draas.LaunchRequest{Name: "db", InstanceType: "m5.large", RootVolumeID: vol, UserData: []byte("#!/bin/sh\necho hi\n"), ClientToken: "db-launch"}
	inst, err := e.l.Launch(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, "running", inst.State)
	require.NotEmpty(t, inst.VolumeIDs)
	assert.Equal(t, vol, inst.VolumeIDs[0], "the DR copy's volume is the root volume")
	assert.NotEmpty(t, inst.PrivateIP)

	// A resumed launch with the same token returns the same instance.
	inst2, err := e.l.Launch(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, inst.ID, inst2.ID)
	out, err := e.client.DescribeInstances(ctx, &awsec2.DescribeInstancesInput{})
	require.NoError(t, err)
	n := 0
	for _, r := range out.Reservations {
		n += len(r.Instances)
	}
	assert.Equal(t, 1, n, "no duplicate instance")

	// The root volume holds the DR copy's bytes.
	got := make([]byte, len(data))
	require.NoError(t, e.srv.ReadVolume(vol, 0, got))
	assert.True(t, bytes.Equal(data, got))

	shape, err := e.l.Shape(ctx, inst.ID)
	require.NoError(t, err)
	assert.Equal(t, 2, shape.CPUs)
	assert.Equal(t, int64(8192), shape.MemoryMiB)
	require.Len(t, shape.Disks, 1)
	assert.Equal(t, int64(1<<30), shape.Disks[0].Size)

	require.NoError(t, e.l.Terminate(ctx, inst.ID))
	require.NoError(t, e.l.Terminate(ctx, inst.ID))
}

// cutAfterDetach is the EC2 client of a process killed right after its
// DetachVolume call returned: the call's context is cancelled.
type cutAfterDetach struct {
	*awsec2.Client
	cancel context.CancelFunc
}

func (c cutAfterDetach) DetachVolume(ctx context.Context, in *awsec2.DetachVolumeInput, optFns ...func(*awsec2.Options)) (*awsec2.DetachVolumeOutput, error) {
	out, err := c.Client.DetachVolume(ctx, in, optFns...)
	c.cancel()
	return out, err
}

// TestLaunchCutAfterDetachLeavesNoVolume: a launch interrupted between
// detaching the image's root volume and deleting it, then called again
// with the same client token, deletes that volume; none is left
// available in the account.
func TestLaunchCutAfterDetachLeavesNoVolume(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	snap, err := e.srv.SeedSnapshot(bytes.Repeat([]byte("root-disk "), 1000), nil)
	require.NoError(t, err)
	vol, err := e.l.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: snap, ClientToken: "db-root"})
	require.NoError(t, err)
	req := draas.LaunchRequest{Name: "db", InstanceType: "m5.large", RootVolumeID: vol, ClientToken: "db-launch",
		Tags: map[string]string{draas.TagVM: "db"}}

	cctx, cancel := context.WithCancel(ctx)
	cut := ec2.New(cutAfterDetach{e.client, cancel}, ec2.Options{ImageID: e.image, SubnetID: e.subnet, AvailabilityZone: e.az, PollInterval: 10 * time.Millisecond})
	_, err = cut.Launch(cctx, req)
	require.ErrorIs(t, err, context.Canceled)
	var detached []string
	for _, v := range e.srv.Volumes() {
		if v.ID != vol && v.State != "deleted" {
			detached = append(detached, v.ID)
		}
	}
	require.Len(t, detached, 1, "the image's root volume, cut off before its delete")
	// The rerun comes after the detach finished, as a restarted process's
	// does.
	require.Eventually(t, func() bool {
		out, err := e.client.DescribeVolumes(ctx, &awsec2.DescribeVolumesInput{VolumeIds: detached})
		return err == nil && len(out.Volumes) == 1 && out.Volumes[0].State == "available"
	}, 10*time.Second, 10*time.Millisecond)

	inst, err := e.l.Launch(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, []string{vol}, inst.VolumeIDs)
	for _, v := range e.srv.Volumes() {
		if v.ID != vol {
			assert.Equal(t, "deleted", v.State, "volume %s of the interrupted launch", v.ID)
		}
	}
	left, err := e.l.AvailableVolumes(ctx, map[string]string{draas.TagVM: "db"})
	require.NoError(t, err)
	assert.Empty(t, left)
	running, err := e.l.RunningInstances(ctx, map[string]string{draas.TagVM: "db"})
	require.NoError(t, err)
	assert.Equal(t, []string{inst.ID}, slices.Collect(maps.Keys(running)))
	assert.Equal(t, "db", running[inst.ID]["Name"])
	_, err = e.l.AvailableVolumes(ctx, nil)
	require.ErrorIs(t, err, draas.ErrInvalid)
}
