package rfc2136_test

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// testServer is a small authoritative DNS server for one zone that applies
// RFC 2136 updates signed with its TSIG key (unsigned updates are REFUSED, as
// with BIND's allow-update { key …; }). It serves UDP and TCP on the same
// loopback port.
type testServer struct {
	Addr   string
	Zone   string
	Key    string // TSIG key name
	Secret string // base64

	// MaxUDPAnswers, when positive, truncates UDP answers with more records.
	MaxUDPAnswers atomic.Int32
	// Rcode, when non-zero, is the answer to every request.
	Rcode atomic.Int32
	// Silent makes the server ignore requests.
	Silent atomic.Bool
	// TCPRequests and UDPRequests count requests by transport.
	TCPRequests, UDPRequests atomic.Int32

	udp, tcp *dns.Server

	mu   sync.Mutex
	sets map[setKey][]dns.RR
}

type setKey struct {
	name string
	typ  uint16
}

const (
	testZone = "example.com."
	testKey  = "draas-key."
)

// startTestServer starts a testServer for example.com. with key draas-key
// and a random secret. Close stops it.
func startTestServer() (*testServer, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	s := &testServer{Zone: testZone, Key: testKey, Secret: base64.StdEncoding.EncodeToString(raw), sets: map[setKey][]dns.RR{}}
	soa, _ := dns.NewRR(testZone + " 3600 IN SOA ns1.example.com. hostmaster.example.com. 1 3600 600 86400 60")
	ns, _ := dns.NewRR(testZone + " 3600 IN NS ns1.example.com.")
	s.sets[setKey{testZone, dns.TypeSOA}] = []dns.RR{soa}
	s.sets[setKey{testZone, dns.TypeNS}] = []dns.RR{ns}

	var pc net.PacketConn
	var l net.Listener
	for range 10 {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if l == nil {
		return nil, errors.New("no loopback port free for both UDP and TCP")
	}
	s.Addr = pc.LocalAddr().String()
	secrets := map[string]string{testKey: s.Secret}
	accept := func(h dns.Header) dns.MsgAcceptAction {
		if h.Bits&(1<<15) != 0 { // a response
			return dns.MsgIgnore
		}
		return dns.MsgAccept
	}
	s.udp = &dns.Server{PacketConn: pc, Handler: s, TsigSecret: secrets, MsgAcceptFunc: accept}
	s.tcp = &dns.Server{Listener: l, Handler: s, TsigSecret: secrets, MsgAcceptFunc: accept}
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	return s, nil
}

// Close stops the server.
func (s *testServer) Close() {
	_ = s.udp.Shutdown()
	_ = s.tcp.Shutdown()
}

// ServeDNS answers a query or applies an update.
func (s *testServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if w.LocalAddr().Network() == "tcp" {
		s.TCPRequests.Add(1)
	} else {
		s.UDPRequests.Add(1)
	}
	if s.Silent.Load() {
		return
	}
	reply := new(dns.Msg)
	reply.SetReply(req)
	t := req.IsTsig()
	if t != nil {
		if err := w.TsigStatus(); err != nil {
			// RFC 8945 5.2: NOTAUTH with the TSIG error, unsigned.
			reply.Rcode = dns.RcodeNotAuth
			reply.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
			tsig := reply.IsTsig()
			switch {
			case errors.Is(err, dns.ErrSecret):
				tsig.Error = dns.RcodeBadKey
			case errors.Is(err, dns.ErrTime):
				tsig.Error = dns.RcodeBadTime
			default:
				tsig.Error = dns.RcodeBadSig
			}
			_ = w.WriteMsg(reply)
			return
		}
	}
	switch rc := s.Rcode.Load(); {
	case rc != 0:
		reply.Rcode = int(rc)
	case req.Opcode == dns.OpcodeQuery && len(req.Question) == 1:
		s.query(w, req, reply)
	case req.Opcode == dns.OpcodeUpdate && t == nil:
		reply.Rcode = dns.RcodeRefused
	case req.Opcode == dns.OpcodeUpdate:
		reply.Rcode = s.update(req)
	default:
		reply.Rcode = dns.RcodeNotImplemented
	}
	if t != nil {
		reply.SetTsig(t.Hdr.Name, t.Algorithm, 300, time.Now().Unix())
	}
	_ = w.WriteMsg(reply)
}

func (s *testServer) query(w dns.ResponseWriter, req, reply *dns.Msg) {
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	if !dns.IsSubDomain(s.Zone, name) {
		reply.Rcode = dns.RcodeRefused
		return
	}
	reply.Authoritative = true
	s.mu.Lock()
	exists := false
	for k := range s.sets {
		if k.name == name {
			exists = true
		}
	}
	answer := s.sets[setKey{name, q.Qtype}]
	if cname := s.sets[setKey{name, dns.TypeCNAME}]; len(answer) == 0 && cname != nil {
		answer = cname
	}
	for _, rr := range answer {
		reply.Answer = append(reply.Answer, dns.Copy(rr))
	}
	if len(answer) == 0 {
		reply.Ns = append(reply.Ns, dns.Copy(s.sets[setKey{s.Zone, dns.TypeSOA}][0]))
	}
	s.mu.Unlock()
	if !exists {
		reply.Rcode = dns.RcodeNameError
	}
	if max := s.MaxUDPAnswers.Load(); max > 0 && w.LocalAddr().Network() == "udp" && len(reply.Answer) > int(max) {
		reply.Truncated = true
		reply.Answer = nil
	}
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = max(size, int(opt.UDPSize()))
	}
	if w.LocalAddr().Network() == "udp" {
		reply.Truncate(size - 200) // room for OPT and TSIG
	}
	if opt := req.IsEdns0(); opt != nil {
		reply.SetEdns0(opt.UDPSize(), false)
	}
}

// update applies an RFC 2136 update and returns the response code.
func (s *testServer) update(req *dns.Msg) int {
	if len(req.Question) != 1 || req.Question[0].Qtype != dns.TypeSOA {
		return dns.RcodeFormatError
	}
	if dns.CanonicalName(req.Question[0].Name) != s.Zone {
		return dns.RcodeNotAuth
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Prerequisites (RFC 2136 3.2).
	for _, rr := range req.Answer {
		h := rr.Header()
		name := dns.CanonicalName(h.Name)
		if !dns.IsSubDomain(s.Zone, name) {
			return dns.RcodeNotZone
		}
		used := s.nameUsed(name)
		set := s.sets[setKey{name, h.Rrtype}]
		switch {
		case h.Class == dns.ClassANY && h.Rrtype == dns.TypeANY && !used:
			return dns.RcodeNameError
		case h.Class == dns.ClassANY && h.Rrtype != dns.TypeANY && set == nil:
			return dns.RcodeNXRrset
		case h.Class == dns.ClassNONE && h.Rrtype == dns.TypeANY && used:
			return dns.RcodeYXDomain
		case h.Class == dns.ClassNONE && h.Rrtype != dns.TypeANY && set != nil:
			return dns.RcodeYXRrset
		case h.Class == dns.ClassINET:
			return dns.RcodeNotImplemented // value-dependent prerequisites: not needed here
		}
	}
	for _, rr := range req.Ns {
		if !dns.IsSubDomain(s.Zone, dns.CanonicalName(rr.Header().Name)) {
			return dns.RcodeNotZone
		}
	}
	// Updates (RFC 2136 3.4.2).
	for _, rr := range req.Ns {
		h := rr.Header()
		k := setKey{dns.CanonicalName(h.Name), h.Rrtype}
		switch h.Class {
		case dns.ClassINET:
			if k.typ == dns.TypeCNAME && s.hasOtherThan(k.name, dns.TypeCNAME) ||
				k.typ != dns.TypeCNAME && s.sets[setKey{k.name, dns.TypeCNAME}] != nil {
				continue // ignored, as RFC 2136 3.4.2.2 says
			}
			rr = dns.Copy(rr)
			rr.Header().Name = k.name
			set := s.sets[k]
			if k.typ == dns.TypeCNAME {
				set = nil
			}
			dup := false
			for i, old := range set {
				old.Header().Ttl = h.Ttl
				if dns.IsDuplicate(old, rr) {
					set[i], dup = rr, true
				}
			}
			if !dup {
				set = append(set, rr)
			}
			s.sets[k] = set
		case dns.ClassANY:
			if k.name == s.Zone {
				continue // apex records stay
			}
			for key := range s.sets {
				if key.name == k.name && (k.typ == dns.TypeANY || key.typ == k.typ) {
					delete(s.sets, key)
				}
			}
		case dns.ClassNONE:
			set := s.sets[setKey{k.name, k.typ}]
			for i, old := range set {
				r := dns.Copy(rr)
				r.Header().Class, r.Header().Ttl = old.Header().Class, old.Header().Ttl
				if dns.IsDuplicate(old, r) {
					set = append(set[:i], set[i+1:]...)
					break
				}
			}
			if len(set) == 0 {
				delete(s.sets, k)
			} else {
				s.sets[k] = set
			}
		default:
			return dns.RcodeFormatError
		}
	}
	return dns.RcodeSuccess
}

func (s *testServer) nameUsed(name string) bool {
	return s.hasOtherThan(name, dns.TypeNone)
}

func (s *testServer) hasOtherThan(name string, typ uint16) bool {
	for k := range s.sets {
		if k.name == name && k.typ != typ {
			return true
		}
	}
	return false
}

// String describes the server for test logs.
func (s *testServer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "test DNS server %s for %s:", s.Addr, s.Zone)
	for _, set := range s.sets {
		for _, rr := range set {
			b.WriteString("\n  " + rr.String())
		}
	}
	return b.String()
}
