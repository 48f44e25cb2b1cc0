package vmdk

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/opendraas/draas"
)

// Format is a VMDK subformat that [Create] writes.
type Format int

const (
	// StreamOptimized is a single file of deflate-compressed grains with
	// markers, the grain tables and directory at the end, a footer and an
	// end-of-stream marker: the format of OVF/OVA packages and of vSphere
	// imports. It is the zero Format.
	StreamOptimized Format = iota
	// MonolithicSparse is a single file of uncompressed grains with the
	// grain directory, a redundant one and all grain tables preallocated
	// after the header (VMware Workstation's growable disk).
	MonolithicSparse
	// MonolithicFlat is a descriptor file NAME.vmdk and a raw extent file
	// NAME-flat.vmdk beside it, written sparse (holes where the disk is
	// zero). It is what qemu-img makes with subformat=monolithicFlat.
	MonolithicFlat
)

// String returns the format's createType, e.g. "streamOptimized".
func (f Format) String() string {
	switch f {
	case StreamOptimized:
		return "streamOptimized"
	case MonolithicSparse:
		return "monolithicSparse"
	case MonolithicFlat:
		return "monolithicFlat"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat returns the Format whose createType is s, ignoring case
// (as qemu-img's subformat option names them). An empty s means
// StreamOptimized. Other values fail with draas.ErrInvalid.
func ParseFormat(s string) (Format, error) {
	if s == "" {
		return StreamOptimized, nil
	}
	for _, f := range []Format{StreamOptimized, MonolithicSparse, MonolithicFlat} {
		if strings.EqualFold(s, f.String()) {
			return f, nil
		}
	}
	return 0, draas.Invalidf("vmdk: format %q: want streamOptimized, monolithicSparse or monolithicFlat", s)
}

// AdapterTypes are the values CreateOptions.AdapterType accepts: the
// ddb.adapterType values VMware and qemu-img know.
var AdapterTypes = []string{"ide", "buslogic", "lsilogic", "legacyESX"}

// CreateOptions configures [Create]. The zero value writes a streamOptimized
// VMDK for an LSI Logic SCSI adapter, compressed at deflate level 1, and
// refuses to replace an existing file.
type CreateOptions struct {
	// Format is the subformat; the zero value is StreamOptimized.
	Format Format
	// AdapterType is the descriptor's ddb.adapterType, one of
	// [AdapterTypes]; empty means "lsilogic". It also sets the geometry:
	// 16 heads for "ide", 255 for the SCSI adapters.
	AdapterType string
	// Overwrite lets Commit replace existing files at the path. Without it
	// Create fails with draas.ErrConflict when they exist, and Commit fails
	// the same way if they appeared in the meantime.
	Overwrite bool
	// CompressionLevel is the deflate level of StreamOptimized grains, 1
	// (fastest) to 9 (smallest); 0 means 1. Disk data that is already
	// compressed or encrypted does not shrink at any level, so the fastest
	// level is the default.
	CompressionLevel int
}

// SinkBlockSize is the block size of every [Sink]: 512 KiB, eight 64 KiB
// grains, the EBS snapshot block size. Larger blocks than a grain amortise
// the per-call cost; a whole number of grains keeps every write aligned.
const SinkBlockSize = 512 << 10

// grainSectors is the grain size of the sparse formats Create writes.
const grainSectors = 128

// partialSuffix names the temporary files a Sink writes before Commit.
const partialSuffix = ".draas-partial"

// Sink writes a VMDK file: a draas.VolumeSink and draas.VerifiableSink.
//
// Blocks are SinkBlockSize bytes (the last one shorter) and may be written
// concurrently and in any order. They go to a temporary file beside the
// target (the path with ".draas-partial" appended); Commit writes the
// metadata, fsyncs and renames it into place, and Abort removes it, so the
// path never holds a half-written disk.
//
// StreamOptimized: WriteBlock deflates the block's grains in the calling
// goroutine, so concurrent calls (as blockcopy makes them) compress on all
// cores, then appends them to the file in arrival order; all-zero grains
// are not stored. The grain tables, the directory, the footer and the
// end-of-stream marker are written by Commit. Grains therefore need not be
// in LBA order in the file: every grain carries its LBA in its marker and
// the tables at the end index them (qemu-img and VMware read this layout).
// A block written again with the same data (same Checksum) is not stored
// twice.
//
// MonolithicSparse: grains are stored uncompressed in arrival order after
// preallocated tables; all-zero grains are not stored.
//
// MonolithicFlat: blocks are written in place into a sparse extent file;
// the descriptor file is written by Commit.
//
// The disk holds Size bytes: the size given to Create rounded up to whole
// 512-byte sectors, since a VMDK's capacity is a number of sectors. The
// last block may end at the size given to Create or at Size; the bytes past
// the former read as zeros.
type Sink struct {
	path     string
	size     int64 // requested
	capacity int64 // rounded up to sectors
	format   Format
	// life holds off Commit and Abort while WriteBlock runs; a failed
	// Commit leaves only Abort.
	life draas.SinkLifecycle
	w    formatWriter
}

var _ draas.VerifiableSink = (*Sink)(nil)

// formatWriter is what each format does with validated blocks.
type formatWriter interface {
	// writeBlock stores block index idx at byte offset off; data may be
	// shorter than the block, the rest reading as zeros.
	writeBlock(idx, off int64, data []byte, sum [32]byte) error
	// commit writes the metadata, syncs, and renames the files into place.
	commit() error
	// abort closes and removes the temporary files.
	abort() error
}

// Create starts writing a VMDK of size bytes at path (for MonolithicFlat,
// the descriptor's path; the extent file is NAME-flat.vmdk beside it). The
// directory must exist. size is rounded up to whole sectors. Create fails
// with draas.ErrInvalid for a size that is negative or 0 (no reader accepts
// a VMDK of 0 sectors) or bad options, and with
// draas.ErrConflict when the path exists and opts.Overwrite is false. The
// caller must Commit or Abort the sink.
func Create(path string, size int64, opts CreateOptions) (*Sink, error) {
	if err := opts.validate(size); err != nil {
		return nil, &draas.OpError{Op: "vmdk.Create", Resource: path, Kind: draas.ErrInvalid, Err: err}
	}
	capacity := (size + sectorSize - 1) / sectorSize * sectorSize
	if !opts.Overwrite {
		for _, p := range targetPaths(path, opts.Format) {
			if _, err := os.Lstat(p); err == nil {
				return nil, &draas.OpError{Op: "vmdk.Create", Resource: path, Kind: draas.ErrConflict,
					Err: fmt.Errorf("%s exists; set Overwrite to replace it: %w", p, fs.ErrExist)}
			}
		}
	}
	s := &Sink{path: path, size: size, capacity: capacity, format: opts.Format}
	m := newMeta(path, capacity, opts)
	var err error
	switch opts.Format {
	case StreamOptimized:
		s.w, err = newStreamWriter(m, opts.CompressionLevel)
	case MonolithicSparse:
		s.w, err = newSparseWriter(m)
	case MonolithicFlat:
		s.w, err = newFlatWriter(m)
	}
	if err != nil {
		return nil, &draas.OpError{Op: "vmdk.Create", Resource: path, Err: err}
	}
	return s, nil
}

func (o *CreateOptions) validate(size int64) error {
	if size < 0 {
		return fmt.Errorf("size %d is negative", size)
	}
	if size == 0 {
		// An extent of 0 sectors is no extent: qemu-img (even on a VMDK it
		// creates itself with size 0) and VMware refuse such a file.
		return errors.New("a disk of 0 bytes cannot be a VMDK (readers such as qemu-img and VMware refuse an extent of 0 sectors); copy it to a raw file instead")
	}
	if size > maxCapacitySectors*sectorSize {
		return fmt.Errorf("size %d is more than the supported %d bytes", size, int64(maxCapacitySectors*sectorSize))
	}
	if o.Format < StreamOptimized || o.Format > MonolithicFlat {
		return fmt.Errorf("format %v: want StreamOptimized, MonolithicSparse or MonolithicFlat", o.Format)
	}
	if o.AdapterType != "" && !slices.Contains(AdapterTypes, o.AdapterType) {
		return fmt.Errorf("adapter type %q: want one of %s", o.AdapterType, strings.Join(AdapterTypes, ", "))
	}
	if o.CompressionLevel < 0 || o.CompressionLevel > 9 {
		return fmt.Errorf("compression level %d: want 1 to 9, or 0 for 1", o.CompressionLevel)
	}
	return nil
}

// targetPaths returns the files a sink of the format creates at path.
func targetPaths(path string, f Format) []string {
	if f == MonolithicFlat {
		return []string{path, flatPath(path)}
	}
	return []string{path}
}

// flatPath returns the extent file of the monolithicFlat disk at path:
// NAME-flat.vmdk for NAME.vmdk (NAME-flat.EXT for another extension).
func flatPath(path string) string {
	ext := filepath.Ext(path)
	if ext == "" {
		ext = ".vmdk"
	}
	return strings.TrimSuffix(path, filepath.Ext(path)) + "-flat" + ext
}

// meta is what every format writes into its descriptor.
type meta struct {
	path        string
	capacity    int64
	adapterType string
	overwrite   bool
	cid         uint32
	longCID     string
}

func newMeta(path string, capacity int64, opts CreateOptions) meta {
	at := opts.AdapterType
	if at == "" {
		at = "lsilogic"
	}
	cid := rand.Uint32N(0xfffffffe) // never ffffffff, "no parent"
	return meta{
		path: path, capacity: capacity, adapterType: at, overwrite: opts.Overwrite,
		cid:     cid,
		longCID: fmt.Sprintf("%08x%08x%08x%08x", rand.Uint32(), rand.Uint32(), rand.Uint32(), cid),
	}
}

// descriptor returns the descriptor text of a disk of this meta with one
// extent of the given type in file.
func (m meta) descriptor(createType, typ, file string) string {
	sectors := uint64(m.capacity / sectorSize)
	return formatDescriptor(createType, m.cid,
		extentDesc{access: "RW", sectors: sectors, typ: typ, file: file},
		m.adapterType, geometryFor(sectors, m.adapterType), m.longCID)
}

// BlockSize returns SinkBlockSize.
func (s *Sink) BlockSize() int { return SinkBlockSize }

// Size returns the disk's size: the size given to Create rounded up to
// whole 512-byte sectors.
func (s *Sink) Size() int64 { return s.capacity }

// WriteBlock stores b. It is safe for concurrent calls with different
// blocks and idempotent. b.Offset must be a multiple of SinkBlockSize and
// b.Data a whole block, except that the last block may end anywhere from the
// size given to Create to Size; other blocks fail with draas.ErrInvalid.
// After Commit or Abort it fails with draas.ErrClosed. The sink does not
// retain b.Data.
func (s *Sink) WriteBlock(ctx context.Context, b draas.Block) error {
	if err := s.life.BeginWrite(); err != nil {
		return fmt.Errorf("vmdk: %s: WriteBlock: %w", s.path, err)
	}
	defer s.life.EndWrite()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := draas.CheckBlockRounded(b, SinkBlockSize, s.size, s.capacity); err != nil {
		return fmt.Errorf("vmdk: %s: %w", s.path, err)
	}
	sum := b.Checksum
	if sum == ([32]byte{}) {
		sum = sha256.Sum256(b.Data)
	}
	if err := s.w.writeBlock(b.Index, b.Offset, b.Data, sum); err != nil {
		return &draas.OpError{Op: "vmdk.WriteBlock", Resource: fmt.Sprintf("%s block %d", s.path, b.Index), Err: err}
	}
	return nil
}

// Commit writes the metadata, fsyncs the files and renames them into place.
// It fails with draas.ErrClosed after Commit or Abort; after a failed
// Commit the sink can only be aborted.
func (s *Sink) Commit(ctx context.Context) error {
	if err := s.life.BeginCommit(); err != nil {
		return fmt.Errorf("vmdk: %s: Commit: %w", s.path, err)
	}
	if err := ctx.Err(); err != nil {
		return s.life.EndCommit(err)
	}
	err := s.w.commit()
	if err != nil {
		var kind error
		if errors.Is(err, fs.ErrExist) {
			kind = draas.ErrConflict
		}
		err = &draas.OpError{Op: "vmdk.Commit", Resource: s.path, Kind: kind, Err: err}
	}
	return s.life.EndCommit(err)
}

// Abort removes the temporary files. It is a no-op after a successful
// Commit, and may be called more than once.
func (s *Sink) Abort(ctx context.Context) error {
	if cleanup, err := s.life.BeginAbort(); !cleanup {
		if errors.Is(err, draas.ErrConflict) {
			return fmt.Errorf("vmdk: %s: Abort: %w", s.path, err)
		}
		return nil // committed or aborted before
	}
	if err := s.w.abort(); err != nil {
		return &draas.OpError{Op: "vmdk.Abort", Resource: s.path, Err: err}
	}
	return nil
}

// Committed opens the committed VMDK with [Open]. It fails unless Commit
// succeeded. The caller should Close the returned *Source when done.
func (s *Sink) Committed(ctx context.Context) (draas.BlockSource, error) {
	if st := s.life.Phase(); st != draas.SinkCommitted {
		return nil, fmt.Errorf("vmdk: %s: Committed while %s: %w", s.path, st, draas.ErrNotFound)
	}
	return Open(s.path)
}

// tempFile creates (or truncates) the temporary file for target.
func tempFile(target string) (*os.File, error) {
	return os.OpenFile(target+partialSuffix, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
}

// install moves the synced temporary file of target into place: a rename
// when overwriting, otherwise a hard link that fails if target exists, then
// the removal of the temporary name. It syncs the directory.
func install(target string, overwrite bool) error {
	tmp := target + partialSuffix
	if overwrite {
		if err := os.Rename(tmp, target); err != nil {
			return err
		}
	} else {
		if err := os.Link(tmp, target); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s appeared during the copy; set Overwrite to replace it: %w", target, err)
			}
			// No hard links on this file system: check, then rename.
			if _, serr := os.Lstat(target); serr == nil {
				return fmt.Errorf("%s appeared during the copy; set Overwrite to replace it: %w", target, fs.ErrExist)
			}
			if err := os.Rename(tmp, target); err != nil {
				return err
			}
		} else if err := os.Remove(tmp); err != nil {
			return err
		}
	}
	return syncDir(filepath.Dir(target))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// syncClose syncs and closes f, the temporary file of a sink.
func syncClose(f *os.File) error {
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// syncCloseInstall syncs and closes f, the temporary file of target, and
// installs it (see install).
func syncCloseInstall(f *os.File, target string, overwrite bool) error {
	if err := syncClose(f); err != nil {
		return err
	}
	return install(target, overwrite)
}

// closeAndRemove closes f and removes its file, ignoring a file already gone.
func closeAndRemove(f *os.File) error {
	cerr := f.Close()
	if errors.Is(cerr, os.ErrClosed) {
		cerr = nil
	}
	rerr := os.Remove(f.Name())
	if errors.Is(rerr, fs.ErrNotExist) {
		rerr = nil
	}
	return errors.Join(cerr, rerr)
}

// grainTables holds the grain table entries a writer has set, one table of
// gtes entries allocated per table that has any, so memory follows the data
// written rather than the disk's size. It is not safe for concurrent use.
type grainTables struct {
	gtes   int64
	tables [][]uint32
}

func newGrainTables(capacity int64) *grainTables {
	grains := (capacity/sectorSize + grainSectors - 1) / grainSectors
	const gtes = 512
	return &grainTables{gtes: gtes, tables: make([][]uint32, (grains+gtes-1)/gtes)}
}

func (t *grainTables) set(g int64, v uint32) {
	tab := t.tables[g/t.gtes]
	if tab == nil {
		if v == 0 {
			return
		}
		tab = make([]uint32, t.gtes)
		t.tables[g/t.gtes] = tab
	}
	tab[g%t.gtes] = v
}

// sectorsFor returns the sectors n bytes occupy.
func sectorsFor(n int64) int64 { return (n + sectorSize - 1) / sectorSize }

// putTable appends the little-endian form of entries to p.
func putTable(p []byte, entries []uint32) []byte {
	for _, e := range entries {
		p = append(p, byte(e), byte(e>>8), byte(e>>16), byte(e>>24))
	}
	return p
}

// padSector appends zeros to p up to a whole number of sectors.
func padSector(p []byte) []byte {
	if r := len(p) % sectorSize; r != 0 {
		p = append(p, make([]byte, sectorSize-r)...)
	}
	return p
}

// writerState is the lock-protected part every sparse writer shares: the
// next free byte of the file, the grain tables, and the checksum of each
// block written.
type writerState struct {
	mu   sync.Mutex
	next int64
	gt   *grainTables
	sums map[int64][32]byte
}

// written reports whether block idx was already written with data of sum.
func (w *writerState) written(idx int64, sum [32]byte) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.sums[idx]
	return ok && s == sum
}

// reserve returns the offset of n new bytes at the end of the file; the
// sectors of a file addressed by grain tables must fit in 32 bits.
func (w *writerState) reserve(n int64) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	off := w.next
	if (off+n)/sectorSize > 0xffffffff {
		return 0, fmt.Errorf("the file would exceed 2 TiB, the most a sparse VMDK's grain tables can address")
	}
	w.next += n
	return off, nil
}

// baseName is the file name a descriptor records for path.
func baseName(path string) string { return filepath.Base(path) }
