// Package aws_test checks that the IAM policies in docs/ list exactly the
// AWS actions the library calls, each in the account it is called in: it
// drives every adapter in aws/ against the simulator through SDK clients
// that record each operation they send, one recorder per principal, maps
// the operations to IAM actions, and compares each recorder with its policy
// file.
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
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	awsr53 "github.com/aws/aws-sdk-go-v2/service/route53"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/account"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/aws/ec2"
	"github.com/opendraas/draas/aws/route53"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/plan"
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
		Sid       string
		Effect    string
		Action    []string
		Resource  any
		Principal map[string]any
		Condition map[string]map[string]any
	}
}

func readPolicy(t *testing.T, file string) policy {
	t.Helper()
	raw, err := os.ReadFile("../docs/" + file)
	require.NoError(t, err)
	var p policy
	require.NoError(t, json.Unmarshal(raw, &p), "docs/%s is valid JSON", file)
	require.Equal(t, "2012-10-17", p.Version, file)
	return p
}

// checkPolicy fails unless docs/file grants exactly the actions rec saw.
func checkPolicy(t *testing.T, file string, rec *recorder) {
	t.Helper()
	called := map[string]bool{}
	for op := range rec.ops {
		called[iamAction(op)] = true
	}
	p := readPolicy(t, file)
	listed := map[string]bool{}
	for _, st := range p.Statement {
		require.Equal(t, "Allow", st.Effect, "%s: %s", file, st.Sid)
		for _, a := range st.Action {
			require.False(t, listed[a], "%s: %s is listed twice", file, a)
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
	require.Empty(t, missing, "the library calls actions docs/%s does not grant: add them", file)
	require.Empty(t, unused, "docs/%s grants actions the library never calls: remove them (least privilege)", file)
}

// TestIAMPolicyListsExactlyTheActionsCalled drives three principals, as
// docs/iam.md lays them out: the DR account's (EC2, EBS, Route 53, through
// aws/account), the backup account's writer (backups, Prune, GC) and the
// backup account's reader that replication reaches the store with (the
// role the DR account assumes, or the same account's S3).
func TestIAMPolicyListsExactlyTheActionsCalled(t *testing.T) {
	ctx := context.Background()
	srv, err := awssim.New(awssim.Options{Buckets: []string{"backups"}})
	require.NoError(t, err)
	defer srv.Close()
	drRec, writeRec, readRec := &recorder{ops: map[string]bool{}}, &recorder{ops: map[string]bool{}}, &recorder{ops: map[string]bool{}}
	setup := srv.EC2() // the test's own calls, not recorded
	subnets, err := setup.DescribeSubnets(ctx, &awsec2.DescribeSubnetsInput{})
	require.NoError(t, err)
	subnet, zone := aws.ToString(subnets.Subnets[0].SubnetId), aws.ToString(subnets.Subnets[0].AvailabilityZone)

	drCfg := srv.Config()
	drCfg.APIOptions = append(drCfg.APIOptions, drRec.apiOption)
	readCfg := srv.Config()
	readCfg.APIOptions = append(readCfg.APIOptions, readRec.apiOption)
	acct, err := account.New(drCfg, account.Options{
		Launcher: ec2.Options{ImageID: srv.DefaultImageID(), SubnetID: subnet, AvailabilityZone: zone, PollInterval: time.Millisecond},
		DNS:      route53.Options{PollInterval: time.Millisecond},
		Backup:   account.Backup{Config: &readCfg, Endpoint: srv.S3URL},
	})
	require.NoError(t, err)

	// Backup store: back up twice, read, prune and collect garbage.
	store := s3.New(srv.S3(func(o *awss3.Options) { o.APIOptions = append(o.APIOptions, writeRec.apiOption) }), "backups", "draas", s3.Options{})
	disk := draastest.NewDisk(4<<20, 512<<10)
	disk.WriteAt([]byte("boot sector"), 0)
	backup := func(i int) {
		disk.WriteAt([]byte{byte(i + 1)}, 1<<20)
		w, err := store.BeginPoint(ctx, "db", []draas.Disk{{Name: "os", Size: disk.Size()}}, time.Now().Add(time.Duration(i)*time.Hour))
		require.NoError(t, err)
		sink, err := w.(*s3.PointWriter).Disk("os")
		require.NoError(t, err)
		_, err = blockcopy.Copy(ctx, sink, disk, blockcopy.Options{Verify: true})
		require.NoError(t, err)
		require.NoError(t, w.Commit(ctx))
	}
	_, err = store.VMs(ctx)
	require.NoError(t, err)

	// Replication on both data paths, reading the store as the DR account
	// does: a full copy, then an incremental one that deletes the full;
	// the verify passes read the snapshots back.
	inst, err := setup.RunInstances(ctx, &awsec2.RunInstancesInput{ImageId: aws.String(srv.DefaultImageID()), InstanceType: "m5.large", MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	require.NoError(t, err)
	proxy := inst.Instances[0]
	require.NoError(t, awsec2.NewInstanceRunningWaiter(setup, func(o *awsec2.InstanceRunningWaiterOptions) { o.MinDelay = time.Millisecond }).
		Wait(ctx, &awsec2.DescribeInstancesInput{InstanceIds: []string{aws.ToString(proxy.InstanceId)}}, time.Minute))
	var reps []*replicate.Replicator
	for _, path := range []ebs.Path{ebs.PathDirect, ebs.PathVolume} {
		copies := ebs.NewCopies(acct.EBS, acct.EC2, ebs.CopiesOptions{Path: path, Volume: ebs.VolumeSinkOptions{
			ProxyInstanceID: aws.ToString(proxy.InstanceId), AvailabilityZone: aws.ToString(proxy.Placement.AvailabilityZone),
			PollInterval: time.Millisecond,
			Devices: ebs.DeviceOpenerFunc(func(_ context.Context, id, _ string) (ebs.Device, error) {
				return srv.Device(id)
			}),
		}})
		r, err := replicate.New(draas.Plan{Name: "plan" + string(rune('a'+path)), VMs: []draas.VM{{Name: "db"}}}, acct.BackupStore("backups", "draas", s3.Options{}), copies, replicate.Options{})
		require.NoError(t, err)
		reps = append(reps, r)
	}
	for i := range 2 {
		backup(i)
		for _, r := range reps {
			res, err := r.ReplicateVM(ctx, "db")
			require.NoError(t, err)
			snap, err := acct.OpenSnapshot(ctx, res.Disks[0].SnapshotID)
			require.NoError(t, err)
			_, err = snap.(draas.ChangeTracker).ChangedExtents(ctx, res.Disks[0].SnapshotID)
			require.NoError(t, err)
			_, err = r.Status(ctx)
			require.NoError(t, err)
		}
	}
	_, err = store.Prune(ctx, "db", 1)
	require.NoError(t, err)
	_, err = store.GC(ctx, s3.GCOptions{})
	require.NoError(t, err)

	// Failover: a plan's network resolved by name, volumes and instances.
	group, err := setup.CreateSecurityGroup(ctx, &awsec2.CreateSecurityGroupInput{GroupName: aws.String("web"), Description: aws.String("web"), VpcId: subnets.Subnets[0].VpcId})
	require.NoError(t, err)
	p, err := plan.Parse("shop.yaml", []byte("name: shop\ndefaults: {instanceType: t3.micro, subnet: "+subnet+", securityGroups: [web]}\nvms: [{name: db}]\n"))
	require.NoError(t, err)
	resolved, err := acct.ResolvePlan(ctx, p, account.Production)
	require.NoError(t, err)
	require.Equal(t, []string{aws.ToString(group.GroupId)}, resolved.VMs[0].SecurityGroups)
	snapID, err := srv.SeedSnapshot([]byte("root"), nil)
	require.NoError(t, err)
	l := acct.Launcher
	vol, err := l.CreateVolume(ctx, draas.VolumeRequest{SnapshotID: snapID})
	require.NoError(t, err)
	i, err := l.Launch(ctx, draas.LaunchRequest{Name: "db", InstanceType: "t3.micro", RootVolumeID: vol, SecurityGroupIDs: resolved.VMs[0].SecurityGroups})
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
	dns := acct.DNS
	r := draas.Record{Zone: "example.com.", Name: "db.example.com.", Type: "A", TTL: time.Minute, Values: []string{"10.0.0.5"}}
	require.NoError(t, dns.Upsert(ctx, r))
	_, err = dns.Lookup(ctx, r.Zone, r.Name, r.Type)
	require.NoError(t, err)
	require.NoError(t, dns.Delete(ctx, r))

	checkPolicy(t, "iam-policy-dr.json", drRec)
	checkPolicy(t, "iam-policy-backup.json", writeRec)
	checkPolicy(t, "iam-policy-backup-read.json", readRec)
}

// The trust policy of the backup account's read role lets one principal of
// the DR account assume it, with an external ID.
func TestIAMTrustPolicyOfTheBackupReadRole(t *testing.T) {
	p := readPolicy(t, "iam-trust-backup-read.json")
	require.Len(t, p.Statement, 1)
	st := p.Statement[0]
	require.Equal(t, "Allow", st.Effect)
	require.Equal(t, []string{"sts:AssumeRole"}, st.Action)
	require.Contains(t, st.Principal, "AWS", "a principal of the DR account")
	require.Contains(t, st.Condition["StringEquals"], "sts:ExternalId")
}
