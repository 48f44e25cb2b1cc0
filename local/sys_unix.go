//go:build linux || darwin || freebsd

package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/opendraas/draas"
)

// deviceOpenFlags are added when opening a block device for writing: on
// Linux, O_EXCL makes the open fail with EBUSY when the device is mounted or
// otherwise in use.
var deviceOpenFlags = func() int {
	if runtime.GOOS == "linux" {
		return os.O_EXCL
	}
	return 0
}()

// dataExtents returns the extents of f below size that hold data, using
// lseek(SEEK_DATA) and lseek(SEEK_HOLE). It returns errNoSeekData when the
// filesystem does not support them. lseek moves the file offset, which pread
// and pwrite do not use, so it is safe alongside concurrent reads.
func dataExtents(ctx context.Context, f *os.File, size int64) ([]draas.Extent, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var exts []draas.Extent
	var serr error
	err = rc.Control(func(fd uintptr) {
		for off := int64(0); off < size; {
			if serr = ctx.Err(); serr != nil {
				return
			}
			data, err := unix.Seek(int(fd), off, unix.SEEK_DATA)
			if errors.Is(err, unix.ENXIO) || err == nil && data >= size {
				return // no data at or after off
			}
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP) {
				serr = errNoSeekData
				return
			}
			if err != nil {
				serr = &os.PathError{Op: "lseek SEEK_DATA", Path: f.Name(), Err: err}
				return
			}
			hole, err := unix.Seek(int(fd), data, unix.SEEK_HOLE)
			if err != nil {
				serr = &os.PathError{Op: "lseek SEEK_HOLE", Path: f.Name(), Err: err}
				return
			}
			if hole <= data {
				serr = &os.PathError{Op: "lseek SEEK_HOLE", Path: f.Name(), Err: fmt.Errorf("hole at %d is not after data at %d", hole, data)}
				return
			}
			hole = min(hole, size)
			exts = append(exts, draas.Extent{Offset: data, Length: hole - data})
			off = hole
		}
	})
	if err != nil {
		return nil, err
	}
	return exts, serr
}

// lock takes an exclusive advisory lock on f without waiting, so that two
// copies never write the same partial file or device. It returns
// errLocked when another process holds the lock.
func lock(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		ferr = unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB)
	})
	if err != nil {
		return err
	}
	if errors.Is(ferr, unix.EWOULDBLOCK) {
		return errLocked
	}
	if errors.Is(ferr, unix.ENOTSUP) || errors.Is(ferr, unix.EOPNOTSUPP) || errors.Is(ferr, unix.ENOLCK) {
		return nil // the filesystem cannot lock; go on without
	}
	return ferr
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
