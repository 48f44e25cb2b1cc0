package s3

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/opendraas/draas"
)

// formatVersion is the version of the manifest, point and pending formats
// this package writes and the newest it reads.
const formatVersion = 1

// Chunk encodings: the first byte of a chunk object.
const (
	encRaw  byte = 0 // the block's bytes follow
	encZstd byte = 1 // one zstd frame of the block's bytes follows
)

// timeFormat is how times are written in records: RFC 3339, UTC, with
// nanoseconds when there are any.
const timeFormat = time.RFC3339Nano

// blockRef is one non-zero block of a disk: its index and the SHA-256 of
// its bytes, which names its chunk.
type blockRef struct {
	Index int64
	Sum   [32]byte
}

// blockList is a manifest's block list. It is written as a JSON array of
// [index, "sha256hex"] pairs, ascending by index.
type blockList []blockRef

func (l blockList) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+len(l)*(64+16))
	b = append(b, '[')
	for i, r := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, r.Index, 10)
		b = append(b, ',', '"')
		b = hex.AppendEncode(b, r.Sum[:])
		b = append(b, '"', ']')
	}
	return append(b, ']'), nil
}

func (l *blockList) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := expectDelim(dec, '['); err != nil {
		return err
	}
	var out blockList
	for dec.More() {
		if err := expectDelim(dec, '['); err != nil {
			return err
		}
		var idx json.Number
		var sum string
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		idx, ok := tok.(json.Number)
		if !ok {
			return fmt.Errorf("block entry %d: index is %v, not a number", len(out), tok)
		}
		n, err := idx.Int64()
		if err != nil {
			return fmt.Errorf("block entry %d: index %s: %w", len(out), idx, err)
		}
		if tok, err = dec.Token(); err != nil {
			return err
		}
		if sum, ok = tok.(string); !ok || len(sum) != 64 {
			return fmt.Errorf("block entry %d: sha256 is %v, not 64 hex digits", len(out), tok)
		}
		r := blockRef{Index: n}
		if _, err := hex.Decode(r.Sum[:], []byte(sum)); err != nil {
			return fmt.Errorf("block entry %d: sha256 %q: %w", len(out), sum, err)
		}
		if err := expectDelim(dec, ']'); err != nil {
			return err
		}
		out = append(out, r)
	}
	if err := expectDelim(dec, ']'); err != nil {
		return err
	}
	*l = out
	return nil
}

func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != d {
		return fmt.Errorf("expected %q, got %v", d, tok)
	}
	return nil
}

// manifest is one disk of one recovery point (disks/DISK.json).
type manifest struct {
	Format    int       `json:"format"`
	VM        string    `json:"vm"`
	Point     string    `json:"point"`
	Disk      string    `json:"disk"`
	Size      int64     `json:"size"`
	BlockSize int       `json:"blockSize"`
	Blocks    blockList `json:"blocks"`
	// Checksum is the hex SHA-256 of the manifest's canonical text (see
	// canonicalSum).
	Checksum string `json:"checksum"`
}

// canonicalSum returns the hex SHA-256 of the manifest's canonical text:
//
//	draas-disk-manifest 1\n
//	vm VM\npoint POINT\ndisk DISK\nsize SIZE\nblockSize BS\n
//	INDEX SHA256HEX\n   (one line per block, ascending)
func (m *manifest) canonicalSum() string {
	h := sha256.New()
	w := bufio.NewWriterSize(h, 64<<10)
	fmt.Fprintf(w, "draas-disk-manifest %d\nvm %s\npoint %s\ndisk %s\nsize %d\nblockSize %d\n",
		m.Format, m.VM, m.Point, m.Disk, m.Size, m.BlockSize)
	var line []byte
	for _, r := range m.Blocks {
		line = strconv.AppendInt(line[:0], r.Index, 10)
		line = append(line, ' ')
		line = hex.AppendEncode(line, r.Sum[:])
		line = append(line, '\n')
		w.Write(line)
	}
	w.Flush()
	return hex.EncodeToString(h.Sum(nil))
}

func (m *manifest) blocks() int64 { return (m.Size + int64(m.BlockSize) - 1) / int64(m.BlockSize) }

// blockLen returns the length of block i.
func (m *manifest) blockLen(i int64) int {
	return int(min(int64(m.BlockSize), m.Size-i*int64(m.BlockSize)))
}

// encodeManifest sets the checksum and returns the manifest's JSON.
func encodeManifest(m *manifest) ([]byte, error) {
	m.Checksum = m.canonicalSum()
	return json.Marshal(m)
}

// decodeManifest parses and checks a manifest read from the store; vm,
// point and disk are what its key says it is.
func decodeManifest(data []byte, vm, point, disk string) (*manifest, error) {
	var probe struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%w: manifest is not valid JSON: %v", draas.ErrChecksumMismatch, err)
	}
	if probe.Format != formatVersion {
		return nil, draas.Invalidf("manifest format %d is not %d, the version this reader understands; upgrade draas", probe.Format, formatVersion)
	}
	m := new(manifest)
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", draas.ErrChecksumMismatch, err)
	}
	if got := m.canonicalSum(); got != m.Checksum {
		return nil, fmt.Errorf("%w: manifest checksum is %q, its content hashes to %q", draas.ErrChecksumMismatch, m.Checksum, got)
	}
	if m.VM != vm || m.Point != point || m.Disk != disk {
		return nil, fmt.Errorf("%w: manifest names vm %q point %q disk %q but is stored as vm %q point %q disk %q",
			draas.ErrChecksumMismatch, m.VM, m.Point, m.Disk, vm, point, disk)
	}
	if m.Size < 0 || m.BlockSize <= 0 || m.BlockSize > 64<<20 {
		return nil, fmt.Errorf("%w: manifest size %d, block size %d are impossible", draas.ErrChecksumMismatch, m.Size, m.BlockSize)
	}
	n := m.blocks()
	for i, r := range m.Blocks {
		if r.Index < 0 || r.Index >= n || i > 0 && r.Index <= m.Blocks[i-1].Index {
			return nil, fmt.Errorf("%w: manifest block entry %d (index %d) is out of order or beyond the disk's %d blocks",
				draas.ErrChecksumMismatch, i, r.Index, n)
		}
	}
	return m, nil
}

// pointDisk is a disk as a point record lists it.
type pointDisk struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	// Manifest is the checksum of the disk's manifest, binding the manifest
	// to the commit.
	Manifest string `json:"manifestChecksum"`
	// ChangeID is the hypervisor's change-tracking ID of the disk at this
	// point (draas.Disk.ChangeID), if the backup had one.
	ChangeID string `json:"changeId,omitempty"`
}

// pointRecord is the commit record of a recovery point (point.json).
type pointRecord struct {
	Format   int         `json:"format"`
	VM       string      `json:"vm"`
	ID       string      `json:"id"`
	Time     string      `json:"time"`
	Base     string      `json:"base,omitempty"`
	Disks    []pointDisk `json:"disks"`
	Checksum string      `json:"checksum"`
}

// canonicalSum returns the hex SHA-256 of the record's canonical text:
//
//	draas-recovery-point 1\nvm VM\nid ID\ntime TIME\nbase BASE\n
//	disk NAME SIZE MANIFESTCHECKSUM\n   (one line per disk, in record order)
func (p *pointRecord) canonicalSum() string {
	h := sha256.New()
	fmt.Fprintf(h, "draas-recovery-point %d\nvm %s\nid %s\ntime %s\nbase %s\n", p.Format, p.VM, p.ID, p.Time, p.Base)
	for _, d := range p.Disks {
		fmt.Fprintf(h, "disk %s %d %s\n", d.Name, d.Size, d.Manifest)
		if d.ChangeID != "" {
			fmt.Fprintf(h, "change %s %q\n", d.Name, d.ChangeID)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (p *pointRecord) recoveryPoint() (draas.RecoveryPoint, error) {
	t, err := time.Parse(timeFormat, p.Time)
	if err != nil {
		return draas.RecoveryPoint{}, fmt.Errorf("%w: point time %q: %v", draas.ErrChecksumMismatch, p.Time, err)
	}
	rp := draas.RecoveryPoint{VM: p.VM, ID: p.ID, Time: t, Disks: make([]draas.Disk, len(p.Disks))}
	for i, d := range p.Disks {
		rp.Disks[i] = draas.Disk{Name: d.Name, Size: d.Size, ChangeID: d.ChangeID}
	}
	return rp, nil
}

func (p *pointRecord) disk(name string) (pointDisk, bool) {
	i := slices.IndexFunc(p.Disks, func(d pointDisk) bool { return d.Name == name })
	if i < 0 {
		return pointDisk{}, false
	}
	return p.Disks[i], true
}

func encodePoint(p *pointRecord) ([]byte, error) {
	p.Checksum = p.canonicalSum()
	return json.MarshalIndent(p, "", "  ")
}

func decodePoint(data []byte, vm, id string) (*pointRecord, error) {
	p := new(pointRecord)
	if err := json.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("%w: point record is not valid JSON: %v", draas.ErrChecksumMismatch, err)
	}
	if p.Format != formatVersion {
		return nil, draas.Invalidf("point record format %d is not %d, the version this reader understands; upgrade draas", p.Format, formatVersion)
	}
	if got := p.canonicalSum(); got != p.Checksum {
		return nil, fmt.Errorf("%w: point record checksum is %q, its content hashes to %q", draas.ErrChecksumMismatch, p.Checksum, got)
	}
	if p.VM != vm || p.ID != id {
		return nil, fmt.Errorf("%w: point record names vm %q point %q but is stored as vm %q point %q",
			draas.ErrChecksumMismatch, p.VM, p.ID, vm, id)
	}
	if _, err := p.recoveryPoint(); err != nil {
		return nil, err
	}
	return p, nil
}

// pendingRecord marks a point being written (pending.json). It names the
// base point whose chunks the writer treats as present, so that GC and
// Prune keep them while the marker is younger than the grace period.
type pendingRecord struct {
	Format int          `json:"format"`
	VM     string       `json:"vm"`
	ID     string       `json:"id"`
	Time   string       `json:"time"`
	Base   string       `json:"base,omitempty"`
	Disks  []draas.Disk `json:"disks"`
}

// ---- chunks ---------------------------------------------------------------

// encodeChunk returns the chunk object for data in buf's storage: the
// encoding byte and then the zstd frame, or the raw bytes when compression
// is off or does not make the chunk smaller.
func (s *Store) encodeChunk(data, buf []byte) []byte {
	if s.enc != nil {
		out := s.enc.EncodeAll(data, append(buf[:0], encZstd))
		if len(out) < 1+len(data) {
			return out
		}
		buf = out
	}
	return append(append(buf[:0], encRaw), data...)
}

// errChunkEncoding is the cause when a chunk object cannot be decoded.
var errChunkEncoding = errors.New("chunk does not decode")

// decodeChunk decodes a chunk object into dst, which must have capacity
// for n bytes (the block's length), and returns dst[:n].
func (s *Store) decodeChunk(obj, dst []byte, n int) ([]byte, error) {
	if len(obj) == 0 {
		return nil, fmt.Errorf("%w: object is empty", errChunkEncoding)
	}
	switch obj[0] {
	case encRaw:
		if len(obj)-1 != n {
			return nil, fmt.Errorf("%w: %d raw bytes, the block has %d", errChunkEncoding, len(obj)-1, n)
		}
		return append(dst[:0], obj[1:]...), nil
	case encZstd:
		out, err := s.dec.DecodeAll(obj[1:], dst[:0:n])
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", errChunkEncoding, err)
		}
		if len(out) != n {
			return nil, fmt.Errorf("%w: %d bytes decoded, the block has %d", errChunkEncoding, len(out), n)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w: unknown encoding byte 0x%02x (a newer format, or damage)", errChunkEncoding, obj[0])
	}
}
