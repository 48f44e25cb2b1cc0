package ebs

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/internal/awserr"
)

// Path selects how a [Copies] writes DR copies.
type Path int

const (
	// PathDirect writes snapshots through the EBS direct APIs: no proxy
	// instance, no volume, incremental on the previous copy by
	// ParentSnapshotId. The default.
	PathDirect Path = iota
	// PathVolume is the product description's path: a volume made from the
	// previous copy, attached to the proxy instance this program runs on,
	// written, detached, snapshotted and deleted.
	PathVolume
)

// CopiesAPI is the part of the EC2 client a [Copies] uses.
type CopiesAPI interface {
	VolumeAPI
	DeleteSnapshot(ctx context.Context, in *awsec2.DeleteSnapshotInput, optFns ...func(*awsec2.Options)) (*awsec2.DeleteSnapshotOutput, error)
	CreateTags(ctx context.Context, in *awsec2.CreateTagsInput, optFns ...func(*awsec2.Options)) (*awsec2.CreateTagsOutput, error)
}

var _ CopiesAPI = (*awsec2.Client)(nil)

// CopiesOptions configures a [Copies].
type CopiesOptions struct {
	// Path is the data path; default PathDirect.
	Path Path
	// Sink holds settings for the direct path's snapshots (encryption,
	// timeout, limits). Its ParentSnapshotID, Tags, Description and
	// ClientToken are set per copy.
	Sink SinkOptions
	// Volume holds settings for the volume path (proxy instance, zone,
	// devices). Its BaseSnapshotID, Tags and ClientToken are set per copy.
	Volume VolumeSinkOptions
	// Tags are added to every copy.
	Tags map[string]string
}

// Copies is a draas.CopyStore of EBS snapshots in one account and region.
// A copy's plan, VM, disk, recovery point and point time, disk size and
// completeness are its snapshot's tags (see the draas.Tag constants), so a
// DR copy is found by its tags and needs no other database.
type Copies struct {
	ebs  API
	ec2  CopiesAPI
	opts CopiesOptions
}

var _ draas.CopyStore = (*Copies)(nil)

// NewCopies returns a Copies using the EBS direct APIs client ebsAPI and
// the EC2 client ec2API.
func NewCopies(ebsAPI API, ec2API CopiesAPI, opts CopiesOptions) *Copies {
	return &Copies{ebs: ebsAPI, ec2: ec2API, opts: opts}
}

func (c *Copies) tags(req draas.CopyRequest) map[string]string {
	t := map[string]string{}
	for k, v := range c.opts.Tags {
		t[k] = v
	}
	t[draas.TagPlan] = req.Plan
	t[draas.TagVM] = req.VM
	t[draas.TagDisk] = req.Disk
	t[draas.TagDiskIndex] = strconv.Itoa(req.DiskIndex)
	t[draas.TagRecoveryPoint] = req.RecoveryPoint
	t[draas.TagPointTime] = req.PointTime.UTC().Format(time.RFC3339)
	t[draas.TagSize] = strconv.FormatInt(req.Size, 10)
	t[draas.TagRole] = "dr-copy"
	return t
}

func (c *Copies) check(req draas.CopyRequest) error {
	if req.Plan == "" || req.VM == "" || req.Disk == "" || req.RecoveryPoint == "" || req.Size <= 0 {
		return draas.Invalidf("ebs: a DR copy needs a plan, VM, disk, recovery point and size (got %q, %q, %q, %q, %d)", req.Plan, req.VM, req.Disk, req.RecoveryPoint, req.Size)
	}
	return nil
}

// NewCopy starts a DR copy on the configured path.
func (c *Copies) NewCopy(ctx context.Context, req draas.CopyRequest) (draas.SnapshotSink, error) {
	if err := c.check(req); err != nil {
		return nil, err
	}
	desc := fmt.Sprintf("draas DR copy of %s/%s disk %s at %s", req.Plan, req.VM, req.Disk, req.RecoveryPoint)
	if c.opts.Path == PathVolume {
		o := c.opts.Volume
		o.BaseSnapshotID, o.Tags, o.ClientToken, o.Description = req.Parent, c.tags(req), req.ClientToken, desc
		if o.EBS == nil {
			o.EBS = c.ebs
		}
		return NewVolumeSink(ctx, c.ec2, req.Size, o)
	}
	o := c.opts.Sink
	o.ParentSnapshotID, o.Tags, o.ClientToken, o.Description = req.Parent, c.tags(req), req.ClientToken, desc
	return NewSink(ctx, c.ebs, req.Size, o)
}

// ResumeCopy continues a copy from its sink's saved state.
func (c *Copies) ResumeCopy(ctx context.Context, req draas.CopyRequest, state []byte) (draas.SnapshotSink, error) {
	if err := c.check(req); err != nil {
		return nil, err
	}
	if c.opts.Path == PathVolume {
		o := c.opts.Volume
		o.BaseSnapshotID, o.Tags = req.Parent, c.tags(req)
		if o.EBS == nil {
			o.EBS = c.ebs
		}
		return ResumeVolumeSink(ctx, c.ec2, state, o)
	}
	return ResumeSink(ctx, c.ebs, state, c.opts.Sink)
}

// Copies lists the snapshots tagged with plan and vm, and the volumes of
// copies still being written on the volume path, oldest first.
func (c *Copies) Copies(ctx context.Context, plan, vm string) ([]draas.DRCopy, error) {
	filters := []ec2types.Filter{
		{Name: aws.String("tag:" + draas.TagPlan), Values: []string{plan}},
		{Name: aws.String("tag:" + draas.TagVM), Values: []string{vm}},
	}
	var out []draas.DRCopy
	p := awsec2.NewDescribeSnapshotsPaginator(c.ec2, &awsec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, Filters: filters})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, awserr.Wrap("DescribeSnapshots", plan+"/"+vm, err)
		}
		for _, s := range page.Snapshots {
			out = append(out, toCopy(s.Tags, func(cp *draas.DRCopy) {
				cp.SnapshotID = aws.ToString(s.SnapshotId)
				cp.Size = int64(aws.ToInt32(s.VolumeSize)) << 30
				cp.Created = aws.ToTime(s.StartTime)
				cp.State = draas.CopyState(s.State)
			}))
		}
	}
	vf := append(filters, ec2types.Filter{Name: aws.String("tag:" + draas.TagRole), Values: []string{"replication-volume"}})
	vp := awsec2.NewDescribeVolumesPaginator(c.ec2, &awsec2.DescribeVolumesInput{Filters: vf})
	for vp.HasMorePages() {
		page, err := vp.NextPage(ctx)
		if err != nil {
			return nil, awserr.Wrap("DescribeVolumes", plan+"/"+vm, err)
		}
		for _, v := range page.Volumes {
			out = append(out, toCopy(v.Tags, func(cp *draas.DRCopy) {
				cp.VolumeID = aws.ToString(v.VolumeId)
				cp.Size = int64(aws.ToInt32(v.Size)) << 30
				cp.Created = aws.ToTime(v.CreateTime)
				cp.State = draas.CopyWriting
				cp.Complete = false
			}))
		}
	}
	slices.SortFunc(out, func(a, b draas.DRCopy) int {
		if c := a.PointTime.Compare(b.PointTime); c != 0 {
			return c
		}
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID(), b.ID())
	})
	return out, nil
}

func toCopy(ts []ec2types.Tag, set func(*draas.DRCopy)) draas.DRCopy {
	tags := map[string]string{}
	for _, t := range ts {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	c := draas.DRCopy{
		VM:            tags[draas.TagVM],
		Plan:          tags[draas.TagPlan],
		Disk:          tags[draas.TagDisk],
		RecoveryPoint: tags[draas.TagRecoveryPoint],
		Complete:      tags[draas.TagComplete] == "true",
		Checksum:      tags[draas.TagChecksum],
	}
	if t, err := time.Parse(time.RFC3339, tags[draas.TagPointTime]); err == nil {
		c.PointTime = t
	}
	c.DiskIndex, _ = strconv.Atoi(tags[draas.TagDiskIndex])
	set(&c)
	if n, err := strconv.ParseInt(tags[draas.TagSize], 10, 64); err == nil && n > 0 {
		c.Size = n
	}
	return c
}

// MarkComplete tags each copy complete with its checksum summary, and with
// its recovery point and point time, which lets a copy stand for a newer
// point of identical content. It tags the copies one by one; a set
// interrupted half-way is incomplete until a later call tags the rest.
func (c *Copies) MarkComplete(ctx context.Context, copies []draas.DRCopy) error {
	for _, cp := range copies {
		if cp.SnapshotID == "" || cp.RecoveryPoint == "" {
			return draas.Invalidf("ebs: MarkComplete needs each copy's snapshot ID and recovery point (got %q, %q)", cp.SnapshotID, cp.RecoveryPoint)
		}
		tags := []ec2types.Tag{
			{Key: aws.String(draas.TagComplete), Value: aws.String("true")},
			{Key: aws.String(draas.TagRecoveryPoint), Value: aws.String(cp.RecoveryPoint)},
		}
		if !cp.PointTime.IsZero() {
			tags = append(tags, ec2types.Tag{Key: aws.String(draas.TagPointTime), Value: aws.String(cp.PointTime.UTC().Format(time.RFC3339))})
		}
		if cp.Checksum != "" {
			tags = append(tags, ec2types.Tag{Key: aws.String(draas.TagChecksum), Value: aws.String(cp.Checksum)})
		}
		if _, err := c.ec2.CreateTags(ctx, &awsec2.CreateTagsInput{Resources: []string{cp.SnapshotID}, Tags: tags}); err != nil {
			return awserr.Wrap("CreateTags", cp.SnapshotID, err)
		}
	}
	return nil
}

// DeleteCopy deletes a copy's snapshot, or detaches and deletes the volume
// of a copy that was being written (its ID starts with "vol-"). A missing
// one is not an error.
func (c *Copies) DeleteCopy(ctx context.Context, id string) error {
	if strings.HasPrefix(id, "vol-") {
		s := &VolumeSink{api: c.ec2, volumeID: id, opts: c.opts.Volume}
		if err := s.opts.defaults(); err != nil {
			s.opts.PollInterval, s.opts.WaitTimeout = 2*time.Second, 30*time.Minute
		}
		err := s.detach(ctx)
		if err != nil && !errors.Is(err, draas.ErrNotFound) {
			return err
		}
		return s.deleteVolume(ctx)
	}
	_, err := c.ec2.DeleteSnapshot(ctx, &awsec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
	if err = awserr.Wrap("DeleteSnapshot", id, err); errors.Is(err, draas.ErrNotFound) {
		return nil
	}
	return err
}

// linear is the EBS LINEAR checksum aggregation: the SHA-256 of the
// per-block SHA-256 digests in block order, in base64.
func linear(sums map[int32][32]byte) string {
	idxs := make([]int32, 0, len(sums))
	for i := range sums {
		idxs = append(idxs, i)
	}
	slices.Sort(idxs)
	h := sha256.New()
	for _, i := range idxs {
		sum := sums[i]
		h.Write(sum[:])
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// summary is a DR copy's checksum summary: "sha256-linear:DIGEST:BLOCKS",
// the LINEAR aggregate of the blocks a copy wrote and their count.
func summary(sums map[int32][32]byte) string {
	return fmt.Sprintf("sha256-linear:%s:%d", linear(sums), len(sums))
}
