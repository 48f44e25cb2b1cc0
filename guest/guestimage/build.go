package guestimage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Options configures [Build]. The zero value is useful.
type Options struct {
	// CacheDir holds the images, one directory per recipe hash. Empty means
	// [DefaultCacheDir].
	CacheDir string
	// Mirror is the Debian mirror debootstrap fetches from. Empty means the
	// one apt uses ([AptMirror] of /etc/apt).
	Mirror string
	// Log receives the output of the build's commands (debootstrap, the
	// configuration in the chroot). Nil discards it; it is also kept in the
	// image directory's build.log.
	Log io.Writer
}

// Image is a built disk image in the cache.
type Image struct {
	// Path is the raw disk image. It is shared by every user of the cache:
	// do not write to it (boot it with a copy-on-write overlay, as [Boot]
	// does, or copy it).
	Path string `json:"-"`
	// Dir is the image's cache directory (Path, image.json, build.log).
	Dir string `json:"-"`
	// Hash is the recipe's [Recipe.Hash].
	Hash string `json:"hash"`
	// Recipe is what was built.
	Recipe Recipe `json:"recipe"`
	// RootDevice is the root device as the guest's fstab and kernel command
	// line name it: "/dev/mapper/VG-root" or "/dev/sda1".
	RootDevice string `json:"root_device"`
	// BootDevice is the separate /boot device as the guest names it, or "".
	BootDevice string `json:"boot_device,omitempty"`
	// VolumeGroup is the LVM volume group of [LayoutLVM], or "".
	VolumeGroup string `json:"volume_group,omitempty"`
	// BuildDuration is how long the image took to build, when it was built.
	BuildDuration time.Duration `json:"build_duration"`
	// Cached is set when Build found the image in the cache.
	Cached bool `json:"-"`
}

const (
	imageFile = "disk.raw"
	metaFile  = "image.json"
	logFile   = "build.log"
)

// DefaultCacheDir returns $DRAAS_GUEST_CACHE, else $XDG_CACHE_HOME/draas-guest,
// else /var/cache/draas-guest.
func DefaultCacheDir() string {
	if d := os.Getenv("DRAAS_GUEST_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "draas-guest")
	}
	return "/var/cache/draas-guest"
}

// Build returns the image of recipe r, from the cache when it is there, and
// otherwise builds it (a few minutes: debootstrap fetches about 150
// packages) and caches it. It needs root and the tools [CheckBuildTools]
// checks for; without them the error wraps [ErrMissingTools].
//
// Build is safe for concurrent use, also by several processes sharing a
// cache directory: builders of one recipe take turns on a lock file and the
// image appears in the cache by an atomic rename. Whatever Build sets up on
// the host (loop devices, mounts) is undone on every return, cancellation
// included; what a killed builder left behind is undone by the next Build of
// the same recipe.
func Build(ctx context.Context, r Recipe, opts Options) (*Image, error) {
	start := time.Now()
	if err := r.Validate(); err != nil {
		return nil, err
	}
	cache := opts.CacheDir
	if cache == "" {
		cache = DefaultCacheDir()
	}
	hash := r.Hash()
	final := filepath.Join(cache, hash)
	if img, err := loadImage(final); err == nil {
		return img, nil
	}
	if err := CheckBuildTools(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cache, "locks"), 0o755); err != nil {
		return nil, fmt.Errorf("guestimage: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cache, "locks", hash+".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another builder may have finished while this one waited.
	if img, err := loadImage(final); err == nil {
		return img, nil
	}
	// Holding the lock, any temporary directory of this recipe is a dead
	// builder's.
	if err := sweepStale(cache, "tmp-"+hash+"-", r.volumeGroup()); err != nil {
		return nil, err
	}
	mirror := opts.Mirror
	if mirror == "" {
		if mirror, err = AptMirror("/etc/apt", r.Suite); err != nil {
			return nil, err
		}
	}
	base, err := ensureBase(ctx, cache, r, mirror, opts.Log)
	if err != nil {
		return nil, err
	}

	tmp, err := makeTemp(cache, "tmp-"+hash+"-")
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(tmp, logFile))
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("guestimage: %w", err)
	}
	log := io.Writer(logf)
	if opts.Log != nil {
		log = io.MultiWriter(logf, opts.Log)
	}
	img := &Image{Hash: hash, Recipe: r}
	err = assemble(ctx, tmp, base, r, img, log)
	logf.Close()
	if err == nil {
		img.BuildDuration = time.Since(start)
		err = writeMeta(filepath.Join(tmp, metaFile), img)
	}
	if err == nil {
		// A final directory that loadImage rejected is damaged: replace it.
		if err = os.RemoveAll(final); err == nil {
			err = os.Rename(tmp, final)
		}
	}
	if err != nil {
		// Keep the log for whoever debugs the failure.
		if b, rerr := os.ReadFile(filepath.Join(tmp, logFile)); rerr == nil {
			_ = os.WriteFile(filepath.Join(cache, "failed-"+hash+".log"), b, 0o644)
		}
		return nil, errors.Join(err, sweep(tmp, r.volumeGroup()))
	}
	img.Dir = final
	img.Path = filepath.Join(final, imageFile)
	return img, nil
}

// Cached returns the image of recipe r if it is in the cache, without
// building anything; otherwise the error wraps [fs.ErrNotExist]. Tests that
// must not spend minutes building use it.
func Cached(r Recipe, opts Options) (*Image, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	cache := opts.CacheDir
	if cache == "" {
		cache = DefaultCacheDir()
	}
	img, err := loadImage(filepath.Join(cache, r.Hash()))
	if err != nil {
		return nil, fmt.Errorf("guestimage: no cached image of %s: %w", r.Hash(), err)
	}
	return img, nil
}

func loadImage(dir string) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, err
	}
	img := &Image{}
	if err := json.Unmarshal(b, img); err != nil {
		return nil, err
	}
	img.Dir = dir
	img.Path = filepath.Join(dir, imageFile)
	if _, err := os.Stat(img.Path); err != nil {
		return nil, err
	}
	img.Cached = true
	return img, nil
}

func writeMeta(path string, img *Image) error {
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return fmt.Errorf("guestimage: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("guestimage: %w", err)
	}
	return nil
}

func makeTemp(cache, prefix string) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("guestimage: %w", err)
	}
	dir := filepath.Join(cache, prefix+hex.EncodeToString(b[:]))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("guestimage: %w", err)
	}
	return dir, nil
}

// ensureBase returns the directory of the debootstrapped tree of r's suite
// and packages, building it if the cache lacks it. The caller holds the
// image's lock; the base has its own, always taken after an image's.
func ensureBase(ctx context.Context, cache string, r Recipe, mirror string, logw io.Writer) (string, error) {
	bh := r.baseHash()
	final := filepath.Join(cache, "base-"+bh)
	rootfs := filepath.Join(final, "rootfs")
	if _, err := os.Stat(filepath.Join(final, "done")); err == nil {
		return rootfs, nil
	}
	unlock, err := lockFile(ctx, filepath.Join(cache, "locks", "base-"+bh+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(final, "done")); err == nil {
		return rootfs, nil
	}
	if err := sweepStale(cache, "tmp-base-"+bh+"-", ""); err != nil {
		return "", err
	}
	tmp, err := makeTemp(cache, "tmp-base-"+bh+"-")
	if err != nil {
		return "", err
	}
	logf, err := os.Create(filepath.Join(tmp, logFile))
	if err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("guestimage: %w", err)
	}
	w := io.Writer(logf)
	if logw != nil {
		w = io.MultiWriter(logf, logw)
	}
	// Downloaded packages are kept apart from the trees, so that a changed
	// recipe does not fetch them again.
	debs := filepath.Join(cache, "debs")
	err = os.MkdirAll(debs, 0o755)
	if err == nil {
		err = run(ctx, w, nil, "debootstrap", "--variant=minbase", "--cache-dir="+debs,
			"--include="+strings.Join(r.Packages, ","), r.Suite, filepath.Join(tmp, "rootfs"), mirror)
	}
	logf.Close()
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, "done"), []byte(mirror+"\n"), 0o644)
	}
	if err == nil {
		if err = os.RemoveAll(final); err == nil { // damaged: it has no "done"
			err = os.Rename(tmp, final)
		}
	}
	if err != nil {
		return "", errors.Join(fmt.Errorf("guestimage: debootstrap %s from %s: %w", r.Suite, mirror, err), sweep(tmp, ""))
	}
	return rootfs, nil
}

// run runs a tool, its output to w. A failure's error holds the command and
// the end of its output.
func run(ctx context.Context, w io.Writer, env []string, name string, args ...string) error {
	_, err := runOut(ctx, w, env, nil, name, args...)
	return err
}

// runOut runs a tool and returns its standard output (which also goes to w).
func runOut(ctx context.Context, w io.Writer, env []string, stdin io.Reader, name string, args ...string) (string, error) {
	path, err := lookTool(name)
	if err != nil {
		return "", fmt.Errorf("guestimage: %w: %w", ErrMissingTools, err)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.WaitDelay = 10 * time.Second
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdin = stdin
	var out, tail bytes.Buffer
	sinks := []io.Writer{&out}
	errSinks := []io.Writer{&tail}
	if w != nil {
		sinks = append(sinks, w)
		errSinks = append(errSinks, w)
	}
	cmd.Stdout = io.MultiWriter(sinks...)
	cmd.Stderr = io.MultiWriter(errSinks...)
	if err := cmd.Run(); err != nil {
		msg := tail.String()
		if msg == "" {
			msg = out.String()
		}
		if len(msg) > 2000 {
			msg = "…" + msg[len(msg)-2000:]
		}
		return out.String(), fmt.Errorf("guestimage: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(msg))
	}
	return out.String(), nil
}
