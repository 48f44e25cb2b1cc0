package blockcopy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
)

// TestProgressMuxParallelCopies runs several copies at once through one mux
// (run with -race): the callback is never entered twice at the same time,
// every event names its VM and disk, and each disk ends with a Done event.
func TestProgressMuxParallelCopies(t *testing.T) {
	const vms, disks = 3, 2
	size := int64(16 * bs)
	var inside atomic.Int32
	var overlaps int
	last := map[string]blockcopy.DiskProgress{} // written only in the callback: no lock, the mux serializes
	mux := blockcopy.NewProgressMux(func(p blockcopy.DiskProgress) {
		if inside.Add(1) != 1 {
			overlaps++
		}
		time.Sleep(50 * time.Microsecond) // widen the window a concurrent call would hit
		last[p.VM+"/"+p.Disk] = p
		inside.Add(-1)
	})

	var wg sync.WaitGroup
	for v := range vms {
		for d := range disks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				vm, disk := fmt.Sprintf("vm%d", v), fmt.Sprintf("disk%d", d)
				_, err := blockcopy.Copy(context.Background(), draastest.NewSink(size, bs, draastest.SinkOptions{}),
					draastest.DiskFrom(makeDisk(t, "random", size, uint64(10*v+d)), bs), blockcopy.Options{
						Concurrency:      2,
						ProgressInterval: time.Millisecond,
						Progress:         mux.For(vm, disk),
					})
				assert.NoError(t, err)
			}()
		}
	}
	wg.Wait()

	assert.Zero(t, overlaps, "the callback ran concurrently")
	require.Len(t, last, vms*disks)
	for key, p := range last {
		assert.Equal(t, key, p.VM+"/"+p.Disk)
		assert.True(t, p.Done, key)
		assert.Equal(t, size, p.Total, key)
		assert.Equal(t, size, p.Written+p.SkippedZero, key)
	}
}

// TestProgressMuxDirectCalls hammers the per-disk functions from many
// goroutines: every event arrives once, with its tags.
func TestProgressMuxDirectCalls(t *testing.T) {
	const workers, each = 8, 200
	counts := map[string]int{}
	var inside atomic.Int32
	var overlaps int
	mux := blockcopy.NewProgressMux(func(p blockcopy.DiskProgress) {
		if inside.Add(1) != 1 {
			overlaps++
		}
		counts[p.VM+"/"+p.Disk] += int(p.Written)
		inside.Add(-1)
	})
	var wg sync.WaitGroup
	for w := range workers {
		fn := mux.For("vm", fmt.Sprint(w))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				fn(blockcopy.Progress{Written: 1})
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, overlaps)
	require.Len(t, counts, workers)
	for w := range workers {
		assert.Equal(t, each, counts[fmt.Sprintf("vm/%d", w)])
	}
}

func TestProgressMuxNil(t *testing.T) {
	var nilMux *blockcopy.ProgressMux
	assert.Nil(t, nilMux.For("vm", "disk"), "a nil mux gives no progress function")
	assert.Nil(t, blockcopy.NewProgressMux(nil).For("vm", "disk"), "a mux without callback gives no progress function")
}

func TestDiskProgressJSON(t *testing.T) {
	b, err := json.Marshal(blockcopy.DiskProgress{VM: "web", Disk: "2000", Progress: blockcopy.Progress{Total: 10, Written: 4, Done: true}})
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	assert.Equal(t, "web", m["vm"])
	assert.Equal(t, "2000", m["disk"])
	assert.Equal(t, float64(10), m["total"], "Progress fields are inlined")
	assert.Equal(t, true, m["done"])
}
