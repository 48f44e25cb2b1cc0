package main

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/opendraas/draas/awssim"
)

// TestCloudSchemes runs the built command against the AWS simulator, as a
// user would run it against `go run ./examples/awssim`: a raw file into a
// new recovery point of an S3 backup store, that point into a new EBS
// snapshot, the snapshot back into a file, byte-identical; then an
// incremental snapshot on the first from the next point's changes only.
func TestCloudSchemes(t *testing.T) {
	bin := buildDiskcopy(t)
	srv, err := awssim.New(awssim.Options{Buckets: []string{"backups"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	env := simEnv()
	cp := func(args ...string) result {
		t.Helper()
		res := runCmdEnv(t, bin, env, append([]string{"--endpoint", srv.URL, "--s3-endpoint", srv.S3URL}, args...)...)
		res.wantExit(t, exitOK)
		return res
	}
	dir := t.TempDir()

	// Version 1 of the disk: sparse, not a whole number of blocks, with
	// block 2 a hole (version 2 writes data there).
	v1 := filepath.Join(dir, "v1.raw")
	size := int64(6<<20 + 12345)
	writeSparseDisk(t, v1, size, 11)
	punchHole(t, v1, 2*512<<10, 512<<10)

	point1 := strings.TrimSpace(cp(v1, "s3://backups/site-a/web-1/new/disk-0").stdout)
	pointURL := regexp.MustCompile(`^s3://backups/site-a/web-1/(\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8})/disk-0$`)
	m := pointURL.FindStringSubmatch(point1)
	if m == nil {
		t.Fatalf("s3 sink printed %q, want the new point's URL s3://backups/site-a/web-1/ID/disk-0", point1)
	}
	id1 := m[1]

	snapURL := regexp.MustCompile(`^ebs://(snap-[0-9a-f]+)$`)
	snap1 := strings.TrimSpace(cp("--verify", point1, "ebs://new").stdout)
	if !snapURL.MatchString(snap1) {
		t.Fatalf("ebs sink printed %q, want ebs://snap-…", snap1)
	}

	// Back into a file, with the endpoints from the environment this time.
	back1 := filepath.Join(dir, "back1.raw")
	res := runCmdEnv(t, bin, append(env, "AWS_ENDPOINT_URL="+srv.URL, "AWS_ENDPOINT_URL_S3="+srv.S3URL), "--verify", snap1, back1)
	res.wantExit(t, exitOK)
	assertSameFile(t, v1, back1)

	// Version 2 changes three blocks: data over the zero block 2, a page
	// of block 5, and the short last block.
	v2 := filepath.Join(dir, "v2.raw")
	copyFile(t, v1, v2)
	rng := rand.New(rand.NewPCG(12, 12))
	writeAt(t, v2, randomBytes(rng, 512<<10), 2*512<<10)
	writeAt(t, v2, randomBytes(rng, 4096), 5*512<<10+8192)
	writeAt(t, v2, randomBytes(rng, 100), size-200)
	point2 := strings.TrimSpace(cp(v2, "s3://backups/site-a/web-1/new/disk-0").stdout)
	if m := pointURL.FindStringSubmatch(point2); m == nil || m[1] == id1 {
		t.Fatalf("second point printed as %q, want a new point's URL", point2)
	}

	// Only the changes since point 1, onto a snapshot whose parent holds
	// point 1: three blocks sent.
	puts := srv.Calls("PutSnapshotBlock")
	res = cp("--verify", "--json", "--changed-since", id1, "s3://backups/site-a/web-1/latest/disk-0", "ebs://new?parent="+strings.TrimPrefix(snap1, "ebs://"))
	// (latest is point 2: the s3 sink never makes two points of a VM in
	// the same second, which point IDs could not order.)
	var out outcome
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		t.Fatalf("--json: %v\n%s", err, res.stdout)
	}
	if !snapURL.MatchString(out.Created) || out.BlocksCopied != 3 || !out.Verified {
		t.Errorf("incremental copy: created %q, %d blocks copied, verified %t; want a snapshot, 3 blocks, verified", out.Created, out.BlocksCopied, out.Verified)
	}
	if n := srv.Calls("PutSnapshotBlock") - puts; n != 3 {
		t.Errorf("incremental copy made %d PutSnapshotBlock calls, want 3", n)
	}
	back2 := filepath.Join(dir, "back2.raw")
	cp(out.Created, back2)
	assertSameFile(t, v2, back2)

	// The same from snapshot to snapshot: the blocks that differ between
	// the two copies (ListChangedBlocks), onto the first.
	puts = srv.Calls("PutSnapshotBlock")
	snap1ID := strings.TrimPrefix(snap1, "ebs://")
	snap4 := strings.TrimSpace(cp("--changed-since", snap1ID, out.Created, "ebs://new?parent="+snap1ID).stdout)
	if n := srv.Calls("PutSnapshotBlock") - puts; n != 3 {
		t.Errorf("snapshot-to-snapshot incremental copy made %d PutSnapshotBlock calls, want 3", n)
	}
	back4 := filepath.Join(dir, "back4.raw")
	cp(snap4, back4)
	assertSameFile(t, v2, back4)

	// A full copy onto a parent must also overwrite what the parent holds
	// and the source does not: version 1 onto version 2's snapshot reads
	// back as version 1, its hole in block 2 included.
	snap3 := strings.TrimSpace(cp(v1, "ebs://new?parent="+strings.TrimPrefix(out.Created, "ebs://")).stdout)
	back3 := filepath.Join(dir, "back3.raw")
	cp(snap3, back3)
	assertSameFile(t, v1, back3)

	// A missing point is an error that names it.
	res = runCmdEnv(t, bin, env, "--endpoint", srv.URL, "--s3-endpoint", srv.S3URL, "s3://backups/site-a/web-1/20200101T000000Z-00000000/disk-0", filepath.Join(dir, "x.raw"))
	res.wantExit(t, exitFailed)
	res.wantStderr(t, "20200101T000000Z-00000000")
	if _, err := os.Stat(filepath.Join(dir, "x.raw")); err == nil {
		t.Errorf("a failed copy created its SINK")
	}
}

// simEnv is this process's environment without AWS settings, plus dummy
// credentials and a region, and no shared config files or instance
// metadata: the configuration chain a user has against a simulator.
func simEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"AWS_ACCESS_KEY_ID=AKIDDISKCOPYTEST", "AWS_SECRET_ACCESS_KEY=diskcopy-test-secret", "AWS_REGION=us-east-1",
		"AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull, "AWS_EC2_METADATA_DISABLED=true")
}

func writeAt(t *testing.T, path string, p []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(p, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// punchHole deallocates length bytes at off, so that the file reads zeros
// there and SEEK_DATA skips them.
func punchHole(t *testing.T, path string, off, length int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length); err != nil {
		t.Skipf("cannot punch a hole in %s on this file system: %v", path, err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(rng *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(rng.Uint32()) | 1
	}
	return p
}
