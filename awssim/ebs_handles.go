package awssim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"time"
)

// ErrSnapshotNotFound is returned by the snapshot handles for an ID the
// server does not know.
var ErrSnapshotNotFound = errors.New("awssim: snapshot not found")

// SnapshotInfo describes a snapshot as the simulator holds it. It is a copy:
// changing it changes nothing on the server.
type SnapshotInfo struct {
	// ID is the snapshot ID, "snap-…".
	ID string
	// VolumeID is the volume the snapshot was taken from; "vol-ffffffff" for
	// snapshots made with the EBS direct APIs or SeedSnapshot.
	VolumeID string
	// ParentID is the ParentSnapshotId given to StartSnapshot, if any.
	ParentID string
	// State is "pending", "completed" or "error" (an EBS direct snapshot that
	// timed out).
	State string
	// SizeGiB is the volume size in GiB.
	SizeGiB int64
	// Description is the snapshot's description.
	Description string
	// Encrypted reports whether the snapshot is encrypted; KMSKeyARN is then
	// the key.
	Encrypted bool
	KMSKeyARN string
	// Tags are the snapshot's tags.
	Tags map[string]string
	// StartTime is when the snapshot was started, by the server's clock.
	StartTime time.Time
	// Blocks is the number of blocks that hold data, inherited ones included;
	// every other block reads as zeros.
	Blocks int
	// WrittenBlocks is the number of distinct blocks PutSnapshotBlock wrote
	// into this snapshot (what CompleteSnapshot's ChangedBlocksCount counts).
	WrittenBlocks int
}

// snapshotInfo describes sn. Callers hold s.mu.
func (s *Server) snapshotInfo(sn *snapshot) SnapshotInfo {
	s.settleSnapshot(sn, false)
	return SnapshotInfo{
		ID:            sn.id,
		VolumeID:      sn.volumeID,
		ParentID:      sn.parentID,
		State:         sn.state,
		SizeGiB:       sn.sizeGiB,
		Description:   sn.description,
		Encrypted:     sn.encrypted,
		KMSKeyARN:     sn.kmsKeyArn,
		Tags:          maps.Clone(sn.tags),
		StartTime:     sn.startTime,
		Blocks:        len(sn.blocks),
		WrittenBlocks: len(sn.written),
	}
}

// SnapshotInfo describes snapshot id, or returns an error wrapping
// ErrSnapshotNotFound. A pending EBS direct snapshot past its timeout is
// reported (and from then on is) in state "error".
func (s *Server) SnapshotInfo(id string) (SnapshotInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := s.snaps[id]
	if sn == nil {
		return SnapshotInfo{}, fmt.Errorf("%w: %s", ErrSnapshotNotFound, id)
	}
	return s.snapshotInfo(sn), nil
}

// Snapshots describes every snapshot the server holds, however it was made,
// ordered by ID.
func (s *Server) Snapshots() []SnapshotInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SnapshotInfo, 0, len(s.snaps))
	for _, id := range slices.Sorted(maps.Keys(s.snaps)) {
		out = append(out, s.snapshotInfo(s.snaps[id]))
	}
	return out
}

// ReadSnapshotAt reads len(p) bytes of snapshot id's content at offset off,
// whatever the snapshot's state, with io.ReaderAt's contract: fewer bytes
// than len(p) only at the end of the volume, with io.EOF. Blocks never
// written read as zeros.
func (s *Server) ReadSnapshotAt(id string, p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := s.snaps[id]
	if sn == nil {
		return 0, fmt.Errorf("%w: %s", ErrSnapshotNotFound, id)
	}
	if off < 0 {
		return 0, fmt.Errorf("awssim: negative offset %d", off)
	}
	size := sn.sizeGiB << 30
	if off >= size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), size-off))
	for done := 0; done < n; {
		pos := off + int64(done)
		in := int(pos % BlockSize)
		m := min(n-done, BlockSize-in)
		if b := sn.blocks[pos/BlockSize]; b != nil {
			copy(p[done:done+m], b.data[in:])
		} else {
			clear(p[done : done+m])
		}
		done += m
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// SnapshotBytes returns snapshot id's content from the start up to the end
// of the last block that holds data; everything after it, up to the volume
// size, reads as zeros. Compare it with the source of a copy as
// bytes.Equal(src[:len(got)], got) plus a check that the rest of src is zero.
func (s *Server) SnapshotBytes(id string) ([]byte, error) {
	s.mu.Lock()
	sn := s.snaps[id]
	var end int64
	if sn != nil {
		for idx := range sn.blocks {
			end = max(end, (idx+1)*BlockSize)
		}
	}
	s.mu.Unlock()
	if sn == nil {
		return nil, fmt.Errorf("%w: %s", ErrSnapshotNotFound, id)
	}
	out := make([]byte, end)
	if _, err := s.ReadSnapshotAt(id, out, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return out, nil
}

// SeedSnapshot creates a completed snapshot holding data, as if a client had
// written it with the EBS direct APIs: its size is len(data) rounded up to
// whole GiB (at least 1), its blocks of all zeros are left unwritten, and it
// carries the given tags. It returns the snapshot's ID.
func (s *Server) SeedSnapshot(data []byte, tags map[string]string) (string, error) {
	return s.seedSnapshot(bytes.NewReader(data), int64(len(data)), tags)
}

// SeedSnapshotFile is [Server.SeedSnapshot] of the content of the file at
// path (a raw disk image, for instance), read a block at a time.
func (s *Server) SeedSnapshotFile(path string, tags map[string]string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("awssim: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("awssim: %w", err)
	}
	return s.seedSnapshot(f, fi.Size(), tags)
}

func (s *Server) seedSnapshot(r io.ReaderAt, n int64, tags map[string]string) (string, error) {
	size := max(1, (n+1<<30-1)>>30)
	if size > ebsMaxVolumeSizeGiB {
		return "", fmt.Errorf("awssim: %d bytes exceed the largest snapshot, %d GiB", n, ebsMaxVolumeSizeGiB)
	}
	blocks := map[int64]*block{}
	buf := make([]byte, BlockSize)
	var idxs []int64
	if f, ok := r.(*os.File); ok {
		idxs = slices.Sorted(maps.Keys(dataBlocks(f, n))) // skip the holes of a sparse file
	} else {
		for off := int64(0); off < n; off += BlockSize {
			idxs = append(idxs, off/BlockSize)
		}
	}
	for _, idx := range idxs {
		off := idx * BlockSize
		chunk := buf[:min(BlockSize, n-off)]
		if _, err := r.ReadAt(chunk, off); err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("awssim: seeding a snapshot: %w", err)
		}
		if !isZero(chunk) {
			blocks[off/BlockSize] = newBlock(chunk)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	sn := &snapshot{
		id:        s.newID("snap"),
		volumeID:  ebsDirectVolumeID,
		state:     "completed",
		sizeGiB:   size,
		tags:      maps.Clone(tags),
		startTime: now,
		activity:  now,
		progress:  "100%",
		blocks:    blocks,
		written:   map[int64]bool{},
	}
	if sn.tags == nil {
		sn.tags = map[string]string{}
	}
	for idx := range blocks {
		sn.written[idx] = true
	}
	s.snaps[sn.id] = sn
	return sn.id, nil
}
