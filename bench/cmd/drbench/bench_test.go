package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeImage writes a raw image of size bytes whose 512 KiB blocks are half
// random data and half zeros, as bench/mkimage does.
func writeImage(t *testing.T, path string, size int64, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	img := make([]byte, size)
	for off := int64(0); off < size; off += blockSize {
		if rng.IntN(2) == 0 {
			for i := off; i < min(off+blockSize, size); i++ {
				img[i] = byte(rng.Uint32())
			}
		}
	}
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBackup2EBS(t *testing.T) {
	img := filepath.Join(t.TempDir(), "img.raw")
	writeImage(t, img, 32<<20, 1)
	var out bytes.Buffer
	if err := runBackup2EBS(context.Background(), &out, config{images: []string{img}, changePercent: 5, seed: 1, rounds: 2}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("\n%s", out.String())
	for _, want := range []string{"full copy:", "incremental 1:", "incremental 2:", "PutSnapshotBlock", "per GiB", "ratio incremental/full (median of 2", "verified byte for byte"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestReplicate(t *testing.T) {
	dir := t.TempDir()
	var imgs []string
	for i := range 2 {
		img := filepath.Join(dir, "img"+string(rune('1'+i))+".raw")
		writeImage(t, img, 16<<20, uint64(i+1))
		imgs = append(imgs, img)
	}
	var out bytes.Buffer
	if err := runReplicate(context.Background(), &out, config{images: imgs, changePercent: 5, seed: 1, rounds: 2}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("\n%s", out.String())
	for _, want := range []string{"2 full", "incremental 2:", "2 incremental", "changed: true)", "ratio incremental/full (median of 2", "goal <= 5 %"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
