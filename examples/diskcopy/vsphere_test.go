package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/opendraas/draas/internal/vcsimtest"
)

// TestVSphereScheme copies a raw file into a vcsim VM's disk and back.
func TestVSphereScheme(t *testing.T) {
	bin := buildDiskcopy(t)
	const size = 4 << 20
	site := vcsimtest.Start(t, "db01", size)
	user, pass, thumb := site.User, site.Password, site.Thumbprint

	dir := t.TempDir()
	src := filepath.Join(dir, "disk.raw")
	writeSparseDisk(t, src, size, 21)
	u := "vsphere://" + user + "@" + site.Host + "/db01/disk-0?thumbprint=" + thumb
	env := append(os.Environ(), "DRAAS_VSPHERE_PASSWORD="+pass)
	runCmdEnv(t, bin, env, "--verify", "file://"+src, u).wantExit(t, exitOK)
	back := filepath.Join(dir, "back.raw")
	runCmdEnv(t, bin, env, u, "file://"+back).wantExit(t, exitOK)
	assertSameFile(t, src, back)

	// A wrong thumbprint is refused, and the password never shows.
	res := runCmdEnv(t, bin, env, "vsphere://"+user+"@"+site.Host+"/db01/disk-0?thumbprint=00:11", "file://"+filepath.Join(dir, "x.raw"))
	res.wantExit(t, exitFailed)
	if len(pass) > 4 && bytes.Contains([]byte(res.stderr), []byte(pass)) {
		t.Errorf("the password appears in the error: %s", res.stderr)
	}
}
