package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	awsebs "github.com/aws/aws-sdk-go-v2/service/ebs"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/local"
)

// blockSize is the block size of the backup store and of EBS snapshots.
const blockSize = ebs.BlockSize

// sim is the simulated cloud a benchmark runs on: awssim on loopback, a
// backup store in its S3, and the real SDK clients for EBS and EC2.
type sim struct {
	srv   *awssim.Server
	s3    *countingS3
	store *s3.Store
	ebs   *awsebs.Client
	ec2   *awsec2.Client
}

// startSim starts the simulator. concurrency sizes the EBS client's
// connection pool. Close the result when done.
func startSim(concurrency int) (*sim, error) {
	srv, err := awssim.New(awssim.Options{Buckets: []string{"backups"}})
	if err != nil {
		return nil, fmt.Errorf("start the AWS simulator: %w", err)
	}
	c := &countingS3{API: srv.S3(), calls: map[string]int{}}
	return &sim{
		srv:   srv,
		s3:    c,
		store: s3.New(c, "backups", "bench", s3.Options{}),
		ebs:   ebs.NewClient(srv.Config(), concurrency),
		ec2:   srv.EC2(),
	}, nil
}

// Close stops the simulator and frees what it holds.
func (s *sim) Close() { s.srv.Close() }

// The operations a benchmark counts.
var countedOps = []string{
	// EBS direct APIs
	"StartSnapshot", "PutSnapshotBlock", "CompleteSnapshot", "ListSnapshotBlocks", "ListChangedBlocks", "GetSnapshotBlock",
	// EC2
	"DescribeSnapshots", "CreateTags", "DeleteSnapshot",
}

// calls counts requests by operation.
type calls map[string]int

// calls returns the requests the simulator has served so far.
func (s *sim) calls() calls {
	c := calls{}
	for _, op := range countedOps {
		if n := s.srv.Calls(op); n > 0 {
			c[op] = n
		}
	}
	s.s3.mu.Lock()
	for op, n := range s.s3.calls {
		c["S3 "+op] = n
	}
	s.s3.mu.Unlock()
	return c
}

// since returns the requests made since prev was taken.
func (c calls) since(prev calls) calls {
	d := calls{}
	for op, n := range c {
		if n -= prev[op]; n > 0 {
			d[op] = n
		}
	}
	return d
}

// total returns the number of requests.
func (c calls) total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// String lists the requests by operation, most frequent first.
func (c calls) String() string {
	ops := slices.Collect(maps.Keys(c))
	slices.SortFunc(ops, func(a, b string) int {
		if c[a] != c[b] {
			return c[b] - c[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(ops))
	for i, op := range ops {
		parts[i] = fmt.Sprintf("%s %d", op, c[op])
	}
	return strings.Join(parts, ", ")
}

// countingS3 counts the backup store's S3 requests by operation.
type countingS3 struct {
	s3.API
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingS3) count(op string) {
	c.mu.Lock()
	c.calls[op]++
	c.mu.Unlock()
}

func (c *countingS3) PutObject(ctx context.Context, in *awss3.PutObjectInput, optFns ...func(*awss3.Options)) (*awss3.PutObjectOutput, error) {
	c.count("PutObject")
	return c.API.PutObject(ctx, in, optFns...)
}

func (c *countingS3) GetObject(ctx context.Context, in *awss3.GetObjectInput, optFns ...func(*awss3.Options)) (*awss3.GetObjectOutput, error) {
	c.count("GetObject")
	return c.API.GetObject(ctx, in, optFns...)
}

func (c *countingS3) HeadObject(ctx context.Context, in *awss3.HeadObjectInput, optFns ...func(*awss3.Options)) (*awss3.HeadObjectOutput, error) {
	c.count("HeadObject")
	return c.API.HeadObject(ctx, in, optFns...)
}

func (c *countingS3) ListObjectsV2(ctx context.Context, in *awss3.ListObjectsV2Input, optFns ...func(*awss3.Options)) (*awss3.ListObjectsV2Output, error) {
	c.count("ListObjectsV2")
	return c.API.ListObjectsV2(ctx, in, optFns...)
}

// backupDisk backs disks up as a point of VM "vm" in s's store and opens the
// point's disk-0.
func backupDisk(ctx context.Context, s *sim, disks map[string]string, t time.Time, concurrency int) (string, time.Duration, draas.BlockSource, error) {
	point, took, err := backup(ctx, s.store, "vm", disks, t, concurrency)
	if err != nil {
		return "", 0, nil, err
	}
	src, err := s.store.OpenDisk(ctx, "vm", point, "disk-0")
	return point, took, src, err
}

// backup writes a recovery point of vm whose disks are raw image files
// (disk name to path), taken at t, and returns its ID and how long it took.
func backup(ctx context.Context, store *s3.Store, vm string, disks map[string]string, t time.Time, concurrency int) (string, time.Duration, error) {
	start := time.Now()
	names := slices.Sorted(maps.Keys(disks))
	srcs := make([]*local.Source, len(names))
	spec := make([]draas.Disk, len(names))
	for i, name := range names {
		src, err := local.Open(disks[name])
		if err != nil {
			return "", 0, err
		}
		defer src.Close()
		srcs[i], spec[i] = src, draas.Disk{Name: name, Size: src.Size()}
	}
	pw, err := store.BeginPoint(ctx, vm, spec, t)
	if err != nil {
		return "", 0, fmt.Errorf("back up %s: %w", vm, err)
	}
	w := pw.(*s3.PointWriter) // for Disk: a full copy into an empty sink
	for i, name := range names {
		sink, err := w.Disk(name)
		if err == nil {
			_, err = blockcopy.Copy(ctx, sink, srcs[i], blockcopy.Options{Concurrency: concurrency})
		}
		if err != nil {
			_ = w.Abort(context.WithoutCancel(ctx))
			return "", 0, fmt.Errorf("back up disk %s of %s: %w", name, vm, err)
		}
	}
	if err := w.Commit(ctx); err != nil {
		_ = w.Abort(context.WithoutCancel(ctx))
		return "", 0, fmt.Errorf("commit the recovery point of %s: %w", vm, err)
	}
	return w.ID(), time.Since(start), nil
}

// changeFile overwrites percent % of the image's blocks (rounded down, at
// least one), chosen at random, with new random data, and returns how many
// it changed: on a half-zero image about half of them held zeros before,
// as blocks a VM writes anew.
func changeFile(path string, percent float64, seed uint64) (int, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	nblocks := (fi.Size() + blockSize - 1) / blockSize
	n := max(1, int(float64(nblocks)*percent/100))
	rng := newRand(seed)
	buf := make([]byte, blockSize)
	for _, b := range rng.Perm(int(nblocks))[:n] {
		off := int64(b) * blockSize
		p := buf[:min(blockSize, fi.Size()-off)]
		if _, err := rand.Read(p); err != nil {
			return 0, err
		}
		if _, err := f.WriteAt(p, off); err != nil {
			return 0, err
		}
	}
	return n, f.Close()
}

// compareSnapshot compares snapshot id with the image file byte for byte.
func compareSnapshot(srv *awssim.Server, id, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	const piece = 8 << 20
	a, b := make([]byte, piece), make([]byte, piece)
	for off := int64(0); ; off += piece {
		n, err := io.ReadFull(f, a)
		if n > 0 {
			if _, serr := srv.ReadSnapshotAt(id, b[:n], off); serr != nil && serr != io.EOF {
				return fmt.Errorf("read snapshot %s: %w", id, serr)
			}
			if !bytes.Equal(a[:n], b[:n]) {
				return fmt.Errorf("snapshot %s differs from %s in the %d bytes at %d: %w", id, path, n, off, draas.ErrChecksumMismatch)
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// dataBytes returns the bytes of the image's blocks that are not all zeros.
func dataBytes(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, blockSize)
	var total int64
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 && !draas.IsZero(buf[:n]) {
			total += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fileSize returns the size of the file at path.
func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
