package guestimage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSweepStale plays a builder killed half-way: its temporary directory
// holds a disk image attached to a loop device and a mount. The next build
// of the recipe must undo both and remove the directory, and leave other
// recipes' directories alone.
func TestSweepStale(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices and mounts")
	}
	ctx := context.Background()
	cache := t.TempDir()
	hash := DebianVMware(LayoutExt4).Hash()
	dead := filepath.Join(cache, "tmp-"+hash+"-deadbeef0000")
	other := filepath.Join(cache, "tmp-0123-cafe")
	for _, d := range []string{filepath.Join(dead, "mnt", "sub"), other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	disk := filepath.Join(dead, imageFile)
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	loop, err := runOut(ctx, nil, nil, nil, "losetup", "--show", "--find", disk)
	if err != nil {
		t.Fatal(err)
	}
	loop = strings.TrimSpace(loop)
	t.Cleanup(func() { _ = run(context.Background(), nil, nil, "losetup", "--detach", loop) })
	mnt := filepath.Join(dead, "mnt")
	if err := run(ctx, nil, nil, "mount", "-t", "tmpfs", "tmpfs", mnt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = run(context.Background(), nil, nil, "umount", mnt) })
	// A second, nested mount: unmounted first.
	if err := os.Mkdir(filepath.Join(mnt, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, nil, nil, "mount", "-t", "tmpfs", "tmpfs", filepath.Join(mnt, "boot")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = run(context.Background(), nil, nil, "umount", filepath.Join(mnt, "boot")) })
	if got := loopsUnder(dead); len(got) != 1 || got[0] != loop {
		t.Fatalf("loopsUnder = %v, want [%s]", got, loop)
	}
	if got := mountsUnder(dead); len(got) != 2 || got[0] != filepath.Join(mnt, "boot") {
		t.Fatalf("mountsUnder = %v, want the nested mount first", got)
	}

	if err := sweepStale(cache, "tmp-"+hash+"-", ""); err != nil {
		t.Fatal(err)
	}
	if m := mountsUnder(dead); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	if l := loopsUnder(dead); len(l) > 0 {
		t.Errorf("loop devices left: %v", l)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("%s not removed: %v", dead, err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another recipe's directory went: %v", err)
	}
}
