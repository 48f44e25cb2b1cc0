//go:build !linux

package guestimage

import "os/exec"

func setDeathSignal(cmd *exec.Cmd) {}
