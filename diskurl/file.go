package diskurl

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/local"
	"github.com/opendraas/draas/vmdk"
)

// fileScheme is file:///abs/path: a raw image file or block device.
func fileScheme() Scheme {
	return Scheme{
		Name:    "file",
		Example: "file:///abs/path/disk.raw",
		About:   "a raw image file or block device (a bare path works too)",
		Check:   func(u *url.URL, _ Role) error { _, err := filePath(u); return err },
		Open:    openFile,
		Create:  createFile,
		Partial: filePartial,
	}
}

// filePath returns the local path a file URL names. It accepts
// file:///abs/path and file://localhost/abs/path, nothing relative.
func filePath(u *url.URL) (string, error) {
	if u.Host != "" && u.Host != "localhost" {
		return "", fmt.Errorf("file URL has host %q: an absolute path needs three slashes, as in file:///abs/path/disk.raw", u.Host)
	}
	if u.Opaque != "" || !filepath.IsAbs(u.Path) {
		return "", errors.New("file URL needs an absolute path, as in file:///abs/path/disk.raw")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", errors.New("file URL takes no user, query or fragment: write file:///abs/path/disk.raw")
	}
	return filepath.Clean(u.Path), nil
}

func openFile(_ context.Context, u *url.URL) (Source, error) {
	p, err := filePath(u)
	if err != nil {
		return nil, err
	}
	return local.Open(p)
}

func createFile(_ context.Context, u *url.URL, size int64, o SinkOptions) (draas.VolumeSink, error) {
	p, err := filePath(u)
	if err != nil {
		return nil, err
	}
	return local.Create(p, size, local.SinkOptions{Overwrite: o.Overwrite, Resume: o.Resume})
}

// filePartial is where package local keeps a sink's output until Commit.
func filePartial(u *url.URL) string {
	p, err := filePath(u)
	if err != nil {
		return ""
	}
	return p + local.PartialSuffix
}

// vmdkScheme is vmdk:///abs/path/disk.vmdk[?subformat=…]: a VMDK file.
func vmdkScheme() Scheme {
	return Scheme{
		Name:    "vmdk",
		Example: "vmdk:///abs/path/disk.vmdk?subformat=streamOptimized",
		About:   "a VMDK file: streamOptimized (the default as sink), monolithicSparse or\nmonolithicFlat; any of them as source",
		Check:   func(u *url.URL, _ Role) error { _, _, err := vmdkPath(u); return err },
		Open:    openVMDK,
		Create:  createVMDK,
		Partial: vmdkPartial,
	}
}

// vmdkPath returns the local path and subformat a vmdk URL names.
func vmdkPath(u *url.URL) (string, vmdk.Format, error) {
	if u.Host != "" && u.Host != "localhost" {
		return "", 0, fmt.Errorf("vmdk URL has host %q: an absolute path needs three slashes, as in vmdk:///abs/path/disk.vmdk", u.Host)
	}
	if u.Opaque != "" || !filepath.IsAbs(u.Path) {
		return "", 0, errors.New("vmdk URL needs an absolute path, as in vmdk:///abs/path/disk.vmdk")
	}
	if u.Fragment != "" || u.User != nil {
		return "", 0, errors.New("vmdk URL takes no user or fragment: write vmdk:///abs/path/disk.vmdk?subformat=streamOptimized")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", 0, fmt.Errorf("vmdk URL: bad query %q: %v", u.RawQuery, err)
	}
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

func openVMDK(_ context.Context, u *url.URL) (Source, error) {
	p, _, err := vmdkPath(u)
	if err != nil {
		return nil, err
	}
	return vmdk.Open(p)
}

func createVMDK(_ context.Context, u *url.URL, size int64, o SinkOptions) (draas.VolumeSink, error) {
	p, f, err := vmdkPath(u)
	if err != nil {
		return nil, err
	}
	if o.Resume {
		return nil, draas.Invalidf("vmdk sinks cannot resume an interrupted copy yet: copy again without resuming")
	}
	return vmdk.Create(p, size, vmdk.CreateOptions{Format: f, Overwrite: o.Overwrite})
}

// vmdkPartial is where package vmdk keeps a sink's output until Commit.
func vmdkPartial(u *url.URL) string {
	p, _, err := vmdkPath(u)
	if err != nil {
		return ""
	}
	return p + ".draas-partial"
}
