package vmdk

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/opendraas/draas"
)

// flatWriter writes a monolithicFlat disk: blocks go in place into a sparse
// extent file NAME-flat.vmdk; Commit writes the descriptor NAME.vmdk, which
// is the disk's commit point, after the extent file is in place.
type flatWriter struct {
	m    meta
	flat string // the extent file's final path
	f    *os.File
	mu   sync.Mutex
	// written records the blocks written, so that a zero block written
	// again over data clears it while a zero block over a hole stays a hole.
	written map[int64]bool
	// installed is set once Commit moved the extent file into place, for
	// Abort after a failed Commit.
	installed bool
}

func newFlatWriter(m meta) (*flatWriter, error) {
	w := &flatWriter{m: m, flat: flatPath(m.path), written: map[int64]bool{}}
	if filepath.Base(w.flat) == filepath.Base(m.path) {
		return nil, fmt.Errorf("extent file name %s is the descriptor's", w.flat)
	}
	f, err := tempFile(w.flat)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(m.capacity); err != nil {
		closeAndRemove(f)
		return nil, err
	}
	w.f = f
	return w, nil
}

func (w *flatWriter) writeBlock(idx, off int64, data []byte, sum [32]byte) error {
	w.mu.Lock()
	before := w.written[idx]
	w.written[idx] = true
	w.mu.Unlock()
	if !before && draas.IsZero(data) {
		return nil
	}
	_, err := w.f.WriteAt(data, off)
	return err
}

func (w *flatWriter) commit() error {
	if err := syncClose(w.f); err != nil {
		return err
	}
	desc := w.m.descriptor("monolithicFlat", "FLAT", baseName(w.flat))
	d, err := tempFile(w.m.path)
	if err != nil {
		return err
	}
	_, err = d.WriteString(desc)
	if err == nil {
		err = d.Sync()
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := install(w.flat, w.m.overwrite); err != nil {
		return err
	}
	w.installed = true
	return install(w.m.path, w.m.overwrite)
}

func (w *flatWriter) abort() error {
	err := closeAndRemove(w.f)
	if w.installed {
		if rerr := os.Remove(w.flat); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}
	if rerr := os.Remove(w.m.path + partialSuffix); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}
