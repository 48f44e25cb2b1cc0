package vsphere

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/session/keepalive"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/opendraas/draas"
)

// Options configures a [Hypervisor]. The zero value is useful: TLS
// certificates are verified against the system's roots, and VMs are placed
// in the first datacenter, compute resource, datastore and network of the
// inventory (see [Hypervisor.CreateVM]).
type Options struct {
	// Username and Password log in when [Dial] connects. When empty, the
	// user information of the URL is used. They are never logged, never part
	// of an error message and not kept after login; String and GoString
	// print the password as "xxxxx".
	Username string
	Password string

	// Thumbprint, RootCAs, Insecure and KeepAlive configure the connection
	// [Dial] makes; [New] uses the client it is given as it is.
	//
	// Thumbprint pins the server's TLS certificate by its SHA-256 or SHA-1
	// thumbprint, as vCenter shows it ("AB:CD:…"; case, colons and spaces do
	// not matter). When set, exactly that certificate is accepted, signed by
	// a trusted CA or not: the way to talk to a vCenter with a self-signed
	// certificate. A different certificate fails with a *CertificateError.
	Thumbprint string
	// RootCAs, when set, replaces the system's roots for verifying the
	// server's certificate chain, e.g. with vCenter's VMCA root certificate.
	RootCAs *x509.CertPool
	// Insecure disables certificate verification altogether. Anyone on the
	// network path can then read the session and the disks; prefer
	// Thumbprint.
	Insecure bool
	// KeepAlive is how often [Dial]'s session is kept alive while idle, so
	// that vCenter does not expire it during a long copy: 0 means every 5
	// minutes, a negative value turns keep-alive off.
	KeepAlive time.Duration

	// Placement defaults for [Hypervisor.CreateVM] when a draas.VMRequest
	// leaves the field empty: names or inventory paths. Datacenter also
	// limits where VMs are looked up by name; empty means all datacenters.
	// Host, Cluster and ResourcePool (in that order of precedence) are used
	// only when the request names neither a host nor a cluster.
	Datacenter   string
	Cluster      string
	Host         string
	ResourcePool string
	Folder       string
	Datastore    string
	Network      string

	// GuestID is the guest OS identifier of created VMs; empty means
	// "otherGuest64".
	GuestID string
	// SCSIController is the controller created VMs get for their disks:
	// "pvscsi" (the default) or "lsilogic".
	SCSIController string
	// NetworkAdapter is the type of the NIC created VMs get: "vmxnet3" (the
	// default) or "e1000e".
	NetworkAdapter string

	// TempDir holds the local files in which a disk sink gathers blocks
	// before uploading them; empty means os.TempDir(). It needs free space
	// for the data written to a disk (the files are sparse).
	TempDir string
}

// String returns the options with the password masked.
func (o Options) String() string {
	o.Password = maskPassword(o.Password)
	type plain Options // drop the String method
	return fmt.Sprintf("%+v", plain(o))
}

// GoString returns the options with the password masked.
func (o Options) GoString() string {
	o.Password = maskPassword(o.Password)
	type plain Options
	return strings.Replace(fmt.Sprintf("%#v", plain(o)), "vsphere.plain", "vsphere.Options", 1)
}

func maskPassword(p string) string {
	if p == "" {
		return ""
	}
	return "xxxxx"
}

// maxIdleConns is how many idle connections to the server Dial's client
// keeps, for parallel disk reads.
const maxIdleConns = 32

// Block sizes.
const (
	// SinkBlockSize is the size of the blocks a [Sink] accepts. Copiers read
	// their source in the sink's blocks, so it is large enough to amortise a
	// request per read from remote sources (an EBS snapshot's 512 KiB
	// blocks, a datastore file).
	SinkBlockSize = 1 << 20
	// SourceBlockSize is the granularity a [Source] reports: a VMDK grain,
	// and the unit in which ESXi tracks changed blocks. Each ReadAt is one
	// HTTP range request, so callers choosing their own read size should
	// read a MiB or more at a time.
	SourceBlockSize = 64 << 10
)

// Hypervisor is a draas.Hypervisor on vCenter or ESXi through govmomi.
//
// VMs are named by their vSphere name, or by an inventory path when the name
// contains a slash ("/DC0/vm/prod/db01"). Disks are numbered in controller
// order (see [Hypervisor.VMShape]). Disk data moves over the datastore HTTP
// endpoint (/folder) as flat extents; see the package documentation for why
// and for what that requires.
//
// All methods are safe for concurrent use.
type Hypervisor struct {
	c    *vim25.Client
	opts Options
	// owned is set when Dial made the session: Close logs it out.
	owned bool
	ka    *keepalive.HandlerSOAP

	closeOnce sync.Once
	closeErr  error

	mu sync.Mutex
	// fresh marks the disks of VMs CreateVM made that no sink has written
	// yet: they read as zeros, so a sink skips reading them first.
	fresh map[string]bool
}

var _ draas.Hypervisor = (*Hypervisor)(nil)

// New returns a Hypervisor using a logged-in client, for example the Client
// field of a *govmomi.Client. The caller keeps owning the client and its
// session: Close does not log out. ctx bounds the checks New makes (that
// Options.Datacenter exists, when set).
func New(ctx context.Context, c *vim25.Client, opts Options) (*Hypervisor, error) {
	if c == nil {
		return nil, draas.Invalidf("vsphere: New needs a client; pass the Client field of a logged-in *govmomi.Client, or use Dial")
	}
	if err := checkOptions(opts); err != nil {
		return nil, err
	}
	opts.Password = "" // not needed after login; never kept
	h := &Hypervisor{c: c, opts: opts}
	if opts.Datacenter != "" {
		if _, err := h.finder().Datacenter(ctx, opts.Datacenter); err != nil {
			return nil, opError("vsphere: find datacenter", fmt.Sprintf("%q (Options.Datacenter)", opts.Datacenter), err)
		}
	}
	return h, nil
}

func checkOptions(opts Options) error {
	switch opts.SCSIController {
	case "", "pvscsi", "lsilogic":
	default:
		return draas.Invalidf("vsphere: Options.SCSIController %q is not supported; use \"pvscsi\" or \"lsilogic\"", opts.SCSIController)
	}
	switch opts.NetworkAdapter {
	case "", "vmxnet3", "e1000e":
	default:
		return draas.Invalidf("vsphere: Options.NetworkAdapter %q is not supported; use \"vmxnet3\" or \"e1000e\"", opts.NetworkAdapter)
	}
	return nil
}

// Dial connects to the vCenter or ESXi at rawURL ("https://vcenter.example.com"
// or "https://user:password@vcenter/sdk"; the path defaults to /sdk) and
// logs in with the URL's user information or Options.Username and
// Options.Password, which take precedence. The certificate is verified
// unless Options say otherwise (Thumbprint, RootCAs, Insecure); an
// untrusted or mismatching certificate fails with a *CertificateError. The
// password appears in no error and is not kept after login. Close logs the
// session out.
func Dial(ctx context.Context, rawURL string, opts Options) (*Hypervisor, error) {
	if err := checkOptions(opts); err != nil {
		return nil, err
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		// url.Parse's message quotes the whole URL, password included.
		return nil, draas.Invalidf("vsphere: Dial: the URL is malformed; use https://host[:port][/sdk], with credentials in Options or as user:password@host")
	}
	user, pass := opts.Username, opts.Password
	if u.User != nil {
		if user == "" {
			user = u.User.Username()
		}
		if p, ok := u.User.Password(); ok && pass == "" {
			pass = p
		}
	}
	secrets := []string{pass}
	if p, ok := u.User.Password(); ok {
		secrets = append(secrets, p)
	}
	u.User = nil
	redact := func(err error) error { return redactError(err, secrets...) }
	if u.Path == "" || u.Path == "/" {
		u.Path = "/sdk"
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && opts.Insecure:
	default:
		return nil, draas.Invalidf("vsphere: Dial %s: the scheme must be https (http only with Options.Insecure)", u.Redacted())
	}
	if user == "" {
		return nil, draas.Invalidf("vsphere: Dial %s: no credentials; set Options.Username and Options.Password or put user:password@ in the URL", u.Redacted())
	}

	sc := soap.NewClient(u, opts.Insecure)
	// Disk reads run in parallel, one HTTP request each: keep a connection
	// per reader rather than a TLS handshake per read.
	sc.DefaultTransport().MaxIdleConnsPerHost = maxIdleConns
	tlsCfg := sc.DefaultTransport().TLSClientConfig
	if opts.RootCAs != nil {
		tlsCfg.RootCAs = opts.RootCAs
	}
	if opts.Thumbprint != "" && !opts.Insecure {
		pin, err := parseThumbprint(opts.Thumbprint)
		if err != nil {
			return nil, err
		}
		pinTLS(tlsCfg, pin)
	}
	const op = "vsphere: connect to"
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, opError(op, u.Redacted(), redact(certificateError(u.Host, err)))
	}
	h := &Hypervisor{c: vc, owned: true}
	if opts.KeepAlive >= 0 {
		idle := opts.KeepAlive
		if idle == 0 {
			idle = 5 * time.Minute
		}
		h.ka = keepalive.NewHandlerSOAP(vc.RoundTripper, idle, nil)
		vc.RoundTripper = h.ka
	}
	if err := session.NewManager(vc).Login(ctx, url.UserPassword(user, pass)); err != nil {
		if fault.Is(err, &types.InvalidLogin{}) {
			err = fmt.Errorf("%w; check Options.Username and Options.Password (or the URL's user:password)", err)
		}
		return nil, opError("vsphere: log in to", fmt.Sprintf("%s as %q", u.Redacted(), user), redact(err))
	}
	opts.Password = ""
	h.opts = opts
	if opts.Datacenter != "" {
		if _, err := h.finder().Datacenter(ctx, opts.Datacenter); err != nil {
			_ = h.Close(ctx)
			return nil, opError("vsphere: find datacenter", fmt.Sprintf("%q (Options.Datacenter)", opts.Datacenter), err)
		}
	}
	return h, nil
}

// redactError hides the secrets in err's message while keeping err in the
// chain for errors.Is and errors.As.
func redactError(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	if msg == err.Error() {
		return err
	}
	return &redacted{err: err, msg: msg}
}

type redacted struct {
	err error
	msg string
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

// Client returns the vSphere client, for calls this package does not wrap.
func (h *Hypervisor) Client() *vim25.Client { return h.c }

// String names the server the hypervisor talks to; it holds no credentials.
func (h *Hypervisor) String() string {
	u := *h.c.URL()
	u.User = nil
	return "vsphere " + u.Redacted()
}

// Close logs out the session [Dial] made; for a Hypervisor from [New] it
// does nothing. It is safe to call more than once.
func (h *Hypervisor) Close(ctx context.Context) error {
	h.closeOnce.Do(func() {
		if !h.owned {
			return
		}
		if h.ka != nil {
			defer h.ka.Stop()
		}
		if err := session.NewManager(h.c).Logout(ctx); err != nil {
			h.closeErr = opError("vsphere: log out of", h.String(), err)
		}
	})
	return h.closeErr
}

// finder returns a new finder (finders are not safe for concurrent use).
func (h *Hypervisor) finder() *find.Finder {
	return find.NewFinder(h.c, true)
}

// vmInfo is what the methods need to know about a VM.
type vmInfo struct {
	name string
	obj  *object.VirtualMachine
	mo   mo.VirtualMachine
}

func (v *vmInfo) poweredOn() bool {
	return v.mo.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff
}

// vmProps are the properties lookup retrieves.
var vmProps = []string{"name", "config", "runtime.powerState", "network", "snapshot"}

// lookup finds the named VM: by exact name in the inventory (limited to
// Options.Datacenter when set), or by inventory path when name holds a
// slash. It fails with draas.ErrNotFound when there is none, and with
// draas.ErrConflict when the name is ambiguous.
func (h *Hypervisor) lookup(ctx context.Context, op, name string) (*vmInfo, error) {
	return h.lookupIn(ctx, op, h.opts.Datacenter, name)
}

// lookupIn is lookup limited to the datacenter dc, or to none when dc is
// empty.
func (h *Hypervisor) lookupIn(ctx context.Context, op, dc, name string) (*vmInfo, error) {
	res := fmt.Sprintf("VM %q", name)
	if name == "" {
		return nil, opErrorKind(op, res, draas.ErrInvalid, errors.New("no VM name given"))
	}
	var ref types.ManagedObjectReference
	if strings.Contains(name, "/") {
		vm, err := h.finder().VirtualMachine(ctx, name)
		if err != nil {
			return nil, opError(op, res, err)
		}
		ref = vm.Reference()
	} else {
		refs, err := h.vmsNamed(ctx, dc, name)
		if err != nil {
			return nil, opError(op, res, err)
		}
		switch len(refs) {
		case 0:
			return nil, opErrorKind(op, res, draas.ErrNotFound, fmt.Errorf("no VM named %q in %s; names are case-sensitive", name, scope(dc)))
		case 1:
			ref = refs[0]
		default:
			return nil, opErrorKind(op, res, draas.ErrConflict, fmt.Errorf("%d VMs are named %q in %s; name it by inventory path (/datacenter/vm/folder/name) or set Options.Datacenter", len(refs), name, scope(dc)))
		}
	}
	v := &vmInfo{name: name, obj: object.NewVirtualMachine(h.c, ref)}
	if err := property.DefaultCollector(h.c).RetrieveOne(ctx, ref, vmProps, &v.mo); err != nil {
		return nil, opError(op, res, err)
	}
	if v.mo.Config == nil {
		return nil, opErrorKind(op, res, draas.ErrConflict, errors.New("the VM has no configuration (it is inaccessible or orphaned); fix it in vCenter"))
	}
	return v, nil
}

func scope(dc string) string {
	if dc != "" {
		return fmt.Sprintf("datacenter %q", dc)
	}
	return "the inventory"
}

// vmsNamed returns the VMs with exactly the given name in datacenter dc, or
// in all datacenters when dc is empty.
func (h *Hypervisor) vmsNamed(ctx context.Context, dc, name string) ([]types.ManagedObjectReference, error) {
	root := h.c.ServiceContent.RootFolder
	if dc != "" {
		d, err := h.finder().Datacenter(ctx, dc)
		if err != nil {
			return nil, err
		}
		root = d.Reference()
	}
	m := view.NewManager(h.c)
	v, err := m.CreateContainerView(ctx, root, []string{"VirtualMachine"}, true)
	if err != nil {
		return nil, err
	}
	defer v.Destroy(context.WithoutCancel(ctx))
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name"}, &vms); err != nil {
		return nil, err
	}
	var refs []types.ManagedObjectReference
	for _, vm := range vms {
		if vm.Name == name {
			refs = append(refs, vm.Self)
		}
	}
	slices.SortFunc(refs, func(a, b types.ManagedObjectReference) int { return strings.Compare(a.Value, b.Value) })
	return refs, nil
}
