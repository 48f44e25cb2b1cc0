package plan

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// MaxUserData is EC2's limit on an instance's user data: 16 KiB of raw
// data, counted before the base64 encoding RunInstances carries it in
// (which makes it up to 21848 bytes on the wire).
const MaxUserData = 16 << 10

// UserData returns the user data that runs vm's boot scripts once at first
// boot: a shell script for Linux (run by cloud-init), a PowerShell block
// for Windows (run by EC2Launch). It is empty when there are no scripts.
// This is what failover launches the VM's instance with; Validate checks
// its size against [MaxUserData].
func (vm VM) UserData() []byte {
	if len(vm.BootScripts) == 0 {
		return nil
	}
	var b strings.Builder
	if vm.OS == "windows" {
		b.WriteString("<powershell>\n")
		for i, s := range vm.BootScripts {
			fmt.Fprintf(&b, "# draas boot script %d: %s\n%s\n", i+1, s.Name, strings.TrimRight(s.Run, "\n"))
		}
		b.WriteString("</powershell>\n")
		return []byte(b.String())
	}
	b.WriteString("#!/bin/sh\n# draas boot scripts, run once at first boot by cloud-init.\nset -e\nmkdir -p /var/lib/draas\n")
	for i, s := range vm.BootScripts {
		marker := heredocMarker(i)
		fmt.Fprintf(&b, "# %d: %s\ncat > /var/lib/draas/boot-%d <<'%s'\n%s\n%s\nchmod +x /var/lib/draas/boot-%d\n/var/lib/draas/boot-%d\n",
			i+1, s.Name, i+1, marker, strings.TrimRight(s.Run, "\n"), marker, i+1, i+1)
	}
	return []byte(b.String())
}

// heredocMarker ends the here-document that writes Linux boot script i.
func heredocMarker(i int) string { return fmt.Sprintf("DRAAS_BOOT_SCRIPT_%d_EOF", i+1) }

// checkUserData checks that the user data of the VM at field f can be
// launched: its size, and scripts that cannot break out of the wrapper
// UserData puts around them.
func (v *validator) checkUserData(f string, vm VM) {
	for j, s := range vm.BootScripts {
		sf := fmt.Sprintf("%s.bootScripts[%d]", f, j)
		if strings.ContainsAny(s.Name, "\r\n") {
			v.add(sf+".name", "the name has a line break: it becomes a comment line of the user data; write it on one line")
		}
		if vm.OS == "windows" && strings.Contains(strings.ToLower(s.Name), "</powershell>") {
			v.add(sf+".name", "%q in the name ends the PowerShell block early (the name becomes a comment in it): remove it", "</powershell>")
		}
		for _, line := range strings.Split(s.Run, "\n") {
			line = strings.TrimRight(line, "\r")
			switch {
			case vm.OS != "windows" && line == heredocMarker(j):
				v.add(sf+".run", "the line %q ends the script early (draas writes each script with a here-document of that name): change that line", line)
			case vm.OS == "windows" && strings.Contains(strings.ToLower(line), "</powershell>"):
				v.add(sf+".run", "%q ends the PowerShell block early (draas wraps the scripts in one): remove it", "</powershell>")
			}
		}
	}
	if n := len(vm.UserData()); n > MaxUserData {
		v.add(f+".bootScripts", "the boot scripts make %d bytes of user data (%d once base64-encoded for RunInstances); EC2 accepts at most %d bytes, counted before base64: shorten them by %d bytes, or have a short script fetch the rest (from S3, say)",
			n, base64.StdEncoding.EncodedLen(n), MaxUserData, n-MaxUserData)
	}
}
