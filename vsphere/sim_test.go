package vsphere_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	vimxml "github.com/vmware/govmomi/vim25/xml"

	"github.com/opendraas/draas/vsphere"
)

// sim is the in-process vcsim (the VPX model: datacenter DC0 with a cluster,
// a standalone host, datastore LocalDS_0 and a few VMs) serving TLS on
// 127.0.0.1, extended with Changed Block Tracking (see cbtSim).
type sim struct {
	model  *simulator.Model
	server *simulator.Server
	cbt    *cbtSim
	// URL has no user information; user and password log in.
	URL            *url.URL
	user, password string
	sha256, sha1   string // thumbprints of the server's certificate
	certPool       *x509.CertPool
}

const (
	simUser     = "draas-admin"
	simPassword = "Tr0ub4dor&3-secret"
)

// shared is the simulator the tests share; each works on VMs of its own.
var shared *sim

func TestMain(m *testing.M) {
	flag.Parse()
	// vcsim logs every file name it tries for a new disk; keep its log for
	// -v runs.
	if !testing.Verbose() {
		log.SetOutput(io.Discard)
	}
	s, stop, err := startSim()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared = s
	code := m.Run()
	stop()
	os.Exit(code)
}

// newSim returns the shared simulator, with the fast datastore reads off
// again when the test ends.
func newSim(t testing.TB) *sim {
	t.Cleanup(func() { shared.cbt.fastReads.Store(false) })
	return shared
}

// startSim starts the simulator and returns a function that stops it.
func startSim() (*sim, func(), error) {
	model := simulator.VPX()
	if err := model.Create(); err != nil {
		return nil, nil, fmt.Errorf("vcsim: create model: %w", err)
	}
	model.Service.TLS = new(tls.Config)
	model.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(simUser, simPassword)}
	server := model.Service.NewServer()
	// Clients talk to vcsim through cbtSim, which serves vcsim's handlers
	// (on the mux NewServer completed) over TLS on 127.0.0.1.
	c := &cbtSim{svc: model.Service, m: model.Map(), epochs: map[string]*cbtEpoch{}, seq: map[string]int{}}
	front := httptest.NewUnstartedServer(c)
	front.StartTLS()
	stop := func() {
		front.Close()
		server.Close()
		model.Remove()
	}
	u, err := url.Parse(front.URL)
	if err != nil {
		stop()
		return nil, nil, err
	}
	u.Path = server.URL.Path
	s := &sim{model: model, server: server, cbt: c, URL: u, user: simUser, password: simPassword}
	cert := front.Certificate()
	s.sha256, s.sha1 = soap.ThumbprintSHA256(cert), soap.ThumbprintSHA1(cert)
	s.certPool = x509.NewCertPool()
	s.certPool.AddCert(cert)
	return s, stop, nil
}

// dial connects to the simulator with the certificate pinned.
func (s *sim) dial(t testing.TB, opts vsphere.Options) *vsphere.Hypervisor {
	t.Helper()
	opts.Username, opts.Password = s.user, s.password
	if opts.Thumbprint == "" {
		opts.Thumbprint = s.sha256
	}
	h, err := vsphere.Dial(t.Context(), s.URL.String(), opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { h.Close(t.Context()) })
	return h
}

// localPath returns the file in the simulator's datastore directory behind a
// datastore path "[ds] dir/file".
func (s *sim) localPath(t testing.TB, dsPath string) string {
	t.Helper()
	var p object.DatastorePath
	if !p.FromString(dsPath) {
		t.Fatalf("%q is not a datastore path", dsPath)
	}
	for _, e := range s.model.Map().All("Datastore") {
		ds := e.(*simulator.Datastore)
		if ds.Name == p.Datastore {
			return filepath.Join(ds.Info.GetDatastoreInfo().Url, filepath.FromSlash(p.Path))
		}
	}
	t.Fatalf("no datastore %q in the simulator", p.Datastore)
	return ""
}

// guestWrite writes p at off into the file behind a datastore path, as the
// guest of a running VM writes its disk: behind the back of the API.
func (s *sim) guestWrite(t testing.TB, dsPath string, off int64, p []byte) {
	t.Helper()
	f, err := os.OpenFile(s.localPath(t, dsPath), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(p, off); err != nil {
		t.Fatal(err)
	}
}

// cbtGrain is the granularity at which cbtSim tracks changes, as ESXi does
// for small disks.
const cbtGrain = 64 << 10

// pageSize is how much of the disk one QueryChangedDiskAreas answer covers.
const pageSize = 1 << 20

// cbtSim gives vcsim the Changed Block Tracking it lacks: vcsim does not
// implement QueryChangedDiskAreas, sets no change IDs and does not track
// writes (a disk's data is a plain file in its datastore directory).
//
// cbtSim derives the changes from the data instead. It is the HTTP server in
// front of vcsim's handlers, and looks at each SOAP call before vcsim does:
//   - CreateSnapshot_Task and CreateSnapshotEx_Task: for each disk of a VM
//     with changeTrackingEnabled, hash the disk's flat file in 64 KiB grains,
//     record the hashes under a new change ID ("52 …/N") and set that ID in
//     the disk's backing, so that the snapshot's configuration carries it as
//     vSphere's does; then vcsim takes the snapshot;
//   - ReconfigVM_Task changing changeTrackingEnabled: forget the VM's change
//     IDs, as vSphere does when tracking is turned off;
//   - QueryChangedDiskAreas: re-addressed to a managed object of cbtSim's
//     own (a cbtTracker per VM, registered in vcsim's Map), so that vcsim
//     still decodes the call, checks the session and encodes the answer or
//     fault. The tracker compares the grains recorded for the base change ID
//     with those of the snapshot asked about (or of the disk's current file
//     without a snapshot) and answers the grains that differ ("*": the
//     non-zero grains), at most 1 MiB of the disk per answer so that callers
//     must page. An unknown change ID is an InvalidArgument fault, a VM
//     without tracking a FileFault.
//
// (vcsim's Map.Handler hook cannot add the method: a session's object
// lookup falls back to the Map and replaces what the hook returns.)
//
// A grain rewritten with identical data does not count as changed, where
// real CBT would report it; tests change data when they mean to.
type cbtSim struct {
	svc *simulator.Service
	m   *simulator.Registry

	// fastReads serves datastore downloads from the datastore's directory
	// with net/http's file server, as vcsim does, but without the inventory
	// walk vcsim makes per request to find the datastore (~10 ms under
	// -race), for the conformance suites' thousands of small reads. Uploads
	// and all other tests go through vcsim's own handler.
	fastReads atomic.Bool

	mu      sync.Mutex
	epochs  map[string]*cbtEpoch // by change ID
	seq     map[string]int       // last sequence number by VM
	queries int                  // QueryChangedDiskAreas calls answered
}

type cbtEpoch struct {
	vm     string // VM reference value
	key    int32  // device key
	grains [][32]byte
}

func (c *cbtSim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if c.fastReads.Load() && r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/folder/") {
		if dir := c.datastoreDir(r.URL.Query().Get("dsName")); dir != "" {
			http.ServeFile(w, r, filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/folder/"))))
			return
		}
	}
	if r.Method != http.MethodPost || r.URL.Path != c.m.Path {
		c.svc.ServeMux.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if method, err := simulator.UnmarshalBody(types.TypeFunc(), body); err == nil && method.This.Type == "VirtualMachine" {
		switch req := method.Body.(type) {
		case *types.CreateSnapshot_Task, *types.CreateSnapshotEx_Task:
			c.mark(r, method.This)
		case *types.ReconfigVM_Task:
			if req.Spec.ChangeTrackingEnabled != nil {
				c.forget(r, method.This)
			}
		case *types.QueryChangedDiskAreas:
			req.This = c.tracker(method.This)
			env := soap.Envelope{Body: &methods.QueryChangedDiskAreasBody{Req: req}}
			if method.Header.Cookie != nil {
				env.Header = &soap.Header{Cookie: method.Header.Cookie}
			}
			if b, err := vimxml.Marshal(env); err == nil {
				body = append([]byte(vimxml.Header), b...)
			}
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	c.svc.ServeMux.ServeHTTP(w, r)
}

// withVM calls f with the VM locked as vcsim locks objects.
func (c *cbtSim) withVM(r *http.Request, ref types.ManagedObjectReference, f func(*simulator.VirtualMachine)) {
	vm, ok := c.m.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	ctx := &simulator.Context{Context: r.Context(), Map: c.m}
	ctx.WithLock(vm, func() { f(vm) })
}

func tracking(vm *simulator.VirtualMachine) bool {
	e := vm.Config.ChangeTrackingEnabled
	return e != nil && *e
}

// mark records the current grains of each disk of a tracked VM under a new
// change ID and sets the ID in the disk's backing.
func (c *cbtSim) mark(r *http.Request, ref types.ManagedObjectReference) {
	c.withVM(r, ref, func(vm *simulator.VirtualMachine) {
		if !tracking(vm) {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.seq[ref.Value]++
		for _, d := range disksIn(vm.Config.Hardware.Device) {
			b := d.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			g, err := grains(c.flatFile(b.FileName), d.CapacityInBytes)
			if err != nil {
				continue
			}
			id := fmt.Sprintf("52 0d %s %d/%d", ref.Value, d.Key, c.seq[ref.Value])
			c.epochs[id] = &cbtEpoch{vm: ref.Value, key: d.Key, grains: g}
			b.ChangeId = id
		}
	})
}

// forget drops the change IDs of a VM.
func (c *cbtSim) forget(r *http.Request, ref types.ManagedObjectReference) {
	c.withVM(r, ref, func(vm *simulator.VirtualMachine) {
		c.mu.Lock()
		for id, e := range c.epochs {
			if e.vm == ref.Value {
				delete(c.epochs, id)
			}
		}
		c.mu.Unlock()
		for _, d := range disksIn(vm.Config.Hardware.Device) {
			d.Backing.(*types.VirtualDiskFlatVer2BackingInfo).ChangeId = ""
		}
	})
}

// tracker returns the reference of the cbtTracker of a VM, registering it in
// vcsim's Map on first use.
func (c *cbtSim) tracker(vm types.ManagedObjectReference) types.ManagedObjectReference {
	ref := types.ManagedObjectReference{Type: "DraasChangeTracker", Value: vm.Value}
	if c.m.Get(ref) == nil {
		c.m.Put(&cbtTracker{Self: ref, vm: vm, cbt: c})
	}
	return ref
}

// datastoreDir returns the local directory behind the named datastore.
func (c *cbtSim) datastoreDir(name string) string {
	for _, e := range c.m.All("Datastore") {
		if ds := e.(*simulator.Datastore); ds.Name == name {
			return ds.Info.GetDatastoreInfo().Url
		}
	}
	return ""
}

// flatFile returns the local file holding a disk's data in vcsim: the
// "-flat.vmdk" beside the descriptor its backing names.
func (c *cbtSim) flatFile(fileName string) string {
	var p object.DatastorePath
	p.FromString(fileName)
	dir := c.datastoreDir(p.Datastore)
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, filepath.FromSlash(simulator.VirtualDiskBackingFileName(p.Path)))
}

// grains hashes the disk's data in cbtGrain pieces; a file shorter than the
// disk holds zeros past its end.
func grains(path string, size int64) ([][32]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	n := (size + cbtGrain - 1) / cbtGrain
	out := make([][32]byte, n)
	buf := make([]byte, cbtGrain)
	for i := range n {
		clear(buf)
		if off := i * cbtGrain; off < int64(len(data)) {
			copy(buf, data[off:])
		}
		out[i] = sha256.Sum256(buf)
	}
	return out, nil
}

var zeroGrain = sha256.Sum256(make([]byte, cbtGrain))

func disksIn(devices []types.BaseVirtualDevice) []*types.VirtualDisk {
	var disks []*types.VirtualDisk
	for _, d := range devices {
		if vd, ok := d.(*types.VirtualDisk); ok {
			if _, ok := vd.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok {
				disks = append(disks, vd)
			}
		}
	}
	return disks
}

// cbtTracker answers QueryChangedDiskAreas for one VM.
type cbtTracker struct {
	Self types.ManagedObjectReference
	vm   types.ManagedObjectReference
	cbt  *cbtSim
}

func (t *cbtTracker) Reference() types.ManagedObjectReference { return t.Self }

func (t *cbtTracker) QueryChangedDiskAreas(ctx *simulator.Context, req *types.QueryChangedDiskAreas) soap.HasFault {
	body := new(methods.QueryChangedDiskAreasBody)
	vm, ok := ctx.Map.Get(t.vm).(*simulator.VirtualMachine)
	if !ok {
		body.Fault_ = simulator.Fault("", &types.ManagedObjectNotFound{Obj: t.vm})
		return body
	}
	var info *types.DiskChangeInfo
	var fault types.BaseMethodFault
	ctx.WithLock(vm, func() { info, fault = t.query(ctx, vm, req) })
	if fault != nil {
		body.Fault_ = simulator.Fault("", fault)
		return body
	}
	body.Res = &types.QueryChangedDiskAreasResponse{Returnval: *info}
	return body
}

func (t *cbtTracker) query(ctx *simulator.Context, vm *simulator.VirtualMachine, req *types.QueryChangedDiskAreas) (*types.DiskChangeInfo, types.BaseMethodFault) {
	c := t.cbt
	devices := vm.Config.Hardware.Device
	if req.Snapshot != nil {
		snap, ok := ctx.Map.Get(*req.Snapshot).(*simulator.VirtualMachineSnapshot)
		if !ok {
			return nil, &types.ManagedObjectNotFound{Obj: *req.Snapshot}
		}
		devices = snap.Config.Hardware.Device
	}
	var disk *types.VirtualDisk
	for _, d := range disksIn(devices) {
		if d.Key == req.DeviceKey {
			disk = d
		}
	}
	if disk == nil {
		return nil, &types.InvalidArgument{InvalidProperty: "deviceKey"}
	}
	b := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !tracking(vm) {
		return nil, &types.FileFault{File: b.FileName}
	}
	size := disk.CapacityInBytes
	if req.StartOffset < 0 || req.StartOffset >= size {
		return nil, &types.InvalidArgument{InvalidProperty: "startOffset"}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.queries++
	var target [][32]byte
	if req.Snapshot != nil {
		e, ok := c.epochs[b.ChangeId]
		if !ok {
			return nil, &types.FileFault{File: b.FileName} // the snapshot predates tracking
		}
		target = e.grains
	} else {
		g, err := grains(c.flatFile(b.FileName), size)
		if err != nil {
			return nil, &types.FileFault{File: b.FileName}
		}
		target = g
	}
	changed := func(i int) bool { return target[i] != zeroGrain }
	if req.ChangeId != "*" {
		base, ok := c.epochs[req.ChangeId]
		if !ok || base.vm != t.vm.Value || base.key != req.DeviceKey || len(base.grains) != len(target) {
			return nil, &types.InvalidArgument{InvalidProperty: "changeId"}
		}
		changed = func(i int) bool { return target[i] != base.grains[i] }
	}
	info := &types.DiskChangeInfo{StartOffset: req.StartOffset, Length: min(pageSize, size-req.StartOffset)}
	end := info.StartOffset + info.Length
	for i := int(req.StartOffset / cbtGrain); int64(i)*cbtGrain < end; i++ {
		if !changed(i) {
			continue
		}
		start := max(int64(i)*cbtGrain, req.StartOffset)
		stop := min(int64(i+1)*cbtGrain, end)
		if n := len(info.ChangedArea); n > 0 && info.ChangedArea[n-1].Start+info.ChangedArea[n-1].Length == start {
			info.ChangedArea[n-1].Length += stop - start
			continue
		}
		info.ChangedArea = append(info.ChangedArea, types.DiskChangeExtent{Start: start, Length: stop - start})
	}
	return info, nil
}

// Queries returns how many QueryChangedDiskAreas calls the simulator answered.
func (c *cbtSim) Queries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queries
}

// contains reports whether s holds sub, for password checks.
func contains(s, sub string) bool { return strings.Contains(s, sub) }
