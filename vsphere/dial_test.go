package vsphere_test

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/vsphere"
)

func TestDialCertificates(t *testing.T) {
	s := newSim(t)
	ctx := t.Context()
	creds := vsphere.Options{Username: s.user, Password: s.password}
	with := func(f func(*vsphere.Options)) vsphere.Options {
		o := creds
		f(&o)
		return o
	}
	sha1Plain := strings.ToLower(strings.ReplaceAll(s.sha1, ":", ""))
	for _, tc := range []struct {
		name string
		opts vsphere.Options
	}{
		{"pinned SHA-256", with(func(o *vsphere.Options) { o.Thumbprint = s.sha256 })},
		{"pinned SHA-1, lower case without colons", with(func(o *vsphere.Options) { o.Thumbprint = sha1Plain })},
		{"RootCAs", with(func(o *vsphere.Options) { o.RootCAs = s.certPool })},
		{"Insecure", with(func(o *vsphere.Options) { o.Insecure = true })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := vsphere.Dial(ctx, s.URL.String(), tc.opts)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			if _, err := h.VMShape(ctx, "DC0_H0_VM0"); err != nil {
				t.Errorf("VMShape: %v", err)
			}
			if err := h.Close(ctx); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}

	t.Run("wrong thumbprint", func(t *testing.T) {
		wrong := strings.Repeat("AB:", 31) + "AB"
		_, err := vsphere.Dial(ctx, s.URL.String(), with(func(o *vsphere.Options) { o.Thumbprint = wrong }))
		var ce *vsphere.CertificateError
		if !errors.As(err, &ce) {
			t.Fatalf("Dial with a wrong thumbprint: %v, want a *vsphere.CertificateError", err)
		}
		t.Log(err)
		if ce.Pinned != wrong || ce.SHA256 != s.sha256 || ce.SHA1 != s.sha1 || ce.Host != s.URL.Host {
			t.Errorf("CertificateError = %+v, want pinned %s, presented %s / %s by %s", ce, wrong, s.sha256, s.sha1, s.URL.Host)
		}
		for _, want := range []string{s.URL.Host, s.sha256, "Options.Thumbprint"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	})

	t.Run("untrusted", func(t *testing.T) {
		// TLS verification is on by default: vcsim's certificate is
		// self-signed.
		_, err := vsphere.Dial(ctx, s.URL.String(), creds)
		var ce *vsphere.CertificateError
		if !errors.As(err, &ce) {
			t.Fatalf("Dial without trust settings: %v, want a *vsphere.CertificateError", err)
		}
		t.Log(err)
		if ce.Pinned != "" || ce.SHA256 != s.sha256 || !strings.Contains(err.Error(), s.sha256) || !strings.Contains(err.Error(), "Options.RootCAs") {
			t.Errorf("error %q (%+v) does not offer the fixes with the presented thumbprint %s", err, ce, s.sha256)
		}
	})

	t.Run("malformed thumbprint", func(t *testing.T) {
		for _, tp := range []string{"AB:CD", "not hex at all", strings.Repeat("AB", 33)} {
			if _, err := vsphere.Dial(ctx, s.URL.String(), with(func(o *vsphere.Options) { o.Thumbprint = tp })); !errors.Is(err, draas.ErrInvalid) {
				t.Errorf("Dial with thumbprint %q: %v, want draas.ErrInvalid", tp, err)
			}
		}
	})

	t.Run("plain http", func(t *testing.T) {
		u := *s.URL
		u.Scheme = "http"
		if _, err := vsphere.Dial(ctx, u.String(), creds); !errors.Is(err, draas.ErrInvalid) {
			t.Errorf("Dial over http without Insecure: %v, want draas.ErrInvalid", err)
		}
	})
}

// TestPasswordNeverShown checks that no error and no String of this package
// shows a password, whichever way it was given.
func TestPasswordNeverShown(t *testing.T) {
	s := newSim(t)
	ctx := t.Context()
	const secret = "S3cret-Passw0rd-xyz"
	check := func(what, text string) {
		t.Helper()
		if strings.Contains(text, secret) {
			t.Errorf("%s shows the password: %s", what, text)
		}
	}
	inURL := *s.URL
	inURL.User = url.UserPassword(s.user, secret)

	// A wrong password, in the URL and in Options.
	_, err := vsphere.Dial(ctx, inURL.String(), vsphere.Options{Thumbprint: s.sha256})
	if err == nil {
		t.Fatal("Dial with a wrong password succeeded")
	}
	t.Log(err)
	check("a failed login's error", err.Error())
	if !strings.Contains(err.Error(), s.user) {
		t.Errorf("a failed login's error %q does not name the user", err)
	}
	_, err = vsphere.Dial(ctx, s.URL.String(), vsphere.Options{Username: s.user, Password: secret, Thumbprint: s.sha256})
	if err == nil {
		t.Fatal("Dial with a wrong password succeeded")
	}
	check("a failed login's error", err.Error())

	// Errors before login: a malformed URL, an untrusted certificate, a
	// server that is not there.
	_, err = vsphere.Dial(ctx, "https://admin:"+secret+"@127.0.0.1:99999999/sdk", vsphere.Options{})
	check("a malformed URL's error", fmt.Sprint(err))
	_, err = vsphere.Dial(ctx, inURL.String(), vsphere.Options{})
	check("an untrusted certificate's error", fmt.Sprint(err))
	closed := inURL
	closed.Host = "127.0.0.1:1"
	_, err = vsphere.Dial(ctx, closed.String(), vsphere.Options{Thumbprint: s.sha256})
	if err == nil {
		t.Fatal("Dial of a closed port succeeded")
	}
	t.Log(err)
	check("a refused connection's error", err.Error())

	// Options and a connected Hypervisor print no password.
	opts := vsphere.Options{Username: s.user, Password: secret, Thumbprint: s.sha256}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		check("Options printed with "+format, fmt.Sprintf(format, opts))
		check("*Options printed with "+format, fmt.Sprintf(format, &opts))
	}
	ok := *s.URL
	ok.User = url.UserPassword(s.user, s.password)
	h, err := vsphere.Dial(ctx, ok.String(), vsphere.Options{Thumbprint: s.sha256})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer h.Close(ctx)
	if strings.Contains(h.String(), s.password) || strings.Contains(fmt.Sprintf("%+v", h), s.password) {
		t.Errorf("the Hypervisor prints its password: %s", h)
	}
}
