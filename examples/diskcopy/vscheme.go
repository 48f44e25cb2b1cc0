package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/vmdk"
	"github.com/opendraas/draas/vsphere"
)

// vmdkPath returns the local path and subformat a vmdk URL names.
func vmdkPath(u *url.URL) (string, vmdk.Format, error) {
	if u.Host != "" && u.Host != "localhost" {
		return "", 0, fmt.Errorf("vmdk URL has host %q: an absolute path needs three slashes, as in vmdk:///abs/path/disk.vmdk", u.Host)
	}
	if u.Opaque != "" || !filepath.IsAbs(u.Path) {
		return "", 0, errors.New("vmdk URL needs an absolute path, as in vmdk:///abs/path/disk.vmdk")
	}
	q := u.Query()
	for k := range q {
		if k != "subformat" {
			return "", 0, fmt.Errorf("vmdk URL: unknown parameter %q (the only one is subformat)", k)
		}
	}
	f, err := vmdk.ParseFormat(q.Get("subformat"))
	if err != nil {
		return "", 0, fmt.Errorf("vmdk URL: %v", err)
	}
	return filepath.Clean(u.Path), f, nil
}

func openVMDK(_ context.Context, u *url.URL) (source, error) {
	p, _, err := vmdkPath(u)
	if err != nil {
		return nil, err
	}
	return vmdk.Open(p)
}

func createVMDK(_ context.Context, u *url.URL, size int64, o sinkOptions) (draas.VolumeSink, error) {
	p, f, err := vmdkPath(u)
	if err != nil {
		return nil, err
	}
	if o.Resume {
		return nil, errors.New("vmdk sinks cannot resume an interrupted copy yet: copy again without --resume")
	}
	return vmdk.Create(p, size, vmdk.CreateOptions{Format: f, Overwrite: o.Overwrite})
}

func vmdkPartial(u *url.URL) string {
	p, _, err := vmdkPath(u)
	if err != nil {
		return ""
	}
	return p + ".draas-partial"
}

// vsphereTarget is what a vsphere URL names:
// vsphere://[user@]vcenter[:port]/VM/disk-N[?thumbprint=…&insecure=1].
type vsphereTarget struct {
	sdk  string // https://host/sdk
	vm   string
	disk int
	opts vsphere.Options
}

// parseVSphere reads a vsphere URL. The password comes from the
// environment (DRAAS_VSPHERE_PASSWORD), never from the URL, so that it does
// not show in process listings or shell history.
func parseVSphere(u *url.URL) (vsphereTarget, error) {
	var t vsphereTarget
	if u.Host == "" {
		return t, errors.New("vsphere URL needs a vCenter host, as in vsphere://user@vcenter.example.com/VM/disk-0")
	}
	if _, set := u.User.Password(); set {
		return t, errors.New("vsphere URL must not carry a password: set DRAAS_VSPHERE_PASSWORD instead")
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || parts[0] == "" || !strings.HasPrefix(parts[1], "disk-") {
		return t, errors.New("vsphere URL path is /VM/disk-N, as in vsphere://vcenter.example.com/db01/disk-0")
	}
	n, err := strconv.Atoi(strings.TrimPrefix(parts[1], "disk-"))
	if err != nil || n < 0 {
		return t, fmt.Errorf("vsphere URL: %q is not disk-N with N a disk index from 0", parts[1])
	}
	q := u.Query()
	t = vsphereTarget{sdk: "https://" + u.Host + "/sdk", vm: parts[0], disk: n}
	t.opts.Username = u.User.Username()
	if t.opts.Username == "" {
		t.opts.Username = os.Getenv("DRAAS_VSPHERE_USER")
	}
	t.opts.Password = os.Getenv("DRAAS_VSPHERE_PASSWORD")
	t.opts.Thumbprint = q.Get("thumbprint")
	t.opts.Insecure = q.Get("insecure") == "1"
	return t, nil
}

// vsphereSource closes its Hypervisor's session with the source.
type vsphereSource struct {
	draas.BlockSource
	h *vsphere.Hypervisor
}

func (s vsphereSource) Close() error { return s.h.Close(context.Background()) }
func (s vsphereSource) Unwrap() any  { return s.BlockSource }

func openVSphere(ctx context.Context, u *url.URL) (source, error) {
	t, err := parseVSphere(u)
	if err != nil {
		return nil, err
	}
	h, err := vsphere.Dial(ctx, t.sdk, t.opts)
	if err != nil {
		return nil, err
	}
	src, err := h.ReadDisk(ctx, t.vm, t.disk)
	if err != nil {
		h.Close(ctx)
		return nil, err
	}
	return vsphereSource{BlockSource: src, h: h}, nil
}

func createVSphere(ctx context.Context, u *url.URL, size int64, o sinkOptions) (draas.VolumeSink, error) {
	t, err := parseVSphere(u)
	if err != nil {
		return nil, err
	}
	if o.Resume {
		return nil, errors.New("vsphere sinks cannot resume an interrupted copy: copy again without --resume")
	}
	h, err := vsphere.Dial(ctx, t.sdk, t.opts)
	if err != nil {
		return nil, err
	}
	shape, err := h.VMShape(ctx, t.vm)
	if err != nil {
		h.Close(ctx)
		return nil, err
	}
	if t.disk >= len(shape.Disks) || shape.Disks[t.disk].Size < size {
		h.Close(ctx)
		return nil, fmt.Errorf("vsphere: VM %s has no disk %d of at least %d bytes: create the VM with the source's disk size first", t.vm, t.disk, size)
	}
	return h.OpenDisk(ctx, t.vm, t.disk)
}
