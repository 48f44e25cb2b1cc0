package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/opendraas/draas"
)

// Source reads a virtual disk's flat extent over the datastore HTTP
// endpoint, one HTTP range request per ReadAt. It implements
// draas.BlockSource. Where the VM (or the snapshot it reads) has Changed
// Block Tracking on, [Hypervisor.ReadDisk] and [Hypervisor.BackupDisks]
// return it wrapped so that it is also a draas.ChangeTracker and a
// draas.ExtentSource, answered by QueryChangedDiskAreas.
//
// Bytes past the end of the file up to the disk's capacity read as zeros (a
// thin file may be shorter than its disk). ReadAt is safe for concurrent
// calls.
type Source struct {
	h    *Hypervisor
	file *diskFile
	// vm and snapshot are what QueryChangedDiskAreas asks about; snapshot
	// is nil for the VM's current state.
	vm       types.ManagedObjectReference
	snapshot *types.ManagedObjectReference
	changeID string
	// backup is the backup whose snapshot the source reads, if any.
	backup *Backup
}

var _ draas.BlockSource = (*Source)(nil)

// Size returns the disk's capacity in bytes.
func (s *Source) Size() int64 { return s.file.size }

// BlockSize returns [SourceBlockSize]. Any size reads correctly; reads of a
// MiB or more amortise the HTTP round trip each ReadAt costs.
func (s *Source) BlockSize() int { return SourceBlockSize }

// Path returns the datastore path of the flat extent the source reads,
// "[datastore] dir/name-flat.vmdk".
func (s *Source) Path() string { return s.file.flat }

// ChangeID returns the disk's CBT change ID at the version the source reads
// (for [Hypervisor.BackupDisks], at the snapshot): the base to pass to
// ChangedExtents of a later version. It is empty when the disk is not
// tracked.
func (s *Source) ChangeID() string { return s.changeID }

func (s *Source) String() string { return fmt.Sprintf("%s at %s", s.file, s.file.flat) }

// ReadAt reads len(p) bytes at off with one HTTP range request.
func (s *Source) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, draas.Invalidf("vsphere: read %s at offset %d: the offset is negative", s.file, off)
	}
	if off >= s.file.size {
		return 0, io.EOF
	}
	var eof error
	if rest := s.file.size - off; int64(len(p)) > rest {
		p, eof = p[:rest], io.EOF
	}
	if len(p) == 0 {
		return 0, eof
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := s.checkOpen("read"); err != nil {
		return 0, err
	}
	if err := s.fetch(ctx, p, off); err != nil {
		return 0, opError("vsphere: read", fmt.Sprintf("%s at offset %d", s, off), err)
	}
	return len(p), eof
}

// checkOpen fails once the backup the source belongs to was closed: its
// snapshot is gone, and the file it read is the running VM's disk again.
func (s *Source) checkOpen(op string) error {
	if s.backup != nil && s.backup.closed.Load() {
		return opErrorKind("vsphere: "+op, s.String(), draas.ErrInvalid,
			fmt.Errorf("the backup of VM %q was closed and its snapshot removed; use its sources before Backup.Close", s.backup.VM))
	}
	return nil
}

// fetch fills p with the bytes at off: what the file holds, zeros past its
// end.
func (s *Source) fetch(ctx context.Context, p []byte, off int64) error {
	end := off + int64(len(p)) - 1
	res, err := s.h.c.DownloadRequest(ctx, s.file.url, &soap.Download{
		Method:  http.MethodGet,
		Headers: map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", off, end)},
	})
	if err != nil {
		return err
	}
	defer func() {
		// Drain a little so that the connection can be reused.
		_, _ = io.CopyN(io.Discard, res.Body, 64<<10)
		res.Body.Close()
	}()
	var n int64 // bytes of p the answer holds
	switch res.StatusCode {
	case http.StatusPartialContent:
		start, last, err := contentRange(res.Header.Get("Content-Range"))
		if err != nil || start != off || last > end {
			return &statusError{method: http.MethodGet, path: s.file.flat, code: res.StatusCode,
				status: fmt.Sprintf("%s with Content-Range %q for bytes %d-%d", res.Status, res.Header.Get("Content-Range"), off, end)}
		}
		n = last - start + 1
	case http.StatusOK:
		// The server ignored Range: skip to off in the whole file.
		if _, err := io.CopyN(io.Discard, res.Body, off); err != nil {
			if errors.Is(err, io.EOF) {
				clear(p) // the file ends before off
				return nil
			}
			return err
		}
		n = int64(len(p))
		if res.ContentLength >= 0 {
			n = max(0, min(n, res.ContentLength-off))
		}
	case http.StatusRequestedRangeNotSatisfiable:
		// The file ends before off: a thin file shorter than its disk.
		clear(p)
		return nil
	default:
		return &statusError{method: http.MethodGet, path: s.file.flat, code: res.StatusCode, status: res.Status}
	}
	got, err := io.ReadFull(res.Body, p[:n])
	if err != nil && !(res.StatusCode == http.StatusOK && res.ContentLength < 0 && errors.Is(err, io.ErrUnexpectedEOF)) {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("the answer ended after %d of %d bytes: %w", got, n, err)
	}
	clear(p[got:])
	return nil
}

// contentRange parses "bytes FIRST-LAST/TOTAL".
func contentRange(h string) (first, last int64, err error) {
	spec, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, 0, fmt.Errorf("malformed Content-Range %q", h)
	}
	spec, _, _ = strings.Cut(spec, "/")
	a, b, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, 0, fmt.Errorf("malformed Content-Range %q", h)
	}
	if first, err = strconv.ParseInt(a, 10, 64); err == nil {
		last, err = strconv.ParseInt(b, 10, 64)
	}
	if err != nil || last < first {
		return 0, 0, fmt.Errorf("malformed Content-Range %q", h)
	}
	return first, last, nil
}

// trackedSource is a [Source] of a disk with Changed Block Tracking: a
// draas.ChangeTracker and draas.ExtentSource.
type trackedSource struct {
	*Source
}

var (
	_ draas.ChangeTracker = trackedSource{}
	_ draas.ExtentSource  = trackedSource{}
)

// Unwrap returns the plain [Source].
func (t trackedSource) Unwrap() any { return t.Source }

// ChangedExtents returns the extents that changed between the version of the
// disk whose CBT change ID is base and the version the source reads, from
// QueryChangedDiskAreas. A base of "*" asks for all allocated extents. A base
// that is not a change ID, or one vSphere does not know (CBT was reset, the
// disk was replaced), fails with draas.ErrNotFound, and the caller copies the
// whole disk.
func (t trackedSource) ChangedExtents(ctx context.Context, base string) ([]draas.Extent, error) {
	if base != "*" && !isChangeID(base) {
		return nil, opErrorKind("vsphere: changed extents of", t.String(), draas.ErrNotFound,
			fmt.Errorf("base %q is not a CBT change ID (as \"52 aa … 3c/17\"); copy the whole disk", base))
	}
	return t.query(ctx, base)
}

// AllocatedExtents returns the allocated extents of the disk: the changes
// since "*". When vSphere cannot tell (CBT is not active yet), it returns the
// whole disk.
func (t trackedSource) AllocatedExtents(ctx context.Context) ([]draas.Extent, error) {
	exts, err := t.query(ctx, "*")
	if errors.Is(err, draas.ErrNotFound) {
		return []draas.Extent{{Offset: 0, Length: t.file.size}}, nil
	}
	return exts, err
}

// isChangeID reports whether s has the form of a CBT change ID: a disk UUID,
// a slash and a sequence number.
func isChangeID(s string) bool {
	uuid, seq, ok := strings.Cut(s, "/")
	if !ok || strings.TrimSpace(uuid) == "" {
		return false
	}
	_, err := strconv.ParseUint(seq, 10, 64)
	return err == nil
}

// query calls QueryChangedDiskAreas until the answers cover the disk.
func (s *Source) query(ctx context.Context, changeID string) ([]draas.Extent, error) {
	const op = "vsphere: QueryChangedDiskAreas"
	res := fmt.Sprintf("%s since change ID %q", s.file, changeID)
	if err := s.checkOpen("query changed areas of"); err != nil {
		return nil, err
	}
	var exts []draas.Extent
	for off := int64(0); off < s.file.size; {
		r, err := methods.QueryChangedDiskAreas(ctx, s.h.c, &types.QueryChangedDiskAreas{
			This: s.vm, Snapshot: s.snapshot, DeviceKey: s.file.key, StartOffset: off, ChangeId: changeID,
		})
		if err != nil {
			if unknownBase(err) {
				return nil, opErrorKind(op, res, draas.ErrNotFound, fmt.Errorf("%w; vSphere does not know the base (CBT was reset or is not active yet): copy the whole disk", err))
			}
			return nil, opError(op, res, err)
		}
		info := r.Returnval
		for _, a := range info.ChangedArea {
			start, end := max(a.Start, 0), min(a.Start+a.Length, s.file.size)
			if end > start {
				exts = append(exts, draas.Extent{Offset: start, Length: end - start})
			}
		}
		next := info.StartOffset + info.Length
		if next <= off {
			return nil, opErrorKind(op, res, draas.ErrTransient, fmt.Errorf("the answer for offset %d covers nothing (start %d, length %d)", off, info.StartOffset, info.Length))
		}
		off = next
	}
	return draas.NormalizeExtents(exts), nil
}

// unknownBase reports whether a QueryChangedDiskAreas fault means that the
// change ID cannot be used: vSphere answers an unknown or stale change ID,
// or a disk without active tracking, with these.
func unknownBase(err error) bool {
	return inFaults(err, func(f types.BaseMethodFault) error {
		switch f.(type) {
		case *types.InvalidArgument, *types.NotFound, types.BaseFileFault:
			return draas.ErrNotFound
		}
		return nil
	}) != nil
}
