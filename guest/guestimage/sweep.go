package guestimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sweepStale cleans up every directory of cache whose name starts with
// prefix: the caller holds the lock of their recipe, so their builder is
// dead.
func sweepStale(cache, prefix, vg string) error {
	entries, err := os.ReadDir(cache)
	if err != nil {
		return fmt.Errorf("guestimage: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
			errs = append(errs, sweep(filepath.Join(cache, e.Name()), vg))
		}
	}
	return errors.Join(errs...)
}

// sweep undoes whatever a build in dir set up on the host and removes dir:
// mounts beneath it (deepest first), device-mapper devices of vg, partitions
// and loop devices backed by files in it.
func sweep(dir, vg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	for _, m := range mountsUnder(dir) {
		if err := run(ctx, nil, nil, "umount", m); err != nil {
			// Busy: detach it lazily rather than leave it.
			errs = append(errs, run(ctx, nil, nil, "umount", "--lazy", m))
		}
	}
	if vg != "" {
		errs = append(errs, deactivateVG(ctx, nil, vg))
	}
	for _, loop := range loopsUnder(dir) {
		_ = run(ctx, nil, nil, "partx", "--delete", loop)
		errs = append(errs, run(ctx, nil, nil, "losetup", "--detach", loop))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("guestimage: cleaning up %s: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("guestimage: %w", err)
	}
	return nil
}

// mountsUnder lists the mount points at or beneath dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMount decodes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// loopsUnder lists the loop devices whose backing file is beneath dir
// (also when the file has since been deleted).
func loopsUnder(dir string) []string {
	paths, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		file := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
		if strings.HasPrefix(file, dir+"/") {
			out = append(out, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(p))))
		}
	}
	return out
}
