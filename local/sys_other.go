//go:build !(linux || darwin || freebsd)

package local

import (
	"context"
	"os"

	"github.com/opendraas/draas"
)

const deviceOpenFlags = 0

// dataExtents reports that this system cannot find holes.
func dataExtents(ctx context.Context, f *os.File, size int64) ([]draas.Extent, error) {
	return nil, errNoSeekData
}

// lock does nothing: this system has no flock.
func lock(f *os.File) error { return nil }

// syncDir does nothing: this system cannot sync a directory.
func syncDir(dir string) error { return nil }
