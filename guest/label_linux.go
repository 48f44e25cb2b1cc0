//go:build linux

package guest

import (
	"io/fs"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// noFollow makes an open fail on a symbolic link in the last component.
const noFollow = syscall.O_NOFOLLOW

const selinuxXattr = "security.selinux"

// getLabel returns the SELinux label of the host path p (not following a
// link), or "" if it has none or the filesystem keeps none.
func getLabel(p string) string {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, selinuxXattr, buf)
		if err == unix.ERANGE && len(buf) < 1<<16 {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if err != nil || n <= 0 {
			return ""
		}
		return strings.TrimRight(string(buf[:n]), "\x00")
	}
}

// setLabel gives the host path p the SELinux label l, as well as it can: a
// filesystem or kernel that keeps no labels is not an error, because the
// guest then relabels what it finds unlabelled.
func setLabel(p, l string) {
	_ = unix.Lsetxattr(p, selinuxXattr, append([]byte(l), 0), 0)
}

func owner(fi fs.FileInfo) (uid, gid int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return 0, 0
}
