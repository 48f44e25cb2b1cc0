package main

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/local"
)

// source is an opened SOURCE: a disk to read, closed when the copy is over.
type source interface {
	draas.BlockSource
	Close() error
}

// sinkOptions are the command-line choices a scheme's sink honours.
type sinkOptions struct {
	// Overwrite replaces an existing disk at the sink.
	Overwrite bool
	// Resume continues the partial output of an interrupted copy.
	Resume bool
	// State is the sink's state saved in the checkpoint of the copy being
	// resumed, or nil. Sinks in the cloud continue the pending snapshot or
	// recovery point it names.
	State []byte
	// Source is the SOURCE argument, for descriptions.
	Source string
}

// createdSink is a sink that creates a resource whose name is known only
// once it exists (a recovery point, a snapshot). Created returns the URL
// that reads it back; diskcopy prints it.
type createdSink interface {
	Created() string
}

// coveringSink is a sink that starts with content of its own (an EBS
// snapshot on a parent): Cover returns extents the copy must write besides
// the source's allocated ones, for the result to equal the source.
type coveringSink interface {
	Cover(ctx context.Context) ([]draas.Extent, error)
}

// scheme is one kind of place a disk can live, named by a URL scheme. A
// scheme whose open and create functions are both nil is planned: it is
// listed in help and errors but not usable yet.
type scheme struct {
	// name is the URL scheme, e.g. "file".
	name string
	// example is a URL of this scheme, shown in help and errors.
	example string
	// about says in a few words what the URL names.
	about string
	// open opens u as a source; nil when the scheme cannot be read (yet).
	open func(ctx context.Context, u *url.URL) (source, error)
	// create creates u as a sink for a disk of size bytes; nil when the
	// scheme cannot be written (yet).
	create func(ctx context.Context, u *url.URL, size int64, o sinkOptions) (draas.VolumeSink, error)
	// partial names where a sink at u keeps unfinished output until Commit,
	// for the message that says how to resume; nil when it keeps none that
	// a user can see.
	partial func(u *url.URL) string
	// check checks the form of a URL of this scheme for a role, before
	// anything is opened; nil accepts any.
	check func(u *url.URL, r role) error
}

func (s scheme) planned() bool { return s.open == nil && s.create == nil }

// schemes is the table of URL schemes diskcopy knows, in the order help lists
// them. A new kind of source or sink is one more entry.
type schemes []scheme

// defaultSchemes returns the schemes this build of diskcopy knows. The s3
// and ebs schemes make their AWS clients with c.
func defaultSchemes(c *cloud) schemes {
	return schemes{
		{
			name:    "file",
			example: "file:///abs/path/disk.raw",
			about:   "a raw image file or block device (a bare path works too)",
			open:    openFile,
			create:  createFile,
			partial: filePartial,
			check:   func(u *url.URL, _ role) error { _, err := filePath(u); return err },
		},
		{
			name:    "s3",
			example: "s3://bucket/prefix/vm/point/disk",
			about:   "a disk of a recovery point in an S3 backup store; point is an ID or latest,\nor new as SINK: a new point, whose URL is printed",
			open:    c.openS3,
			create:  c.createS3,
			check:   func(u *url.URL, r role) error { _, err := parseS3(u, r); return err },
		},
		{
			name:    "ebs",
			example: "ebs://snap-0123456789abcdef0",
			about:   "an EBS snapshot, through the EBS direct APIs; as SINK ebs://new, or\nebs://new?parent=snap-… for one incremental on a parent; its URL is printed",
			open:    c.openEBS,
			create:  c.createEBS,
			check:   func(u *url.URL, r role) error { _, err := parseEBS(u, r); return err },
		},
		{
			name:    "vmdk",
			example: "vmdk:///abs/path/disk.vmdk?subformat=streamOptimized",
			about:   "a VMDK file: streamOptimized (the default as SINK), monolithicSparse or\nmonolithicFlat; any of them as SOURCE",
			open:    openVMDK,
			create:  createVMDK,
			partial: vmdkPartial,
			check:   func(u *url.URL, _ role) error { _, _, err := vmdkPath(u); return err },
		},
		{
			name:    "vsphere",
			example: "vsphere://user@vcenter.example.com/VM/disk-0?thumbprint=AB:CD:…",
			about:   "disk N of a powered-off vSphere VM (password in DRAAS_VSPHERE_PASSWORD;\nthumbprint= pins a self-signed certificate); as SINK the VM must exist",
			open:    openVSphere,
			create:  createVSphere,
			check:   func(u *url.URL, _ role) error { _, err := parseVSphere(u); return err },
		},
	}
}

// lookup returns the scheme called name.
func (ss schemes) lookup(name string) (scheme, bool) {
	for _, s := range ss {
		if s.name == name {
			return s, true
		}
	}
	return scheme{}, false
}

// supported lists the usable schemes with an example each, for errors.
func (ss schemes) supported() string {
	var parts []string
	for _, s := range ss {
		if !s.planned() {
			parts = append(parts, fmt.Sprintf("%s (%s)", s.name, s.example))
		}
	}
	return strings.Join(parts, ", ")
}

// help describes every scheme, usable and planned, for the usage text.
func (ss schemes) help() string {
	var b strings.Builder
	for _, s := range ss {
		status := ""
		if s.planned() {
			status = " [planned]"
		}
		fmt.Fprintf(&b, "  %s%s\n      %s\n", s.example, status, strings.ReplaceAll(s.about, "\n", "\n      "))
	}
	return b.String()
}

// endpoint is a parsed SOURCE or SINK argument.
type endpoint struct {
	// arg is the argument as the user typed it.
	arg string
	// url is arg parsed; a bare path becomes a file URL.
	url    *url.URL
	scheme scheme
}

// role names an argument in error messages.
type role string

const (
	roleSource role = "SOURCE"
	roleSink   role = "SINK"
)

// parse turns a SOURCE or SINK argument into an endpoint of a known scheme
// that can play the role. Its errors name the argument, what is wrong, and
// the supported schemes.
func (ss schemes) parse(arg string, r role) (endpoint, error) {
	if arg == "" {
		return endpoint{}, fmt.Errorf("%s is empty: give a URL such as %s or a path", r, ss.supported())
	}
	var u *url.URL
	if !strings.Contains(arg, "://") {
		// A bare path, relative paths allowed, as a convenience.
		abs, err := filepath.Abs(arg)
		if err != nil {
			return endpoint{}, fmt.Errorf("%s %q: %v", r, arg, err)
		}
		u = &url.URL{Scheme: "file", Path: abs}
	} else {
		var err error
		u, err = url.Parse(arg)
		if err != nil {
			return endpoint{}, fmt.Errorf("%s %q is not a valid URL (%v); supported: %s", r, arg, err, ss.supported())
		}
	}
	s, ok := ss.lookup(u.Scheme)
	switch {
	case !ok:
		return endpoint{}, fmt.Errorf("%s %q: unknown scheme %q; supported: %s", r, arg, u.Scheme, ss.supported())
	case s.planned():
		return endpoint{}, fmt.Errorf("%s %q: scheme %q (%s) is planned but not supported yet; supported: %s", r, arg, s.name, s.about, ss.supported())
	case r == roleSource && s.open == nil:
		return endpoint{}, fmt.Errorf("%s %q: scheme %q can only be written, not read", r, arg, s.name)
	case r == roleSink && s.create == nil:
		return endpoint{}, fmt.Errorf("%s %q: scheme %q can only be read, not written", r, arg, s.name)
	}
	if s.check != nil {
		if err := s.check(u, r); err != nil {
			return endpoint{}, fmt.Errorf("%s %q: %v", r, arg, err)
		}
	}
	return endpoint{arg: arg, url: u, scheme: s}, nil
}

// open opens the endpoint as a source.
func (e endpoint) open(ctx context.Context) (source, error) {
	return e.scheme.open(ctx, e.url)
}

// create creates the endpoint as a sink for a disk of size bytes.
func (e endpoint) create(ctx context.Context, size int64, o sinkOptions) (draas.VolumeSink, error) {
	return e.scheme.create(ctx, e.url, size, o)
}

// partialPath is where a sink at the endpoint keeps unfinished output, or ""
// when the scheme does not say.
func (e endpoint) partialPath() string {
	if e.scheme.partial == nil {
		return ""
	}
	return e.scheme.partial(e.url)
}

// filePath returns the local path a file URL names. It accepts
// file:///abs/path and file://localhost/abs/path, nothing relative.
func filePath(u *url.URL) (string, error) {
	if u.Host != "" && u.Host != "localhost" {
		return "", fmt.Errorf("file URL has host %q: an absolute path needs three slashes, as in file:///abs/path/disk.raw", u.Host)
	}
	if u.Opaque != "" || !filepath.IsAbs(u.Path) {
		return "", fmt.Errorf("file URL needs an absolute path, as in file:///abs/path/disk.raw")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("file URL takes no query or fragment")
	}
	return filepath.Clean(u.Path), nil
}

func openFile(_ context.Context, u *url.URL) (source, error) {
	p, err := filePath(u)
	if err != nil {
		return nil, err
	}
	return local.Open(p)
}

func createFile(_ context.Context, u *url.URL, size int64, o sinkOptions) (draas.VolumeSink, error) {
	p, err := filePath(u)
	if err != nil {
		return nil, err
	}
	return local.Create(p, size, local.SinkOptions{Overwrite: o.Overwrite, Resume: o.Resume})
}

// filePartial is where package local keeps a sink's output until Commit.
func filePartial(u *url.URL) string {
	p, err := filePath(u)
	if err != nil {
		return ""
	}
	return p + local.PartialSuffix
}
