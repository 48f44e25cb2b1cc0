package guestimage

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendraas/draas/internal/oracle"
)

// The tests below build the real images and boot them in QEMU: minutes of
// work, so they run only when DRAAS_GUEST_IMAGES=1 (bash .ci/guest-image.sh
// sets it) and never with -short. Without the tools they skip, saying which
// Debian packages to install, or fail under DRAAS_REQUIRE_ORACLES=1.
func requireGuestTools(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and boots real guests for minutes: not with -short")
	}
	if os.Getenv("DRAAS_GUEST_IMAGES") != "1" {
		t.Skip("builds and boots real guests for minutes: set DRAAS_GUEST_IMAGES=1 (bash .ci/guest-image.sh does)")
	}
	for _, err := range []error{CheckBuildTools(), CheckBootTools()} {
		if err == nil {
			continue
		}
		oracle.Missing(t, err.Error())
	}
}

var (
	imagesMu  sync.Mutex
	images    = map[Layout]*Image{}
	imageErrs = map[Layout]error{}
)

// testImage builds (or finds in the cache) the image of a layout once per
// test binary.
func testImage(t *testing.T, layout Layout) *Image {
	t.Helper()
	imagesMu.Lock()
	defer imagesMu.Unlock()
	if img := images[layout]; img != nil {
		return img
	}
	if err := imageErrs[layout]; err != nil {
		t.Fatalf("Build(%s) failed earlier: %v", layout, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	start := time.Now()
	img, err := Build(ctx, DebianVMware(layout), Options{})
	if err != nil {
		imageErrs[layout] = err
		t.Fatalf("Build(%s): %v", layout, err)
	}
	t.Logf("image %s (%s): cached=%v, %.1fs in this call; built in %.1fs", layout, img.Path, img.Cached,
		time.Since(start).Seconds(), img.BuildDuration.Seconds())
	images[layout] = img
	return img
}

func TestGuestBuild(t *testing.T) {
	requireGuestTools(t)
	for _, layout := range []Layout{LayoutLVM, LayoutExt4} {
		t.Run(string(layout), func(t *testing.T) {
			img := testImage(t, layout)
			checkMBR(t, img)

			// A second build of the recipe is the cache's.
			start := time.Now()
			again, err := Build(context.Background(), DebianVMware(layout), Options{})
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			t.Logf("cached build: %v", took)
			if !again.Cached || again.Path != img.Path || took > 5*time.Second {
				t.Errorf("second build: cached=%v path %s (first %s) in %v", again.Cached, again.Path, img.Path, took)
			}
			if again.RootDevice != img.RootDevice || again.VolumeGroup != img.VolumeGroup {
				t.Errorf("cached image says %+v, built one %+v", again, img)
			}
			checkNoLeftovers(t, img)
		})
	}
}

// checkMBR reads the image's first sector: an MBR with GRUB's boot code and
// the layout's partitions.
func checkMBR(t *testing.T, img *Image) {
	t.Helper()
	f, err := os.Open(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mbr := make([]byte, 512)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		t.Fatalf("no MBR signature: % x", mbr[510:])
	}
	if !bytes.Contains(mbr[:446], []byte("GRUB")) {
		t.Error("the MBR's boot code is not GRUB's")
	}
	var types []byte
	for i := 0; i < 4; i++ {
		e := mbr[446+16*i:]
		if e[4] != 0 {
			types = append(types, e[4])
		}
		if i == 0 && e[0] != 0x80 {
			t.Error("partition 1 is not active")
		}
		if i == 0 && binary.LittleEndian.Uint32(e[8:]) != 2048 {
			t.Errorf("partition 1 starts at sector %d, want 2048", binary.LittleEndian.Uint32(e[8:]))
		}
	}
	want := []byte{0x83}
	if img.Recipe.Layout == LayoutLVM {
		want = []byte{0x83, 0x8e}
	}
	if !bytes.Equal(types, want) {
		t.Errorf("partition types % x, want % x", types, want)
	}
}

// checkNoLeftovers: nothing of the build stays attached to the host.
func checkNoLeftovers(t *testing.T, img *Image) {
	t.Helper()
	cache := filepath.Dir(img.Dir)
	if m := mountsUnder(cache); len(m) > 0 {
		t.Errorf("mounts left under %s: %v", cache, m)
	}
	if l := loopsUnder(cache); len(l) > 0 {
		t.Errorf("loop devices left on %s: %v", cache, l)
	}
	if img.VolumeGroup != "" {
		if m, _ := filepath.Glob("/dev/mapper/" + img.VolumeGroup + "-*"); len(m) > 0 {
			t.Errorf("volume group %s left active: %v", img.VolumeGroup, m)
		}
	}
	tmps, _ := filepath.Glob(filepath.Join(cache, "tmp-"+img.Hash+"-*"))
	if len(tmps) > 0 {
		t.Errorf("temporary directories left: %v", tmps)
	}
}

// TestGuestBoot is the control pair of the driver injection: the image as a
// VMware install leaves it boots from its PVSCSI disk (positive control),
// and does not boot from the same disk on NVMe, as EC2 Nitro presents it:
// its initramfs has no nvme driver and gives up waiting for the root
// (negative control). Without the positive control the negative one would
// prove nothing.
func TestGuestBoot(t *testing.T) {
	requireGuestTools(t)
	for _, layout := range []Layout{LayoutLVM, LayoutExt4} {
		t.Run(string(layout)+"/pvscsi", func(t *testing.T) {
			img := testImage(t, layout)
			res := boot(t, img, BusPVSCSI)
			if res.Outcome != OutcomeReady {
				t.Fatalf("outcome %s (%q) after %v, want %s; console:\n%s", res.Outcome, res.Line, res.Elapsed, OutcomeReady, tail(res.Console))
			}
			for _, want := range []string{"root=" + img.RootDevice, "addrs=" + img.Recipe.Interface + "=" + img.Recipe.Address} {
				if !strings.Contains(res.Line, want) {
					t.Errorf("ready line %q lacks %q", res.Line, want)
				}
			}
		})
		t.Run(string(layout)+"/nvme", func(t *testing.T) {
			img := testImage(t, layout)
			res := boot(t, img, BusNVMe)
			if res.Outcome != OutcomeRootNotFound {
				t.Fatalf("outcome %s (%q) after %v, want %s; console:\n%s", res.Outcome, res.Line, res.Elapsed, OutcomeRootNotFound, tail(res.Console))
			}
			// The firmware did boot GRUB and the kernel from the NVMe disk:
			// what fails is the initramfs, for want of a driver.
			for _, want := range []string{"Loading Linux", "Loading initial ramdisk", "Gave up waiting for root", img.RootDevice + " does not exist"} {
				if !strings.Contains(res.Console, want) {
					t.Errorf("console lacks %q:\n%s", want, tail(res.Console))
				}
			}
		})
	}
}

func boot(t *testing.T, img *Image, bus Bus) BootResult {
	t.Helper()
	// A Debian guest reaches multi-user in about 25 s under TCG on an idle
	// machine; test machines are seldom idle.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := Boot(ctx, img.Path, bus, BootOptions{Timeout: 6 * time.Minute})
	if err != nil {
		t.Fatalf("Boot(%s): %v", bus, err)
	}
	t.Logf("%s on %s: %s after %.1fs: %s", img.Recipe.Layout, bus, res.Outcome, res.Elapsed.Seconds(), res.Line)
	if dir := os.Getenv("DRAAS_GUEST_CONSOLE_DIR"); dir != "" {
		name := filepath.Join(dir, fmt.Sprintf("console-%s-%s.txt", img.Recipe.Layout, bus))
		if err := os.WriteFile(name, []byte(res.Console), 0o644); err != nil {
			t.Error(err)
		}
	}
	return res
}

// tail is the end of a console, enough to see why a boot went wrong.
func tail(console string) string {
	if len(console) > 6000 {
		return "…" + console[len(console)-6000:]
	}
	return console
}
