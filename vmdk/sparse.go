package vmdk

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/opendraas/draas"
)

// sparseExtent reads one hosted sparse extent file (monolithicSparse,
// streamOptimized, or one extent of twoGbMaxExtentSparse): a header, a grain
// directory (GD) of grain table (GT) offsets, and grains, compressed or not.
//
// All grain tables are loaded at open, so a read costs no metadata I/O. They
// are held in one slice with an index per directory entry. Two directory
// entries may not share a table, so memory (and the work of walking the
// tables) is bounded by the file's size, not by the capacity its header
// claims.
type sparseExtent struct {
	f          *os.File
	fileSize   int64
	h          header
	grain      int64 // bytes
	capacity   int64 // bytes
	gtes       int64 // entries per grain table
	compressed bool
	markers    bool
	// gtIndex[i] is the index in tables of directory entry i's table, or -1
	// when the entry is 0 (no table: all its grains are unallocated).
	gtIndex []int32
	tables  []uint32
	// descriptor is the embedded descriptor's text, if any.
	descriptor []byte
}

// openSparse reads and validates the header, the footer when the grain
// directory is at the end, the grain directory and the grain tables.
func openSparse(f *os.File, fileSize int64) (*sparseExtent, error) {
	buf := make([]byte, sectorSize)
	if err := readFull(f, buf, 0); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	h, err := parseHeader(buf)
	if err != nil {
		return nil, err
	}
	if err := h.validate(fileSize); err != nil {
		return nil, err
	}
	s := &sparseExtent{
		f: f, fileSize: fileSize, h: h,
		grain:      int64(h.GrainSize) * sectorSize,
		capacity:   int64(h.Capacity) * sectorSize,
		gtes:       int64(h.NumGTEsPerGT),
		compressed: h.Flags&flagCompressed != 0,
		markers:    h.Flags&flagMarkers != 0,
	}
	if h.DescriptorSize > 0 {
		s.descriptor = make([]byte, h.DescriptorSize*sectorSize)
		if err := readFull(f, s.descriptor, int64(h.DescriptorOffset)*sectorSize); err != nil {
			return nil, fmt.Errorf("embedded descriptor: %w", err)
		}
	}
	gd := h.GDOffset
	if gd == gdAtEnd {
		footer, err := s.readFooter()
		var missing noFooterError
		if errors.As(err, &missing) && s.markers {
			// A stream without a footer: rebuild the tables from the
			// grain markers, provided the stream is complete.
			if serr := s.scanMarkers(); serr != nil {
				return nil, fmt.Errorf("%w; scanning the markers instead: %w", err, serr)
			}
			return s, nil
		}
		if err != nil {
			return nil, err
		}
		gd = footer.GDOffset
	}
	if err := s.loadTables(gd); err != nil {
		return nil, err
	}
	return s, nil
}

// readFooter reads the footer of a streamOptimized extent: a footer marker,
// a copy of the header whose gdOffset is real, and an end-of-stream marker,
// in the last three sectors.
func (s *sparseExtent) readFooter() (header, error) {
	if s.fileSize < 4*sectorSize {
		return header{}, noFooterError{fmt.Errorf("footer: header has gdOffset at end but the file is only %d bytes", s.fileSize)}
	}
	buf := make([]byte, 3*sectorSize)
	base := s.fileSize - 3*sectorSize
	if err := readFull(s.f, buf, base); err != nil {
		return header{}, fmt.Errorf("footer: %w", err)
	}
	if s.markers {
		if m := parseMarker(buf); m.size != 0 || m.typ != markerFooter || m.val != 1 {
			return header{}, noFooterError{fmt.Errorf("footer: no footer marker at byte %d (value %d, size %d, type %d; want 1, 0, 3)", base, m.val, m.size, m.typ)}
		}
		if m := parseMarker(buf[2*sectorSize:]); m.size != 0 || m.typ != markerEOS || m.val != 0 {
			return header{}, fmt.Errorf("footer: no end-of-stream marker in the last sector (value %d, size %d, type %d; want 0, 0, 0)", m.val, m.size, m.typ)
		}
	}
	f, err := parseHeader(buf[sectorSize : 2*sectorSize])
	if err != nil {
		return header{}, fmt.Errorf("footer %w", err)
	}
	if err := f.validate(s.fileSize); err != nil {
		return header{}, fmt.Errorf("footer %w", err)
	}
	switch {
	case f.Capacity != s.h.Capacity:
		return header{}, fmt.Errorf("footer: capacity %d sectors differs from the header's %d", f.Capacity, s.h.Capacity)
	case f.GrainSize != s.h.GrainSize:
		return header{}, fmt.Errorf("footer: grainSize %d sectors differs from the header's %d", f.GrainSize, s.h.GrainSize)
	case f.NumGTEsPerGT != s.h.NumGTEsPerGT:
		return header{}, fmt.Errorf("footer: numGTEsPerGT %d differs from the header's %d", f.NumGTEsPerGT, s.h.NumGTEsPerGT)
	case f.Flags&(flagCompressed|flagMarkers) != s.h.Flags&(flagCompressed|flagMarkers):
		return header{}, fmt.Errorf("footer: flags %#x differ from the header's %#x", f.Flags, s.h.Flags)
	case f.GDOffset == gdAtEnd:
		return header{}, fmt.Errorf("footer: gdOffset is also at end")
	}
	return f, nil
}

// noFooterError reports a stream whose footer is missing (rather than
// present and wrong), which Open reads by scanning its markers.
type noFooterError struct{ error }

func (e noFooterError) Unwrap() error { return e.error }

// loadTables reads the grain directory at sector gd and the tables it
// points at, validating every offset against the file's size.
func (s *sparseExtent) loadTables(gd uint64) error {
	n := s.h.tables()
	sectors := uint64(s.fileSize) / sectorSize
	if n == 0 {
		return nil
	}
	if gd == 0 || gd >= sectors || n*4 > uint64(s.fileSize)-gd*sectorSize {
		return fmt.Errorf("grain directory: gdOffset sector %d with %d entries lies outside the file's %d sectors", gd, n, sectors)
	}
	dir := make([]byte, n*4)
	if err := readFull(s.f, dir, int64(gd)*sectorSize); err != nil {
		return fmt.Errorf("grain directory: %w", err)
	}
	s.gtIndex = make([]int32, n)
	loaded := map[uint32]int32{} // table sector -> directory entry
	tableBytes := s.gtes * 4
	var buf []byte
	for i := range s.gtIndex {
		e := le32(dir[4*i:])
		if e == 0 {
			s.gtIndex[i] = -1
			continue
		}
		if t, ok := loaded[e]; ok {
			return fmt.Errorf("grain directory entries %d and %d both point at the grain table at sector %d", t, i, e)
		}
		if uint64(e) >= sectors || int64(e)*sectorSize+tableBytes > s.fileSize {
			return fmt.Errorf("grain directory entry %d: grain table at sector %d lies outside the file's %d sectors", i, e, sectors)
		}
		if int64(len(s.tables)+int(s.gtes))*4 > maxLoadedTableBytes {
			return fmt.Errorf("grain directory: grain tables exceed %d bytes", maxLoadedTableBytes)
		}
		if buf == nil {
			buf = make([]byte, tableBytes)
		}
		if err := readFull(s.f, buf, int64(e)*sectorSize); err != nil {
			return fmt.Errorf("grain table %d at sector %d: %w", i, e, err)
		}
		t := int32(len(s.tables) / int(s.gtes))
		for j := range s.gtes {
			s.tables = append(s.tables, le32(buf[4*j:]))
		}
		loaded[e] = int32(i)
		s.gtIndex[i] = t
	}
	return s.checkEntries()
}

// checkEntries checks that every allocated grain starts inside the file.
// (Reads check the rest.) It visits each loaded table once, so its cost is
// bounded by the file's size, not by the capacity its header claims.
func (s *sparseExtent) checkEntries() error {
	need := int64(sectorSize)
	if s.markers {
		need = grainMarkerSize
	}
	for i, e := range s.tables {
		if e <= gteZero {
			continue
		}
		if int64(e)*sectorSize+need > s.fileSize {
			return fmt.Errorf("grain table %d entry %d: grain at sector %d lies outside the file's %d bytes", int64(i)/s.gtes, int64(i)%s.gtes, e, s.fileSize)
		}
	}
	return nil
}

// scanMarkers rebuilds the grain tables of a streamOptimized extent from
// the grain markers, for a stream whose footer is missing. The stream must
// end with an end-of-stream marker; a truncated stream is an error, since
// its missing grains would read as zeros.
func (s *sparseExtent) scanMarkers() error {
	n := s.h.tables()
	if n*4 > uint64(s.fileSize)+1<<20 {
		return fmt.Errorf("capacity %d sectors is too large to scan a %d-byte file", s.h.Capacity, s.fileSize)
	}
	s.gtIndex = make([]int32, n)
	for i := range s.gtIndex {
		s.gtIndex[i] = -1
	}
	s.tables = nil
	sector := max(s.h.Overhead, s.h.DescriptorOffset+s.h.DescriptorSize, 1)
	sectors := uint64(s.fileSize) / sectorSize
	buf := make([]byte, sectorSize)
	for sector < sectors {
		if err := readFull(s.f, buf, int64(sector)*sectorSize); err != nil {
			return err
		}
		m := parseMarker(buf)
		if m.size == 0 {
			switch m.typ {
			case markerEOS:
				return s.checkEntries()
			case markerGT, markerGD, markerFooter:
				if m.val > sectors-sector {
					return fmt.Errorf("marker at sector %d: %d sectors of metadata run past the end of the file", sector, m.val)
				}
				sector += 1 + m.val
				continue
			default:
				return fmt.Errorf("marker at sector %d: unknown type %d", sector, m.typ)
			}
		}
		if m.val%s.h.GrainSize != 0 || m.val >= s.h.Capacity {
			return fmt.Errorf("grain marker at sector %d: LBA %d is not a grain inside the capacity of %d sectors", sector, m.val, s.h.Capacity)
		}
		if sector > 0xffffffff {
			return fmt.Errorf("grain marker at sector %d: past what a grain table can address", sector)
		}
		g := int64(m.val / s.h.GrainSize)
		t := s.gtIndex[g/s.gtes]
		if t < 0 {
			if int64(len(s.tables)+int(s.gtes))*4 > maxLoadedTableBytes {
				return fmt.Errorf("grain tables exceed %d bytes", maxLoadedTableBytes)
			}
			t = int32(len(s.tables) / int(s.gtes))
			s.tables = append(s.tables, make([]uint32, s.gtes)...)
			s.gtIndex[g/s.gtes] = t
		}
		s.tables[int64(t)*s.gtes+g%s.gtes] = uint32(sector)
		sector += (grainMarkerSize + uint64(m.size) + sectorSize - 1) / sectorSize
	}
	return fmt.Errorf("stream ends at sector %d without an end-of-stream marker: the file is truncated", sector)
}

// entry returns the grain table entry of grain g: 0 unallocated, 1 zero,
// otherwise the grain's sector.
func (s *sparseExtent) entry(g int64) uint32 {
	t := s.gtIndex[g/s.gtes]
	if t < 0 {
		return 0
	}
	return s.tables[int64(t)*s.gtes+g%s.gtes]
}

// allocated returns the byte ranges of the extent whose grains are stored,
// coalesced, in order. Its cost is bounded by the directory and the loaded
// tables, which are bounded by the file's size.
func (s *sparseExtent) allocated() [][2]int64 {
	var out [][2]int64
	grains := int64(s.h.grains())
	for i, t := range s.gtIndex {
		if t < 0 {
			continue
		}
		table := s.tables[int64(t)*s.gtes : int64(t+1)*s.gtes]
		for j, e := range table {
			g := int64(i)*s.gtes + int64(j)
			if g >= grains {
				break
			}
			if e <= gteZero {
				continue
			}
			start, end := g*s.grain, min((g+1)*s.grain, s.capacity)
			if n := len(out); n > 0 && out[n-1][1] == start {
				out[n-1][1] = end
			} else {
				out = append(out, [2]int64{start, end})
			}
		}
	}
	return out
}

// grainPool holds grain-sized buffers for inflating.
type grainPool struct {
	size int64
	pool sync.Pool
}

func (p *grainPool) get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok && int64(len(*b)) == p.size {
		return *b
	}
	return make([]byte, p.size)
}

func (p *grainPool) put(b []byte) { p.pool.Put(&b) }

// inflaters holds zlib readers to reset rather than allocate.
var inflaters sync.Pool

// readAt reads len(p) bytes at byte offset off of the extent, which the
// caller keeps inside the capacity.
func (s *sparseExtent) readAt(p []byte, off int64, pool *grainPool) error {
	for len(p) > 0 {
		g := off / s.grain
		in := off % s.grain
		n := min(int64(len(p)), s.grain-in)
		e := s.entry(g)
		switch {
		case e <= gteZero:
			clear(p[:n])
		case !s.compressed:
			if err := readFull(s.f, p[:n], int64(e)*sectorSize+in); err != nil {
				return fmt.Errorf("grain %d at sector %d: %w", g, e, err)
			}
		default:
			buf := pool.get()
			err := s.inflate(buf, g, e)
			if err == nil {
				copy(p[:n], buf[in:])
			}
			pool.put(buf)
			if err != nil {
				return err
			}
		}
		p = p[n:]
		off += n
	}
	return nil
}

// inflate reads the compressed grain g stored at sector e into out, which is
// one grain long.
func (s *sparseExtent) inflate(out []byte, g int64, e uint32) error {
	pos := int64(e) * sectorSize
	maxCompressed := 2*s.grain + 4096
	bp := rawBufs.Get().(*[]byte)
	defer rawBufs.Put(bp)
	if need := int(grainMarkerSize + maxCompressed); cap(*bp) < need {
		*bp = make([]byte, need)
	}
	// One read fetches the marker and, usually, the whole compressed grain.
	guess := min(grainMarkerSize+s.grain+s.grain/8+sectorSize, s.fileSize-pos)
	if !s.markers {
		guess = min(maxCompressed, s.fileSize-pos)
	}
	buf := (*bp)[:guess]
	if err := readFull(s.f, buf, pos); err != nil {
		return fmt.Errorf("grain %d at sector %d: %w", g, e, err)
	}
	data := buf
	if s.markers {
		m := parseMarker(buf)
		if want := uint64(g) * s.h.GrainSize; m.val != want {
			return corruptf("grain %d at sector %d: marker LBA %d, want %d", g, e, m.val, want)
		}
		if m.size == 0 || int64(m.size) > maxCompressed || pos+grainMarkerSize+int64(m.size) > s.fileSize {
			return corruptf("grain %d at sector %d: compressed size %d is 0, larger than %d or past the end of the file", g, e, m.size, maxCompressed)
		}
		end := grainMarkerSize + int64(m.size)
		if end > guess {
			buf = (*bp)[:end]
			if err := readFull(s.f, buf[guess:], pos+guess); err != nil {
				return fmt.Errorf("grain %d at sector %d: %w", g, e, err)
			}
		}
		data = buf[grainMarkerSize:end]
	}
	if err := inflateGrain(out, data); err != nil {
		// The last grain of a disk whose size is not a multiple of the
		// grain may be stored short.
		var short shortGrainError
		if !errors.As(err, &short) || int64(short) < s.capacity-g*s.grain {
			kind := draas.ErrInvalid
			if errors.Is(err, zlib.ErrChecksum) {
				kind = draas.ErrChecksumMismatch
			}
			return fmt.Errorf("grain %d at sector %d: %w (%w)", g, e, err, kind)
		}
		clear(out[short:])
	}
	return nil
}

// rawBufs holds buffers for compressed grains.
var rawBufs = sync.Pool{New: func() any { return new([]byte) }}

// corruptf returns an error for a malformed grain, wrapping
// draas.ErrInvalid.
func corruptf(format string, args ...any) error {
	return fmt.Errorf(format+" (%w)", append(args, draas.ErrInvalid)...)
}

// shortGrainError reports a grain that inflated to fewer bytes than a grain.
type shortGrainError int

func (n shortGrainError) Error() string {
	return fmt.Sprintf("inflates to only %d bytes", int(n))
}

// inflateGrain inflates the zlib stream data into out, which it must fill
// exactly; the stream's checksum is verified.
func inflateGrain(out, data []byte) error {
	br := bytes.NewReader(data)
	var zr io.ReadCloser
	if r, ok := inflaters.Get().(io.ReadCloser); ok {
		if err := r.(zlib.Resetter).Reset(br, nil); err != nil {
			return fmt.Errorf("inflate: %w", err)
		}
		zr = r
	} else {
		r, err := zlib.NewReader(br)
		if err != nil {
			return fmt.Errorf("inflate: %w", err)
		}
		zr = r
	}
	defer inflaters.Put(zr)
	n, err := io.ReadFull(zr, out)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return shortGrainError(n)
	case err != nil:
		return fmt.Errorf("inflate: %w", err)
	}
	// Read on to the end of the stream, which verifies its checksum.
	var one [1]byte
	switch k, err := zr.Read(one[:]); {
	case k > 0:
		return fmt.Errorf("inflate: more than a grain of data")
	case err != nil && err != io.EOF:
		return fmt.Errorf("inflate: %w", err)
	}
	return nil
}

// readFull reads len(p) bytes at off, failing with a clear error when the
// file ends first.
func readFull(f *os.File, p []byte, off int64) error {
	n, err := f.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		return fmt.Errorf("%d bytes at byte %d: file ends after %d: %w", len(p), off, n, io.ErrUnexpectedEOF)
	}
	return err
}

func le32(p []byte) uint32 {
	return uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16 | uint32(p[3])<<24
}
