// Package aws_test checks that docs/iam-policy.json lists exactly the AWS
// actions the library calls: it drives every adapter in aws/ against the
// simulator through SDK clients that record each operation they send, maps
// the operations to IAM actions, and compares.
package aws_test

import (
	"context"
	"encoding/json"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmw "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awsebs "github.com/aws/aws-sdk-go-v2/service/ebs"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	awsr53 "github.com/aws/aws-sdk-go-v2/service/route53"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/aws/ec2"
	"github.com/opendraas/draas/aws/route53"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/replicate"
)

// recorder collects "service:Operation" for every request SDK clients send.
type recorder struct {
	mu  sync.Mutex
	ops map[string]bool
}

func (r *recorder) apiOption(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("draasRecordOperation",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			r.mu.Lock()
			r.ops[awsmw.GetServiceID(ctx)+":"+awsmw.GetOperationName(ctx)] = true
			r.mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
}

// iamAction maps a recorded SDK operation to the IAM action that
// authorises it.
func iamAction(op string) string {
	service, name, _ := strings.Cut(op, ":")
	switch service {
	case "EBS":
		return "ebs:" + name
	case "EC2":
		return "ec2:" + name
	case "Route 53":
		return "route53:" + name
	case "S3":
		switch name {
		case "HeadObject", "GetObject":
			return "s3:GetObject"
		case "ListObjectsV2":
			return "s3:ListBucket"
		case "DeleteObject", "DeleteObjects":
			return "s3:DeleteObject"
		}
		return "s3:" + name
	}
	return op
}

type policy struct {
	Version   string
	Statement []struct {
		Sid      string
		Effect   string
		Action   []string
		Resource any
	}
}

func TestIAMPolicyListsExactlyTheActionsCalled(t *testing.T) {
	ctx := context.Background()
	srv, err := awssim.New(awssim.Options{Buckets: []string{"backups"}})
	require.NoError(t, err)
	defer srv.Close()
	rec := &recorder{ops: map[string]bool{}}
	ebsC := srv.EBS(func(o *awsebs.Options) { o.APIOptions = append(o.APIOptions, rec.apiOption) })
	ec2C := srv.EC2(func(o *awsec2.Options) { o.APIOptions = append(o.APIOptions, rec.apiOption) })
	r53C := srv.Route53(func(o *awsr53.Options) { o.APIOptions = append(o.APIOptions, rec.apiOption) })
	s3C := srv.S3(func(o *awss3.Options) { o.APIOptions = append(o.APIOptions, rec.apiOption) })

	// Backup store: back up twice, read, prune and collect garbage.
	store := s3.New(s3C, "backups", "draas", s3.Options{})
	disk := draastest.NewDisk(4<<20, 512<<10)
	disk.WriteAt([]byte("boot sector"), 0)
	backup := func(i int) {
		disk.WriteAt([]byte{byte(i + 1)}, 1<<20)
		w, err := store.BeginPoint(ctx, "db", []draas.Disk{{Name: "os", Size: disk.Size()}}, time.Now().Add(time.Duration(i)*time.Hour))
		require.NoError(t, err)
		sink, err := w.Disk("os")
		require.NoError(t, err)
		_, err = blockcopy.Copy(ctx, sink, disk, blockcopy.Options{Verify: true})
		require.NoError(t, err)
		require.NoError(t, w.Commit(ctx))
	}
	_, err = store.VMs(ctx)
	require.NoError(t, err)

	// Replication on both data paths: a full copy, then an incremental one
	// that deletes the full; the verify passes read the snapshots back.
	setup := srv.EC2() // the test's own calls, not recorded
	inst, err := setup.RunInstances(ctx, &awsec2.RunInstancesInput{ImageId: aws.String(srv.DefaultImageID()), InstanceType: "m5.large", MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	require.NoError(t, err)
	proxy := inst.Instances[0]
	require.NoError(t, awsec2.NewInstanceRunningWaiter(setup, func(o *awsec2.InstanceRunningWaiterOptions) { o.MinDelay = time.Millisecond }).
		Wait(ctx, &awsec2.DescribeInstancesInput{InstanceIds: []string{aws.ToString(proxy.InstanceId)}}, time.Minute))
	var reps []*replicate.Replicator
	for _, path := range []ebs.Path{ebs.PathDirect, ebs.PathVolume} {
		copies := ebs.NewCopies(ebsC, ec2C, ebs.CopiesOptions{Path: path, Volume: ebs.VolumeSinkOptions{
			ProxyInstanceID: aws.ToString(proxy.InstanceId), AvailabilityZone: aws.ToString(proxy.Placement.AvailabilityZone),
			PollInterval: time.Millisecond,
			Devices: ebs.DeviceOpenerFunc(func(_ context.Context, id, _ string) (ebs.Device, error) {
				return srv.Device(id)
			}),
		}})
		r, err := replicate.New(draas.Plan{Name: "plan" + string(rune('a'+path)), VMs: []draas.VM{{Name: "db"}}}, replicate.BackupsOf(store), copies, replicate.Options{})
		require.NoError(t, err)
		reps = append(reps, r)
	}
	for i := range 2 {
		backup(i)
		for _, r := range reps {
			res, err := r.ReplicateVM(ctx, "db")
			require.NoError(t, err)
			snap, err := ebs.OpenSnapshot(ctx, ebsC, res.Disks[0].SnapshotID, ebs.SourceOptions{})
			require.NoError(t, err)
			_, err = snap.ChangedExtents(ctx, res.Disks[0].SnapshotID)
			require.NoError(t, err)
			_, err = r.Status(ctx)
			require.NoError(t, err)
		}
	}
	_, err = store.Prune(ctx, "db", 1)
	require.NoError(t, err)
	_, err = store.GC(ctx, s3.GCOptions{})
	require.NoError(t, err)

	// Failover: volumes and instances.
	snapID, err := srv.SeedSnapshot([]byte("root"), nil)
	require.NoError(t, err)
	subnets, err := setup.DescribeSubnets(ctx, &awsec2.DescribeSubnetsInput{})
	require.NoError(t, err)
	l := ec2.New(ec2C, ec2.Options{ImageID: srv.DefaultImageID(), SubnetID: aws.ToString(subnets.Subnets[0].SubnetId),
		AvailabilityZone: aws.ToString(subnets.Subnets[0].AvailabilityZone), PollInterval: time.Millisecond})
	vol, err := l.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: snapID})
	require.NoError(t, err)
	i, err := l.Launch(ctx, draas.LaunchRequest{Name: "db", InstanceType: "t3.micro", RootVolumeID: vol})
	require.NoError(t, err)
	_, err = l.Status(ctx, i.ID)
	require.NoError(t, err)
	_, err = l.Shape(ctx, i.ID)
	require.NoError(t, err)
	// Failback: snapshot the instance's volumes together, then delete them.
	snaps, err := l.SnapshotInstance(ctx, i.ID, map[string]string{draas.TagRole: "failback"})
	require.NoError(t, err)
	for _, s := range snaps {
		require.NoError(t, l.DeleteSnapshot(ctx, s))
	}
	require.NoError(t, l.Terminate(ctx, i.ID))
	require.NoError(t, l.DeleteVolume(ctx, vol))

	// DNS.
	_, err = srv.Route53().CreateHostedZone(ctx, &awsr53.CreateHostedZoneInput{Name: aws.String("example.com"), CallerReference: aws.String("iam-test")})
	require.NoError(t, err)
	dns := route53.New(r53C, route53.Options{PollInterval: time.Millisecond})
	r := draas.Record{Zone: "example.com.", Name: "db.example.com.", Type: "A", TTL: time.Minute, Values: []string{"10.0.0.5"}}
	require.NoError(t, dns.Upsert(ctx, r))
	_, err = dns.Lookup(ctx, r.Zone, r.Name, r.Type)
	require.NoError(t, err)
	require.NoError(t, dns.Delete(ctx, r))

	called := map[string]bool{}
	for op := range rec.ops {
		called[iamAction(op)] = true
	}

	raw, err := os.ReadFile("../docs/iam-policy.json")
	require.NoError(t, err)
	var p policy
	require.NoError(t, json.Unmarshal(raw, &p), "docs/iam-policy.json is valid JSON")
	listed := map[string]bool{}
	for _, st := range p.Statement {
		require.Equal(t, "Allow", st.Effect, st.Sid)
		for _, a := range st.Action {
			require.False(t, listed[a], "%s is listed twice", a)
			listed[a] = true
		}
	}
	var missing, unused []string
	for a := range called {
		if !listed[a] {
			missing = append(missing, a)
		}
	}
	for a := range listed {
		if !called[a] {
			unused = append(unused, a)
		}
	}
	sort.Strings(missing)
	sort.Strings(unused)
	require.Empty(t, missing, "the library calls actions docs/iam-policy.json does not grant: add them")
	require.Empty(t, unused, "docs/iam-policy.json grants actions the library never calls: remove them (least privilege)")
}
