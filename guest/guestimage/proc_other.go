//go:build !linux

package guestimage

import "os/exec"

// SetDeathSignal has the kernel kill cmd's process (QEMU) should this
// process die first. It does nothing but on Linux.
func SetDeathSignal(cmd *exec.Cmd) {}
