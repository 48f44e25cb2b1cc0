// Package rfc2136 implements draas.DNS for on-premises DNS servers (BIND,
// Knot, PowerDNS and others) through RFC 2136 dynamic update, signed with a
// TSIG key (RFC 8945).
//
// Upsert sends one UPDATE message that deletes the record set and adds the
// new records, so the server replaces the set atomically, and then queries
// the server until its answer equals the record. Lookup queries the server
// itself, which must be authoritative for the zone (normally the zone's
// primary). Delete deletes the record set.
//
// On a BIND server, generate a key with
//
//	tsig-keygen -a hmac-sha256 draas-key
//
// put the key statement it prints into named.conf, and let the key update
// the zone:
//
//	zone "example.com." { type primary; file "example.com.zone"; allow-update { key draas-key; }; };
//
// then pass the key's name and secret in [Options].
package rfc2136

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/opendraas/draas"
)

// Options configures a [Client]. The zero value sends unsigned messages
// over UDP, which only a server that allows updates by address accepts; set
// TSIGKey and TSIGSecret for a server that wants a key.
type Options struct {
	// TSIGKey is the name of the TSIG key as the server knows it, e.g.
	// "draas-key" for BIND's key "draas-key" { … }. Empty sends unsigned
	// messages; TSIGSecret must then be empty too.
	TSIGKey string
	// TSIGAlgorithm is the key's algorithm: "hmac-sha256" (the default),
	// "hmac-sha512", "hmac-sha384", "hmac-sha224" or "hmac-sha1".
	TSIGAlgorithm string
	// TSIGSecret is the key's secret, base64-encoded as in the server's key
	// statement. It never appears in errors, and [Options.String] hides it.
	TSIGSecret string
	// Timeout bounds each exchange with the server (dial, send, receive);
	// 0 means 5s. A context deadline that comes earlier wins.
	Timeout time.Duration
	// Net is "udp" (the default), which repeats an exchange over TCP when
	// the answer is truncated or the message too large for UDP, or "tcp".
	Net string
	// WaitTimeout bounds how long Upsert waits for the server's answers to
	// show the new record; 0 means 30s. A primary applies an update before
	// it answers, so only a server that forwards updates to the primary
	// makes Upsert wait.
	WaitTimeout time.Duration
}

// String describes the options with the secret hidden, so that logging
// them does not leak it.
func (o Options) String() string {
	secret := ""
	if o.TSIGSecret != "" {
		secret = "[hidden]"
	}
	return fmt.Sprintf("{TSIGKey:%s TSIGAlgorithm:%s TSIGSecret:%s Timeout:%v Net:%s WaitTimeout:%v}",
		o.TSIGKey, o.TSIGAlgorithm, secret, o.Timeout, o.Net, o.WaitTimeout)
}

// GoString is String, so that %#v hides the secret too.
func (o Options) GoString() string { return "rfc2136.Options" + o.String() }

// tsigFudge is the clock difference, in seconds, that a signature allows.
const tsigFudge = 300

var algorithms = map[string]string{
	"hmac-sha1.":   dns.HmacSHA1,
	"hmac-sha224.": dns.HmacSHA224,
	"hmac-sha256.": dns.HmacSHA256,
	"hmac-sha384.": dns.HmacSHA384,
	"hmac-sha512.": dns.HmacSHA512,
}

// Client is a draas.DNS that updates and queries one DNS server. It is safe
// for concurrent use.
type Client struct {
	server  string
	net     string
	timeout time.Duration
	wait    time.Duration
	key     string            // canonical key name, or "" for unsigned messages
	alg     string            // canonical algorithm name
	secrets map[string]string // key -> base64 secret, for miekg/dns
}

var _ draas.DNS = (*Client)(nil)

// New returns a Client for the DNS server at server ("host:port", or a host
// alone for port 53). It fails with an error wrapping draas.ErrInvalid when
// the options are wrong: a secret that is not base64, an unknown
// algorithm, a key without a secret or a secret without a key.
func New(server string, opts Options) (*Client, error) {
	addr, err := serverAddr(server)
	if err != nil {
		return nil, err
	}
	c := &Client{server: addr, net: opts.Net, timeout: opts.Timeout, wait: opts.WaitTimeout}
	switch c.net {
	case "":
		c.net = "udp"
	case "udp", "tcp":
	default:
		return nil, draas.Invalidf("rfc2136: Options.Net is %q: use \"udp\" (the default) or \"tcp\"", opts.Net)
	}
	if c.timeout <= 0 {
		c.timeout = 5 * time.Second
	}
	if c.wait <= 0 {
		c.wait = 30 * time.Second
	}

	alg := strings.TrimSpace(opts.TSIGAlgorithm)
	if alg == "" {
		alg = "hmac-sha256"
	}
	c.alg = algorithms[dns.CanonicalName(alg)]
	if c.alg == "" {
		return nil, draas.Invalidf("rfc2136: TSIG algorithm %q is not supported: use hmac-sha256 (the default), hmac-sha512, hmac-sha384, hmac-sha224 or hmac-sha1", opts.TSIGAlgorithm)
	}
	key, secret := strings.TrimSpace(opts.TSIGKey), strings.TrimSpace(opts.TSIGSecret)
	switch {
	case key == "" && secret == "":
		return c, nil
	case key == "":
		return nil, draas.Invalidf("rfc2136: Options.TSIGSecret is set but TSIGKey is empty: set TSIGKey to the key's name on the server")
	case secret == "":
		return nil, draas.Invalidf("rfc2136: TSIG key %q has no secret: set Options.TSIGSecret to the base64 secret of the server's key statement", key)
	}
	if _, ok := dns.IsDomainName(key); !ok {
		return nil, draas.Invalidf("rfc2136: TSIG key name %q is not a domain name: use the name of the server's key statement, e.g. draas-key", key)
	}
	raw, err := base64.StdEncoding.DecodeString(secret)
	if err != nil || len(raw) == 0 {
		// The decoder's error quotes the secret's bytes; leave it out.
		return nil, draas.Invalidf("rfc2136: the secret of TSIG key %q is not base64: copy the secret from the server's key statement (tsig-keygen prints it)", key)
	}
	c.key = dns.CanonicalName(key)
	c.secrets = map[string]string{c.key: base64.StdEncoding.EncodeToString(raw)}
	return c, nil
}

// serverAddr checks a server address and adds the default port.
func serverAddr(server string) (string, error) {
	server = strings.TrimSpace(server)
	if server == "" {
		return "", draas.Invalidf("rfc2136: no server address: pass host:port of the zone's primary DNS server")
	}
	if a, err := netip.ParseAddr(strings.Trim(server, "[]")); err == nil {
		return net.JoinHostPort(a.String(), "53"), nil
	}
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		if strings.Contains(server, ":") {
			return "", draas.Invalidf("rfc2136: server address %q: %v: use host:port", server, err)
		}
		return net.JoinHostPort(server, "53"), nil
	}
	if host == "" || port == "" {
		return "", draas.Invalidf("rfc2136: server address %q lacks a host or port: use host:port", server)
	}
	return server, nil
}

// Server returns the address of the server the client talks to.
func (c *Client) Server() string { return c.server }

// record is a checked record set: canonical names and miekg/dns types.
type record struct {
	zone, name string
	typ        uint16
	ttl        uint32
	values     []string // canonical, sorted
}

func (r record) String() string {
	return fmt.Sprintf("%s %s in zone %s", r.name, dns.TypeToString[r.typ], r.zone)
}

// names checks a zone, a name within it and a type.
func names(zone, name, typ string, writable bool) (record, error) {
	var r record
	if strings.TrimSpace(zone) == "" {
		return r, draas.Invalidf("rfc2136: record %s has no zone: set Record.Zone to the zone's name, e.g. example.com.", name)
	}
	r.zone = dns.CanonicalName(strings.TrimSpace(zone))
	if _, ok := dns.IsDomainName(r.zone); !ok {
		return r, draas.Invalidf("rfc2136: zone %q is not a domain name", zone)
	}
	r.name = dns.CanonicalName(strings.TrimSpace(name))
	if _, ok := dns.IsDomainName(r.name); !ok || strings.TrimSpace(name) == "" {
		return r, draas.Invalidf("rfc2136: record name %q is not a domain name", name)
	}
	if !dns.IsSubDomain(r.zone, r.name) {
		return r, draas.Invalidf("rfc2136: record %s is not in zone %s: set Record.Zone to the zone that contains it", r.name, r.zone)
	}
	t, ok := dns.StringToType[strings.ToUpper(strings.TrimSpace(typ))]
	if !ok || t == dns.TypeANY || t == dns.TypeNone {
		return r, draas.Invalidf("rfc2136: record %s has type %q: use A or CNAME", r.name, typ)
	}
	if writable && t != dns.TypeA && t != dns.TypeCNAME {
		return r, draas.Invalidf("rfc2136: record %s has type %q: use A or CNAME", r.name, typ)
	}
	r.typ = t
	return r, nil
}

// check validates a record for Upsert, like the route53 package does, and
// returns it in canonical form.
func check(in draas.Record) (record, error) {
	r, err := names(in.Zone, in.Name, in.Type, true)
	if err != nil {
		return r, err
	}
	switch {
	case len(in.Values) == 0:
		return r, draas.Invalidf("rfc2136: record %s has no values", r)
	case r.typ == dns.TypeCNAME && len(in.Values) != 1:
		return r, draas.Invalidf("rfc2136: CNAME %s has %d values; a CNAME has exactly one", r.name, len(in.Values))
	case r.typ == dns.TypeCNAME && r.name == r.zone:
		return r, draas.Invalidf("rfc2136: CNAME %s is the zone's apex, which holds SOA and NS records a CNAME cannot coexist with: use an A record", r.name)
	case in.TTL < time.Second:
		return r, draas.Invalidf("rfc2136: record %s has TTL %v: use at least 1s", r, in.TTL)
	case in.TTL/time.Second > 1<<31-1:
		return r, draas.Invalidf("rfc2136: record %s has TTL %v: use at most 2147483647s", r, in.TTL)
	}
	r.ttl = uint32(in.TTL / time.Second)
	for _, v := range in.Values {
		v = strings.TrimSpace(v)
		switch r.typ {
		case dns.TypeA:
			a, err := netip.ParseAddr(v)
			if err != nil || !a.Is4() {
				return r, draas.Invalidf("rfc2136: A record %s has value %q: use an IPv4 address such as 10.0.0.5", r.name, v)
			}
			v = a.String()
		case dns.TypeCNAME:
			if _, ok := dns.IsDomainName(v); !ok || v == "" || v == "." {
				return r, draas.Invalidf("rfc2136: CNAME %s has value %q: use a fully qualified domain name such as db.example.com.", r.name, v)
			}
			v = dns.CanonicalName(v)
		}
		if slices.Contains(r.values, v) {
			return r, draas.Invalidf("rfc2136: record %s has the value %s twice: list each value once", r, v)
		}
		r.values = append(r.values, v)
	}
	slices.Sort(r.values)
	return r, nil
}

// rrs returns the resource records of r.
func (r record) rrs() []dns.RR {
	rrs := make([]dns.RR, 0, len(r.values))
	for _, v := range r.values {
		hdr := dns.RR_Header{Name: r.name, Rrtype: r.typ, Class: dns.ClassINET, Ttl: r.ttl}
		switch r.typ {
		case dns.TypeA:
			rrs = append(rrs, &dns.A{Hdr: hdr, A: net.IP(netip.MustParseAddr(v).AsSlice())})
		case dns.TypeCNAME:
			rrs = append(rrs, &dns.CNAME{Hdr: hdr, Target: v})
		}
	}
	return rrs
}

// rrset returns a data-less RR naming r's set, for deletions and
// prerequisites.
func rrset(name string, typ uint16) dns.RR {
	return &dns.ANY{Hdr: dns.RR_Header{Name: name, Rrtype: typ}}
}

// conflicting returns the types a record set of type typ cannot share its
// name with. A server silently ignores an added CNAME where address
// records exist, and an added A where a CNAME exists (RFC 2136 3.4.2.2);
// Upsert makes their absence a prerequisite, so that the conflict fails
// with draas.ErrConflict at once.
func conflicting(typ uint16) []uint16 {
	if typ == dns.TypeCNAME {
		return []uint16{dns.TypeA, dns.TypeAAAA}
	}
	return []uint16{dns.TypeCNAME}
}

// Upsert creates or replaces the record set r in one UPDATE message that
// deletes the set and adds r's records, and then waits until the server
// answers queries with the new set (at most Options.WaitTimeout). The name
// must not hold records a CNAME cannot coexist with: an A record fails with
// draas.ErrConflict where a CNAME exists, and a CNAME where A or AAAA
// records exist. Invalid records fail with draas.ErrInvalid before anything
// is sent.
func (c *Client) Upsert(ctx context.Context, r draas.Record) error {
	rec, err := check(r)
	if err != nil {
		return err
	}
	m := new(dns.Msg)
	m.SetUpdate(rec.zone)
	for _, t := range conflicting(rec.typ) {
		m.RRsetNotUsed([]dns.RR{rrset(rec.name, t)})
	}
	m.RemoveRRset([]dns.RR{rrset(rec.name, rec.typ)})
	m.Insert(rec.rrs())
	conflict := fmt.Sprintf("%s has a CNAME record, which an A record cannot coexist with: delete the CNAME first", rec.name)
	if rec.typ == dns.TypeCNAME {
		conflict = fmt.Sprintf("%s has A or AAAA records, which a CNAME cannot coexist with: delete them first", rec.name)
	}
	if _, err := c.exchange(ctx, m, call{op: "DNS UPDATE", rec: rec, conflict: conflict}); err != nil {
		return err
	}
	return c.waitFor(ctx, rec)
}

// errWaitTimeout is the cause of the context that bounds waitFor.
var errWaitTimeout = errors.New("rfc2136: wait timeout")

// waitFor queries the server until it answers with want.
func (c *Client) waitFor(ctx context.Context, want record) error {
	ctx, cancel := context.WithTimeoutCause(ctx, c.wait, errWaitTimeout)
	defer cancel()
	delay := 50 * time.Millisecond
	var last string
	for {
		got, err := c.lookup(ctx, want)
		switch {
		case err == nil && got.ttl == want.ttl && slices.Equal(got.values, want.values):
			return nil
		case err == nil:
			last = fmt.Sprintf("TTL %d and values %v", got.ttl, got.values)
		case errors.Is(err, draas.ErrNotFound):
			last = "that there is no such record"
		case ctx.Err() == nil && !draas.IsRetryable(err):
			return err
		default:
			last = fmt.Sprintf("an error (%v)", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			if context.Cause(ctx) != errWaitTimeout {
				return &draas.OpError{Op: "DNS UPDATE wait", Resource: c.resource(want), Err: ctx.Err()}
			}
			return &draas.OpError{Op: "DNS UPDATE wait", Resource: c.resource(want), Kind: draas.ErrTransient,
				Err: fmt.Errorf("the server accepted the update, but after %v it still answers %s instead of TTL %d and values %v: "+
					"if it forwards updates to the primary, raise Options.WaitTimeout or point the client at the primary; "+
					"if the name holds other records, the server ignored the CNAME: delete them first", c.wait, last, want.ttl, want.values)}
		case <-t.C:
		}
		delay = min(2*delay, time.Second)
	}
}

// Lookup queries the server for the record set with the given zone, name and
// type ("A", "CNAME" or any other type name). A name without that set fails
// with an error wrapping draas.ErrNotFound, also when the name holds a CNAME
// and another type is asked for. The values are sorted; names are returned
// fully qualified in lower case.
func (c *Client) Lookup(ctx context.Context, zone, name, typ string) (draas.Record, error) {
	rec, err := names(zone, name, typ, false)
	if err != nil {
		return draas.Record{}, err
	}
	got, err := c.lookup(ctx, rec)
	if err != nil {
		return draas.Record{}, err
	}
	return draas.Record{Zone: got.zone, Name: got.name, Type: dns.TypeToString[got.typ],
		TTL: time.Duration(got.ttl) * time.Second, Values: got.values}, nil
}

func (c *Client) lookup(ctx context.Context, q record) (record, error) {
	m := new(dns.Msg)
	m.SetQuestion(q.name, q.typ)
	m.RecursionDesired = false
	m.SetEdns0(1232, false)
	cl := call{op: "DNS QUERY", rec: q}
	r, err := c.exchange(ctx, m, cl)
	if err != nil {
		return record{}, err
	}
	if !r.Authoritative {
		return record{}, c.opError(cl, draas.ErrInvalid, r.Rcode, 0,
			fmt.Sprintf("the server is not authoritative for %s: point the client at a server that serves zone %s (its primary), or check Record.Zone", q.name, q.zone))
	}
	got := q
	got.values = nil
	for _, rr := range r.Answer {
		h := rr.Header()
		if h.Rrtype != q.typ || !strings.EqualFold(h.Name, q.name) {
			continue
		}
		got.ttl = h.Ttl
		switch rr := rr.(type) {
		case *dns.A:
			got.values = append(got.values, rr.A.String())
		case *dns.CNAME:
			got.values = append(got.values, dns.CanonicalName(rr.Target))
		default:
			got.values = append(got.values, strings.TrimSpace(strings.TrimPrefix(rr.String(), h.String())))
		}
	}
	if len(got.values) == 0 {
		return record{}, &draas.OpError{Op: cl.op, Resource: c.resource(q), Kind: draas.ErrNotFound}
	}
	slices.Sort(got.values)
	return got, nil
}

// Delete removes the record set with r's zone, name and type, whatever its
// values, in one UPDATE message; a missing record is not an error. A
// primary applies the deletion before it answers.
func (c *Client) Delete(ctx context.Context, r draas.Record) error {
	rec, err := names(r.Zone, r.Name, r.Type, true)
	if err != nil {
		return err
	}
	m := new(dns.Msg)
	m.SetUpdate(rec.zone)
	m.RemoveRRset([]dns.RR{rrset(rec.name, rec.typ)})
	_, err = c.exchange(ctx, m, call{op: "DNS UPDATE delete", rec: rec})
	return err
}
