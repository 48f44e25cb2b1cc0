package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/replicate"
)

// config is what both benchmarks take.
type config struct {
	// images are the raw disk images: one for backup2ebs, one per VM for
	// replicate. They are changed in place between the two rounds.
	images []string
	// changePercent is the share of each image's blocks changed between
	// the full and the incremental round.
	changePercent float64
	// concurrency is blockcopy's blocks in flight per copy (0: its default).
	concurrency int
	// vmConcurrency is the VMs replicated at once (0: replicate's default).
	vmConcurrency int
	seed          uint64
	// rounds is the number of incremental rounds after the full one; the
	// ratios use their median.
	rounds int
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6472)) }

// pointTimes hands out recovery point times one second apart, ending
// before now: point IDs sort by time to the second.
type pointTimes struct{ next time.Time }

func newPointTimes() *pointTimes {
	return &pointTimes{next: time.Now().Add(-time.Hour).Truncate(time.Second)}
}

func (p *pointTimes) take() time.Time {
	t := p.next
	p.next = t.Add(time.Second)
	return t
}

// copyFigures is one timed copy or replication round.
type copyFigures struct {
	wall   time.Duration
	cpu    time.Duration // CPU time of the whole process: client and simulator
	blocks int64         // blocks written
	bytes  int64         // bytes written
	calls  calls
}

// cores says how busy the CPUs were: CPU time over wall time, against the
// cores the machine has. Near the number of cores, the copy was CPU-bound.
func (f copyFigures) cores() string {
	return fmt.Sprintf("CPU %.1f s = %.2f of %d cores busy", f.cpu.Seconds(), f.cpu.Seconds()/f.wall.Seconds(), runtime.NumCPU())
}

func (f copyFigures) mibps(n int64) float64 { return float64(n) / (1 << 20) / f.wall.Seconds() }

// perGiB returns requests per GiB of n bytes.
func (f copyFigures) perGiB(n int64) float64 {
	return float64(f.calls.total()) / (float64(n) / (1 << 30))
}

// runBackup2EBS measures the copy of a recovery point from the backup
// store into a new EBS snapshot: a full copy, then, after changing
// changePercent % of the image's blocks and backing it up again, an
// incremental copy of the changed blocks onto a snapshot whose parent is
// the first. Both snapshots are compared with the image byte for byte
// (untimed).
func runBackup2EBS(ctx context.Context, w io.Writer, cfg config) error {
	if len(cfg.images) != 1 {
		return draas.Invalidf("backup2ebs takes one image, got %d", len(cfg.images))
	}
	img := cfg.images[0]
	s, err := startSim(cfg.concurrency)
	if err != nil {
		return err
	}
	defer s.Close()
	times := newPointTimes()
	disks := map[string]string{"disk-0": img}
	data, err := dataBytes(img)
	if err != nil {
		return err
	}

	p1, took, src, err := backupDisk(ctx, s, disks, times.take(), cfg.concurrency)
	if err != nil {
		return err
	}
	size := src.Size()
	fmt.Fprintf(w, "image:       %s, %s, %s of it in blocks with data\n", filepath.Base(img), mib(size), mib(data))
	fmt.Fprintf(w, "backup 1:    %.2f s (%.0f MiB/s of disk), point %s\n", took.Seconds(), float64(size)/(1<<20)/took.Seconds(), p1)

	full, snap1, err := copyToEBS(ctx, s, src, "", nil, cfg.concurrency)
	if err != nil {
		return fmt.Errorf("full copy: %w", err)
	}
	if err := compareSnapshot(s.srv, snap1, img); err != nil {
		return err
	}
	fmt.Fprintf(w, "full copy:   %.2f s, %d blocks, %.0f MiB/s of disk, %.0f MiB/s of data, %s; verified byte for byte\n",
		full.wall.Seconds(), full.blocks, full.mibps(size), full.mibps(full.bytes), full.cores())
	fmt.Fprintf(w, "  requests:  %d = %.0f per GiB of data sent (%.0f per GiB of disk): %s\n",
		full.calls.total(), full.perGiB(full.bytes), full.perGiB(size), full.calls)

	nblocks := (size + blockSize - 1) / blockSize
	prevPoint, prevSnap := p1, snap1
	var incrs []copyFigures
	for round := range cfg.rounds {
		changed, err := changeFile(img, cfg.changePercent, cfg.seed+uint64(round))
		if err != nil {
			return err
		}
		point, took, src, err := backupDisk(ctx, s, disks, times.take(), cfg.concurrency)
		if err != nil {
			return err
		}
		exts, err := draas.ChangedExtents(ctx, src, prevPoint)
		if err != nil {
			return err
		}
		incr, snap, err := copyToEBS(ctx, s, src, prevSnap, exts, cfg.concurrency)
		if err != nil {
			return fmt.Errorf("incremental copy %d: %w", round+1, err)
		}
		if err := compareSnapshot(s.srv, snap, img); err != nil {
			return err
		}
		fmt.Fprintf(w, "incremental %d: %d of %d blocks (%.2f %%) rewritten, backed up in %.2f s; copied in %.3f s, %d blocks on parent %s, %s; verified byte for byte\n",
			round+1, changed, nblocks, 100*float64(changed)/float64(nblocks), took.Seconds(), incr.wall.Seconds(), incr.blocks, prevSnap, incr.cores())
		fmt.Fprintf(w, "  requests:  %d: %s\n", incr.calls.total(), incr.calls)
		incrs = append(incrs, incr)
		prevPoint, prevSnap = point, snap
	}
	incr := median(incrs)
	fmt.Fprintf(w, "ratio incremental/full (median of %d incremental copies): time %.2f %%, blocks %.2f %%, requests %.2f %%\n",
		len(incrs), 100*incr.wall.Seconds()/full.wall.Seconds(), 100*float64(incr.blocks)/float64(full.blocks),
		100*float64(incr.calls.total())/float64(full.calls.total()))
	return nil
}

// median returns the copy of median wall time.
func median(fs []copyFigures) copyFigures {
	sorted := slices.SortedFunc(slices.Values(fs), func(a, b copyFigures) int { return cmp.Compare(a.wall, b.wall) })
	return sorted[(len(sorted)-1)/2]
}

// copyToEBS copies src into a new snapshot, on parent when it is set,
// over exts (nil: all allocated blocks), and returns the copy's figures and
// the snapshot's ID. The copy is timed from StartSnapshot to the end of
// CompleteSnapshot.
func copyToEBS(ctx context.Context, s *sim, src draas.BlockSource, parent string, exts []draas.Extent, concurrency int) (copyFigures, string, error) {
	before, cpu := s.calls(), cpuTime()
	start := time.Now()
	sink, err := ebs.NewSink(ctx, s.ebs, src.Size(), ebs.SinkOptions{ParentSnapshotID: parent})
	if err != nil {
		return copyFigures{}, "", err
	}
	st, err := blockcopy.Copy(ctx, sink, src, blockcopy.Options{Concurrency: concurrency, Extents: exts})
	if err != nil {
		return copyFigures{}, "", err
	}
	f := copyFigures{wall: time.Since(start), cpu: cpuTime() - cpu, blocks: st.BlocksCopied, bytes: st.BytesCopied, calls: s.calls().since(before)}
	return f, sink.SnapshotID(), nil
}

// runReplicate measures replicate.ReplicateAll on a plan of one VM per
// image: full DR copies, then, after changing changePercent % of every
// image's blocks and backing each VM up again, incremental ones. Every DR
// copy is compared with its image byte for byte (untimed).
func runReplicate(ctx context.Context, w io.Writer, cfg config) error {
	if len(cfg.images) == 0 {
		return draas.Invalidf("replicate takes one image per VM, got none")
	}
	s, err := startSim(cfg.concurrency)
	if err != nil {
		return err
	}
	defer s.Close()
	plan := draas.Plan{Name: "bench", ReplicationInterval: time.Hour}
	var size, data int64
	for i, img := range cfg.images {
		vm := fmt.Sprintf("vm%d", i+1)
		plan.VMs = append(plan.VMs, draas.VM{Name: vm})
		n, err := dataBytes(img)
		if err != nil {
			return err
		}
		sz, err := fileSize(img)
		if err != nil {
			return err
		}
		data, size = data+n, size+sz
	}
	var ev eventLog
	r, err := replicate.New(plan, s.store, ebs.NewCopies(s.ebs, s.ec2, ebs.CopiesOptions{}),
		replicate.Options{Copy: blockcopy.Options{Concurrency: cfg.concurrency}, VMConcurrency: cfg.vmConcurrency, Events: ev.add})
	if err != nil {
		return err
	}
	times := newPointTimes()
	backupAll := func() (time.Duration, error) {
		start := time.Now()
		at := times.take()
		for i, img := range cfg.images {
			if _, _, err := backup(ctx, s.store, plan.VMs[i].Name, map[string]string{"disk-0": img}, at, cfg.concurrency); err != nil {
				return 0, err
			}
		}
		return time.Since(start), nil
	}
	took, err := backupAll()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "plan:        %d VMs of one disk each, %s of disks, %s of it in blocks with data\n", len(cfg.images), mib(size), mib(data))
	fmt.Fprintf(w, "backup 1:    %.2f s for all VMs\n", took.Seconds())

	ev.reset()
	full, err := replicateRound(ctx, s, r, cfg.images)
	if err != nil {
		return fmt.Errorf("full replication: %w", err)
	}
	fmt.Fprintf(w, "full:        %.2f s, %d blocks sent (%.0f MiB/s of data), actions %s, %s; verified byte for byte\n",
		full.wall.Seconds(), full.blocks, full.mibps(full.bytes), full.actions, full.cores())
	fmt.Fprintf(w, "  requests:  %d = %.0f per GiB of data sent: %s\n", full.calls.total(), full.perGiB(full.bytes), full.calls)
	fmt.Fprintf(w, "  phases:    %s\n", ev.phases())

	nblocks := size / blockSize
	var incrs []copyFigures
	for round := range cfg.rounds {
		var changed int
		for i, img := range cfg.images {
			n, err := changeFile(img, cfg.changePercent, cfg.seed+uint64(round*len(cfg.images)+i))
			if err != nil {
				return err
			}
			changed += n
		}
		took, err := backupAll()
		if err != nil {
			return err
		}
		ev.reset()
		incr, err := replicateRound(ctx, s, r, cfg.images)
		if err != nil {
			return fmt.Errorf("incremental replication %d: %w", round+1, err)
		}
		fmt.Fprintf(w, "incremental %d: %d of %d blocks (%.2f %%) rewritten, backed up in %.2f s; replicated in %.3f s, %d blocks sent (the %d changed: %t), actions %s, %s; verified byte for byte\n",
			round+1, changed, nblocks, 100*float64(changed)/float64(nblocks), took.Seconds(),
			incr.wall.Seconds(), incr.blocks, changed, incr.blocks == int64(changed), incr.actions, incr.cores())
		fmt.Fprintf(w, "  requests:  %d: %s\n", incr.calls.total(), incr.calls)
		fmt.Fprintf(w, "  phases:    %s\n", ev.phases())
		incrs = append(incrs, incr.copyFigures)
	}
	incr := median(incrs)
	timeRatio := 100 * incr.wall.Seconds() / full.wall.Seconds()
	blockRatio := 100 * float64(incr.blocks) / float64(full.blocks)
	fmt.Fprintf(w, "ratio incremental/full (median of %d incremental rounds): time %.2f %% (goal <= 5 %%: %s), blocks sent %.2f %% (goal <= 2 %%: %s)\n",
		len(incrs), timeRatio, verdict(timeRatio <= 5), blockRatio, verdict(blockRatio <= 2))
	return nil
}

// roundFigures is a timed replication round.
type roundFigures struct {
	copyFigures
	actions string
}

// replicateRound runs ReplicateAll, then compares every VM's new DR copy
// with its image.
func replicateRound(ctx context.Context, s *sim, r *replicate.Replicator, images []string) (roundFigures, error) {
	before, cpu := s.calls(), cpuTime()
	start := time.Now()
	results, err := r.ReplicateAll(ctx)
	if err != nil {
		return roundFigures{}, err
	}
	f := roundFigures{copyFigures: copyFigures{wall: time.Since(start), cpu: cpuTime() - cpu, calls: s.calls().since(before)}}
	count := map[replicate.Action]int{}
	for i, res := range results {
		f.blocks += res.BlocksSent
		f.bytes += res.BytesSent
		count[res.Action]++
		if len(res.Disks) != 1 {
			return f, fmt.Errorf("%s: %d disks copied, want 1", res.VM, len(res.Disks))
		}
		if err := compareSnapshot(s.srv, res.Disks[0].SnapshotID, images[i]); err != nil {
			return f, fmt.Errorf("%s: %w", res.VM, err)
		}
	}
	var parts []string
	for a, n := range count {
		parts = append(parts, fmt.Sprintf("%d %s", n, a))
	}
	f.actions = strings.Join(parts, ", ")
	return f, nil
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// eventLog keeps a replication round's events, to time its phases.
type eventLog struct {
	mu sync.Mutex
	ev []replicate.Event
}

func (l *eventLog) add(e replicate.Event) {
	if e.Kind == replicate.EventProgress {
		return
	}
	l.mu.Lock()
	l.ev = append(l.ev, e)
	l.mu.Unlock()
}

func (l *eventLog) reset() {
	l.mu.Lock()
	l.ev = nil
	l.mu.Unlock()
}

// phases sums, over the VMs, the time from each event of a VM's run to the
// next: planning (started to the first copy), copying and verifying its
// disks (to the last copied), marking the set complete (to completed), and
// cleaning up (to finished).
func (l *eventLog) phases() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	byVM := map[string][]replicate.Event{}
	for _, e := range l.ev {
		byVM[e.VM] = append(byVM[e.VM], e)
	}
	var plan, copying, mark, cleanup time.Duration
	for _, evs := range byVM {
		at := map[replicate.EventKind]time.Time{}
		for _, e := range evs {
			if _, seen := at[e.Kind]; !seen || e.Kind == replicate.EventCopied {
				at[e.Kind] = e.Time
			}
		}
		plan += at[replicate.EventCopy].Sub(at[replicate.EventStarted])
		copying += at[replicate.EventCopied].Sub(at[replicate.EventCopy])
		mark += at[replicate.EventCompleted].Sub(at[replicate.EventCopied])
		cleanup += at[replicate.EventFinished].Sub(at[replicate.EventCompleted])
	}
	return fmt.Sprintf("summed over %d VMs: plan %.2f s, copy+verify %.2f s, mark complete %.2f s, clean up %.2f s",
		len(byVM), plan.Seconds(), copying.Seconds(), mark.Seconds(), cleanup.Seconds())
}
