//go:build unix

package awssim_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/awssim"
)

// TestVolumeFiles checks file-backed volumes: sparse files of the volume's
// size, snapshots that read them and share unchanged blocks, volumes made
// from snapshots, and the files' removal.
func TestVolumeFiles(t *testing.T) {
	dir := t.TempDir()
	srv, err := awssim.New(awssim.Options{VolumeDir: dir})
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			srv.Close()
		}
	})
	c := ec2.NewFromConfig(sdkConfig(srv.URL))
	eb := ebsClient(srv.URL)
	ctx := context.Background()

	// A 4 GiB volume costs nothing until written.
	id := createVolume(t, c, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(4)})
	waitVolumeAvailable(t, c, id)
	path := filepath.Join(dir, id+".raw")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, int64(4<<30), fi.Size())
	require.Less(t, fi.Sys().(*syscall.Stat_t).Blocks*512, int64(1<<20), "the volume file is not sparse")

	// Writes through the handles land in the file, and a guest's writes to
	// the file are what the handles read.
	far := int64(3<<30 + 5)
	require.NoError(t, srv.WriteVolume(id, far, []byte("far away")))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	got := make([]byte, 8)
	_, err = f.ReadAt(got, far)
	require.NoError(t, err)
	require.Equal(t, "far away", string(got))
	_, err = f.WriteAt([]byte("guest wrote"), 4096)
	require.NoError(t, err)
	got = make([]byte, 11)
	require.NoError(t, srv.ReadVolume(id, 4096, got))
	require.Equal(t, "guest wrote", string(got))
	small := createVolume(t, c, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), Size: aws.Int32(1)})
	require.NoError(t, srv.WriteVolume(small, 1<<20+3, []byte("x")))
	all, err := srv.VolumeBytes(small)
	require.NoError(t, err)
	require.Equal(t, 1<<20+awssim.BlockSize, len(all))
	require.Equal(t, byte('x'), all[1<<20+3])

	// A snapshot reads the file; a second one shares the unchanged blocks,
	// so ListChangedBlocks sees only the block written in between.
	snap1 := aws.ToString(mustSnapshot(t, c, id).SnapshotId)
	_, err = f.WriteAt([]byte("second"), 2*awssim.BlockSize+7)
	require.NoError(t, err)
	snap2 := aws.ToString(mustSnapshot(t, c, id).SnapshotId)
	waitSnapshotCompleted(t, c, snap1, snap2)
	readSnap := func(id string, off int64, n int) string {
		b := make([]byte, n)
		_, err := srv.ReadSnapshotAt(id, b, off)
		require.NoError(t, err)
		return string(b)
	}
	require.Equal(t, "guest wrote", readSnap(snap1, 4096, 11))
	require.Equal(t, "far away", readSnap(snap1, far, 8))
	require.Equal(t, "\x00\x00\x00\x00\x00\x00", readSnap(snap1, 2*awssim.BlockSize+7, 6))
	require.Equal(t, "second", readSnap(snap2, 2*awssim.BlockSize+7, 6))
	lc, err := eb.ListChangedBlocks(ctx, &ebs.ListChangedBlocksInput{FirstSnapshotId: &snap1, SecondSnapshotId: &snap2})
	require.NoError(t, err)
	require.Len(t, lc.ChangedBlocks, 1)
	require.Equal(t, int32(2), aws.ToInt32(lc.ChangedBlocks[0].BlockIndex))

	// The EBS direct APIs read the snapshot of a file-backed volume.
	blk, err := eb.GetSnapshotBlock(ctx, &ebs.GetSnapshotBlockInput{SnapshotId: &snap2, BlockIndex: aws.Int32(2),
		BlockToken: lc.ChangedBlocks[0].SecondBlockToken})
	require.NoError(t, err)
	body := new(bytes.Buffer)
	_, err = body.ReadFrom(blk.BlockData)
	require.NoError(t, err)
	require.Equal(t, "second", string(body.Bytes()[7:13]))

	// A volume made from the snapshot holds its data in a file of its own.
	id2 := createVolume(t, c, &ec2.CreateVolumeInput{AvailabilityZone: aws.String("us-east-1a"), SnapshotId: &snap2, Size: aws.Int32(5)})
	waitVolumeAvailable(t, c, id2)
	fi, err = os.Stat(filepath.Join(dir, id2+".raw"))
	require.NoError(t, err)
	require.Equal(t, int64(5<<30), fi.Size())
	got = make([]byte, 6)
	require.NoError(t, srv.ReadVolume(id2, 2*awssim.BlockSize+7, got))
	require.Equal(t, "second", string(got))

	// DeleteVolume removes the file; Close removes the others.
	_, err = c.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: &id2})
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, id2+".raw"))
	require.ErrorIs(t, err, os.ErrNotExist)
	srv.Close()
	closed = true
	_, err = os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func mustSnapshot(t *testing.T, c *ec2.Client, volID string) *ec2.CreateSnapshotOutput {
	t.Helper()
	out, err := c.CreateSnapshot(context.Background(), &ec2.CreateSnapshotInput{VolumeId: &volID})
	require.NoError(t, err)
	return out
}

func TestVolumeDirMissing(t *testing.T) {
	_, err := awssim.New(awssim.Options{VolumeDir: filepath.Join(t.TempDir(), "nope")})
	require.Error(t, err)
}
