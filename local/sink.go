package local

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/opendraas/draas"
)

// DefaultBlockSize is the block size of a [Sink] whose SinkOptions.BlockSize
// is 0: 512 KiB, the EBS block size.
const DefaultBlockSize = 512 << 10

// PartialSuffix is appended to the target path to name the temporary file a
// [Sink] writes before Commit renames it onto the target.
const PartialSuffix = ".draas-partial"

// errLocked means another process holds the lock on a partial file or device.
var errLocked = errors.New("locked by another process")

// SinkOptions configures [Create]. The zero value writes a new file in
// blocks of 512 KiB, replacing any leftover partial file, and refuses to
// replace an existing file.
type SinkOptions struct {
	// BlockSize is the size of the blocks the sink accepts; 0 means
	// DefaultBlockSize.
	BlockSize int
	// Resume reopens an existing partial file (path + PartialSuffix) made
	// for a disk of the same size without truncating it, so that a resumed
	// copy keeps the blocks an earlier attempt wrote, and the sink keeps that
	// attempt's Target. The partial file must come from the same source: the
	// sink does not need zero writes, so blocks that are zero in the source
	// are not rewritten. Without Resume, or when there is no partial file, a
	// fresh partial file with a new Target is made.
	Resume bool
	// Overwrite lets Commit replace an existing regular file at the path.
	// Without it, Create and Commit refuse to, so that a disaster-recovery
	// copy never clobbers data silently.
	Overwrite bool
}

// Sink writes a disk into a raw image file or onto a block device. It is a
// draas.VolumeSink, draas.Flusher, draas.ZeroWriteSink,
// draas.VerifiableSink and draas.ResumableSink; see [Create]. All methods are safe for concurrent
// use.
type Sink struct {
	path      string
	partial   string // the file written; equal to path for a device
	size      int64
	bs        int
	device    bool
	overwrite bool
	id        [16]byte // identifies the partial file; see trailer

	// life holds off Commit, Close and Abort while WriteBlock and Flush run;
	// Close is its Release, which keeps the partial file.
	life draas.SinkLifecycle
	// mu serialises Commit, Close and Abort, which close f.
	mu sync.Mutex
	f  *os.File // nil once closed
}

var (
	_ draas.VolumeSink     = (*Sink)(nil)
	_ draas.Flusher        = (*Sink)(nil)
	_ draas.ZeroWriteSink  = (*Sink)(nil)
	_ draas.VerifiableSink = (*Sink)(nil)
	_ draas.ResumableSink  = (*Sink)(nil)
	_ io.Closer            = (*Sink)(nil)
)

// Create returns a sink that writes a disk of size bytes to path.
//
// When path is an existing block device, the sink writes onto it in place:
// the device must hold at least size bytes and, on Linux, must not be mounted
// or otherwise in use (draas.ErrConflict). Commit flushes it, Abort leaves
// what was written, and NeedsZeroWrites reports true because the device
// holds old data.
//
// Otherwise the sink writes into a sparse temporary file, path +
// PartialSuffix, created with permissions 0600 (disk images hold private
// data) and ending in a 64-byte trailer that identifies it; Commit cuts the
// trailer off, flushes the file (fsync), renames it onto path and makes that
// durable by syncing the directory; Abort removes it. NeedsZeroWrites
// reports false: unwritten blocks are holes that read as zeros. An existing
// regular file at path is an error wrapping draas.ErrConflict and
// fs.ErrExist unless opts.Overwrite is set. A partial file another process
// is writing is an error wrapping draas.ErrConflict.
//
// The caller must call Commit or Abort; until then the sink holds the file
// open.
func Create(path string, size int64, opts SinkOptions) (*Sink, error) {
	bs := opts.BlockSize
	if bs == 0 {
		bs = DefaultBlockSize
	}
	if bs < 0 {
		return nil, draas.Invalidf("local: create %s: block size %d is negative; use 0 for the default or a positive size", path, bs)
	}
	if size < 0 {
		return nil, draas.Invalidf("local: create %s: size %d is negative", path, size)
	}
	st, err := os.Stat(path)
	switch {
	case err == nil && isBlockDevice(st):
		return createOnDevice(path, size, bs)
	case err == nil && st.Mode().IsRegular():
		if !opts.Overwrite {
			return nil, existsError(path)
		}
	case err == nil:
		hint := "give the path of a new or regular file or of a block device"
		if st.IsDir() {
			hint = fmt.Sprintf("give the path of a file in it, such as %s", filepath.Join(path, "disk.raw"))
		}
		return nil, draas.Invalidf("local: create %s: it is a %s; %s", path, fileKind(st.Mode()), hint)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("local: create %s: %w", path, bare(err))
	}

	s := &Sink{path: path, partial: path + PartialSuffix, size: size, bs: bs, overwrite: opts.Overwrite}
	s.life.RetryCommit = true
	if opts.Resume {
		f, err := os.OpenFile(s.partial, os.O_RDWR, 0)
		switch {
		case err == nil:
			if err := s.resume(f); err != nil {
				f.Close()
				return nil, err
			}
			s.f = f
			return s, nil
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("local: resume %s: %w", s.partial, bare(err))
		}
	}
	f, err := os.OpenFile(s.partial, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("local: create %s: %w", s.partial, bare(err))
	}
	if err := s.lock(f); err != nil {
		f.Close()
		return nil, err
	}
	// Truncating to 0 first drops whatever a leftover partial file held, so
	// that the file is all holes. A new identity marks it as a new target.
	if _, err := rand.Read(s.id[:]); err != nil {
		f.Close()
		return nil, fmt.Errorf("local: create %s: %w", s.partial, err)
	}
	err = f.Truncate(0)
	if err == nil {
		err = f.Truncate(size)
	}
	if err == nil {
		_, err = f.WriteAt(s.trailer(), size)
	}
	if err != nil {
		f.Close()
		os.Remove(s.partial)
		return nil, fmt.Errorf("local: create %s with %d bytes: %w", s.partial, size, bare(err))
	}
	s.f = f
	return s, nil
}

// The partial file holds the disk followed by a trailer that identifies the
// copy writing it, so that a resumed sink has the Target of the sink it
// resumes and a new sink on the same path does not:
//
//	magic [16]byte | id [16]byte | size uint64 LE | reserved [24]byte
//
// Commit cuts the trailer off before the rename.
const trailerLen = 64

var trailerMagic = [16]byte{'d', 'r', 'a', 'a', 's', '-', 'p', 'a', 'r', 't', 'i', 'a', 'l', '-', '1', '\n'}

func (s *Sink) trailer() []byte {
	t := make([]byte, trailerLen)
	copy(t, trailerMagic[:])
	copy(t[16:], s.id[:])
	binary.LittleEndian.PutUint64(t[32:], uint64(s.size))
	return t
}

// resume checks a partial file opened for resuming.
func (s *Sink) resume(f *os.File) error {
	if err := s.lock(f); err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("local: resume %s: %w", s.partial, bare(err))
	}
	t := make([]byte, trailerLen)
	if st.Size() == s.size+trailerLen {
		if _, err := f.ReadAt(t, s.size); err != nil {
			return fmt.Errorf("local: resume %s: %w", s.partial, bare(err))
		}
	}
	if [16]byte(t[:16]) != trailerMagic || binary.LittleEndian.Uint64(t[32:]) != uint64(s.size) {
		return draas.Invalidf("local: resume %s: it is not the partial file of a disk of %d bytes (it holds %d bytes); remove it or create the sink without Resume", s.partial, s.size, st.Size())
	}
	s.id = [16]byte(t[16:32])
	return nil
}

func (s *Sink) lock(f *os.File) error {
	err := lock(f)
	if errors.Is(err, errLocked) {
		return &draas.OpError{Op: "local: create", Resource: f.Name(), Kind: draas.ErrConflict, Err: fmt.Errorf("another copy is writing it: %w", err)}
	}
	if err != nil {
		return fmt.Errorf("local: lock %s: %w", f.Name(), err)
	}
	return nil
}

func existsError(path string) error {
	return fmt.Errorf("local: %s already exists; set SinkOptions.Overwrite to replace it: %w", path, errors.Join(draas.ErrConflict, fs.ErrExist))
}

func createOnDevice(path string, size int64, bs int) (*Sink, error) {
	f, err := os.OpenFile(path, os.O_RDWR|deviceOpenFlags, 0)
	if errors.Is(err, syscall.EBUSY) {
		return nil, &draas.OpError{Op: "local: open", Resource: "block device " + path, Kind: draas.ErrConflict,
			Err: fmt.Errorf("device is in use (mounted?); unmount it first: %w", err)}
	}
	if err != nil {
		return nil, openError(path, err)
	}
	s := &Sink{path: path, partial: path, size: size, bs: bs, device: true}
	s.life.RetryCommit = true
	devSize, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		err = s.lock(f)
	}
	if err == nil && devSize < size {
		err = draas.Invalidf("local: block device %s holds %d bytes, less than the disk's %d; use a larger device", path, devSize, size)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	s.f = f
	return s, nil
}

// BlockSize returns the size of the blocks the sink accepts.
func (s *Sink) BlockSize() int { return s.bs }

// Size returns the size of the disk the sink writes.
func (s *Sink) Size() int64 { return s.size }

// NeedsZeroWrites reports whether the copier must write zero blocks: true
// for a block device, which holds old data, false for a file.
func (s *Sink) NeedsZeroWrites() bool { return s.device }

// Target names what the sink writes, for draas.ResumableSink: for a file,
// "file://" + the absolute path + "#" + the identity of the partial file, the
// same for a sink resumed with SinkOptions.Resume or [ResumeSink] and new for
// every fresh partial file; for a block device, "file://" + its absolute path.
func (s *Sink) Target() string {
	t := "file://" + absPath(s.path)
	if !s.device {
		t += "#" + hex.EncodeToString(s.id[:])
	}
	return t
}

// resumeState is what ResumeState saves.
type resumeState struct {
	Path      string `json:"path"`
	Size      int64  `json:"size"`
	BlockSize int    `json:"blockSize"`
	Overwrite bool   `json:"overwrite,omitempty"`
	Target    string `json:"target"`
}

// ResumeState returns what [ResumeSink] needs to continue this sink in
// another process: the path, size, block size, Overwrite option and target.
// It implements draas.ResumableSink.
func (s *Sink) ResumeState() ([]byte, error) {
	return json.Marshal(resumeState{Path: absPath(s.path), Size: s.size, BlockSize: s.bs, Overwrite: s.overwrite, Target: s.Target()})
}

// ResumeSink continues the sink whose ResumeState returned state, keeping
// the blocks it wrote: it creates the sink again with SinkOptions.Resume and
// checks that it writes the same target. When the partial file is gone or
// belongs to another copy it fails with an error wrapping draas.ErrNotFound
// or draas.ErrConflict; the caller then starts a fresh copy.
func ResumeSink(state []byte) (*Sink, error) {
	var st resumeState
	if err := json.Unmarshal(state, &st); err != nil || st.Path == "" {
		return nil, draas.Invalidf("local: resume state %.100q is not from Sink.ResumeState", state)
	}
	if _, err := os.Stat(st.Path + PartialSuffix); errors.Is(err, fs.ErrNotExist) {
		if fi, err := os.Stat(st.Path); err != nil || !isBlockDevice(fi) {
			return nil, &draas.OpError{Op: "local: resume", Resource: st.Path + PartialSuffix, Kind: draas.ErrNotFound, Err: err}
		}
	}
	s, err := Create(st.Path, st.Size, SinkOptions{BlockSize: st.BlockSize, Resume: true, Overwrite: st.Overwrite})
	if err != nil {
		return nil, err
	}
	if s.Target() != st.Target {
		s.Close()
		return nil, &draas.OpError{Op: "local: resume", Resource: st.Path, Kind: draas.ErrConflict,
			Err: fmt.Errorf("it is now written by another copy (%s, not %s)", s.Target(), st.Target)}
	}
	return s, nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// WriteBlock writes b at b.Offset with pwrite. A block that is misaligned,
// whose Index does not match its Offset, that ends past the disk, or that is
// short without being the last fails with an error wrapping draas.ErrInvalid;
// after Commit or Abort, WriteBlock fails with draas.ErrClosed. It does not
// check b.Checksum (the copier computed it from the same bytes) and does not
// retain b.Data.
func (s *Sink) WriteBlock(ctx context.Context, b draas.Block) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.life.BeginWrite(); err != nil {
		return fmt.Errorf("local: write %s at offset %d: %w", s.partial, b.Offset, err)
	}
	defer s.life.EndWrite()
	if err := draas.CheckBlock(b, s.bs, s.size); err != nil {
		return fmt.Errorf("local: write %s: %w", s.partial, err)
	}
	if _, err := s.f.WriteAt(b.Data, b.Offset); err != nil {
		return fmt.Errorf("local: write %s at offset %d: %w", s.partial, b.Offset, err)
	}
	return nil
}

// Flush makes the blocks written so far durable (fsync). It returns
// draas.ErrClosed after Commit or Abort.
func (s *Sink) Flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.life.BeginWrite(); err != nil {
		return fmt.Errorf("local: flush %s: %w", s.partial, err)
	}
	defer s.life.EndWrite()
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("local: flush %s: %w", s.partial, err)
	}
	return nil
}

// Commit makes the disk durable and visible: for a file it syncs the
// partial file, renames it onto the path and syncs the directory; for a
// device it syncs the device. It fails with draas.ErrClosed after Commit or
// Abort, and with draas.ErrConflict if a file appeared at the path since
// Create and Overwrite is not set. After a failed Commit the partial file is
// kept for Abort to remove, unless the rename happened, in which case the
// sink counts as committed.
func (s *Sink) Commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.life.BeginCommit(); err != nil {
		return fmt.Errorf("local: commit %s: %w", s.path, err)
	}
	// Once the file is in place the sink counts as committed, even if
	// closing it or syncing its directory fails.
	if err := s.life.EndCommit(s.install()); err != nil {
		return err
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return fmt.Errorf("local: commit %s: close: %w", s.path, err)
	}
	if !s.device {
		if err := syncDir(filepath.Dir(s.path)); err != nil {
			return fmt.Errorf("local: commit %s: the file is in place but syncing its directory failed: %w", s.path, err)
		}
	}
	return nil
}

// install syncs the file and, unless it is a device, cuts its trailer and
// renames it onto the path.
func (s *Sink) install() error {
	if !s.device {
		if _, err := os.Lstat(s.path); err == nil && !s.overwrite {
			return existsError(s.path)
		}
		if err := s.f.Truncate(s.size); err != nil {
			return fmt.Errorf("local: commit %s: cut the trailer: %w", s.partial, err)
		}
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("local: commit %s: sync: %w", s.partial, err)
	}
	if !s.device {
		// Rename while the file is open and locked, so that no other copy
		// can take the partial file over in between.
		if err := os.Rename(s.partial, s.path); err != nil {
			return fmt.Errorf("local: commit %s: %w", s.path, err)
		}
	}
	return nil
}

// Close releases the sink's file without committing or aborting it, as a
// copy that stops to be resumed later does: the partial file stays for a
// later [Create] with SinkOptions.Resume. Afterwards WriteBlock, Flush and
// Commit fail with draas.ErrClosed, while Abort still removes the partial
// file. Closing a committed, aborted or closed sink does nothing.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.life.Release() {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return fmt.Errorf("local: close %s: %w", s.partial, err)
	}
	return nil
}

// Abort closes the sink and, for a file, removes the partial file; a device
// keeps what was written. Aborting twice is not an error; aborting a
// committed sink changes nothing and returns draas.ErrClosed.
func (s *Sink) Abort(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cleanup, err := s.life.BeginAbort(); !cleanup {
		if err != nil {
			return fmt.Errorf("local: abort %s: %w", s.path, err)
		}
		return nil
	}
	var errs []error
	if !s.device {
		if err := os.Remove(s.partial); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if s.f != nil {
		if err := s.f.Close(); err != nil {
			errs = append(errs, err)
		}
		s.f = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("local: abort %s: %w", s.partial, err)
	}
	return nil
}

// Committed implements draas.VerifiableSink: it opens the committed file or
// device with [Open]. The caller should Close the returned *Source (it
// implements io.Closer). Before a successful Commit it returns an error
// wrapping draas.ErrNotFound.
func (s *Sink) Committed(ctx context.Context) (draas.BlockSource, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if st := s.life.Phase(); st != draas.SinkCommitted {
		return nil, fmt.Errorf("local: committed content of %s: sink is %s: %w", s.path, st, draas.ErrNotFound)
	}
	src, err := Open(s.path)
	if err != nil {
		return nil, err
	}
	if src.device {
		// A device may be larger than the disk written onto it.
		src.size = min(src.size, s.size)
	}
	return src, nil
}
