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
//
// Volumes hold their data in memory, or, with [Options].VolumeDir, in
// sparse raw files, one per volume, which allows multi-GiB volumes and is
// what QEMU boots. With [Options].QEMU, instances really run: each running
// instance is a QEMU virtual machine (TCG by default) booting its root
// volume by BIOS, its volumes as NVMe disks whose serial is the volume ID as
// EC2 Nitro shows it ("vol0123…"), a virtio-net NIC on QEMU user networking
// standing in for ENA, and vCPUs and memory from the instance type, capped
// ([QEMUOptions]). Stop and Terminate kill the VM, Start starts a new one,
// and the guest's writes land in the volume files, so snapshots see them.
// GetConsoleOutput returns the serial console as EC2 does (base64, the
// latest 64 KiB; also [Server.ConsoleOutput]); [Server.ForwardedAddr] and
// [Server.DialInstance] reach the guest's forwarded TCP ports, for health
// checks (failover.NetProber{Dial: sim.DialInstance}). Every QEMU is killed
// by Terminate, Stop and Close, and by the kernel if the process running
// the simulator dies.
package awssim

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
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
	// VolumeDir, if set, keeps the data of every volume in a sparse raw
	// file of the volume's size, <volume-id>.raw, in this directory (which
	// must exist), instead of in memory: QEMU can use such a file as a disk,
	// and tests can use multi-GiB volumes. Snapshots read the file;
	// snapshots themselves stay in memory. Deleting a volume removes its
	// file, and Close removes them all.
	VolumeDir string
	// QEMU, if set, has instances really run: RunInstances and
	// StartInstances start a QEMU virtual machine booting the instance's
	// root volume, Stop and Terminate kill it (see [QEMUOptions]). It needs
	// file-backed volumes: without VolumeDir, a temporary directory is used
	// (and removed by Close).
	QEMU *QEMUOptions
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

	volumeDir string // Options.VolumeDir, or a temporary one for QEMU
	tempDir   bool   // volumeDir is the simulator's own

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
	s := &Server{
		opts:      opts,
		ids:       map[string]int{},
		snaps:     map[string]*snapshot{},
		vols:      map[string]*volume{},
		volumeDir: opts.VolumeDir,
	}
	if opts.VolumeDir != "" {
		if fi, err := os.Stat(opts.VolumeDir); err != nil {
			return nil, fmt.Errorf("awssim: volume directory: %w", err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("awssim: volume directory %s is not a directory", opts.VolumeDir)
		}
	}
	if opts.QEMU != nil {
		q, err := opts.QEMU.resolve()
		if err != nil {
			return nil, err
		}
		s.opts.QEMU = &q
		if s.volumeDir == "" {
			if s.volumeDir, err = os.MkdirTemp("", "awssim-volumes-"); err != nil {
				return nil, fmt.Errorf("awssim: %w", err)
			}
			s.tempDir = true
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.removeTempDir()
		return nil, err
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
		s.removeTempDir()
		return nil, err
	}
	s.s3mem = s3mem.New(s3mem.WithTimeSource(timeSource{opts.Now}))
	for _, b := range opts.Buckets {
		if err := s.CreateBucket(b); err != nil {
			s.srv.Close()
			s3ln.Close()
			s.removeTempDir()
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

// Close shuts the server down: it kills the instances' QEMU virtual
// machines and removes the volume files.
func (s *Server) Close() {
	s.srv.Close()
	s.s3srv.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range sortedKeys(s.ec2.instances) {
		s.stopVM(s.ec2.instances[id])
		if s.volumeDir != "" {
			os.Remove(s.consolePath(id))
		}
	}
	for _, id := range sortedKeys(s.vols) {
		if v := s.vols[id]; v.file != nil {
			v.file.Close()
			os.Remove(v.file.Name())
			v.file = nil
		}
	}
	s.removeTempDir()
}

func (s *Server) removeTempDir() {
	if s.tempDir {
		os.RemoveAll(s.volumeDir)
	}
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
