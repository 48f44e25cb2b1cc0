package awssim_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/guest/guestimage"
	oracles "github.com/opendraas/draas/internal/oracle"
)

// requireCachedGuest returns the cached guest image of layout, or skips:
// the boot tests run only under DRAAS_GUEST_IMAGES=1, as guestimage's do,
// and use only an image already in the cache (building one takes many
// minutes: bash .ci/guest-image.sh, or guestimage's tests, build them).
// Under DRAAS_REQUIRE_ORACLES=1 a missing image or QEMU is a failure.
func requireCachedGuest(t *testing.T, layout guestimage.Layout) *guestimage.Image {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a real guest for minutes: not with -short")
	}
	if os.Getenv("DRAAS_GUEST_IMAGES") != "1" {
		t.Skip("boots a real guest for minutes: set DRAAS_GUEST_IMAGES=1 (bash .ci/guest-image.sh does)")
	}
	missing := func(err error) {
		t.Helper()
		oracles.Missing(t, err.Error())
	}
	if err := guestimage.CheckBootTools(); err != nil {
		missing(err)
	}
	img, err := guestimage.Cached(guestimage.DebianVMware(layout), guestimage.Options{})
	if errors.Is(err, fs.ErrNotExist) {
		missing(errors.New(err.Error() + ": build it first (go test -run TestGuestBuild ./guest/guestimage with DRAAS_GUEST_IMAGES=1, as root)"))
	}
	require.NoError(t, err)
	return img
}

// TestQEMUBootUnprepared is the negative control through the EC2 API: the
// VMware guest, unprepared, launched as an instance (its disk as the root
// NVMe volume) does not reach its root: GetConsoleOutput shows the
// initramfs giving up. It also measures the time from RunInstances to the
// console showing the kernel.
func TestQEMUBootUnprepared(t *testing.T) {
	img := requireCachedGuest(t, guestimage.LayoutExt4)
	srv, err := awssim.New(awssim.Options{VolumeDir: t.TempDir(), QEMU: &awssim.QEMUOptions{}})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	c := ec2.NewFromConfig(sdkConfig(srv.URL))
	ctx := context.Background()

	seedStart := time.Now()
	root, err := srv.SeedSnapshotFile(img.Path, map[string]string{"Name": "debian12-vmware"})
	require.NoError(t, err)
	t.Logf("snapshot of %s seeded in %v", img.Path, time.Since(seedStart).Round(time.Millisecond))
	reg, err := c.RegisterImage(ctx, &ec2.RegisterImageInput{
		Name: aws.String("debian12-vmware-unprepared"), RootDeviceName: aws.String("/dev/xvda"),
		VirtualizationType: aws.String("hvm"), EnaSupport: aws.Bool(true),
		BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"), Ebs: &types.EbsBlockDevice{SnapshotId: &root}}},
	})
	require.NoError(t, err)

	start := time.Now()
	inst := runOne(t, c, &ec2.RunInstancesInput{ImageId: reg.ImageId, InstanceType: types.InstanceTypeT3Micro})
	id := aws.ToString(inst.InstanceId)
	launched := time.Since(start)
	var kernel time.Duration
	outcome, line := guestimage.Outcome(""), ""
	deadline := time.Now().Add(6 * time.Minute)
	var con string
	for outcome == "" && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		con = console(t, c, id)
		if kernel == 0 && strings.Contains(con, "Linux version") {
			kernel = time.Since(start)
		}
		for _, l := range strings.SplitAfter(con, "\n") {
			if o := guestimage.Classify(l); o != "" {
				outcome, line = o, guestimage.CleanLine(l)
				break
			}
		}
	}
	t.Logf("RunInstances took %v; the console showed the kernel %v after RunInstances, and %q %v after",
		launched.Round(time.Millisecond), kernel.Round(time.Millisecond), outcome, time.Since(start).Round(time.Millisecond))
	require.NotZero(t, kernel, "the console never showed the kernel:\n%s", con)
	require.Equal(t, guestimage.OutcomeRootNotFound, outcome, "console:\n%s", con)
	t.Logf("decisive line: %s", line)

	_, err = c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	require.Empty(t, srv.ForwardedAddr(id, 22), "the VM outlived TerminateInstances")
}
