package guestimage

import (
	"os/exec"
	"syscall"
)

// SetDeathSignal has the kernel kill cmd's process (QEMU) should this
// process die first (Linux's parent-death signal). It does nothing but on
// Linux.
func SetDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
