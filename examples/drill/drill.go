package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/local"
)

// options configure a drill. The zero value runs the standard demo.
type options struct {
	// Dir holds the disk and its DR copies; "" means a new temporary
	// directory that is removed at the end.
	Dir string
	// SizeMiB is the test disk's size in MiB; 0 means 256.
	SizeMiB int64
	// ChangePercent is the share of blocks changed before the incremental
	// copy; 0 means 1.
	ChangePercent float64
	// Seed makes the generated data and the changes repeatable; 0 means 1.
	Seed uint64
}

// blockSize is the DR copies' block size: the local sink's default.
const blockSize = local.DefaultBlockSize

// drill is the state the steps share: files, what was generated and changed,
// and the figures the final report compares.
type drill struct {
	opts options
	dir  string
	disk string // the protected disk: the copies' source
	size int64
	rng  *rand.Rand

	// copies are the DR copies made so far, oldest first; the last is the
	// latest. Retired copies are removed from the list.
	copies  []string
	pending *updateSink    // the next DR copy, between clone and copy
	layout  layout         // what generate wrote
	changed []draas.Extent // what change rewrote, as change tracking reports it

	full, incr copyResult
}

// copyResult is what one copy did.
type copyResult struct {
	blockcopy.Stats
	// commit is the time the sink's Commit took (fsync, rename, directory
	// sync), part of Stats.Duration.
	commit time.Duration
}

// step is one stage of the drill. do returns a one-line report.
type step struct {
	name string
	do   func(ctx context.Context) (string, error)
}

// steps is the drill in order. A DR cycle grows here: backup into an S3
// backup store, replicate into EBS snapshots, fail over, fail back.
func (d *drill) steps() []step {
	return []step{
		{"generate a sparse test disk", d.generate},
		{"full copy into DR copy 1, verify on", d.fullCopy},
		{"compare the disk with DR copy 1", d.compare},
		{"change blocks of the disk", d.change},
		{"clone DR copy 1 as the base of DR copy 2", d.cloneLatest},
		{"incremental copy of the changed extents into DR copy 2, verify on", d.incrementalCopy},
		{"compare the disk with DR copy 2", d.compare},
		{"retire DR copy 1", d.retire},
	}
}

// run performs the drill and writes its report to w.
func run(ctx context.Context, w io.Writer, opts options) error {
	_, err := runDrill(ctx, w, opts)
	return err
}

// runDrill performs the drill, writes its report to w and returns its state
// for tests to inspect.
func runDrill(ctx context.Context, w io.Writer, opts options) (*drill, error) {
	if opts.SizeMiB == 0 {
		opts.SizeMiB = 256
	}
	if opts.ChangePercent == 0 {
		opts.ChangePercent = 1
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.SizeMiB < 0 || opts.ChangePercent < 0 || opts.ChangePercent > 100 {
		return nil, draas.Invalidf("drill: size %d MiB and change %g %%: want a positive size and a change from 0 to 100 %%", opts.SizeMiB, opts.ChangePercent)
	}
	dir := opts.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "draas-drill-")
		if err != nil {
			return nil, fmt.Errorf("drill: make a work directory: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("drill: make work directory %s: %w", dir, err)
	}
	d := &drill{
		opts: opts,
		dir:  dir,
		disk: filepath.Join(dir, "disk.raw"),
		size: opts.SizeMiB << 20,
		rng:  rand.New(rand.NewPCG(opts.Seed, 0x6472696c6c)),
	}
	defer func() {
		if d.pending != nil { // a step failed between clone and copy
			_ = d.pending.Abort(context.WithoutCancel(ctx))
		}
	}()
	fmt.Fprintf(w, "draas drill: a %s disk in %s\n", formatBytes(d.size), dir)
	all := d.steps()
	start := time.Now()
	for i, s := range all {
		t := time.Now()
		report, err := s.do(ctx)
		if err != nil {
			fmt.Fprintf(w, "[%d/%d] %s: FAILED\n", i+1, len(all), s.name)
			return d, fmt.Errorf("step %d (%s): %w", i+1, s.name, err)
		}
		fmt.Fprintf(w, "[%d/%d] %s (%s)\n      %s\n", i+1, len(all), s.name, since(t), report)
	}
	fmt.Fprintf(w, "done in %s: %s\n", since(start), d.conclusion())
	return d, nil
}

// copyPath names the n-th DR copy (1-based).
func (d *drill) copyPath(n int) string {
	return filepath.Join(d.dir, fmt.Sprintf("drcopy-%d.raw", n))
}

// latest is the newest DR copy, or "" before the first.
func (d *drill) latest() string {
	if len(d.copies) == 0 {
		return ""
	}
	return d.copies[len(d.copies)-1]
}

// layout counts the bytes of each kind the generated disk holds.
type layout struct {
	data, zeros, holes int64
}

// generate writes the test disk: 64 KiB regions of random data, written
// zeros and holes, in runs of random length, so that some blocks are all
// data, some all zeros or holes, and many mixed.
func (d *drill) generate(ctx context.Context) (string, error) {
	f, err := os.Create(d.disk)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := f.Truncate(d.size); err != nil {
		return "", err
	}
	const region = 64 << 10
	buf := make([]byte, 16*region)
	for off := int64(0); off < d.size; {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n := min(int64(1+d.rng.IntN(16))*region, d.size-off)
		p := buf[:n]
		switch r := d.rng.IntN(10); {
		case r < 5:
			fillRandom(d.rng, p)
			d.layout.data += n
		case r < 7:
			clear(p)
			d.layout.zeros += n
		default:
			d.layout.holes += n
			off += n
			continue
		}
		if _, err := f.WriteAt(p, off); err != nil {
			return "", err
		}
		off += n
	}
	// Flush the disk now, so that its dirty pages are not written back
	// during (and timed as part of) the copies.
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %s random data, %s written zeros, %s holes",
		filepath.Base(d.disk), formatBytes(d.layout.data), formatBytes(d.layout.zeros), formatBytes(d.layout.holes)), nil
}

// fullCopy copies the whole disk into the first DR copy.
func (d *drill) fullCopy(ctx context.Context) (string, error) {
	dst := d.copyPath(1)
	src, err := local.Open(d.disk)
	if err != nil {
		return "", err
	}
	defer src.Close()
	sink, err := local.Create(dst, src.Size(), local.SinkOptions{})
	if err != nil {
		return "", err
	}
	st, err := copyInto(ctx, sink, src, nil)
	if err != nil {
		return "", err
	}
	d.full = st
	d.copies = append(d.copies, dst)
	return describe(st), nil
}

// compare reads the disk and the latest DR copy and fails at the first
// difference.
func (d *drill) compare(ctx context.Context) (string, error) {
	if err := sameFiles(ctx, d.disk, d.latest()); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s and %s are identical (%s)", filepath.Base(d.disk), filepath.Base(d.latest()), formatBytes(d.size)), nil
}

// change overwrites a part of ChangePercent % of the disk's blocks with
// random data, as a running VM would, and records the changed byte ranges
// the way changed-block tracking (vSphere CBT, EBS ListChangedBlocks)
// reports them to a replicator.
func (d *drill) change(ctx context.Context) (string, error) {
	nblocks := (d.size + blockSize - 1) / blockSize
	n := max(1, int64(float64(nblocks)*d.opts.ChangePercent/100+0.5))
	picked := d.rng.Perm(int(nblocks))[:n]
	sort.Ints(picked)
	f, err := os.OpenFile(d.disk, os.O_WRONLY, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var changedBytes, zeroed int64
	buf := make([]byte, blockSize)
	for i, b := range picked {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		blockLen := min(int64(blockSize), d.size-int64(b)*blockSize)
		off, length := int64(b)*blockSize, blockLen
		p := buf[:length]
		if i%4 == 3 {
			// Every fourth change zeros a whole block, as a guest trimming
			// it: the copy must write these zeros, not skip them as holes.
			clear(p)
			zeroed++
		} else {
			// A write of 4 KiB up to a whole block, 4 KiB aligned.
			pages := blockLen / 4096
			length = (1 + d.rng.Int64N(pages)) * 4096
			off += d.rng.Int64N(pages-length/4096+1) * 4096
			p = buf[:length]
			fillRandom(d.rng, p)
		}
		if _, err := f.WriteAt(p, off); err != nil {
			return "", err
		}
		d.changed = append(d.changed, draas.Extent{Offset: off, Length: length})
		changedBytes += length
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return fmt.Sprintf("rewrote %s in %d of %d blocks (%.1f %%), zeroing %d of them whole",
		formatBytes(changedBytes), n, nblocks, 100*float64(n)/float64(nblocks), zeroed), nil
}

// cloneLatest starts the next DR copy as a clone of the latest one, which
// stays intact: a failed incremental copy leaves the last good DR copy, as a
// failed incremental EBS snapshot leaves its parent. (An EBS snapshot gets
// its base for free by naming its parent; a local file needs a clone, which
// is instant on filesystems with reflinks and a sparse copy elsewhere.)
func (d *drill) cloneLatest(ctx context.Context) (string, error) {
	base, next := d.latest(), d.copyPath(len(d.copies)+1)
	sink, how, err := newUpdateSink(ctx, next, base, d.size)
	if err != nil {
		return "", err
	}
	d.pending = sink
	return fmt.Sprintf("%s -> %s (%s)", filepath.Base(base), filepath.Base(sink.work), how), nil
}

// incrementalCopy makes the next DR copy by copying only the changed extents
// into the clone of the latest one, and committing it.
func (d *drill) incrementalCopy(ctx context.Context) (string, error) {
	sink := d.pending
	d.pending = nil // Copy commits or aborts it
	src, err := local.Open(d.disk)
	if err != nil {
		_ = sink.Abort(ctx)
		return "", err
	}
	defer src.Close()
	st, err := copyInto(ctx, sink, src, d.changed)
	if err != nil {
		return "", err
	}
	d.incr = st
	d.copies = append(d.copies, sink.path)
	return describe(st), nil
}

// retire deletes every DR copy but the latest, which the steps before
// verified: the previous DR copy goes only once the new one is complete.
func (d *drill) retire(ctx context.Context) (string, error) {
	var names []string
	for _, p := range d.copies[:len(d.copies)-1] {
		if err := os.Remove(p); err != nil {
			return "", err
		}
		names = append(names, filepath.Base(p))
	}
	d.copies = d.copies[len(d.copies)-1:]
	return fmt.Sprintf("removed %s; %s is the DR copy", strings.Join(names, ", "), filepath.Base(d.latest())), nil
}

// conclusion compares the incremental copy with the full one.
func (d *drill) conclusion() string {
	if d.full.Duration <= 0 || d.full.BytesRead <= 0 {
		return "nothing to compare"
	}
	return fmt.Sprintf("the incremental copy read %.1f %% of the full copy's bytes and wrote %.1f %% of its blocks, in %.1f %% of its time",
		100*float64(d.incr.BytesRead)/float64(d.full.BytesRead),
		100*float64(d.incr.BlocksCopied)/float64(max(d.full.BlocksCopied, 1)),
		100*float64(d.incr.Duration)/float64(d.full.Duration))
}

// copyInto copies src into dst with the verify pass on, over exts (nil:
// all allocated extents), and times dst's Commit.
func copyInto(ctx context.Context, dst draas.VolumeSink, src draas.BlockSource, exts []draas.Extent) (copyResult, error) {
	timed := &timedSink{VolumeSink: dst}
	st, err := blockcopy.Copy(ctx, timed, src, blockcopy.Options{Extents: exts, Verify: true})
	return copyResult{Stats: st, commit: timed.commit}, err
}

// timedSink times a sink's Commit. It unwraps to the sink, so that the
// copier finds the sink's capabilities (flush, zero writes, read-back).
type timedSink struct {
	draas.VolumeSink
	commit time.Duration
}

// Unwrap implements draas.Wrapper.
func (s *timedSink) Unwrap() any { return s.VolumeSink }

// Commit commits the sink and records how long that took.
func (s *timedSink) Commit(ctx context.Context) error {
	start := time.Now()
	err := s.VolumeSink.Commit(ctx)
	s.commit = time.Since(start)
	return err
}

// describe reports a copy's figures in one line.
func describe(r copyResult) string {
	s := fmt.Sprintf("copied %s, skipped %s of zeros and %s unchanged, read %s in %s (commit %s)",
		formatBytes(r.BytesCopied), formatBytes(r.BytesZero), formatBytes(r.BytesUnchanged),
		formatBytes(r.BytesRead), r.Duration.Round(time.Millisecond), r.commit.Round(time.Millisecond))
	if r.Verified {
		s += ", verify OK"
	}
	return s
}

// sameFiles compares two files byte by byte.
func sameFiles(ctx context.Context, a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	const chunk = 1 << 20
	pa, pb := make([]byte, chunk), make([]byte, chunk)
	for off := int64(0); ; off += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		na, erra := io.ReadFull(fa, pa)
		nb, errb := io.ReadFull(fb, pb)
		if !bytes.Equal(pa[:na], pb[:nb]) {
			i := 0
			for i < min(na, nb) && pa[i] == pb[i] {
				i++
			}
			return fmt.Errorf("%s and %s differ at byte %d: %w", a, b, off+int64(i), draas.ErrChecksumMismatch)
		}
		endA := errors.Is(erra, io.EOF) || errors.Is(erra, io.ErrUnexpectedEOF)
		endB := errors.Is(errb, io.EOF) || errors.Is(errb, io.ErrUnexpectedEOF)
		switch {
		case erra != nil && !endA:
			return erra
		case errb != nil && !endB:
			return errb
		case endA || endB:
			return nil
		}
	}
}

// fillRandom fills p with pseudo-random bytes from rng.
func fillRandom(rng *rand.Rand, p []byte) {
	for ; len(p) >= 8; p = p[8:] {
		binary.LittleEndian.PutUint64(p, rng.Uint64())
	}
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
}

// formatBytes formats n bytes in binary units: "1.5 GiB".
func formatBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	unit := "B"
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if f < 1024 {
			break
		}
		f, unit = f/1024, u
	}
	return fmt.Sprintf("%.1f %s", f, unit)
}

// formatRate formats n bytes in d as a rate.
func formatRate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return formatBytes(int64(float64(n)/d.Seconds())) + "/s"
}

func since(t time.Time) string {
	return time.Since(t).Round(time.Millisecond).String()
}
