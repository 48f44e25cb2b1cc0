package rfc2136_test

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/dns/rfc2136"
	"github.com/opendraas/draas/draastest"
	"github.com/opendraas/draas/internal/oracle"
)

// named is a BIND 9 server that a test started.
type named struct {
	addr, zone, key, secret string
}

// startNamed runs BIND's named on a free loopback port, serving zone
// draas.test. with updates allowed for TSIG key draas-key (hmac-sha256,
// random secret), until the test ends. It skips the test when named is not
// installed, unless DRAAS_REQUIRE_ORACLES=1, when it fails.
func startNamed(t *testing.T) *named {
	t.Helper()
	bin := oracle.Require(t, "named", "BIND 9 is not on PATH or in /usr/sbin; install it with: bash .ci/dns-server.sh (apt-get install -y bind9)", "/usr/sbin/named")
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	n := &named{zone: "draas.test.", key: "draas-key", secret: base64.StdEncoding.EncodeToString(raw)}
	dir := t.TempDir()
	zoneFile := "$TTL 3600\n" +
		"@ IN SOA ns1.draas.test. hostmaster.draas.test. 1 3600 600 86400 60\n" +
		"@ IN NS ns1.draas.test.\n" +
		"ns1 IN A 127.0.0.1\n"
	if err := os.WriteFile(filepath.Join(dir, "draas.test.zone"), []byte(zoneFile), 0o644); err != nil {
		t.Fatal(err)
	}
	// A port may be taken between the probe and named's bind: try a few.
	for attempt := 0; ; attempt++ {
		port := freePort(t)
		conf := fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	session-keyfile "%[1]s/session.key";
	managed-keys-directory "%[1]s";
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
	allow-transfer { none; };
};
controls { };
key "%[3]s" { algorithm hmac-sha256; secret "%[4]s"; };
zone "draas.test." { type primary; file "%[1]s/draas.test.zone"; allow-update { key "%[3]s"; }; };
`, dir, port, n.key, n.secret)
		confPath := filepath.Join(dir, "named.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		// -g: foreground, log to stderr; -4: IPv4 only; -n 1: one worker.
		cmd := exec.Command(bin, "-g", "-4", "-n", "1", "-c", confPath)
		out := &oracle.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", bin, err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			_ = cmd.Process.Kill()
			<-exited
		}
		n.addr = fmt.Sprintf("127.0.0.1:%d", port)
		if err := waitForSOA(n.addr, n.zone, exited); err == nil {
			t.Cleanup(stop)
			return n
		} else if attempt == 2 {
			stop()
			t.Fatalf("named did not serve %s on %s: %v\nnamed's log:\n%s", n.zone, n.addr, err, out)
		}
		stop()
	}
}

// freePort returns a loopback port that is free for UDP and TCP now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 10 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		pc.Close()
		if err == nil {
			l.Close()
			return pc.LocalAddr().(*net.UDPAddr).Port
		}
	}
	t.Fatal("no loopback port free for both UDP and TCP")
	return 0
}

// waitForSOA queries addr for zone's SOA until it answers authoritatively
// or named exits.
func waitForSOA(addr, zone string, exited <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	m := new(dns.Msg)
	m.SetQuestion(zone, dns.TypeSOA)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	for {
		r, _, err := c.Exchange(m, addr)
		if err == nil && r.Rcode == dns.RcodeSuccess && r.Authoritative {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("answer %s", dns.RcodeToString[r.Rcode])
		}
		select {
		case <-exited:
			return errors.New("named exited")
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBIND runs the conformance suite and the failure cases against a real
// BIND 9 server.
func TestBIND(t *testing.T) {
	n := startNamed(t)
	client := signer{n.addr, n.key, n.secret}.client
	t.Run("Conformance", func(t *testing.T) {
		c := client(t, rfc2136.Options{})
		draastest.TestDNS(t, func(t *testing.T) (draas.DNS, string) { return c, n.zone })
	})
	t.Run("ConformanceTCP", func(t *testing.T) {
		c := client(t, rfc2136.Options{Net: "tcp"})
		draastest.TestDNS(t, func(t *testing.T) (draas.DNS, string) { return c, n.zone })
	})

	rec := draas.Record{Zone: n.zone, Name: "db.draas.test.", Type: "A", TTL: time.Minute, Values: []string{"10.0.0.1"}}
	testTSIGFailures(t, signer{n.addr, n.key, n.secret}, rec)
	t.Run("OtherZone", func(t *testing.T) {
		r := rec
		r.Zone, r.Name = "example.org.", "db.example.org."
		err := upsertErr(t, client(t, rfc2136.Options{}), r)
		wantServerError(t, err, draas.ErrInvalid, dns.RcodeNotAuth, 0, "example.org.")
		_, err = client(t, rfc2136.Options{}).Lookup(t.Context(), r.Zone, r.Name, "A")
		wantServerError(t, err, draas.ErrInvalid, dns.RcodeRefused, 0, "example.org.")
	})
	t.Run("CNAMEConflict", func(t *testing.T) {
		c := client(t, rfc2136.Options{})
		a := draas.Record{Zone: n.zone, Name: "web.draas.test.", Type: "A", TTL: time.Minute, Values: []string{"10.0.0.1"}}
		cname := draas.Record{Zone: n.zone, Name: a.Name, Type: "CNAME", TTL: time.Minute, Values: []string{"lb.example.net."}}
		if err := c.Upsert(t.Context(), a); err != nil {
			t.Fatal(err)
		}
		wantServerError(t, upsertErr(t, c, cname), draas.ErrConflict, dns.RcodeYXRrset, 0, "web.draas.test.")
		if err := c.Delete(t.Context(), a); err != nil {
			t.Fatal(err)
		}
		if err := c.Upsert(t.Context(), cname); err != nil {
			t.Fatal(err)
		}
		wantServerError(t, upsertErr(t, c, a), draas.ErrConflict, dns.RcodeYXRrset, 0, "CNAME")
		if err := c.Delete(t.Context(), cname); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Large", func(t *testing.T) {
		// 100 addresses: the update is too large for UDP, and so is the
		// answer, which BIND truncates; both go over TCP.
		c := client(t, rfc2136.Options{})
		r := draas.Record{Zone: n.zone, Name: "many.draas.test.", Type: "A", TTL: time.Minute}
		for i := range 100 {
			r.Values = append(r.Values, fmt.Sprintf("10.0.2.%d", i))
		}
		if err := c.Upsert(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		got, err := c.Lookup(t.Context(), n.zone, r.Name, "A")
		if err != nil || len(got.Values) != 100 {
			t.Fatalf("Lookup of 100 addresses: %d values, %v", len(got.Values), err)
		}
		// Check that the answer is indeed truncated over UDP, so the
		// Lookup above fell back to TCP.
		m := new(dns.Msg)
		m.SetQuestion(r.Name, dns.TypeA)
		m.SetEdns0(1232, false)
		if a, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, n.addr); err != nil || !a.Truncated {
			t.Errorf("BIND's UDP answer with 100 addresses is not truncated (%v); the TCP fallback went untested", err)
		}
		if err := c.Delete(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	})
}
