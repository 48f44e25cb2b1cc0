package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go"

	"github.com/opendraas/draas"
	s3 "github.com/opendraas/draas/aws/s3"
)

// diskSize is not a multiple of the block size: 13 blocks, the last short.
const diskSize = 12*s3.BlockSize + 12345

func TestWriteReadBack(t *testing.T) {
	e := newEnv(t)
	st := e.store("site-a/backups", s3.Options{})
	ctx := t.Context()
	content := makeDisk(1, diskSize)
	t0 := e.clock.Now()
	w := backup(t, st, "web-1", t0, map[string][]byte{"disk-0": content})

	// Zero blocks (every 4th, index%4 == 2) produce no chunk; the others one
	// each.
	var nonZero int
	for i := range nblocks(diskSize) {
		b := block(content, i)
		key := chunkKey("site-a/backups", b.Checksum)
		isZero := !slices.ContainsFunc(b.Data, func(c byte) bool { return c != 0 })
		exists := slices.Contains(e.keys(t, key), key)
		if isZero == exists {
			t.Errorf("block %d: zero %t, chunk exists %t", i, isZero, exists)
		}
		if !isZero {
			nonZero++
		}
	}
	if got := len(e.keys(t, "site-a/backups/chunks/")); got != nonZero {
		t.Errorf("%d chunk objects, want %d", got, nonZero)
	}
	if got := e.count.get("PUT chunk"); got != nonZero {
		t.Errorf("%d chunk PUTs, want %d", got, nonZero)
	}

	src, err := source(st.OpenDisk(ctx, "web-1", w.ID(), "disk-0"))
	if err != nil {
		t.Fatal(err)
	}
	if src.Size() != diskSize || src.BlockSize() != s3.BlockSize {
		t.Fatalf("Size %d BlockSize %d", src.Size(), src.BlockSize())
	}
	if got := readAll(t, src); !bytes.Equal(got, content) {
		t.Fatal("read back differs from what was written")
	}

	// Unaligned reads across blocks, and the end of the disk.
	for _, r := range []struct{ off, n int64 }{{100, 3 * s3.BlockSize}, {s3.BlockSize - 7, 14}, {diskSize - 100, 100}, {5, 1}} {
		p := make([]byte, r.n)
		n, err := src.ReadAt(ctx, p, r.off)
		if err != nil && !(err == io.EOF && r.off+r.n == diskSize) || int64(n) != r.n {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", r.off, r.n, n, err)
		}
		if !bytes.Equal(p, content[r.off:r.off+r.n]) {
			t.Fatalf("ReadAt(%d, %d) returned other bytes", r.off, r.n)
		}
	}
	p := make([]byte, 200)
	if n, err := src.ReadAt(ctx, p, diskSize-50); n != 50 || err != io.EOF {
		t.Fatalf("read across the end: %d, %v; want 50, io.EOF", n, err)
	}

	// Extents: the non-zero blocks, coalesced.
	exts, err := src.AllocatedExtents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var covered int64
	for _, x := range exts {
		covered += x.Length
	}
	for i := range nblocks(diskSize) {
		inExt := slices.ContainsFunc(exts, func(x draas.Extent) bool { return x.Offset <= i*s3.BlockSize && i*s3.BlockSize < x.End() })
		if zero := i%4 == 2; zero == inExt {
			t.Errorf("block %d: zero %t, in extents %t", i, zero, inExt)
		}
	}

	// ReadBlock returns the recorded sum, which is the data's SHA-256.
	buf := make([]byte, s3.BlockSize)
	for _, i := range []int64{0, 2, 12} {
		b := block(content, i)
		sum, ok, err := src.ReadBlock(ctx, buf[:len(b.Data)], b.Offset)
		if err != nil {
			t.Fatal(err)
		}
		if ok != (i != 2) || ok && sum != b.Checksum || !bytes.Equal(buf[:len(b.Data)], b.Data) {
			t.Errorf("ReadBlock(%d): ok %t sum match %t", i, ok, sum == b.Checksum)
		}
	}

	// The point is listed.
	pts, err := st.Points(ctx, "web-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 1 || pts[0].ID != w.ID() || !pts[0].Time.Equal(t0) || len(pts[0].Disks) != 1 || pts[0].Disks[0] != (draas.Disk{Name: "disk-0", Size: diskSize}) {
		t.Fatalf("Points = %+v", pts)
	}
	if vms, err := st.VMs(ctx); err != nil || !slices.Equal(vms, []string{"web-1"}) {
		t.Fatalf("VMs = %v, %v", vms, err)
	}
	// No pending marker is left.
	for _, k := range e.keys(t, "site-a/backups/vms/") {
		if strings.HasSuffix(k, "pending.json") {
			t.Errorf("pending marker left: %s", k)
		}
	}
}

func TestIncrementalUploadsOnlyChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	st := e.store("", s3.Options{Compression: s3.CompressionFastest})
	ctx := t.Context()
	const size = 100*s3.BlockSize + 4096 // 101 blocks
	v1 := makeDisk(2, size)
	p1 := backup(t, st, "db", e.clock.Now(), map[string][]byte{"disk-0": v1})

	// Change 1 block in 100 (1 %), and zero another data block.
	v2 := bytes.Clone(v1)
	changed := []int64{57}
	for _, i := range changed {
		v2[i*s3.BlockSize+17] ^= 0xff
	}
	holed := int64(8) // 8%4 == 0: random data, now zeros
	clear(v2[holed*s3.BlockSize : (holed+1)*s3.BlockSize])

	e.clock.Advance(time.Hour)
	e.count.reset()
	p2 := backup(t, st, "db", e.clock.Now(), map[string][]byte{"disk-0": v2})
	if p2.Base() != p1.ID() {
		t.Errorf("Base() = %q, want %q", p2.Base(), p1.ID())
	}
	if got := e.count.get("PUT chunk"); got != len(changed) {
		t.Errorf("incremental backup made %d chunk PUTs, want %d", got, len(changed))
	}
	if got := e.count.get("HEAD chunk"); got != len(changed) {
		t.Errorf("incremental backup made %d chunk HEADs, want %d", got, len(changed))
	}

	src, err := source(st.OpenDisk(ctx, "db", p2.ID(), "disk-0"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, src), v2) {
		t.Fatal("second point reads back wrong")
	}
	exts, err := draas.ChangedExtents(ctx, src, p1.ID())
	if err != nil {
		t.Fatal(err)
	}
	want := []draas.Extent{
		{Offset: 8 * s3.BlockSize, Length: s3.BlockSize},
		{Offset: 57 * s3.BlockSize, Length: s3.BlockSize},
	}
	if !slices.Equal(exts, want) {
		t.Errorf("ChangedExtents = %v, want %v", exts, want)
	}
	// And the other way round, and against itself.
	src1, err := source(st.OpenDisk(ctx, "db", p1.ID(), "disk-0"))
	if err != nil {
		t.Fatal(err)
	}
	if exts, err := src1.ChangedExtents(ctx, p2.ID()); err != nil || !slices.Equal(exts, want) {
		t.Errorf("ChangedExtents backwards = %v, %v", exts, err)
	}
	if exts, err := src.ChangedExtents(ctx, p2.ID()); err != nil || len(exts) != 0 {
		t.Errorf("ChangedExtents against itself = %v, %v", exts, err)
	}
	if _, err := src.ChangedExtents(ctx, "20000101T000000Z-00000000"); !errors.Is(err, draas.ErrNotFound) {
		t.Errorf("ChangedExtents of an unknown base: %v, want ErrNotFound", err)
	}

	if l, err := st.Latest(ctx, "db"); err != nil || l.ID != p2.ID() {
		t.Errorf("Latest = %v, %v; want %s", l.ID, err, p2.ID())
	}
	pts, err := st.Points(ctx, "db")
	if err != nil || len(pts) != 2 || pts[0].ID != p1.ID() || pts[1].ID != p2.ID() {
		t.Errorf("Points = %v, %v", pts, err)
	}
}

func TestMultiDiskPointInvisibleUntilCommit(t *testing.T) {
	e := newEnv(t)
	st := e.store("p", s3.Options{})
	ctx := t.Context()
	a, b := makeDisk(3, 3*s3.BlockSize), makeDisk(4, 2*s3.BlockSize+1)
	w, err := pointWriter(st.BeginPoint(ctx, "app", []draas.Disk{{Name: "os", Size: int64(len(a))}, {Name: "data", Size: int64(len(b))}}, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	invisible := func(when string) {
		t.Helper()
		if pts, err := st.Points(ctx, "app"); err != nil || len(pts) != 0 {
			t.Errorf("%s: Points = %v, %v; want none", when, pts, err)
		}
		if _, err := st.Latest(ctx, "app"); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("%s: Latest: %v, want ErrNotFound", when, err)
		}
		if _, err := st.OpenDisk(ctx, "app", w.ID(), "os"); !errors.Is(err, draas.ErrNotFound) {
			t.Errorf("%s: OpenDisk: %v, want ErrNotFound", when, err)
		}
		if vms, err := st.VMs(ctx); err != nil || len(vms) != 0 {
			t.Errorf("%s: VMs = %v, %v; want none", when, vms, err)
		}
	}
	sa, err := w.Disk("os")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeBlocks(ctx, sa, a, nil); err != nil {
		t.Fatal(err)
	}
	if err := sa.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	invisible("one disk committed")
	if err := w.Commit(ctx); !errors.Is(err, draas.ErrInvalid) || !strings.Contains(err.Error(), "data") {
		t.Errorf("Commit with a disk missing: %v, want ErrInvalid naming the disk", err)
	}
	if _, err := w.Disk("os"); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("second Disk(os): %v, want ErrConflict", err)
	}
	if _, err := w.Disk("swap"); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("Disk(swap): %v, want ErrInvalid", err)
	}
	sb, err := w.Disk("data")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeBlocks(ctx, sb, b, nil); err != nil {
		t.Fatal(err)
	}
	if err := sb.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	invisible("both disks committed")
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	pts, err := st.Points(ctx, "app")
	if err != nil || len(pts) != 1 || len(pts[0].Disks) != 2 {
		t.Fatalf("Points = %v, %v", pts, err)
	}
	for name, want := range map[string][]byte{"os": a, "data": b} {
		src, err := st.OpenDisk(ctx, "app", w.ID(), name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, src), want) {
			t.Errorf("disk %s reads back wrong", name)
		}
	}
	if err := w.Commit(ctx); !errors.Is(err, draas.ErrClosed) {
		t.Errorf("second Commit: %v, want ErrClosed", err)
	}
	if err := w.Abort(ctx); !errors.Is(err, draas.ErrClosed) {
		t.Errorf("Abort after Commit: %v, want ErrClosed", err)
	}
	if err := sa.WriteBlock(ctx, block(a, 0)); !errors.Is(err, draas.ErrClosed) {
		t.Errorf("WriteBlock after point Commit: %v, want ErrClosed", err)
	}
}

func TestAbortedPointInvisible(t *testing.T) {
	e := newEnv(t)
	st := e.store("", s3.Options{})
	ctx := t.Context()
	content := makeDisk(5, 4*s3.BlockSize)
	w, err := pointWriter(st.BeginPoint(ctx, "vm1", []draas.Disk{{Name: "d0", Size: int64(len(content))}, {Name: "d1", Size: 100}}, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	sink, err := w.Disk("d0")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeBlocks(ctx, sink, content, nil); err != nil {
		t.Fatal(err)
	}
	if err := sink.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if pts, err := st.Points(ctx, "vm1"); err != nil || len(pts) != 0 {
		t.Errorf("Points after Abort = %v, %v", pts, err)
	}
	if _, err := st.OpenDisk(ctx, "vm1", w.ID(), "d0"); !errors.Is(err, draas.ErrNotFound) {
		t.Errorf("OpenDisk after Abort: %v, want ErrNotFound", err)
	}
	if keys := e.keys(t, "vms/"); len(keys) != 0 {
		t.Errorf("objects left after Abort: %v", keys)
	}
	if len(e.keys(t, "chunks/")) == 0 {
		t.Error("Abort deleted chunks; they are GC's to delete")
	}
	if err := w.Commit(ctx); !errors.Is(err, draas.ErrClosed) {
		t.Errorf("Commit after Abort: %v, want ErrClosed", err)
	}
	if err := w.Abort(ctx); err != nil {
		t.Errorf("second Abort: %v", err)
	}

	// A killed backup (neither committed nor aborted) is invisible too, and
	// the next backup reuses its chunks.
	w2, err := pointWriter(st.BeginPoint(ctx, "vm1", []draas.Disk{{Name: "d0", Size: int64(len(content))}}, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := w2.Disk("d0")
	if err := writeBlocks(ctx, s2, content, nil); err != nil {
		t.Fatal(err)
	}
	if pts, _ := st.Points(ctx, "vm1"); len(pts) != 0 {
		t.Errorf("a killed backup is listed: %v", pts)
	}
}

func TestResumeAfterKill(t *testing.T) {
	e := newEnv(t)
	st := e.store("", s3.Options{})
	ctx := t.Context()
	a, b := makeDisk(6, 6*s3.BlockSize+10), makeDisk(7, 2*s3.BlockSize)
	w, err := pointWriter(st.BeginPoint(ctx, "vm", []draas.Disk{{Name: "a", Size: int64(len(a))}, {Name: "b", Size: int64(len(b))}}, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	sb, _ := w.Disk("b")
	if err := writeBlocks(ctx, sb, b, nil); err != nil {
		t.Fatal(err)
	}
	if err := sb.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	sa, _ := w.Disk("a")
	if err := writeBlocks(ctx, sa, a, []int64{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	state, err := sa.ResumeState()
	if err != nil {
		t.Fatal(err)
	}
	// The process dies here. A new one resumes.
	vm, id, err := s3.ResumeStatePoint(state)
	if err != nil || vm != "vm" || id != w.ID() {
		t.Fatalf("ResumeStatePoint = %s, %s, %v", vm, id, err)
	}
	st2 := e.store("", s3.Options{})
	e.count.reset()
	w2, err := st2.ResumePoint(ctx, vm, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := w2.CommittedDisks(); !slices.Equal(got, []string{"b"}) {
		t.Errorf("CommittedDisks = %v", got)
	}
	sa2, err := w2.ResumeDisk(state)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeBlocks(ctx, sa2, a, []int64{3, 4, 5, 6}); err != nil {
		t.Fatal(err)
	}
	if err := sa2.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w2.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{"a": a, "b": b} {
		src, err := st2.OpenDisk(ctx, "vm", id, name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, src), want) {
			t.Errorf("disk %s reads back wrong after resume", name)
		}
	}
	if _, err := st2.ResumePoint(ctx, vm, id); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("ResumePoint of a committed point: %v, want ErrConflict", err)
	}
	if _, err := st2.ResumePoint(ctx, vm, "20000101T000000Z-00000000"); !errors.Is(err, draas.ErrNotFound) {
		t.Errorf("ResumePoint of an unknown point: %v, want ErrNotFound", err)
	}
	// A point begun too long ago is not resumed.
	w3, err := pointWriter(st2.BeginPoint(ctx, "vm", []draas.Disk{{Name: "a", Size: 10}}, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(13 * time.Hour)
	if _, err := st2.ResumePoint(ctx, "vm", w3.ID()); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("ResumePoint after 13h: %v, want ErrConflict", err)
	}
}

func TestCorruptChunk(t *testing.T) {
	e := newEnv(t)
	st := e.store("pfx", s3.Options{})
	ctx := t.Context()
	content := makeDisk(8, 4*s3.BlockSize)
	w := backup(t, st, "web-7", time.Time{}, map[string][]byte{"disk-9": content})
	src, err := source(st.OpenDisk(ctx, "web-7", w.ID(), "disk-9"))
	if err != nil {
		t.Fatal(err)
	}
	wantNames := func(err error, block string) {
		t.Helper()
		for _, s := range []string{"web-7", w.ID(), "disk-9", "block " + block} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not name %q", err, s)
			}
		}
	}

	// Block 3 (compressible text): replace its chunk with another valid
	// chunk's bytes, so that it decodes fine but hashes wrong.
	b3, b0 := block(content, 3), block(content, 0)
	e.putRaw(t, chunkKey("pfx", b3.Checksum), e.object(t, chunkKey("pfx", b0.Checksum)))
	p := make([]byte, len(content))
	_, err = src.ReadAt(ctx, p, 0)
	if !errors.Is(err, draas.ErrChecksumMismatch) {
		t.Fatalf("ReadAt of a corrupt chunk: %v, want ErrChecksumMismatch", err)
	}
	wantNames(err, "3")
	var oe *draas.OpError
	if !errors.As(err, &oe) {
		t.Errorf("error is no *draas.OpError: %T", err)
	}
	if draas.IsRetryable(err) {
		t.Error("a checksum mismatch is retryable")
	}
	_, _, err = src.ReadBlock(ctx, make([]byte, s3.BlockSize), 3*s3.BlockSize)
	if !errors.Is(err, draas.ErrChecksumMismatch) {
		t.Errorf("ReadBlock of a corrupt chunk: %v", err)
	}

	// Block 0 (random, stored raw): flip a byte.
	obj := e.object(t, chunkKey("pfx", b0.Checksum))
	obj[len(obj)/2] ^= 1
	e.putRaw(t, chunkKey("pfx", b0.Checksum), obj)
	_, err = src.ReadAt(ctx, p[:10], 20)
	if !errors.Is(err, draas.ErrChecksumMismatch) {
		t.Fatalf("ReadAt of a flipped chunk: %v, want ErrChecksumMismatch", err)
	}
	wantNames(err, "0")

	// Block 1: a truncated zstd frame or raw body.
	b1 := block(content, 1)
	obj = e.object(t, chunkKey("pfx", b1.Checksum))
	e.putRaw(t, chunkKey("pfx", b1.Checksum), obj[:len(obj)/2])
	if _, err = src.ReadAt(ctx, p[:10], s3.BlockSize); !errors.Is(err, draas.ErrChecksumMismatch) {
		t.Fatalf("ReadAt of a truncated chunk: %v, want ErrChecksumMismatch", err)
	}

	// A missing chunk is ErrNotFound, named the same way, and reaches the
	// SDK's error.
	e.deleteRaw(t, chunkKey("pfx", b1.Checksum))
	_, err = src.ReadAt(ctx, p[:10], s3.BlockSize)
	if !errors.Is(err, draas.ErrNotFound) {
		t.Fatalf("ReadAt of a missing chunk: %v, want ErrNotFound", err)
	}
	wantNames(err, "1")
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Errorf("errors.As does not reach the SDK's smithy.APIError: %v", err)
	}

	// A damaged manifest fails OpenDisk.
	mk := "pfx/vms/web-7/points/" + w.ID() + "/disks/disk-9.json"
	m := e.object(t, mk)
	e.putRaw(t, mk, bytes.Replace(m, []byte(`"size":`), []byte(`"size":1`), 1))
	if _, err := st.OpenDisk(ctx, "web-7", w.ID(), "disk-9"); !errors.Is(err, draas.ErrChecksumMismatch) {
		t.Errorf("OpenDisk of a damaged manifest: %v, want ErrChecksumMismatch", err)
	}
}

func TestSinkChecksAndNames(t *testing.T) {
	e := newEnv(t)
	st := e.store("", s3.Options{})
	ctx := t.Context()
	w, err := pointWriter(st.BeginPoint(ctx, "vm", []draas.Disk{{Name: "d", Size: 3 * s3.BlockSize}}, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort(ctx)
	sink, _ := w.Disk("d")
	b := block(makeDisk(9, 3*s3.BlockSize), 0)
	b.Checksum[0] ^= 1
	if err := sink.WriteBlock(ctx, b); !errors.Is(err, draas.ErrChecksumMismatch) || !strings.Contains(err.Error(), "block 0") {
		t.Errorf("WriteBlock with a wrong checksum: %v, want ErrChecksumMismatch naming the block", err)
	}
	if e.count.get("PUT chunk") != 0 {
		t.Error("a block with a wrong checksum was uploaded")
	}

	bad := []struct {
		field, vm, disk string
	}{
		{"vm", "a/b", "d"},
		{"vm", "", "d"},
		{"vm", "..", "d"},
		{"vm", "web 1", "d"},
		{"vm", strings.Repeat("x", 129), "d"},
		{"disk", "vm", "Hard disk 1"},
		{"disk", "vm", "d/../../x"},
		{"disk", "vm", ".hidden"},
	}
	for _, c := range bad {
		_, err := pointWriter(st.BeginPoint(ctx, c.vm, []draas.Disk{{Name: c.disk, Size: 1}}, time.Time{}))
		if !errors.Is(err, draas.ErrInvalid) || !strings.Contains(err.Error(), c.field+" name") || !strings.Contains(err.Error(), "letters, digits") {
			t.Errorf("BeginPoint(%q, %q): %v; want ErrInvalid naming the %s and the rule", c.vm, c.disk, err, c.field)
		}
	}
	if _, err := pointWriter(st.BeginPoint(ctx, "web 1", []draas.Disk{{Name: "d", Size: 1}}, time.Time{})); err == nil || !strings.Contains(err.Error(), `"web-1"`) {
		t.Errorf("no suggestion in %v", err)
	}
	for _, c := range []struct {
		name  string
		disks []draas.Disk
	}{
		{"no disks", nil},
		{"duplicate", []draas.Disk{{Name: "d", Size: 1}, {Name: "d", Size: 1}}},
		{"zero size", []draas.Disk{{Name: "d", Size: 0}}},
	} {
		if _, err := pointWriter(st.BeginPoint(ctx, "vm", c.disks, time.Time{})); !errors.Is(err, draas.ErrInvalid) {
			t.Errorf("BeginPoint with %s: %v, want ErrInvalid", c.name, err)
		}
	}
	if _, err := st.OpenDisk(ctx, "vm", "../x", "d"); !errors.Is(err, draas.ErrInvalid) || !strings.Contains(err.Error(), "point name") {
		t.Errorf("OpenDisk with a bad point: %v", err)
	}
	if _, err := st.Points(ctx, "a/b"); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("Points(a/b): %v", err)
	}
	if _, err := st.Prune(ctx, "vm", 0); !errors.Is(err, draas.ErrInvalid) || !strings.Contains(err.Error(), "keep") {
		t.Errorf("Prune keep 0: %v", err)
	}

	for _, c := range []struct {
		name           string
		bucket, prefix string
		opts           s3.Options
		want           string
	}{
		{"empty bucket", "", "", s3.Options{}, "bucket"},
		{"dotdot prefix", "b", "a/../b", s3.Options{}, "prefix"},
		{"kms key without kms", "b", "", s3.Options{KMSKeyID: "k"}, "KMSKeyID"},
	} {
		bad := s3.New(e.client, c.bucket, c.prefix, c.opts)
		if _, err := bad.VMs(ctx); !errors.Is(err, draas.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalid naming %s", c.name, err, c.want)
		}
	}
}

func TestPruneAndGC(t *testing.T) {
	e := newEnv(t)
	st := e.store("", s3.Options{})
	ctx := t.Context()
	const size = 8 * s3.BlockSize
	// Three points; each changes block 0 and block 4 is shared by all.
	var ids []string
	var versions [][]byte
	v := makeDisk(10, size)
	for k := range 3 {
		v = bytes.Clone(v)
		v[7] = byte(100 + k)
		versions = append(versions, v)
		ids = append(ids, backup(t, st, "vm", e.clock.Now(), map[string][]byte{"d": v}).ID())
		e.clock.Advance(time.Hour)
	}
	allChunks := e.keys(t, "chunks/")

	// An unreferenced old chunk (from a backup killed long ago), a chunk of
	// a backup in progress, and a stale uncommitted manifest.
	junk := bytes.Repeat([]byte("junk"), 1000)
	e.putRaw(t, chunkKey("", sha256.Sum256(junk)), append([]byte{0}, junk...))
	staleManifest := "vms/vm/points/20200101T000000Z-deadbeef/disks/d.json"
	e.putRaw(t, staleManifest, []byte(`{"format":1}`))
	e.clock.Advance(25 * time.Hour)
	inflight, err := pointWriter(st.BeginPoint(ctx, "vm", []draas.Disk{{Name: "d", Size: size}}, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	fresh := makeDisk(11, s3.BlockSize)
	isink, _ := inflight.Disk("d")
	if err := isink.WriteBlock(ctx, block(fresh, 0)); err != nil {
		t.Fatal(err)
	}

	ps, err := st.Prune(ctx, "vm", 2)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Kept != 2 || !slices.Equal(ps.Deleted, ids[:1]) || ps.ManifestsDeleted != 1 {
		t.Errorf("Prune = %+v", ps)
	}
	pts, _ := st.Points(ctx, "vm")
	if len(pts) != 2 || pts[0].ID != ids[1] || pts[1].ID != ids[2] {
		t.Errorf("Points after Prune = %v", pts)
	}

	// Dry run first: nothing is deleted.
	before := e.keys(t, "")
	gs, err := st.GC(ctx, s3.GCOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if gs.Deleted != 2 || gs.Stale != 1 {
		t.Errorf("dry run: %+v, want 2 chunks (point 1's block 0, junk) and 1 stale manifest", gs)
	}
	if !slices.Equal(before, e.keys(t, "")) {
		t.Error("dry run deleted objects")
	}

	gs, err = st.GC(ctx, s3.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("GC: %+v", gs)
	gone := []string{chunkKey("", block(versions[0], 0).Checksum), chunkKey("", sha256.Sum256(junk)), staleManifest}
	for _, k := range gone {
		if slices.Contains(e.keys(t, k), k) {
			t.Errorf("GC left %s", k)
		}
	}
	if gs.Deleted != 2 || gs.Stale != 1 || gs.Young != 1 {
		t.Errorf("GC = %+v, want 2 deleted, 1 stale, 1 young", gs)
	}
	// Every chunk of the live points remains, including those shared with
	// the pruned point, and the in-flight backup's chunk.
	left := e.keys(t, "chunks/")
	for _, k := range allChunks {
		if k != gone[0] && !slices.Contains(left, k) {
			t.Errorf("GC deleted %s, which a live point references", k)
		}
	}
	if k := chunkKey("", block(fresh, 0).Checksum); !slices.Contains(left, k) {
		t.Error("GC deleted the chunk of a backup in progress")
	}
	for i, id := range ids[1:] {
		src, err := st.OpenDisk(ctx, "vm", id, "d")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, src), versions[i+1]) {
			t.Errorf("point %s reads back wrong after GC", id)
		}
	}
	if err := inflight.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	// A second GC finds nothing more to delete but the aborted chunk once
	// it is old.
	e.clock.Advance(25 * time.Hour)
	gs, err = st.GC(ctx, s3.GCOptions{})
	if err != nil || gs.Deleted != 1 {
		t.Errorf("second GC = %+v, %v; want the aborted backup's chunk deleted", gs, err)
	}
}

func TestGCKeepsBaseOfRunningBackup(t *testing.T) {
	// A backup that deduplicates against point P keeps P's chunks alive
	// even when P is pruned (by a concurrent backup committing and a prune
	// with keep 1) and GC runs before the backup commits.
	e := newEnv(t)
	st := e.store("", s3.Options{})
	ctx := t.Context()
	const size = 4 * s3.BlockSize
	v1 := makeDisk(12, size)
	p1 := backup(t, st, "vm", e.clock.Now(), map[string][]byte{"d": v1})
	e.clock.Advance(48 * time.Hour)

	slow, err := pointWriter(st.BeginPoint(ctx, "vm", []draas.Disk{{Name: "d", Size: size}}, time.Time{}))
	if err != nil {
		t.Fatal(err)
	}
	if slow.Base() != p1.ID() {
		t.Fatalf("Base = %q", slow.Base())
	}
	v2 := makeDisk(13, size) // entirely different content
	e.clock.Advance(time.Second)
	backup(t, st, "vm", e.clock.Now(), map[string][]byte{"d": v2})
	ps, err := st.Prune(ctx, "vm", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ps.Deleted, []string{p1.ID()}) || ps.ManifestsLeft != 1 {
		t.Errorf("Prune = %+v; want p1's record deleted and its manifest left", ps)
	}
	e.clock.Advance(25 * time.Hour) // v2's chunks are old now too
	if _, err := st.GC(ctx, s3.GCOptions{Grace: 30 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	// The slow backup writes v1 again: nothing to upload, and all of it
	// must still be there.
	e.count.reset()
	sink, _ := slow.Disk("d")
	if err := writeBlocks(ctx, sink, v1, nil); err != nil {
		t.Fatal(err)
	}
	if n := e.count.get("PUT chunk") + e.count.get("HEAD chunk"); n != 0 {
		t.Errorf("%d chunk requests for data the base holds", n)
	}
	if err := sink.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	src, err := st.OpenDisk(ctx, "vm", slow.ID(), "d")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, src), v1) {
		t.Error("the slow backup reads back wrong: GC deleted its base's chunks")
	}
}

func TestReusedOldChunkIsRenewed(t *testing.T) {
	// A chunk found with HEAD (not in the base) that is older than half the
	// grace is uploaded again, so that GC cannot delete it under a backup.
	e := newEnv(t)
	st := e.store("", s3.Options{})
	ctx := t.Context()
	content := makeDisk(14, s3.BlockSize)
	w, _ := pointWriter(st.BeginPoint(ctx, "vm", []draas.Disk{{Name: "d", Size: s3.BlockSize}}, time.Time{}))
	sink, _ := w.Disk("d")
	if err := writeBlocks(ctx, sink, content, nil); err != nil {
		t.Fatal(err)
	}
	_ = w.Abort(ctx)
	key := chunkKey("", block(content, 0).Checksum)

	for _, c := range []struct {
		advance time.Duration
		puts    int
	}{{time.Hour, 0}, {13 * time.Hour, 1}} {
		e.clock.Advance(c.advance)
		e.count.reset()
		w, _ := pointWriter(st.BeginPoint(ctx, "vm", []draas.Disk{{Name: "d", Size: s3.BlockSize}}, time.Time{}))
		sink, _ := w.Disk("d")
		if err := writeBlocks(ctx, sink, content, nil); err != nil {
			t.Fatal(err)
		}
		if got := e.count.get("PUT chunk"); got != c.puts {
			t.Errorf("after %s: %d chunk PUTs, want %d", c.advance, got, c.puts)
		}
		_ = w.Abort(ctx)
	}
	if age := e.clock.Now().Sub(e.lastModified(t, key)); age > time.Minute {
		t.Errorf("renewed chunk is %s old", age)
	}
}

func TestEncryptionAndCompressionOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	content := makeDisk(15, 4*s3.BlockSize)
	for _, c := range []struct {
		name   string
		opts   s3.Options
		header string
		kms    string
	}{
		{"sse-s3", s3.Options{Encryption: s3.EncryptionS3, Compression: s3.CompressionNone}, "AES256", ""},
		{"sse-kms", s3.Options{Encryption: s3.EncryptionKMS, KMSKeyID: "alias/backups", Compression: s3.CompressionBetter}, "aws:kms", "alias/backups"},
		{"default", s3.Options{Compression: s3.CompressionFastest}, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.count.reset()
			st := e.store(c.name, c.opts)
			w := backup(t, st, "vm", time.Time{}, map[string][]byte{"d": content})
			e.count.mu.Lock()
			hdrs := e.count.hdrs
			e.count.mu.Unlock()
			if len(hdrs) == 0 {
				t.Fatal("no PUT seen")
			}
			for _, h := range hdrs {
				if got := h.Get("X-Amz-Server-Side-Encryption"); got != c.header {
					t.Errorf("SSE header %q, want %q", got, c.header)
				}
				if got := h.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"); got != c.kms {
					t.Errorf("KMS key header %q, want %q", got, c.kms)
				}
			}
			// The text block (index 3) is compressed unless compression is off.
			obj := e.object(t, chunkKey(c.name, block(content, 3).Checksum))
			if compressed := obj[0] == 1 && len(obj) < s3.BlockSize/10; compressed == (c.opts.Compression == s3.CompressionNone) {
				t.Errorf("text chunk: encoding byte %d, %d bytes", obj[0], len(obj))
			}
			// The random block (index 0) is stored raw whatever the setting.
			if obj := e.object(t, chunkKey(c.name, block(content, 0).Checksum)); obj[0] != 0 || len(obj) != s3.BlockSize+1 {
				t.Errorf("random chunk: encoding byte %d, %d bytes; want raw", obj[0], len(obj))
			}
			src, err := st.OpenDisk(ctx, "vm", w.ID(), "d")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(readAll(t, src), content) {
				t.Error("reads back wrong")
			}
		})
	}
}

// TestConcurrentReads reads one source from many goroutines (run with
// -race).
func TestConcurrentReads(t *testing.T) {
	e := newEnv(t)
	st := e.store("", s3.Options{})
	ctx := t.Context()
	content := makeDisk(16, diskSize)
	w := backup(t, st, "vm", time.Time{}, map[string][]byte{"d": content})
	src, err := st.OpenDisk(ctx, "vm", w.ID(), "d")
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 16)
	for g := range 16 {
		go func() {
			off := int64(g) * 70001 % (diskSize - 1000)
			p := make([]byte, 1000)
			_, err := src.ReadAt(ctx, p, off)
			if err == nil && !bytes.Equal(p, content[off:off+1000]) {
				err = errors.New("wrong bytes")
			}
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := src.ReadAt(cctx, make([]byte, s3.BlockSize), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadAt with a cancelled context: %v", err)
	}
}

// TestChangeIDsRoundTrip checks that a disk's change-tracking ID given to
// BeginPoint comes back from Points, bound to the point's checksum.
func TestChangeIDsRoundTrip(t *testing.T) {
	e := newEnv(t)
	st := e.store("p", s3.Options{})
	ctx := t.Context()
	disks := []draas.Disk{{Name: "os", Size: s3.BlockSize, ChangeID: `52 3a-"b" 7f/12`}, {Name: "data", Size: s3.BlockSize}}
	w, err := pointWriter(st.BeginPoint(ctx, "vm", disks, e.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range disks {
		sink, err := w.Disk(d.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := sink.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	pts, err := st.Points(ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 1 || pts[0].Disks[0].ChangeID != disks[0].ChangeID || pts[0].Disks[1].ChangeID != "" {
		t.Fatalf("points %+v: change IDs did not round-trip", pts)
	}
}
