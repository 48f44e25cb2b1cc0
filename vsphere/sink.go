package vsphere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/vmware/govmomi/vim25/soap"

	"github.com/opendraas/draas"
)

// Sink writes a powered-off VM's virtual disk in place. It implements
// draas.VolumeSink, draas.ZeroWriteSink and draas.VerifiableSink.
//
// Opening the sink copies the disk's current content into a sparse local
// temporary file (in Options.TempDir), so that blocks never written keep
// it: an incremental copy onto an earlier full one is correct. When the
// disk held data, the sink needs zero writes (NeedsZeroWrites); a new,
// empty disk does not. Blocks then gather in the file, in any order and
// concurrently; Commit uploads the file over the datastore HTTP endpoint in
// place of the disk's flat extent, in one PUT of the disk's whole size.
// Nothing reaches the datastore before Commit:
// Abort removes the temporary file and leaves the disk as it was. A Commit
// that fails part-way leaves the disk's content undefined; write it again
// with a new sink.
//
// Because the upload bypasses the VM, Commit resets the VM's Changed Block
// Tracking when it is on, so that no earlier change ID can describe the new
// content: the next backup is a full one.
type Sink struct {
	h    *Hypervisor
	file *diskFile

	// life holds off Commit and Abort while WriteBlock runs; a failed
	// Commit leaves only Abort.
	life draas.SinkLifecycle
	tmp  *os.File
	// hasData is set when the disk held data when the sink was opened.
	hasData bool
}

var _ draas.ZeroWriteSink = (*Sink)(nil)

// NeedsZeroWrites reports whether the disk held data when the sink was
// opened: zero blocks must then be written to replace it.
func (s *Sink) NeedsZeroWrites() bool { return s.hasData }

// prefill copies the disk's current content into the temporary file,
// keeping it sparse where the disk reads as zeros.
func (s *Sink) prefill(ctx context.Context, src *Source) error {
	buf := make([]byte, 4<<20)
	for off := int64(0); off < s.file.size; off += int64(len(buf)) {
		p := buf[:min(int64(len(buf)), s.file.size-off)]
		if _, err := src.ReadAt(ctx, p, off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("vsphere: read the current content of %s to write it in place: %w", s.file, err)
		}
		if draas.IsZero(p) {
			continue
		}
		s.hasData = true
		if _, err := s.tmp.WriteAt(p, off); err != nil {
			return opError("vsphere: open for writing", s.file.String(), err)
		}
	}
	return nil
}

var _ draas.VerifiableSink = (*Sink)(nil)

// BlockSize returns [SinkBlockSize].
func (s *Sink) BlockSize() int { return SinkBlockSize }

// Size returns the disk's capacity in bytes: the requested size rounded up to
// whole KiB when the VM was made by CreateVM.
func (s *Sink) Size() int64 { return s.file.size }

// Path returns the datastore path of the flat extent Commit replaces.
func (s *Sink) Path() string { return s.file.flat }

// WriteBlock stores b in the temporary file. Blocks must be aligned to
// [SinkBlockSize] and whole, but for the disk's last block, which may be short
// (draas.ErrInvalid otherwise). It is safe for concurrent calls and
// idempotent; after Commit or Abort it fails with draas.ErrClosed.
func (s *Sink) WriteBlock(ctx context.Context, b draas.Block) error {
	const op = "vsphere: write"
	if err := draas.CheckBlock(b, SinkBlockSize, s.file.size); err != nil {
		return fmt.Errorf("vsphere: write %s: %w", s.file, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.life.BeginWrite(); err != nil {
		return opError(op, fmt.Sprintf("block %d of %s", b.Index, s.file), err)
	}
	defer s.life.EndWrite()
	if _, err := s.tmp.WriteAt(b.Data, b.Offset); err != nil {
		return opError(op, fmt.Sprintf("block %d of %s to %s", b.Index, s.file, s.tmp.Name()), err)
	}
	return nil
}

// Commit uploads the disk image in place of the disk's flat extent and, when
// the VM has Changed Block Tracking on, resets it. The VM must still be
// powered off. After Commit, WriteBlock fails with draas.ErrClosed.
func (s *Sink) Commit(ctx context.Context) error {
	const op = "vsphere: commit"
	if err := s.life.BeginCommit(); err != nil {
		return opError(op, s.file.String(), err)
	}
	if err := s.life.EndCommit(s.upload(ctx, op)); err != nil {
		return err
	}
	return s.removeTemp()
}

// upload checks that the VM is still powered off, uploads the temporary file
// in place of the disk's flat extent and resets change tracking.
func (s *Sink) upload(ctx context.Context, op string) error {
	// Check again that nothing runs the VM: uploading under a running VM
	// fails on ESXi (the file is locked) and would corrupt it elsewhere.
	v, err := s.h.lookup(ctx, op, s.file.vm)
	if err != nil {
		return err
	}
	if v.poweredOn() {
		return opErrorKind(op, s.file.String(), draas.ErrConflict, errors.New("the VM was powered on after the disk was opened; power it off and write the disk again"))
	}
	err = s.h.c.Upload(ctx, io.NewSectionReader(s.tmp, 0, s.file.size), s.file.url, &soap.Upload{
		Method:        http.MethodPut,
		Type:          "application/octet-stream",
		ContentLength: s.file.size,
	})
	if err != nil {
		return opError(op, fmt.Sprintf("%s: upload to %s", s.file, s.file.flat), err)
	}
	if err := s.h.resetChangeTracking(ctx, op, v); err != nil {
		return fmt.Errorf("vsphere: %s was written, but resetting its change tracking failed; turn CBT off and on before the next incremental backup: %w", s.file, err)
	}
	return nil
}

// Abort removes the temporary file; the disk is unchanged unless a failed
// Commit wrote part of it. Abort after a successful Commit changes nothing.
func (s *Sink) Abort(ctx context.Context) error {
	if cleanup, err := s.life.BeginAbort(); !cleanup {
		if errors.Is(err, draas.ErrClosed) {
			return nil // committed: Abort changes nothing
		}
		return opError("vsphere: abort", s.file.String(), err)
	}
	return s.removeTemp()
}

func (s *Sink) removeTemp() error {
	if s.tmp == nil {
		return nil
	}
	name := s.tmp.Name()
	err := errors.Join(s.tmp.Close(), os.Remove(name))
	s.tmp = nil
	if err != nil {
		return fmt.Errorf("vsphere: remove temporary file %s of %s: %w", name, s.file, err)
	}
	return nil
}

// Committed returns a source reading the committed disk back from the
// datastore.
func (s *Sink) Committed(ctx context.Context) (draas.BlockSource, error) {
	if st := s.life.Phase(); st != draas.SinkCommitted {
		return nil, opErrorKind("vsphere: read back", s.file.String(), draas.ErrInvalid, fmt.Errorf("the sink is %s, not committed", st))
	}
	return &Source{h: s.h, file: s.file}, nil
}
