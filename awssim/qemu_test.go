//go:build unix

package awssim_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/awssim"
	oracles "github.com/opendraas/draas/internal/oracle"
)

// fakeQEMU is a stand-in emulator: it writes its command line and process
// ID to the serial console file, writes into its boot disk as a guest
// would, and then runs until killed, or exits at once (a guest powering
// off) when FAKE_QEMU_EXIT is set.
const fakeQEMU = `#!/bin/sh
con= disk=
for a in "$@"; do
	case "$a" in
	file,id=console0,append=on,path=*) con=${a#file,id=console0,append=on,path=} ;;
	file=*,id=disk0) d=${a#file=}; disk=${d%%,format=raw*} ;;
	esac
done
printf 'GUEST-WROTE' | dd of="$disk" bs=1 seek=1048576 conv=notrunc 2>/dev/null
echo "FAKEQEMU pid=$$ args: $*" >> "$con"
echo "[    0.000000] Linux version 6.1.0-fake" >> "$con"
[ -n "$FAKE_QEMU_EXIT" ] && exit 0
exec sleep 600
`

func newQEMUSim(t *testing.T, q awssim.QEMUOptions) (*awssim.Server, *ec2.Client) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "qemu-fake")
	require.NoError(t, os.WriteFile(bin, []byte(fakeQEMU), 0o755))
	q.Binary = bin
	srv, err := awssim.New(awssim.Options{QEMU: &q})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	return srv, ec2.NewFromConfig(sdkConfig(srv.URL))
}

// bootableImage registers an image whose root snapshot is not a built-in
// placeholder, so that its instances get a virtual machine.
func bootableImage(t *testing.T, srv *awssim.Server, c *ec2.Client) string {
	t.Helper()
	root, err := srv.SeedSnapshot([]byte("MBR"), nil)
	require.NoError(t, err)
	out, err := c.RegisterImage(context.Background(), &ec2.RegisterImageInput{
		Name: aws.String("dr-guest"), RootDeviceName: aws.String("/dev/xvda"), VirtualizationType: aws.String("hvm"),
		EnaSupport:          aws.Bool(true),
		BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"), Ebs: &types.EbsBlockDevice{SnapshotId: &root}}},
	})
	require.NoError(t, err)
	return aws.ToString(out.ImageId)
}

// console returns GetConsoleOutput's output, decoded.
func console(t *testing.T, c *ec2.Client, id string) string {
	t.Helper()
	out, err := c.GetConsoleOutput(context.Background(), &ec2.GetConsoleOutputInput{InstanceId: &id, Latest: aws.Bool(true)})
	require.NoError(t, err)
	require.Equal(t, id, aws.ToString(out.InstanceId))
	b, err := base64.StdEncoding.DecodeString(aws.ToString(out.Output))
	require.NoError(t, err)
	return string(b)
}

var pidRE = regexp.MustCompile(`FAKEQEMU pid=(\d+)`)

// pids returns the emulator processes the console saw started, in order.
func pids(t *testing.T, con string) []int {
	t.Helper()
	var out []int
	for _, m := range pidRE.FindAllStringSubmatch(con, -1) {
		p, err := strconv.Atoi(m[1])
		require.NoError(t, err)
		out = append(out, p)
	}
	return out
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func waitConsole(t *testing.T, c *ec2.Client, id, want string, n int) string {
	t.Helper()
	var con string
	require.Eventually(t, func() bool {
		con = console(t, c, id)
		return strings.Count(con, want) >= n
	}, 10*time.Second, 20*time.Millisecond, "console of %s never showed %q %d times", id, want, n)
	return con
}

func TestQEMUInstanceLifecycle(t *testing.T) {
	srv, c := newQEMUSim(t, awssim.QEMUOptions{Ports: []int{22, 8080}})
	ctx := context.Background()
	img := bootableImage(t, srv, c)
	inst := runOne(t, c, &ec2.RunInstancesInput{ImageId: &img, InstanceType: types.InstanceTypeM5Xlarge,
		BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/sdf"), Ebs: &types.EbsBlockDevice{VolumeSize: aws.Int32(2)}}}})
	id := aws.ToString(inst.InstanceId)
	waitRunning(t, c, id)
	con := waitConsole(t, c, id, "Linux version", 1)

	// The command line: NVMe disks with the Nitro serials, the root first
	// and the boot disk, written in place; a virtio-net NIC on user
	// networking with the forwarded ports; the instance type's 4 vCPUs
	// and 16 GiB capped to 1 and 1024 MiB; TCG.
	info := srv.Instances()[0]
	rootVol, dataVol := info.Volumes["/dev/xvda"], info.Volumes["/dev/sdf"]
	require.NotEmpty(t, rootVol)
	require.NotEmpty(t, dataVol)
	for _, want := range []string{
		"-accel tcg", "-smp 1 ", "-m 1024 ",
		"nvme,drive=disk0,serial=" + strings.Replace(rootVol, "-", "", 1) + ",bootindex=0",
		"nvme,drive=disk1,serial=" + strings.Replace(dataVol, "-", "", 1) + " ",
		rootVol + ".raw,format=raw,if=none,id=disk0 ",
		"virtio-net-pci,netdev=net0", "-netdev user,id=net0,hostfwd=tcp:127.0.0.1:",
		"-:22,hostfwd=tcp:127.0.0.1:", "-:8080 ",
	} {
		require.Contains(t, con, want)
	}
	require.NotContains(t, con, "snapshot=on")
	require.NotContains(t, con, "-no-reboot")

	// What the guest wrote is in the volume, and in a snapshot of it.
	got := make([]byte, 11)
	require.NoError(t, srv.ReadVolume(rootVol, 1<<20, got))
	require.Equal(t, "GUEST-WROTE", string(got))
	snap, err := c.CreateSnapshot(ctx, &ec2.CreateSnapshotInput{VolumeId: &rootVol})
	require.NoError(t, err)
	_, err = srv.ReadSnapshotAt(aws.ToString(snap.SnapshotId), got, 1<<20)
	require.NoError(t, err)
	require.Equal(t, "GUEST-WROTE", string(got))

	// The forwarded ports: ForwardedAddr says where, DialInstance gets
	// there from the instance's private address.
	addr := srv.ForwardedAddr(id, 8080)
	require.Regexp(t, `^127\.0\.0\.1:\d+$`, addr)
	require.Empty(t, srv.ForwardedAddr(id, 80), "a port that is not forwarded")
	ln, err := net.Listen("tcp", addr) // the fake emulator does not listen: stand in for the guest
	require.NoError(t, err)
	go func() {
		if conn, err := ln.Accept(); err == nil {
			io.WriteString(conn, "hello from the guest")
			conn.Close()
		}
	}()
	conn, err := srv.DialInstance(ctx, "tcp", net.JoinHostPort(aws.ToString(inst.PrivateIpAddress), "8080"))
	require.NoError(t, err)
	b, _ := io.ReadAll(conn)
	conn.Close()
	ln.Close()
	require.Equal(t, "hello from the guest", string(b))
	_, err = srv.DialInstance(ctx, "tcp", net.JoinHostPort(aws.ToString(inst.PrivateIpAddress), "80"))
	require.ErrorIs(t, err, awssim.ErrNotForwarded)
	_, err = srv.DialInstance(ctx, "tcp", "10.99.0.1:22")
	require.ErrorIs(t, err, awssim.ErrNotForwarded)

	// Stop kills the emulator; Start starts another, whose console follows
	// the first one's; Terminate kills it.
	first := pids(t, con)
	require.Len(t, first, 1)
	require.True(t, alive(first[0]))
	_, err = c.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	require.False(t, alive(first[0]), "QEMU survived StopInstances")
	waitStopped(t, c, id)
	require.Empty(t, srv.ForwardedAddr(id, 22))
	_, err = c.StartInstances(ctx, &ec2.StartInstancesInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	waitRunning(t, c, id)
	second := pids(t, waitConsole(t, c, id, "Linux version", 2))
	require.Len(t, second, 2)
	require.Equal(t, first[0], second[0])
	require.True(t, alive(second[1]))
	_, err = c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	require.False(t, alive(second[1]), "QEMU survived TerminateInstances")

	// An instance of a built-in image has nothing to boot: no VM, an
	// empty console.
	def := runOne(t, c, &ec2.RunInstancesInput{ImageId: aws.String(srv.DefaultImageID()), InstanceType: types.InstanceTypeT3Micro})
	waitRunning(t, c, aws.ToString(def.InstanceId))
	require.Empty(t, console(t, c, aws.ToString(def.InstanceId)))
	require.Empty(t, srv.ForwardedAddr(aws.ToString(def.InstanceId), 22))
}

func TestQEMUKilledOnClose(t *testing.T) {
	var log oracles.Buffer
	srv, c := newQEMUSim(t, awssim.QEMUOptions{Log: &log})
	img := bootableImage(t, srv, c)
	id := aws.ToString(runOne(t, c, &ec2.RunInstancesInput{ImageId: &img, InstanceType: types.InstanceTypeT3Micro}).InstanceId)
	p := pids(t, waitConsole(t, c, id, "Linux version", 1))
	require.Len(t, p, 1)
	addr := srv.ForwardedAddr(id, 22)
	require.Contains(t, addr, "127.0.0.1:")
	require.Contains(t, log.String(), id+": QEMU started (pid "+strconv.Itoa(p[0])+", 1 vCPU, 1024 MiB")
	require.Contains(t, log.String(), "22 at "+addr)
	srv.Close()
	require.False(t, alive(p[0]), "QEMU survived Close")
	require.Contains(t, log.String(), id+": QEMU killed")
}

func TestQEMUGuestShutdown(t *testing.T) {
	t.Setenv("FAKE_QEMU_EXIT", "1")
	srv, c := newQEMUSim(t, awssim.QEMUOptions{})
	img := bootableImage(t, srv, c)
	id := aws.ToString(runOne(t, c, &ec2.RunInstancesInput{ImageId: &img, InstanceType: types.InstanceTypeT3Micro}).InstanceId)
	// The guest powers off: the instance stops, as EC2's does.
	var got types.Instance
	require.Eventually(t, func() bool {
		out, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		require.NoError(t, err)
		got = out.Reservations[0].Instances[0]
		return got.State.Name == types.InstanceStateNameStopped
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "Client.InstanceInitiatedShutdown", aws.ToString(got.StateReason.Code))
}

func TestQEMUMissingBinary(t *testing.T) {
	_, err := awssim.New(awssim.Options{QEMU: &awssim.QEMUOptions{Binary: "/nonexistent/qemu"}})
	require.Error(t, err)
	require.Contains(t, err.Error(), "qemu-system-x86")
}

func TestGetConsoleOutputErrors(t *testing.T) {
	_, c := newEC2(t, awssim.Options{})
	_, err := c.GetConsoleOutput(context.Background(), &ec2.GetConsoleOutputInput{InstanceId: aws.String("i-0000000000000dead")})
	var apiErr interface{ ErrorCode() string }
	require.True(t, errors.As(err, &apiErr))
	require.Equal(t, "InvalidInstanceID.NotFound", apiErr.ErrorCode())
}
