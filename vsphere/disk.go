package vsphere

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/opendraas/draas"
)

// diskFile is the flat extent holding a virtual disk's data on a datastore,
// reached over the datastore HTTP endpoint.
type diskFile struct {
	vm    string
	index int
	name  string // "scsi0:0"
	key   int32  // device key
	size  int64  // the disk's capacity in bytes
	flat  string // datastore path of the flat extent, "[ds] dir/name-flat.vmdk"
	url   *url.URL
}

func (f *diskFile) String() string {
	return fmt.Sprintf("disk %d (%s) of VM %q", f.index, f.name, f.vm)
}

// maxDescriptor bounds the descriptor files read: real ones are under 2 KiB.
const maxDescriptor = 64 << 10

// flatExtent finds the flat extent of disk d, the i-th disk of VM vm, by
// reading its descriptor. It fails with draas.ErrConflict for a snapshot's
// delta disk and with draas.ErrInvalid for disks whose data is not in one
// flat extent (RDMs, vSAN and vVol objects, sparse formats).
func (h *Hypervisor) flatExtent(ctx context.Context, op, vm string, i int, d diskDev) (*diskFile, error) {
	f := &diskFile{vm: vm, index: i, name: d.name, key: d.dev.Key, size: d.size}
	res := f.String()
	switch d.dev.Backing.(type) {
	case *types.VirtualDiskFlatVer2BackingInfo:
	case *types.VirtualDiskSeSparseBackingInfo, *types.VirtualDiskSparseVer2BackingInfo:
		if d.delta {
			return nil, opErrorKind(op, res, draas.ErrConflict, fmt.Errorf("it is a snapshot's delta disk (%s); delete or consolidate the VM's snapshots first", d.file))
		}
		return nil, opErrorKind(op, res, draas.ErrInvalid, fmt.Errorf("it is a sparse disk (%s); only flat (thin or thick) disks are supported", d.file))
	default:
		return nil, opErrorKind(op, res, draas.ErrInvalid, fmt.Errorf("its backing is a %T, not a virtual disk file; raw device mappings are not supported", d.dev.Backing))
	}
	if d.delta {
		return nil, opErrorKind(op, res, draas.ErrConflict, fmt.Errorf("it is a snapshot's delta disk (%s); delete or consolidate the VM's snapshots first", d.file))
	}
	var dp object.DatastorePath
	if !dp.FromString(d.file) || dp.Path == "" {
		return nil, opErrorKind(op, res, draas.ErrInvalid, fmt.Errorf("its backing file %q is not a datastore path", d.file))
	}
	if d.ds == nil {
		return nil, opErrorKind(op, res, draas.ErrInvalid, fmt.Errorf("its backing file %s names no datastore object", d.file))
	}
	ds := object.NewDatastore(h.c, *d.ds)
	if err := ds.FindInventoryPath(ctx); err != nil {
		return nil, opError(op, fmt.Sprintf("%s: datastore %q", res, dp.Datastore), err)
	}
	desc, err := h.readDescriptor(ctx, ds, dp)
	if err != nil {
		return nil, opError(op, res, err)
	}
	ext, err := flatExtentOf(desc)
	if err != nil {
		return nil, opErrorKind(op, res, draas.ErrInvalid, fmt.Errorf("descriptor %s: %w", d.file, err))
	}
	flat := path.Join(path.Dir(dp.Path), ext)
	f.flat = (&object.DatastorePath{Datastore: dp.Datastore, Path: flat}).String()
	f.url = ds.NewURL(flat)
	return f, nil
}

// readDescriptor downloads a disk's descriptor file.
func (h *Hypervisor) readDescriptor(ctx context.Context, ds *object.Datastore, dp object.DatastorePath) ([]byte, error) {
	res, err := h.c.DownloadRequest(ctx, ds.NewURL(dp.Path), &soap.Download{Method: http.MethodGet})
	if err != nil {
		return nil, fmt.Errorf("download descriptor %s: %w", dp.String(), err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, &statusError{method: http.MethodGet, path: dp.String(), code: res.StatusCode, status: res.Status}
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, maxDescriptor+1))
	if err != nil {
		return nil, fmt.Errorf("download descriptor %s: %w", dp.String(), err)
	}
	if len(b) > maxDescriptor {
		return nil, fmt.Errorf("%s is over %d bytes: not a descriptor but a monolithic disk, which is not supported: %w", dp.String(), maxDescriptor, draas.ErrInvalid)
	}
	return b, nil
}

// flatExtentOf returns the file name of the one flat extent a VMDK
// descriptor lists, e.g. "db01-flat.vmdk" from
//
//	RW 8388608 VMFS "db01-flat.vmdk"
//
// It fails for sparse and multi-extent disks and for delta disks.
func flatExtentOf(desc []byte) (string, error) {
	if bytes.HasPrefix(desc, []byte("KDMV")) || bytes.HasPrefix(desc, []byte("COWD")) {
		return "", errors.New("the disk is a monolithic sparse file, not a descriptor with a flat extent")
	}
	var extents []string
	var flat string
	sc := bufio.NewScanner(bytes.NewReader(desc))
	for sc.Scan() {
		line := strings.TrimSpace(strings.Trim(sc.Text(), "\x00"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "parentfilenamehint":
				return "", fmt.Errorf("it is a delta disk on parent %s; delete or consolidate the VM's snapshots first", strings.TrimSpace(v))
			}
			continue
		}
		// ACCESS SIZE TYPE "FILE" [OFFSET]
		access, rest, ok := strings.Cut(line, " ")
		if !ok || (access != "RW" && access != "RDONLY" && access != "NOACCESS") {
			continue
		}
		sectors, rest, _ := strings.Cut(strings.TrimSpace(rest), " ")
		typ, rest, _ := strings.Cut(strings.TrimSpace(rest), " ")
		extents = append(extents, typ)
		if _, err := strconv.ParseInt(sectors, 10, 64); err != nil {
			return "", fmt.Errorf("malformed extent line %q", line)
		}
		rest = strings.TrimSpace(rest)
		if !strings.HasPrefix(rest, `"`) {
			return "", fmt.Errorf("malformed extent line %q", line)
		}
		name, offset, ok := strings.Cut(rest[1:], `"`)
		if !ok || name == "" {
			return "", fmt.Errorf("malformed extent line %q", line)
		}
		if off := strings.TrimSpace(offset); off != "" && off != "0" {
			return "", fmt.Errorf("extent %s starts at sector %s of its file; only whole-file extents are supported", name, off)
		}
		if typ == "VMFS" || typ == "FLAT" {
			if strings.Contains(name, "/") {
				return "", fmt.Errorf("extent %q is outside the descriptor's directory", name)
			}
			flat = name
		}
	}
	switch {
	case len(extents) == 0:
		return "", errors.New("it lists no extent")
	case len(extents) > 1:
		return "", fmt.Errorf("it lists %d extents (%s); only single-extent flat disks (VMFS, NFS) are supported", len(extents), strings.Join(extents, ", "))
	case flat == "":
		return "", fmt.Errorf("its extent is of type %s, not a flat extent (VMFS or FLAT); sparse, vSAN and vVol disks are not supported", extents[0])
	}
	return flat, nil
}

// OpenDisk returns a *[Sink] that writes a whole new image of the named VM's
// i-th disk (numbered as [Hypervisor.VMShape] lists them): blocks not
// written read as zeros after Commit. The VM must be powered off
// (draas.ErrConflict otherwise) and have no snapshots on the disk
// (draas.ErrConflict: delete or consolidate them). An unknown VM or disk
// index fails with draas.ErrNotFound.
func (h *Hypervisor) OpenDisk(ctx context.Context, name string, disk int) (draas.VolumeSink, error) {
	return h.openSink(ctx, name, disk)
}

// offDisk finds the named VM's disk and its flat extent for op, failing
// with draas.ErrConflict, and the advice hint, when the VM is powered on.
func (h *Hypervisor) offDisk(ctx context.Context, op, name string, disk int, hint string) (*vmInfo, diskDev, *diskFile, error) {
	v, err := h.lookup(ctx, op, name)
	if err != nil {
		return nil, diskDev{}, nil, err
	}
	d, err := v.disk(op, disk)
	if err != nil {
		return nil, diskDev{}, nil, err
	}
	if v.poweredOn() {
		return nil, diskDev{}, nil, opErrorKind(op, fmt.Sprintf("disk %d of VM %q", disk, name), draas.ErrConflict,
			fmt.Errorf("the VM is %s; %s", v.mo.Runtime.PowerState, hint))
	}
	f, err := h.flatExtent(ctx, op, name, disk, d)
	if err != nil {
		return nil, diskDev{}, nil, err
	}
	return v, d, f, nil
}

// openSink is OpenDisk returning the concrete *Sink.
func (h *Hypervisor) openSink(ctx context.Context, name string, disk int) (*Sink, error) {
	const op = "vsphere: open for writing"
	v, _, f, err := h.offDisk(ctx, op, name, disk, "power it off first")
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(h.opts.TempDir, "draas-vsphere-*.flat")
	if err != nil {
		return nil, opError(op, f.String(), fmt.Errorf("create a temporary file (set Options.TempDir to a directory with space): %w", err))
	}
	if err := tmp.Truncate(f.size); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, opError(op, f.String(), fmt.Errorf("size temporary file %s: %w", tmp.Name(), err))
	}
	sk := &Sink{h: h, file: f, tmp: tmp}
	// The sink writes in place (draas.Hypervisor.OpenDisk): blocks not
	// written keep the disk's current content, which is read first, unless
	// this Hypervisor made the disk and nothing has written it yet.
	h.mu.Lock()
	fresh := h.fresh[freshKey(name, disk)]
	delete(h.fresh, freshKey(name, disk))
	h.mu.Unlock()
	if !fresh {
		if err := sk.prefill(ctx, &Source{h: h, file: f, vm: v.obj.Reference()}); err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			return nil, err
		}
	}
	return sk, nil
}

// ReadDisk returns a source reading the named VM's i-th disk (numbered as
// [Hypervisor.VMShape] lists them): a *[Source], or, when the VM has Changed
// Block Tracking on, a wrapper around one that is also a
// draas.ChangeTracker and a draas.ExtentSource (draas.As finds both).
//
// The VM must be powered off (draas.ErrConflict otherwise): a running VM's
// disk is locked by ESXi and changes under the reader. To read a running
// VM, use [Hypervisor.BackupDisks]. An unknown VM or disk index fails with
// draas.ErrNotFound.
func (h *Hypervisor) ReadDisk(ctx context.Context, name string, disk int) (draas.BlockSource, error) {
	const op = "vsphere: open for reading"
	v, d, f, err := h.offDisk(ctx, op, name, disk, "power it off, or read a snapshot with BackupDisks")
	if err != nil {
		return nil, err
	}
	src := &Source{h: h, file: f, vm: v.obj.Reference(), changeID: d.changeID}
	if cbtEnabled(v.mo.Config) {
		return trackedSource{src}, nil
	}
	return src, nil
}
