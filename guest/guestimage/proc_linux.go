package guestimage

import (
	"os/exec"
	"syscall"
)

// setDeathSignal has the kernel kill QEMU should this process die first.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
