package rfc2136

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/miekg/dns"

	"github.com/opendraas/draas"
)

// ServerError is an error answer from the DNS server: a response code other
// than NOERROR (and NXDOMAIN for queries), or a TSIG error. Methods return
// it inside a *draas.OpError together with the draas sentinel it maps to:
//
//   - REFUSED, NOTAUTH and TSIG errors (BADSIG, BADKEY, BADTIME): the server
//     will not accept the key, the address or the zone; draas.ErrInvalid,
//     with Hint saying what to configure;
//   - NOTZONE, FORMERR, NOTIMP: draas.ErrInvalid;
//   - YXDOMAIN, YXRRSET, NXRRSET (a failed prerequisite): draas.ErrConflict;
//   - SERVFAIL: draas.ErrTransient.
type ServerError struct {
	// Rcode is the response code (see miekg/dns's Rcode constants).
	Rcode int
	// TSIGError is the error in the answer's TSIG record (dns.RcodeBadSig,
	// dns.RcodeBadKey, dns.RcodeBadTime, …), or 0.
	TSIGError int
	// Hint says what is wrong and how to fix it.
	Hint string
}

func (e *ServerError) Error() string {
	msg := "server answered " + rcodeName(e.Rcode)
	if e.TSIGError != 0 {
		msg += " (TSIG error " + rcodeName(e.TSIGError) + ")"
	}
	if e.Hint != "" {
		msg += ": " + e.Hint
	}
	return msg
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}

// call describes one exchange, for its errors.
type call struct {
	op  string // "DNS UPDATE", "DNS QUERY", …
	rec record // the record set concerned
	// conflict explains a failed prerequisite of an update.
	conflict string
}

func (c *Client) resource(r record) string {
	return fmt.Sprintf("%s on server %s", r, c.server)
}

func (c *Client) opError(cl call, kind error, rcode, tsigErr int, hint string) error {
	return &draas.OpError{Op: cl.op, Resource: c.resource(cl.rec), Kind: kind,
		Err: &ServerError{Rcode: rcode, TSIGError: tsigErr, Hint: hint}}
}

// tsigOverhead bounds the size of a TSIG record on top of its key and
// algorithm names: fixed fields and a MAC of at most 64 bytes.
const tsigOverhead = 100

// exchange sends m (signed with the client's key) and returns the answer. It
// fails with a *draas.OpError unless the answer is NOERROR, or NXDOMAIN for
// a query, and (for a signed message) carries a valid signature.
func (c *Client) exchange(ctx context.Context, m *dns.Msg, cl call) (*dns.Msg, error) {
	network := c.net
	size := m.Len()
	if c.key != "" {
		size += len(c.key) + len(c.alg) + tsigOverhead
	}
	if network == "udp" && size > dns.MinMsgSize {
		network = "tcp"
	}
	r, err := c.roundTrip(ctx, m, network)
	if err == nil && r.Truncated && network == "udp" {
		r, err = c.roundTrip(ctx, m, "tcp")
	}
	if err := c.check(ctx, cl, m, r, err); err != nil {
		return nil, err
	}
	return r, nil
}

// roundTrip signs a copy of m, sends it over network and reads the answer.
// It honours ctx's deadline and cancellation as well as c.timeout.
func (c *Client) roundTrip(ctx context.Context, m *dns.Msg, network string) (*dns.Msg, error) {
	m = m.Copy()
	if c.key != "" {
		m.SetTsig(c.key, c.alg, tsigFudge, time.Now().Unix())
	}
	dc := &dns.Client{Net: network, Timeout: c.timeout, TsigSecret: c.secrets}
	conn, err := dc.DialContext(ctx, c.server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// miekg/dns honours a context's deadline but not its cancellation:
	// closing the connection ends a pending read.
	stop := context.AfterFunc(ctx, func() { conn.Conn.Close() })
	defer stop()
	r, _, err := dc.ExchangeWithConnContext(ctx, m, conn)
	return r, err
}

// check turns the outcome of an exchange into an error.
func (c *Client) check(ctx context.Context, cl call, req, r *dns.Msg, err error) error {
	if err != nil {
		// miekg/dns ends a read at the context's deadline; the context
		// reports it an instant later.
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			<-ctx.Done()
		}
	}
	if ctxErr := ctx.Err(); ctxErr != nil && err != nil {
		return &draas.OpError{Op: cl.op, Resource: c.resource(cl.rec), Err: ctxErr}
	}
	// A TSIG error or NOTAUTH comes in an unsigned answer, which miekg/dns
	// reports as a bad signature; the server's verdict is what matters.
	if r != nil {
		if t := r.IsTsig(); t != nil && t.Error != dns.RcodeSuccess {
			return c.opError(cl, draas.ErrInvalid, r.Rcode, int(t.Error), c.tsigHint(cl, int(t.Error)))
		}
		if r.Rcode == dns.RcodeNotAuth {
			return c.opError(cl, draas.ErrInvalid, r.Rcode, 0, c.notAuthHint(cl))
		}
	}
	if err != nil {
		return c.transportError(cl, err)
	}
	if c.key != "" && r.IsTsig() == nil && r.Rcode == dns.RcodeSuccess {
		return c.opError(cl, draas.ErrInvalid, r.Rcode, 0,
			fmt.Sprintf("the answer to a message signed with TSIG key %s is not signed: check that the address is the DNS server's and that the server knows the key", c.key))
	}
	isQuery := req.Opcode == dns.OpcodeQuery
	zone := cl.rec.zone
	switch r.Rcode {
	case dns.RcodeSuccess:
		return nil
	case dns.RcodeNameError:
		if isQuery {
			return nil
		}
		return c.opError(cl, draas.ErrConflict, r.Rcode, 0, cl.conflict)
	case dns.RcodeYXDomain, dns.RcodeYXRrset, dns.RcodeNXRrset:
		return c.opError(cl, draas.ErrConflict, r.Rcode, 0, cl.conflict)
	case dns.RcodeServerFailure:
		return c.opError(cl, draas.ErrTransient, r.Rcode, 0,
			fmt.Sprintf("the server failed to process the request for zone %s (its log says why, e.g. a zone file or journal it cannot write, or a zone that did not load)", zone))
	case dns.RcodeRefused:
		if isQuery {
			return c.opError(cl, draas.ErrInvalid, r.Rcode, 0,
				fmt.Sprintf("the server refused the query: check that it serves zone %s and that its allow-query lets this client in", zone))
		}
		if c.key == "" {
			return c.opError(cl, draas.ErrInvalid, r.Rcode, 0,
				fmt.Sprintf("the server refused the unsigned update of zone %s: set Options.TSIGKey and TSIGSecret to a key the zone lets update (BIND: allow-update { key NAME; };), or let this client's address update it, and check that the server is the zone's primary", zone))
		}
		return c.opError(cl, draas.ErrInvalid, r.Rcode, 0,
			fmt.Sprintf("the server refused the update of zone %s: let TSIG key %s update the zone (BIND: allow-update { key %s; }; or an update-policy grant in the zone statement) and check that the server is the zone's primary",
				zone, c.key, c.key))
	case dns.RcodeNotZone:
		return c.opError(cl, draas.ErrInvalid, r.Rcode, 0,
			fmt.Sprintf("%s is not in zone %s as the server has it (a delegated subzone?): set Record.Zone to the zone that holds the name", cl.rec.name, zone))
	case dns.RcodeFormatError, dns.RcodeNotImplemented:
		return c.opError(cl, draas.ErrInvalid, r.Rcode, 0,
			"the server does not accept the message: check that it supports RFC 2136 dynamic update and TSIG algorithm "+c.alg)
	default:
		return c.opError(cl, nil, r.Rcode, 0, "")
	}
}

func (c *Client) tsigHint(cl call, tsigErr int) string {
	switch tsigErr {
	case dns.RcodeBadSig:
		return fmt.Sprintf("the server rejected the signature of TSIG key %s for zone %s: the secret or the algorithm (%s) differs from the server's key statement; copy both from it",
			c.key, cl.rec.zone, c.alg)
	case dns.RcodeBadKey:
		return fmt.Sprintf("the server does not know TSIG key %s with algorithm %s: add the key statement to the server and let the key update zone %s (BIND: allow-update { key %s; };), or fix Options.TSIGKey and TSIGAlgorithm",
			c.key, c.alg, cl.rec.zone, c.key)
	case dns.RcodeBadTime:
		return fmt.Sprintf("the server's clock and this machine's differ by more than %ds: synchronise both (NTP)", tsigFudge)
	default:
		return fmt.Sprintf("the server rejected TSIG key %s for zone %s", c.key, cl.rec.zone)
	}
}

func (c *Client) notAuthHint(cl call) string {
	if c.key == "" {
		return fmt.Sprintf("the server is not authoritative for zone %s or wants signed updates: point the client at the zone's primary, check Record.Zone, or set Options.TSIGKey and TSIGSecret", cl.rec.zone)
	}
	return fmt.Sprintf("the server is not authoritative for zone %s, or does not accept TSIG key %s: point the client at the zone's primary, check Record.Zone and the server's key statement", cl.rec.zone, c.key)
}

// transportError classifies an error that left no usable answer: a bad
// signature on the answer is a configuration problem; anything else (a
// timeout, a refused or reset connection, a garbled answer) is transient.
func (c *Client) transportError(cl call, err error) error {
	e := &draas.OpError{Op: cl.op, Resource: c.resource(cl.rec), Kind: draas.ErrTransient, Err: err}
	switch {
	case errors.Is(err, dns.ErrTime):
		e.Kind = draas.ErrInvalid
		e.Err = fmt.Errorf("the answer's TSIG time is more than %ds off this machine's clock: synchronise both clocks (NTP): %w", tsigFudge, err)
	case errors.Is(err, dns.ErrSig), errors.Is(err, dns.ErrSecret), errors.Is(err, dns.ErrKeyAlg), errors.Is(err, dns.ErrAuth):
		e.Kind = draas.ErrInvalid
		e.Err = fmt.Errorf("the answer's signature with TSIG key %s does not verify: check that the address is the DNS server's and the key's secret and algorithm (%s): %w", c.key, c.alg, err)
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			e.Err = fmt.Errorf("no answer within %v: %w", c.timeout, err)
		}
	}
	return e
}
