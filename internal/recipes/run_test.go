//go:build linux

package recipes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// recipeTimeout bounds one recipe. The slowest, go run ./examples/drill,
// takes about 20 s on an idle 2-core machine once built; building it in the
// scratch copy from a cold cache takes minutes on a loaded one.
const recipeTimeout = 10 * time.Minute

// TestRecipes runs every shell recipe of README.md and docs/*.md as written
// (see the package doc). It is slow (minutes: it runs the demo and the CLI
// several times), so it runs only when DRAAS_RECIPES=1, as .ci/run sets:
//
//	DRAAS_RECIPES=1 go test -v -timeout 30m ./internal/recipes
//	DRAAS_RECIPES=1 go test -v ./internal/recipes -run 'TestRecipes/docs/draasctl.md'
//
// Each file's recipes run in order, each in a new bash -e -o pipefail, in
// one fresh copy of the repository (the files git lists, tracked and
// untracked, minus the ignored ones) at a fixed place under the user's cache
// directory, so that the Go build cache stays warm from one run to the next.
// The environment has no AWS credentials or configuration, so nothing can
// reach a real account. A recipe's background processes are its own to stop:
// one it leaves running fails it.
func TestRecipes(t *testing.T) {
	if os.Getenv("DRAAS_RECIPES") != "1" {
		t.Skip("set DRAAS_RECIPES=1 (as .ci/run does) to run the shell recipes of README.md and docs/*.md; it takes minutes")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("the recipes need bash: ", err)
	}
	root := repoRoot(t)
	all := loadRecipes(t, root)
	if t.Failed() {
		t.FailNow()
	}
	scratch, unlock := scratchDir(t, root)
	defer unlock()
	env := recipeEnv(os.Environ())

	var summary []string
	// passed maps the commands of a file's recipes up to one that passed
	// (see commands) to that recipe: a recipe whose file starts with the
	// same commands as another's, up to and including it, would run the same
	// commands on the same fresh copy, so it is not run twice.
	passed := make(map[string]string)
	start := time.Now()
	defer func() {
		t.Logf("recipes of README.md and docs/*.md (%s in all):\n%s", time.Since(start).Round(time.Second), strings.Join(summary, "\n"))
	}()
	for _, f := range docFiles(t, root) {
		rs := all[f]
		if len(rs) == 0 {
			continue
		}
		t.Run(f, func(t *testing.T) {
			tmp := t.TempDir()
			if err := copyRepo(root, scratch); err != nil {
				t.Fatal(err)
			}
			prefix := ""
			for _, r := range rs {
				t.Run(strconv.Itoa(r.Line), func(t *testing.T) {
					if runs(r) {
						prefix += commands(r) + "\x00"
						if same, ok := passed[prefix]; ok {
							summary = append(summary, fmt.Sprintf("  same     %-32s as %s, which passed", r.Name(), same))
							t.Skipf("runs the same commands on the same fresh copy as %s, which passed", same)
						}
					}
					line, skipped := runOne(t, bash, scratch, tmp, env, r)
					summary = append(summary, line)
					if skipped != "" {
						t.Skip(skipped)
					}
					if !t.Failed() && runs(r) {
						passed[prefix] = r.Name()
					}
				})
			}
		})
	}
}

// runs reports whether r runs here: it is not skipped and what it needs is
// on PATH.
func runs(r Recipe) bool {
	for _, need := range r.Needs {
		if _, err := exec.LookPath(need); err != nil {
			return false
		}
	}
	return r.Skip == ""
}

// commands returns the commands a recipe runs: its script's lines without
// comments or blank lines (see CommandOf).
func commands(r Recipe) string {
	script, err := r.Script()
	if err != nil {
		return r.Body
	}
	var cmds []string
	for line := range strings.SplitSeq(script, "\n") {
		if c := CommandOf(line); c != "" {
			cmds = append(cmds, c)
		}
	}
	return strings.Join(cmds, "\n")
}

// runOne runs one recipe and returns its summary line and, when it was
// skipped, why. It fails t when the recipe fails.
func runOne(t *testing.T, bash, dir, tmp string, env []string, r Recipe) (summary, skipped string) {
	if r.Skip != "" {
		return fmt.Sprintf("  skipped  %-32s %s", r.Name(), r.Skip), r.Skip
	}
	for _, need := range r.Needs {
		if _, err := exec.LookPath(need); err != nil {
			why := need + " is not on PATH"
			return fmt.Sprintf("  skipped  %-32s %s", r.Name(), why), why
		}
	}
	script, err := r.Script()
	if err != nil {
		t.Fatal(err)
	}
	var partly []string
	for _, s := range r.SkipLines {
		partly = append(partly, fmt.Sprintf("%q not run: %s", s.Command, s.Reason))
	}
	path := filepath.Join(tmp, fmt.Sprintf("recipe-%d.sh", r.Line))
	if err := os.WriteFile(path, []byte("set -e -o pipefail\n"+script), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s:\n%s", r.Name(), script)

	out, err := os.Create(filepath.Join(tmp, fmt.Sprintf("recipe-%d.out", r.Line)))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	limit := recipeTimeout
	if r.Timeout > 0 {
		limit = r.Timeout
	}
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	cmd := exec.Command(bash, "--noprofile", "--norc", path)
	cmd.Dir = dir
	cmd.Env = append(env, "TMPDIR="+tmp)
	// A file, not a pipe: Wait must not wait for background processes that
	// keep the output open.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var runErr error
	select {
	case runErr = <-done:
	case <-ctx.Done():
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
		runErr = fmt.Errorf("timed out after %v", limit)
	}
	took := time.Since(began).Round(100 * time.Millisecond)
	left := stopGroup(pgid)

	status := "ran"
	if runErr != nil {
		status = "FAILED"
		t.Errorf("%s: %v after %v; its output ends:\n%s", r.Name(), runErr, took, tail(out.Name(), 60))
	} else if left != "" {
		status = "FAILED"
		t.Errorf("%s: left processes running (a background job it did not stop), killed now:\n%s\nits output ends:\n%s", r.Name(), left, tail(out.Name(), 30))
	} else {
		t.Logf("%s: ok in %v; its output:\n%s", r.Name(), took, tail(out.Name(), 200))
	}
	line := fmt.Sprintf("  %-7s  %-32s %v", status, r.Name(), took)
	if len(partly) > 0 {
		line += "; " + strings.Join(partly, "; ")
	}
	return line, ""
}

// stopGroup waits up to five seconds for the processes of group pgid to
// exit, then kills those left and describes them ("" when none was left).
func stopGroup(pgid int) string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := groupMembers(pgid)
		if len(left) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			syscall.Kill(-pgid, syscall.SIGKILL)
			return strings.Join(left, "\n")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// groupMembers lists the live (not zombie) processes of group pgid from
// /proc, as "PID COMMAND".
func groupMembers(pgid int) []string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[2] != strconv.Itoa(pgid) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, fmt.Sprintf("%d %s", pid, strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))))
	}
	return out
}

// recipeEnv returns the environment recipes run in: the test's, without AWS
// credentials and configuration (a recipe reaches only the simulators it
// starts), vSphere credentials, draas test hooks or this test's switch.
func recipeEnv(environ []string) []string {
	var env []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "DRAAS_VSPHERE_") ||
			strings.HasPrefix(k, "DRAAS_TEST_") || k == "DRAAS_RECIPES" || k == "TMPDIR" {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_EC2_METADATA_DISABLED=true",
	)
}

// scratchDir returns the fixed directory, under the user's cache directory
// and named after the repository's path, that the recipes run in, locked
// against another run of this test for the same repository. The path stays
// the same from run to run because the Go build cache keys compiled packages
// by their directory: a new place would rebuild the module each time.
func scratchDir(t *testing.T, root string) (dir string, unlock func()) {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	sum := sha256.Sum256([]byte(root))
	base := filepath.Join(cache, "draas-recipes", hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(base, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Logf("waiting for another run of the recipes of %s", root)
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("recipes run in %s (a copy of %s)", filepath.Join(base, "repo"), root)
	return filepath.Join(base, "repo"), func() { lock.Close() }
}

// copyRepo makes dst a fresh copy of the repository at root: the files git
// lists (tracked and untracked, not ignored), or, without git, every file
// but .git.
func copyRepo(root, dst string) error {
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	files, err := repoFiles(root)
	if err != nil {
		return err
	}
	for _, f := range files {
		src := filepath.Join(root, f)
		fi, err := os.Lstat(src)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			return err
		}
		to := filepath.Join(dst, f)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := copyFile(to, src, fi.Mode().Perm()); err != nil {
				return err
			}
		}
	}
	return nil
}

// repoFiles lists the repository's files relative to root.
func repoFiles(root string) ([]string, error) {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		var files []string
		for f := range strings.SplitSeq(strings.TrimRight(string(out), "\x00"), "\x00") {
			if f != "" {
				files = append(files, filepath.FromSlash(f))
			}
		}
		return files, nil
	}
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			files = append(files, rel)
		}
		return nil
	})
	return files, err
}

func copyFile(dst, src string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
