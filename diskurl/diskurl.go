// Package diskurl opens and creates disks named by URLs: a small registry of
// URL schemes, each of which turns a URL into a [draas.BlockSource] to read
// or a [draas.VolumeSink] to write, for a copy with package blockcopy. It is
// what examples/diskcopy is built on; restic's location.Registry is the
// model.
//
// [New] returns a registry of the built-in schemes:
//
//	file:///abs/path/disk.raw
//	    A raw image file or block device (package local). A string without
//	    "://" is a local path, relative ones allowed, and means the same.
//	    file://localhost/abs/path is accepted too; no query, no fragment.
//	vmdk:///abs/path/disk.vmdk[?subformat=F]
//	    A VMDK file (package vmdk). Any subformat reads; as a sink F is
//	    streamOptimized (the default), monolithicSparse or monolithicFlat.
//	s3://bucket[/prefix…]/vm/point/disk
//	    A disk of a recovery point in an S3 backup store (package aws/s3)
//	    whose keys start with prefix (empty, or several segments). As a
//	    source, point is a recovery point ID or "latest"; as a sink it is
//	    "new": a new recovery point of vm with this one disk, whose URL the
//	    sink's Created method returns.
//	ebs://snap-0123456789abcdef0
//	ebs://new[?parent=snap-…]
//	    An EBS snapshot through the EBS direct APIs (package aws/ebs): a
//	    completed snapshot as a source; as a sink ebs://new, a new snapshot,
//	    incremental on parent when given, whose URL Created returns.
//	vsphere://[user@]vcenter[:port]/VM/disk-N[?thumbprint=…&insecure=1]
//	    Disk N (from 0) of a powered-off vSphere VM (package vsphere); as a
//	    sink the VM and the disk must exist. The password is never part of
//	    the URL: [Options.VSphereLogin] supplies it. thumbprint pins the
//	    vCenter's certificate, insecure=1 skips its verification.
//
// A URL that a registry cannot use fails with an [*Error] that names it,
// says what is wrong and how to fix it, and wraps [draas.ErrInvalid].
// Programs add their own schemes with [Registry.Register].
package diskurl

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/opendraas/draas"
)

// Source is an opened disk to read. The caller closes it when the copy is
// over.
type Source interface {
	draas.BlockSource
	Close() error
}

// SinkOptions are the choices a scheme's sink honours. The zero value
// creates a new disk and fails if one exists.
type SinkOptions struct {
	// Overwrite replaces an existing disk at the URL (file and vmdk).
	Overwrite bool
	// Resume continues the partial output that an interrupted copy into
	// the URL left (file). Schemes that cannot resume fail with
	// draas.ErrInvalid.
	Resume bool
	// State is the sink's state saved in the checkpoint of the copy being
	// resumed (blockcopy.SinkState), or nil. The s3 and ebs schemes
	// continue the pending recovery point or snapshot it names.
	State []byte
	// Description describes the new resource where the scheme keeps one
	// (an EBS snapshot's description), e.g. "copy of file:///data/a.raw".
	Description string
}

// CreatedSink is implemented by sinks that create a resource whose name is
// known only once it exists (an s3 recovery point, an ebs snapshot).
// Created returns the URL that reads the new disk back.
type CreatedSink interface {
	Created() string
}

// CoveringSink is implemented by sinks that start with content of their own
// (an EBS snapshot on a parent). Cover returns the extents a copy must write
// besides the source's allocated ones for the result to equal the source.
// [Extents] uses it.
type CoveringSink interface {
	Cover(ctx context.Context) ([]draas.Extent, error)
}

// Extents returns the extents a copy of src into dst must cover, for
// blockcopy.Options.Extents: nil (the source's allocated extents) unless
// dst is a [CoveringSink] with content of its own; then the union of the
// source's allocated extents and the sink's, so that what the sink holds
// and the source does not is overwritten with zeros, and blocks that
// neither holds are skipped rather than written as zeros.
func Extents(ctx context.Context, src draas.BlockSource, dst draas.VolumeSink) ([]draas.Extent, error) {
	cov, ok := draas.As[CoveringSink](dst)
	if !ok {
		return nil, nil
	}
	theirs, err := cov.Cover(ctx)
	if err != nil {
		return nil, fmt.Errorf("list the blocks the sink starts with: %w", err)
	}
	if len(theirs) == 0 {
		return nil, nil
	}
	ours, err := draas.AllocatedExtents(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("list the source's allocated extents: %w", err)
	}
	return clip(draas.NormalizeExtents(append(ours, theirs...)), src.Size()), nil
}

// clip cuts sorted extents at size.
func clip(exts []draas.Extent, size int64) []draas.Extent {
	out := exts[:0:0]
	for _, e := range exts {
		if e.Offset >= size {
			break
		}
		e.Length = min(e.Length, size-e.Offset)
		out = append(out, e)
	}
	return out
}

// Role is what a URL is parsed for: to be read or to be written. Some URLs
// are valid in one role only (s3://…/new/… and ebs://new only as sinks).
type Role int

const (
	// AsSource parses a URL to open it as a source.
	AsSource Role = iota
	// AsSink parses a URL to create it as a sink.
	AsSink
)

// String returns "source" or "sink".
func (r Role) String() string {
	if r == AsSink {
		return "sink"
	}
	return "source"
}

// Error is a URL that a registry cannot use for a role. Err says what is
// wrong and how to fix it. Error wraps [draas.ErrInvalid] and Err.
type Error struct {
	URL  string // the URL as given, with any password replaced by "xxxxx"
	Role Role
	Err  error
}

func (e *Error) Error() string {
	if e.URL == "" {
		return fmt.Sprintf("empty %s URL: %v", e.Role, e.Err)
	}
	return fmt.Sprintf("%s URL %q: %v", e.Role, e.URL, e.Err)
}

// Unwrap returns draas.ErrInvalid and the cause.
func (e *Error) Unwrap() []error { return []error{draas.ErrInvalid, e.Err} }

// Scheme is one kind of place a disk can live, named by a URL scheme. Open
// and Create are called only with URLs that Check accepted for their role.
type Scheme struct {
	// Name is the URL scheme, in lower case, e.g. "file".
	Name string
	// Example is a URL of this scheme, shown in help and errors.
	Example string
	// About says in a few words what the URL names, for help.
	About string
	// Check checks the form of a URL of this scheme for a role, before
	// anything is opened, and says how to fix a bad one. Nil accepts any.
	Check func(u *url.URL, r Role) error
	// Open opens u as a source; nil when the scheme cannot be read.
	Open func(ctx context.Context, u *url.URL) (Source, error)
	// Create creates u as a sink for a disk of size bytes; nil when the
	// scheme cannot be written.
	Create func(ctx context.Context, u *url.URL, size int64, o SinkOptions) (draas.VolumeSink, error)
	// Partial names the local file where a sink at u keeps unfinished
	// output until Commit, for a message saying how to resume; nil when it
	// keeps none a user can see.
	Partial func(u *url.URL) string
}

// Registry maps URL schemes to the code that opens and creates their disks.
// Register every scheme before the registry is used; after that its methods
// are safe for concurrent use.
type Registry struct {
	schemes []Scheme // in the order registered, for help
}

// NewRegistry returns an empty registry. [New] returns one with the
// built-in schemes.
func NewRegistry() *Registry { return &Registry{} }

// Register adds a scheme. It fails with draas.ErrInvalid for a scheme
// without a valid name or without Open and Create, and with
// draas.ErrConflict when the name is registered already.
func (r *Registry) Register(s Scheme) error {
	if !validSchemeName(s.Name) {
		return draas.Invalidf("diskurl: scheme name %q: want a lower-case letter followed by letters, digits, +, - or .", s.Name)
	}
	if s.Open == nil && s.Create == nil {
		return draas.Invalidf("diskurl: scheme %q has neither Open nor Create", s.Name)
	}
	if _, ok := r.lookup(s.Name); ok {
		return fmt.Errorf("diskurl: scheme %q is registered already: %w", s.Name, draas.ErrConflict)
	}
	r.schemes = append(r.schemes, s)
	return nil
}

// validSchemeName reports whether s is a URL scheme (RFC 3986) in lower
// case, as url.Parse returns them.
func validSchemeName(s string) bool {
	for i, c := range s {
		switch {
		case 'a' <= c && c <= 'z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// Schemes returns the registered schemes, in the order they were
// registered.
func (r *Registry) Schemes() []Scheme { return append([]Scheme(nil), r.schemes...) }

func (r *Registry) lookup(name string) (Scheme, bool) {
	for _, s := range r.schemes {
		if s.Name == name {
			return s, true
		}
	}
	return Scheme{}, false
}

// supported lists the schemes with an example each, for errors.
func (r *Registry) supported() string {
	parts := make([]string, 0, len(r.schemes))
	for _, s := range r.schemes {
		parts = append(parts, fmt.Sprintf("%s (%s)", s.Name, s.Example))
	}
	return strings.Join(parts, ", ")
}

// Location is a URL that a registry parsed and checked for a role.
type Location struct {
	// Raw is the URL as given.
	Raw string
	// URL is Raw parsed; a bare path is an absolute file URL.
	URL    *url.URL
	role   Role
	scheme Scheme
}

// Scheme returns the name of the location's scheme.
func (l *Location) Scheme() string { return l.scheme.Name }

// String returns the location's URL, with a bare path made an absolute file
// URL: two locations name the same disk when their strings are equal.
func (l *Location) String() string { return l.URL.String() }

// Parse parses rawURL and checks that a registered scheme can play role r
// with it, opening nothing. A string without "://" is a local path, relative
// to the working directory, and stands for a file URL. Errors are [*Error]s.
func (r *Registry) Parse(rawURL string, role Role) (*Location, error) {
	fail := func(format string, args ...any) error {
		return &Error{URL: redact(rawURL), Role: role, Err: fmt.Errorf(format, args...)}
	}
	if rawURL == "" {
		return nil, fail("give a URL such as %s, or a path", r.supported())
	}
	var u *url.URL
	if !strings.Contains(rawURL, "://") {
		// A bare path, relative paths allowed, as a convenience.
		abs, err := filepath.Abs(rawURL)
		if err != nil {
			return nil, fail("%v", err)
		}
		u = &url.URL{Scheme: "file", Path: abs}
	} else {
		var err error
		u, err = url.Parse(rawURL)
		if err != nil {
			if ue := (*url.Error)(nil); errors.As(err, &ue) {
				err = ue.Err // without the URL, which Error names
			}
			return nil, fail("not a valid URL (%v); supported: %s", err, r.supported())
		}
	}
	s, ok := r.lookup(u.Scheme)
	if !ok {
		return nil, fail("unknown scheme %q; supported: %s", u.Scheme, r.supported())
	}
	if err := s.checkRole(rawURL, u, role); err != nil {
		return nil, err
	}
	return &Location{Raw: rawURL, URL: u, role: role, scheme: s}, nil
}

// checkRole checks that the scheme can play role with u, given as raw.
func (s Scheme) checkRole(raw string, u *url.URL, role Role) error {
	var err error
	switch {
	case role == AsSource && s.Open == nil:
		err = fmt.Errorf("scheme %q can only be written, not read", s.Name)
	case role == AsSink && s.Create == nil:
		err = fmt.Errorf("scheme %q can only be read, not written", s.Name)
	case s.Check != nil:
		err = s.Check(u, role)
	}
	if err != nil {
		return &Error{URL: redact(raw), Role: role, Err: err}
	}
	return nil
}

// redact returns rawURL with any password in it replaced by "xxxxx", so
// that errors never show one.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return rawURL
	}
	if _, set := u.User.Password(); !set {
		return rawURL
	}
	return u.Redacted()
}

// check checks that the location can play role: Parse checked the role it
// was given; another is checked now.
func (l *Location) check(role Role) error {
	if l.URL == nil {
		return &Error{URL: l.Raw, Role: role, Err: errors.New("not parsed: get a Location from Registry.Parse")}
	}
	if role == l.role {
		return nil
	}
	return l.scheme.checkRole(l.Raw, l.URL, role)
}

// Open opens the location as a source.
func (l *Location) Open(ctx context.Context) (Source, error) {
	if err := l.check(AsSource); err != nil {
		return nil, err
	}
	return l.scheme.Open(ctx, l.URL)
}

// Create creates the location as a sink for a disk of size bytes.
func (l *Location) Create(ctx context.Context, size int64, o SinkOptions) (draas.VolumeSink, error) {
	if err := l.check(AsSink); err != nil {
		return nil, err
	}
	return l.scheme.Create(ctx, l.URL, size, o)
}

// PartialPath returns the local file where a sink at the location keeps
// unfinished output until Commit, or "" when its scheme keeps none a user
// can see.
func (l *Location) PartialPath() string {
	if l.scheme.Partial == nil {
		return ""
	}
	return l.scheme.Partial(l.URL)
}

// Open parses rawURL and opens it as a source.
func (r *Registry) Open(ctx context.Context, rawURL string) (Source, error) {
	l, err := r.Parse(rawURL, AsSource)
	if err != nil {
		return nil, err
	}
	return l.Open(ctx)
}

// Create parses rawURL and creates it as a sink for a disk of size bytes.
// The caller commits or aborts the sink (blockcopy.Copy does).
func (r *Registry) Create(ctx context.Context, rawURL string, size int64, o SinkOptions) (draas.VolumeSink, error) {
	l, err := r.Parse(rawURL, AsSink)
	if err != nil {
		return nil, err
	}
	return l.Create(ctx, size, o)
}
