package diskurl

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendraas/draas"
)

// TestParse checks how the built-in registry turns strings into locations
// (moved from examples/diskcopy's TestParseEndpoint).
func TestParse(t *testing.T) {
	r := New(Options{})
	for _, tc := range []struct {
		arg      string
		wantPath string // "" when an error is wanted
	}{
		{"file:///data/disk.raw", "/data/disk.raw"},
		{"file://localhost/data/disk.raw", "/data/disk.raw"},
		{"FILE:///data/a%20b.raw", "/data/a b.raw"},
		{"/data/disk.raw", "/data/disk.raw"},
		{"file://data/disk.raw", ""},
		{"file:///data/disk.raw?x=1", ""},
		{"vmdk:///data/d.vmdk?subformat=bogus", ""},
		{"vmdk://host/d.vmdk", ""},
		{"vsphere://vc.example/db", ""},
		{"nope://x", ""},
		{"", ""},
	} {
		l, err := r.Parse(tc.arg, AsSource)
		if tc.wantPath == "" {
			if err == nil {
				t.Errorf("Parse(%q) succeeded, want an error", tc.arg)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.arg, err)
			continue
		}
		if p, _ := filePath(l.URL); p != tc.wantPath {
			t.Errorf("Parse(%q) path = %q, want %q", tc.arg, p, tc.wantPath)
		}
	}
	rel, err := r.Parse("disk.raw", AsSink)
	if err != nil || !filepath.IsAbs(rel.URL.Path) {
		t.Errorf("relative bare path: %+v, %v; want an absolute file URL", rel, err)
	}
}

// TestParseErrors checks that a URL the registry refuses is an *Error
// wrapping draas.ErrInvalid that names the URL, what is wrong and the fix
// (the messages examples/diskcopy's usage tests look for).
func TestParseErrors(t *testing.T) {
	r := New(Options{VSpherePasswordHelp: "set DRAAS_VSPHERE_PASSWORD"})
	for _, tc := range []struct {
		arg  string
		role Role
		want []string
	}{
		{"ftp://host/disk", AsSource, []string{`unknown scheme "ftp"`, "supported: file (file:///"}},
		{"", AsSource, []string{"empty source URL", "or a path"}},
		{"file://disk.raw", AsSource, []string{"three slashes"}},
		{"vmdk:///tmp/disk.vmdk?subformat=twoGbMaxExtent", AsSink, []string{"vmdk URL"}},
		{"vmdk:///tmp/disk.vmdk?format=x", AsSink, []string{"subformat"}},
		{"vsphere://root:secret@vc.example/db/disk-0", AsSink, []string{"DRAAS_VSPHERE_PASSWORD"}},
		{"vsphere://vc.example/db/disk-x", AsSource, []string{"disk-N"}},
		{"vsphere://vc.example/db/disk-0?insecure=yes", AsSource, []string{"insecure=1"}},
		{"s3://bucket/prefix/vm/20261126T061000Z-5f3a9c0e/disk", AsSink, []string{"s3://bucket/prefix/vm/new/disk"}},
		{"s3://bucket/vm/disk", AsSource, []string{"s3://bucket/prefix/vm/point/disk"}},
		{"ebs://snap-0123", AsSink, []string{"ebs://new?parent=snap-0123"}},
		{"ebs://new", AsSource, []string{"to read one, name it"}},
		{"http://[::1", AsSource, []string{"not a valid URL"}},
	} {
		_, err := r.Parse(tc.arg, tc.role)
		var ue *Error
		if !errors.As(err, &ue) || !errors.Is(err, draas.ErrInvalid) {
			t.Errorf("Parse(%q, %s) = %v, want an *Error wrapping draas.ErrInvalid", tc.arg, tc.role, err)
			continue
		}
		if ue.URL != redact(tc.arg) || ue.Role != tc.role {
			t.Errorf("Parse(%q, %s): error names %q as %s", tc.arg, tc.role, ue.URL, ue.Role)
		}
		if tc.arg != "" && !strings.Contains(err.Error(), redact(tc.arg)) {
			t.Errorf("Parse(%q, %s): error %q does not name the URL", tc.arg, tc.role, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Parse(%q, %s): error %q lacks %q", tc.arg, tc.role, err, w)
			}
		}
	}
	if _, err := r.Parse("vsphere://root:secret@vc.example/db/disk-0", AsSource); strings.Contains(err.Error(), "secret") {
		t.Errorf("the error shows the password: %v", err)
	}
	if strings.Contains(New(Options{}).Schemes()[4].About, "DRAAS_") {
		t.Errorf("the default vsphere help names diskcopy's environment variable")
	}
}

// TestRoles checks that a location parsed for one role is checked again
// when used in the other.
func TestRoles(t *testing.T) {
	r := New(Options{})
	l, err := r.Parse("ebs://new", AsSink)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Open(t.Context()); !errors.Is(err, draas.ErrInvalid) || !strings.Contains(err.Error(), "name it") {
		t.Errorf("Open of a sink-only URL: %v, want ErrInvalid saying to name a snapshot", err)
	}
	var zero Location
	if _, err := zero.Open(t.Context()); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("Open of a zero Location: %v, want ErrInvalid", err)
	}
	// Without an AWS configuration, s3 and ebs URLs parse but do not open.
	if _, err := r.Open(t.Context(), "ebs://snap-1"); !errors.Is(err, draas.ErrInvalid) || !strings.Contains(err.Error(), "AWSConfig") {
		t.Errorf("Open without AWS: %v, want ErrInvalid naming Options.AWSConfig", err)
	}
}

// TestRegister checks Register's refusals and that a registered scheme is
// used.
func TestRegister(t *testing.T) {
	r := NewRegistry()
	for _, s := range []Scheme{
		{Name: "", Open: openFile},
		{Name: "Mem", Open: openFile},
		{Name: "1x", Open: openFile},
		{Name: "mem"},
	} {
		if err := r.Register(s); !errors.Is(err, draas.ErrInvalid) {
			t.Errorf("Register(%q, open %t) = %v, want ErrInvalid", s.Name, s.Open != nil, err)
		}
	}
	var got *url.URL
	mem := Scheme{Name: "mem+x", Example: "mem+x://disk", Create: func(_ context.Context, u *url.URL, size int64, _ SinkOptions) (draas.VolumeSink, error) {
		got = u
		return nil, nil
	}}
	if err := r.Register(mem); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(mem); !errors.Is(err, draas.ErrConflict) {
		t.Errorf("second Register = %v, want ErrConflict", err)
	}
	if _, err := r.Create(t.Context(), "mem+x://disk", 1, SinkOptions{}); err != nil || got == nil || got.Host != "disk" {
		t.Errorf("Create through a registered scheme: %v, got URL %v", err, got)
	}
	if _, err := r.Open(t.Context(), "mem+x://disk"); err == nil || !strings.Contains(err.Error(), "only be written") {
		t.Errorf("Open of a write-only scheme: %v", err)
	}
	if _, err := r.Open(t.Context(), "/a/path"); err == nil || !strings.Contains(err.Error(), "supported: mem+x (mem+x://disk)") {
		t.Errorf("a bare path without a file scheme: %v, want unknown scheme listing mem+x", err)
	}
	if n := len(r.Schemes()); n != 1 {
		t.Errorf("Schemes() has %d entries, want 1", n)
	}
}
