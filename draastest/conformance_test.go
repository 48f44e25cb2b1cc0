package draastest_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/draastest"
)

// The fakes run the suites that every implementation runs.

func TestDiskIsBlockSource(t *testing.T) {
	for _, bs := range []int{4 << 10, 64 << 10, draastest.DefaultBlockSize} {
		t.Run(fmt.Sprint(bs), func(t *testing.T) {
			draastest.TestBlockSource(t, func(t *testing.T, content []byte) draas.BlockSource {
				return draastest.DiskFrom(content, bs)
			})
		})
	}
}

func TestPlainSourceIsBlockSource(t *testing.T) {
	draastest.TestBlockSource(t, func(t *testing.T, content []byte) draas.BlockSource {
		return draastest.PlainSource(draastest.DiskFrom(content, 64<<10))
	})
}

func TestFaultySourceIsBlockSource(t *testing.T) {
	draastest.TestBlockSource(t, func(t *testing.T, content []byte) draas.BlockSource {
		f := new(draastest.Faults)
		return draastest.FaultySource(draastest.DiskFrom(content, 64<<10), f)
	})
}

// paddedSource is a disk whose storage rounds its size up to whole MiB, as
// EBS rounds to GiB.
func TestPaddedSourceIsBlockSource(t *testing.T) {
	draastest.TestBlockSource(t, func(t *testing.T, content []byte) draas.BlockSource {
		size := (int64(len(content)) + 1<<20 - 1) &^ (1<<20 - 1)
		return draastest.DiskFrom(content, 64<<10).CloneSize(size)
	})
}

// sinkHarness returns a harness for s, committed content being its disk's.
func sinkHarness(s *draastest.Sink) draastest.SinkHarness {
	return draastest.SinkHarness{
		Sink: s,
		ReadBack: func(ctx context.Context) ([]byte, error) {
			if s.State() != draastest.SinkCommitted {
				return nil, fmt.Errorf("sink is %s: %w", s.State(), draas.ErrNotFound)
			}
			return s.Disk().Bytes(), nil
		},
	}
}

func TestSinkIsVolumeSink(t *testing.T) {
	for _, bs := range []int{4 << 10, 64 << 10, draastest.DefaultBlockSize} {
		t.Run(fmt.Sprint(bs), func(t *testing.T) {
			draastest.TestVolumeSink(t, func(t *testing.T, size int64) draastest.SinkHarness {
				return sinkHarness(draastest.NewSink(size, bs, draastest.SinkOptions{}))
			})
		})
	}
}

func TestIncrementalSinkIsVolumeSink(t *testing.T) {
	draastest.TestVolumeSink(t, func(t *testing.T, size int64) draastest.SinkHarness {
		// The parent holds data everywhere, so zero blocks must be written.
		base := draastest.DiskFrom(bytes.Repeat([]byte{0xcc}, int(size)), 64<<10)
		return sinkHarness(draastest.NewSink(size, 64<<10, draastest.SinkOptions{Base: base, NeedsZeroWrites: true}))
	})
}

func TestPaddedSinkIsVolumeSink(t *testing.T) {
	draastest.TestVolumeSink(t, func(t *testing.T, size int64) draastest.SinkHarness {
		total := (size + 1<<20 - 1) &^ (1<<20 - 1)
		h := sinkHarness(draastest.NewSink(total, 64<<10, draastest.SinkOptions{}))
		h.Size = total
		return h
	})
}

func TestWrappedSinksAreVolumeSinks(t *testing.T) {
	wrappers := map[string]func(draas.VolumeSink) draas.VolumeSink{
		"Faulty": func(s draas.VolumeSink) draas.VolumeSink { return draastest.FaultySink(s, new(draastest.Faults)) },
		"Plain":  draastest.PlainSink,
	}
	for name, wrap := range wrappers {
		t.Run(name, func(t *testing.T) {
			draastest.TestVolumeSink(t, func(t *testing.T, size int64) draastest.SinkHarness {
				h := sinkHarness(draastest.NewSink(size, 64<<10, draastest.SinkOptions{}))
				h.Sink = wrap(h.Sink)
				return h
			})
		})
	}
}

func TestHypervisorDiskIsVolumeSink(t *testing.T) {
	draastest.TestVolumeSink(t, func(t *testing.T, size int64) draastest.SinkHarness {
		ctx := t.Context()
		h := draastest.NewHypervisor(nil)
		if err := h.CreateVM(ctx, draas.VMRequest{Name: "vm", Shape: draas.Shape{CPUs: 1, MemoryMiB: 512, Disks: []draas.Disk{{Size: size}}}}); err != nil {
			t.Fatal(err)
		}
		sink, err := h.OpenDisk(ctx, "vm", 0)
		if err != nil {
			t.Fatal(err)
		}
		return draastest.SinkHarness{
			Sink:    sink,
			InPlace: true,
			ReadBack: func(ctx context.Context) ([]byte, error) {
				d, err := h.Disk("vm", 0)
				if err != nil {
					return nil, err
				}
				return d.Bytes(), nil
			},
		}
	})
}

func TestCloudIsInstanceLauncher(t *testing.T) {
	draastest.TestInstanceLauncher(t, func(t *testing.T) (draas.InstanceLauncher, string) {
		c := draastest.NewCloud(nil)
		c.AddSnapshot("snap-1", draastest.DiskFrom([]byte("boot sector"), 0))
		return c, "snap-1"
	})
}

func TestHypervisorIsHypervisor(t *testing.T) {
	draastest.TestHypervisor(t, func(t *testing.T) draas.Hypervisor {
		return draastest.NewHypervisor(nil)
	})
}

func TestDNSIsDNS(t *testing.T) {
	for _, zone := range []string{"example.com", "Example.ORG."} {
		t.Run(zone, func(t *testing.T) {
			draastest.TestDNS(t, func(t *testing.T) (draas.DNS, string) {
				return draastest.NewDNS(nil, zone), zone
			})
		})
	}
}
