// Package local reads and writes disks held in raw image files and block
// devices on the local machine.
//
// A [Source] reads a raw file or a block device with pread and reports a
// sparse file's holes through lseek(SEEK_DATA/SEEK_HOLE), so a copier skips
// them. A [Sink] writes a raw file atomically: blocks go into a sparse
// temporary file beside the target, which Commit makes durable and renames
// onto the target, so a crashed or aborted copy never leaves a half-written
// image under the target's name. A Sink onto an existing block device writes
// in place.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/opendraas/draas"
)

// maxRead is the most a single pread reads, so that a large ReadAt notices a
// cancelled context between reads.
const maxRead = 8 << 20

// Source is a raw disk image file or a block device opened for reading. It
// is a draas.BlockSource and a draas.ExtentSource. Its methods are safe for
// concurrent use; Close must be called when it is no longer needed.
type Source struct {
	f      *os.File
	path   string
	size   int64
	device bool
}

var (
	_ draas.BlockSource  = (*Source)(nil)
	_ draas.ExtentSource = (*Source)(nil)
	_ io.Closer          = (*Source)(nil)
)

// Open opens the raw image file or block device at path for reading. The
// size of a regular file is its length when opened; the size of a block
// device is the device's. A missing path fails with an error wrapping both
// draas.ErrNotFound and fs.ErrNotExist; a path that is neither a regular
// file nor a block device with draas.ErrInvalid.
func Open(path string) (*Source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, openError(path, err)
	}
	s, err := newSource(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

func newSource(f *os.File, path string) (*Source, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("local: stat %s: %w", path, err)
	}
	switch {
	case st.Mode().IsRegular():
		return &Source{f: f, path: path, size: st.Size()}, nil
	case isBlockDevice(st):
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return nil, fmt.Errorf("local: size of block device %s: %w", path, err)
		}
		return &Source{f: f, path: path, size: size, device: true}, nil
	}
	return nil, draas.Invalidf("local: %s is a %s, not a regular file or block device; give the path of a raw image or a block device", path, fileKind(st.Mode()))
}

// fileKind names the type of a file that is neither a regular file nor a
// block device, in words ("directory", not "d---------").
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "file of type " + m.Type().String()
}

// openError wraps an error from opening path, adding draas.ErrNotFound when
// the path does not exist. The message names path once: the *fs.PathError
// from os stays in the chain for errors.As, but its text, which repeats the
// path, is not printed.
func openError(path string, err error) error {
	err = bare(err)
	if errors.Is(err, fs.ErrNotExist) {
		return &draas.OpError{Op: "local: open", Resource: path, Kind: draas.ErrNotFound, Err: err}
	}
	return fmt.Errorf("local: open %s: %w", path, err)
}

// bare returns err without the "op path: " prefix of an *fs.PathError,
// for a message that names the path already; errors.As and errors.Is still
// find the *fs.PathError and its cause.
func bare(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return &pathError{pe}
	}
	return err
}

// pathError prints only an *fs.PathError's cause.
type pathError struct{ pe *fs.PathError }

func (e *pathError) Error() string { return e.pe.Err.Error() }
func (e *pathError) Unwrap() error { return e.pe }

func isBlockDevice(st fs.FileInfo) bool {
	m := st.Mode()
	return m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0
}

// Size returns the size of the disk in bytes.
func (s *Source) Size() int64 { return s.size }

// BlockSize returns 0: a file reads equally well at any size.
func (s *Source) BlockSize() int { return 0 }

// ReadAt reads len(p) bytes at off with pread. A read reaching Size returns
// the bytes before it and io.EOF. It checks ctx before each read of at most
// 8 MiB and returns ctx's error when it is done. It fails with
// io.ErrUnexpectedEOF when the file has shrunk since it was opened.
func (s *Source) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, draas.Invalidf("local: read %s at negative offset %d", s.path, off)
	}
	if off >= s.size {
		return 0, io.EOF
	}
	want := p[:min(int64(len(p)), s.size-off)]
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if n == len(want) {
			break
		}
		m, err := s.f.ReadAt(want[n:min(n+maxRead, len(want))], off+int64(n))
		n += m
		if errors.Is(err, io.EOF) {
			return n, fmt.Errorf("local: read %s at offset %d: the file is shorter than its size %d when opened: %w", s.path, off+int64(n), s.size, io.ErrUnexpectedEOF)
		}
		if err != nil {
			return n, fmt.Errorf("local: read %s at offset %d: %w", s.path, off+int64(n), err)
		}
	}
	if len(want) < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// AllocatedExtents returns the extents of a regular file that hold data, as
// lseek(SEEK_DATA/SEEK_HOLE) reports them, in the filesystem's block
// granularity; everything else is a hole and reads as zeros. For a block
// device, or a filesystem or system without SEEK_DATA, it returns the whole
// disk.
func (s *Source) AllocatedExtents(ctx context.Context) ([]draas.Extent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	whole := []draas.Extent{{Offset: 0, Length: s.size}}
	if s.size == 0 {
		whole = nil
	}
	if s.device {
		return whole, nil
	}
	exts, err := dataExtents(ctx, s.f, s.size)
	if errors.Is(err, errNoSeekData) {
		return whole, nil
	}
	if err != nil {
		return nil, fmt.Errorf("local: allocated extents of %s: %w", s.path, err)
	}
	return exts, nil
}

// Close closes the file. Reads after Close fail.
func (s *Source) Close() error {
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("local: close %s: %w", s.path, err)
	}
	return nil
}

// errNoSeekData means the filesystem or system cannot report holes.
var errNoSeekData = errors.New("SEEK_DATA not supported")
