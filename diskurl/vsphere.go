package diskurl

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/vsphere"
)

// vsphereLogin is Options.VSphereLogin.
type vsphereLogin func(ctx context.Context, host, user string) (vsphere.Options, error)

// vsphereScheme is vsphere://[user@]vcenter[:port]/VM/disk-N: a disk of a
// powered-off VM. passwordHelp says where the password goes instead of the
// URL.
func vsphereScheme(login vsphereLogin, passwordHelp string) Scheme {
	if passwordHelp == "" {
		passwordHelp = "the program asks for it or reads it from its configuration"
	}
	v := &vsphereURLs{login: login, passwordHelp: passwordHelp}
	return Scheme{
		Name:    "vsphere",
		Example: "vsphere://user@vcenter.example.com/VM/disk-0?thumbprint=AB:CD:…",
		About:   "disk N of a powered-off vSphere VM (password: " + passwordHelp + ";\nthumbprint= pins a self-signed certificate); as sink the VM must exist",
		Check:   func(u *url.URL, _ Role) error { _, err := v.parse(u); return err },
		Open:    v.open,
		Create:  v.create,
	}
}

// vsphereURLs opens and creates the disks vsphere URLs name.
type vsphereURLs struct {
	login        vsphereLogin
	passwordHelp string
}

// vsphereTarget is what a vsphere URL names:
// vsphere://[user@]vcenter[:port]/VM/disk-N[?thumbprint=…&insecure=1].
type vsphereTarget struct {
	host       string // vcenter[:port]
	user       string
	vm         string
	disk       int
	thumbprint string
	insecure   bool
}

// sdk returns the vCenter's SDK URL.
func (t vsphereTarget) sdk() string { return "https://" + t.host + "/sdk" }

// parse reads a vsphere URL. It refuses a password in the URL, so that it
// does not show in process listings or shell history.
func (v *vsphereURLs) parse(u *url.URL) (vsphereTarget, error) {
	var t vsphereTarget
	if u.Host == "" || u.Opaque != "" {
		return t, errors.New("vsphere URL needs a vCenter host, as in vsphere://user@vcenter.example.com/VM/disk-0")
	}
	if _, set := u.User.Password(); set {
		return t, fmt.Errorf("vsphere URL must not carry a password: %s", v.passwordHelp)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || parts[0] == "" || !strings.HasPrefix(parts[1], "disk-") {
		return t, errors.New("vsphere URL path is /VM/disk-N, as in vsphere://vcenter.example.com/db01/disk-0")
	}
	n, err := strconv.Atoi(strings.TrimPrefix(parts[1], "disk-"))
	if err != nil || n < 0 {
		return t, fmt.Errorf("vsphere URL: %q is not disk-N with N a disk index from 0", parts[1])
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return t, fmt.Errorf("vsphere URL: bad query %q: %v", u.RawQuery, err)
	}
	for k := range q {
		if k != "thumbprint" && k != "insecure" {
			return t, fmt.Errorf("vsphere URL: unknown parameter %q (there are thumbprint=AB:CD:… and insecure=1)", k)
		}
	}
	if i := q.Get("insecure"); i != "" && i != "1" && i != "0" {
		return t, fmt.Errorf("vsphere URL: insecure=%q: write insecure=1 to skip certificate verification (prefer thumbprint=…)", i)
	}
	return vsphereTarget{
		host: u.Host, user: u.User.Username(), vm: parts[0], disk: n,
		thumbprint: q.Get("thumbprint"), insecure: q.Get("insecure") == "1",
	}, nil
}

// dial logs in to the vCenter of t.
func (v *vsphereURLs) dial(ctx context.Context, t vsphereTarget) (*vsphere.Hypervisor, error) {
	var opts vsphere.Options
	if v.login != nil {
		var err error
		if opts, err = v.login(ctx, t.host, t.user); err != nil {
			return nil, err
		}
	}
	if t.user != "" {
		opts.Username = t.user
	}
	if t.thumbprint != "" {
		opts.Thumbprint = t.thumbprint
	}
	if t.insecure {
		opts.Insecure = true
	}
	return vsphere.Dial(ctx, t.sdk(), opts)
}

// vsphereSource closes its Hypervisor's session with the source.
type vsphereSource struct {
	draas.BlockSource
	h *vsphere.Hypervisor
}

func (s vsphereSource) Close() error { return s.h.Close(context.Background()) }
func (s vsphereSource) Unwrap() any  { return s.BlockSource }

func (v *vsphereURLs) open(ctx context.Context, u *url.URL) (Source, error) {
	t, err := v.parse(u)
	if err != nil {
		return nil, err
	}
	h, err := v.dial(ctx, t)
	if err != nil {
		return nil, err
	}
	src, err := h.ReadDisk(ctx, t.vm, t.disk)
	if err != nil {
		h.Close(ctx)
		return nil, err
	}
	return vsphereSource{BlockSource: src, h: h}, nil
}

func (v *vsphereURLs) create(ctx context.Context, u *url.URL, size int64, o SinkOptions) (draas.VolumeSink, error) {
	t, err := v.parse(u)
	if err != nil {
		return nil, err
	}
	if o.Resume {
		return nil, draas.Invalidf("vsphere sinks cannot resume an interrupted copy: copy again without resuming")
	}
	h, err := v.dial(ctx, t)
	if err != nil {
		return nil, err
	}
	shape, err := h.VMShape(ctx, t.vm)
	if err != nil {
		h.Close(ctx)
		return nil, err
	}
	if t.disk >= len(shape.Disks) || shape.Disks[t.disk].Size < size {
		h.Close(ctx)
		return nil, draas.Invalidf("vsphere: VM %s has no disk %d of at least %d bytes: create the VM with the source's disk size first", t.vm, t.disk, size)
	}
	return h.OpenDisk(ctx, t.vm, t.disk)
}
