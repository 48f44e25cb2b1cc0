package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/local"
)

// updateSink writes a new version of a raw disk image incrementally: it
// starts from a clone of the previous version (the base) and takes only the
// blocks that changed, as an incremental EBS snapshot starts from its parent.
// The clone lives in path + updateSuffix until Commit renames it to path, so
// the base is never modified and a failed update leaves no file at path.
//
// It is a draas.VolumeSink, draas.ZeroWriteSink (the clone holds the base's
// data, so blocks that became zero must be written), draas.Flusher and
// draas.VerifiableSink. Its methods are safe for concurrent use.
type updateSink struct {
	path, work string
	size       int64

	// mu is held for reading by WriteBlock and Flush, for writing by Commit
	// and Abort, so that no write lands after either.
	mu    sync.RWMutex
	f     *os.File // nil once committed or aborted
	state string   // "open", "committed" or "aborted"
}

var (
	_ draas.ZeroWriteSink  = (*updateSink)(nil)
	_ draas.Flusher        = (*updateSink)(nil)
	_ draas.VerifiableSink = (*updateSink)(nil)
)

// updateSuffix names the clone an updateSink writes until Commit.
const updateSuffix = ".draas-update"

// newUpdateSink clones the raw image base into path + updateSuffix and
// returns a sink that updates the clone into a disk of size bytes at path.
// It also says how it cloned. path must not exist.
func newUpdateSink(ctx context.Context, path, base string, size int64) (*updateSink, string, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, "", fmt.Errorf("update %s: it already exists; remove it or choose another path: %w", path, draas.ErrConflict)
	}
	work := path + updateSuffix
	how, err := cloneFile(ctx, work, base)
	if err != nil {
		return nil, "", err
	}
	f, err := os.OpenFile(work, os.O_RDWR, 0)
	if err == nil {
		err = f.Truncate(size) // the disk may have grown or shrunk
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		os.Remove(work)
		return nil, "", fmt.Errorf("update %s: %w", path, err)
	}
	return &updateSink{path: path, work: work, size: size, f: f, state: "open"}, how, nil
}

// BlockSize returns the block size of the DR copies.
func (s *updateSink) BlockSize() int { return blockSize }

// NeedsZeroWrites reports true: unwritten blocks hold the base's data.
func (s *updateSink) NeedsZeroWrites() bool { return true }

// WriteBlock writes b into the clone at b.Offset.
func (s *updateSink) WriteBlock(ctx context.Context, b draas.Block) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.state != "open" {
		return fmt.Errorf("update %s: write at offset %d: sink is %s: %w", s.path, b.Offset, s.state, draas.ErrClosed)
	}
	if b.Offset < 0 || b.Offset%blockSize != 0 || b.Index != b.Offset/blockSize || b.Offset >= s.size ||
		int64(len(b.Data)) != min(blockSize, s.size-b.Offset) {
		return draas.Invalidf("update %s: block %d at offset %d with %d bytes: want an aligned block of %d bytes (shorter only at the end of the %d-byte disk)",
			s.path, b.Index, b.Offset, len(b.Data), blockSize, s.size)
	}
	if _, err := s.f.WriteAt(b.Data, b.Offset); err != nil {
		return fmt.Errorf("update %s: %w", s.path, err)
	}
	return nil
}

// Flush makes the blocks written so far durable.
func (s *updateSink) Flush(ctx context.Context) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.state != "open" {
		return fmt.Errorf("update %s: flush: sink is %s: %w", s.path, s.state, draas.ErrClosed)
	}
	return s.f.Sync()
}

// Commit makes the new version durable and renames it to path.
func (s *updateSink) Commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != "open" {
		return fmt.Errorf("update %s: commit: sink is %s: %w", s.path, s.state, draas.ErrClosed)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("update %s: commit: %w", s.path, err)
	}
	if _, err := os.Lstat(s.path); err == nil {
		return fmt.Errorf("update %s: commit: a file appeared at the path: %w", s.path, draas.ErrConflict)
	}
	if err := os.Rename(s.work, s.path); err != nil {
		return fmt.Errorf("update %s: commit: %w", s.path, err)
	}
	s.state = "committed"
	err := s.f.Close()
	s.f = nil
	if err == nil {
		err = syncDir(filepath.Dir(s.path))
	}
	if err != nil {
		return fmt.Errorf("update %s: commit: %w", s.path, err)
	}
	return nil
}

// Abort removes the clone; the base is untouched. Aborting a committed sink
// changes nothing and returns draas.ErrClosed.
func (s *updateSink) Abort(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case "committed":
		return fmt.Errorf("update %s: abort: sink is committed: %w", s.path, draas.ErrClosed)
	case "aborted":
		return nil
	}
	s.state = "aborted"
	err := s.f.Close()
	s.f = nil
	if rerr := os.Remove(s.work); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return fmt.Errorf("update %s: abort: %w", s.path, err)
	}
	return nil
}

// Committed opens the committed image for the verify pass.
func (s *updateSink) Committed(ctx context.Context) (draas.BlockSource, error) {
	s.mu.RLock()
	st := s.state
	s.mu.RUnlock()
	if st != "committed" {
		return nil, fmt.Errorf("update %s: sink is %s: %w", s.path, st, draas.ErrNotFound)
	}
	return local.Open(s.path)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// cloneFile makes dst a copy of src: a reflink when the filesystem has them,
// otherwise a copy of src's allocated extents that keeps its holes, synced
// so that the copy that commits it flushes only its own writes. It returns
// how it cloned.
func cloneFile(ctx context.Context, dst, src string) (how string, err error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) == nil {
		return "reflink", nil
	}
	n, err := copyAllocated(ctx, out, src)
	if err == nil {
		err = out.Sync()
	}
	if err != nil {
		return "", fmt.Errorf("clone %s to %s: %w", src, dst, err)
	}
	return fmt.Sprintf("no reflinks here: copied %s of allocated extents", formatBytes(n)), nil
}

// copyAllocated copies the allocated extents of the file at src into out at
// the same offsets and gives out src's size, so holes stay holes. It returns
// the bytes copied.
func copyAllocated(ctx context.Context, out *os.File, src string) (int64, error) {
	s, err := local.Open(src)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	exts, err := s.AllocatedExtents(ctx)
	if err != nil {
		return 0, err
	}
	if err := out.Truncate(s.Size()); err != nil {
		return 0, err
	}
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	var total int64
	for _, e := range exts {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		if _, err := out.Seek(e.Offset, io.SeekStart); err != nil {
			return total, err
		}
		n, err := io.Copy(out, io.NewSectionReader(in, e.Offset, e.Length))
		total += n
		if err != nil {
			return total, err
		}
		if n != e.Length {
			return total, errors.New("the source file shrank while it was cloned")
		}
	}
	return total, nil
}
