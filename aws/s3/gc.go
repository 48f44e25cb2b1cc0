package s3

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/opendraas/draas"
)

// PruneStats is what [Store.Prune] did.
type PruneStats struct {
	// Kept is the number of committed points left.
	Kept int
	// Deleted lists the IDs of the points deleted, oldest first.
	Deleted []string
	// ManifestsDeleted counts the manifests deleted with them.
	ManifestsDeleted int
	// ManifestsLeft counts manifests of deleted points left in place
	// because a running backup uses the point as its base; GC removes them
	// once that backup's pending marker is older than the grace period.
	ManifestsLeft int
}

// Prune deletes vm's oldest committed points so that keep remain. keep must
// be at least 1: the latest point is never pruned. Each point is deleted by
// removing its record first (the point then no longer exists for readers)
// and then its manifests. Chunks are left for [Store.GC].
func (s *Store) Prune(ctx context.Context, vm string, keep int) (PruneStats, error) {
	var st PruneStats
	if s.err != nil {
		return st, s.err
	}
	if err := validName("vm", vm); err != nil {
		return st, fmt.Errorf("prune: %w", err)
	}
	if keep < 1 {
		return st, draas.Invalidf("prune vm %s: keep is %d; keep at least 1 point (the latest is never pruned)", vm, keep)
	}
	all, err := s.scan(ctx, s.vmPointsPrefix(vm))
	if err != nil {
		return st, err
	}
	pts := all[vm]
	var ids []string
	for id, p := range pts {
		if p.point != nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if len(ids) <= keep {
		st.Kept = len(ids)
		return st, nil
	}
	bases, err := s.liveBases(ctx, all, s.now(), s.opts.Grace)
	if err != nil {
		return st, err
	}
	st.Kept = keep
	for _, id := range ids[:len(ids)-keep] {
		p := pts[id]
		if _, err := s.deleteKeys(ctx, "prune point", []string{p.point.Key}); err != nil {
			return st, fmt.Errorf("prune vm %s point %s: %w", vm, id, err)
		}
		st.Deleted = append(st.Deleted, id)
		var keys []string
		if p.pending != nil {
			keys = append(keys, p.pending.Key)
		}
		if bases[vm+"/"+id] {
			st.ManifestsLeft += len(p.manifests)
		} else {
			for _, m := range p.manifests {
				keys = append(keys, m.Key)
			}
		}
		slices.Sort(keys)
		n, err := s.deleteKeys(ctx, "prune point", keys)
		st.ManifestsDeleted += min(n, len(p.manifests))
		if err != nil {
			return st, fmt.Errorf("prune vm %s point %s (record deleted, manifests left for GC): %w", vm, id, err)
		}
	}
	return st, nil
}

// liveBases returns "vm/id" of the points that pending markers younger than
// grace name as their base.
func (s *Store) liveBases(ctx context.Context, all map[string]map[string]*pointObjs, now time.Time, grace time.Duration) (map[string]bool, error) {
	var mu sync.Mutex
	bases := make(map[string]bool)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Concurrency)
	for vm, pts := range all {
		for id, p := range pts {
			if p.pending == nil || now.Sub(p.pending.LastModified) >= grace {
				continue
			}
			g.Go(func() error {
				base, err := s.pendingBase(gctx, vm, id)
				if err != nil || base == "" {
					return err
				}
				mu.Lock()
				bases[vm+"/"+base] = true
				mu.Unlock()
				return nil
			})
		}
	}
	return bases, g.Wait()
}

// pendingBase reads a pending marker and returns its base ("" when the
// marker is gone, or names no base).
func (s *Store) pendingBase(ctx context.Context, vm, id string) (string, error) {
	res := "vm " + vm + " point " + id
	data, err := s.get(ctx, "read pending marker", res, s.pendingKey(vm, id), nil, maxPointRecord)
	if errors.Is(err, draas.ErrNotFound) {
		return "", nil // committed or aborted meanwhile
	}
	if err != nil {
		return "", err
	}
	var rec pendingRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return "", &draas.OpError{Op: "read pending marker", Resource: res, Kind: draas.ErrChecksumMismatch, Err: err}
	}
	if rec.Base != "" && validName("point", rec.Base) != nil {
		return "", &draas.OpError{Op: "read pending marker", Resource: res, Kind: draas.ErrChecksumMismatch,
			Err: fmt.Errorf("base %q is not a point name", rec.Base)}
	}
	return rec.Base, nil
}

// GCOptions tunes a [Store.GC].
type GCOptions struct {
	// Grace is how old an unreferenced chunk, an uncommitted manifest or a
	// pending marker must be to be deleted; 0 means Options.Grace (24h by
	// default). It must exceed twice the longest backup; see Options.Grace.
	Grace time.Duration
	// DryRun counts what would be deleted and deletes nothing.
	DryRun bool
}

// GCStats is what a [Store.GC] found and did.
type GCStats struct {
	// Chunks counts the chunk objects listed.
	Chunks int
	// Young counts chunks younger than the grace period, left alone.
	Young int
	// Referenced counts the distinct chunks that committed points, backups
	// in progress and their base points reference.
	Referenced int
	// Deleted and DeletedBytes count the chunks deleted (with DryRun: that
	// would be deleted).
	Deleted      int
	DeletedBytes int64
	// Stale counts the uncommitted manifests and pending markers older
	// than the grace period that were (or would be) deleted.
	Stale int
}

// GC deletes chunks that no live manifest references and that are older
// than the grace period, and uncommitted manifests and pending markers
// older than the grace period. A chunk a live manifest references is never
// deleted. Live manifests are those of committed points, those younger than
// the grace period (backups in progress) and those of points that a backup
// in progress uses as its base.
//
// GC lists the chunks first and the references after, then checks each
// candidate's age again with HeadObject, then lists the references a second
// time and deletes only candidates neither listing references; see
// docs/backup-store.md for why this is safe alongside running backups. It
// stops without deleting anything if a live manifest cannot be read.
// Memory is about 100 bytes per referenced chunk.
func (s *Store) GC(ctx context.Context, opts GCOptions) (GCStats, error) {
	var st GCStats
	if s.err != nil {
		return st, s.err
	}
	grace := opts.Grace
	if grace <= 0 {
		grace = s.opts.Grace
	}
	now := s.now()

	// 1. Chunks, and the candidates among them.
	cands, err := s.gcCandidates(ctx, now, grace, &st)
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}

	// 2. References.
	refs := newGCRefs()
	if _, err := s.gcPass(ctx, now, grace, refs); err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	for sum := range refs.refs {
		delete(cands, sum)
	}

	// 3. Re-check the candidates' age: a writer renews a chunk it reuses.
	renewed, err := s.gcRenewed(ctx, now, grace, cands)
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	for _, sum := range renewed {
		delete(cands, sum)
	}

	// 4. References again: points committed and manifests written since
	// the first pass.
	stale, err := s.gcPass(ctx, now, grace, refs)
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	st.Referenced = len(refs.refs)
	var keys []string
	for sum, o := range cands {
		if _, ok := refs.refs[sum]; ok {
			continue
		}
		keys = append(keys, o.Key)
		st.DeletedBytes += o.Size
	}
	slices.Sort(keys)
	st.Deleted, st.Stale = len(keys), len(stale)
	if opts.DryRun {
		return st, nil
	}

	// 5. Delete.
	n, err := s.deleteKeys(ctx, "gc", keys)
	if err != nil {
		st.Deleted = n
		return st, fmt.Errorf("gc: %w", err)
	}
	n, err = s.deleteKeys(ctx, "gc", stale)
	if err != nil {
		st.Stale = n
		return st, fmt.Errorf("gc: %w", err)
	}
	return st, nil
}

// gcCandidates lists the chunks, counting them in st, and returns those
// older than grace by checksum.
func (s *Store) gcCandidates(ctx context.Context, now time.Time, grace time.Duration, st *GCStats) (map[[32]byte]objInfo, error) {
	cands := make(map[[32]byte]objInfo)
	err := s.list(ctx, s.pfx+chunksDir, func(o objInfo) error {
		sum, ok := s.parseChunkKey(o.Key)
		if !ok {
			return nil // not ours: leave it
		}
		st.Chunks++
		if now.Sub(o.LastModified) < grace {
			st.Young++
			return nil
		}
		cands[sum] = o
		return nil
	})
	return cands, err
}

// gcRenewed asks each candidate's age again with HeadObject and returns the
// candidates that a writer renewed since the listing, or that are gone.
func (s *Store) gcRenewed(ctx context.Context, now time.Time, grace time.Duration, cands map[[32]byte]objInfo) ([][32]byte, error) {
	var (
		mu      sync.Mutex
		renewed [][32]byte
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Concurrency)
	for sum, o := range cands {
		g.Go(func() error {
			info, err := s.head(gctx, "gc", "chunk "+hex.EncodeToString(sum[:]), o.Key)
			if err != nil && !errors.Is(err, draas.ErrNotFound) {
				return err
			}
			// LastModified from HEAD has whole seconds, from a listing
			// perhaps milliseconds. A store that does not tell keeps the
			// chunk.
			if err != nil || info.LastModified.IsZero() ||
				info.LastModified.Sub(o.LastModified.Truncate(time.Second)) >= time.Second || now.Sub(info.LastModified) < grace {
				mu.Lock()
				renewed = append(renewed, sum)
				mu.Unlock()
			}
			return nil
		})
	}
	return renewed, g.Wait()
}

// parseChunkKey returns the SHA-256 a chunk key names.
func (s *Store) parseChunkKey(key string) ([32]byte, bool) {
	var sum [32]byte
	rest, ok := strings.CutPrefix(key, s.pfx+chunksDir)
	if !ok || len(rest) != 2+1+64 || rest[2] != '/' || rest[:2] != rest[3:5] {
		return sum, false
	}
	if _, err := hex.Decode(sum[:], []byte(rest[3:])); err != nil || hex.EncodeToString(sum[:]) != rest[3:] {
		return sum, false
	}
	return sum, true
}

// gcRefs accumulates the references GC found over its passes.
type gcRefs struct {
	refs    map[[32]byte]struct{}
	loaded  map[string]string // manifest key → version read (see version)
	markers map[string]string // pending marker key → version read
	bases   map[string]bool   // "vm/id" of live bases
}

func newGCRefs() *gcRefs {
	return &gcRefs{
		refs:    make(map[[32]byte]struct{}),
		loaded:  make(map[string]string),
		markers: make(map[string]string),
		bases:   make(map[string]bool),
	}
}

// gcPass lists the points of every VM and adds to r the chunks of every
// live manifest not read before. It returns the stale objects: manifests of
// uncommitted points that are older than grace and no live base, and
// pending markers older than grace.
func (s *Store) gcPass(ctx context.Context, now time.Time, grace time.Duration, r *gcRefs) ([]string, error) {
	all, err := s.scan(ctx, s.pfx+vmsDir)
	if err != nil {
		return nil, err
	}
	young := func(o objInfo) bool { return now.Sub(o.LastModified) < grace }

	// Markers first: they decide which bases are live.
	fresh := make(map[string]map[string]*pointObjs)
	for vm, pts := range all {
		for id, p := range pts {
			if p.pending != nil && young(*p.pending) && r.markers[p.pending.Key] != version(*p.pending) {
				if fresh[vm] == nil {
					fresh[vm] = make(map[string]*pointObjs)
				}
				fresh[vm][id] = p
				r.markers[p.pending.Key] = version(*p.pending)
			}
		}
	}
	bases, err := s.liveBases(ctx, fresh, now, grace)
	if err != nil {
		return nil, err
	}
	for b := range bases {
		r.bases[b] = true
	}

	type load struct {
		vm, id, disk string
		o            objInfo
	}
	var loads []load
	var stale []string
	for vm, pts := range all {
		for id, p := range pts {
			live := p.point != nil || r.bases[vm+"/"+id]
			for disk, o := range p.manifests {
				switch {
				case live || young(o):
					if r.loaded[o.Key] != version(o) {
						loads = append(loads, load{vm, id, disk, o})
					}
				default:
					stale = append(stale, o.Key)
				}
			}
			if p.pending != nil && !young(*p.pending) {
				stale = append(stale, p.pending.Key)
			}
		}
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Concurrency)
	for _, l := range loads {
		g.Go(func() error {
			m, err := s.loadManifest(gctx, l.vm, l.id, l.disk, "")
			if errors.Is(err, draas.ErrNotFound) {
				return nil // pruned or aborted meanwhile
			}
			if err != nil {
				return fmt.Errorf("a live manifest cannot be read, so nothing is deleted (repair or delete s3://%s/%s): %w", s.bucket, l.o.Key, err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, b := range m.Blocks {
				r.refs[b.Sum] = struct{}{}
			}
			r.loaded[l.o.Key] = version(l.o)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	slices.Sort(stale)
	return stale, nil
}

// version identifies one version of an object as a listing shows it.
func version(o objInfo) string { return o.ETag + " " + o.LastModified.UTC().Format(time.RFC3339Nano) }
