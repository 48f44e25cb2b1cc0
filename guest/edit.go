package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/opendraas/draas"
)

// editor changes a guest and records each change in a Changes record before
// making it, so that a failure half way can still be rolled back.
type editor struct {
	ctx context.Context
	g   *guestRoot
	c   *Changes
	idx map[string]int // path → index in c.Files
}

func newEditor(ctx context.Context, g *guestRoot, c *Changes) *editor {
	return &editor{ctx: ctx, g: g, c: c, idx: map[string]int{}}
}

func (e *editor) warnf(format string, args ...any) {
	e.c.Warnings = append(e.c.Warnings, fmt.Sprintf(format, args...))
}

// read returns the resolved path of name and, if it is a regular file, its
// content. ok is false if it does not exist.
func (e *editor) read(name string) (p string, data []byte, ok bool, err error) {
	if p, err = e.g.resolve(name, true); err != nil {
		return "", nil, false, err
	}
	st, err := e.g.state(p)
	if err != nil || st == nil {
		return p, nil, false, err
	}
	if st.Type != TypeFile {
		return p, nil, false, draas.Invalidf("%s is a %s, not a regular file: fix the guest, then try again", e.g.host(p), st.Type)
	}
	return p, st.Content, true, nil
}

// list returns the names in directory dir, sorted, or nil if it does not
// exist (or is not a directory).
func (e *editor) list(dir string) (string, []string, error) {
	p, err := e.g.resolve(dir, true)
	if err != nil {
		return "", nil, err
	}
	fi, err := e.g.r.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) || err == nil && !fi.IsDir() {
		return p, nil, nil
	}
	if err != nil {
		return "", nil, e.g.pathError(p, err)
	}
	f, err := e.g.r.Open(p)
	if err != nil {
		return "", nil, e.g.pathError(p, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return "", nil, e.g.pathError(p, err)
	}
	slices.Sort(names)
	return p, names, nil
}

// exists reports whether name exists (following links inside the root).
func (e *editor) exists(name string) (bool, error) {
	p, err := e.g.resolve(name, true)
	if err != nil {
		return false, err
	}
	if _, err := e.g.r.Lstat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, e.g.pathError(p, err)
	}
	return true, nil
}

// isDir reports whether name is a directory (following links inside the
// root).
func (e *editor) isDir(name string) (bool, error) {
	p, err := e.g.resolve(name, true)
	if err != nil {
		return false, err
	}
	st, err := e.g.r.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, e.g.pathError(p, err)
	}
	return st.IsDir(), nil
}

// newState returns the state of a new path in the directory of p: the given
// type and mode, the directory's owner and SELinux label (which is what the
// guest itself would give a new file there, short of a type transition).
func (e *editor) newState(p string, t FileType, mode fs.FileMode) (*FileState, error) {
	st := &FileState{Type: t, Mode: mode}
	dir, err := e.g.state(path.Dir(p))
	if err != nil {
		return nil, err
	}
	if dir != nil {
		st.UID, st.GID, st.SELinux = dir.UID, dir.GID, dir.SELinux
	}
	return st, nil
}

// write makes the file name hold data, creating it with mode perm (and its
// missing parent directories) if it does not exist. name's links are
// resolved first; an existing file keeps its mode, owner and label.
func (e *editor) write(name string, data []byte, perm fs.FileMode, why string) error {
	p, err := e.g.resolve(name, true)
	if err != nil {
		return err
	}
	before, err := e.g.state(p)
	if err != nil {
		return err
	}
	if before != nil && before.Type != TypeFile {
		return draas.Invalidf("%s is a %s, not a regular file: fix the guest, then try again", e.g.host(p), before.Type)
	}
	var want *FileState
	if before != nil {
		if bytes.Equal(before.Content, data) {
			return nil
		}
		w := *before
		w.Content = data
		want = &w
	} else {
		if err := e.mkdirAll(path.Dir(p)); err != nil {
			return err
		}
		if want, err = e.newState(p, TypeFile, perm); err != nil {
			return err
		}
		want.Content = data
	}
	return e.change(p, before, want, why)
}

// remove removes name (a link itself, not its target) if it exists.
func (e *editor) remove(name, why string) error {
	p, err := e.g.resolve(name, false)
	if err != nil {
		return err
	}
	before, err := e.g.state(p)
	if err != nil || before == nil {
		return err
	}
	return e.change(p, before, nil, why)
}

// symlink makes name a symbolic link to target.
func (e *editor) symlink(target, name, why string) error {
	p, err := e.g.resolve(name, false)
	if err != nil {
		return err
	}
	before, err := e.g.state(p)
	if err != nil {
		return err
	}
	if before != nil && before.Type == TypeSymlink && before.Target == target {
		return nil
	}
	if err := e.mkdirAll(path.Dir(p)); err != nil {
		return err
	}
	want, err := e.newState(p, TypeSymlink, 0)
	if err != nil {
		return err
	}
	want.Target = target
	return e.change(p, before, want, why)
}

// mkdirAll creates the resolved directory p and its missing parents, each
// recorded.
func (e *editor) mkdirAll(p string) error {
	if p == "." {
		return nil
	}
	st, err := e.g.state(p)
	if err != nil {
		return err
	}
	if st != nil {
		if st.Type != TypeDir {
			return draas.Invalidf("%s is a %s, not a directory: fix the guest, then try again", e.g.host(p), st.Type)
		}
		return nil
	}
	if err := e.mkdirAll(path.Dir(p)); err != nil {
		return err
	}
	want, err := e.newState(p, TypeDir, 0o755)
	if err != nil {
		return err
	}
	return e.change(p, nil, want, "directory for the files below")
}

// change records the change of p from before to want, then makes it, then
// records what it made.
func (e *editor) change(p string, before, want *FileState, why string) error {
	if err := e.ctx.Err(); err != nil {
		return err
	}
	i, seen := e.idx[p]
	if seen {
		fc := &e.c.Files[i]
		fc.After = want
		if !strings.Contains(fc.Why, why) {
			fc.Why += "; " + why
		}
	} else {
		e.idx[p] = len(e.c.Files)
		i = len(e.c.Files)
		e.c.Files = append(e.c.Files, FileChange{Path: p, Why: why, Before: before, After: want})
	}
	if err := e.g.set(p, want); err != nil {
		return err
	}
	after, err := e.g.state(p)
	if err != nil {
		return err
	}
	e.c.Files[i].After = after
	return nil
}
