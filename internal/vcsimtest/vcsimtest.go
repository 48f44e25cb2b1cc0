// Package vcsimtest starts govmomi's vCenter simulator (vcsim) with one VM,
// for the tests of packages that reach vSphere by URL (diskurl,
// examples/diskcopy). Package vsphere's own tests use a richer simulator.
package vcsimtest

import (
	"crypto/tls"
	"testing"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/vsphere"
)

// Site is a running vcsim (the VPX model) serving TLS with a self-signed
// certificate.
type Site struct {
	Host       string // host:port of the SDK endpoint
	Thumbprint string // SHA-256 thumbprint of the server's certificate
	User       string
	Password   string
}

// Start starts vcsim, creates in it a VM named vm with one disk of size
// bytes (1 CPU, 512 MiB), and stops it when the test ends.
func Start(t testing.TB, vm string, size int64) Site {
	t.Helper()
	model := simulator.VPX()
	t.Cleanup(model.Remove)
	if err := model.Create(); err != nil {
		t.Fatal(err)
	}
	model.Service.TLS = new(tls.Config)
	server := model.Service.NewServer()
	t.Cleanup(server.Close)
	s := Site{
		Host:       server.URL.Host,
		Thumbprint: soap.ThumbprintSHA256(server.Certificate()),
		User:       server.URL.User.Username(),
	}
	s.Password, _ = server.URL.User.Password()

	ctx := t.Context()
	h, err := vsphere.Dial(ctx, server.URL.String(), vsphere.Options{Thumbprint: s.Thumbprint})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)
	shape := draas.Shape{CPUs: 1, MemoryMiB: 512, Disks: []draas.Disk{{Size: size}}}
	if err := h.CreateVM(ctx, draas.VMRequest{Name: vm, Shape: shape}); err != nil {
		t.Fatal(err)
	}
	return s
}
