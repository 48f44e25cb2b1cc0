package awssim

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opendraas/draas/guest/guestimage"
)

// Instances that really run ([Options].QEMU): a QEMU virtual machine per
// running instance, its volumes as NVMe disks, its console in a file.

// QEMUOptions configures the virtual machines of [Options].QEMU. The zero
// value is useful.
type QEMUOptions struct {
	// Binary is the emulator; empty means qemu-system-x86_64 (Debian
	// package qemu-system-x86).
	Binary string
	// Accel is QEMU's accelerator; empty means "tcg". TCG is the default
	// because nested KVM is unreliable on CI machines (it hangs in early
	// boot where /dev/kvm exists but nesting is broken); "kvm" is for
	// machines where it works.
	Accel string
	// MaxVCPUs and MaxMemoryMiB cap what the instance type asks for, so
	// that a fleet of m5.xlarge fits on a small machine; zero means 1 vCPU
	// and 1024 MiB.
	MaxVCPUs, MaxMemoryMiB int
	// Ports are the guest's TCP ports that are forwarded from the host
	// (see [Server.ForwardedAddr] and [Server.DialInstance]); nil means
	// 22, 80 and 443. A plan's health checks need their ports here.
	Ports []int
	// Log, if set, receives a line when a virtual machine starts (with its
	// forwarded ports) or stops.
	Log io.Writer
}

// resolve fills in the defaults and finds the emulator.
func (q QEMUOptions) resolve() (QEMUOptions, error) {
	if q.Binary == "" {
		q.Binary = "qemu-system-x86_64"
	}
	path, err := exec.LookPath(q.Binary)
	if err != nil {
		return q, fmt.Errorf("awssim: QEMU: %w (install the Debian package qemu-system-x86)", err)
	}
	q.Binary = path
	if q.Accel == "" {
		q.Accel = "tcg"
	}
	if q.MaxVCPUs <= 0 {
		q.MaxVCPUs = 1
	}
	if q.MaxMemoryMiB <= 0 {
		q.MaxMemoryMiB = 1024
	}
	if q.Ports == nil {
		q.Ports = []int{22, 80, 443}
	}
	for _, p := range q.Ports {
		if p <= 0 || p > 65535 {
			return q, fmt.Errorf("awssim: QEMU: bad port %d", p)
		}
	}
	return q, nil
}

// qemuVM is the running virtual machine of an instance.
type qemuVM struct {
	cmd      *exec.Cmd
	done     chan struct{} // closed when QEMU has exited
	forwards map[int]string
	stderr   *tailBuffer
}

// consoleLimit is how much of the serial console GetConsoleOutput returns:
// the latest 64 KiB, as EC2 does.
const consoleLimit = 64 << 10

// consolePath is where instance id's serial console is kept.
func (s *Server) consolePath(id string) string {
	return filepath.Join(s.volumeDir, id+".console")
}

// nitroSerial is a volume ID as an EC2 Nitro instance shows it: the NVMe
// controller's serial number, the ID without its hyphen.
func nitroSerial(volID string) string { return strings.Replace(volID, "-", "", 1) }

// vmMachine describes instance in's virtual machine, or returns false when
// the instance has nothing to boot: no root volume, or one made from a
// built-in image's placeholder snapshot. Callers hold s.mu.
func (s *Server) vmMachine(in *instance) (guestimage.Machine, bool) {
	q := s.opts.QEMU
	var root *volume
	var data []*volume
	for _, v := range s.attachedVolumes(in.id) {
		switch {
		case v.file == nil || v.attachState == "detaching":
		case v.attachDevice == in.rootDeviceName:
			root = v
		default:
			data = append(data, v)
		}
	}
	if root == nil || s.ec2.amazonSnaps[root.snapshotID] {
		return guestimage.Machine{}, false
	}
	t := s.ec2.types[in.instanceType]
	m := guestimage.Machine{
		Accel:       q.Accel,
		VCPUs:       min(max(t.vcpus, 1), q.MaxVCPUs),
		MemoryMiB:   int(min(max(t.memMiB, 256), int64(q.MaxMemoryMiB))),
		ConsoleFile: s.consolePath(in.id),
	}
	for _, v := range append([]*volume{root}, data...) {
		m.Disks = append(m.Disks, guestimage.Disk{Path: v.file.Name(), Bus: guestimage.BusNVMe, Serial: nitroSerial(v.id)})
	}
	return m, true
}

// startVM starts instance in's virtual machine, if the simulator runs
// them and the instance has something to boot. A VM that cannot start
// leaves the instance stopped with a Server.InternalError state reason.
// Callers hold s.mu.
func (s *Server) startVM(in *instance) {
	if s.opts.QEMU == nil || in.vm != nil {
		return
	}
	m, ok := s.vmMachine(in)
	if !ok {
		return
	}
	forwards := map[int]string{}
	for _, port := range s.opts.QEMU.Ports {
		hostPort, err := freePort()
		if err != nil {
			s.vmFailed(in, err)
			return
		}
		m.Forwards = append(m.Forwards, guestimage.Forward{HostPort: hostPort, GuestPort: port})
		forwards[port] = net.JoinHostPort("127.0.0.1", strconv.Itoa(hostPort))
	}
	args, err := m.Args()
	if err != nil {
		s.vmFailed(in, err)
		return
	}
	cmd := exec.Command(s.opts.QEMU.Binary, args...)
	guestimage.SetDeathSignal(cmd)
	vm := &qemuVM{cmd: cmd, done: make(chan struct{}), forwards: forwards, stderr: &tailBuffer{max: 4 << 10}}
	cmd.Stdout, cmd.Stderr = io.Discard, vm.stderr
	if err := cmd.Start(); err != nil {
		s.vmFailed(in, err)
		return
	}
	in.vm = vm
	if w := s.opts.QEMU.Log; w != nil {
		var ports []string
		for _, f := range m.Forwards {
			ports = append(ports, fmt.Sprintf("%d at 127.0.0.1:%d", f.GuestPort, f.HostPort))
		}
		fmt.Fprintf(w, "awssim: %s: QEMU started (pid %d, %d vCPU, %d MiB, root %s); guest ports %s\n",
			in.id, cmd.Process.Pid, m.VCPUs, m.MemoryMiB, filepath.Base(m.Disks[0].Path), strings.Join(ports, ", "))
	}
	go s.reapVM(in, vm)
}

// reapVM waits for QEMU to exit. If it exits on its own (the guest powered
// off, or QEMU failed), the instance stops, as an EC2 instance does when
// its guest shuts down.
func (s *Server) reapVM(in *instance, vm *qemuVM) {
	err := vm.cmd.Wait()
	close(vm.done)
	s.mu.Lock()
	defer s.mu.Unlock()
	if in.vm != vm {
		return // stopped by the simulator
	}
	in.vm = nil
	if in.state != "pending" && in.state != "running" {
		return
	}
	if w := s.opts.QEMU.Log; w != nil {
		fmt.Fprintf(w, "awssim: %s: QEMU exited (%v) %s\n", in.id, vm.cmd.ProcessState, strings.TrimSpace(vm.stderr.String()))
	}
	if err != nil {
		s.vmFailed(in, fmt.Errorf("QEMU exited: %w: %s", err, strings.TrimSpace(vm.stderr.String())))
		return
	}
	in.state, in.reason, in.stateReason = "stopped", "Client.InstanceInitiatedShutdown: Instance initiated shutdown", "Client.InstanceInitiatedShutdown"
	in.publicIP = netip.Addr{}
}

// vmFailed stops instance in because its VM could not run. Callers hold
// s.mu.
func (s *Server) vmFailed(in *instance, err error) {
	in.state, in.reason, in.stateReason = "stopped", "Server.InternalError: "+err.Error(), "Server.InternalError"
	in.publicIP = netip.Addr{}
}

// stopVM kills instance in's virtual machine, if it has one, and waits for
// QEMU to exit, so that its volume files are free. Callers hold s.mu.
func (s *Server) stopVM(in *instance) {
	vm := in.vm
	if vm == nil {
		return
	}
	in.vm = nil
	if w := s.opts.QEMU.Log; w != nil {
		fmt.Fprintf(w, "awssim: %s: QEMU killed (%s)\n", in.id, in.state)
	}
	_ = vm.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-vm.done:
	case <-time.After(10 * time.Second):
	}
}

// freePort returns a TCP port of 127.0.0.1 that is free now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("awssim: host port for QEMU: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ForwardedAddr returns the host address ("127.0.0.1:PORT") that reaches
// TCP port port of instance id's guest, or "" when the instance has no
// running virtual machine or the port is not forwarded (see
// [QEMUOptions].Ports).
func (s *Server) ForwardedAddr(id string, port int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.ec2.instances[id]; in != nil && in.vm != nil {
		return in.vm.forwards[port]
	}
	return ""
}

// ErrNotForwarded is returned by [Server.DialInstance] for an address that
// is no running virtual machine's forwarded port.
var ErrNotForwarded = errors.New("awssim: no forwarded port of a running instance")

// DialInstance dials an instance's private address ("10.0.1.5:80") through
// its virtual machine's forwarded port: what a health check from inside the
// VPC would reach. It fits failover.NetProber's Dial:
//
//	prober := failover.NetProber{Dial: sim.DialInstance}
//
// The error wraps [ErrNotForwarded] when no running instance has that
// address and port.
func (s *Server) DialInstance(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("awssim: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("awssim: port %q: %w", portStr, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("awssim: %s: %w", addr, ErrNotForwarded)
	}
	target := ""
	s.mu.Lock()
	for _, in := range s.ec2.instances {
		if in.privateIP == ip && in.vm != nil {
			target = in.vm.forwards[port]
		}
	}
	s.mu.Unlock()
	if target == "" {
		return nil, fmt.Errorf("awssim: %s: %w", addr, ErrNotForwarded)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, target)
}

// ConsoleOutput returns instance id's serial console, the latest 64 KiB of
// it, as GetConsoleOutput does (decoded). It is empty for an instance that
// never ran a virtual machine.
func (s *Server) ConsoleOutput(id string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.instanceByID(id); err != nil {
		return nil, err
	}
	b, _, err := s.readConsole(id)
	return b, err
}

// readConsole reads the latest consoleLimit bytes of instance id's
// console, and when it was last written. Callers hold s.mu.
func (s *Server) readConsole(id string) ([]byte, time.Time, error) {
	if s.volumeDir == "" {
		return nil, time.Time{}, nil
	}
	f, err := os.Open(s.consolePath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("awssim: console: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("awssim: console: %w", err)
	}
	off := max(fi.Size()-consoleLimit, 0)
	b := make([]byte, fi.Size()-off)
	n, err := f.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, time.Time{}, fmt.Errorf("awssim: console: %w", err)
	}
	return b[:n], fi.ModTime(), nil
}

type consoleOutputBody struct {
	ec2Meta
	InstanceID string `xml:"instanceId"`
	Timestamp  string `xml:"timestamp"`
	Output     string `xml:"output,omitempty"`
}

// ec2GetConsoleOutput returns the serial console, base64, the latest
// 64 KiB (with or without Latest: a Nitro instance keeps no more).
func (s *Server) ec2GetConsoleOutput(p ec2Params) (ec2Body, error) {
	id, err := p.required("InstanceId")
	if err != nil {
		return nil, err
	}
	in, err := s.instanceByID(id)
	if err != nil {
		return nil, err
	}
	if _, _, err := p.boolean("Latest"); err != nil {
		return nil, err
	}
	b, when, err := s.readConsole(in.id)
	if err != nil {
		return nil, err
	}
	if when.IsZero() {
		when = s.now()
	}
	out := &consoleOutputBody{InstanceID: in.id, Timestamp: ec2Time(when)}
	if len(b) > 0 {
		out.Output = base64.StdEncoding.EncodeToString(b)
	}
	return out, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if extra := t.buf.Len() - t.max; extra > 0 {
		t.buf.Next(extra)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
