package s3

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/opendraas/draas"
)

// Limits on what a record may weigh: far above what the store writes (a
// manifest of a fully allocated 64 TiB disk is about 10 GB), so that a
// damaged object cannot make a reader allocate without bound.
const (
	maxPointRecord = 16 << 20
	maxManifest    = 16 << 30
)

// pointObjs are the objects of one point found by a listing.
type pointObjs struct {
	point     *objInfo
	pending   *objInfo
	manifests map[string]objInfo // by disk name
}

// scan lists the objects under prefix, which is the vms/ folder or one VM's
// points folder, and groups them by VM and point. Keys that do not fit the
// layout are ignored.
func (s *Store) scan(ctx context.Context, prefix string) (map[string]map[string]*pointObjs, error) {
	root := s.pfx + vmsDir
	out := make(map[string]map[string]*pointObjs)
	err := s.list(ctx, prefix, func(o objInfo) error {
		rest, ok := strings.CutPrefix(o.Key, root)
		if !ok {
			return nil
		}
		parts := strings.Split(rest, "/")
		// VM / "points" / ID / file   or   VM / "points" / ID / "disks" / DISK.json
		if len(parts) < 4 || parts[1] != "points" || validName("vm", parts[0]) != nil || validName("point", parts[2]) != nil {
			return nil
		}
		vm, id := parts[0], parts[2]
		get := func() *pointObjs {
			pts := out[vm]
			if pts == nil {
				pts = make(map[string]*pointObjs)
				out[vm] = pts
			}
			p := pts[id]
			if p == nil {
				p = &pointObjs{manifests: make(map[string]objInfo)}
				pts[id] = p
			}
			return p
		}
		switch {
		case len(parts) == 4 && parts[3] == pointFile:
			get().point = &o
		case len(parts) == 4 && parts[3] == pendingFile:
			get().pending = &o
		case len(parts) == 5 && parts[3] == "disks" && strings.HasSuffix(parts[4], manifestExt):
			disk := strings.TrimSuffix(parts[4], manifestExt)
			if validName("disk", disk) == nil {
				get().manifests[disk] = o
			}
		}
		return nil
	})
	return out, err
}

// committedIDs returns the IDs of vm's committed points in ascending order.
func (s *Store) committedIDs(ctx context.Context, vm string) ([]string, error) {
	all, err := s.scan(ctx, s.vmPointsPrefix(vm))
	if err != nil {
		return nil, err
	}
	var ids []string
	for id, p := range all[vm] {
		if p.point != nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// loadPoint reads and checks a committed point's record. A point that is
// not committed is an error wrapping draas.ErrNotFound.
func (s *Store) loadPoint(ctx context.Context, vm, id string) (*pointRecord, error) {
	res := "vm " + vm + " point " + id
	data, err := s.get(ctx, "read point", res, s.pointKey(vm, id), nil, maxPointRecord)
	if err != nil {
		return nil, err
	}
	rec, err := decodePoint(data, vm, id)
	if err != nil {
		return nil, &draas.OpError{Op: "read point", Resource: res, Err: fmt.Errorf("s3://%s/%s: %w", s.bucket, s.pointKey(vm, id), err)}
	}
	return rec, nil
}

// loadManifest reads and checks a manifest; when want is not empty the
// manifest's checksum must equal it (the point record's).
func (s *Store) loadManifest(ctx context.Context, vm, id, disk, want string) (*manifest, error) {
	res := "vm " + vm + " point " + id + " disk " + disk
	data, err := s.get(ctx, "read manifest", res, s.manifestKey(vm, id, disk), nil, maxManifest)
	if err != nil {
		return nil, err
	}
	m, err := decodeManifest(data, vm, id, disk)
	if err != nil {
		return nil, &draas.OpError{Op: "read manifest", Resource: res, Err: err}
	}
	if want != "" && m.Checksum != want {
		return nil, &draas.OpError{Op: "read manifest", Resource: res, Kind: draas.ErrChecksumMismatch,
			Err: fmt.Errorf("manifest checksum %s is not %s, the one the point record lists (replaced after the commit?)", m.Checksum, want)}
	}
	return m, nil
}

// Points returns vm's committed recovery points, oldest first (in ID order,
// which is time order to the second). A VM without points has none: the
// result is empty and the error nil. Uncommitted and aborted points are not
// listed.
//
// A point whose record (point.json) is damaged (ErrChecksumMismatch) or of
// a format this version cannot read (ErrInvalid) is skipped: Points returns
// the other points together with an error wrapping that sentinel, naming
// each skipped point's VM, ID and key. Any other error returns no points.
func (s *Store) Points(ctx context.Context, vm string) ([]draas.RecoveryPoint, error) {
	if s.err != nil {
		return nil, s.err
	}
	if err := validName("vm", vm); err != nil {
		return nil, fmt.Errorf("list points: %w", err)
	}
	ids, err := s.committedIDs(ctx, vm)
	if err != nil {
		return nil, err
	}
	out := make([]draas.RecoveryPoint, len(ids))
	broken := make([]error, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Concurrency)
	for i, id := range ids {
		g.Go(func() error {
			rec, err := s.loadPoint(gctx, vm, id)
			if err == nil {
				out[i], err = rec.recoveryPoint()
			}
			if err != nil && (errors.Is(err, draas.ErrChecksumMismatch) || errors.Is(err, draas.ErrInvalid)) {
				broken[i] = fmt.Errorf("recovery point %s of VM %s is unreadable and skipped (s3://%s/%s): %w", id, vm, s.bucket, s.pointKey(vm, id), err)
				return nil
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	valid := out[:0]
	for i, p := range out {
		if broken[i] == nil {
			valid = append(valid, p)
		}
	}
	return valid, errors.Join(broken...)
}

// Latest returns vm's newest committed recovery point, or an error wrapping
// draas.ErrNotFound when it has none.
func (s *Store) Latest(ctx context.Context, vm string) (draas.RecoveryPoint, error) {
	if s.err != nil {
		return draas.RecoveryPoint{}, s.err
	}
	if err := validName("vm", vm); err != nil {
		return draas.RecoveryPoint{}, fmt.Errorf("latest point: %w", err)
	}
	ids, err := s.committedIDs(ctx, vm)
	if err != nil {
		return draas.RecoveryPoint{}, err
	}
	if len(ids) == 0 {
		return draas.RecoveryPoint{}, &draas.OpError{Op: "latest point", Resource: "vm " + vm, Kind: draas.ErrNotFound,
			Err: fmt.Errorf("no committed recovery point in s3://%s/%s", s.bucket, s.vmPointsPrefix(vm))}
	}
	rec, err := s.loadPoint(ctx, vm, ids[len(ids)-1])
	if err != nil {
		return draas.RecoveryPoint{}, err
	}
	return rec.recoveryPoint()
}

// VMs returns the names of the VMs that have at least one committed
// recovery point, sorted.
func (s *Store) VMs(ctx context.Context) ([]string, error) {
	if s.err != nil {
		return nil, s.err
	}
	all, err := s.scan(ctx, s.pfx+vmsDir)
	if err != nil {
		return nil, err
	}
	var vms []string
	for vm, pts := range all {
		for _, p := range pts {
			if p.point != nil {
				vms = append(vms, vm)
				break
			}
		}
	}
	slices.Sort(vms)
	return vms, nil
}

// OpenDisk returns a source that reads one disk of a committed recovery
// point. An unknown VM, point or disk, or a point that is not committed, is
// an error wrapping draas.ErrNotFound; a damaged manifest or one that does
// not match the point's record, draas.ErrChecksumMismatch.
//
// The source is a *[Source]: a draas.ChangeTracker (bases are point IDs of
// the same VM), draas.ExtentSource and draas.ChecksumSource. The return type
// is draas.BlockSource so that *Store is a draas.BackupReader; use the
// helpers draas.ChangedExtents and draas.AllocatedExtents, or assert
// *Source, to reach the rest.
func (s *Store) OpenDisk(ctx context.Context, vm, point, disk string) (draas.BlockSource, error) {
	src, err := s.openDisk(ctx, vm, point, disk)
	if err != nil {
		return nil, err
	}
	return src, nil
}

func (s *Store) openDisk(ctx context.Context, vm, point, disk string) (*Source, error) {
	if s.err != nil {
		return nil, s.err
	}
	for _, c := range [][2]string{{"vm", vm}, {"point", point}, {"disk", disk}} {
		if err := validName(c[0], c[1]); err != nil {
			return nil, fmt.Errorf("open disk: %w", err)
		}
	}
	rec, err := s.loadPoint(ctx, vm, point)
	if err != nil {
		return nil, err
	}
	d, ok := rec.disk(disk)
	if !ok {
		names := make([]string, len(rec.Disks))
		for i, d := range rec.Disks {
			names[i] = d.Name
		}
		return nil, &draas.OpError{Op: "open disk", Resource: "vm " + vm + " point " + point + " disk " + disk, Kind: draas.ErrNotFound,
			Err: fmt.Errorf("the point has disks %q", names)}
	}
	m, err := s.loadManifest(ctx, vm, point, disk, d.Manifest)
	if err != nil {
		return nil, err
	}
	return newSource(s, m), nil
}
