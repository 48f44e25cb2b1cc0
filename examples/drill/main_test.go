package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/draastest"
)

// TestDemo runs the drill exactly as `go run ./examples/drill` does (with a
// smaller disk under -short) and checks its report.
func TestDemo(t *testing.T) {
	var opts options
	if testing.Short() {
		opts.SizeMiB = 32
	}
	var out bytes.Buffer
	if err := run(context.Background(), &out, opts); err != nil {
		t.Fatalf("drill failed: %v\n%s", err, out.String())
	}
	report := out.String()
	t.Logf("\n%s", report)
	for _, want := range []string{
		"generate a sparse test disk",
		"random data", "written zeros", "holes",
		"full copy into DR copy 1, verify on",
		"incremental copy of the changed extents",
		"verify OK",
		"disk.raw and drcopy-1.raw are identical",
		"disk.raw and drcopy-2.raw are identical",
		"removed drcopy-1.raw",
		"the incremental copy read",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(report, "FAILED") {
		t.Errorf("a step failed")
	}
}

// TestIncrementalCopiesOnlyChangedBlocks checks the figures behind the
// report: the full copy writes every block with data, the incremental one
// only the changed blocks, and both verify.
func TestIncrementalCopiesOnlyChangedBlocks(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	d, err := runDrill(context.Background(), &out, options{Dir: dir, SizeMiB: 16, ChangePercent: 25, Seed: 7})
	if err != nil {
		t.Fatalf("drill failed: %v\n%s", err, out.String())
	}
	size := int64(16 << 20)
	if d.full.Size != size || !d.full.Verified || d.full.BytesCopied == 0 || d.full.BytesCopied+d.full.BytesZero != size {
		t.Errorf("full copy stats = %+v; want every byte copied or skipped as zero, verified", d.full)
	}
	changedBlocks := map[int64]bool{}
	for _, e := range d.changed {
		for b := e.Offset / blockSize; b*blockSize < e.End(); b++ {
			changedBlocks[b] = true
		}
	}
	want := int64(len(changedBlocks))
	if want != 8 { // 25 % of 32 blocks, two of them written with zeros
		t.Errorf("changed %d blocks, want 8", want)
	}
	if d.incr.BlocksCopied != want || d.incr.BlocksUnchanged != 32-want || !d.incr.Verified {
		t.Errorf("incremental stats = %+v; want %d blocks copied, %d unchanged, verified", d.incr, want, 32-want)
	}
	if d.incr.BytesRead != want*blockSize {
		t.Errorf("incremental copy read %d bytes, want %d (the changed blocks only)", d.incr.BytesRead, want*blockSize)
	}
	// With Dir set, the files stay for inspection: the disk and the latest
	// DR copy, with no partial file and no retired copy.
	for _, name := range []string{"disk.raw", "drcopy-2.raw"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, name := range []string{"drcopy-1.raw", "drcopy-2.raw" + updateSuffix} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", name, err)
		}
	}
}

// TestUpdateSinkConformance runs draastest's sink suite on the drill's
// incremental sink, cloning an all-zero base.
func TestUpdateSinkConformance(t *testing.T) {
	draastest.TestVolumeSink(t, func(t *testing.T, size int64) draastest.SinkHarness {
		dir := t.TempDir()
		base := filepath.Join(dir, "base.raw")
		if err := os.WriteFile(base, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "new.raw")
		sink, _, err := newUpdateSink(context.Background(), path, base, size)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sink.Abort(context.Background()) })
		return draastest.SinkHarness{
			Sink: sink,
			ReadBack: func(ctx context.Context) ([]byte, error) {
				data, err := os.ReadFile(path)
				if errors.Is(err, os.ErrNotExist) {
					return nil, fmt.Errorf("%s: %w", path, draas.ErrNotFound)
				}
				return data, err
			},
		}
	})
}

// TestUpdateSinkKeepsBase checks that an aborted update leaves the base
// untouched and nothing at the new path.
func TestUpdateSinkKeepsBase(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	orig := bytes.Repeat([]byte{1}, 2*blockSize)
	if err := os.WriteFile(base, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	path := filepath.Join(dir, "new.raw")
	sink, _, err := newUpdateSink(ctx, path, base, int64(len(orig)))
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.WriteBlock(ctx, draas.Block{Index: 1, Offset: blockSize, Data: make([]byte, blockSize)}); err != nil {
		t.Fatal(err)
	}
	if err := sink.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(base); err != nil || !bytes.Equal(got, orig) {
		t.Errorf("base changed by an aborted update (err %v)", err)
	}
	for _, p := range []string{path, path + updateSuffix} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after Abort: %v", p, err)
		}
	}
	if _, _, err := newUpdateSink(ctx, base, base, 1); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("update onto an existing file: %v, want draas.ErrConflict", err)
	}
}

func TestSameFilesFindsDifference(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	data := bytes.Repeat([]byte{7}, 3<<20)
	if err := os.WriteFile(a, data, 0o644); err != nil {
		t.Fatal(err)
	}
	data[2<<20+5] = 8
	if err := os.WriteFile(b, data, 0o644); err != nil {
		t.Fatal(err)
	}
	err := sameFiles(context.Background(), a, b)
	if !errors.Is(err, draas.ErrChecksumMismatch) || !strings.Contains(err.Error(), "byte 2097157") {
		t.Errorf("sameFiles = %v, want a mismatch at byte 2097157", err)
	}
	if err := os.WriteFile(b, data[:1<<20], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sameFiles(context.Background(), a, b); err == nil {
		t.Errorf("sameFiles of files of different lengths succeeded")
	}
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	err := run(ctx, &out, options{SizeMiB: 4})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("run with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestBadOptions(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), &out, options{ChangePercent: 150})
	if !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("run with a change of 150 %% = %v, want draas.ErrInvalid", err)
	}
}
