package ebs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsebs "github.com/aws/aws-sdk-go-v2/service/ebs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/retry"
)

const gib = 1 << 30

func newSim(t *testing.T, extra ...func(*awsebs.Options)) (*awssim.Server, *awsebs.Client) {
	t.Helper()
	srv, err := awssim.New(awssim.Options{})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
	}
	client := ebs.NewClient(cfg, 8, func(o *awsebs.Options) {
		o.BaseEndpoint = aws.String(srv.URL)
		// Back off in milliseconds, not seconds: the simulator throttles at
		// random rather than by rate, and tests should not wait.
		o.Retryer = awsretry.NewStandard(func(so *awsretry.StandardOptions) {
			so.MaxAttempts = 5
			so.MaxBackoff = 20 * time.Millisecond
			so.RateLimiter = ratelimit.None
		})
		for _, fn := range extra {
			fn(o)
		}
	})
	return srv, client
}

// disk returns a 1 GiB disk with data in the given fraction of its blocks.
func disk(seed uint64, fraction float64) *draastest.Disk {
	r := rand.New(rand.NewPCG(seed, 1))
	d := draastest.NewDisk(gib, ebs.BlockSize)
	buf := make([]byte, ebs.BlockSize)
	for off := int64(0); off < gib; off += ebs.BlockSize {
		if r.Float64() < fraction {
			for i := range buf {
				buf[i] = byte(r.Uint32())
			}
			d.WriteAt(buf, off)
		}
	}
	return d
}

// snapshotBytes returns a snapshot's whole content.
func snapshotBytes(srv *awssim.Server, id string) ([]byte, error) {
	info, err := srv.SnapshotInfo(id)
	if err != nil {
		return nil, err
	}
	p := make([]byte, info.SizeGiB<<30)
	_, err = srv.ReadSnapshotAt(id, p, 0)
	return p, err
}

var fast = retry.Policy{Initial: time.Millisecond, Max: 20 * time.Millisecond, MaxAttempts: 20}

func TestFullThenIncrementalRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB snapshots; the full run covers it")
	}
	ctx := context.Background()
	srv, client := newSim(t)

	src := disk(1, 0.1)
	sink, err := ebs.NewSink(ctx, client, src.Size(), ebs.SinkOptions{Tags: map[string]string{draas.TagVM: "db"}, Description: "full"})
	require.NoError(t, err)
	st, err := blockcopy.Copy(ctx, sink, src, blockcopy.Options{Verify: true})
	require.NoError(t, err)
	full := sink.SnapshotID()
	got, err := snapshotBytes(srv, full)
	require.NoError(t, err)
	require.True(t, bytes.Equal(src.Bytes(), got), "snapshot bytes differ from the disk")
	assert.Equal(t, int64(src.StoredBlocks()), st.BlocksCopied)
	assert.Equal(t, src.StoredBlocks(), srv.Calls("PutSnapshotBlock"), "zero blocks cost no API call")
	info, err := srv.SnapshotInfo(full)
	require.NoError(t, err)
	assert.Equal(t, "db", info.Tags[draas.TagVM])

	// Change 1 % of the blocks (some to zeros), then copy only the changes
	// onto a child of the full snapshot.
	src.Version("full")
	r := rand.New(rand.NewPCG(2, 2))
	nblocks := int64(gib / ebs.BlockSize)
	changedBlocks := map[int64]bool{}
	for len(changedBlocks) < int(nblocks/100) {
		i := r.Int64N(nblocks)
		changedBlocks[i] = true
		p := make([]byte, ebs.BlockSize)
		if len(changedBlocks)%5 != 0 {
			for j := range p {
				p[j] = byte(r.Uint32()) | 1
			}
		}
		src.WriteAt(p, i*ebs.BlockSize)
	}
	exts, err := draas.ChangedExtents(ctx, src, "full")
	require.NoError(t, err)
	// Blocks that were holes and were "changed" to zeros did not change.
	var want int64
	for _, e := range exts {
		want += e.Length / ebs.BlockSize
	}
	require.GreaterOrEqual(t, want, int64(len(changedBlocks)*3/4))

	before := srv.Calls("PutSnapshotBlock")
	inc, err := ebs.NewSink(ctx, client, src.Size(), ebs.SinkOptions{ParentSnapshotID: full})
	require.NoError(t, err)
	require.True(t, inc.NeedsZeroWrites())
	st, err = blockcopy.Copy(ctx, inc, src, blockcopy.Options{Extents: exts, Verify: true})
	require.NoError(t, err)
	sent := srv.Calls("PutSnapshotBlock") - before
	assert.Equal(t, int(want), sent, "an incremental copy sends exactly the changed blocks")
	assert.Equal(t, want, st.BlocksCopied)
	got, err = snapshotBytes(srv, inc.SnapshotID())
	require.NoError(t, err)
	require.True(t, bytes.Equal(src.Bytes(), got), "incremental snapshot bytes differ from the disk")

	// The EBS source of the child reports the same change set against the
	// parent, and reads back identical through the copy engine.
	snap, err := ebs.OpenSnapshot(ctx, client, inc.SnapshotID(), ebs.SourceOptions{})
	require.NoError(t, err)
	changed, err := snap.ChangedExtents(ctx, full)
	require.NoError(t, err)
	var n int64
	for _, e := range changed {
		n += e.Length / ebs.BlockSize
	}
	assert.Equal(t, want, n)
	out := draastest.NewSink(snap.Size(), ebs.BlockSize, draastest.SinkOptions{})
	_, err = blockcopy.Copy(ctx, out, snap, blockcopy.Options{})
	require.NoError(t, err)
	assert.True(t, bytes.Equal(src.Bytes(), out.Disk().Bytes()))
}

func TestThrottlingLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB snapshots; the full run covers it")
	}
	ctx := context.Background()
	adaptive := ebs.NewAdaptiveLimit(50, 1000)
	srv, client := newSim(t, ebs.WithAdaptiveLimit(adaptive))
	srv.Throttle("PutSnapshotBlock", 0.2)
	srv.Throttle("GetSnapshotBlock", 0.2)
	src := disk(3, 0.05)
	sink, err := ebs.NewSink(ctx, client, src.Size(), ebs.SinkOptions{})
	require.NoError(t, err)
	_, err = blockcopy.Copy(ctx, sink, src, blockcopy.Options{Retry: fast, Verify: true})
	require.NoError(t, err)
	got, err := snapshotBytes(srv, sink.SnapshotID())
	require.NoError(t, err)
	assert.True(t, bytes.Equal(src.Bytes(), got))
	assert.Greater(t, srv.Calls("PutSnapshotBlock"), src.StoredBlocks(), "throttled calls were seen and retried")
	assert.Positive(t, adaptive.Throttled(), "the adaptive limit saw the throttling")
}

func TestResumeAfterCancel(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB snapshots; the full run covers it")
	}
	ctx := context.Background()
	srv, client := newSim(t)
	src := disk(4, 0.05)
	ckpt := blockcopy.FileCheckpoint(t.TempDir() + "/ckpt")
	sink, err := ebs.NewSink(ctx, client, src.Size(), ebs.SinkOptions{})
	require.NoError(t, err)

	cctx, cancel := context.WithCancel(ctx)
	var writes atomic.Int64
	half := int64(src.StoredBlocks() / 2)
	_, err = blockcopy.Copy(cctx, &cancelAfter{Sink: sink, n: half, count: &writes, cancel: cancel}, src, blockcopy.Options{Checkpoint: ckpt, Concurrency: 4})
	require.ErrorIs(t, err, context.Canceled)

	state, err := blockcopy.SinkState(ctx, ckpt)
	require.NoError(t, err)
	require.NotNil(t, state)
	resumed, err := ebs.ResumeSink(ctx, client, state, ebs.SinkOptions{})
	require.NoError(t, err)
	assert.Equal(t, sink.SnapshotID(), resumed.SnapshotID())
	before := srv.Calls("PutSnapshotBlock")
	st, err := blockcopy.Copy(ctx, resumed, src, blockcopy.Options{Checkpoint: ckpt, Verify: true})
	require.NoError(t, err, "CompleteSnapshot accepts the changed-block count and checksum across the resume")
	assert.Less(t, srv.Calls("PutSnapshotBlock")-before, src.StoredBlocks(), "the resume does not send everything again")
	assert.Positive(t, st.BlocksResumed)
	got, err := snapshotBytes(srv, sink.SnapshotID())
	require.NoError(t, err)
	assert.True(t, bytes.Equal(src.Bytes(), got))
}

type cancelAfter struct {
	*ebs.Sink
	n      int64
	count  *atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelAfter) WriteBlock(ctx context.Context, b draas.Block) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := c.Sink.WriteBlock(ctx, b)
	if err == nil && c.count.Add(1) >= c.n {
		c.cancel()
	}
	return err
}

func (c *cancelAfter) Unwrap() any { return c.Sink }

func TestAbortLeavesNoCompletedSnapshot(t *testing.T) {
	ctx := context.Background()
	srv, client := newSim(t)
	sink, err := ebs.NewSink(ctx, client, gib, ebs.SinkOptions{})
	require.NoError(t, err)
	f := &draastest.Faults{}
	f.FailAfter("ReadBlock", 3, errors.New("source lost"))
	_, err = blockcopy.Copy(ctx, sink, draastest.FaultySource(disk(5, 0.05), f), blockcopy.Options{Concurrency: 1})
	require.Error(t, err)
	info, err := srv.SnapshotInfo(sink.SnapshotID())
	require.NoError(t, err)
	assert.NotEqual(t, "completed", info.State)
	require.ErrorIs(t, sink.WriteBlock(ctx, draas.Block{Data: make([]byte, ebs.BlockSize)}), draas.ErrClosed)
}

func TestSourceErrors(t *testing.T) {
	ctx := context.Background()
	_, client := newSim(t)
	_, err := ebs.OpenSnapshot(ctx, client, "snap-00000000000000bad", ebs.SourceOptions{})
	require.ErrorIs(t, err, draas.ErrNotFound)
	_, err = ebs.OpenSnapshot(ctx, client, "", ebs.SourceOptions{})
	require.ErrorIs(t, err, draas.ErrInvalid)
	_, err = ebs.NewSink(ctx, client, 0, ebs.SinkOptions{})
	require.ErrorIs(t, err, draas.ErrInvalid)
}

func TestSourceConformance(t *testing.T) {
	draastest.TestBlockSource(t, func(t *testing.T, content []byte) draas.BlockSource {
		if len(content) == 0 {
			t.Skip("EBS snapshots hold at least 1 GiB")
		}
		srv, client := newSim(t)
		id, err := srv.SeedSnapshot(content, nil)
		require.NoError(t, err)
		src, err := ebs.OpenSnapshot(t.Context(), client, id, ebs.SourceOptions{})
		require.NoError(t, err)
		return src
	})
}

func TestSinkConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB snapshots; the full run covers it")
	}
	draastest.TestVolumeSink(t, func(t *testing.T, size int64) draastest.SinkHarness {
		srv, client := newSim(t)
		sink, err := ebs.NewSink(t.Context(), client, size, ebs.SinkOptions{})
		require.NoError(t, err)
		return draastest.SinkHarness{
			Sink: sink,
			Size: (size + gib - 1) / gib * gib,
			ReadBack: func(ctx context.Context) ([]byte, error) {
				info, err := srv.SnapshotInfo(sink.SnapshotID())
				if err != nil {
					return nil, err
				}
				if info.State != "completed" {
					return nil, fmt.Errorf("snapshot %s is %s: %w", sink.SnapshotID(), info.State, draas.ErrNotFound)
				}
				return snapshotBytes(srv, sink.SnapshotID())
			},
		}
	})
}

func TestEncryptedIncrementalInheritsEncryption(t *testing.T) {
	ctx := context.Background()
	srv, client := newSim(t)
	src := disk(6, 0.02)
	opts := ebs.SinkOptions{Encrypted: true}
	full, err := ebs.NewSink(ctx, client, src.Size(), opts)
	require.NoError(t, err)
	_, err = blockcopy.Copy(ctx, full, src, blockcopy.Options{})
	require.NoError(t, err)
	opts.ParentSnapshotID = full.SnapshotID()
	inc, err := ebs.NewSink(ctx, client, src.Size(), opts)
	require.NoError(t, err, "the same options with a parent are accepted")
	_, err = blockcopy.Copy(ctx, inc, src, blockcopy.Options{Extents: []draas.Extent{}})
	require.NoError(t, err)
	info, err := srv.SnapshotInfo(inc.SnapshotID())
	require.NoError(t, err)
	assert.True(t, info.Encrypted, "the incremental snapshot is encrypted like its parent")
}
