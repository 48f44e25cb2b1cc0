package diskurl

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsebs "github.com/aws/aws-sdk-go-v2/service/ebs"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/account"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/aws/s3"
)

// cloud makes the AWS clients that the s3 and ebs schemes use, from the
// configuration its caller gives, once and only when a URL needs them.
type cloud struct {
	config      func(context.Context) (aws.Config, error)
	s3Options   []func(*awss3.Options)
	concurrency int
	notice      func(string)

	once sync.Once
	cfg  aws.Config
	err  error
}

// awsConfig returns the AWS configuration, loading it the first time.
func (c *cloud) awsConfig(ctx context.Context) (aws.Config, error) {
	c.once.Do(func() {
		if c.config == nil {
			c.err = draas.Invalidf("s3 and ebs URLs need an AWS configuration: build the registry with diskurl.Options.AWSConfig")
			return
		}
		c.cfg, c.err = c.config(ctx)
		// Every request is retried for as long as the copy's context
		// allows, unless the configuration chose its own retryer.
		c.cfg = account.WithRetries(c.cfg, account.RetryOptions{})
	})
	return c.cfg, c.err
}

// s3Client returns an S3 client.
func (c *cloud) s3Client(ctx context.Context) (*awss3.Client, error) {
	cfg, err := c.awsConfig(ctx)
	if err != nil {
		return nil, err
	}
	return awss3.NewFromConfig(cfg, c.s3Options...), nil
}

// ebsClient returns an EBS direct APIs client tuned for block copies.
func (c *cloud) ebsClient(ctx context.Context) (*awsebs.Client, error) {
	cfg, err := c.awsConfig(ctx)
	if err != nil {
		return nil, err
	}
	return ebs.NewClient(cfg, c.concurrency, func(o *awsebs.Options) { o.Retryer = cfg.Retryer() },
		ebs.WithAdaptiveLimit(ebs.NewAdaptiveLimit(50, 1000))), nil
}

// ec2Client returns an EC2 client, for snapshot tags and deletion.
func (c *cloud) ec2Client(ctx context.Context) (*awsec2.Client, error) {
	cfg, err := c.awsConfig(ctx)
	if err != nil {
		return nil, err
	}
	return awsec2.NewFromConfig(cfg), nil
}

// ---- s3://bucket/prefix/vm/point/disk ----------------------------------

// Special point names in s3 URLs.
const (
	pointLatest = "latest" // source: the VM's newest committed point
	pointNew    = "new"    // sink: a new point, its ID assigned by the store
)

func (c *cloud) s3Scheme() Scheme {
	return Scheme{
		Name:    "s3",
		Example: "s3://bucket/prefix/vm/point/disk",
		About:   "a disk of a recovery point in an S3 backup store; point is an ID or latest,\nor new as sink: a new point, whose URL is printed",
		Check:   func(u *url.URL, r Role) error { _, err := parseS3(u, r); return err },
		Open:    c.openS3,
		Create:  c.createS3,
	}
}

// s3Location is a parsed s3 URL: a disk of a recovery point in a backup
// store.
type s3Location struct {
	bucket, prefix, vm, point, disk string
}

// url returns the location as an s3 URL.
func (l s3Location) url() string {
	parts := []string{l.bucket}
	if l.prefix != "" {
		parts = append(parts, l.prefix)
	}
	return "s3://" + strings.Join(append(parts, l.vm, l.point, l.disk), "/")
}

// parseS3 parses s3://bucket/prefix/vm/point/disk, where prefix may be
// empty or several segments. As a source, point is a point ID or "latest";
// as a sink it is "new".
func parseS3(u *url.URL, r Role) (s3Location, error) {
	const form = "s3://bucket/prefix/vm/point/disk"
	if u.Host == "" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return s3Location{}, fmt.Errorf("want %s: a bucket, an optional key prefix, then the VM, the recovery point and the disk", form)
	}
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(segs) < 3 || strings.Contains(strings.Trim(u.Path, "/"), "//") {
		return s3Location{}, fmt.Errorf("want %s: the path needs the VM, the recovery point and the disk", form)
	}
	n := len(segs)
	l := s3Location{bucket: u.Host, prefix: strings.Join(segs[:n-3], "/"), vm: segs[n-3], point: segs[n-2], disk: segs[n-1]}
	switch {
	case r == AsSink && l.point != pointNew:
		return l, fmt.Errorf("the store assigns the ID of a new recovery point: write %s", s3Location{l.bucket, l.prefix, l.vm, pointNew, l.disk}.url())
	case r == AsSource && l.point == pointNew:
		return l, fmt.Errorf("%q names a point to write: to read, give a recovery point ID or %q", pointNew, pointLatest)
	}
	return l, nil
}

// store returns the backup store the location names.
func (c *cloud) store(ctx context.Context, l s3Location) (*s3.Store, error) {
	client, err := c.s3Client(ctx)
	if err != nil {
		return nil, err
	}
	return s3.New(client, l.bucket, l.prefix, s3.Options{}), nil
}

// openS3 opens a disk of a committed recovery point.
func (c *cloud) openS3(ctx context.Context, u *url.URL) (Source, error) {
	l, err := parseS3(u, AsSource)
	if err != nil {
		return nil, err
	}
	st, err := c.store(ctx, l)
	if err != nil {
		return nil, err
	}
	if l.point == pointLatest {
		p, err := st.Latest(ctx, l.vm)
		if err != nil {
			return nil, err
		}
		l.point = p.ID
	}
	disk, err := st.OpenDisk(ctx, l.vm, l.point, l.disk)
	if err != nil {
		return nil, err
	}
	src, ok := disk.(*s3.Source)
	if !ok {
		return nil, fmt.Errorf("diskurl: s3.Store.OpenDisk returned a %T, not an *s3.Source", disk)
	}
	return s3Source{src}, nil
}

// s3Source is a disk of a recovery point. Its methods are those of
// *s3.Source: allocated extents, changes since another point, recorded
// checksums.
type s3Source struct{ *s3.Source }

// Close releases nothing: the source holds no connection of its own.
func (s3Source) Close() error { return nil }

// createS3 begins a new recovery point of the URL's VM with one disk, of
// size bytes, named by the URL, or with o.State continues the point an
// interrupted copy left pending.
func (c *cloud) createS3(ctx context.Context, u *url.URL, size int64, o SinkOptions) (draas.VolumeSink, error) {
	l, err := parseS3(u, AsSink)
	if err != nil {
		return nil, err
	}
	st, err := c.store(ctx, l)
	if err != nil {
		return nil, err
	}
	if o.State != nil {
		vm, point, err := s3.ResumeStatePoint(o.State)
		if err != nil {
			return nil, err
		}
		if vm != l.vm {
			return nil, draas.Invalidf("the checkpoint belongs to a copy into VM %s, not %s: give that copy's sink URL, or delete the checkpoint to start over", vm, l.vm)
		}
		w, err := st.ResumePoint(ctx, vm, point)
		if err != nil {
			return nil, err
		}
		sink, err := w.ResumeDisk(o.State)
		if err != nil {
			_ = w.Abort(context.WithoutCancel(ctx))
			return nil, err
		}
		l.point = w.ID()
		return &pointSink{Sink: sink, w: w, loc: l}, nil
	}
	at, err := nextPointTime(ctx, st, l.vm)
	if err != nil {
		return nil, err
	}
	pw, err := st.BeginPoint(ctx, l.vm, []draas.Disk{{Name: l.disk, Size: size}}, at)
	if err != nil {
		return nil, err
	}
	w, ok := pw.(*s3.PointWriter)
	if !ok {
		_ = pw.Abort(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("diskurl: s3.Store.BeginPoint returned a %T, not an *s3.PointWriter", pw)
	}
	sink, err := w.Disk(l.disk)
	if err != nil {
		_ = w.Abort(context.WithoutCancel(ctx))
		return nil, err
	}
	l.point = w.ID()
	return &pointSink{Sink: sink, w: w, loc: l}, nil
}

// nextPointTime returns the time for a new recovery point of vm: now, to
// the second. Point IDs sort by their time to the second, so a point made
// in the same second as the VM's latest could sort before it, and "latest"
// would then name the older one; nextPointTime waits for the next second
// instead.
func nextPointTime(ctx context.Context, st *s3.Store, vm string) (time.Time, error) {
	now := time.Now().Truncate(time.Second)
	latest, err := st.Latest(ctx, vm)
	switch {
	case errors.Is(err, draas.ErrNotFound):
		return now, nil
	case err != nil:
		return time.Time{}, err
	case !latest.Time.Truncate(time.Second).Equal(now):
		return now, nil
	}
	next := now.Add(time.Second)
	select {
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	case <-time.After(time.Until(next)):
		return next, nil
	}
}

// pointSink writes the one disk of a new recovery point: the store's disk
// sink, whose Commit also commits the point (the atomic step that makes it
// visible) and whose Abort also aborts it. Its other methods are those of
// *s3.Sink: read-back for verification, resume state for checkpoints.
type pointSink struct {
	*s3.Sink
	w   *s3.PointWriter
	loc s3Location
}

var _ CreatedSink = (*pointSink)(nil)

// Commit commits the disk, then the recovery point.
func (p *pointSink) Commit(ctx context.Context) error {
	if err := p.Sink.Commit(ctx); err != nil {
		return err
	}
	return p.w.Commit(ctx)
}

// Abort aborts the disk and the recovery point.
func (p *pointSink) Abort(ctx context.Context) error {
	err := p.Sink.Abort(ctx)
	if errors.Is(err, draas.ErrClosed) {
		err = nil // the disk committed, the point did not
	}
	return errors.Join(err, p.w.Abort(ctx))
}

// Created returns the URL of the disk written, with its new point's ID.
func (p *pointSink) Created() string { return p.loc.url() }

// ---- ebs://snap-… and ebs://new[?parent=snap-…] ------------------------

// snapshotNew is the host of an ebs URL that creates a snapshot.
const snapshotNew = "new"

func (c *cloud) ebsScheme() Scheme {
	return Scheme{
		Name:    "ebs",
		Example: "ebs://snap-0123456789abcdef0",
		About:   "an EBS snapshot, through the EBS direct APIs; as sink ebs://new, or\nebs://new?parent=snap-… for one incremental on a parent; its URL is printed",
		Check:   func(u *url.URL, r Role) error { _, err := parseEBS(u, r); return err },
		Open:    c.openEBS,
		Create:  c.createEBS,
	}
}

// ebsLocation is a parsed ebs URL.
type ebsLocation struct {
	// snapshot is the snapshot to read; "" for a new one.
	snapshot string
	// parent is the snapshot a new one is incremental on, or "".
	parent string
}

// parseEBS parses ebs://snap-… (a source) or ebs://new[?parent=snap-…] (a
// sink).
func parseEBS(u *url.URL, r Role) (ebsLocation, error) {
	if u.User != nil || u.Port() != "" || (u.Path != "" && u.Path != "/") || u.Fragment != "" || u.Opaque != "" {
		return ebsLocation{}, errors.New("want ebs://snap-0123456789abcdef0 to read a snapshot, or ebs://new (ebs://new?parent=snap-…) to create one")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return ebsLocation{}, fmt.Errorf("bad query %q: %v", u.RawQuery, err)
	}
	switch r {
	case AsSource:
		if u.Host == snapshotNew {
			return ebsLocation{}, errors.New("ebs://new creates a snapshot: to read one, name it, as in ebs://snap-0123456789abcdef0")
		}
		if !strings.HasPrefix(u.Host, "snap-") || len(q) > 0 {
			return ebsLocation{}, errors.New("want a snapshot ID and nothing else, as in ebs://snap-0123456789abcdef0")
		}
		return ebsLocation{snapshot: u.Host}, nil
	default:
		if strings.HasPrefix(u.Host, "snap-") {
			return ebsLocation{}, fmt.Errorf("a snapshot cannot be written once completed: write ebs://new, or ebs://new?parent=%s for a new snapshot incremental on it", u.Host)
		}
		if u.Host != snapshotNew {
			return ebsLocation{}, errors.New("want ebs://new, or ebs://new?parent=snap-… for a snapshot incremental on a parent")
		}
		parent := q.Get("parent")
		delete(q, "parent")
		if len(q) > 0 || (parent != "" && !strings.HasPrefix(parent, "snap-")) {
			return ebsLocation{}, errors.New("the only query an ebs sink takes is parent=snap-…, the snapshot the new one is incremental on")
		}
		return ebsLocation{parent: parent}, nil
	}
}

// openEBS opens a completed snapshot. A snapshot that draas wrote carries
// the disk's exact size in its draas:size tag (a snapshot holds whole GiB);
// the source then ends there, so that a disk copied into EBS and back is
// byte-identical. Without the tag the source is the whole snapshot; when
// the tags cannot be read (AWS still throttled the request when ctx's
// deadline came, a permission is missing), opening fails: reading the
// whole snapshot instead would copy a different disk.
func (c *cloud) openEBS(ctx context.Context, u *url.URL) (Source, error) {
	l, err := parseEBS(u, AsSource)
	if err != nil {
		return nil, err
	}
	client, err := c.ebsClient(ctx)
	if err != nil {
		return nil, err
	}
	src, err := ebs.OpenSnapshot(ctx, client, l.snapshot, ebs.SourceOptions{})
	if err != nil {
		return nil, err
	}
	size, err := c.taggedSize(ctx, l.snapshot)
	switch {
	case err != nil:
		return nil, fmt.Errorf("ebs://%s: read its %s tag, the size of the disk it holds: %w", l.snapshot, draas.TagSize, err)
	case size > 0 && size < src.Size():
		return &sizedSource{src: src, size: size}, nil
	}
	return ebsSource{src}, nil
}

// taggedSize returns the disk size recorded in snapshot id's draas:size
// tag, or 0 when it has none.
func (c *cloud) taggedSize(ctx context.Context, id string) (int64, error) {
	client, err := c.ec2Client(ctx)
	if err != nil {
		return 0, err
	}
	out, err := client.DescribeSnapshots(ctx, &awsec2.DescribeSnapshotsInput{SnapshotIds: []string{id}})
	if err != nil {
		return 0, err
	}
	for _, s := range out.Snapshots {
		for _, t := range s.Tags {
			if aws.ToString(t.Key) == draas.TagSize {
				n, err := strconv.ParseInt(aws.ToString(t.Value), 10, 64)
				if err != nil || n <= 0 {
					return 0, fmt.Errorf("%w: snapshot %s has %s=%q, not a size in bytes", draas.ErrInvalid, id, draas.TagSize, aws.ToString(t.Value))
				}
				return n, nil
			}
		}
	}
	return 0, nil
}

// ebsSource is a completed snapshot. Its methods are those of *ebs.Source.
type ebsSource struct{ *ebs.Source }

// Close releases nothing.
func (ebsSource) Close() error { return nil }

// sizedSource is a snapshot read up to the size of the disk it holds, which
// ends inside its last GiB. It keeps the snapshot's allocated extents,
// changed blocks and checksums; the last block, cut short, is checked
// against the checksum of the whole block and handed on with the checksum
// of its part.
type sizedSource struct {
	src  *ebs.Source
	size int64
}

var (
	_ draas.ExtentSource   = (*sizedSource)(nil)
	_ draas.ChangeTracker  = (*sizedSource)(nil)
	_ draas.ChecksumSource = (*sizedSource)(nil)
)

// Size returns the disk's size.
func (s *sizedSource) Size() int64 { return s.size }

// BlockSize returns the snapshot's block size.
func (s *sizedSource) BlockSize() int { return ebs.BlockSize }

// ReadAt reads the snapshot, up to the disk's size.
func (s *sizedSource) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= s.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), s.size-off))
	m, err := s.src.ReadAt(ctx, p[:n], off)
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return m, err
}

// ReadBlock reads the block at off. For the last block, shorter than the
// snapshot's, it checks the whole block against the checksum AWS returned
// and returns the checksum of the part that belongs to the disk.
func (s *sizedSource) ReadBlock(ctx context.Context, p []byte, off int64) ([32]byte, bool, error) {
	blen := min(int64(ebs.BlockSize), s.size-off)
	if blen == ebs.BlockSize {
		return s.src.ReadBlock(ctx, p, off)
	}
	whole := make([]byte, ebs.BlockSize)
	sum, ok, err := s.src.ReadBlock(ctx, whole, off)
	if err != nil {
		return sum, false, err
	}
	if ok && sha256.Sum256(whole) != sum {
		return sum, false, &draas.OpError{Op: "GetSnapshotBlock", Resource: fmt.Sprintf("%s block %d", s.src.SnapshotID(), off/ebs.BlockSize),
			Kind: draas.ErrChecksumMismatch, Err: errors.New("block data does not match the checksum AWS returned")}
	}
	n := copy(p, whole[:blen])
	clear(p[n:])
	return sha256.Sum256(whole[:blen]), ok, nil
}

// AllocatedExtents returns the snapshot's blocks that lie within the disk.
func (s *sizedSource) AllocatedExtents(ctx context.Context) ([]draas.Extent, error) {
	exts, err := s.src.AllocatedExtents(ctx)
	if err != nil {
		return nil, err
	}
	return clip(exts, s.size), nil
}

// ChangedExtents returns the blocks within the disk that differ between
// snapshot base and this one.
func (s *sizedSource) ChangedExtents(ctx context.Context, base string) ([]draas.Extent, error) {
	exts, err := s.src.ChangedExtents(ctx, base)
	if err != nil {
		return nil, err
	}
	return clip(exts, s.size), nil
}

// Close releases nothing.
func (s *sizedSource) Close() error { return nil }

// createEBS starts a snapshot through the EBS direct APIs, tagged with the
// disk's size, incremental on the URL's parent if it names one; with
// o.State it continues the pending snapshot of an interrupted copy.
func (c *cloud) createEBS(ctx context.Context, u *url.URL, size int64, o SinkOptions) (draas.VolumeSink, error) {
	l, err := parseEBS(u, AsSink)
	if err != nil {
		return nil, err
	}
	client, err := c.ebsClient(ctx)
	if err != nil {
		return nil, err
	}
	ec2c, err := c.ec2Client(ctx)
	if err != nil {
		return nil, err
	}
	var sink *ebs.Sink
	if o.State != nil {
		sink, err = ebs.ResumeSink(ctx, client, o.State, ebs.SinkOptions{})
	} else {
		sink, err = ebs.NewSink(ctx, client, size, ebs.SinkOptions{
			ParentSnapshotID: l.parent,
			Description:      o.Description,
			Tags:             map[string]string{draas.TagSize: strconv.FormatInt(size, 10)},
		})
	}
	if err != nil {
		return nil, err
	}
	return &snapshotSink{Sink: sink, ebs: client, ec2: ec2c, parent: l.parent}, nil
}

// snapshotSink writes a new snapshot. Its Abort also deletes the pending
// snapshot, which the EBS direct APIs alone cannot do, so that a failed
// copy leaves nothing behind. Its other methods are those of *ebs.Sink.
type snapshotSink struct {
	*ebs.Sink
	ebs    ebs.API
	ec2    *awsec2.Client
	parent string
}

var (
	_ CreatedSink  = (*snapshotSink)(nil)
	_ CoveringSink = (*snapshotSink)(nil)
)

// Abort stops the sink and deletes its snapshot.
func (s *snapshotSink) Abort(ctx context.Context) error {
	err := s.Sink.Abort(ctx)
	if _, derr := s.ec2.DeleteSnapshot(ctx, &awsec2.DeleteSnapshotInput{SnapshotId: aws.String(s.SnapshotID())}); derr != nil {
		err = errors.Join(err, fmt.Errorf("delete the unfinished snapshot %s (delete it by hand): %w", s.SnapshotID(), derr))
	}
	return err
}

// Created returns the new snapshot's URL.
func (s *snapshotSink) Created() string { return "ebs://" + s.SnapshotID() }

// Cover returns the extents a copy into this snapshot must write besides
// the source's allocated ones: the parent's blocks, which a new snapshot
// starts with and which must be overwritten (with zeros where the source
// has none) for the snapshot to equal the source. Without it the copier
// would write every block of the disk, holes as zeros; with it, blocks that
// neither the source nor the parent holds are zero in both and skipped.
func (s *snapshotSink) Cover(ctx context.Context) ([]draas.Extent, error) {
	if s.parent == "" {
		return nil, nil
	}
	p, err := ebs.OpenSnapshot(ctx, s.ebs, s.parent, ebs.SourceOptions{})
	if err != nil {
		return nil, err
	}
	return p.AllocatedExtents(ctx)
}
