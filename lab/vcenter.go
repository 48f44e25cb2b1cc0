package lab

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/vsphere"
)

// VCenter is an on-premises site on vcsim, govmomi's vCenter simulator,
// running in the process: datacenter DC0 with a cluster of three hosts, a
// standalone host, datastore LocalDS_0 (a local temporary directory) and
// network "VM Network", served over TLS on 127.0.0.1 with a self-signed
// certificate. Hypervisor is package vsphere's client of it, logged in with
// the certificate pinned by its thumbprint, as against a real vCenter.
//
// vcsim has no Changed Block Tracking: every backup of one of its VMs reads
// each disk whole (the backup store still uploads only the chunks it
// lacks).
//
// Disk data moves over the datastore HTTP endpoint (/folder). Unless
// Options.DatastoreOverTLS is set, those requests are handed to vcsim's
// handler in the process rather than sent through the loopback socket, and
// an upload leaves the datastore file sparse where the disk is zeros: a
// failback writes whole disks of whole GiB (the size of their EBS volumes),
// and pushing each GiB through TLS on loopback takes seconds on a small
// machine. Every other call, and every byte's path through package vsphere,
// is the same either way.
type VCenter struct {
	// URL is the SDK endpoint, https://127.0.0.1:PORT/sdk, without the
	// simulator's user and password.
	URL string
	// Thumbprint is the SHA-256 thumbprint of the simulator's certificate.
	Thumbprint string
	// Hypervisor is the site as package vsphere drives it.
	Hypervisor *vsphere.Hypervisor

	model  *simulator.Model
	server *simulator.Server
}

// startVCenter starts a simulator with no VMs of its own and logs in to it.
func startVCenter(ctx context.Context, overTLS bool) (*VCenter, error) {
	model := simulator.VPX()
	model.Machine = 0 // only the VMs the lab makes
	if err := model.Create(); err != nil {
		model.Remove()
		return nil, fmt.Errorf("lab: create the vcsim inventory: %w", err)
	}
	model.Service.TLS = new(tls.Config) // a self-signed certificate
	server := model.Service.NewServer()
	v := &VCenter{model: model, server: server, Thumbprint: soap.ThumbprintSHA256(server.Certificate())}
	u := *server.URL
	user := u.User
	u.User = nil
	v.URL = u.String()
	pass, _ := user.Password()
	h, err := vsphere.Dial(ctx, v.URL, vsphere.Options{
		Username: user.Username(), Password: pass, Thumbprint: v.Thumbprint,
		KeepAlive: -1, // the lab lives for seconds; and no call may race the transport swap below
	})
	if err != nil {
		v.close()
		return nil, fmt.Errorf("lab: log in to vcsim at %s: %w", v.URL, err)
	}
	v.Hypervisor = h
	if !overTLS {
		dirs, err := datastoreDirs(ctx, h)
		if err != nil {
			v.close()
			return nil, err
		}
		// No request is in flight: Dial has returned and keep-alive is off.
		hc := &h.Client().Client.Client
		hc.Transport = &inProcessDatastore{next: hc.Transport, handler: model.Service.ServeMux, dirs: dirs}
	}
	return v, nil
}

// datastoreDirs maps the names of vcsim's datastores to their local
// directories.
func datastoreDirs(ctx context.Context, h *vsphere.Hypervisor) (map[string]string, error) {
	c := h.Client()
	m := view.NewManager(c)
	cv, err := m.CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{"Datastore"}, true)
	if err != nil {
		return nil, fmt.Errorf("lab: list vcsim's datastores: %w", err)
	}
	defer cv.Destroy(ctx)
	var all []mo.Datastore
	if err := cv.Retrieve(ctx, []string{"Datastore"}, []string{"name", "summary"}, &all); err != nil {
		return nil, fmt.Errorf("lab: list vcsim's datastores: %w", err)
	}
	dirs := map[string]string{}
	for _, ds := range all {
		dirs[ds.Name] = ds.Summary.Url
	}
	return dirs, nil
}

// close logs out and stops the simulator, deleting its datastore.
func (v *VCenter) close() {
	if v.Hypervisor != nil {
		_ = v.Hypervisor.Close(context.Background())
	}
	v.server.Close()
	v.model.Remove()
}

// createVM makes a powered-off VM of the shape whose disks hold contents,
// written through package vsphere.
func (v *VCenter) createVM(ctx context.Context, name string, shape draas.Shape, contents []draas.BlockSource) error {
	h := v.Hypervisor
	if err := h.CreateVM(ctx, draas.VMRequest{Name: name, Shape: shape}); err != nil {
		return fmt.Errorf("lab: create VM %s in vcsim: %w", name, err)
	}
	for i, src := range contents {
		sink, err := h.OpenDisk(ctx, name, i)
		if err != nil {
			return fmt.Errorf("lab: open disk %d of VM %s: %w", i, name, err)
		}
		if _, err := blockcopy.Copy(ctx, sink, src, blockcopy.Options{}); err != nil {
			return fmt.Errorf("lab: write disk %d of VM %s: %w", i, name, err)
		}
	}
	return nil
}

// GuestDisk opens the i-th disk (in vSphere's controller order) of the
// named VM as its guest sees it: the file holding the disk's data in the
// datastore, read and written behind the API's back, as a running guest
// writes its disk. The VM may be running; it must have no snapshot (a
// snapshot's delta would hold the writes). Close the disk after use.
func (v *VCenter) GuestDisk(ctx context.Context, vm string, i int) (*GuestDisk, error) {
	c := v.Hypervisor.Client()
	f := find.NewFinder(c, true)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		return nil, fmt.Errorf("lab: guest disk %d of VM %s: %w", i, vm, err)
	}
	f.SetDatacenter(dc)
	obj, err := f.VirtualMachine(ctx, vm)
	if err != nil {
		return nil, fmt.Errorf("lab: guest disk %d of VM %s: %w", i, vm, err)
	}
	devices, err := obj.Device(ctx)
	if err != nil {
		return nil, fmt.Errorf("lab: devices of VM %s: %w", vm, err)
	}
	disks := devices.SelectByType((*types.VirtualDisk)(nil))
	if i < 0 || i >= len(disks) {
		return nil, fmt.Errorf("lab: VM %s has %d disks, no disk %d: %w", vm, len(disks), i, draas.ErrNotFound)
	}
	// The lab's VMs have SCSI disks only: vSphere's order is by controller,
	// then unit.
	slices.SortStableFunc(disks, func(a, b types.BaseVirtualDevice) int {
		x, y := a.GetVirtualDevice(), b.GetVirtualDevice()
		return cmp.Or(cmp.Compare(x.ControllerKey, y.ControllerKey), cmp.Compare(unit(x), unit(y)))
	})
	disk := disks[i].(*types.VirtualDisk)
	backing, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !ok || backing.Datastore == nil {
		return nil, fmt.Errorf("lab: disk %d of VM %s is not a flat disk on a datastore", i, vm)
	}
	if backing.Parent != nil {
		return nil, fmt.Errorf("lab: disk %d of VM %s runs on a snapshot's delta disk: %w", i, vm, draas.ErrConflict)
	}
	var ds mo.Datastore
	if err := property.DefaultCollector(c).RetrieveOne(ctx, *backing.Datastore, []string{"summary"}, &ds); err != nil {
		return nil, fmt.Errorf("lab: datastore of disk %d of VM %s: %w", i, vm, err)
	}
	var p object.DatastorePath
	if !p.FromString(backing.FileName) {
		return nil, fmt.Errorf("lab: disk %d of VM %s: %q is not a datastore path", i, vm, backing.FileName)
	}
	path := filepath.Join(ds.Summary.Url, filepath.FromSlash(simulator.VirtualDiskBackingFileName(p.Path)))
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("lab: disk %d of VM %s: %w", i, vm, err)
	}
	return &GuestDisk{f: file, size: disk.CapacityInBytes}, nil
}

func unit(d *types.VirtualDevice) int32 {
	if d.UnitNumber == nil {
		return -1
	}
	return *d.UnitNumber
}

// GuestDisk is a vcsim VM's disk as its guest sees it. It reads zeros
// where the datastore file is shorter than the disk.
type GuestDisk struct {
	f    *os.File
	size int64
}

// Size returns the disk's capacity in bytes.
func (d *GuestDisk) Size() int64 { return d.size }

// ReadAt reads the disk's bytes at off; it returns io.EOF only past the
// disk's end.
func (d *GuestDisk) ReadAt(p []byte, off int64) (int, error) {
	if off >= d.size {
		return 0, io.EOF
	}
	want := len(p)
	p = p[:min(int64(len(p)), d.size-off)]
	n, err := d.f.ReadAt(p, off)
	if errors.Is(err, io.EOF) { // a thin file: zeros past its end
		clear(p[n:])
		n, err = len(p), nil
	}
	if err == nil && n < want {
		err = io.EOF
	}
	return n, err
}

// WriteAt writes p at off; it must fit in the disk.
func (d *GuestDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > d.size {
		return 0, fmt.Errorf("lab: write %d bytes at %d past the end of a %d-byte disk: %w", len(p), off, d.size, draas.ErrInvalid)
	}
	return d.f.WriteAt(p, off)
}

// Close closes the datastore file.
func (d *GuestDisk) Close() error { return d.f.Close() }

// inProcessDatastore hands the datastore endpoint's requests (/folder/...)
// to vcsim in the process and sends everything else on. Uploads go to
// vcsim's handler; downloads are served from the datastore's directory by
// net/http's file server, as vcsim's handler does, but without the
// inventory search it makes for every request (a few milliseconds each, and
// a copy reads a disk in thousands of requests).
type inProcessDatastore struct {
	next    http.RoundTripper
	handler http.Handler
	dirs    map[string]string // datastore name to local directory
}

func (t *inProcessDatastore) RoundTrip(r *http.Request) (*http.Response, error) {
	const prefix = "/folder/"
	if !strings.HasPrefix(r.URL.Path, prefix) {
		return t.next.RoundTrip(r)
	}
	req := r.Clone(r.Context()) // the handlers rewrite URL.Path
	req.RequestURI = r.URL.RequestURI()
	req.RemoteAddr = "127.0.0.1:0"
	if r.Body == nil {
		req.Body = http.NoBody
	} else {
		req.Body = sparseBody{r.Body}
	}
	handler := t.handler
	if dir, ok := t.dirs[req.URL.Query().Get("dsName")]; ok && (req.Method == http.MethodGet || req.Method == http.MethodHead) {
		req.URL.Path = strings.TrimPrefix(req.URL.Path, prefix[:len(prefix)-1])
		handler = http.FileServer(http.Dir(dir))
	}
	pr, pw := io.Pipe()
	w := &pipeResponse{header: http.Header{}, body: pw, ready: make(chan struct{})}
	go func() {
		defer func() {
			w.WriteHeader(http.StatusOK)
			pw.Close()
			req.Body.Close()
		}()
		handler.ServeHTTP(w, req)
	}()
	select {
	case <-w.ready:
	case <-r.Context().Done():
		pr.CloseWithError(r.Context().Err())
		return nil, r.Context().Err()
	}
	length := int64(-1)
	if n, err := strconv.ParseInt(w.sent.Get("Content-Length"), 10, 64); err == nil {
		length = n
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)), StatusCode: w.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: w.sent, Body: pr, ContentLength: length, Request: r,
	}, nil
}

// pipeResponse is the handler's side of an in-process response: the status
// and headers once written, the body through a pipe.
type pipeResponse struct {
	header http.Header
	body   *io.PipeWriter
	once   sync.Once
	status int
	sent   http.Header // header as of WriteHeader
	ready  chan struct{}
}

func (w *pipeResponse) Header() http.Header { return w.header }

func (w *pipeResponse) WriteHeader(code int) {
	w.once.Do(func() {
		w.status, w.sent = code, w.header.Clone()
		close(w.ready)
	})
}

func (w *pipeResponse) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

// ReadFrom copies in MiB pieces (io.Copy's 32 KiB would be a pipe hand-off
// each).
func (w *pipeResponse) ReadFrom(r io.Reader) (int64, error) {
	w.WriteHeader(http.StatusOK)
	return io.CopyBuffer(onlyWriter{w.body}, onlyReader{r}, make([]byte, 1<<20))
}

// sparseBody is an upload's body. vcsim copies it into the datastore file
// with io.Copy, which calls WriteTo: it writes in MiB pieces and seeks over
// pieces of zeros, so that the file stays sparse.
type sparseBody struct{ io.ReadCloser }

func (b sparseBody) WriteTo(w io.Writer) (int64, error) {
	seeker, _ := w.(io.Seeker)
	buf := make([]byte, 1<<20)
	var total int64
	skipped := false // the last piece was seeked over
	for {
		n, err := io.ReadFull(b.ReadCloser, buf)
		if n > 0 {
			if p := buf[:n]; seeker != nil && draas.IsZero(p) {
				if _, err := seeker.Seek(int64(n), io.SeekCurrent); err != nil {
					return total, err
				}
				skipped = true
			} else {
				if _, err := w.Write(p); err != nil {
					return total, err
				}
				skipped = false
			}
			total += int64(n)
		}
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			if skipped { // give the file its full size
				if _, err := seeker.Seek(-1, io.SeekCurrent); err != nil {
					return total, err
				}
				if _, err := w.Write([]byte{0}); err != nil {
					return total, err
				}
			}
			return total, nil
		case err != nil:
			return total, err
		}
	}
}

type onlyWriter struct{ io.Writer }

type onlyReader struct{ io.Reader }
