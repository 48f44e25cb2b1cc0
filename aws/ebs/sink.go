// Package ebs reads and writes EBS snapshots through the EBS direct APIs:
// [Sink] writes a new snapshot (full, or incremental on a parent) and
// [Source] reads one, with its allocated blocks and the blocks changed since
// another snapshot of the same lineage.
//
// Both respect the EBS direct API quotas: every request waits on an optional
// per-snapshot and an optional shared (per-account) rate limiter, and
// [NewClient] builds a client with the SDK's adaptive retry mode (which backs
// off client-side when AWS throttles) and an HTTP transport whose idle
// connection pool is sized to the copy's concurrency.
package ebs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsebs "github.com/aws/aws-sdk-go-v2/service/ebs"
	"github.com/aws/aws-sdk-go-v2/service/ebs/types"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/internal/awserr"
)

// BlockSize is the EBS direct APIs' block size: 512 KiB.
const BlockSize = 512 << 10

const gib = 1 << 30

// API is the part of the EBS direct APIs client this package uses;
// *ebs.Client implements it. Wrap it to add metrics or faults.
type API interface {
	StartSnapshot(ctx context.Context, in *awsebs.StartSnapshotInput, optFns ...func(*awsebs.Options)) (*awsebs.StartSnapshotOutput, error)
	PutSnapshotBlock(ctx context.Context, in *awsebs.PutSnapshotBlockInput, optFns ...func(*awsebs.Options)) (*awsebs.PutSnapshotBlockOutput, error)
	CompleteSnapshot(ctx context.Context, in *awsebs.CompleteSnapshotInput, optFns ...func(*awsebs.Options)) (*awsebs.CompleteSnapshotOutput, error)
	ListSnapshotBlocks(ctx context.Context, in *awsebs.ListSnapshotBlocksInput, optFns ...func(*awsebs.Options)) (*awsebs.ListSnapshotBlocksOutput, error)
	ListChangedBlocks(ctx context.Context, in *awsebs.ListChangedBlocksInput, optFns ...func(*awsebs.Options)) (*awsebs.ListChangedBlocksOutput, error)
	GetSnapshotBlock(ctx context.Context, in *awsebs.GetSnapshotBlockInput, optFns ...func(*awsebs.Options)) (*awsebs.GetSnapshotBlockOutput, error)
}

var _ API = (*awsebs.Client)(nil)

// NewClient returns an EBS direct APIs client for cfg tuned for block copies:
// an HTTP transport that keeps up to 2×concurrency connections per host
// alive for reuse, and the SDK's standard retryer without its client-side
// retry quota, which under sustained throttling fails requests outright,
// wrapped in an [AdaptiveLimit] of 50 to 1,000 requests per second that slows
// the client down instead. optFns are applied last; to change the retryer,
// pass WithAdaptiveLimit after it.
func NewClient(cfg aws.Config, concurrency int, optFns ...func(*awsebs.Options)) *awsebs.Client {
	if concurrency <= 0 {
		concurrency = 8
	}
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = 2 * concurrency
		t.MaxIdleConnsPerHost = 2 * concurrency
		t.MaxConnsPerHost = 0
	})
	opts := append([]func(*awsebs.Options){func(o *awsebs.Options) {
		o.HTTPClient = hc
		o.Retryer = awsretry.NewStandard(func(so *awsretry.StandardOptions) {
			so.MaxAttempts = 5
			so.RateLimiter = ratelimit.None
		})
		WithAdaptiveLimit(NewAdaptiveLimit(50, 1000))(o)
	}}, optFns...)
	return awsebs.NewFromConfig(cfg, opts...)
}

// SinkOptions describes the snapshot a [Sink] creates.
type SinkOptions struct {
	// ParentSnapshotID makes the snapshot incremental on this completed
	// snapshot: it starts with the parent's blocks, and the copier must write
	// zero blocks too (NeedsZeroWrites).
	ParentSnapshotID string
	// Description and Tags are set on the snapshot.
	Description string
	Tags        map[string]string
	// Encrypted and KMSKeyARN encrypt the snapshot; a parent's encryption
	// is inherited.
	Encrypted bool
	KMSKeyARN string
	// ClientToken makes StartSnapshot idempotent: a retried start with the
	// same token returns the same snapshot. Derive it from what the snapshot
	// is for (plan, VM, disk, recovery point) so a resumed job finds its own
	// pending snapshot.
	ClientToken string
	// Timeout after which AWS moves a snapshot that is still pending to the
	// error state; 0 means AWS's default (60 minutes). Rounded up to minutes.
	Timeout time.Duration
	// Limits caps the request rate.
	Limits Limits
	// NoAggregateChecksum skips the LINEAR aggregated checksum on
	// CompleteSnapshot. The sink keeps each written block's checksum (about
	// 40 bytes per block: 80 MiB for a fully written 1 TiB disk) for it and
	// for the changed-block count.
	NoAggregateChecksum bool
}

// Sink writes a new EBS snapshot through the EBS direct APIs. It implements
// draas.VolumeSink, draas.ZeroWriteSink and draas.VerifiableSink.
//
// Every block carries its SHA-256, which AWS verifies. Commit completes the
// snapshot with the count of changed blocks and, unless disabled, the
// aggregated checksum over them. The EBS direct APIs cannot cancel a
// snapshot: Abort stops writing and leaves the snapshot pending, so that AWS
// moves it to the error state when its timeout expires; it never completes,
// so it never looks like a valid copy. Callers that also hold an EC2 client
// may delete it (see the replicate package).
type Sink struct {
	api   API
	id    string
	size  int64
	opts  SinkOptions
	limit Limits

	// life holds off Commit and Abort while WriteBlock runs; a failed
	// Commit leaves only Abort.
	life    draas.SinkLifecycle
	mu      sync.Mutex
	written map[int32][32]byte // index -> checksum of the 512 KiB sent
}

var (
	_ draas.VolumeSink     = (*Sink)(nil)
	_ draas.ZeroWriteSink  = (*Sink)(nil)
	_ draas.VerifiableSink = (*Sink)(nil)
	_ draas.ResumableSink  = (*Sink)(nil)
)

// NewSink starts a snapshot able to hold size bytes (rounded up to whole
// GiB, as EBS volumes are) and returns a sink writing it.
func NewSink(ctx context.Context, api API, size int64, opts SinkOptions) (*Sink, error) {
	if size <= 0 {
		return nil, draas.Invalidf("ebs: snapshot size %d: the disk size must be positive", size)
	}
	in := &awsebs.StartSnapshotInput{
		VolumeSize: aws.Int64((size + gib - 1) / gib),
	}
	if opts.ParentSnapshotID != "" {
		in.ParentSnapshotId = aws.String(opts.ParentSnapshotID)
	}
	if opts.Description != "" {
		in.Description = aws.String(opts.Description)
	}
	if opts.ClientToken != "" {
		in.ClientToken = aws.String(opts.ClientToken)
	}
	// An incremental snapshot inherits its parent's encryption: AWS rejects
	// Encrypted together with ParentSnapshotId.
	if (opts.Encrypted || opts.KMSKeyARN != "") && opts.ParentSnapshotID == "" {
		in.Encrypted = aws.Bool(true)
		if opts.KMSKeyARN != "" {
			in.KmsKeyArn = aws.String(opts.KMSKeyARN)
		}
	}
	if opts.Timeout > 0 {
		in.Timeout = aws.Int32(int32((opts.Timeout + time.Minute - 1) / time.Minute))
	}
	keys := make([]string, 0, len(opts.Tags))
	for k := range opts.Tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		in.Tags = append(in.Tags, types.Tag{Key: aws.String(k), Value: aws.String(opts.Tags[k])})
	}
	if err := opts.Limits.wait(ctx); err != nil {
		return nil, err
	}
	out, err := api.StartSnapshot(ctx, in)
	if err != nil {
		return nil, awserr.Wrap("StartSnapshot", parentName(opts.ParentSnapshotID), err)
	}
	return &Sink{api: api, id: aws.ToString(out.SnapshotId), size: size, opts: opts, limit: opts.Limits, written: map[int32][32]byte{}}, nil
}

// sinkState is what ResumeState saves: enough to continue the snapshot.
type sinkState struct {
	SnapshotID string   `json:"snapshotId"`
	Size       int64    `json:"size"`
	Parent     string   `json:"parent,omitempty"`
	Written    []int32  `json:"written"`
	Sums       [][]byte `json:"sums"`
}

// Target returns the snapshot ID. It implements draas.ResumableSink.
func (s *Sink) Target() string { return "ebs://" + s.id }

// ResumeState returns the snapshot ID and the blocks written so far, for
// [ResumeSink]. It implements draas.ResumableSink.
func (s *Sink) ResumeState() ([]byte, error) {
	s.mu.Lock()
	st := sinkState{SnapshotID: s.id, Size: s.size, Parent: s.opts.ParentSnapshotID}
	for i, sum := range s.written {
		st.Written = append(st.Written, i)
		st.Sums = append(st.Sums, bytes.Clone(sum[:]))
	}
	s.mu.Unlock()
	return json.Marshal(st)
}

// ResumeSink returns a sink that continues writing a pending snapshot, from
// the state a previous sink's ResumeState returned (blockcopy saves it in the
// copy's checkpoint; see blockcopy.SinkState). opts.Limits and
// opts.NoAggregateChecksum apply; the snapshot's other settings are those it
// was started with.
func ResumeSink(ctx context.Context, api API, state []byte, opts SinkOptions) (*Sink, error) {
	var st sinkState
	if err := json.Unmarshal(state, &st); err != nil || st.SnapshotID == "" || len(st.Written) != len(st.Sums) {
		return nil, draas.Invalidf("ebs: resume state is not an EBS sink's state (%v): start a new snapshot instead", err)
	}
	s := &Sink{api: api, id: st.SnapshotID, size: st.Size, limit: opts.Limits, written: make(map[int32][32]byte, len(st.Written))}
	s.opts = SinkOptions{ParentSnapshotID: st.Parent, Limits: opts.Limits, NoAggregateChecksum: opts.NoAggregateChecksum}
	for i, idx := range st.Written {
		if len(st.Sums[i]) != sha256.Size {
			return nil, draas.Invalidf("ebs: resume state of snapshot %s has a bad checksum for block %d", st.SnapshotID, idx)
		}
		s.written[idx] = [32]byte(st.Sums[i])
	}
	return s, nil
}

func parentName(id string) string {
	if id == "" {
		return "new snapshot"
	}
	return "snapshot on parent " + id
}

// rounded returns the snapshot's size: the disk's size rounded up to GiB.
func (s *Sink) rounded() int64 { return (s.size + gib - 1) / gib * gib }

// SnapshotID returns the ID of the snapshot being written.
func (s *Sink) SnapshotID() string { return s.id }

// BlockSize returns 512 KiB.
func (s *Sink) BlockSize() int { return BlockSize }

// NeedsZeroWrites reports whether zero blocks must be written: true for an
// incremental snapshot, whose parent may hold data where the disk is now zero.
func (s *Sink) NeedsZeroWrites() bool { return s.opts.ParentSnapshotID != "" }

// WriteBlock sends one block with PutSnapshotBlock. A short last block is
// padded with zeros to 512 KiB.
func (s *Sink) WriteBlock(ctx context.Context, b draas.Block) error {
	if err := s.life.BeginWrite(); err != nil {
		return fmt.Errorf("ebs: write snapshot %s block %d: %w", s.id, b.Index, err)
	}
	defer s.life.EndWrite()
	// The snapshot holds whole GiB: blocks up to that size are accepted, and
	// a short block where the disk ends.
	if err := draas.CheckBlockRounded(b, BlockSize, s.size, s.rounded()); err != nil {
		return fmt.Errorf("ebs: write snapshot %s (%d bytes): %w", s.id, s.size, err)
	}
	data, sum := b.Data, b.Checksum
	if len(data) < BlockSize {
		padded := make([]byte, BlockSize)
		copy(padded, data)
		data, sum = padded, sha256.Sum256(padded)
	}
	idx := int32(b.Offset / BlockSize)
	if err := s.limit.wait(ctx); err != nil {
		return err
	}
	_, err := s.api.PutSnapshotBlock(ctx, &awsebs.PutSnapshotBlockInput{
		SnapshotId:        aws.String(s.id),
		BlockIndex:        aws.Int32(idx),
		BlockData:         bytes.NewReader(data),
		DataLength:        aws.Int32(BlockSize),
		Checksum:          aws.String(base64.StdEncoding.EncodeToString(sum[:])),
		ChecksumAlgorithm: types.ChecksumAlgorithmChecksumAlgorithmSha256,
	})
	if err != nil {
		return awserr.Wrap("PutSnapshotBlock", fmt.Sprintf("%s block %d", s.id, idx), err)
	}
	s.mu.Lock()
	s.written[idx] = sum
	s.mu.Unlock()
	return nil
}

// Commit completes the snapshot.
func (s *Sink) Commit(ctx context.Context) error {
	if err := s.life.BeginCommit(); err != nil {
		return fmt.Errorf("ebs: complete snapshot %s: %w", s.id, err)
	}
	return s.life.EndCommit(s.complete(ctx))
}

// complete is Commit's work once the sink is closed to writes.
func (s *Sink) complete(ctx context.Context) error {
	s.mu.Lock()
	n := len(s.written)
	s.mu.Unlock()

	in := &awsebs.CompleteSnapshotInput{SnapshotId: aws.String(s.id), ChangedBlocksCount: aws.Int32(int32(n))}
	if !s.opts.NoAggregateChecksum {
		in.Checksum = aws.String(linear(s.written))
		in.ChecksumAlgorithm = types.ChecksumAlgorithmChecksumAlgorithmSha256
		in.ChecksumAggregationMethod = types.ChecksumAggregationMethodChecksumAggregationLinear
	}
	if err := s.limit.wait(ctx); err != nil {
		return err
	}
	if _, err := s.api.CompleteSnapshot(ctx, in); err != nil {
		return awserr.Wrap("CompleteSnapshot", s.id, err)
	}
	return nil
}

// Checksum returns the copy's checksum summary, "sha256-linear:DIGEST:N":
// the EBS LINEAR aggregate of the N blocks written to this snapshot.
func (s *Sink) Checksum() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return summary(s.written)
}

// Abort stops the sink. The snapshot stays pending and never completes; AWS
// moves it to the error state at its timeout.
func (s *Sink) Abort(ctx context.Context) error {
	if _, err := s.life.BeginAbort(); errors.Is(err, draas.ErrConflict) {
		return fmt.Errorf("ebs: abort snapshot %s: %w", s.id, err)
	}
	return nil
}

// Committed returns a source reading the completed snapshot.
func (s *Sink) Committed(ctx context.Context) (draas.BlockSource, error) {
	return OpenSnapshot(ctx, s.api, s.id, SourceOptions{Limits: s.limit})
}
