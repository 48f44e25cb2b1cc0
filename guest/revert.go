package guest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/opendraas/draas"
)

// Revert restores what c records, under root. It is what every
// [Preparer.Revert] does: the record, not the distribution, says what to
// undo. See [Preparer.Revert] for its contract.
func Revert(ctx context.Context, root string, c *Changes) error {
	if c == nil {
		return nil
	}
	if err := checkRecord(c); err != nil {
		return err
	}
	g, err := openGuest(root)
	if err != nil {
		return err
	}
	defer g.Close()
	return revert(ctx, g, c, false)
}

func checkRecord(c *Changes) error {
	if c.Format != changesFormat {
		return draas.Invalidf("guest change record has format %d, this version of draas reads format %d: revert with the draas version that prepared the guest", c.Format, changesFormat)
	}
	for _, f := range c.Files {
		if !validRecordPath(f.Path) {
			return draas.Invalidf("guest change record names path %q: want a clean path relative to the guest root; the record is corrupt", f.Path)
		}
		for _, s := range []*FileState{f.Before, f.After} {
			if s != nil && s.Type != TypeFile && s.Type != TypeDir && s.Type != TypeSymlink {
				return draas.Invalidf("guest change record for %s has file type %q: want file, dir or symlink; the record is corrupt", f.Path, s.Type)
			}
		}
	}
	for _, a := range c.FirstBoot {
		for _, w := range a.Writes {
			if !validRecordPath(w) {
				return draas.Invalidf("guest change record: first-boot action %q writes %q: want a clean path relative to the guest root; the record is corrupt", a.Name, w)
			}
		}
	}
	return nil
}

// revert undoes c. Unless force is set, it first checks every entry and
// changes nothing if one was changed since Prepare; with force (rolling back
// a failed Prepare) it restores every entry's previous state regardless.
func revert(ctx context.Context, g *guestRoot, c *Changes, force bool) error {
	todo := make([]bool, len(c.Files))
	var conflicts []string
	for i, f := range c.Files {
		if err := ctx.Err(); err != nil {
			return err
		}
		// A parent that became a link since Prepare must not redirect us.
		if p, err := g.resolve(f.Path, false); err != nil {
			return err
		} else if p != f.Path {
			conflicts = append(conflicts, f.Path+" (a directory on its way became a symbolic link)")
			continue
		}
		cur, err := g.state(f.Path)
		if err != nil {
			return err
		}
		switch {
		case sameState(cur, f.Before):
		case force || sameContent(cur, f.Before) || sameContent(cur, f.After):
			todo[i] = true
		default:
			conflicts = append(conflicts, f.Path)
		}
	}
	if len(conflicts) > 0 {
		return fmt.Errorf("%w: revert %s: changed since it was prepared (neither as prepared nor as before): %s: restore each by hand or delete its entry from the record, then revert again",
			draas.ErrConflict, g.path, strings.Join(conflicts, ", "))
	}
	var errs []error
	// What first-boot actions wrote goes first: it lives in directories
	// that Prepare may have created.
	for i := len(c.FirstBoot) - 1; i >= 0; i-- {
		ws := c.FirstBoot[i].Writes
		for j := len(ws) - 1; j >= 0; j-- {
			if p, err := g.resolve(ws[j], false); err != nil || p != ws[j] {
				continue // not where the action writes any more: leave it
			}
			if err := g.set(ws[j], nil); err != nil && !isNotEmpty(err) {
				errs = append(errs, err)
			}
		}
	}
	for i := len(c.Files) - 1; i >= 0; i-- {
		if !todo[i] {
			continue
		}
		f := c.Files[i]
		if err := g.set(f.Path, f.Before); err != nil {
			if isNotEmpty(err) {
				err = fmt.Errorf("%w: revert %s: directory %s, which Prepare created, now holds files it did not write: move them away, then revert again", draas.ErrConflict, g.path, g.host(f.Path))
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func isNotEmpty(err error) bool { return errors.Is(err, syscall.ENOTEMPTY) }
