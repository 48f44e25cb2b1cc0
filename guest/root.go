package guest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opendraas/draas"
)

// guestRoot is a guest's root filesystem. Every access goes through an
// os.Root, so that nothing outside the root is reached even if the tree
// changes under us; on top of that, resolve follows symbolic links the way
// the guest would see them and refuses those that would leave the root, so
// that every path we record and change is a real path without links.
type guestRoot struct {
	path string // host path, for messages and labels
	r    *os.Root
}

func openGuest(root string) (*guestRoot, error) {
	if root == "" {
		return nil, draas.Invalidf("guest root is empty: pass the directory where the guest's root filesystem is mounted")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, draas.Invalidf("guest root %s: %v", root, err)
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		return nil, draas.Invalidf("guest root %s: %v: mount the guest's root filesystem there first", abs, err)
	}
	return &guestRoot{path: abs, r: r}, nil
}

func (g *guestRoot) Close() error { return g.r.Close() }

// host returns the host path of p, a path inside the root, for messages.
func (g *guestRoot) host(p string) string {
	return filepath.Join(g.path, filepath.FromSlash(p))
}

// maxLinks bounds the symbolic links resolve follows, as the kernel's
// MAXSYMLINKS does.
const maxLinks = 40

// resolve returns name (slash-separated, relative to the root) with every
// symbolic link on the way resolved inside the root, the last component's
// too when followLast is set. Components that do not exist are kept as they
// are. A link with an absolute target, or one that climbs above the root,
// is an error wrapping ErrSymlinkEscape: an absolute target names a host
// path while the guest is mounted here, and we never go there.
func (g *guestRoot) resolve(name string, followLast bool) (string, error) {
	pending := splitPath(name)
	var done []string
	links := 0
	link, target := "", ""
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				if link == "" {
					return "", draas.Invalidf("guest path %q climbs above the guest root", name)
				}
				return "", fmt.Errorf("%w: %s is a symbolic link to %q, which climbs above the guest root %s: make it point inside the guest, then try again", ErrSymlinkEscape, g.host(link), target, g.path)
			}
			done = done[:len(done)-1]
			continue
		}
		cur := path.Join(append(done, c)...)
		fi, err := g.r.Lstat(cur)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				done = append(done, c)
				continue
			}
			return "", g.pathError(cur, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 || (len(pending) == 0 && !followLast) {
			done = append(done, c)
			continue
		}
		if links++; links > maxLinks {
			return "", draas.Invalidf("%s: too many levels of symbolic links: fix the loop in the guest", g.host(name))
		}
		t, err := g.r.Readlink(cur)
		if err != nil {
			return "", g.pathError(cur, err)
		}
		if strings.HasPrefix(t, "/") {
			return "", fmt.Errorf("%w: %s is a symbolic link to the absolute path %q, which would name a file of this host, not of the guest: make it relative (ln -sfr) or replace it with the file, then try again", ErrSymlinkEscape, g.host(cur), t)
		}
		link, target = cur, t
		pending = append(splitPath(t), pending...)
	}
	if len(done) == 0 {
		return ".", nil
	}
	return path.Join(done...), nil
}

func splitPath(p string) []string {
	return strings.Split(filepath.ToSlash(p), "/")
}

// pathError turns an error of the os.Root into one that names the host
// path. (resolve refuses escaping links before the os.Root sees them; the
// os.Root's own refusal only shows if the tree changes under us.)
func (g *guestRoot) pathError(p string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("guest: %s: %w", g.host(p), err)
}

// state returns the state of p (a resolved path, not followed if it is a
// link), or nil if it does not exist.
func (g *guestRoot) state(p string) (*FileState, error) {
	fi, err := g.r.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, g.pathError(p, err)
	}
	st := &FileState{Mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)}
	st.UID, st.GID = owner(fi)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		st.Type, st.Mode = TypeSymlink, 0
		if st.Target, err = g.r.Readlink(p); err != nil {
			return nil, g.pathError(p, err)
		}
	case fi.IsDir():
		st.Type = TypeDir
	case fi.Mode().IsRegular():
		st.Type = TypeFile
		if st.Content, err = g.readRegular(p); err != nil {
			return nil, err
		}
	default:
		return nil, draas.Invalidf("%s is a %v, not a regular file, directory or symbolic link: remove it from the guest or fix its type, then try again", g.host(p), fi.Mode().Type())
	}
	st.SELinux = getLabel(g.host(p))
	return st, nil
}

// readRegular reads p without following a link in its last component.
func (g *guestRoot) readRegular(p string) ([]byte, error) {
	f, err := g.r.OpenFile(p, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return nil, g.pathError(p, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, g.pathError(p, err)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// set makes p (a resolved path) have the state want; nil removes it. A
// regular file that exists is rewritten in place, so that its inode, owner,
// extended attributes and hard links are kept; a new path gets want's mode,
// owner (when we run as root) and SELinux label.
func (g *guestRoot) set(p string, want *FileState) error {
	cur, err := g.r.Lstat(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return g.pathError(p, err)
	}
	exists := err == nil
	if want == nil {
		if !exists {
			return nil
		}
		if err := g.r.Remove(p); err != nil {
			return g.pathError(p, err)
		}
		return nil
	}
	if exists {
		keep := false
		switch want.Type {
		case TypeFile:
			keep = cur.Mode().IsRegular()
		case TypeDir:
			keep = cur.IsDir()
		case TypeSymlink:
			if cur.Mode()&fs.ModeSymlink != 0 {
				t, err := g.r.Readlink(p)
				keep = err == nil && t == want.Target
			}
		}
		if !keep {
			if err := g.r.Remove(p); err != nil {
				return g.pathError(p, err)
			}
			exists = false
		}
	}
	switch want.Type {
	case TypeFile:
		flag := os.O_WRONLY | os.O_TRUNC | noFollow
		if !exists {
			flag = os.O_WRONLY | os.O_CREATE | os.O_EXCL | noFollow
		}
		f, err := g.r.OpenFile(p, flag, want.Mode.Perm())
		if err != nil {
			return g.pathError(p, err)
		}
		_, err = f.Write(want.Content)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return g.pathError(p, err)
		}
	case TypeDir:
		if !exists {
			if err := g.r.Mkdir(p, want.Mode.Perm()); err != nil {
				return g.pathError(p, err)
			}
		}
	case TypeSymlink:
		if !exists {
			if err := g.r.Symlink(want.Target, p); err != nil {
				return g.pathError(p, err)
			}
		}
	default:
		return draas.Invalidf("record for %s has file type %q: want file, dir or symlink", p, want.Type)
	}
	fi, err := g.r.Lstat(p)
	if err != nil {
		return g.pathError(p, err)
	}
	return g.fixMeta(p, fi, want, !exists)
}

// fixMeta gives p want's mode and owner where they differ, and want's label
// when p is new.
func (g *guestRoot) fixMeta(p string, fi fs.FileInfo, want *FileState, created bool) error {
	if want.Type != TypeSymlink && fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != want.Mode {
		if err := g.r.Chmod(p, want.Mode); err != nil {
			return g.pathError(p, err)
		}
	}
	if uid, gid := owner(fi); os.Geteuid() == 0 && (uid != want.UID || gid != want.GID) {
		if err := g.r.Lchown(p, want.UID, want.GID); err != nil {
			return g.pathError(p, err)
		}
	}
	if want.SELinux != "" && (created || getLabel(g.host(p)) != want.SELinux) {
		setLabel(g.host(p), want.SELinux)
	}
	return nil
}

// sameContent reports whether a and b are the same kind of thing with the
// same content (or target); modes, owners and labels are not compared.
func sameContent(a, b *FileState) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if a.Type != b.Type {
		return false
	}
	switch a.Type {
	case TypeFile:
		return bytes.Equal(a.Content, b.Content)
	case TypeSymlink:
		return a.Target == b.Target
	}
	return true
}

// sameState reports whether a and b are equal in content, mode and owner.
func sameState(a, b *FileState) bool {
	if !sameContent(a, b) {
		return false
	}
	if a == nil {
		return true
	}
	return (a.Type == TypeSymlink || a.Mode == b.Mode) && a.UID == b.UID && a.GID == b.GID
}

// validRecordPath reports whether p, from a record, is a clean relative
// path inside the root.
func validRecordPath(p string) bool {
	return p != "" && p != "." && !strings.HasPrefix(p, "/") && path.Clean(p) == p &&
		!slices.Contains(strings.Split(p, "/"), "..")
}
