package awssim_test

import (
	"context"
	"encoding/base64"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/awssim"
	oracles "github.com/opendraas/draas/internal/oracle"
)

// The moto oracle: one scenario of the EC2 and Route53 calls disaster
// recovery makes runs against awssim and against moto_server, a Python AWS
// emulator nobody here wrote. Assertions are on what both must agree on
// (and what AWS documents), so a response shape or behaviour awssim invents
// shows up as a failure on one side.

// oracle is an endpoint the scenario runs against.
type oracle struct {
	ec2     *ec2.Client
	r53     *route53.Client
	imageID string // an EBS-backed image to launch
	// gaps are the known places where the oracle departs from AWS's
	// documented behaviour; the scenario logs them instead of failing.
	gaps map[string]bool
	// shapes collects, per operation, the paths of the response fields
	// that were set, to compare the two sides' response shapes.
	shapes map[string]map[string]bool
}

// expect checks that err is the API error code with the HTTP status. Where
// the oracle has the named gap, a mismatch is logged instead.
func (o oracle) expect(t *testing.T, gap string, err error, code string, status int) {
	t.Helper()
	if o.gaps[gap] {
		t.Logf("known gap %q: got %v", gap, err)
		return
	}
	requireCode(t, err, code, status)
}

// record notes which fields of an operation's decoded response are set.
func (o oracle) record(op string, out any) {
	if o.shapes[op] == nil {
		o.shapes[op] = map[string]bool{}
	}
	fieldPaths(reflect.ValueOf(out), "", o.shapes[op])
}

// fieldPaths adds the paths of the set fields of v to paths: nil pointers,
// empty strings and empty slices are unset; slice elements merge under [].
func fieldPaths(v reflect.Value, path string, paths map[string]bool) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			fieldPaths(v.Elem(), path, paths)
		}
	case reflect.Struct:
		if v.Type().PkgPath() == "time" {
			paths[path] = true
			return
		}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if f.IsExported() && f.Name != "ResultMetadata" {
				fieldPaths(v.Field(i), path+"."+f.Name, paths)
			}
		}
	case reflect.Slice, reflect.Map:
		if v.Len() > 0 {
			paths[path] = true
		}
		if v.Kind() == reflect.Slice {
			for i := range v.Len() {
				fieldPaths(v.Index(i), path+"[]", paths)
			}
		}
	case reflect.String:
		if v.Len() > 0 {
			paths[path] = true
		}
	default:
		paths[path] = true
	}
}

// Known gaps of moto 5.2 against AWS's documented behaviour, each seen on
// the wire. Where a gap is set, the scenario logs what the oracle did
// instead of failing; where the probe would corrupt later steps, it is not
// sent at all.
const (
	// RunInstances ignores ClientToken and launches again; AWS returns the
	// first launch's reservation.
	gapRunClientToken = "RunInstances ClientToken"
	// The root volume is attached at /dev/sda1 whatever the image's (and
	// the instance's) RootDeviceName.
	gapRootDevice = "root volume device name"
	// DetachVolume without InstanceId (optional in AWS) fails with an HTTP
	// 500 whose body is not XML.
	gapDetachInstance = "DetachVolume without InstanceId"
	// ModifyInstanceAttribute changes the type of a running instance; AWS
	// answers IncorrectInstanceState.
	gapModifyRunning = "ModifyInstanceAttribute InstanceType while running"
	// RunInstances launches an unknown instance type; AWS answers
	// InvalidParameterValue.
	gapInstanceType = "RunInstances with an unknown instance type"
	// AttachVolume attaches an attached volume again (and keeps both
	// mappings); AWS answers VolumeInUse.
	gapAttachInUse = "AttachVolume of an attached volume"
	// DescribeSnapshots ignores MaxResults.
	gapSnapshotPaging = "DescribeSnapshots MaxResults"
	// DeleteSubnet deletes a subnet that has an instance; AWS answers
	// DependencyViolation.
	gapSubnetDependency = "DeleteSubnet with an instance in it"
	// CreateHostedZone with a CallerReference used before makes a second
	// zone; AWS answers HostedZoneAlreadyExists (409).
	gapZoneCallerRef = "CreateHostedZone with a used CallerReference"
	// GetChange answers INSYNC for any change ID; AWS answers NoSuchChange.
	gapNoSuchChange = "GetChange of an unknown change"
	// A Route53 CREATE of a record set that exists with other values
	// succeeds; only an exact repeat of an earlier CREATE is refused.
	gapCreateConflict = "Route53 CREATE over an existing record set"
	// A Route53 DELETE whose values do not match fails with InvalidInput
	// instead of InvalidChangeBatch.
	gapDeleteMismatch = "Route53 DELETE mismatch error code"
)

// motoGaps are the gaps of the moto_server these tests start.
func motoGaps() map[string]bool {
	m := map[string]bool{}
	for _, g := range []string{
		gapRunClientToken, gapRootDevice, gapDetachInstance, gapModifyRunning, gapInstanceType,
		gapAttachInUse, gapSnapshotPaging, gapSubnetDependency, gapZoneCallerRef, gapNoSuchChange,
		gapCreateConflict, gapDeleteMismatch,
	} {
		m[g] = true
	}
	return m
}

// motoImage is the one AMI moto is started with (MOTO_AMIS_PATH), which
// also spares it loading ~1200 default images (10 s).
const motoImage = `[{"ami_id": "ami-0a1b2c3d4e5f60718", "state": "available", "public": true,
 "owner_id": "137112412989", "image_location": "amazon/draas-oracle", "sriov": "simple",
 "root_device_type": "ebs", "root_device_name": "/dev/xvda", "description": "draas oracle image",
 "image_type": "machine", "platform": null, "architecture": "x86_64", "name": "draas-oracle-x86_64",
 "virtualization_type": "hvm", "hypervisor": "xen"}]`

func TestMotoOracle(t *testing.T) {
	sim := map[string]map[string]bool{}
	t.Run("awssim", func(t *testing.T) {
		srv, err := awssim.New(awssim.Options{})
		require.NoError(t, err)
		t.Cleanup(srv.Close)
		cfg := sdkConfig(srv.URL)
		drScenario(t, oracle{ec2: ec2.NewFromConfig(cfg), r53: route53.NewFromConfig(cfg), imageID: srv.DefaultImageID(), shapes: sim})
	})
	moto := map[string]map[string]bool{}
	t.Run("moto", func(t *testing.T) {
		url := startMoto(t)
		cfg := sdkConfig(url)
		o := oracle{ec2: ec2.NewFromConfig(cfg), r53: route53.NewFromConfig(cfg), shapes: moto, gaps: motoGaps()}
		imgs, err := o.ec2.DescribeImages(context.Background(), &ec2.DescribeImagesInput{
			Owners:  []string{"amazon"},
			Filters: []ec2types.Filter{filter("root-device-type", "ebs"), filter("architecture", "x86_64")},
		})
		require.NoError(t, err)
		require.Len(t, imgs.Images, 1, "moto was started with one image")
		o.imageID = aws.ToString(imgs.Images[0].ImageId)
		drScenario(t, o)
	})
	// Response shapes: the fields one side sets and the other does not.
	// Informational: each side models a different subset of AWS's fields.
	for _, op := range slices.Sorted(maps.Keys(sim)) {
		if moto[op] == nil {
			continue
		}
		var onlySim, onlyMoto []string
		for p := range sim[op] {
			if !moto[op][p] {
				onlySim = append(onlySim, p)
			}
		}
		for p := range moto[op] {
			if !sim[op][p] {
				onlyMoto = append(onlyMoto, p)
			}
		}
		slices.Sort(onlySim)
		slices.Sort(onlyMoto)
		if len(onlySim)+len(onlyMoto) > 0 {
			t.Logf("%s: set by awssim only: %v; by moto only: %v", op, onlySim, onlyMoto)
		}
	}
}

// startMoto runs moto_server with the image that launches use until the
// test ends, and returns its URL (see oracle.StartMoto).
func startMoto(t *testing.T) string {
	t.Helper()
	amis := filepath.Join(t.TempDir(), "amis.json")
	require.NoError(t, os.WriteFile(amis, []byte(motoImage), 0o600))
	return oracles.StartMoto(t, "MOTO_AMIS_PATH="+amis)
}

// drScenario is the DR cycle's control plane: volumes and snapshots with
// tags, an instance launched idempotently, stopped, resized, given a data
// volume, snapshotted and terminated, an isolated network built and torn
// down, and DNS records switched.
func drScenario(t *testing.T, o oracle) {
	ctx := context.Background()
	c := o.ec2
	const az = "us-east-1a"

	zones, err := c.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{})
	require.NoError(t, err)
	var zoneNames []string
	for _, z := range zones.AvailabilityZones {
		zoneNames = append(zoneNames, aws.ToString(z.ZoneName))
	}
	require.Contains(t, zoneNames, az)

	// A replicated disk becomes a volume; the volume is snapshotted.
	vol, err := c.CreateVolume(ctx, &ec2.CreateVolumeInput{
		AvailabilityZone: aws.String(az), Size: aws.Int32(2), VolumeType: ec2types.VolumeTypeGp3,
		TagSpecifications: []ec2types.TagSpecification{tagSpec(ec2types.ResourceTypeVolume, "draas:vm", "db-1", "draas:plan", "p1")},
	})
	require.NoError(t, err)
	o.record("CreateVolume", vol)
	volID := aws.ToString(vol.VolumeId)
	require.True(t, strings.HasPrefix(volID, "vol-"), volID)
	require.Equal(t, int32(2), aws.ToInt32(vol.Size))
	require.Equal(t, az, aws.ToString(vol.AvailabilityZone))
	require.Equal(t, ec2types.VolumeTypeGp3, vol.VolumeType)
	require.Equal(t, map[string]string{"draas:vm": "db-1", "draas:plan": "p1"}, tagMap(vol.Tags))
	waitVolumeAvailable(t, c, volID)

	dv, err := c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{Filters: []ec2types.Filter{filter("tag:draas:vm", "db-1")}})
	require.NoError(t, err)
	o.record("DescribeVolumes", dv)
	require.Len(t, dv.Volumes, 1)
	require.Equal(t, volID, aws.ToString(dv.Volumes[0].VolumeId))
	require.Equal(t, ec2types.VolumeStateAvailable, dv.Volumes[0].State)
	require.Empty(t, dv.Volumes[0].Attachments)

	snap, err := c.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{
		VolumeId: &volID, Description: aws.String("draas copy of db-1"),
		TagSpecifications: []ec2types.TagSpecification{tagSpec(ec2types.ResourceTypeSnapshot, "draas:vm", "db-1", "draas:rp", "rp-7")},
	})
	require.NoError(t, err)
	o.record("CreateSnapshot", snap)
	snapID := aws.ToString(snap.SnapshotId)
	require.True(t, strings.HasPrefix(snapID, "snap-"), snapID)
	require.Equal(t, volID, aws.ToString(snap.VolumeId))
	waitSnapshotCompleted(t, c, snapID)
	ds, err := c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{
		OwnerIds: []string{"self"}, Filters: []ec2types.Filter{filter("tag:draas:vm", "db-1"), filter("status", "completed")},
	})
	require.NoError(t, err)
	o.record("DescribeSnapshots", ds)
	require.Len(t, ds.Snapshots, 1)
	s0 := ds.Snapshots[0]
	require.Equal(t, snapID, aws.ToString(s0.SnapshotId))
	require.Equal(t, int32(2), aws.ToInt32(s0.VolumeSize))
	require.Equal(t, "draas copy of db-1", aws.ToString(s0.Description))
	require.Equal(t, map[string]string{"draas:vm": "db-1", "draas:rp": "rp-7"}, tagMap(s0.Tags))
	ds, err = c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, Filters: []ec2types.Filter{filter("volume-id", volID)}})
	require.NoError(t, err)
	require.Len(t, ds.Snapshots, 1)

	restored, err := c.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(az), SnapshotId: &snapID})
	require.NoError(t, err)
	restoredID := aws.ToString(restored.VolumeId)
	require.Equal(t, snapID, aws.ToString(restored.SnapshotId))
	require.Equal(t, int32(2), aws.ToInt32(restored.Size), "size defaults to the snapshot's")
	waitVolumeAvailable(t, c, restoredID)

	// Launch, idempotently.
	userData := "#!/bin/sh\necho failed over\n"
	run := &ec2.RunInstancesInput{
		ImageId: aws.String(o.imageID), InstanceType: ec2types.InstanceTypeT3Micro, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		ClientToken: aws.String("p1/db-1/launch"), Placement: &ec2types.Placement{AvailabilityZone: aws.String(az)},
		UserData:          aws.String(base64.StdEncoding.EncodeToString([]byte(userData))),
		TagSpecifications: []ec2types.TagSpecification{tagSpec(ec2types.ResourceTypeInstance, "Name", "db-1", "draas:plan", "p1")},
	}
	first, err := c.RunInstances(ctx, run)
	require.NoError(t, err)
	o.record("RunInstances", first)
	require.Len(t, first.Instances, 1)
	inst := first.Instances[0]
	instID := aws.ToString(inst.InstanceId)
	require.True(t, strings.HasPrefix(instID, "i-"), instID)
	require.Equal(t, ec2types.InstanceTypeT3Micro, inst.InstanceType)
	require.Equal(t, az, aws.ToString(inst.Placement.AvailabilityZone))
	require.NotEmpty(t, aws.ToString(inst.PrivateIpAddress))
	require.NotEmpty(t, aws.ToString(inst.SubnetId))
	require.NotEmpty(t, aws.ToString(inst.VpcId))
	again, err := c.RunInstances(ctx, run)
	require.NoError(t, err)
	if dup := aws.ToString(again.Instances[0].InstanceId); dup != instID {
		require.True(t, o.gaps[gapRunClientToken], "same client token, same instance: got %s and %s", instID, dup)
		t.Logf("known gap: %s; terminating the duplicate %s", gapRunClientToken, dup)
		_, err = c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{dup}})
		require.NoError(t, err)
	}
	waitRunning(t, c, instID)

	di, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		filter("tag:draas:plan", "p1"), filter("instance-state-name", "running"),
	}})
	require.NoError(t, err)
	o.record("DescribeInstances", di)
	require.Len(t, di.Reservations, 1)
	require.Len(t, di.Reservations[0].Instances, 1)
	got := di.Reservations[0].Instances[0]
	require.Equal(t, instID, aws.ToString(got.InstanceId))
	require.Equal(t, ec2types.InstanceStateNameRunning, got.State.Name)
	require.Equal(t, int32(16), aws.ToInt32(got.State.Code))
	require.Equal(t, map[string]string{"Name": "db-1", "draas:plan": "p1"}, tagMap(got.Tags))
	require.Len(t, got.BlockDeviceMappings, 1, "the root volume")
	if root, dev := aws.ToString(got.RootDeviceName), aws.ToString(got.BlockDeviceMappings[0].DeviceName); root != dev {
		require.True(t, o.gaps[gapRootDevice], "root volume at %s, RootDeviceName %s", dev, root)
		t.Logf("known gap: %s: RootDeviceName %s, root volume at %s", gapRootDevice, root, dev)
	}

	st, err := c.DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{InstanceIds: []string{instID}})
	require.NoError(t, err)
	o.record("DescribeInstanceStatus", st)
	require.Len(t, st.InstanceStatuses, 1)
	require.Equal(t, ec2types.InstanceStateNameRunning, st.InstanceStatuses[0].InstanceState.Name)

	it, err := c.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: []ec2types.InstanceType{ec2types.InstanceTypeT3Micro, ec2types.InstanceTypeM5Large}})
	require.NoError(t, err)
	o.record("DescribeInstanceTypes", it)
	require.Len(t, it.InstanceTypes, 2)
	for _, x := range it.InstanceTypes {
		require.Equal(t, int32(2), aws.ToInt32(x.VCpuInfo.DefaultVCpus), string(x.InstanceType))
		want := map[ec2types.InstanceType]int64{"t3.micro": 1024, "m5.large": 8192}[x.InstanceType]
		require.Equal(t, want, aws.ToInt64(x.MemoryInfo.SizeInMiB), string(x.InstanceType))
	}

	_, err = c.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: []ec2types.InstanceType{"t3.giant"}})
	requireCode(t, err, "InvalidInstanceType", http.StatusBadRequest)
	_, err = c.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: &instID, InstanceType: &ec2types.AttributeValue{Value: aws.String("t3.small")}})
	o.expect(t, gapModifyRunning, err, "IncorrectInstanceState", http.StatusBadRequest)
	bad, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(o.imageID), InstanceType: "t3.giant", MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	o.expect(t, gapInstanceType, err, "InvalidParameterValue", http.StatusBadRequest)
	if err == nil {
		_, err = c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{aws.ToString(bad.Instances[0].InstanceId)}})
		require.NoError(t, err)
	}

	// A data volume is attached; the instance is stopped and resized.
	att, err := c.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: &restoredID, InstanceId: &instID, Device: aws.String("/dev/sdf")})
	require.NoError(t, err)
	o.record("AttachVolume", att)
	waitVolumeInUse(t, c, restoredID)
	dv, err = c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{restoredID}})
	require.NoError(t, err)
	o.record("DescribeVolumes", dv)
	require.Len(t, dv.Volumes[0].Attachments, 1)
	require.Equal(t, instID, aws.ToString(dv.Volumes[0].Attachments[0].InstanceId))
	require.Equal(t, "/dev/sdf", aws.ToString(dv.Volumes[0].Attachments[0].Device))
	_, err = c.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: &restoredID})
	requireCode(t, err, "VolumeInUse", http.StatusBadRequest)
	if o.gaps[gapAttachInUse] {
		t.Logf("known gap, not exercised: %s", gapAttachInUse)
	} else {
		_, err = c.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: &restoredID, InstanceId: &instID, Device: aws.String("/dev/sdg")})
		requireCode(t, err, "VolumeInUse", http.StatusBadRequest)
	}

	stop, err := c.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{instID}})
	require.NoError(t, err)
	o.record("StopInstances", stop)
	waitStopped(t, c, instID)
	_, err = c.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: &instID, InstanceType: &ec2types.AttributeValue{Value: aws.String("t3.small")}})
	require.NoError(t, err)
	multi, err := c.CreateSnapshots(ctx, &ec2.CreateSnapshotsInput{
		InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: &instID},
		TagSpecifications:     []ec2types.TagSpecification{tagSpec(ec2types.ResourceTypeSnapshot, "draas:set", "s1")},
	})
	require.NoError(t, err)
	o.record("CreateSnapshots", multi)
	require.Len(t, multi.Snapshots, 2, "root and data volume")
	var setIDs []string
	for _, sn := range multi.Snapshots {
		setIDs = append(setIDs, aws.ToString(sn.SnapshotId))
		require.Equal(t, "s1", tagMap(sn.Tags)["draas:set"])
	}
	waitSnapshotCompleted(t, c, setIDs...)
	for range 4 {
		sn, err := c.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: &restoredID,
			TagSpecifications: []ec2types.TagSpecification{tagSpec(ec2types.ResourceTypeSnapshot, "draas:set", "s1")}})
		require.NoError(t, err)
		setIDs = append(setIDs, aws.ToString(sn.SnapshotId))
	}
	var paged []string
	sp := ec2.NewDescribeSnapshotsPaginator(c, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, MaxResults: aws.Int32(5),
		Filters: []ec2types.Filter{filter("tag:draas:set", "s1")}})
	for sp.HasMorePages() {
		page, err := sp.NextPage(ctx)
		require.NoError(t, err)
		if len(page.Snapshots) > 5 {
			require.True(t, o.gaps[gapSnapshotPaging], "a page of %d snapshots for MaxResults 5", len(page.Snapshots))
			t.Logf("known gap: %s: a page of %d", gapSnapshotPaging, len(page.Snapshots))
		}
		paged = append(paged, snapshotIDs(page.Snapshots)...)
	}
	require.ElementsMatch(t, setIDs, paged)
	for _, id := range setIDs {
		_, err = c.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
		require.NoError(t, err)
	}

	attr, err := c.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{InstanceId: &instID, Attribute: ec2types.InstanceAttributeNameInstanceType})
	require.NoError(t, err)
	require.Equal(t, "t3.small", aws.ToString(attr.InstanceType.Value))
	attr, err = c.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{InstanceId: &instID, Attribute: ec2types.InstanceAttributeNameUserData})
	require.NoError(t, err)
	o.record("DescribeInstanceAttribute", attr)
	ud, err := base64.StdEncoding.DecodeString(aws.ToString(attr.UserData.Value))
	require.NoError(t, err)
	require.Equal(t, userData, string(ud))

	detach := &ec2.DetachVolumeInput{VolumeId: &restoredID}
	if o.gaps[gapDetachInstance] {
		detach.InstanceId = &instID
	}
	_, err = c.DetachVolume(ctx, detach)
	require.NoError(t, err)
	waitVolumeAvailable(t, c, restoredID)

	_, err = c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{instID, volID}, Tags: []ec2types.Tag{{Key: aws.String("draas:drill"), Value: aws.String("d1")}}})
	require.NoError(t, err)
	di, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{filter("tag:draas:drill", "d1")}})
	require.NoError(t, err)
	require.Len(t, di.Reservations, 1)
	_, err = c.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{instID}, Tags: []ec2types.Tag{{Key: aws.String("draas:drill")}}})
	require.NoError(t, err)
	di, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{filter("tag:draas:drill", "d1")}})
	require.NoError(t, err)
	require.Empty(t, di.Reservations)

	_, err = c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{instID}})
	require.NoError(t, err)
	waitTerminated(t, c, instID)
	for _, id := range []string{volID, restoredID} {
		_, err = c.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: aws.String(id)})
		require.NoError(t, err)
	}
	_, err = c.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: &snapID})
	require.NoError(t, err)

	// Errors both must name the same way.
	_, err = c.DescribeVolumes(ctx, &ec2.DescribeVolumesInput{VolumeIds: []string{volID}})
	requireCode(t, err, "InvalidVolume.NotFound", http.StatusBadRequest)
	_, err = c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{snapID}})
	requireCode(t, err, "InvalidSnapshot.NotFound", http.StatusBadRequest)
	_, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"i-0123456789abcdef0"}})
	requireCode(t, err, "InvalidInstanceID.NotFound", http.StatusBadRequest)

	// An isolated drill network.
	vpc, err := c.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.77.0.0/16"),
		TagSpecifications: []ec2types.TagSpecification{tagSpec(ec2types.ResourceTypeVpc, "draas:drill", "d1")}})
	require.NoError(t, err)
	o.record("CreateVpc", vpc)
	vpcID := aws.ToString(vpc.Vpc.VpcId)
	sub, err := c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: &vpcID, CidrBlock: aws.String("10.77.1.0/24"), AvailabilityZone: aws.String(az)})
	require.NoError(t, err)
	o.record("CreateSubnet", sub)
	subID := aws.ToString(sub.Subnet.SubnetId)
	require.Equal(t, "10.77.1.0/24", aws.ToString(sub.Subnet.CidrBlock))
	sg, err := c.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("draas-drill"), Description: aws.String("drill"), VpcId: &vpcID})
	require.NoError(t, err)
	drill := runOneIn(t, c, o.imageID, subID, aws.ToString(sg.GroupId), "10.77.1.20")
	require.Equal(t, vpcID, aws.ToString(drill.VpcId))
	waitRunning(t, c, aws.ToString(drill.InstanceId))
	di, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{filter("subnet-id", subID)}})
	require.NoError(t, err)
	require.Len(t, di.Reservations, 1)
	require.Equal(t, "10.77.1.20", aws.ToString(di.Reservations[0].Instances[0].PrivateIpAddress))
	_, err = c.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: &subID})
	o.expect(t, gapSubnetDependency, err, "DependencyViolation", http.StatusBadRequest)
	subnetGone := err == nil
	_, err = c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{aws.ToString(drill.InstanceId)}})
	require.NoError(t, err)
	waitTerminated(t, c, aws.ToString(drill.InstanceId))
	_, err = c.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: sg.GroupId})
	require.NoError(t, err)
	if !subnetGone {
		_, err = c.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: &subID})
		require.NoError(t, err)
	}
	_, err = c.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: &vpcID})
	require.NoError(t, err)

	dnsScenario(t, o)
}

func runOneIn(t *testing.T, c *ec2.Client, image, subnet, group, ip string) ec2types.Instance {
	t.Helper()
	out, err := c.RunInstances(context.Background(), &ec2.RunInstancesInput{
		ImageId: aws.String(image), InstanceType: ec2types.InstanceTypeT3Micro, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		SubnetId: aws.String(subnet), SecurityGroupIds: []string{group}, PrivateIpAddress: aws.String(ip),
	})
	require.NoError(t, err)
	return out.Instances[0]
}

// dnsScenario points a name at the recovered site and back.
func dnsScenario(t *testing.T, o oracle) {
	ctx := context.Background()
	c := o.r53
	hz, err := c.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: aws.String("dr-example.com"), CallerReference: aws.String("draas-oracle-1")})
	require.NoError(t, err)
	o.record("CreateHostedZone", hz)
	zone := aws.ToString(hz.HostedZone.Id)
	require.True(t, strings.HasPrefix(zone, "/hostedzone/"), zone)
	require.Equal(t, "dr-example.com.", aws.ToString(hz.HostedZone.Name))
	require.NotEmpty(t, hz.DelegationSet.NameServers)

	dup, err := c.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: aws.String("dr-example.com"), CallerReference: aws.String("draas-oracle-1")})
	o.expect(t, gapZoneCallerRef, err, "HostedZoneAlreadyExists", http.StatusConflict)
	if err == nil {
		_, err = c.DeleteHostedZone(ctx, &route53.DeleteHostedZoneInput{Id: dup.HostedZone.Id})
		require.NoError(t, err)
	}
	_, err = c.GetChange(ctx, &route53.GetChangeInput{Id: aws.String("/change/C0NOSUCHCHANGE")})
	o.expect(t, gapNoSuchChange, err, "NoSuchChange", http.StatusNotFound)
	zonesByName, err := c.ListHostedZonesByName(ctx, &route53.ListHostedZonesByNameInput{DNSName: aws.String("dr-example.com")})
	require.NoError(t, err)
	require.Equal(t, zone, aws.ToString(zonesByName.HostedZones[0].Id))

	got, err := c.GetHostedZone(ctx, &route53.GetHostedZoneInput{Id: aws.String(zone)})
	require.NoError(t, err)
	o.record("GetHostedZone", got)
	require.Equal(t, zone, aws.ToString(got.HostedZone.Id))

	create := change(r53types.ChangeActionCreate, "app.dr-example.com", r53types.RRTypeA, 60, "10.0.0.10")
	up, err := changeRecords(ctx, c, zone, create)
	require.NoError(t, err)
	o.record("ChangeResourceRecordSets", up)
	require.True(t, strings.HasPrefix(aws.ToString(up.ChangeInfo.Id), "/change/"), aws.ToString(up.ChangeInfo.Id))
	waitChange(t, c, up.ChangeInfo.Id)
	_, err = changeRecords(ctx, c, zone, create)
	requireCode(t, err, "InvalidChangeBatch", http.StatusBadRequest)
	if o.gaps[gapCreateConflict] {
		t.Logf("known gap, not exercised: %s", gapCreateConflict)
	} else {
		_, err = changeRecords(ctx, c, zone, change(r53types.ChangeActionCreate, "app.dr-example.com", r53types.RRTypeA, 60, "10.0.0.11"))
		requireCode(t, err, "InvalidChangeBatch", http.StatusBadRequest)
	}
	_, err = changeRecords(ctx, c, zone,
		change(r53types.ChangeActionUpsert, "app.dr-example.com", r53types.RRTypeA, 60, "10.77.1.20"),
		change(r53types.ChangeActionCreate, "db.dr-example.com", r53types.RRTypeCname, 300, "db-1.internal.example"),
		change(r53types.ChangeActionCreate, "api.dr-example.com", r53types.RRTypeA, 60, "10.77.1.21"))
	require.NoError(t, err)

	all, pages := listAll(t, c, zone, 2)
	require.Equal(t, 3, pages)
	var names []string
	byName := map[string]r53types.ResourceRecordSet{}
	for _, r := range all {
		key := aws.ToString(r.Name) + " " + string(r.Type)
		names = append(names, key)
		byName[key] = r
	}
	require.ElementsMatch(t, []string{
		"dr-example.com. NS", "dr-example.com. SOA", "api.dr-example.com. A", "app.dr-example.com. A", "db.dr-example.com. CNAME",
	}, names)
	app := byName["app.dr-example.com. A"]
	require.Equal(t, "10.77.1.20", aws.ToString(app.ResourceRecords[0].Value))
	require.Equal(t, int64(60), aws.ToInt64(app.TTL))

	_, err = changeRecords(ctx, c, zone, change(r53types.ChangeActionDelete, "api.dr-example.com", r53types.RRTypeA, 60, "10.77.1.99"))
	if o.gaps[gapDeleteMismatch] {
		t.Logf("known gap: %s: %v", gapDeleteMismatch, err)
		requireCode(t, err, "InvalidInput", http.StatusBadRequest)
	} else {
		requireCode(t, err, "InvalidChangeBatch", http.StatusBadRequest)
	}
	_, err = changeRecords(ctx, c, zone,
		change(r53types.ChangeActionDelete, "api.dr-example.com", r53types.RRTypeA, 60, "10.77.1.21"),
		change(r53types.ChangeActionDelete, "app.dr-example.com", r53types.RRTypeA, 60, "10.77.1.20"),
		change(r53types.ChangeActionDelete, "db.dr-example.com", r53types.RRTypeCname, 300, "db-1.internal.example"))
	require.NoError(t, err)
	del, err := c.DeleteHostedZone(ctx, &route53.DeleteHostedZoneInput{Id: aws.String(zone)})
	require.NoError(t, err)
	require.NotEmpty(t, aws.ToString(del.ChangeInfo.Id))
	_, err = c.GetHostedZone(ctx, &route53.GetHostedZoneInput{Id: aws.String(zone)})
	requireCode(t, err, "NoSuchHostedZone", http.StatusNotFound)
}
