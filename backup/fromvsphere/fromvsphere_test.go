package fromvsphere_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/backup"
	"github.com/opendraas/draas/backup/fromvsphere"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/vsphere"
)

// TestBackUpAVCSimVM backs a vcsim VM up into the backup store and reads the
// recovery point back.
func TestBackUpAVCSimVM(t *testing.T) {
	ctx := context.Background()
	model := simulator.VPX()
	defer model.Remove()
	require.NoError(t, model.Create())
	model.Service.TLS = new(tls.Config)
	server := model.Service.NewServer()
	defer server.Close()
	h, err := vsphere.Dial(ctx, server.URL.String(), vsphere.Options{Thumbprint: soap.ThumbprintSHA256(server.Certificate())})
	require.NoError(t, err)
	defer h.Close(ctx)

	const size = 4 << 20
	require.NoError(t, h.CreateVM(ctx, draas.VMRequest{Name: "db01", Shape: draas.Shape{CPUs: 1, MemoryMiB: 512, Disks: []draas.Disk{{Size: size}}}}))
	content := bytes.Repeat([]byte("vcsim disk "), size/11+1)[:size]
	sink, err := h.OpenDisk(ctx, "db01", 0)
	require.NoError(t, err)
	_, err = blockcopy.Copy(ctx, sink, draastest.DiskFrom(content, vsphere.SinkBlockSize), blockcopy.Options{})
	require.NoError(t, err)

	srv, err := awssim.New(awssim.Options{Buckets: []string{"backups"}})
	require.NoError(t, err)
	defer srv.Close()
	store := s3.New(srv.S3(), "backups", "vsphere", s3.Options{})
	b, err := backup.New(fromvsphere.New(h, vsphere.BackupOptions{}), store, backup.Options{})
	require.NoError(t, err)
	res, err := b.Run(ctx, "db01")
	require.NoError(t, err)
	require.Len(t, res.Disks, 1)
	assert.Equal(t, "scsi0-0", res.Disks[0].Disk.Name, "vSphere disk names become store names")

	src, err := store.OpenDisk(ctx, "db01", res.Point, "scsi0-0")
	require.NoError(t, err)
	got := make([]byte, size)
	_, err = src.ReadAt(ctx, got, 0)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(content, got), "the recovery point holds the VM's disk")
}
