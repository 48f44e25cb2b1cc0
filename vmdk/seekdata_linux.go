//go:build linux

package vmdk

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// dataRegions returns the byte ranges of f inside [off, off+length) that hold
// data according to SEEK_DATA and SEEK_HOLE, in order. Where the file system
// cannot tell, the whole range is returned.
func dataRegions(f *os.File, off, length int64) ([][2]int64, error) {
	end := off + length
	var out [][2]int64
	for pos := off; pos < end; {
		data, err := f.Seek(pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data after pos
		}
		if err != nil {
			return [][2]int64{{off, end}}, nil
		}
		if data >= end {
			break
		}
		hole, err := f.Seek(data, unix.SEEK_HOLE)
		if err != nil {
			return [][2]int64{{off, end}}, nil
		}
		hole = min(hole, end)
		if hole <= data {
			return [][2]int64{{off, end}}, nil
		}
		out = append(out, [2]int64{data, hole})
		pos = hole
	}
	return out, nil
}
