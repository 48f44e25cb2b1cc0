package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestEdgeInputs runs diskcopy on inputs that used to crash it or print
// something unhelpful: a huge --concurrency on a small disk (out of memory),
// a 0-byte disk into a VMDK (a file qemu-img rejects), a directory as the
// sink ("it is a d---------").
func TestEdgeInputs(t *testing.T) {
	bin := buildDiskcopy(t)
	dir := t.TempDir()

	src := filepath.Join(dir, "disk.raw")
	writeSparseDisk(t, src, 8<<20, 3)
	dst := filepath.Join(dir, "copy.raw")
	runCmd(t, bin, "--quiet", "--verify", "--concurrency", "100000000", src, dst).wantExit(t, exitOK)
	assertSameFile(t, src, dst)

	empty := filepath.Join(dir, "empty.raw")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "empty.vmdk")
	res := runCmd(t, bin, "--quiet", empty, "vmdk://"+img)
	if res.code == exitOK {
		t.Errorf("a 0-byte disk copied to a VMDK: exit 0, want a failure")
	}
	res.wantStderr(t, "0 bytes cannot be a VMDK")
	if _, err := os.Stat(img); err == nil {
		t.Errorf("a refused VMDK was left at %s", img)
	}

	res = runCmd(t, bin, "--quiet", src, dir)
	if res.code == exitOK {
		t.Errorf("a directory as the sink: exit 0, want a failure")
	}
	res.wantStderr(t, "it is a directory; give the path of a file in it")
}
