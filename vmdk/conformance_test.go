package vmdk_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/vmdk"
)

// TestSourceConformance runs the draastest source suite on VMDKs of every
// subformat, made by qemu-img and by our Sink.
func TestSourceConformance(t *testing.T) {
	for _, f := range subformats {
		t.Run("qemu/"+f.String(), func(t *testing.T) {
			qemuImg(t)
			draastest.TestBlockSource(t, func(t *testing.T, content []byte) draas.BlockSource {
				if len(content) == 0 {
					t.Skip("qemu-img cannot make an empty VMDK")
				}
				dir := t.TempDir()
				raw := writeFile(t, dir, "disk.raw", content)
				out := filepath.Join(dir, "disk.vmdk")
				qemuConvert(t, raw, out, f.String())
				return openT(t, out)
			})
		})
		t.Run("ours/"+f.String(), func(t *testing.T) {
			draastest.TestBlockSource(t, func(t *testing.T, content []byte) draas.BlockSource {
				if len(content) == 0 {
					t.Skip("vmdk.Create refuses an empty disk (TestSinkEmptyDisk)")
				}
				out := filepath.Join(t.TempDir(), "disk.vmdk")
				writeVMDK(t, out, content, vmdk.CreateOptions{Format: f})
				return openT(t, out)
			})
		})
	}
}

// TestSinkConformance runs the draastest sink suite on Sink in every
// subformat. The suite's read-back converts the committed file with
// qemu-img when it is installed, so the files are checked by a reader we
// did not write.
func TestSinkConformance(t *testing.T) {
	for _, f := range subformats {
		t.Run(f.String(), func(t *testing.T) {
			draastest.TestVolumeSink(t, func(t *testing.T, size int64) draastest.SinkHarness {
				path := filepath.Join(t.TempDir(), "disk.vmdk")
				s, err := vmdk.Create(path, size, vmdk.CreateOptions{Format: f})
				if err != nil {
					t.Fatal(err)
				}
				return draastest.SinkHarness{
					Sink: s,
					Size: s.Size(),
					ReadBack: func(ctx context.Context) ([]byte, error) {
						return readBack(t, path, s.Size())
					},
				}
			})
		})
	}
}
