package vmdk

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opendraas/draas"
)

// writeImage writes p as disk.vmdk in a new directory and returns its path.
func writeImage(t *testing.T, p []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.vmdk")
	if err := os.WriteFile(path, p, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func readWhole(t *testing.T, s *Source) []byte {
	t.Helper()
	p := make([]byte, s.Size())
	if _, err := s.ReadAt(context.Background(), p, 0); err != nil {
		t.Fatalf("ReadAt: %v", err)
	}
	return p
}

// TestOpenBuiltImages reads the builder's images, with and without a
// descriptor, footer and partial last grain.
func TestOpenBuiltImages(t *testing.T) {
	data := testData(140*testGrain + 5*sectorSize) // two grain tables, last grain partial
	for _, im := range []image{
		{stream: true, data: data},
		{data: data},
		{stream: true, data: data, noFooter: true},
		{data: data, noDesc: true},
		{stream: true, data: data, noDesc: true},
	} {
		p, _, _ := im.build()
		s, err := Open(writeImage(t, p))
		if err != nil {
			t.Fatalf("%+v: %v", im, err)
		}
		if got := readWhole(t, s); !bytes.Equal(got, data) {
			t.Errorf("stream %t footer %t desc %t: byte %d differs", im.stream, !im.noFooter, !im.noDesc, firstDiffAt(got, data))
		}
		if s.BlockSize() != testGrain {
			t.Errorf("BlockSize() = %d, want the grain, %d", s.BlockSize(), testGrain)
		}
		exts, err := s.AllocatedExtents(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if want := grainExtents(data); !slices.Equal(exts, want) {
			t.Errorf("AllocatedExtents = %v, want the non-zero grains %v", exts, want)
		}
		s.Close()
		if _, err := s.ReadAt(context.Background(), make([]byte, 1), 0); !errors.Is(err, os.ErrClosed) {
			t.Errorf("ReadAt after Close: %v, want os.ErrClosed", err)
		}
	}
}

// grainExtents returns the extents of the non-zero test grains of data.
func grainExtents(data []byte) []draas.Extent {
	var out []draas.Extent
	for off := 0; off < len(data); off += testGrain {
		end := min(off+testGrain, len(data))
		if draas.IsZero(data[off:end]) {
			continue
		}
		if n := len(out); n > 0 && out[n-1].End() == int64(off) {
			out[n-1].Length += int64(end - off)
		} else {
			out = append(out, draas.Extent{Offset: int64(off), Length: int64(end - off)})
		}
	}
	return out
}

func firstDiffAt(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestOpenRejects checks that Open rejects malformed files with an error
// that wraps draas.ErrInvalid, names the file and names the field at fault.
func TestOpenRejects(t *testing.T) {
	data := testData(10 * testGrain)
	stream, streamGD, _ := image{stream: true, data: data}.build()
	sparse, sparseGD, _ := image{data: data}.build()
	set := func(src []byte, off int, b ...byte) []byte {
		p := bytes.Clone(src)
		if off < 0 {
			off += len(p)
		}
		copy(p[off:], b)
		return p
	}
	withDesc := func(src []byte, old, new string) []byte {
		p := bytes.Clone(src)
		i := bytes.Index(p, []byte(old))
		if i < 0 {
			t.Fatalf("no %q in the image", old)
		}
		copy(p[i:], new)
		return p
	}
	noFooter, _, _ := image{stream: true, data: data, noFooter: true, noEOS: true}.build()
	big, bigGD, _ := image{data: testData(200 * testGrain)}.build() // two grain tables
	for _, c := range []struct {
		name string
		p    []byte
		want string
	}{
		{"empty", nil, "neither a sparse extent"},
		{"text", []byte("hello, world\n"), "neither a sparse extent"},
		{"cowd", []byte("COWD\x01\x00\x00\x00"), "COWD"},
		{"version", set(sparse, 4, 9), "version 9"},
		{"unknown flag", set(sparse, 8, 0, 0, 0, 0x80), "unknown incompatible"},
		{"newline", set(sparse, 73, '\n', ' ', '\n', '\n'), "text mode"},
		{"compress algorithm", set(stream, 77, 7), "compressAlgorithm 7"},
		{"grain size", set(sparse, 20, 3), "grainSize 3"},
		{"gtes", set(sparse, 44, 100, 0), "numGTEsPerGT 100"},
		{"capacity", set(sparse, 12, 0, 0, 0, 0, 0, 0, 0, 0x10), "capacity"},
		{"descriptor offset", set(sparse, 28, 0, 0, 0, 0x10), "embedded descriptor"},
		{"gd past end", set(sparse, 56, 0xff, 0xff, 0, 0), "grain directory"},
		{"gt past end", set(sparse, int(sparseGD)*sectorSize, 0xff, 0xff, 0xff, 0), "grain table at sector"},
		{"grain past end", set(sparse, int(sparseGD+1)*sectorSize, 0xff, 0xff, 0xff, 0), "grain at sector"},
		{"shared table", set(big, int(bigGD)*sectorSize+4, big[int(bigGD)*sectorSize:int(bigGD)*sectorSize+4]...), "both point at"},
		{"footer capacity", set(stream, -2*sectorSize+12, 0xff), "footer: capacity"},
		{"footer gd", set(stream, -2*sectorSize+56, 0xff, 0xff, 0xff, 0x0f), "grain directory"},
		{"stream gd entry", set(stream, int(streamGD)*sectorSize, 0xff, 0xff, 0xff, 0x0f), "grain table at sector"},
		{"truncated stream", noFooter, "truncated"},
		{"createType", withDesc(sparse, `"monolithicSparse"`, `"vmfsSparse"      `), `createType "vmfsSparse"`},
		{"parentCID", withDesc(sparse, "parentCID=ffffffff", "parentCID=0000abcd"), "parentCID 0000abcd"},
		{"extent size", withDesc(sparse, "RW 80 ", "RW 81 "), "differs from the header's capacity"},
		{"geometry", withDesc(sparse, `heads = "255"`, `heads = "999"`), "ddb.geometry.heads"},
		{"bad line", withDesc(sparse, "CID=12345678", "CID 12345678"), "line 3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeImage(t, c.p)
			s, err := Open(path)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, draas.ErrInvalid) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open: %v\nwant an error wrapping draas.ErrInvalid that names %s and says %q", err, path, c.want)
			}
		})
	}
}

// TestReadCorruptGrains checks that damaged compressed grains fail the read
// with an error naming the grain, while intact grains still read.
func TestReadCorruptGrains(t *testing.T) {
	data := testData(10 * testGrain)
	stream, _, grainAt := image{stream: true, data: data}.build()
	for _, c := range []struct {
		name string
		off  int
		b    []byte
		want string
	}{
		{"deflate data", int(grainAt[3])*sectorSize + grainMarkerSize + 30, []byte{0xde, 0xad, 0xbe, 0xef}, "grain 3"},
		{"checksum", int(grainAt[3])*sectorSize + grainMarkerSize + int(le32(stream[grainAt[3]*sectorSize+8:])) - 1, []byte{0x5a}, "checksum"},
		{"marker LBA", int(grainAt[3]) * sectorSize, []byte{0x10}, "marker LBA"},
		{"compressed size", int(grainAt[3])*sectorSize + 8, []byte{0xff, 0xff, 0xff, 0x7f}, "compressed size"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := bytes.Clone(stream)
			copy(p[c.off:], c.b)
			s, err := Open(writeImage(t, p))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			buf := make([]byte, testGrain)
			_, err = s.ReadAt(ctx, buf, 3*testGrain)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ReadAt of the damaged grain: %v, want an error saying %q", err, c.want)
			}
			if !errors.Is(err, draas.ErrInvalid) && !errors.Is(err, draas.ErrChecksumMismatch) || draas.IsRetryable(err) {
				t.Fatalf("ReadAt of the damaged grain: %v, want a non-retryable error wrapping draas.ErrInvalid or draas.ErrChecksumMismatch", err)
			}
			if _, err := s.ReadAt(ctx, buf, 2*testGrain); err != nil || !bytes.Equal(buf, data[2*testGrain:3*testGrain]) {
				t.Fatalf("ReadAt of an intact grain: %v", err)
			}
		})
	}
}

// TestDescriptorFiles opens descriptor files with several extents: flat
// with offsets and zero extents, and two sparse extent files.
func TestDescriptorFiles(t *testing.T) {
	dir := t.TempDir()
	flat := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	write := func(name string, p []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, p, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	write("a-flat.vmdk", flat)
	desc := write("flat.vmdk", []byte("# Disk DescriptorFile\r\nversion=1\r\nCID=00000001\r\nparentCID=ffffffff\r\ncreateType=twoGbMaxExtentFlat\r\n\r\nRW 8 FLAT \"a-flat.vmdk\" 4\r\nRW 4 ZERO\r\nRDONLY 2 FLAT \"a-flat.vmdk\"\r\n"))
	s, err := Open(desc)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(bytes.Clone(flat[2048:6144]), make([]byte, 2048)...), flat[:1024]...)
	if got := readWhole(t, s); !bytes.Equal(got, want) {
		t.Errorf("flat extents: byte %d differs", firstDiffAt(got, want))
	}
	if info := s.Info(); info.CreateType != "twoGbMaxExtentFlat" || len(info.Files) != 3 || info.GrainSize != 0 {
		t.Errorf("Info() = %+v", info)
	}
	s.Close()

	d1, d2 := testData(4*testGrain), testData(2*testGrain+sectorSize)
	p1, _, _ := image{data: d1, noDesc: true}.build()
	p2, _, _ := image{data: d2, noDesc: true}.build()
	write("b-s001.vmdk", p1)
	write("b-s002.vmdk", p2)
	desc = write("sparse.vmdk", []byte("# Disk DescriptorFile\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentSparse\"\nRW 32 SPARSE \"b-s001.vmdk\"\nRW 17 SPARSE \"b-s002.vmdk\"\n"))
	s, err = Open(desc)
	if err != nil {
		t.Fatal(err)
	}
	if got := readWhole(t, s); !bytes.Equal(got, append(bytes.Clone(d1), d2...)) {
		t.Error("sparse extents read back different bytes")
	}
	s.Close()

	for _, c := range []struct {
		text, want string
		notFound   bool
	}{
		{"createType=\"monolithicFlat\"\nRW 8 FLAT \"missing-flat.vmdk\" 0\n", "missing-flat.vmdk", true},
		{"createType=\"monolithicFlat\"\nRW 64 FLAT \"a-flat.vmdk\" 0\n", "too short", false},
		{"createType=\"monolithicFlat\"\nRW 8 FLAT \"/etc/passwd\" 0\n", "relative", false},
		{"createType=\"monolithicFlat\"\nRW 8 FLAT \"../x\" 0\n", "relative", false},
		{"createType=\"monolithicFlat\"\nRW 8 SPARSE \"b-s001.vmdk\"\n", "does not belong", false},
		{"createType=\"monolithicFlat\"\nRW 8 VMFSSPARSE \"a-flat.vmdk\"\n", "delta disks", false},
		{"createType=\"monolithicFlat\"\n", "no extents", false},
		{"createType=\"twoGbMaxExtentSparse\"\nRW 65 SPARSE \"b-s001.vmdk\"\n", "capacity 32 sectors differs", false},
		{"createType=\"monolithicFlat\"\ncreateType=\"monolithicFlat\"\n", "set twice", false},
	} {
		path := write("bad.vmdk", []byte("# Disk DescriptorFile\n"+c.text))
		s, err := Open(path)
		if err == nil {
			s.Close()
			t.Errorf("%q: Open succeeded", c.text)
			continue
		}
		kind := draas.ErrInvalid
		if c.notFound {
			kind = draas.ErrNotFound
		}
		if !errors.Is(err, kind) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%q: Open: %v\nwant an error wrapping %v that names the file and says %q", c.text, err, kind, c.want)
		}
	}
}
