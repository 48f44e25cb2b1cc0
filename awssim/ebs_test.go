package awssim_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	"github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/internal/testclock"
)

const blockSize = awssim.BlockSize

// newEBSWithClock is newEBS with a clock for Options.Now that moves only
// when advanced.
func newEBSWithClock(t *testing.T) (*testclock.Clock, *awssim.Server, *ebs.Client) {
	t.Helper()
	clock := testclock.New(time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC))
	srv, c := newEBS(t, awssim.Options{Now: clock.Now})
	return clock, srv, c
}

// newEBS starts a simulator and returns it with an EBS client pointed at it.
func newEBS(t *testing.T, opts awssim.Options, optFns ...func(*ebs.Options)) (*awssim.Server, *ebs.Client) {
	t.Helper()
	srv := startSim(t, opts)
	return srv, ebsClient(srv.URL, optFns...)
}

func ebsClient(url string, optFns ...func(*ebs.Options)) *ebs.Client {
	return ebs.New(ebs.Options{
		BaseEndpoint: aws.String(url),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
	}, optFns...)
}

// fastRetries keeps the SDK's standard retryer but without its backoff
// sleeps, and with enough attempts that a 30 % fault rate never exhausts
// them.
func fastRetries(o *ebs.Options) {
	o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = 20
		so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) {
			return time.Millisecond, nil
		})
	})
}

func noRetries(o *ebs.Options) { o.RetryMaxAttempts = 1 }

// patternBase is random data that pattern stamps; made once, since filling
// blocks word by word is slow under the race detector.
var patternBase = sync.OnceValue(func() []byte {
	b := make([]byte, blockSize)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
})

// pattern returns a block whose content depends on seed: every 4 KiB sector
// differs from the same sector of any other seed's block.
func pattern(seed uint64) []byte {
	b := bytes.Clone(patternBase())
	for i := 0; i < blockSize; i += 4096 {
		binary.LittleEndian.PutUint64(b[i:], seed)
	}
	return b
}

func checksum(data []byte) string {
	s := sha256.Sum256(data)
	return base64.StdEncoding.EncodeToString(s[:])
}

func linear(blocks ...[]byte) string {
	var cat []byte
	for _, b := range blocks {
		s := sha256.Sum256(b)
		cat = append(cat, s[:]...)
	}
	return checksum(cat)
}

func start(t *testing.T, c *ebs.Client, in *ebs.StartSnapshotInput) *ebs.StartSnapshotOutput {
	t.Helper()
	out, err := c.StartSnapshot(context.Background(), in)
	require.NoError(t, err)
	return out
}

func putBlock(ctx context.Context, c *ebs.Client, id string, idx int32, data []byte) (*ebs.PutSnapshotBlockOutput, error) {
	return c.PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{
		SnapshotId:        aws.String(id),
		BlockIndex:        aws.Int32(idx),
		BlockData:         bytes.NewReader(data),
		DataLength:        aws.Int32(int32(len(data))),
		Checksum:          aws.String(checksum(data)),
		ChecksumAlgorithm: types.ChecksumAlgorithmChecksumAlgorithmSha256,
	})
}

func put(t *testing.T, c *ebs.Client, id string, idx int32, data []byte) {
	t.Helper()
	_, err := putBlock(context.Background(), c, id, idx, data)
	require.NoError(t, err, "put block %d", idx)
}

// putAll writes blocks 0 to n-1 of snapshot id, pattern(i) each, four at a
// time.
func putAll(t *testing.T, c *ebs.Client, id string, n int32) {
	t.Helper()
	g, gctx := errgroup.WithContext(context.Background())
	g.SetLimit(4)
	for idx := range n {
		g.Go(func() error {
			_, err := putBlock(gctx, c, id, idx, pattern(uint64(idx)))
			return err
		})
	}
	require.NoError(t, g.Wait())
}

func complete(t *testing.T, c *ebs.Client, id string, count int32) {
	t.Helper()
	out, err := c.CompleteSnapshot(context.Background(), &ebs.CompleteSnapshotInput{
		SnapshotId: aws.String(id), ChangedBlocksCount: aws.Int32(count),
	})
	require.NoError(t, err)
	require.Equal(t, types.StatusCompleted, out.Status)
}

// listBlocks lists every block of a snapshot with the SDK's paginator.
func listBlocks(t *testing.T, c *ebs.Client, id string) []types.Block {
	t.Helper()
	var all []types.Block
	p := ebs.NewListSnapshotBlocksPaginator(c, &ebs.ListSnapshotBlocksInput{SnapshotId: aws.String(id)})
	for p.HasMorePages() {
		out, err := p.NextPage(context.Background())
		require.NoError(t, err)
		require.EqualValues(t, blockSize, *out.BlockSize)
		all = append(all, out.Blocks...)
	}
	return all
}

func indices[T any](bs []T, idx func(T) int32) []int32 {
	out := make([]int32, len(bs))
	for i, b := range bs {
		out[i] = idx(b)
	}
	return out
}

func blockIdx(b types.Block) int32          { return *b.BlockIndex }
func changedIdx(b types.ChangedBlock) int32 { return *b.BlockIndex }
func getBlock(t *testing.T, c *ebs.Client, id string, idx int32, token *string) []byte {
	t.Helper()
	out, err := c.GetSnapshotBlock(context.Background(), &ebs.GetSnapshotBlockInput{
		SnapshotId: aws.String(id), BlockIndex: aws.Int32(idx), BlockToken: token,
	})
	require.NoError(t, err)
	defer out.BlockData.Close()
	data, err := io.ReadAll(out.BlockData)
	require.NoError(t, err)
	require.EqualValues(t, blockSize, *out.DataLength)
	require.Equal(t, types.ChecksumAlgorithmChecksumAlgorithmSha256, out.ChecksumAlgorithm)
	require.Equal(t, checksum(data), *out.Checksum, "x-amz-Checksum of block %d", idx)
	return data
}

// readBack reads every listed block of a snapshot through the SDK.
func readBack(t *testing.T, c *ebs.Client, id string) map[int32][]byte {
	t.Helper()
	out := map[int32][]byte{}
	for _, b := range listBlocks(t, c, id) {
		out[*b.BlockIndex] = getBlock(t, c, id, *b.BlockIndex, b.BlockToken)
	}
	return out
}

// requireAPIError checks that err is the EBS error code with the HTTP
// status, and returns the reason of the errors that carry one.
func requireAPIError(t *testing.T, err error, code string, status int) string {
	t.Helper()
	require.Error(t, err)
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, code, apiErr.ErrorCode(), "error %v", err)
	var re *awshttp.ResponseError
	require.ErrorAs(t, err, &re)
	require.Equal(t, status, re.HTTPStatusCode(), "error %v", err)
	var (
		ve *types.ValidationException
		nf *types.ResourceNotFoundException
		th *types.RequestThrottledException
	)
	switch {
	case errors.As(err, &ve):
		return string(ve.Reason)
	case errors.As(err, &nf):
		return string(nf.Reason)
	case errors.As(err, &th):
		return string(th.Reason)
	}
	return ""
}

func requireValidation(t *testing.T, err error, reason types.ValidationExceptionReason) {
	t.Helper()
	got := requireAPIError(t, err, "ValidationException", 400)
	require.Equal(t, string(reason), got, "error %v", err)
}

func TestEBSRoundTrip(t *testing.T) {
	t.Parallel()
	clock, srv, c := newEBSWithClock(t)
	ctx := context.Background()

	st := start(t, c, &ebs.StartSnapshotInput{
		VolumeSize:  aws.Int64(1),
		Description: aws.String("round trip"),
		Tags:        []types.Tag{{Key: aws.String("vm"), Value: aws.String("web-1")}},
	})
	assert.Equal(t, types.StatusPending, st.Status)
	assert.EqualValues(t, blockSize, *st.BlockSize)
	assert.EqualValues(t, 1, *st.VolumeSize)
	assert.Equal(t, "123456789012", *st.OwnerId)
	assert.Equal(t, "round trip", *st.Description)
	assert.True(t, clock.Now().Equal(*st.StartTime), "StartTime %v", st.StartTime)
	assert.Nil(t, st.ParentSnapshotId)
	require.Len(t, st.Tags, 1)
	assert.Equal(t, "web-1", *st.Tags[0].Value)
	id := *st.SnapshotId

	blocks := map[int32][]byte{0: pattern(1), 5: pattern(2), 100: pattern(3)}
	for idx, data := range blocks {
		out, err := c.PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{
			SnapshotId:        aws.String(id),
			BlockIndex:        aws.Int32(idx),
			BlockData:         bytes.NewReader(data),
			DataLength:        aws.Int32(blockSize),
			Checksum:          aws.String(checksum(data)),
			ChecksumAlgorithm: types.ChecksumAlgorithmChecksumAlgorithmSha256,
			Progress:          aws.Int32(50),
		})
		require.NoError(t, err)
		assert.Equal(t, checksum(data), *out.Checksum)
		assert.Equal(t, types.ChecksumAlgorithmChecksumAlgorithmSha256, out.ChecksumAlgorithm)
	}
	put(t, c, id, 5, blocks[5]) // writing a block again replaces it and counts once

	// A wrong aggregated checksum is rejected and leaves the snapshot
	// pending; the right one completes it.
	completeWith := func(sum string) error {
		_, err := c.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{
			SnapshotId:                aws.String(id),
			ChangedBlocksCount:        aws.Int32(3),
			Checksum:                  aws.String(sum),
			ChecksumAlgorithm:         types.ChecksumAlgorithmChecksumAlgorithmSha256,
			ChecksumAggregationMethod: types.ChecksumAggregationMethodChecksumAggregationLinear,
		})
		return err
	}
	requireValidation(t, completeWith(linear(blocks[5], blocks[0], blocks[100])), types.ValidationExceptionReasonInvalidParameterValue)
	info, err := srv.SnapshotInfo(id)
	require.NoError(t, err)
	assert.Equal(t, "pending", info.State)
	require.NoError(t, completeWith(linear(blocks[0], blocks[5], blocks[100])))

	info, err = srv.SnapshotInfo(id)
	require.NoError(t, err)
	assert.Equal(t, awssim.SnapshotInfo{
		ID: id, VolumeID: "vol-ffffffff", State: "completed", SizeGiB: 1, Description: "round trip",
		Tags: map[string]string{"vm": "web-1"}, StartTime: clock.Now(), Blocks: 3, WrittenBlocks: 3,
	}, info)

	got := readBack(t, c, id)
	assert.Equal(t, blocks, got)

	// The handles see the same bytes.
	content, err := srv.SnapshotBytes(id)
	require.NoError(t, err)
	require.Len(t, content, 101*blockSize)
	for idx := range int32(101) {
		want, ok := blocks[idx]
		if !ok {
			want = make([]byte, blockSize)
		}
		require.True(t, bytes.Equal(want, content[int(idx)*blockSize:int(idx+1)*blockSize]), "block %d", idx)
	}
	tail := make([]byte, 10)
	n, err := srv.ReadSnapshotAt(id, tail, 1<<30-5)
	assert.Equal(t, 5, n)
	assert.ErrorIs(t, err, io.EOF)
}

func TestEBSIncrementalChain(t *testing.T) {
	t.Parallel()
	srv, c := newEBS(t, awssim.Options{})
	ctx := context.Background()

	parent := *start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)}).SnapshotId
	base := map[int32][]byte{}
	for idx := range int32(4) {
		base[idx] = pattern(uint64(10 + idx))
		put(t, c, parent, idx, base[idx])
	}

	// A parent must be completed before it can have children.
	_, err := c.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), ParentSnapshotId: &parent})
	requireValidation(t, err, types.ValidationExceptionReasonInvalidSnapshotId)
	complete(t, c, parent, 4)

	// A child may grow the volume but not shrink it.
	_, err = c.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(2), ParentSnapshotId: aws.String("snap-0123456789abcdef0")})
	require.Equal(t, "SNAPSHOT_NOT_FOUND", requireAPIError(t, err, "ResourceNotFoundException", 404))

	st := start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(2), ParentSnapshotId: &parent})
	require.Equal(t, parent, *st.ParentSnapshotId)
	child := *st.SnapshotId
	changes := map[int32][]byte{
		1:    pattern(99),
		3:    make([]byte, blockSize), // explicit zeros override the parent's block
		2100: pattern(100),            // in the second GiB
	}
	for idx, data := range changes {
		put(t, c, child, idx, data)
	}
	_, err = c.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{
		SnapshotId:                aws.String(child),
		ChangedBlocksCount:        aws.Int32(3),
		Checksum:                  aws.String(linear(changes[1], changes[3], changes[2100])),
		ChecksumAlgorithm:         types.ChecksumAlgorithmChecksumAlgorithmSha256,
		ChecksumAggregationMethod: types.ChecksumAggregationMethodChecksumAggregationLinear,
	})
	require.NoError(t, err, "the aggregated checksum covers only the blocks written to the child")

	// ListChangedBlocks reports exactly the changed blocks.
	lc, err := c.ListChangedBlocks(ctx, &ebs.ListChangedBlocksInput{FirstSnapshotId: &parent, SecondSnapshotId: &child})
	require.NoError(t, err)
	assert.Equal(t, []int32{1, 3, 2100}, indices(lc.ChangedBlocks, changedIdx))
	assert.EqualValues(t, 2, *lc.VolumeSize)
	assert.EqualValues(t, blockSize, *lc.BlockSize)
	assert.Nil(t, lc.NextToken)
	assert.True(t, lc.ExpiryTime.After(time.Now()))
	for _, cb := range lc.ChangedBlocks {
		require.NotNil(t, cb.SecondBlockToken)
		assert.Equal(t, changes[*cb.BlockIndex], getBlock(t, c, child, *cb.BlockIndex, cb.SecondBlockToken))
		if *cb.BlockIndex == 2100 {
			assert.Nil(t, cb.FirstBlockToken, "the parent has no block 2100")
			continue
		}
		require.NotNil(t, cb.FirstBlockToken)
		assert.Equal(t, base[*cb.BlockIndex], getBlock(t, c, parent, *cb.BlockIndex, cb.FirstBlockToken))
		// A token is only good for its own snapshot.
		_, err := c.GetSnapshotBlock(ctx, &ebs.GetSnapshotBlockInput{
			SnapshotId: &child, BlockIndex: cb.BlockIndex, BlockToken: cb.FirstBlockToken,
		})
		requireValidation(t, err, types.ValidationExceptionReasonInvalidBlockToken)
	}

	// The child holds the parent's blocks plus the changes.
	want := map[int32][]byte{0: base[0], 1: changes[1], 2: base[2], 3: changes[3], 2100: changes[2100]}
	assert.Equal(t, want, readBack(t, c, child))
	assert.Equal(t, base, readBack(t, c, parent), "the parent is unchanged")

	// Without a first snapshot, every block of the second is listed.
	lc, err = c.ListChangedBlocks(ctx, &ebs.ListChangedBlocksInput{SecondSnapshotId: &child})
	require.NoError(t, err)
	assert.Equal(t, []int32{0, 1, 2, 3, 2100}, indices(lc.ChangedBlocks, changedIdx))
	for _, cb := range lc.ChangedBlocks {
		assert.Nil(t, cb.FirstBlockToken)
	}

	// A snapshot of the same lineage with nothing changed lists nothing.
	same := *start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(2), ParentSnapshotId: &child}).SnapshotId
	complete(t, c, same, 0)
	lc, err = c.ListChangedBlocks(ctx, &ebs.ListChangedBlocksInput{FirstSnapshotId: &child, SecondSnapshotId: &same})
	require.NoError(t, err)
	assert.Empty(t, lc.ChangedBlocks)
	lc, err = c.ListChangedBlocks(ctx, &ebs.ListChangedBlocksInput{FirstSnapshotId: &parent, SecondSnapshotId: &same})
	require.NoError(t, err)
	assert.Equal(t, []int32{1, 3, 2100}, indices(lc.ChangedBlocks, changedIdx), "changes across two generations")

	// Snapshots of different lineages cannot be compared.
	other, err := srv.SeedSnapshot(pattern(7), nil)
	require.NoError(t, err)
	_, err = c.ListChangedBlocks(ctx, &ebs.ListChangedBlocksInput{FirstSnapshotId: &other, SecondSnapshotId: &child})
	requireValidation(t, err, types.ValidationExceptionReasonUnrelatedSnapshots)

	info, err := srv.SnapshotInfo(child)
	require.NoError(t, err)
	assert.Equal(t, parent, info.ParentID)
	assert.Equal(t, 5, info.Blocks)
	assert.Equal(t, 3, info.WrittenBlocks)
}

func TestEBSVolumeSizeBelowParent(t *testing.T) {
	t.Parallel()
	_, c := newEBS(t, awssim.Options{})
	parent := *start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(2)}).SnapshotId
	complete(t, c, parent, 0)

	_, err := c.StartSnapshot(context.Background(), &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), ParentSnapshotId: &parent})
	requireValidation(t, err, types.ValidationExceptionReasonInvalidVolumeSize)
	_, err = c.StartSnapshot(context.Background(), &ebs.StartSnapshotInput{VolumeSize: aws.Int64(0)})
	requireValidation(t, err, types.ValidationExceptionReasonInvalidVolumeSize)
}

func TestEBSPagination(t *testing.T) {
	t.Parallel()
	clock, _, c := newEBSWithClock(t)
	ctx := context.Background()

	const n = 210
	id := *start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)}).SnapshotId
	putAll(t, c, id, n)
	complete(t, c, id, n)

	list := func(in ebs.ListSnapshotBlocksInput) *ebs.ListSnapshotBlocksOutput {
		t.Helper()
		in.SnapshotId = &id
		out, err := c.ListSnapshotBlocks(ctx, &in)
		require.NoError(t, err)
		return out
	}
	var got []int32
	p1 := list(ebs.ListSnapshotBlocksInput{MaxResults: aws.Int32(100)})
	require.Len(t, p1.Blocks, 100)
	require.NotNil(t, p1.NextToken)
	// With a NextToken, StartingBlockIndex is ignored.
	p2 := list(ebs.ListSnapshotBlocksInput{MaxResults: aws.Int32(100), NextToken: p1.NextToken, StartingBlockIndex: aws.Int32(5)})
	require.Len(t, p2.Blocks, 100)
	require.NotNil(t, p2.NextToken)
	p3 := list(ebs.ListSnapshotBlocksInput{MaxResults: aws.Int32(100), NextToken: p2.NextToken})
	require.Len(t, p3.Blocks, 10)
	require.Nil(t, p3.NextToken)
	for _, p := range []*ebs.ListSnapshotBlocksOutput{p1, p2, p3} {
		got = append(got, indices(p.Blocks, blockIdx)...)
	}
	want := make([]int32, n)
	for i := range want {
		want[i] = int32(i)
	}
	assert.Equal(t, want, got)

	// MaxResults below 100 still returns 100, as AWS documents; the default
	// returns everything.
	assert.Len(t, list(ebs.ListSnapshotBlocksInput{MaxResults: aws.Int32(5)}).Blocks, 100)
	assert.Len(t, list(ebs.ListSnapshotBlocksInput{}).Blocks, n)

	// StartingBlockIndex starts at that block or the next one.
	from := list(ebs.ListSnapshotBlocksInput{StartingBlockIndex: aws.Int32(150)})
	assert.Equal(t, want[150:], indices(from.Blocks, blockIdx))
	assert.Nil(t, from.NextToken)
	assert.Empty(t, list(ebs.ListSnapshotBlocksInput{StartingBlockIndex: aws.Int32(n)}).Blocks)

	// ListChangedBlocks pages the same way.
	cp := ebs.NewListChangedBlocksPaginator(c, &ebs.ListChangedBlocksInput{SecondSnapshotId: &id, MaxResults: aws.Int32(100)})
	var changed []int32
	pages := 0
	for cp.HasMorePages() {
		out, err := cp.NextPage(ctx)
		require.NoError(t, err)
		changed = append(changed, indices(out.ChangedBlocks, changedIdx)...)
		pages++
	}
	assert.Equal(t, want, changed)
	assert.Equal(t, 3, pages)

	// A token belongs to its listing and expires after 60 minutes.
	_, err := c.ListChangedBlocks(ctx, &ebs.ListChangedBlocksInput{SecondSnapshotId: &id, NextToken: p1.NextToken})
	requireValidation(t, err, types.ValidationExceptionReasonInvalidPageToken)
	_, err = c.ListSnapshotBlocks(ctx, &ebs.ListSnapshotBlocksInput{SnapshotId: &id, NextToken: aws.String("Zm9vYmFy")})
	requireValidation(t, err, types.ValidationExceptionReasonInvalidPageToken)
	clock.Advance(61 * time.Minute)
	_, err = c.ListSnapshotBlocks(ctx, &ebs.ListSnapshotBlocksInput{SnapshotId: &id, NextToken: p1.NextToken})
	requireValidation(t, err, types.ValidationExceptionReasonInvalidPageToken)

	// Block tokens last seven days.
	tok := p1.Blocks[0].BlockToken
	assert.Equal(t, pattern(0), getBlock(t, c, id, 0, tok))
	clock.Advance(7 * 24 * time.Hour)
	_, err = c.GetSnapshotBlock(ctx, &ebs.GetSnapshotBlockInput{SnapshotId: &id, BlockIndex: aws.Int32(0), BlockToken: tok})
	requireValidation(t, err, types.ValidationExceptionReasonInvalidBlockToken)
}

func TestEBSClientToken(t *testing.T) {
	t.Parallel()
	srv, c := newEBS(t, awssim.Options{})
	ctx := context.Background()
	in := &ebs.StartSnapshotInput{
		VolumeSize:  aws.Int64(8),
		ClientToken: aws.String("plan-1/vm-1/replicate"),
		Timeout:     aws.Int32(30),
		Tags: []types.Tag{
			{Key: aws.String("a"), Value: aws.String("1")},
			{Key: aws.String("b"), Value: aws.String("2")},
		},
	}
	before := len(srv.Snapshots()) // the EC2 side may seed AMI snapshots
	first := start(t, c, in)
	in.Tags = []types.Tag{in.Tags[1], in.Tags[0]} // tag order does not matter
	again := start(t, c, in)
	assert.Equal(t, *first.SnapshotId, *again.SnapshotId)
	assert.True(t, first.StartTime.Equal(*again.StartTime))
	assert.Len(t, srv.Snapshots(), before+1)

	in.VolumeSize = aws.Int64(9)
	_, err := c.StartSnapshot(ctx, in)
	requireAPIError(t, err, "ConflictException", 409)
	var conflict *types.ConflictException
	assert.ErrorAs(t, err, &conflict)

	// Without a token of its own, the SDK makes a fresh one per call.
	a := start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)})
	b := start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)})
	assert.NotEqual(t, *a.SnapshotId, *b.SnapshotId)
	assert.Len(t, srv.Snapshots(), before+3)
}

func TestEBSEncryption(t *testing.T) {
	t.Parallel()
	srv, c := newEBS(t, awssim.Options{})
	ctx := context.Background()
	enc := start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), Encrypted: aws.Bool(true)})
	require.NotNil(t, enc.KmsKeyArn, "an encrypted snapshot reports its key")
	assert.Contains(t, *enc.KmsKeyArn, ":kms:us-east-1:123456789012:key/")
	complete(t, c, *enc.SnapshotId, 0)

	_, err := c.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), Encrypted: aws.Bool(true), ParentSnapshotId: enc.SnapshotId})
	requireValidation(t, err, types.ValidationExceptionReasonInvalidParameterValue)

	child := start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), ParentSnapshotId: enc.SnapshotId})
	assert.Equal(t, *enc.KmsKeyArn, *child.KmsKeyArn, "the child of an encrypted parent is encrypted with its key")
	info, err := srv.SnapshotInfo(*child.SnapshotId)
	require.NoError(t, err)
	assert.True(t, info.Encrypted)
}

func TestEBSChecksumRejected(t *testing.T) {
	t.Parallel()
	srv, c := newEBS(t, awssim.Options{})
	ctx := context.Background()
	id := *start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)}).SnapshotId

	data := pattern(1)
	_, err := c.PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{
		SnapshotId:        &id,
		BlockIndex:        aws.Int32(0),
		BlockData:         bytes.NewReader(data),
		DataLength:        aws.Int32(blockSize),
		Checksum:          aws.String(checksum(pattern(2))),
		ChecksumAlgorithm: types.ChecksumAlgorithmChecksumAlgorithmSha256,
	})
	requireValidation(t, err, types.ValidationExceptionReasonInvalidParameterValue)
	var ve *types.ValidationException
	require.ErrorAs(t, err, &ve)
	assert.Contains(t, ve.ErrorMessage(), "checksum")

	// A short block is refused too, whatever DataLength claims.
	_, err = c.PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{
		SnapshotId:        &id,
		BlockIndex:        aws.Int32(0),
		BlockData:         bytes.NewReader(data[:4096]),
		DataLength:        aws.Int32(blockSize),
		Checksum:          aws.String(checksum(data[:4096])),
		ChecksumAlgorithm: types.ChecksumAlgorithmChecksumAlgorithmSha256,
	})
	requireValidation(t, err, types.ValidationExceptionReasonInvalidParameterValue)

	info, err := srv.SnapshotInfo(id)
	require.NoError(t, err)
	assert.Zero(t, info.WrittenBlocks, "rejected blocks are not stored")
}

func TestEBSChangedBlocksCountMismatch(t *testing.T) {
	t.Parallel()
	srv, c := newEBS(t, awssim.Options{})
	ctx := context.Background()
	id := *start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)}).SnapshotId
	put(t, c, id, 0, pattern(1))
	put(t, c, id, 9, pattern(2))
	put(t, c, id, 9, pattern(3))

	_, err := c.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{SnapshotId: &id, ChangedBlocksCount: aws.Int32(3)})
	requireValidation(t, err, types.ValidationExceptionReasonInvalidParameterValue)
	info, err := srv.SnapshotInfo(id)
	require.NoError(t, err)
	assert.Equal(t, "pending", info.State)

	complete(t, c, id, 2)
	complete(t, c, id, 2) // completing again is harmless
	_, err = putBlock(ctx, c, id, 1, pattern(4))
	requireValidation(t, err, types.ValidationExceptionReasonInvalidSnapshotId)
}

func TestEBSTimeout(t *testing.T) {
	t.Parallel()
	clock, srv, c := newEBSWithClock(t)
	ctx := context.Background()

	_, err := c.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), Timeout: aws.Int32(5)})
	requireValidation(t, err, types.ValidationExceptionReasonInvalidParameterValue)

	id := *start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1), Timeout: aws.Int32(10)}).SnapshotId
	dflt := *start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)}).SnapshotId

	// Each write restarts the timeout.
	clock.Advance(9 * time.Minute)
	put(t, c, id, 0, pattern(1))
	clock.Advance(9 * time.Minute)
	put(t, c, id, 1, pattern(2))
	clock.Advance(11 * time.Minute)

	_, err = putBlock(ctx, c, id, 2, pattern(3))
	requireValidation(t, err, types.ValidationExceptionReasonWriteRequestTimeout)
	_, err = c.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{SnapshotId: &id, ChangedBlocksCount: aws.Int32(2)})
	requireValidation(t, err, types.ValidationExceptionReasonWriteRequestTimeout)
	info, err := srv.SnapshotInfo(id)
	require.NoError(t, err)
	assert.Equal(t, "error", info.State)

	// The default timeout is 60 minutes; 29 have passed.
	info, err = srv.SnapshotInfo(dflt)
	require.NoError(t, err)
	assert.Equal(t, "pending", info.State)
	clock.Advance(32 * time.Minute)
	info, err = srv.SnapshotInfo(dflt)
	require.NoError(t, err)
	assert.Equal(t, "error", info.State)
}

func TestEBSBlockIndexOutOfRange(t *testing.T) {
	t.Parallel()
	_, c := newEBS(t, awssim.Options{})
	id := *start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)}).SnapshotId
	put(t, c, id, 2047, pattern(1)) // the last block of 1 GiB
	_, err := putBlock(context.Background(), c, id, 2048, pattern(2))
	requireValidation(t, err, types.ValidationExceptionReasonInvalidBlock)
}

func TestEBSReadRequiresCompleted(t *testing.T) {
	t.Parallel()
	srv, c := newEBS(t, awssim.Options{})
	ctx := context.Background()
	id := *start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)}).SnapshotId
	put(t, c, id, 0, pattern(1))

	_, err := c.ListSnapshotBlocks(ctx, &ebs.ListSnapshotBlocksInput{SnapshotId: &id})
	requireValidation(t, err, types.ValidationExceptionReasonInvalidSnapshotId)
	_, err = c.GetSnapshotBlock(ctx, &ebs.GetSnapshotBlockInput{SnapshotId: &id, BlockIndex: aws.Int32(0), BlockToken: aws.String("AAAA")})
	requireValidation(t, err, types.ValidationExceptionReasonInvalidSnapshotId)

	// Once completed, the block reads back but only with a real token.
	complete(t, c, id, 1)
	_, err = c.GetSnapshotBlock(ctx, &ebs.GetSnapshotBlockInput{SnapshotId: &id, BlockIndex: aws.Int32(0), BlockToken: aws.String("AAAA")})
	requireValidation(t, err, types.ValidationExceptionReasonInvalidBlockToken)

	// A seeded snapshot reads like any other.
	seeded, err := srv.SeedSnapshot(slices.Concat(make([]byte, blockSize), pattern(5), []byte{1}), map[string]string{"k": "v"})
	require.NoError(t, err)
	info, err := srv.SnapshotInfo(seeded)
	require.NoError(t, err)
	assert.Equal(t, "completed", info.State)
	assert.Equal(t, map[string]string{"k": "v"}, info.Tags)
	assert.EqualValues(t, 1, info.SizeGiB)
	assert.Equal(t, 2, info.Blocks, "the zero block is not stored")
	tail := make([]byte, blockSize)
	tail[0] = 1
	pattern5 := pattern(5)
	assert.Equal(t, map[int32][]byte{1: pattern5, 2: tail}, readBack(t, c, seeded))

	// Unknown and malformed snapshot IDs.
	_, err = c.ListSnapshotBlocks(ctx, &ebs.ListSnapshotBlocksInput{SnapshotId: aws.String("snap-00000000000000fff")})
	require.Equal(t, "SNAPSHOT_NOT_FOUND", requireAPIError(t, err, "ResourceNotFoundException", 404))
	var nf *types.ResourceNotFoundException
	assert.ErrorAs(t, err, &nf)
	_, err = c.ListSnapshotBlocks(ctx, &ebs.ListSnapshotBlocksInput{SnapshotId: aws.String("vol-1")})
	requireValidation(t, err, types.ValidationExceptionReasonInvalidSnapshotId)
	_, err = srv.SnapshotInfo("snap-00000000000000fff")
	assert.ErrorIs(t, err, awssim.ErrSnapshotNotFound)
}

func TestEBSThrottlingRetried(t *testing.T) {
	t.Parallel()
	srv, c := newEBS(t, awssim.Options{}, fastRetries)
	ctx := context.Background()
	id := *start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)}).SnapshotId

	const n = 40
	srv.Throttle("PutSnapshotBlock", 0.3)
	putAll(t, c, id, n)
	calls := srv.Calls("PutSnapshotBlock")
	assert.Greater(t, calls, n, "some calls were throttled and retried")
	srv.ClearFaults()
	complete(t, c, id, n)

	got := readBack(t, c, id)
	require.Len(t, got, n)
	for idx, data := range got {
		require.True(t, bytes.Equal(pattern(uint64(idx)), data), "block %d", idx)
	}

	// The throttle is EBS's modelled RequestThrottledException, which the
	// SDK's standard retryer classifies as throttling.
	id2 := *start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)}).SnapshotId
	srv.ThrottleNth("PutSnapshotBlock", 1)
	_, err := putBlock(ctx, ebsClient(srv.URL, noRetries), id2, 0, pattern(1))
	require.Equal(t, "ACCOUNT_THROTTLED", requireAPIError(t, err, "RequestThrottledException", 400))
	assert.Equal(t, aws.TrueTernary, retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err))
}

func TestEBSInternalErrorRetried(t *testing.T) {
	t.Parallel()
	srv, c := newEBS(t, awssim.Options{}, fastRetries)
	ctx := context.Background()

	before := len(srv.Snapshots())
	srv.FailNth("StartSnapshot", 1)
	id := *start(t, c, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)}).SnapshotId
	assert.Equal(t, 2, srv.Calls("StartSnapshot"))
	assert.Len(t, srv.Snapshots(), before+1, "the failed attempt made no snapshot")

	srv.FailNth("PutSnapshotBlock", 1)
	put(t, c, id, 3, pattern(3))
	srv.FailNth("CompleteSnapshot", 1)
	complete(t, c, id, 1)
	srv.FailNth("ListSnapshotBlocks", 1)
	srv.FailNth("GetSnapshotBlock", 1)
	assert.Equal(t, map[int32][]byte{3: pattern(3)}, readBack(t, c, id))
	for _, op := range []string{"PutSnapshotBlock", "CompleteSnapshot", "ListSnapshotBlocks", "GetSnapshotBlock"} {
		assert.Equal(t, 2, srv.Calls(op), op)
	}

	srv.FailNth("ListSnapshotBlocks", 1)
	_, err := ebsClient(srv.URL, noRetries).ListSnapshotBlocks(ctx, &ebs.ListSnapshotBlocksInput{SnapshotId: &id})
	requireAPIError(t, err, "InternalServerException", 500)
	var ise *types.InternalServerException
	assert.ErrorAs(t, err, &ise)
}
