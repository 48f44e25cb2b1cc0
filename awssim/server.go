// Package awssim is an in-process AWS simulator that carries data: the EBS
// direct APIs, the EC2 calls that disaster recovery needs, Route53, and S3
// (gofakes3 in memory, on an endpoint of its own). The real aws-sdk-go-v2
// clients talk to it over HTTP on 127.0.0.1, and its volumes, snapshots and
// objects hold real bytes, the way govmomi's vcsim stands in for vSphere.
//
// Start one with [New] (like httptest.NewServer), point any AWS client at
// [Server.URL] (S3 clients at [Server.S3URL], or use [Server.S3]), and use
// the Server's methods to inspect and seed state and to inject faults
// ([Server.Throttle], [Server.Latency], [Server.FailNth]), which apply to
// every service, S3 included. As in a real account, S3 buckets must be
// created before use ([Options].Buckets, [Server.CreateBucket] or the
// CreateBucket call).
package awssim

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
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
	// Buckets are the S3 buckets that exist from the start. As in a real
	// account, a request for any other bucket gets NoSuchBucket until it is
	// created (CreateBucket through the S3 API, or [Server.CreateBucket]).
	Buckets []string
	// EBSRateLimits, when set, are request-rate quotas the EBS direct APIs
	// enforce from the start, such as AWSEBSRateLimits(); see
	// Server.LimitEBSRates. Nil enforces none.
	EBSRateLimits *EBSRateLimits
}

// Server is a running simulator. Its methods are safe for concurrent use.
type Server struct {
	// URL is the endpoint, "http://127.0.0.1:PORT", for every simulated
	// service but S3.
	URL string
	// S3URL is the endpoint of the S3 simulator (gofakes3, in memory),
	// which needs its own because S3's paths are bucket names. Clients use
	// path-style addressing. Buckets must be created first (see
	// Options.Buckets), as in a real account.
	S3URL string

	opts   Options
	srv    *httptest.Server
	s3srv  *httptest.Server
	s3mem  *s3mem.Backend
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
	if opts.EBSRateLimits != nil {
		s.LimitEBSRates(*opts.EBSRateLimits)
	}
	s.ec2.init(s)
	s.r53.init(s)
	s.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: s}}
	s.srv.Start()
	s.URL = s.srv.URL

	s3ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.srv.Close()
		return nil, err
	}
	s.s3mem = s3mem.New(s3mem.WithTimeSource(timeSource{opts.Now}))
	for _, b := range opts.Buckets {
		if err := s.CreateBucket(b); err != nil {
			s.srv.Close()
			s3ln.Close()
			return nil, err
		}
	}
	faker := gofakes3.New(s3Backend{s.s3mem},
		gofakes3.WithTimeSource(timeSource{opts.Now}), gofakes3.WithTimeSkewLimit(0),
		gofakes3.WithLogger(gofakes3.DiscardLog()))
	s.s3srv = &httptest.Server{Listener: s3ln, Config: &http.Server{Handler: s.serveS3(faker.Server())}}
	s.s3srv.Start()
	s.S3URL = s.s3srv.URL
	return s, nil
}

// timeSource gives gofakes3 the simulator's clock.
type timeSource struct{ now func() time.Time }

func (t timeSource) Now() time.Time                  { return t.now() }
func (t timeSource) Since(u time.Time) time.Duration { return t.now().Sub(u) }

// Close shuts the server down.
func (s *Server) Close() {
	s.srv.Close()
	s.s3srv.Close()
}

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
