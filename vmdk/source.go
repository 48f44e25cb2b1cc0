package vmdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"

	"github.com/opendraas/draas"
)

// Info describes an opened VMDK as its descriptor and headers record it.
type Info struct {
	// CreateType is the descriptor's createType, e.g. "streamOptimized",
	// "monolithicSparse" or "monolithicFlat".
	CreateType string
	// AdapterType is ddb.adapterType ("ide", "lsilogic", ...), or empty
	// when the descriptor does not say.
	AdapterType string
	// Geometry is ddb.geometry.*; zero fields were not recorded.
	Geometry Geometry
	// CID is the descriptor's content ID.
	CID uint32
	// GrainSize is the grain size of the sparse extents in bytes, or 0 for
	// a disk of flat extents only.
	GrainSize int
	// Compressed reports compressed grains (streamOptimized).
	Compressed bool
	// Files are the files the disk is made of: the file opened, then the
	// extent files it names.
	Files []string
}

// Source reads a VMDK: a streamOptimized or monolithicSparse file, or a
// descriptor file with flat or sparse extent files (monolithicFlat,
// twoGbMaxExtentFlat, twoGbMaxExtentSparse, vmfs). It is a
// draas.BlockSource and a draas.ExtentSource.
//
// ReadAt is safe for concurrent use. Unallocated and zeroed grains read as
// zeros; compressed grains are inflated and their checksums verified. The
// disk's Size is the capacity the VMDK records, a whole number of 512-byte
// sectors. A Source holds its files open until Close (or, when it is dropped
// without Close, until the garbage collector finalizes the files).
type Source struct {
	path   string
	size   int64
	bs     int
	exts   []extent // contiguous, in disk order
	files  []*os.File
	info   Info
	pool   *grainPool
	closed atomic.Bool
}

var _ draas.ExtentSource = (*Source)(nil)

// extent is a part of the disk backed by one extent of the descriptor.
type extent struct {
	start, length int64 // bytes of the disk
	name          string
	zero          bool          // a ZERO extent
	sparse        *sparseExtent // a sparse extent, or nil
	flat          *os.File      // a flat extent, or nil
	flatOff       int64         // byte offset of the extent in flat
}

// Open opens the VMDK at path: either a sparse extent with an embedded
// descriptor (streamOptimized, monolithicSparse) or a descriptor file whose
// extent files lie in the same directory. Open validates the descriptor,
// the headers, the grain directory and every grain table entry against the
// files' sizes; errors wrap draas.ErrInvalid (a malformed or unsupported
// file, named with the field at fault) or draas.ErrNotFound (a missing
// file), inside a *draas.OpError naming the file.
//
// Open reads all grain tables into memory: 4 bytes per allocated grain
// (64 KiB per GiB of allocated data with 64 KiB grains).
func Open(path string) (*Source, error) {
	s := &Source{path: path, info: Info{Files: []string{path}}}
	if err := s.open(); err != nil {
		s.closeFiles()
		return nil, openError(path, err)
	}
	s.pool = &grainPool{size: int64(max(s.info.GrainSize, 1))}
	return s, nil
}

// invalidError marks an error as a format error, for openError.
type invalidError struct{ error }

func (e invalidError) Unwrap() error { return e.error }

func invalid(format string, args ...any) error {
	return invalidError{fmt.Errorf(format, args...)}
}

// openError wraps an error of Open with the operation, the path and the
// sentinel that fits.
func openError(path string, err error) error {
	var kind error
	var inv invalidError
	switch {
	case errors.As(err, &inv):
		kind = draas.ErrInvalid
	case errors.Is(err, fs.ErrNotExist):
		kind = draas.ErrNotFound
	}
	return &draas.OpError{Op: "vmdk.Open", Resource: path, Kind: kind, Err: err}
}

func (s *Source) open() error {
	f, size, err := openFile(s.path)
	if err != nil {
		return err
	}
	s.files = append(s.files, f)
	head := make([]byte, min(size, sectorSize))
	if err := readFull(f, head, 0); err != nil {
		return err
	}
	if len(head) >= 4 && le32(head) == cowdMagic {
		return invalid("header: magic COWD (an ESX vmfsSparse delta disk) is not supported")
	}
	if len(head) >= 4 && le32(head) == sparseMagic {
		return s.openMonolithic(f, size)
	}
	if size > maxDescriptorBytes {
		return invalid("neither a sparse extent (no KDMV magic) nor a descriptor file (%d bytes, more than %d)", size, maxDescriptorBytes)
	}
	text := make([]byte, size)
	if err := readFull(f, text, 0); err != nil {
		return err
	}
	if !bytes.Contains(text, []byte("createType")) {
		return invalid("neither a sparse extent (no KDMV magic) nor a descriptor file (no createType)")
	}
	d, err := parseDescriptor(text)
	if err != nil {
		return invalidError{err}
	}
	s.setDescriptor(d)
	return s.openExtents(d)
}

// openMonolithic opens a single sparse extent file, with or without an
// embedded descriptor.
func (s *Source) openMonolithic(f *os.File, size int64) error {
	sp, err := openSparse(f, size)
	if err != nil {
		return invalidError{err}
	}
	if sp.descriptor != nil {
		d, err := parseDescriptor(sp.descriptor)
		if err != nil {
			return invalidError{fmt.Errorf("embedded %w", err)}
		}
		switch {
		case len(d.extents) != 1 || d.extents[0].typ != "SPARSE":
			return invalid("embedded descriptor: %d extents: this is one extent of a multi-extent disk; open its descriptor file", len(d.extents))
		case d.extents[0].sectors != sp.h.Capacity:
			return invalid("embedded descriptor: extent size %d sectors differs from the header's capacity %d", d.extents[0].sectors, sp.h.Capacity)
		}
		s.setDescriptor(d)
	} else {
		s.info.CreateType = "monolithicSparse"
		if sp.compressed {
			s.info.CreateType = "streamOptimized"
		}
	}
	s.addSparse(sp, s.path)
	return nil
}

func (s *Source) setDescriptor(d *descriptor) {
	s.info.CreateType = d.createType
	s.info.AdapterType = d.adapterType
	s.info.Geometry = d.geometry
	s.info.CID = d.cid
}

func (s *Source) addSparse(sp *sparseExtent, name string) {
	s.exts = append(s.exts, extent{start: s.size, length: sp.capacity, name: name, sparse: sp})
	s.size += sp.capacity
	if s.info.GrainSize == 0 || int(sp.grain) > s.info.GrainSize {
		s.info.GrainSize = int(sp.grain)
		s.bs = int(sp.grain)
	}
	s.info.Compressed = s.info.Compressed || sp.compressed
}

// openExtents opens the extent files a descriptor file names.
func (s *Source) openExtents(d *descriptor) error {
	dir := filepath.Dir(s.path)
	for _, e := range d.extents {
		length := int64(e.sectors) * sectorSize
		if e.typ == "ZERO" {
			s.exts = append(s.exts, extent{start: s.size, length: length, zero: true})
			s.size += length
			continue
		}
		name := filepath.Join(dir, filepath.FromSlash(e.file))
		f, size, err := openFile(name)
		if err != nil {
			return fmt.Errorf("extent file %s (descriptor line %d): %w", e.file, e.line, err)
		}
		s.files = append(s.files, f)
		s.info.Files = append(s.info.Files, name)
		if e.typ == "SPARSE" {
			sp, err := openSparse(f, size)
			if err != nil {
				return invalid("extent file %s (descriptor line %d): %w", e.file, e.line, err)
			}
			if sp.h.Capacity != e.sectors {
				return invalid("extent file %s (descriptor line %d): capacity %d sectors differs from the descriptor's %d", e.file, e.line, sp.h.Capacity, e.sectors)
			}
			s.addSparse(sp, name)
			continue
		}
		off := int64(e.offset) * sectorSize
		if off+length > size {
			return invalid("extent file %s (descriptor line %d): %d bytes, too short for %d sectors at sector offset %d", e.file, e.line, size, e.sectors, e.offset)
		}
		s.exts = append(s.exts, extent{start: s.size, length: length, name: name, flat: f, flatOff: off})
		s.size += length
	}
	return nil
}

// openFile opens a regular file (or block device) for reading and returns
// its size.
func openFile(name string) (*os.File, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if fi.IsDir() {
		f.Close()
		return nil, 0, invalid("%s is a directory", name)
	}
	size := fi.Size()
	if fi.Mode()&fs.ModeDevice != 0 {
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, 0, err
		}
	}
	return f, size, nil
}

// Size returns the disk's capacity in bytes.
func (s *Source) Size() int64 { return s.size }

// BlockSize returns the grain size in bytes (64 KiB for the usual sparse
// VMDKs), or 0 for a disk of flat extents only.
func (s *Source) BlockSize() int { return s.bs }

// Info returns what the descriptor and headers record about the disk.
func (s *Source) Info() Info {
	i := s.info
	i.Files = append([]string(nil), i.Files...)
	return i
}

// Close closes the files. ReadAt and AllocatedExtents fail afterwards.
func (s *Source) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.closeFiles()
}

func (s *Source) closeFiles() error {
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// ReadAt reads len(p) bytes of the disk at off, following the
// draas.BlockSource contract: a read reaching Size returns the bytes before
// it and io.EOF, a negative offset fails with draas.ErrInvalid, and a done
// ctx fails the read with ctx's error.
func (s *Source) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, draas.Invalidf("vmdk: %s: read at negative offset %d", s.path, off)
	}
	if s.closed.Load() {
		return 0, fmt.Errorf("vmdk: %s: read after Close: %w", s.path, os.ErrClosed)
	}
	if off >= s.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), s.size-off))
	i := sort.Search(len(s.exts), func(i int) bool { return s.exts[i].start+s.exts[i].length > off })
	for done := 0; done < n; i++ {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		e := &s.exts[i]
		pos := off + int64(done)
		k := int(min(int64(n-done), e.start+e.length-pos))
		if err := e.readAt(p[done:done+k], pos-e.start, s.pool); err != nil {
			return done, fmt.Errorf("vmdk: %s: %w", e.name, err)
		}
		done += k
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (e *extent) readAt(p []byte, off int64, pool *grainPool) error {
	switch {
	case e.zero:
		clear(p)
		return nil
	case e.sparse != nil:
		return e.sparse.readAt(p, off, pool)
	default:
		return readFull(e.flat, p, e.flatOff+off)
	}
}

// AllocatedExtents returns the parts of the disk that hold data: the
// allocated grains of sparse extents (zeroed grains excluded), coalesced,
// and the data regions of flat extent files as the file system reports
// them with SEEK_DATA (the whole extent where it cannot tell).
func (s *Source) AllocatedExtents(ctx context.Context) ([]draas.Extent, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("vmdk: %s: AllocatedExtents after Close: %w", s.path, os.ErrClosed)
	}
	var out []draas.Extent
	for _, e := range s.exts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		switch {
		case e.zero:
		case e.sparse != nil:
			for _, r := range e.sparse.allocated() {
				out = append(out, draas.Extent{Offset: e.start + r[0], Length: r[1] - r[0]})
			}
		default:
			rs, err := dataRegions(e.flat, e.flatOff, e.length)
			if err != nil {
				return nil, fmt.Errorf("vmdk: %s: %w", e.name, err)
			}
			for _, r := range rs {
				out = append(out, draas.Extent{Offset: e.start + r[0] - e.flatOff, Length: r[1] - r[0]})
			}
		}
	}
	return draas.NormalizeExtents(out), nil
}
