package rfc2136_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/dns/rfc2136"
	"github.com/opendraas/draas/draastest"
)

// newServer starts a testServer for the test.
func newServer(t *testing.T) *testServer {
	t.Helper()
	s, err := startTestServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// newClient returns a Client for s with its key, changed by opts.
func newClient(t *testing.T, s *testServer, opts rfc2136.Options) *rfc2136.Client {
	t.Helper()
	return signer{s.Addr, s.Key, s.Secret}.client(t, opts)
}

// signer is a server's address and the TSIG key it accepts updates signed
// with.
type signer struct {
	addr, key, secret string
}

// client returns a Client for the server signing with its key, changed by
// opts.
func (s signer) client(t *testing.T, opts rfc2136.Options) *rfc2136.Client {
	t.Helper()
	if opts.TSIGKey == "" {
		opts.TSIGKey = s.key
	}
	if opts.TSIGSecret == "" {
		opts.TSIGSecret = s.secret
	}
	c, err := rfc2136.New(s.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testTSIGFailures checks what the server of s answers an update of rec
// (and a lookup) signed with a wrong secret or an unknown key, or not signed
// at all: the same for every server, in-process or BIND.
func testTSIGFailures(t *testing.T, s signer, rec draas.Record) {
	wrong := "c2VjcmV0IHRoYXQgdGhlIHNlcnZlciBkb2VzIG5vdCBrbm93"
	t.Run("WrongSecret", func(t *testing.T) {
		c := s.client(t, rfc2136.Options{TSIGSecret: wrong})
		err := upsertErr(t, c, rec)
		wantServerError(t, err, draas.ErrInvalid, dns.RcodeNotAuth, dns.RcodeBadSig, dns.Fqdn(s.key), rec.Zone, "secret")
		if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), s.secret) {
			t.Errorf("error %q contains a secret", err)
		}
		if draas.IsRetryable(err) {
			t.Errorf("a TSIG failure is retryable")
		}
		_, err = c.Lookup(t.Context(), rec.Zone, rec.Name, "A")
		wantServerError(t, err, draas.ErrInvalid, dns.RcodeNotAuth, dns.RcodeBadSig, dns.Fqdn(s.key))
		if errors.Is(err, draas.ErrNotFound) {
			t.Errorf("Lookup with a wrong secret: %v wraps ErrNotFound", err)
		}
	})
	t.Run("UnknownKey", func(t *testing.T) {
		err := upsertErr(t, s.client(t, rfc2136.Options{TSIGKey: "other-key"}), rec)
		wantServerError(t, err, draas.ErrInvalid, dns.RcodeNotAuth, dns.RcodeBadKey, "other-key.", "allow-update")
	})
	t.Run("Unsigned", func(t *testing.T) {
		c, err := rfc2136.New(s.addr, rfc2136.Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = upsertErr(t, c, rec)
		wantServerError(t, err, draas.ErrInvalid, dns.RcodeRefused, 0, rec.Zone, "allow-update")
	})
}

func TestConformance(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			draastest.TestDNS(t, func(t *testing.T) (draas.DNS, string) {
				s := newServer(t)
				return newClient(t, s, rfc2136.Options{Net: network}), s.Zone
			})
		})
	}
}

func TestAlgorithms(t *testing.T) {
	s := newServer(t)
	for _, alg := range []string{"hmac-sha512", "HMAC-SHA1.", "hmac-sha384"} {
		c := newClient(t, s, rfc2136.Options{TSIGAlgorithm: alg})
		r := draas.Record{Zone: s.Zone, Name: "alg.example.com", Type: "A", TTL: time.Minute, Values: []string{"10.0.0.1"}}
		if err := c.Upsert(t.Context(), r); err != nil {
			t.Errorf("Upsert signed with %s: %v", alg, err)
		}
	}
}

// lookupErr returns the error of a Lookup, which must fail.
func upsertErr(t *testing.T, c *rfc2136.Client, r draas.Record) error {
	t.Helper()
	err := c.Upsert(t.Context(), r)
	if err == nil {
		t.Fatalf("Upsert %s %s succeeded, want an error", r.Name, r.Type)
	}
	t.Logf("Upsert %s %s: %v", r.Name, r.Type, err)
	return err
}

// wantServerError checks that err carries a ServerError with the rcode and
// TSIG error, wraps kind and mentions each of words.
func wantServerError(t *testing.T, err error, kind error, rcode, tsigErr int, words ...string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Errorf("error %v does not wrap %v", err, kind)
	}
	var se *rfc2136.ServerError
	if !errors.As(err, &se) {
		t.Fatalf("error %v holds no *rfc2136.ServerError", err)
	}
	if se.Rcode != rcode || se.TSIGError != tsigErr {
		t.Errorf("ServerError rcode %s TSIG error %s, want %s and %s", dns.RcodeToString[se.Rcode], dns.RcodeToString[se.TSIGError],
			dns.RcodeToString[rcode], dns.RcodeToString[tsigErr])
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestTSIGFailures(t *testing.T) {
	s := newServer(t)
	rec := draas.Record{Zone: s.Zone, Name: "db.example.com.", Type: "A", TTL: time.Minute, Values: []string{"10.0.0.1"}}
	wrong := "c2VjcmV0IHRoYXQgdGhlIHNlcnZlciBkb2VzIG5vdCBrbm93"

	testTSIGFailures(t, signer{s.Addr, s.Key, s.Secret}, rec)
	t.Run("WrongAlgorithm", func(t *testing.T) {
		err := upsertErr(t, newClient(t, s, rfc2136.Options{TSIGAlgorithm: "hmac-sha1", TSIGSecret: wrong}), rec)
		wantServerError(t, err, draas.ErrInvalid, dns.RcodeNotAuth, dns.RcodeBadSig, "hmac-sha1.")
	})
	t.Run("OtherZone", func(t *testing.T) {
		r := rec
		r.Zone, r.Name = "example.org.", "db.example.org."
		err := upsertErr(t, newClient(t, s, rfc2136.Options{}), r)
		wantServerError(t, err, draas.ErrInvalid, dns.RcodeNotAuth, 0, "example.org.", "primary")
	})
}

func TestTruncationFallsBackToTCP(t *testing.T) {
	s := newServer(t)
	s.MaxUDPAnswers.Store(2)
	c := newClient(t, s, rfc2136.Options{})
	r := draas.Record{Zone: s.Zone, Name: "many.example.com.", Type: "A", TTL: time.Minute,
		Values: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"}}
	if err := c.Upsert(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	got, err := c.Lookup(t.Context(), s.Zone, r.Name, "A")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Values) != fmt.Sprint(r.Values) {
		t.Errorf("Lookup values %v, want %v", got.Values, r.Values)
	}
	if s.TCPRequests.Load() == 0 {
		t.Errorf("no request came over TCP after truncated UDP answers")
	}
}

func TestLargeUpdateUsesTCP(t *testing.T) {
	s := newServer(t)
	c := newClient(t, s, rfc2136.Options{})
	r := draas.Record{Zone: s.Zone, Name: "large.example.com.", Type: "A", TTL: time.Minute}
	for i := range 60 {
		r.Values = append(r.Values, fmt.Sprintf("10.0.1.%d", i))
	}
	if err := c.Upsert(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	if s.TCPRequests.Load() == 0 {
		t.Errorf("an update too large for UDP did not go over TCP")
	}
}

func TestServerFailureIsTransient(t *testing.T) {
	s := newServer(t)
	s.Rcode.Store(dns.RcodeServerFailure)
	c := newClient(t, s, rfc2136.Options{})
	err := upsertErr(t, c, draas.Record{Zone: s.Zone, Name: "a.example.com.", Type: "A", TTL: time.Minute, Values: []string{"10.0.0.1"}})
	wantServerError(t, err, draas.ErrTransient, dns.RcodeServerFailure, 0, "example.com.")
	if !draas.IsRetryable(err) {
		t.Errorf("SERVFAIL is not retryable: %v", err)
	}
}

func TestTimeoutIsTransient(t *testing.T) {
	s := newServer(t)
	s.Silent.Store(true)
	c := newClient(t, s, rfc2136.Options{Timeout: 100 * time.Millisecond})
	start := time.Now()
	_, err := c.Lookup(t.Context(), s.Zone, "a.example.com.", "A")
	if !errors.Is(err, draas.ErrTransient) || !draas.IsRetryable(err) {
		t.Errorf("Lookup from a silent server: %v, want a retryable error wrapping draas.ErrTransient", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Lookup took %v with a 100ms timeout", d)
	}
}

func TestContextCancellation(t *testing.T) {
	s := newServer(t)
	s.Silent.Store(true)
	for _, network := range []string{"udp", "tcp"} {
		c := newClient(t, s, rfc2136.Options{Timeout: time.Minute, Net: network})
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		err := c.Delete(ctx, draas.Record{Zone: s.Zone, Name: "a.example.com.", Type: "A"})
		if !errors.Is(err, context.Canceled) || draas.IsRetryable(err) {
			t.Errorf("%s: Delete cancelled: %v, want an error wrapping context.Canceled", network, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: Delete returned %v after its context was cancelled", network, d)
		}

		ctx, cancel = context.WithTimeout(t.Context(), 50*time.Millisecond)
		_, err = c.Lookup(ctx, s.Zone, "a.example.com.", "A")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: Lookup past its deadline: %v, want an error wrapping context.DeadlineExceeded", network, err)
		}
	}
}

func TestCNAMEConflicts(t *testing.T) {
	s := newServer(t)
	c := newClient(t, s, rfc2136.Options{})
	ctx := t.Context()
	a := draas.Record{Zone: s.Zone, Name: "web.example.com.", Type: "A", TTL: time.Minute, Values: []string{"10.0.0.1"}}
	cname := draas.Record{Zone: s.Zone, Name: a.Name, Type: "CNAME", TTL: time.Minute, Values: []string{"lb.example.net"}}
	if err := c.Upsert(ctx, a); err != nil {
		t.Fatal(err)
	}
	err := upsertErr(t, c, cname)
	wantServerError(t, err, draas.ErrConflict, dns.RcodeYXRrset, 0, "web.example.com.", "delete")
	if err := c.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := c.Upsert(ctx, cname); err != nil {
		t.Fatalf("Upsert of the CNAME once the A record is gone: %v", err)
	}
	err = upsertErr(t, c, a)
	wantServerError(t, err, draas.ErrConflict, dns.RcodeYXRrset, 0, "web.example.com.", "CNAME")
}

func TestUpsertRejectsInvalidRecords(t *testing.T) {
	s := newServer(t)
	c := newClient(t, s, rfc2136.Options{})
	ok := draas.Record{Zone: s.Zone, Name: "x.example.com.", Type: "A", TTL: time.Minute, Values: []string{"10.0.0.1"}}
	for _, tc := range []struct {
		name   string
		change func(r *draas.Record)
		words  string
	}{
		{"NoZone", func(r *draas.Record) { r.Zone = "" }, "Record.Zone"},
		{"OutsideZone", func(r *draas.Record) { r.Name = "x.example.org." }, "not in zone"},
		{"Type", func(r *draas.Record) { r.Type = "MX" }, "A or CNAME"},
		{"NoValues", func(r *draas.Record) { r.Values = nil }, "no values"},
		{"IPv6", func(r *draas.Record) { r.Values = []string{"2001:db8::1"} }, "IPv4"},
		{"Garbage", func(r *draas.Record) { r.Values = []string{"10.0.0.256"} }, "IPv4"},
		{"Duplicate", func(r *draas.Record) { r.Values = []string{"10.0.0.1", "10.0.0.1"} }, "twice"},
		{"TTL", func(r *draas.Record) { r.TTL = 500 * time.Millisecond }, "at least 1s"},
		{"TwoTargets", func(r *draas.Record) { r.Type, r.Values = "CNAME", []string{"a.example.net.", "b.example.net."} }, "exactly one"},
		{"BadTarget", func(r *draas.Record) { r.Type, r.Values = "CNAME", []string{"a..b"} }, "domain name"},
		{"ApexCNAME", func(r *draas.Record) { r.Name, r.Type, r.Values = "example.com", "CNAME", []string{"a.example.net."} }, "apex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.change(&r)
			before := s.UDPRequests.Load() + s.TCPRequests.Load()
			err := c.Upsert(t.Context(), r)
			if !errors.Is(err, draas.ErrInvalid) || !strings.Contains(err.Error(), tc.words) {
				t.Errorf("Upsert %+v: %v, want draas.ErrInvalid mentioning %q", r, err, tc.words)
			}
			if n := s.UDPRequests.Load() + s.TCPRequests.Load(); n != before {
				t.Errorf("an invalid record was sent to the server")
			}
		})
	}
}

func TestLookupNormalises(t *testing.T) {
	s := newServer(t)
	c := newClient(t, s, rfc2136.Options{})
	ctx := t.Context()
	r := draas.Record{Zone: "Example.COM", Name: "DB.example.com", Type: "CNAME", TTL: 90*time.Second + 500*time.Millisecond, Values: []string{"LB.Example.net"}}
	if err := c.Upsert(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := c.Lookup(ctx, "example.com", "db.EXAMPLE.com.", "cname")
	if err != nil {
		t.Fatal(err)
	}
	want := draas.Record{Zone: "example.com.", Name: "db.example.com.", Type: "CNAME", TTL: 90 * time.Second, Values: []string{"lb.example.net."}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Lookup = %+v, want %+v", got, want)
	}
	soa, err := c.Lookup(ctx, "example.com.", "example.com.", "SOA")
	if err != nil || len(soa.Values) != 1 || !strings.HasPrefix(soa.Values[0], "ns1.example.com. hostmaster.example.com. ") {
		t.Errorf("Lookup of the SOA = %+v, %v", soa, err)
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		server string
		opts   rfc2136.Options
		want   string // in the error; "" for success
	}{
		{"127.0.0.1:5353", rfc2136.Options{}, ""},
		{"ns1.example.com", rfc2136.Options{TSIGKey: "k", TSIGSecret: "c2VjcmV0", TSIGAlgorithm: "hmac-sha512"}, ""},
		{"::1", rfc2136.Options{Net: "tcp"}, ""},
		{"", rfc2136.Options{}, "no server address"},
		{"127.0.0.1:53", rfc2136.Options{TSIGKey: "k", TSIGSecret: "not base64!"}, "not base64"},
		{"127.0.0.1:53", rfc2136.Options{TSIGKey: "k", TSIGSecret: "c2VjcmV0", TSIGAlgorithm: "hmac-md5"}, "hmac-md5"},
		{"127.0.0.1:53", rfc2136.Options{TSIGKey: "k"}, "no secret"},
		{"127.0.0.1:53", rfc2136.Options{TSIGSecret: "c2VjcmV0"}, "TSIGKey is empty"},
		{"127.0.0.1:53", rfc2136.Options{Net: "tls"}, "Options.Net"},
	} {
		c, err := rfc2136.New(tc.server, tc.opts)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("New(%q, %v): %v", tc.server, tc.opts, err)
		case tc.want == "" && !strings.Contains(c.Server(), ":"):
			t.Errorf("New(%q): server %q has no port", tc.server, c.Server())
		case tc.want != "" && (!errors.Is(err, draas.ErrInvalid) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("New(%q, %v): %v, want draas.ErrInvalid mentioning %q", tc.server, tc.opts, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), tc.opts.TSIGSecret) && tc.opts.TSIGSecret != "" {
			t.Errorf("error %q contains the secret", err)
		}
	}
}

func TestOptionsHideSecret(t *testing.T) {
	o := rfc2136.Options{TSIGKey: "k", TSIGSecret: "c2VjcmV0"}
	for _, s := range []string{fmt.Sprint(o), fmt.Sprintf("%+v", o), fmt.Sprintf("%#v", o), fmt.Sprintf("%v", struct{ O rfc2136.Options }{o})} {
		if strings.Contains(s, o.TSIGSecret) || !strings.Contains(s, "k") {
			t.Errorf("options print as %q", s)
		}
	}
}

func TestUpsertWaitsForTheAnswer(t *testing.T) {
	s := newServer(t)
	c := newClient(t, s, rfc2136.Options{WaitTimeout: 300 * time.Millisecond})
	// A TXT record at the name makes the server ignore an added CNAME (RFC
	// 2136 3.4.2.2), so the answer never shows it.
	txt, _ := dns.NewRR("mixed.example.com. 60 IN TXT hello")
	s.mu.Lock()
	s.sets[setKey{"mixed.example.com.", dns.TypeTXT}] = []dns.RR{txt}
	s.mu.Unlock()
	r := draas.Record{Zone: s.Zone, Name: "mixed.example.com.", Type: "CNAME", TTL: time.Minute, Values: []string{"lb.example.net."}}
	err := upsertErr(t, c, r)
	if !errors.Is(err, draas.ErrTransient) || !strings.Contains(err.Error(), "WaitTimeout") {
		t.Errorf("Upsert that never shows: %v, want draas.ErrTransient naming Options.WaitTimeout", err)
	}
}
