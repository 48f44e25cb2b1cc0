package diskurl

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opendraas/draas"
)

// FuzzParse checks, for any string and both roles, that the built-in
// registry's Parse either refuses it with an *Error wrapping
// draas.ErrInvalid that names it (without a password), or returns a location of a registered
// scheme whose URL string parses again to the same location; and that
// s3 and file locations are what their URLs say. The seeds are in
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	r := New(Options{})
	f.Fuzz(func(t *testing.T, s string) {
		for _, role := range []Role{AsSource, AsSink} {
			l, err := r.Parse(s, role)
			if err != nil {
				var ue *Error
				if !errors.As(err, &ue) || !errors.Is(err, draas.ErrInvalid) {
					t.Fatalf("Parse(%q, %s) = %v, want an *Error wrapping ErrInvalid", s, role, err)
				}
				if ue.URL != redact(s) || ue.Role != role || ue.Err == nil || ue.Err.Error() == "" {
					t.Fatalf("Parse(%q, %s): error %#v does not name the URL, role and cause", s, role, ue)
				}
				if s != "" && !strings.Contains(err.Error(), strconv.Quote(redact(s))) {
					t.Fatalf("Parse(%q, %s): error %q does not quote the URL", s, role, err)
				}
				continue
			}
			if _, ok := r.lookup(l.Scheme()); !ok || l.URL == nil || l.URL.Scheme != l.Scheme() {
				t.Fatalf("Parse(%q, %s) = scheme %q, URL %v", s, role, l.Scheme(), l.URL)
			}
			again, err := r.Parse(l.String(), role)
			if err != nil {
				t.Fatalf("Parse(%q, %s) is %s, which does not parse again: %v", s, role, l, err)
			}
			if again.String() != l.String() {
				t.Fatalf("Parse(%q, %s) is %s, which parses again as %s", s, role, l, again)
			}
			switch l.Scheme() {
			case "file":
				p, err := filePath(l.URL)
				if err != nil || !filepath.IsAbs(p) || filepath.Clean(p) != p {
					t.Fatalf("Parse(%q, %s): file path %q, %v; want an absolute clean path", s, role, p, err)
				}
			case "s3":
				loc, err := parseS3(l.URL, role)
				if err != nil {
					t.Fatal(err)
				}
				u2, err := r.Parse(loc.url(), role)
				if err != nil {
					t.Fatalf("Parse(%q, %s): its location's URL %s does not parse: %v", s, role, loc.url(), err)
				}
				if loc2, err := parseS3(u2.URL, role); err != nil || loc2 != loc {
					t.Fatalf("Parse(%q, %s) = %+v, whose URL %s parses as %+v, %v", s, role, loc, loc.url(), loc2, err)
				}
			}
		}
	})
}
