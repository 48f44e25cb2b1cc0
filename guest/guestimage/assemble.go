package guestimage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// undoStack runs cleanups in reverse order, each with its own time budget
// so that a cancelled build still cleans up.
type undoStack struct {
	fns []func(context.Context) error
}

func (u *undoStack) push(fn func(context.Context) error) { u.fns = append(u.fns, fn) }

func (u *undoStack) run() error {
	var errs []error
	for i := len(u.fns) - 1; i >= 0; i-- {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		errs = append(errs, u.fns[i](ctx))
		cancel()
	}
	u.fns = nil
	return errors.Join(errs...)
}

// assemble makes tmp/disk.raw from the debootstrapped tree at base and
// fills in img's device names.
func assemble(ctx context.Context, tmp, base string, r Recipe, img *Image, log io.Writer) (err error) {
	var undo undoStack
	defer func() { err = errors.Join(err, undo.run()) }()

	disk := filepath.Join(tmp, imageFile)
	f, err := os.Create(disk)
	if err != nil {
		return fmt.Errorf("guestimage: %w", err)
	}
	err = f.Truncate(r.DiskMiB << 20)
	f.Close()
	if err != nil {
		return fmt.Errorf("guestimage: %w", err)
	}
	// MBR; partitions start at 1 MiB, as installers align them. Partition 1
	// is active (bootable), as the Debian installer marks it.
	table := "label: dos\n,,83,*\n"
	if r.Layout == LayoutLVM {
		table = fmt.Sprintf("label: dos\n,%dMiB,83,*\n,,8e\n", r.BootMiB)
	}
	if _, err := runOut(ctx, log, nil, strings.NewReader(table), "sfdisk", "--quiet", disk); err != nil {
		return err
	}

	// The whole disk as a loop device (grub-install writes its MBR), its
	// partitions added by partx: some kernels (this project's CI's) read no
	// MBR partition tables themselves, so losetup -P would give none.
	loop, err := runOut(ctx, log, nil, nil, "losetup", "--show", "--find", disk)
	if err != nil {
		return err
	}
	loop = strings.TrimSpace(loop)
	undo.push(func(ctx context.Context) error { return run(ctx, log, nil, "losetup", "--detach", loop) })
	if err := run(ctx, log, nil, "partx", "--add", loop); err != nil {
		return err
	}
	undo.push(func(ctx context.Context) error { return run(ctx, log, nil, "partx", "--delete", loop) })
	part1 := loop + "p1"
	if err := waitDevice(ctx, part1); err != nil {
		return err
	}

	mnt := filepath.Join(tmp, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		return fmt.Errorf("guestimage: %w", err)
	}
	mount := func(args ...string) error {
		if err := run(ctx, log, nil, "mount", args...); err != nil {
			return err
		}
		target := args[len(args)-1]
		undo.push(func(ctx context.Context) error { return run(ctx, log, nil, "umount", target) })
		return nil
	}

	env := []string{
		"DRAAS_LAYOUT=" + string(r.Layout),
		"DRAAS_HOSTNAME=" + r.Hostname,
		"DRAAS_IFACE=" + r.Interface,
		"DRAAS_ADDRESS=" + r.Address,
		"DRAAS_GATEWAY=" + r.Gateway,
		"DRAAS_MODULES=" + strings.Join(r.InitramfsModules, " "),
		"DRAAS_DISK=" + loop,
		"DRAAS_READY=" + ReadyMarker,
	}
	switch r.Layout {
	case LayoutExt4:
		img.RootDevice = "/dev/sda1"
		if err := run(ctx, log, nil, "mkfs.ext4", "-q", "-F", part1); err != nil {
			return err
		}
		if err := mount(part1, mnt); err != nil {
			return err
		}
		env = append(env, "DRAAS_ROOT_DEV=/dev/sda1", "DRAAS_BOOT_DEV=", "DRAAS_SWAP_DEV=")
	case LayoutLVM:
		vg := r.volumeGroup()
		img.VolumeGroup = vg
		img.RootDevice = "/dev/mapper/" + vg + "-root"
		img.BootDevice = "/dev/sda1"
		part2 := loop + "p2"
		if err := waitDevice(ctx, part2); err != nil {
			return err
		}
		lvs, err := makeLVM(ctx, log, &undo, disk, part2, vg, r.SwapMiB)
		if err != nil {
			return err
		}
		if err := run(ctx, log, nil, "mkfs.ext4", "-q", "-F", part1); err != nil {
			return err
		}
		if err := run(ctx, log, nil, "mkfs.ext4", "-q", "-F", lvs["root"]); err != nil {
			return err
		}
		if err := run(ctx, log, nil, "mkswap", lvs["swap"]); err != nil {
			return err
		}
		if err := mount(lvs["root"], mnt); err != nil {
			return err
		}
		if err := os.Mkdir(filepath.Join(mnt, "boot"), 0o755); err != nil {
			return fmt.Errorf("guestimage: %w", err)
		}
		if err := mount(part1, filepath.Join(mnt, "boot")); err != nil {
			return err
		}
		env = append(env, "DRAAS_ROOT_DEV="+img.RootDevice, "DRAAS_BOOT_DEV=/dev/sda1",
			"DRAAS_SWAP_DEV=/dev/mapper/"+vg+"-swap")
	}

	if err := run(ctx, log, nil, "cp", "-a", base+"/.", mnt+"/"); err != nil {
		return err
	}
	if err := mount("--bind", "/dev", filepath.Join(mnt, "dev")); err != nil {
		return err
	}
	if err := mount("-t", "proc", "proc", filepath.Join(mnt, "proc")); err != nil {
		return err
	}
	if err := mount("-t", "sysfs", "sysfs", filepath.Join(mnt, "sys")); err != nil {
		return err
	}
	if _, err := runOut(ctx, log, env, strings.NewReader(configureScript), "chroot", mnt, "/bin/sh", "-s"); err != nil {
		return fmt.Errorf("guestimage: configuring the guest (build.log has the details): %w", err)
	}
	// The undo stack unmounts, removes the partitions and detaches the loop
	// devices; its errors are this build's.
	return nil
}

// makeLVM makes the physical volume, the volume group and the logical
// volumes "swap" and "root" (the rest) on part, and returns a loop device of
// each logical volume. It never activates the volume group: device-mapper
// may be missing (it is on this project's CI kernels) and an active group
// is one more thing to leave behind. Each logical volume is one linear
// segment, so a loop device at its offset in the disk image is the volume.
func makeLVM(ctx context.Context, log io.Writer, undo *undoStack, disk, part, vg string, swapMiB int64) (map[string]string, error) {
	lvm := func(args ...string) (string, error) {
		full := append([]string{args[0]}, lvmArgs(part)...)
		full = append(full, args[1:]...)
		return runOut(ctx, log, []string{"LVM_SUPPRESS_FD_WARNINGS=1"}, nil, "lvm", full...)
	}
	if _, err := lvm("pvcreate", "--yes", part); err != nil {
		return nil, err
	}
	if _, err := lvm("vgcreate", "--yes", "--physicalextentsize", "4m", vg, part); err != nil {
		return nil, err
	}
	// Should a host's udev activate the group behind this package's back
	// (hosts with device-mapper do that for new physical volumes), undo it.
	undo.push(func(ctx context.Context) error { return deactivateVG(ctx, log, vg) })
	if _, err := lvm("lvcreate", "--yes", "--activate", "n", "--zero", "n", "--wipesignatures", "n",
		"--size", strconv.FormatInt(swapMiB, 10)+"m", "--name", "swap", vg); err != nil {
		return nil, err
	}
	if _, err := lvm("lvcreate", "--yes", "--activate", "n", "--zero", "n", "--wipesignatures", "n",
		"--extents", "100%FREE", "--name", "root", vg); err != nil {
		return nil, err
	}
	out, err := lvm("pvs", "--noheadings", "--units", "b", "--nosuffix", "--options", "pe_start", part)
	if err != nil {
		return nil, err
	}
	peStart, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("guestimage: pvs pe_start %q: %w", out, err)
	}
	out, err = lvm("vgs", "--noheadings", "--units", "b", "--nosuffix", "--options", "vg_extent_size", vg)
	if err != nil {
		return nil, err
	}
	extent, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("guestimage: vgs vg_extent_size %q: %w", out, err)
	}
	out, err = lvm("lvs", "--noheadings", "--separator", ",", "--options", "lv_name,seg_pe_ranges", vg)
	if err != nil {
		return nil, err
	}
	segs, err := parseSegments(out)
	if err != nil {
		return nil, err
	}
	partStart, err := sysfsSectors(part, "start")
	if err != nil {
		return nil, err
	}
	devs := map[string]string{}
	for _, name := range []string{"swap", "root"} {
		s, ok := segs[name]
		if !ok {
			return nil, fmt.Errorf("guestimage: lvs shows no single segment for %s/%s in %q", vg, name, out)
		}
		off := partStart*512 + peStart + s.first*extent
		size := (s.last - s.first + 1) * extent
		dev, err := runOut(ctx, log, nil, nil, "losetup", "--show", "--find",
			"--offset", strconv.FormatInt(off, 10), "--sizelimit", strconv.FormatInt(size, 10), disk)
		if err != nil {
			return nil, err
		}
		dev = strings.TrimSpace(dev)
		undo.push(func(ctx context.Context) error { return run(ctx, log, nil, "losetup", "--detach", dev) })
		devs[name] = dev
	}
	return devs, nil
}

// lvmArgs confine an lvm command to one device and keep it away from
// device-mapper and udev.
func lvmArgs(devices ...string) []string {
	args := []string{"--driverloaded", "n",
		"--config", "devices{use_devicesfile=0} activation{udev_sync=0 udev_rules=0 monitoring=0} global{use_lvmpolld=0}"}
	for _, d := range devices {
		args = append(args, "--devices", d)
	}
	return args
}

type segment struct{ first, last int64 }

// parseSegments reads "name,/dev/x:first-last" lines of lvs; a volume with
// more than one segment is left out.
func parseSegments(out string) (map[string]segment, error) {
	segs := map[string]segment{}
	count := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, ranges, ok := strings.Cut(line, ",")
		if !ok {
			return nil, fmt.Errorf("guestimage: lvs line %q", line)
		}
		for _, rg := range strings.Fields(ranges) {
			i := strings.LastIndex(rg, ":")
			a, b, ok := strings.Cut(rg[i+1:], "-")
			first, err1 := strconv.ParseInt(a, 10, 64)
			last, err2 := strconv.ParseInt(b, 10, 64)
			if i < 0 || !ok || err1 != nil || err2 != nil || last < first {
				return nil, fmt.Errorf("guestimage: lvs segment %q", rg)
			}
			segs[name] = segment{first, last}
			count[name]++
		}
	}
	for name, n := range count {
		if n != 1 {
			delete(segs, name)
		}
	}
	return segs, nil
}

// deactivateVG removes device-mapper devices of vg, if the host has
// device-mapper and anything activated them.
func deactivateVG(ctx context.Context, log io.Writer, vg string) error {
	entries, err := os.ReadDir("/dev/mapper")
	if err != nil {
		return nil // no device-mapper: nothing can be active
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), vg+"-") {
			errs = append(errs, run(ctx, log, nil, "dmsetup", "remove", "--retry", e.Name()))
		}
	}
	return errors.Join(errs...)
}

// sysfsSectors reads a partition's start or size, in 512-byte sectors.
func sysfsSectors(dev, attr string) (int64, error) {
	name := filepath.Base(dev)
	parent := strings.TrimSuffix(name, name[strings.LastIndex(name, "p"):])
	b, err := os.ReadFile(filepath.Join("/sys/block", parent, name, attr))
	if err != nil {
		return 0, fmt.Errorf("guestimage: %w", err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// waitDevice waits for a device node that partx asked the kernel for.
func waitDevice(ctx context.Context, dev string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(dev); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("guestimage: %s did not appear", dev)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
