package ebs

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsebs "github.com/aws/aws-sdk-go-v2/service/ebs"
	"github.com/aws/aws-sdk-go-v2/service/ebs/types"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/internal/awserr"
)

// window is the number of block indices whose tokens one ListSnapshotBlocks
// page covers; the API returns at most 10,000 blocks a page.
const window = 10000

// cachedWindows bounds the token cache: a few windows around the blocks
// being read, whatever the disk's size.
const cachedWindows = 4

// SourceOptions tunes a [Source]. The zero value is useful.
type SourceOptions struct {
	// Limits caps the request rate.
	Limits Limits
}

// Source reads a completed EBS snapshot through the EBS direct APIs. It
// implements draas.BlockSource, draas.ExtentSource (the snapshot's blocks),
// draas.ChangeTracker (ListChangedBlocks against another snapshot of the
// same lineage) and draas.ChecksumSource (the SHA-256 AWS returns with each
// block). Block tokens are fetched a page at a time as reads reach them, so
// memory does not grow with the snapshot's size.
type Source struct {
	api   API
	id    string
	size  int64
	limit Limits

	mu      sync.Mutex
	windows map[int32]*tokenWindow
	order   []int32 // LRU, most recent last
}

type tokenWindow struct {
	ready  chan struct{}
	err    error
	tokens map[int32]string
}

var (
	_ draas.ExtentSource   = (*Source)(nil)
	_ draas.ChangeTracker  = (*Source)(nil)
	_ draas.ChecksumSource = (*Source)(nil)
)

// OpenSnapshot returns a source reading the completed snapshot id.
func OpenSnapshot(ctx context.Context, api API, id string, opts SourceOptions) (*Source, error) {
	if id == "" {
		return nil, draas.Invalidf("ebs: snapshot ID is empty: name the snapshot to read (snap-...)")
	}
	s := &Source{api: api, id: id, limit: opts.Limits, windows: map[int32]*tokenWindow{}}
	if err := s.limit.wait(ctx); err != nil {
		return nil, err
	}
	out, err := api.ListSnapshotBlocks(ctx, &awsebs.ListSnapshotBlocksInput{SnapshotId: aws.String(id), MaxResults: aws.Int32(100)})
	if err != nil {
		return nil, awserr.Wrap("ListSnapshotBlocks", id, err)
	}
	s.size = aws.ToInt64(out.VolumeSize) * gib
	return s, nil
}

// SnapshotID returns the snapshot's ID.
func (s *Source) SnapshotID() string { return s.id }

// Size returns the snapshot's volume size in bytes.
func (s *Source) Size() int64 { return s.size }

// BlockSize returns 512 KiB.
func (s *Source) BlockSize() int { return BlockSize }

// ReadAt reads p at off, verifying each block's checksum.
func (s *Source) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, draas.Invalidf("ebs: read at negative offset %d", off)
	}
	var buf []byte
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= s.size {
			return n, io.EOF
		}
		bstart := pos / BlockSize * BlockSize
		inBlock := int(pos - bstart)
		want := min(len(p)-n, BlockSize-inBlock)
		dst := p[n : n+want]
		partial := inBlock != 0 || want != BlockSize
		if partial {
			if buf == nil {
				buf = make([]byte, BlockSize)
			}
			dst = buf
		}
		sum, ok, err := s.ReadBlock(ctx, dst, bstart)
		if err != nil {
			return n, err
		}
		if ok && sha256.Sum256(dst) != sum {
			return n, &draas.OpError{Op: "GetSnapshotBlock", Resource: fmt.Sprintf("%s block %d", s.id, bstart/BlockSize), Kind: draas.ErrChecksumMismatch,
				Err: errors.New("block data does not match the checksum AWS returned")}
		}
		if partial {
			copy(p[n:n+want], buf[inBlock:inBlock+want])
		}
		n += want
	}
	return n, nil
}

// ReadBlock reads the 512 KiB block at off (or the first len(p) bytes of
// it) and returns the SHA-256 AWS recorded for the whole block. A block the
// snapshot does not hold reads as zeros with ok false.
func (s *Source) ReadBlock(ctx context.Context, p []byte, off int64) ([32]byte, bool, error) {
	if off%BlockSize != 0 || off < 0 || off >= s.size {
		return [32]byte{}, false, draas.Invalidf("ebs: block offset %d is not a 512 KiB block of snapshot %s (%d bytes)", off, s.id, s.size)
	}
	idx := int32(off / BlockSize)
	for attempt := 0; ; attempt++ {
		tok, err := s.token(ctx, idx)
		if err != nil {
			return [32]byte{}, false, err
		}
		if tok == "" {
			clear(p)
			return [32]byte{}, false, nil
		}
		sum, err := s.get(ctx, p, idx, tok)
		var ve *types.ValidationException
		if attempt == 0 && errors.As(err, &ve) && ve.Reason == types.ValidationExceptionReasonInvalidBlockToken {
			// Tokens expire: list the window again once.
			s.forget(idx / window)
			continue
		}
		return sum, err == nil, err
	}
}

func (s *Source) get(ctx context.Context, p []byte, idx int32, tok string) ([32]byte, error) {
	var sum [32]byte
	res := fmt.Sprintf("%s block %d", s.id, idx)
	if err := s.limit.wait(ctx); err != nil {
		return sum, err
	}
	out, err := s.api.GetSnapshotBlock(ctx, &awsebs.GetSnapshotBlockInput{
		SnapshotId: aws.String(s.id), BlockIndex: aws.Int32(idx), BlockToken: aws.String(tok),
	})
	if err != nil {
		return sum, awserr.Wrap("GetSnapshotBlock", res, err)
	}
	defer out.BlockData.Close()
	if n := aws.ToInt32(out.DataLength); n != BlockSize {
		return sum, &draas.OpError{Op: "GetSnapshotBlock", Resource: res, Kind: draas.ErrTransient, Err: fmt.Errorf("data length %d, want %d", n, BlockSize)}
	}
	if len(p) == BlockSize {
		_, err = io.ReadFull(out.BlockData, p)
	} else {
		full := make([]byte, BlockSize)
		_, err = io.ReadFull(out.BlockData, full)
		copy(p, full)
		p = full
	}
	if err != nil {
		return sum, &draas.OpError{Op: "GetSnapshotBlock", Resource: res, Kind: draas.ErrTransient, Err: err}
	}
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(out.Checksum))
	if err != nil || len(raw) != sha256.Size {
		return sum, &draas.OpError{Op: "GetSnapshotBlock", Resource: res, Kind: draas.ErrChecksumMismatch, Err: fmt.Errorf("bad checksum header %q", aws.ToString(out.Checksum))}
	}
	return [32]byte(raw), nil
}

// token returns the block token for idx, or "" when the snapshot holds no
// such block.
func (s *Source) token(ctx context.Context, idx int32) (string, error) {
	w := idx / window
	s.mu.Lock()
	tw, ok := s.windows[w]
	if !ok {
		tw = &tokenWindow{ready: make(chan struct{})}
		s.windows[w] = tw
		s.order = append(s.order, w)
		if len(s.order) > cachedWindows {
			delete(s.windows, s.order[0])
			s.order = s.order[1:]
		}
		s.mu.Unlock()
		tw.tokens, tw.err = s.listWindow(ctx, w)
		close(tw.ready)
		if tw.err != nil {
			s.forget(w)
		}
	} else {
		s.mu.Unlock()
	}
	select {
	case <-tw.ready:
	case <-ctx.Done():
		return "", context.Cause(ctx)
	}
	if tw.err != nil {
		return "", tw.err
	}
	return tw.tokens[idx], nil
}

func (s *Source) forget(w int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.windows, w)
	for i, x := range s.order {
		if x == w {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
}

// listWindow lists the tokens of the blocks in window w. At most window
// blocks fit in it, so a page of that size holds them all, possibly followed
// by blocks of later windows, which are ignored.
func (s *Source) listWindow(ctx context.Context, w int32) (map[int32]string, error) {
	start, end := w*window, (w+1)*window
	tokens := map[int32]string{}
	err := s.listBlocks(ctx, start, func(b types.Block) bool {
		i := aws.ToInt32(b.BlockIndex)
		if i >= end {
			return false
		}
		tokens[i] = aws.ToString(b.BlockToken)
		return true
	})
	return tokens, err
}

// listBlocks calls fn for each block of the snapshot from index start on,
// page by page, until fn returns false.
func (s *Source) listBlocks(ctx context.Context, start int32, fn func(types.Block) bool) error {
	in := &awsebs.ListSnapshotBlocksInput{SnapshotId: aws.String(s.id), MaxResults: aws.Int32(window), StartingBlockIndex: aws.Int32(start)}
	for {
		if err := s.limit.wait(ctx); err != nil {
			return err
		}
		out, err := s.api.ListSnapshotBlocks(ctx, in)
		if err != nil {
			return awserr.Wrap("ListSnapshotBlocks", s.id, err)
		}
		for _, b := range out.Blocks {
			if !fn(b) {
				return nil
			}
		}
		if aws.ToString(out.NextToken) == "" {
			return nil
		}
		in.NextToken = out.NextToken
		in.StartingBlockIndex = nil
	}
}

// AllocatedExtents returns the extents of the blocks the snapshot holds
// (its own and those inherited from its parents).
func (s *Source) AllocatedExtents(ctx context.Context) ([]draas.Extent, error) {
	var exts []draas.Extent
	err := s.listBlocks(ctx, 0, func(b types.Block) bool {
		exts = appendBlock(exts, aws.ToInt32(b.BlockIndex))
		return true
	})
	return exts, err
}

// ChangedExtents returns the extents of the blocks that differ between the
// snapshot base and this one. An unknown or unrelated base yields an error
// wrapping draas.ErrNotFound, so callers fall back to a full copy.
func (s *Source) ChangedExtents(ctx context.Context, base string) ([]draas.Extent, error) {
	in := &awsebs.ListChangedBlocksInput{FirstSnapshotId: aws.String(base), SecondSnapshotId: aws.String(s.id), MaxResults: aws.Int32(window)}
	var exts []draas.Extent
	for {
		if err := s.limit.wait(ctx); err != nil {
			return nil, err
		}
		out, err := s.api.ListChangedBlocks(ctx, in)
		if err != nil {
			var ve *types.ValidationException
			if errors.As(err, &ve) && (ve.Reason == types.ValidationExceptionReasonUnrelatedSnapshots || ve.Reason == types.ValidationExceptionReasonInvalidSnapshotId) {
				return nil, &draas.OpError{Op: "ListChangedBlocks", Resource: base + ".." + s.id, Kind: draas.ErrNotFound, Err: err}
			}
			return nil, awserr.Wrap("ListChangedBlocks", base+".."+s.id, err)
		}
		for _, b := range out.ChangedBlocks {
			exts = appendBlock(exts, aws.ToInt32(b.BlockIndex))
		}
		if aws.ToString(out.NextToken) == "" {
			return exts, nil
		}
		in.NextToken = out.NextToken
	}
}

// appendBlock adds block idx to sorted extents, merging with the last one.
func appendBlock(exts []draas.Extent, idx int32) []draas.Extent {
	off := int64(idx) * BlockSize
	if n := len(exts); n > 0 && exts[n-1].End() == off {
		exts[n-1].Length += BlockSize
		return exts
	}
	return append(exts, draas.Extent{Offset: off, Length: BlockSize})
}
