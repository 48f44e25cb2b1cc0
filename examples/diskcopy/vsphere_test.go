package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/vsphere"
)

// TestVSphereScheme copies a raw file into a vcsim VM's disk and back.
func TestVSphereScheme(t *testing.T) {
	bin := buildDiskcopy(t)
	model := simulator.VPX()
	defer model.Remove()
	if err := model.Create(); err != nil {
		t.Fatal(err)
	}
	model.Service.TLS = new(tls.Config)
	server := model.Service.NewServer()
	defer server.Close()
	thumb := soap.ThumbprintSHA256(server.Certificate())
	user := server.URL.User.Username()
	pass, _ := server.URL.User.Password()

	ctx := context.Background()
	h, err := vsphere.Dial(ctx, server.URL.String(), vsphere.Options{Thumbprint: thumb})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)
	const size = 4 << 20
	if err := h.CreateVM(ctx, draas.VMRequest{Name: "db01", Shape: draas.Shape{CPUs: 1, MemoryMiB: 512, Disks: []draas.Disk{{Size: size}}}}); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	src := filepath.Join(dir, "disk.raw")
	writeSparseDisk(t, src, size, 21)
	u := "vsphere://" + user + "@" + server.URL.Host + "/db01/disk-0?thumbprint=" + thumb
	env := append(os.Environ(), "DRAAS_VSPHERE_PASSWORD="+pass)
	runCmdEnv(t, bin, env, "--verify", "file://"+src, u).wantExit(t, exitOK)
	back := filepath.Join(dir, "back.raw")
	runCmdEnv(t, bin, env, u, "file://"+back).wantExit(t, exitOK)
	assertSameFile(t, src, back)

	// A wrong thumbprint is refused, and the password never shows.
	res := runCmdEnv(t, bin, env, "vsphere://"+user+"@"+server.URL.Host+"/db01/disk-0?thumbprint=00:11", "file://"+filepath.Join(dir, "x.raw"))
	res.wantExit(t, exitFailed)
	if len(pass) > 4 && bytes.Contains([]byte(res.stderr), []byte(pass)) {
		t.Errorf("the password appears in the error: %s", res.stderr)
	}
}
