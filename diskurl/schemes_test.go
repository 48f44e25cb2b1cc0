package diskurl_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/diskurl"
	"github.com/opendraas/draas/internal/vcsimtest"
	"github.com/opendraas/draas/vsphere"
)

// copyURL copies the disk at from into to through r, as a program that
// copies by URL does, and returns the URL the sink created, if any.
func copyURL(t *testing.T, r *diskurl.Registry, from, to string, o diskurl.SinkOptions) string {
	t.Helper()
	ctx := t.Context()
	src, err := r.Open(ctx, from)
	if err != nil {
		t.Fatalf("open %s: %v", from, err)
	}
	defer src.Close()
	dst, err := r.Create(ctx, to, src.Size(), o)
	if err != nil {
		t.Fatalf("create %s: %v", to, err)
	}
	exts, err := diskurl.Extents(ctx, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blockcopy.Copy(ctx, dst, src, blockcopy.Options{Verify: true, Extents: exts}); err != nil {
		t.Fatalf("copy %s to %s: %v", from, to, err)
	}
	if c, ok := dst.(diskurl.CreatedSink); ok {
		return c.Created()
	}
	return ""
}

// writeDisk writes size bytes to path: 64 KiB regions of random data, of
// zeros, or left as holes.
func writeDisk(t *testing.T, path string, size int64, seed uint64) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	data := make([]byte, size)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < size; off += 64 << 10 {
		end := min(off+64<<10, size)
		if rng.IntN(2) == 0 {
			continue
		}
		for i := off; i < end; i++ {
			data[i] = byte(rng.Uint32()) | 1
		}
		if _, err := f.WriteAt(data[off:end], off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return data
}

func assertFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the source (%d and %d bytes)", path, len(got), len(want))
	}
}

// TestLocalSchemes copies through file and vmdk URLs and checks the
// existing-sink and partial-path rules.
func TestLocalSchemes(t *testing.T) {
	r := diskurl.New(diskurl.Options{})
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.raw")
	data := writeDisk(t, src, 3<<20+4096, 1) // VMDKs hold whole sectors

	img := "vmdk://" + filepath.Join(dir, "disk.vmdk") + "?subformat=monolithicSparse"
	copyURL(t, r, src, img, diskurl.SinkOptions{})
	back := filepath.Join(dir, "back.raw")
	copyURL(t, r, "vmdk://"+filepath.Join(dir, "disk.vmdk"), "file://"+back, diskurl.SinkOptions{})
	assertFile(t, back, data)

	if _, err := r.Create(t.Context(), back, 1<<20, diskurl.SinkOptions{}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("create over an existing file: %v, want fs.ErrExist", err)
	}
	if _, err := r.Create(t.Context(), img, 1<<20, diskurl.SinkOptions{Resume: true}); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("resume into a vmdk: %v, want ErrInvalid", err)
	}
	for u, want := range map[string]string{
		"file://" + back: back + ".draas-partial",
		img:              filepath.Join(dir, "disk.vmdk") + ".draas-partial",
		"ebs://new":      "",
	} {
		l, err := r.Parse(u, diskurl.AsSink)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.PartialPath(); got != want {
			t.Errorf("PartialPath(%s) = %q, want %q", u, got, want)
		}
	}
}

// TestAWSSchemes copies a file into a new recovery point of an S3 backup
// store, that into a new EBS snapshot, and the snapshot back into a file,
// against the AWS simulator, with the AWS configuration loaded once.
func TestAWSSchemes(t *testing.T) {
	srv, err := awssim.New(awssim.Options{Buckets: []string{"backups"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	loads := 0
	var notes []string
	r := diskurl.New(diskurl.Options{
		AWSConfig: func(context.Context) (aws.Config, error) { loads++; return srv.Config(), nil },
		S3Options: []func(*awss3.Options){srv.S3Options},
		Notice:    func(m string) { notes = append(notes, m) },
	})
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.raw")
	data := writeDisk(t, src, 2<<20+12345, 2)

	point := copyURL(t, r, src, "s3://backups/site-a/web-1/new/disk-0", diskurl.SinkOptions{})
	if !regexp.MustCompile(`^s3://backups/site-a/web-1/\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}/disk-0$`).MatchString(point) {
		t.Fatalf("s3 sink created %q, want the new point's URL", point)
	}
	snap := copyURL(t, r, "s3://backups/site-a/web-1/latest/disk-0", "ebs://new", diskurl.SinkOptions{Description: "test"})
	if !regexp.MustCompile(`^ebs://snap-[0-9a-f]+$`).MatchString(snap) {
		t.Fatalf("ebs sink created %q, want ebs://snap-…", snap)
	}
	back := filepath.Join(dir, "back.raw")
	copyURL(t, r, snap, back, diskurl.SinkOptions{})
	assertFile(t, back, data) // the draas:size tag cut the snapshot's last GiB

	// A snapshot on a parent: the copy covers the parent's blocks too.
	back2 := filepath.Join(dir, "back2.raw")
	snap2 := copyURL(t, r, back, "ebs://new?parent="+strings.TrimPrefix(snap, "ebs://"), diskurl.SinkOptions{})
	copyURL(t, r, snap2, back2, diskurl.SinkOptions{})
	assertFile(t, back2, data)

	if loads != 1 {
		t.Errorf("AWSConfig called %d times, want once", loads)
	}
	if len(notes) != 0 {
		t.Errorf("notices: %q", notes)
	}
	if _, err := r.Open(t.Context(), "s3://backups/site-a/web-1/20200101T000000Z-00000000/disk-0"); !errors.Is(err, draas.ErrNotFound) {
		t.Errorf("open a missing point: %v, want ErrNotFound", err)
	}
}

// TestVSphereScheme copies a file into a vcsim VM's disk and back, with
// the password from Options.VSphereLogin.
func TestVSphereScheme(t *testing.T) {
	const size = 2 << 20
	site := vcsimtest.Start(t, "db01", size)
	user, pass, thumb := site.User, site.Password, site.Thumbprint
	ctx := t.Context()

	var logins []string
	r := diskurl.New(diskurl.Options{VSphereLogin: func(_ context.Context, host, u string) (vsphere.Options, error) {
		logins = append(logins, u+"@"+host)
		return vsphere.Options{Password: pass}, nil
	}})
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.raw")
	data := writeDisk(t, src, size, 3)
	u := "vsphere://" + user + "@" + site.Host + "/db01/disk-0?thumbprint=" + thumb
	copyURL(t, r, src, u, diskurl.SinkOptions{})
	back := filepath.Join(dir, "back.raw")
	copyURL(t, r, u, back, diskurl.SinkOptions{})
	assertFile(t, back, data)
	if want := user + "@" + site.Host; len(logins) != 2 || logins[0] != want {
		t.Errorf("VSphereLogin calls %q, want two for %s", logins, want)
	}

	if _, err := r.Create(ctx, "vsphere://"+user+"@"+site.Host+"/db01/disk-1?thumbprint="+thumb, size, diskurl.SinkOptions{}); !errors.Is(err, draas.ErrInvalid) {
		t.Errorf("create a disk the VM lacks: %v, want ErrInvalid", err)
	}
	_, err := r.Open(ctx, "vsphere://"+user+"@"+site.Host+"/db01/disk-0?thumbprint=00:11")
	if err == nil || strings.Contains(err.Error(), pass) {
		t.Errorf("a wrong thumbprint: %v, want an error without the password", err)
	}
}
