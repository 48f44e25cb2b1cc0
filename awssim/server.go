// Package awssim is an in-process AWS simulator that carries data: the EBS
// direct APIs, the EC2 calls that disaster recovery needs, and Route53. The
// real aws-sdk-go-v2 clients talk to it over HTTP on 127.0.0.1, and its
// volumes and snapshots hold real bytes, the way govmomi's vcsim stands in
// for vSphere.
//
// Start one with [New] (like httptest.NewServer), point any AWS client at
// [Server.URL], and use the Server's methods to inspect and seed state and to
// inject faults.
package awssim

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Options configures a [Server]. The zero value is useful.
type Options struct {
	// Addr is the address to listen on; empty means "127.0.0.1:0" (a free
	// port on loopback).
	Addr string
	// Region is reported in ARNs and availability zones; default "us-east-1".
	Region string
	// AccountID owns every resource; default "123456789012".
	AccountID string
	// Now is the clock; default time.Now. Tests pass a controllable clock to
	// drive snapshot timeouts and state transitions.
	Now func() time.Time
	// TransitionDelay is how long resources stay in their transitional states
	// (volume "creating", snapshot "pending", instance "pending"); default 0:
	// the transition happens on the first Describe after creation, so waiters
	// see each state at least once.
	TransitionDelay time.Duration
}

// Server is a running simulator. Its methods are safe for concurrent use.
type Server struct {
	// URL is the endpoint, "http://127.0.0.1:PORT", for every simulated
	// service.
	URL string

	opts   Options
	srv    *httptest.Server
	faults faultSet

	mu    sync.Mutex // guards everything below
	ids   map[string]int
	snaps map[string]*snapshot
	vols  map[string]*volume
	ebs   ebsState     // ebs.go
	ec2   ec2State     // ec2.go
	r53   route53State // route53.go
}

// New starts a simulator listening on loopback. Close it when done.
func New(opts Options) (*Server, error) {
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.AccountID == "" {
		opts.AccountID = "123456789012"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:  opts,
		ids:   map[string]int{},
		snaps: map[string]*snapshot{},
		vols:  map[string]*volume{},
	}
	s.ec2.init(s)
	s.r53.init(s)
	s.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: s}}
	s.srv.Start()
	s.URL = s.srv.URL
	return s, nil
}

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// ServeHTTP dispatches a request to the simulated service by protocol:
// Route53 is REST-XML under /2013-04-01/, the EBS direct APIs are REST-JSON
// under /snapshots, and EC2 is the query protocol (form-encoded Action).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/2013-04-01/"):
		s.serveRoute53(w, r)
	case strings.HasPrefix(r.URL.Path, "/snapshots"):
		s.serveEBS(w, r)
	default:
		s.serveEC2(w, r)
	}
}

// newID returns a new AWS-style ID with the given prefix ("snap", "vol",
// "i"), unique within the server. Callers hold s.mu.
func (s *Server) newID(prefix string) string {
	s.ids[prefix]++
	return prefix + "-" + hex17(s.ids[prefix])
}

func hex17(n int) string {
	const digits = "0123456789abcdef"
	b := []byte("00000000000000000")
	for i := len(b) - 1; i >= 0 && n > 0; i-- {
		b[i] = digits[n%16]
		n /= 16
	}
	return string(b)
}

func (s *Server) now() time.Time { return s.opts.Now() }
