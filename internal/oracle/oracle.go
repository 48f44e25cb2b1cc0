// Package oracle finds and starts the external programs that draas's tests
// compare against (qemu-img, moto_server, BIND's named, Chromium): oracles
// nobody here wrote.
//
// The rule for a missing oracle is the same in every test: the test skips,
// saying how to install it, unless the environment variable
// DRAAS_REQUIRE_ORACLES is 1 (as in CI), when it fails.
package oracle

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// RequireEnv is the environment variable that makes a missing oracle fail
// the test instead of skipping it, when set to 1.
const RequireEnv = "DRAAS_REQUIRE_ORACLES"

// Required reports whether DRAAS_REQUIRE_ORACLES=1: a missing oracle fails.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Require returns the path of the program name, or of the first of
// alternatives found (other names, or absolute paths such as
// /usr/sbin/named). When none is found it skips the test, saying install
// (how to install it), or fails it when DRAAS_REQUIRE_ORACLES=1.
func Require(t testing.TB, name, install string, alternatives ...string) string {
	t.Helper()
	if p, ok := find(name, alternatives); ok {
		return p
	}
	Missing(t, fmt.Sprintf("%s not found: %s", name, install))
	return ""
}

// Missing skips the test because an oracle is missing, with msg saying
// which and how to install it, or fails it when DRAAS_REQUIRE_ORACLES=1.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s (%s=1 makes a missing oracle a failure)", msg, RequireEnv)
	}
	t.Skip(msg)
}

// Optional is [Require] for a test that runs without the oracle but checks
// more with it: when the program is missing it logs how to install it and
// returns false, or fails the test when DRAAS_REQUIRE_ORACLES=1.
func Optional(t testing.TB, name, install string, alternatives ...string) (string, bool) {
	t.Helper()
	if p, ok := find(name, alternatives); ok {
		return p, true
	}
	msg := fmt.Sprintf("%s not found: %s", name, install)
	if Required() {
		t.Fatalf("%s (%s=1 makes a missing oracle a failure)", msg, RequireEnv)
	}
	t.Logf("%s; the checks that need it are left out", msg)
	return "", false
}

func find(name string, alternatives []string) (string, bool) {
	for _, n := range append([]string{name}, alternatives...) {
		if p, err := exec.LookPath(n); err == nil {
			return p, true
		}
	}
	return "", false
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// MotoInstall says how to install moto_server.
const MotoInstall = "install it with: pip install 'moto[server]'"

// StartMoto runs moto_server, an AWS emulator, on a free loopback port until
// the test ends and returns its URL. env is added to its environment (for
// example MOTO_AMIS_PATH=...). Without moto_server the test skips, or fails
// when DRAAS_REQUIRE_ORACLES=1. When the test fails, moto_server's output is
// logged.
func StartMoto(t testing.TB, env ...string) string {
	t.Helper()
	bin := Require(t, "moto_server", MotoInstall)
	port := FreePort(t)
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	cmd.Env = append(os.Environ(), env...)
	out := new(Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start moto_server: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("moto_server output:\n%s", out)
		}
	})

	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	probe := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := probe.Get(url + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return url
		}
		select {
		case err := <-exited:
			t.Fatalf("moto_server exited: %v\n%s", err, out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("moto_server did not answer on %s within 30s: %v\n%s", url, err, out)
		}
	}
}

// Buffer is a bytes.Buffer safe for the writes of a child process's output
// and the test's reads: an oracle's Stdout and Stderr.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
