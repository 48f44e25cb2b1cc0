package guestimage

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bus is the controller a booted image's disk hangs off.
type Bus string

const (
	// BusPVSCSI is VMware's paravirtual SCSI controller, the disk as the
	// guest had it on vSphere (it appears as /dev/sda).
	BusPVSCSI Bus = "pvscsi"
	// BusNVMe is an NVMe controller, the disk as an EC2 Nitro instance has
	// its EBS volumes (it appears as /dev/nvme0n1).
	BusNVMe Bus = "nvme"
)

// Outcome is how a boot ended.
type Outcome string

const (
	// OutcomeReady: the guest printed [ReadyMarker]: systemd reached
	// multi-user.target.
	OutcomeReady Outcome = "ready"
	// OutcomeRootNotFound: the initramfs gave up waiting for the root
	// filesystem ("ALERT! … does not exist. Dropping to a shell!").
	OutcomeRootNotFound Outcome = "root-not-found"
	// OutcomePanic: the kernel panicked.
	OutcomePanic Outcome = "kernel-panic"
	// OutcomeTimeout: none of the above within [BootOptions.Timeout].
	OutcomeTimeout Outcome = "timeout"
	// OutcomeExited: QEMU exited before any of the above.
	OutcomeExited Outcome = "exited"
)

// BootOptions configures [Boot]. The zero value is useful.
type BootOptions struct {
	// Timeout bounds the boot. Zero means 4 minutes: a Debian guest reaches
	// multi-user in about 25 s under TCG on an idle machine, and the
	// machines that run tests are seldom idle.
	Timeout time.Duration
	// MemoryMiB is the guest's memory; zero means 1024.
	MemoryMiB int
	// Serial is the NVMe controller's serial number; empty means
	// "vol0123456789abcdef0", a volume ID as EC2 Nitro shows it.
	Serial string
	// Console, if not nil, receives the serial console as it comes.
	Console io.Writer
	// QEMU is the emulator; empty means qemu-system-x86_64.
	QEMU string
}

// BootResult is what [Boot] saw.
type BootResult struct {
	Outcome Outcome
	// Line is the console line that decided the outcome, without
	// surrounding control characters.
	Line string
	// Console is the whole serial console output (the first 8 MiB).
	Console string
	// Elapsed is the time from starting QEMU to the outcome.
	Elapsed time.Duration
}

// Boot starts the raw disk image at path in QEMU (TCG, BIOS, the disk on
// bus, a copy-on-write overlay so the image itself is never written),
// watches its serial console (ttyS0) until the guest is ready, its
// initramfs gives up on the root filesystem, the kernel panics or the
// timeout passes, and stops QEMU. QEMU is killed on every return,
// cancellation included.
//
// The guest has one NIC on QEMU user networking: a VMXNET3 NIC in PCIe slot
// 192 (named ens192 by the guest, as on vSphere) with [BusPVSCSI], a
// virtio-net NIC in slot 5 (ens5, as on EC2) with [BusNVMe].
//
// The error is for QEMU failing to run, or ctx ending; how the guest fared
// is the result's Outcome.
func Boot(ctx context.Context, path string, bus Bus, opts BootOptions) (BootResult, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 4 * time.Minute
	}
	if opts.MemoryMiB <= 0 {
		opts.MemoryMiB = 1024
	}
	if opts.Serial == "" {
		opts.Serial = "vol0123456789abcdef0"
	}
	qemu := opts.QEMU
	if qemu == "" {
		qemu = "qemu-system-x86_64"
	}
	qemuPath, err := lookTool(qemu)
	if err != nil {
		return BootResult{}, &MissingToolsError{Missing: []Tool{{qemu, "qemu-system-x86"}}}
	}
	args, err := qemuArgs(path, bus, opts)
	if err != nil {
		return BootResult{}, err
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(runCtx, qemuPath, args...)
	cmd.WaitDelay = 5 * time.Second
	SetDeathSignal(cmd)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return BootResult{}, fmt.Errorf("guestimage: %w", err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return BootResult{}, fmt.Errorf("guestimage: starting %s: %w", qemu, err)
	}

	type decision struct {
		outcome Outcome
		line    string
	}
	decided := make(chan decision, 1)
	var mu sync.Mutex
	var console bytes.Buffer
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		br := bufio.NewReader(stdout)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				mu.Lock()
				if console.Len() < 8<<20 {
					console.WriteString(line)
				}
				mu.Unlock()
				if opts.Console != nil {
					io.WriteString(opts.Console, line)
				}
				if o := classify(line); o != "" {
					select {
					case decided <- decision{o, cleanLine(line)}:
					default:
					}
				}
			}
			if err != nil {
				return
			}
		}
	}()

	timer := time.NewTimer(opts.Timeout)
	defer timer.Stop()
	var res BootResult
	var ctxErr error
	select {
	case d := <-decided:
		res.Outcome, res.Line = d.outcome, d.line
	case <-readDone:
		res.Outcome = OutcomeExited
		// A decision on the last line counts.
		select {
		case d := <-decided:
			res.Outcome, res.Line = d.outcome, d.line
		default:
		}
	case <-timer.C:
		res.Outcome = OutcomeTimeout
	case <-ctx.Done():
		ctxErr = ctx.Err()
	}
	res.Elapsed = time.Since(start)
	cancel() // kills QEMU
	waitErr := cmd.Wait()
	<-readDone
	mu.Lock()
	res.Console = console.String()
	mu.Unlock()
	if ctxErr != nil {
		return res, fmt.Errorf("guestimage: boot of %s: %w", path, ctxErr)
	}
	if res.Outcome == OutcomeExited {
		if waitErr != nil {
			return res, fmt.Errorf("guestimage: %s exited: %w: %s", qemu, waitErr, strings.TrimSpace(stderr.String()))
		}
	}
	return res, nil
}

// qemuArgs builds the QEMU command line of [Boot]: one disk, written
// through a copy-on-write overlay, and no reboot.
func qemuArgs(path string, bus Bus, opts BootOptions) ([]string, error) {
	return Machine{
		MemoryMiB: opts.MemoryMiB,
		Disks:     []Disk{{Path: path, Bus: bus, Serial: opts.Serial, Snapshot: true}},
		NoReboot:  true,
	}.Args()
}

// Machine is a QEMU virtual machine as this package boots its guests: a q35
// machine with BIOS, no display, the serial console (ttyS0) on stdio or a
// file, disks on one kind of controller, and one NIC on QEMU user
// networking. The NIC is a VMXNET3 in PCIe slot 192 (named ens192 by the
// guest, as on vSphere) when the disks are on [BusPVSCSI], a virtio-net NIC
// in slot 5 (ens5, as on EC2, standing in for ENA) when they are on
// [BusNVMe]. The zero value is not useful: it has no disk.
type Machine struct {
	// Accel is QEMU's accelerator; empty means "tcg".
	Accel string
	// VCPUs is the number of virtual CPUs; zero means 1.
	VCPUs int
	// MemoryMiB is the guest's memory; zero means 1024.
	MemoryMiB int
	// Disks are the raw disk images; the first is the boot disk. All must
	// be on the same bus.
	Disks []Disk
	// Forwards are the host ports forwarded to the guest's ports (QEMU
	// user networking's hostfwd).
	Forwards []Forward
	// ConsoleFile, if set, receives the serial console (appended to);
	// empty means QEMU's stdout.
	ConsoleFile string
	// NoReboot makes QEMU exit, rather than reset, when the guest reboots.
	NoReboot bool
}

// Disk is one disk of a [Machine].
type Disk struct {
	// Path is the raw disk image.
	Path string
	// Bus is the disk's controller.
	Bus Bus
	// Serial is an NVMe disk's controller serial number; empty means
	// "vol0123456789abcdef0", a volume ID as EC2 Nitro shows it. Each NVMe
	// disk has a controller of its own, as each EBS volume of a Nitro
	// instance has.
	Serial string
	// Snapshot writes the disk through a temporary copy-on-write overlay:
	// the image is never written. Without it the guest's writes land in
	// the image.
	Snapshot bool
}

// Forward forwards a TCP port of the host to a port of the guest.
type Forward struct {
	// HostAddr is the host address to listen on; empty means 127.0.0.1.
	HostAddr string
	// HostPort and GuestPort are the ports.
	HostPort, GuestPort int
}

// Args returns QEMU's command line (without the program name).
func (m Machine) Args() ([]string, error) {
	if len(m.Disks) == 0 {
		return nil, fmt.Errorf("guestimage: a machine needs a disk")
	}
	accel := m.Accel
	if accel == "" {
		accel = "tcg"
	}
	vcpus, mem := max(m.VCPUs, 1), m.MemoryMiB
	if mem <= 0 {
		mem = 1024
	}
	args := []string{
		"-accel", accel, "-machine", "q35", "-cpu", "max", "-smp", strconv.Itoa(vcpus),
		"-m", strconv.Itoa(mem),
		"-nodefaults", "-no-user-config", "-display", "none",
	}
	if m.ConsoleFile != "" {
		args = append(args, "-chardev", "file,id=console0,append=on,path="+qemuEscape(m.ConsoleFile),
			"-serial", "chardev:console0")
	} else {
		args = append(args, "-serial", "stdio")
	}
	args = append(args, "-monitor", "none")
	if m.NoReboot {
		args = append(args, "-no-reboot")
	}
	bus := m.Disks[0].Bus
	nicModel, nicSlot := "", 0
	switch bus {
	case BusPVSCSI:
		args = append(args, "-device", "pvscsi,id=scsi0")
		nicModel, nicSlot = "vmxnet3", 192
	case BusNVMe:
		nicModel, nicSlot = "virtio-net-pci", 5
	default:
		return nil, fmt.Errorf("guestimage: unknown bus %q (want %q or %q)", bus, BusPVSCSI, BusNVMe)
	}
	for i, d := range m.Disks {
		if d.Bus != bus {
			return nil, fmt.Errorf("guestimage: disk %d is on %q, disk 0 on %q: one bus per machine", i, d.Bus, bus)
		}
		if d.Path == "" {
			return nil, fmt.Errorf("guestimage: disk %d has no path", i)
		}
		drive := "file=" + qemuEscape(d.Path) + ",format=raw,if=none,id=disk" + strconv.Itoa(i)
		if d.Snapshot {
			drive += ",snapshot=on"
		}
		args = append(args, "-drive", drive)
		boot := ""
		if i == 0 {
			boot = ",bootindex=0"
		}
		switch bus {
		case BusPVSCSI:
			args = append(args, "-device", fmt.Sprintf("scsi-hd,drive=disk%d,bus=scsi0.0%s", i, boot))
		case BusNVMe:
			serial := d.Serial
			if serial == "" {
				serial = "vol0123456789abcdef0"
			}
			args = append(args, "-device", fmt.Sprintf("nvme,drive=disk%d,serial=%s%s", i, qemuEscape(serial), boot))
		}
	}
	netdev := "user,id=net0"
	for _, f := range m.Forwards {
		host := f.HostAddr
		if host == "" {
			host = "127.0.0.1"
		}
		netdev += fmt.Sprintf(",hostfwd=tcp:%s:%d-:%d", host, f.HostPort, f.GuestPort)
	}
	// The NIC sits behind a PCIe root port whose physical slot number
	// names it (ens192, ens5) once the guest's pciehp, not ACPI, handles
	// the port's hot-plug slot.
	args = append(args,
		"-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
		"-device", fmt.Sprintf("pcie-root-port,id=rp0,chassis=1,slot=%d", nicSlot),
		"-netdev", netdev,
		"-device", nicModel+",netdev=net0,bus=rp0")
	return args, nil
}

// qemuEscape doubles the commas of an option value.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// classify tells whether a console line decides a boot.
func classify(line string) Outcome { return Classify(line) }

// Classify tells whether a serial console line decides a boot of this
// package's guests: [OutcomeReady], [OutcomeRootNotFound], [OutcomePanic],
// or "" for a line that decides nothing.
func Classify(line string) Outcome {
	switch {
	case strings.Contains(line, ReadyMarker):
		return OutcomeReady
	case strings.Contains(line, "ALERT!") && strings.Contains(line, "does not exist"):
		return OutcomeRootNotFound
	case strings.Contains(line, "Kernel panic"):
		return OutcomePanic
	}
	return ""
}

func cleanLine(s string) string { return CleanLine(s) }

// CleanLine drops the control characters and escape sequences of a console
// line, and the surrounding spaces.
func CleanLine(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0x1b: // ESC [ … letter
			if i+1 < len(s) && s[i+1] == '[' {
				i += 2
				for i < len(s) && (s[i] < 0x40 || s[i] > 0x7e) {
					i++
				}
			}
		case c < 0x20 || c == 0x7f:
		default:
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String())
}
