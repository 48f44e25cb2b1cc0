package awssim_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/awssim"
)

// sdkConfig is a hermetic SDK configuration for an endpoint: static
// credentials, us-east-1, and a standard retryer with millisecond backoff so
// throttling tests stay fast.
func sdkConfig(url string) aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDAWSSIM", "awssim-secret", ""),
		BaseEndpoint: aws.String(url),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 6
				o.RateLimiter = ratelimit.None
				o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
			})
		},
	}
}

// startSim starts a simulator that stops when the test ends.
func startSim(t *testing.T, opts awssim.Options) *awssim.Server {
	t.Helper()
	srv, err := awssim.New(opts)
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	return srv
}

// newEC2 starts a simulator and an EC2 client talking to it.
func newEC2(t *testing.T, opts awssim.Options) (*awssim.Server, *ec2.Client) {
	t.Helper()
	srv := startSim(t, opts)
	return srv, ec2.NewFromConfig(sdkConfig(srv.URL))
}

// requireCode checks that err is the API error code with the HTTP status.
func requireCode(t *testing.T, err error, code string, status int) {
	t.Helper()
	require.Error(t, err)
	var ae smithy.APIError
	require.ErrorAs(t, err, &ae, "error %v", err)
	require.Equal(t, code, ae.ErrorCode(), "error %v", err)
	if status != 0 {
		var re *awshttp.ResponseError
		require.ErrorAs(t, err, &re)
		require.Equal(t, status, re.HTTPStatusCode(), "error %v", err)
	}
}

const (
	waitMin = time.Millisecond
	waitMax = 20 * time.Millisecond
	waitFor = 10 * time.Second
)

func waitVolumeAvailable(t *testing.T, c *ec2.Client, ids ...string) {
	t.Helper()
	w := ec2.NewVolumeAvailableWaiter(c, func(o *ec2.VolumeAvailableWaiterOptions) { o.MinDelay, o.MaxDelay = waitMin, waitMax })
	require.NoError(t, w.Wait(context.Background(), &ec2.DescribeVolumesInput{VolumeIds: ids}, waitFor))
}

func waitVolumeInUse(t *testing.T, c *ec2.Client, ids ...string) {
	t.Helper()
	w := ec2.NewVolumeInUseWaiter(c, func(o *ec2.VolumeInUseWaiterOptions) { o.MinDelay, o.MaxDelay = waitMin, waitMax })
	require.NoError(t, w.Wait(context.Background(), &ec2.DescribeVolumesInput{VolumeIds: ids}, waitFor))
}

func waitSnapshotCompleted(t *testing.T, c *ec2.Client, ids ...string) {
	t.Helper()
	w := ec2.NewSnapshotCompletedWaiter(c, func(o *ec2.SnapshotCompletedWaiterOptions) { o.MinDelay, o.MaxDelay = waitMin, waitMax })
	require.NoError(t, w.Wait(context.Background(), &ec2.DescribeSnapshotsInput{SnapshotIds: ids}, waitFor))
}

func waitRunning(t *testing.T, c *ec2.Client, ids ...string) {
	t.Helper()
	w := ec2.NewInstanceRunningWaiter(c, func(o *ec2.InstanceRunningWaiterOptions) { o.MinDelay, o.MaxDelay = waitMin, waitMax })
	require.NoError(t, w.Wait(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: ids}, waitFor))
}

func waitStopped(t *testing.T, c *ec2.Client, ids ...string) {
	t.Helper()
	w := ec2.NewInstanceStoppedWaiter(c, func(o *ec2.InstanceStoppedWaiterOptions) { o.MinDelay, o.MaxDelay = waitMin, waitMax })
	require.NoError(t, w.Wait(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: ids}, waitFor))
}

func waitTerminated(t *testing.T, c *ec2.Client, ids ...string) {
	t.Helper()
	w := ec2.NewInstanceTerminatedWaiter(c, func(o *ec2.InstanceTerminatedWaiterOptions) { o.MinDelay, o.MaxDelay = waitMin, waitMax })
	require.NoError(t, w.Wait(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: ids}, waitFor))
}

func tagSpec(rt types.ResourceType, kv ...string) types.TagSpecification {
	ts := types.TagSpecification{ResourceType: rt}
	for i := 0; i+1 < len(kv); i += 2 {
		ts.Tags = append(ts.Tags, types.Tag{Key: aws.String(kv[i]), Value: aws.String(kv[i+1])})
	}
	return ts
}

func filter(name string, values ...string) types.Filter {
	return types.Filter{Name: aws.String(name), Values: values}
}

func tagMap(tags []types.Tag) map[string]string {
	out := map[string]string{}
	for _, t := range tags {
		out[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return out
}

// fill returns n bytes of a pattern that differs by seed and by offset.
func fill(n int, seed byte) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(i*7+i/4096) ^ seed
	}
	return out
}

func runOne(t *testing.T, c *ec2.Client, in *ec2.RunInstancesInput) types.Instance {
	t.Helper()
	if in.MinCount == nil {
		in.MinCount, in.MaxCount = aws.Int32(1), aws.Int32(1)
	}
	out, err := c.RunInstances(context.Background(), in)
	require.NoError(t, err)
	require.Len(t, out.Instances, 1)
	return out.Instances[0]
}

func createVolume(t *testing.T, c *ec2.Client, in *ec2.CreateVolumeInput) string {
	t.Helper()
	out, err := c.CreateVolume(context.Background(), in)
	require.NoError(t, err)
	return aws.ToString(out.VolumeId)
}

func TestEC2VolumeLifecycle(t *testing.T) {
	srv, c := newEC2(t, awssim.Options{})
	ctx := context.Background()

	_, err := c.CreateVolume(ctx, &ec2.CreateVolumeInput{Size: aws.Int32(1)})
	requireCode(t, err, "MissingParameter", http.StatusBadRequest)
	_, err = c.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1z"), Size: aws.Int32(1)})
	requireCode(t, err, "InvalidParameterValue", http.StatusBadRequest)

	in := &ec2.CreateVolumeInput{
		AvailabilityZone:  aws.String("us-east-1a"),
		Size:              aws.Int32(2),
		VolumeType:        types.VolumeTypeGp3,
		ClientToken:       aws.String("vol-token-1"),
		TagSpecifications: []types.TagSpecification{tagSpec(types.ResourceTypeVolume, "app", "db")},
	}
	out, err := c.CreateVolume(ctx, in)
	require.NoError(t, err)
	volID := aws.ToString(out.VolumeId)
	require.Equal(t, types.VolumeStateCreating, out.State)
	require.Equal(t, int32(3000), aws.ToInt32(out.Iops), "gp3 default IOPS")
	require.Equal(t, map[string]string{"app": "db"}, tagMap(out.Tags))

	again, err := c.CreateVolume(ctx, in)
	require.NoError(t, err)
	require.Equal(t, volID, aws.ToString(again.VolumeId), "same client token, same volume")
	in2 := *in
	in2.Size = aws.Int32(3)
	_, err = c.CreateVolume(ctx, &in2)
	requireCode(t, err, "IdempotentParameterMismatch", http.StatusBadRequest)
	require.Len(t, srv.Volumes(), 1)

	waitVolumeAvailable(t, c, volID)

	inst := runOne(t, c, &ec2.RunInstancesInput{ImageId: aws.String(srv.DefaultImageID()), InstanceType: types.InstanceTypeT3Micro,
		Placement: &types.Placement{AvailabilityZone: aws.String("us-east-1a")}})
	instID := aws.ToString(inst.InstanceId)
	waitRunning(t, c, instID)

	att, err := c.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: &volID, InstanceId: &instID, Device: aws.String("/dev/sdf")})
	require.NoError(t, err)
	require.Equal(t, types.VolumeAttachmentStateAttaching, att.State)
	waitVolumeInUse(t, c, volID)
	_, err = c.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: &volID, InstanceId: &instID, Device: aws.String("/dev/sdg")})
	requireCode(t, err, "VolumeInUse", http.StatusBadRequest)

	// The volume now shows up by attachment, and in the instance's mappings.
	dv, err := c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []types.Filter{
		filter("attachment.instance-id", instID), filter("tag:app", "db"),
	}})
	require.NoError(t, err)
	require.Len(t, dv.Volumes, 1)
	require.Equal(t, volID, aws.ToString(dv.Volumes[0].VolumeId))
	require.Equal(t, types.VolumeAttachmentStateAttached, dv.Volumes[0].Attachments[0].State)
	di, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instID}})
	require.NoError(t, err)
	devices := map[string]string{}
	for _, m := range di.Reservations[0].Instances[0].BlockDeviceMappings {
		devices[aws.ToString(m.DeviceName)] = aws.ToString(m.Ebs.VolumeId)
	}
	require.Equal(t, volID, devices["/dev/sdf"])
	require.Contains(t, devices, "/dev/xvda")

	_, err = c.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: &volID})
	requireCode(t, err, "VolumeInUse", http.StatusBadRequest)
	_, err = c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: aws.String(devices["/dev/xvda"])})
	requireCode(t, err, "IncorrectState", http.StatusBadRequest) // root of a running instance

	_, err = c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: &volID})
	require.NoError(t, err)
	waitVolumeAvailable(t, c, volID)
	_, err = c.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: &volID})
	require.NoError(t, err)
	w := ec2.NewVolumeDeletedWaiter(c, func(o *ec2.VolumeDeletedWaiterOptions) { o.MinDelay, o.MaxDelay = waitMin, waitMax })
	require.NoError(t, w.Wait(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{volID}}, waitFor))
	_, err = c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{volID}})
	requireCode(t, err, "InvalidVolume.NotFound", http.StatusBadRequest)

	_, err = c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []types.Filter{filter("no-such-filter", "x")}})
	requireCode(t, err, "InvalidParameterValue", http.StatusBadRequest)
	_, err = c.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(1), DryRun: aws.Bool(true)})
	requireCode(t, err, "DryRunOperation", http.StatusPreconditionFailed)
}

func TestEC2EncryptedVolumes(t *testing.T) {
	srv, c := newEC2(t, awssim.Options{})
	ctx := context.Background()
	_, err := c.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(1), KmsKeyId: aws.String("alias/dr")})
	requireCode(t, err, "InvalidParameterDependency", http.StatusBadRequest)
	vol := createVolume(t, c, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(1), Encrypted: aws.Bool(true)})
	waitVolumeAvailable(t, c, vol)
	info := srv.Volumes()[0]
	require.True(t, info.Encrypted)
	require.Contains(t, info.KmsKeyID, "arn:aws:kms:us-east-1:123456789012:key/", "the account's default EBS key")
	snap, err := c.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: &vol})
	require.NoError(t, err)
	require.True(t, aws.ToBool(snap.Encrypted))
	require.Equal(t, info.KmsKeyID, aws.ToString(snap.KmsKeyId))
	waitSnapshotCompleted(t, c, aws.ToString(snap.SnapshotId))
	restored, err := c.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1b"), SnapshotId: snap.SnapshotId})
	require.NoError(t, err)
	require.True(t, aws.ToBool(restored.Encrypted), "a volume of an encrypted snapshot is encrypted")
	require.Equal(t, info.KmsKeyID, aws.ToString(restored.KmsKeyId))
	_, err = c.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1b"), SnapshotId: snap.SnapshotId, Size: aws.Int32(1), VolumeType: types.VolumeTypeSt1})
	requireCode(t, err, "InvalidParameterValue", http.StatusBadRequest) // st1 starts at 125 GiB
}

func TestEC2DescribeInstancesPages(t *testing.T) {
	srv, c := newEC2(t, awssim.Options{})
	ctx := context.Background()
	run, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(srv.DefaultImageID()), InstanceType: types.InstanceTypeT3Nano,
		MinCount: aws.Int32(4), MaxCount: aws.Int32(7)})
	require.NoError(t, err)
	require.Len(t, run.Instances, 7)
	var want []string
	for i, in := range run.Instances {
		require.Equal(t, int32(i), aws.ToInt32(in.AmiLaunchIndex))
		want = append(want, aws.ToString(in.InstanceId))
	}
	solo := runOne(t, c, &ec2.RunInstancesInput{ImageId: aws.String(srv.DefaultImageID()), InstanceType: types.InstanceTypeT3Nano})
	want = append(want, aws.ToString(solo.InstanceId))

	var got []string
	reservations := map[string]bool{}
	p := ec2.NewDescribeInstancesPaginator(c, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(5)})
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		require.NoError(t, err)
		pages++
		for _, r := range out.Reservations {
			reservations[aws.ToString(r.ReservationId)] = true
			for _, in := range r.Instances {
				got = append(got, aws.ToString(in.InstanceId))
			}
		}
	}
	require.Equal(t, want, got)
	require.Equal(t, 2, pages)
	require.Len(t, reservations, 2)
	_, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: want[:1], MaxResults: aws.Int32(5)})
	requireCode(t, err, "InvalidParameterCombination", http.StatusBadRequest)

	// Status of stopped instances shows only with IncludeAllInstances.
	waitRunning(t, c, want...)
	_, err = c.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: want[:3]})
	require.NoError(t, err)
	waitStopped(t, c, want[:3]...)
	st, err := c.DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{})
	require.NoError(t, err)
	require.Len(t, st.InstanceStatuses, 5)
	st, err = c.DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{IncludeAllInstances: aws.Bool(true), Filters: []types.Filter{filter("instance-state-name", "stopped")}})
	require.NoError(t, err)
	require.Len(t, st.InstanceStatuses, 3)
	require.Equal(t, types.SummaryStatusNotApplicable, st.InstanceStatuses[0].InstanceStatus.Status)
}

// TestEC2SnapshotDataFlow follows bytes from an EBS direct snapshot into a
// volume, through a guest's writes, into an EC2 snapshot and a new volume.
func TestEC2SnapshotDataFlow(t *testing.T) {
	srv, c := newEC2(t, awssim.Options{})
	ctx := context.Background()

	seed := fill(3*awssim.BlockSize+1000, 1)
	seedID, err := srv.SeedSnapshot(seed, map[string]string{"origin": "backup"})
	require.NoError(t, err)

	vol := createVolume(t, c, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1b"), SnapshotId: &seedID})
	waitVolumeAvailable(t, c, vol)
	got := make([]byte, len(seed))
	require.NoError(t, srv.ReadVolume(vol, 0, got))
	require.Equal(t, seed, got, "a volume holds its snapshot's bytes")

	// A guest changes bytes across the boundary of blocks 0 and 1.
	patch := fill(300, 9)
	require.NoError(t, srv.WriteVolume(vol, awssim.BlockSize-100, patch))
	want := append([]byte(nil), seed...)
	copy(want[awssim.BlockSize-100:], patch)

	snap, err := c.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{
		VolumeId: &vol, Description: aws.String("dr copy"),
		TagSpecifications: []types.TagSpecification{tagSpec(types.ResourceTypeSnapshot, "dr", "copy-1")},
	})
	require.NoError(t, err)
	require.Equal(t, types.SnapshotStatePending, snap.State)
	snapID := aws.ToString(snap.SnapshotId)
	// Writes after the snapshot do not reach it.
	require.NoError(t, srv.WriteVolume(vol, 0, []byte("after the snapshot")))
	waitSnapshotCompleted(t, c, snapID)

	vol2 := createVolume(t, c, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1b"), SnapshotId: &snapID})
	waitVolumeAvailable(t, c, vol2)
	b, err := srv.VolumeBytes(vol2)
	require.NoError(t, err)
	require.Equal(t, want, b[:len(want)])
	require.Equal(t, make([]byte, len(b)-len(want)), b[len(want):])
	sb, err := srv.SnapshotBytes(snapID)
	require.NoError(t, err)
	require.Equal(t, b, sb, "the EBS direct view of the snapshot agrees")
	orig, err := srv.SnapshotBytes(seedID)
	require.NoError(t, err)
	require.Equal(t, seed, orig[:len(seed)], "the seed snapshot is unchanged")

	// Found by tag; the EBS direct snapshot is listed as the account's own
	// too, the built-in images' snapshots only under owner "amazon".
	ds, err := c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, Filters: []types.Filter{filter("tag:dr", "copy-*")}})
	require.NoError(t, err)
	require.Len(t, ds.Snapshots, 1)
	s0 := ds.Snapshots[0]
	require.Equal(t, snapID, aws.ToString(s0.SnapshotId))
	require.Equal(t, vol, aws.ToString(s0.VolumeId))
	require.Equal(t, types.SnapshotStateCompleted, s0.State)
	require.Equal(t, "dr copy", aws.ToString(s0.Description))
	require.Equal(t, int32(1), aws.ToInt32(s0.VolumeSize))
	require.Equal(t, "123456789012", aws.ToString(s0.OwnerId))

	all, err := c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{seedID, snapID}, snapshotIDs(all.Snapshots))
	amazon, err := c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"amazon"}})
	require.NoError(t, err)
	require.Len(t, amazon.Snapshots, 2)

	_, err = c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{seedID, vol2}, Tags: []types.Tag{{Key: aws.String("drill"), Value: aws.String("7")}}})
	require.NoError(t, err)
	ds, err = c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{Filters: []types.Filter{filter("tag-key", "drill")}})
	require.NoError(t, err)
	require.Equal(t, []string{seedID}, snapshotIDs(ds.Snapshots))
	_, err = c.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{seedID}, Tags: []types.Tag{{Key: aws.String("drill"), Value: aws.String("8")}}})
	require.NoError(t, err)
	require.Equal(t, "7", srvSnapshotTag(t, srv, seedID, "drill"), "a DeleteTags value that does not match deletes nothing")
	_, err = c.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{seedID}, Tags: []types.Tag{{Key: aws.String("drill")}}})
	require.NoError(t, err)
	require.Equal(t, "", srvSnapshotTag(t, srv, seedID, "drill"))

	// Pagination over more snapshots than a page.
	var made []string
	for range 7 {
		s, err := c.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: &vol2,
			TagSpecifications: []types.TagSpecification{tagSpec(types.ResourceTypeSnapshot, "batch", "p")}})
		require.NoError(t, err)
		made = append(made, aws.ToString(s.SnapshotId))
	}
	var paged []string
	pages := 0
	p := ec2.NewDescribeSnapshotsPaginator(c, &ec2.DescribeSnapshotsInput{MaxResults: aws.Int32(5), Filters: []types.Filter{filter("tag:batch", "p")}})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		require.NoError(t, err)
		require.LessOrEqual(t, len(out.Snapshots), 5)
		paged = append(paged, snapshotIDs(out.Snapshots)...)
		pages++
	}
	require.Equal(t, made, paged)
	require.Equal(t, 2, pages)
	_, err = c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{MaxResults: aws.Int32(2)})
	requireCode(t, err, "InvalidParameterValue", http.StatusBadRequest)

	_, err = c.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String("snap-0000000000000dead")})
	requireCode(t, err, "InvalidSnapshot.NotFound", http.StatusBadRequest)
	img, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{srv.DefaultImageID()}})
	require.NoError(t, err)
	_, err = c.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: img.Images[0].BlockDeviceMappings[0].Ebs.SnapshotId})
	requireCode(t, err, "InvalidSnapshot.InUse", http.StatusBadRequest)
	_, err = c.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: &snapID})
	require.NoError(t, err)
	_, err = c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{snapID}})
	requireCode(t, err, "InvalidSnapshot.NotFound", http.StatusBadRequest)
}

func snapshotIDs(snaps []types.Snapshot) []string {
	var out []string
	for _, s := range snaps {
		out = append(out, aws.ToString(s.SnapshotId))
	}
	return out
}

func srvSnapshotTag(t *testing.T, srv *awssim.Server, id, key string) string {
	t.Helper()
	info, err := srv.SnapshotInfo(id)
	require.NoError(t, err)
	return info.Tags[key]
}

func TestEC2RunInstancesIdempotent(t *testing.T) {
	srv, c := newEC2(t, awssim.Options{})
	ctx := context.Background()
	userData := "#!/bin/sh\necho recovered\n"
	in := &ec2.RunInstancesInput{
		ImageId: aws.String(srv.DefaultImageID()), InstanceType: types.InstanceTypeM5Large,
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1), ClientToken: aws.String("plan-1/web-1/launch"),
		UserData:          aws.String(base64.StdEncoding.EncodeToString([]byte(userData))),
		TagSpecifications: []types.TagSpecification{tagSpec(types.ResourceTypeInstance, "Name", "web-1")},
	}
	first, err := c.RunInstances(ctx, in)
	require.NoError(t, err)
	second, err := c.RunInstances(ctx, in)
	require.NoError(t, err)
	require.Equal(t, aws.ToString(first.ReservationId), aws.ToString(second.ReservationId))
	require.Equal(t, aws.ToString(first.Instances[0].InstanceId), aws.ToString(second.Instances[0].InstanceId))
	require.Len(t, srv.Instances(), 1, "a retried launch makes no second instance")
	require.Equal(t, "plan-1/web-1/launch", aws.ToString(first.Instances[0].ClientToken))

	other := *in
	other.InstanceType = types.InstanceTypeM5Xlarge
	_, err = c.RunInstances(ctx, &other)
	requireCode(t, err, "IdempotentParameterMismatch", http.StatusBadRequest)

	id := aws.ToString(first.Instances[0].InstanceId)
	attr, err := c.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{InstanceId: &id, Attribute: types.InstanceAttributeNameUserData})
	require.NoError(t, err)
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(attr.UserData.Value))
	require.NoError(t, err)
	require.Equal(t, userData, string(raw))
	require.Equal(t, []byte(userData), srv.Instances()[0].UserData)

	bad := *in
	bad.ClientToken = nil
	bad.InstanceType = "m5.huge"
	_, err = c.RunInstances(ctx, &bad)
	requireCode(t, err, "InvalidParameterValue", http.StatusBadRequest)
	bad.InstanceType = types.InstanceTypeT3Micro
	bad.ImageId = aws.String("ami-00000000000000bad")
	_, err = c.RunInstances(ctx, &bad)
	requireCode(t, err, "InvalidAMIID.NotFound", http.StatusBadRequest)
	drSnap, err := srv.SeedSnapshot([]byte("a replicated boot disk"), nil)
	require.NoError(t, err)
	bad.ImageId = aws.String(srv.DefaultImageID())
	bad.BlockDeviceMappings = []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"), Ebs: &types.EbsBlockDevice{SnapshotId: &drSnap}}}
	_, err = c.RunInstances(ctx, &bad)
	requireCode(t, err, "InvalidBlockDeviceMapping", http.StatusBadRequest)
	bad.BlockDeviceMappings = []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"), Ebs: &types.EbsBlockDevice{VolumeSize: aws.Int32(4)}}}
	_, err = c.RunInstances(ctx, &bad)
	requireCode(t, err, "InvalidBlockDeviceMapping", http.StatusBadRequest) // smaller than the image's 8 GiB snapshot
	require.Len(t, srv.Instances(), 1)
	require.Len(t, srv.Volumes(), 1, "a failed launch leaves no volume behind")
}

func TestEC2PrivateIPAndNetworks(t *testing.T) {
	srv, c := newEC2(t, awssim.Options{})
	ctx := context.Background()

	// An isolated drill network, made and cleaned up through the API.
	vpc, err := c.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.20.0.0/16"),
		TagSpecifications: []types.TagSpecification{tagSpec(types.ResourceTypeVpc, "purpose", "drill")}})
	require.NoError(t, err)
	vpcID := aws.ToString(vpc.Vpc.VpcId)
	sub, err := c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: &vpcID, CidrBlock: aws.String("10.20.1.0/24"), AvailabilityZone: aws.String("us-east-1c")})
	require.NoError(t, err)
	subID := aws.ToString(sub.Subnet.SubnetId)
	require.Equal(t, int32(251), aws.ToInt32(sub.Subnet.AvailableIpAddressCount))
	_, err = c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: &vpcID, CidrBlock: aws.String("10.20.1.128/25")})
	requireCode(t, err, "InvalidSubnet.Conflict", http.StatusBadRequest)
	_, err = c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: &vpcID, CidrBlock: aws.String("10.99.0.0/24")})
	requireCode(t, err, "InvalidSubnet.Range", http.StatusBadRequest)
	sg, err := c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("drill-web"), Description: aws.String("drill"), VpcId: &vpcID})
	require.NoError(t, err)
	sgID := aws.ToString(sg.GroupId)
	_, err = c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("drill-web"), Description: aws.String("again"), VpcId: &vpcID})
	requireCode(t, err, "InvalidGroup.Duplicate", http.StatusBadRequest)

	launch := func(ip string) (*ec2.RunInstancesOutput, error) {
		return c.RunInstances(ctx, &ec2.RunInstancesInput{
			ImageId: aws.String(srv.DefaultImageID()), InstanceType: types.InstanceTypeT3Small,
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1), SubnetId: &subID, SecurityGroupIds: []string{sgID},
			PrivateIpAddress: aws.String(ip),
		})
	}
	_, err = launch("10.20.2.10")
	requireCode(t, err, "InvalidParameterValue", http.StatusBadRequest)
	_, err = launch("10.20.1.2")
	requireCode(t, err, "InvalidParameterValue", http.StatusBadRequest) // reserved
	run, err := launch("10.20.1.10")
	require.NoError(t, err)
	in := run.Instances[0]
	require.Equal(t, "10.20.1.10", aws.ToString(in.PrivateIpAddress))
	require.Equal(t, vpcID, aws.ToString(in.VpcId))
	require.Equal(t, "us-east-1c", aws.ToString(in.Placement.AvailabilityZone))
	_, err = launch("10.20.1.10")
	requireCode(t, err, "InvalidIPAddress.InUse", http.StatusBadRequest)
	// Security groups must be of the subnet's VPC.
	_, err = c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(srv.DefaultImageID()), InstanceType: types.InstanceTypeT3Small,
		MinCount: aws.Int32(1), MaxCount: aws.Int32(1), SecurityGroupIds: []string{sgID}})
	requireCode(t, err, "InvalidParameter", http.StatusBadRequest)

	for _, f := range [][]types.Filter{
		{filter("subnet-id", subID)}, {filter("vpc-id", vpcID)}, {filter("private-ip-address", "10.20.1.10")},
		{filter("instance.group-id", sgID), filter("instance-state-name", "pending", "running")},
	} {
		di, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: f})
		require.NoError(t, err)
		require.Len(t, di.Reservations, 1, "filters %v", f)
	}
	ds, err := c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []types.Filter{filter("vpc-id", vpcID)}})
	require.NoError(t, err)
	require.Len(t, ds.Subnets, 1)
	require.Equal(t, int32(250), aws.ToInt32(ds.Subnets[0].AvailableIpAddressCount))
	dv, err := c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{Filters: []types.Filter{filter("tag:purpose", "drill")}})
	require.NoError(t, err)
	require.Len(t, dv.Vpcs, 1)
	defaults, err := c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{Filters: []types.Filter{filter("is-default", "true")}})
	require.NoError(t, err)
	require.Len(t, defaults.Vpcs, 1)
	require.Equal(t, "172.31.0.0/16", aws.ToString(defaults.Vpcs[0].CidrBlock))

	// Clean-up order is enforced.
	_, err = c.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: &subID})
	requireCode(t, err, "DependencyViolation", http.StatusBadRequest)
	_, err = c.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: &sgID})
	requireCode(t, err, "DependencyViolation", http.StatusBadRequest)
	_, err = c.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: &vpcID})
	requireCode(t, err, "DependencyViolation", http.StatusBadRequest)
	_, err = c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{aws.ToString(in.InstanceId)}})
	require.NoError(t, err)
	waitTerminated(t, c, aws.ToString(in.InstanceId))
	_, err = c.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: &sgID})
	require.NoError(t, err)
	_, err = c.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: &subID})
	require.NoError(t, err)
	_, err = c.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: &vpcID})
	require.NoError(t, err)
	_, err = c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{VpcIds: []string{vpcID}})
	requireCode(t, err, "InvalidVpcID.NotFound", http.StatusBadRequest)
}

// TestEC2RootVolumeSwap does what failover does to boot a replicated disk:
// stop, detach the image's root, attach the DR volume at the root device,
// start.
func TestEC2RootVolumeSwap(t *testing.T) {
	srv, c := newEC2(t, awssim.Options{})
	ctx := context.Background()

	inst := runOne(t, c, &ec2.RunInstancesInput{
		ImageId: aws.String(srv.DefaultImageID()), InstanceType: types.InstanceTypeT3Micro,
		BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/sdf"), Ebs: &types.EbsBlockDevice{VolumeSize: aws.Int32(2)}}},
	})
	id := aws.ToString(inst.InstanceId)
	require.Equal(t, types.InstanceStateNamePending, inst.State.Name)
	waitRunning(t, c, id)

	st, err := c.DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	require.Equal(t, types.SummaryStatusInitializing, st.InstanceStatuses[0].InstanceStatus.Status)
	st, err = c.DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	require.Equal(t, types.SummaryStatusOk, st.InstanceStatuses[0].InstanceStatus.Status)
	require.Equal(t, types.SummaryStatusOk, st.InstanceStatuses[0].SystemStatus.Status)

	oldRoot := srv.Instances()[0].Volumes["/dev/xvda"]
	data := srv.Instances()[0].Volumes["/dev/sdf"]
	require.NotEmpty(t, oldRoot)
	require.NotEmpty(t, data)

	// The DR copy becomes a volume in the instance's zone.
	payload := fill(awssim.BlockSize+17, 3)
	drSnap, err := srv.SeedSnapshot(payload, map[string]string{"vm": "web-1"})
	require.NoError(t, err)
	newRoot := createVolume(t, c, &ec2.CreateVolumeInput{AvailabilityZone: inst.Placement.AvailabilityZone, SnapshotId: &drSnap})
	waitVolumeAvailable(t, c, newRoot)

	_, err = c.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: &id, InstanceType: &types.AttributeValue{Value: aws.String("m5.large")}})
	requireCode(t, err, "IncorrectInstanceState", http.StatusBadRequest)

	_, err = c.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	waitStopped(t, c, id)

	_, err = c.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: &id, InstanceType: &types.AttributeValue{Value: aws.String("m5.large")}})
	require.NoError(t, err)
	_, err = c.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: &id, UserData: &types.SecureBlobAttributeValue{Value: []byte("new user data")}})
	require.NoError(t, err)
	attr, err := c.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{InstanceId: &id, Attribute: types.InstanceAttributeNameInstanceType})
	require.NoError(t, err)
	require.Equal(t, "m5.large", aws.ToString(attr.InstanceType.Value))
	require.Equal(t, []byte("new user data"), srv.Instances()[0].UserData)

	_, err = c.DetachVolume(ctx, &ec2.DetachVolumeInput{VolumeId: &oldRoot, InstanceId: &id})
	require.NoError(t, err)
	waitVolumeAvailable(t, c, oldRoot)
	_, err = c.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: []string{id}})
	requireCode(t, err, "InvalidParameterValue", http.StatusBadRequest) // no root volume
	_, err = c.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: &newRoot, InstanceId: &id, Device: aws.String("/dev/xvda")})
	require.NoError(t, err)
	waitVolumeInUse(t, c, newRoot)
	_, err = c.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: &id, BlockDeviceMappings: []types.InstanceBlockDeviceMappingSpecification{{
		DeviceName: aws.String("/dev/xvda"), Ebs: &types.EbsInstanceBlockDeviceSpecification{DeleteOnTermination: aws.Bool(true)},
	}}})
	require.NoError(t, err)

	_, err = c.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	waitRunning(t, c, id)
	info := srv.Instances()[0]
	require.Equal(t, "m5.large", info.InstanceType)
	require.Equal(t, newRoot, info.Volumes["/dev/xvda"])
	got := make([]byte, len(payload))
	require.NoError(t, srv.ReadVolume(newRoot, 0, got))
	require.Equal(t, payload, got)

	_, err = c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	waitTerminated(t, c, id)
	// Root (DeleteOnTermination set) and the launch-time data volume
	// (default true) are gone; the detached image root stays.
	var left []string
	for _, v := range srv.Volumes() {
		left = append(left, v.ID)
	}
	require.Equal(t, []string{oldRoot}, left)
	_, err = c.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: []string{id}})
	requireCode(t, err, "IncorrectInstanceState", http.StatusBadRequest)
}

func TestEC2CreateSnapshotsCrashConsistent(t *testing.T) {
	srv, c := newEC2(t, awssim.Options{})
	ctx := context.Background()
	inst := runOne(t, c, &ec2.RunInstancesInput{
		ImageId: aws.String(srv.DefaultImageID()), InstanceType: types.InstanceTypeC5Large,
		BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/sdf"), Ebs: &types.EbsBlockDevice{VolumeSize: aws.Int32(1)}}},
		TagSpecifications:   []types.TagSpecification{tagSpec(types.ResourceTypeVolume, "vm", "db-1")},
	})
	id := aws.ToString(inst.InstanceId)
	waitRunning(t, c, id)
	vols := srv.Instances()[0].Volumes
	require.NoError(t, srv.WriteVolume(vols["/dev/xvda"], 4096, []byte("root-data")))
	require.NoError(t, srv.WriteVolume(vols["/dev/sdf"], 0, []byte("db-data")))

	out, err := c.CreateSnapshots(ctx, &ec2.CreateSnapshotsInput{
		InstanceSpecification: &types.InstanceSpecification{InstanceId: &id},
		CopyTagsFromSource:    types.CopyTagsFromSourceVolume,
		TagSpecifications:     []types.TagSpecification{tagSpec(types.ResourceTypeSnapshot, "set", "s1")},
	})
	require.NoError(t, err)
	require.Len(t, out.Snapshots, 2)
	var ids []string
	for _, s := range out.Snapshots {
		require.Equal(t, *out.Snapshots[0].StartTime, *s.StartTime, "one instant for all volumes")
		require.Equal(t, map[string]string{"vm": "db-1", "set": "s1"}, tagMap(s.Tags))
		ids = append(ids, aws.ToString(s.SnapshotId))
	}
	waitSnapshotCompleted(t, c, ids...)
	for _, s := range out.Snapshots {
		want := []byte("root-data")
		off := 4096
		if aws.ToString(s.VolumeId) == vols["/dev/sdf"] {
			want, off = []byte("db-data"), 0
		}
		b, err := srv.SnapshotBytes(aws.ToString(s.SnapshotId))
		require.NoError(t, err)
		require.Equal(t, want, b[off:off+len(want)])
	}

	out, err = c.CreateSnapshots(ctx, &ec2.CreateSnapshotsInput{
		InstanceSpecification: &types.InstanceSpecification{InstanceId: &id, ExcludeBootVolume: aws.Bool(true)},
	})
	require.NoError(t, err)
	require.Len(t, out.Snapshots, 1)
	require.Equal(t, vols["/dev/sdf"], aws.ToString(out.Snapshots[0].VolumeId))
}

func TestEC2ThrottlingRetried(t *testing.T) {
	srv, c := newEC2(t, awssim.Options{})
	ctx := context.Background()
	inst := runOne(t, c, &ec2.RunInstancesInput{ImageId: aws.String(srv.DefaultImageID()), InstanceType: types.InstanceTypeT3Micro,
		TagSpecifications: []types.TagSpecification{tagSpec(types.ResourceTypeInstance, "Name", "app")}})

	srv.Throttle("DescribeInstances", 0.2)
	const n = 40
	before := srv.Calls("DescribeInstances")
	for range n {
		out, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{filter("tag:Name", "app")}})
		require.NoError(t, err)
		require.Equal(t, aws.ToString(inst.InstanceId), aws.ToString(out.Reservations[0].Instances[0].InstanceId))
	}
	retried := srv.Calls("DescribeInstances") - before - n
	require.Greater(t, retried, 2, "about a fifth of the calls were throttled and retried")
	require.Less(t, retried, n)

	// Without retries the throttling error and its status are visible.
	srv.ClearFaults()
	srv.ThrottleNth("DescribeVolumes", 1)
	_, err := c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{}, func(o *ec2.Options) { o.RetryMaxAttempts = 1 })
	requireCode(t, err, "RequestLimitExceeded", http.StatusServiceUnavailable)
	var re *awshttp.ResponseError
	require.True(t, errors.As(err, &re) && re.ServiceRequestID() != "", "request ID parsed from the error")
	srv.FailNth("CreateTags", 1)
	_, err = c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{aws.ToString(inst.InstanceId)}, Tags: []types.Tag{{Key: aws.String("k"), Value: aws.String("v")}}})
	require.NoError(t, err, "an InternalError is retried")
	require.Equal(t, "v", srv.Instances()[0].Tags["k"])
}

func TestEC2DescribeInstanceTypes(t *testing.T) {
	_, c := newEC2(t, awssim.Options{})
	ctx := context.Background()
	out, err := c.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: []types.InstanceType{
		types.InstanceTypeT3Micro, types.InstanceTypeM5Xlarge, types.InstanceTypeC54xlarge, types.InstanceTypeR5Large, types.InstanceTypeM6iLarge,
	}})
	require.NoError(t, err)
	got := map[types.InstanceType][2]int64{}
	for _, it := range out.InstanceTypes {
		got[it.InstanceType] = [2]int64{int64(aws.ToInt32(it.VCpuInfo.DefaultVCpus)), aws.ToInt64(it.MemoryInfo.SizeInMiB)}
	}
	require.Equal(t, map[types.InstanceType][2]int64{
		"t3.micro": {2, 1024}, "m5.xlarge": {4, 16384}, "c5.4xlarge": {16, 32768}, "r5.large": {2, 16384}, "m6i.large": {2, 8192},
	}, got)

	_, err = c.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: []types.InstanceType{"t3.giant"}})
	requireCode(t, err, "InvalidInstanceType", http.StatusBadRequest)

	// Every 2-vCPU, 8 GiB type, a page at a time.
	var names []string
	p := ec2.NewDescribeInstanceTypesPaginator(c, &ec2.DescribeInstanceTypesInput{MaxResults: aws.Int32(5), Filters: []types.Filter{
		filter("vcpu-info.default-vcpus", "2"), filter("memory-info.size-in-mib", "8192"),
	}})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		require.NoError(t, err)
		for _, it := range page.InstanceTypes {
			names = append(names, string(it.InstanceType))
		}
	}
	require.Equal(t, []string{"m5.large", "m6i.large", "t2.large", "t3.large", "t3a.large"}, names)
}

func TestEC2RegisterImage(t *testing.T) {
	srv, c := newEC2(t, awssim.Options{})
	ctx := context.Background()
	root, err := srv.SeedSnapshot(bytes.Repeat([]byte{7}, 1000), nil)
	require.NoError(t, err)
	reg := func(ena bool, name string) (*ec2.RegisterImageOutput, error) {
		return c.RegisterImage(ctx, &ec2.RegisterImageInput{
			Name: aws.String(name), RootDeviceName: aws.String("/dev/sda1"), VirtualizationType: aws.String("hvm"),
			EnaSupport:          aws.Bool(ena),
			BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/sda1"), Ebs: &types.EbsBlockDevice{SnapshotId: &root}}},
		})
	}
	noENA, err := reg(false, "dr-no-ena")
	require.NoError(t, err)
	_, err = c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: noENA.ImageId, InstanceType: types.InstanceTypeT3Micro, MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	requireCode(t, err, "InvalidParameterCombination", http.StatusBadRequest)
	img, err := reg(true, "dr-web-1")
	require.NoError(t, err)
	_, err = reg(true, "dr-web-1")
	requireCode(t, err, "InvalidAMIName.Duplicate", http.StatusBadRequest)
	inst := runOne(t, c, &ec2.RunInstancesInput{ImageId: img.ImageId, InstanceType: types.InstanceTypeT3Micro})
	require.Equal(t, "/dev/sda1", aws.ToString(inst.RootDeviceName))
	vol := srv.Instances()[0].Volumes["/dev/sda1"]
	b, err := srv.VolumeBytes(vol)
	require.NoError(t, err)
	require.Equal(t, bytes.Repeat([]byte{7}, 1000), b[:1000])

	own, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}})
	require.NoError(t, err)
	require.Len(t, own.Images, 2)
	_, err = c.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: &root})
	requireCode(t, err, "InvalidSnapshot.InUse", http.StatusBadRequest)
	for _, im := range own.Images {
		_, err = c.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: im.ImageId})
		require.NoError(t, err)
	}
	_, err = c.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: &root})
	require.NoError(t, err)
}

// TestEC2TransitionDelay checks the time-driven lifecycle: with a
// TransitionDelay, states advance when the clock says so, not on looks.
func TestEC2TransitionDelay(t *testing.T) {
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var offset atomic.Int64
	clock := func() time.Time { return start.Add(time.Duration(offset.Load())) }
	_, c := newEC2(t, awssim.Options{Now: clock, TransitionDelay: time.Minute})
	ctx := context.Background()
	vol := createVolume(t, c, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(1)})
	for range 3 {
		out, err := c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
		require.NoError(t, err)
		require.Equal(t, types.VolumeStateCreating, out.Volumes[0].State)
	}
	offset.Store(int64(time.Minute))
	out, err := c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{vol}})
	require.NoError(t, err)
	require.Equal(t, types.VolumeStateAvailable, out.Volumes[0].State)
	require.Equal(t, start, aws.ToTime(out.Volumes[0].CreateTime))
}
