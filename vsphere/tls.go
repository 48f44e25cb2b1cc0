package vsphere

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/opendraas/draas"
)

// CertificateError reports a vCenter or ESXi certificate that [Dial] did not
// trust: one whose thumbprint differs from Options.Thumbprint, or, without a
// pinned thumbprint, one that no trusted CA signed. It carries the
// thumbprints of the certificate the server presented, so that an operator
// can compare them with what vCenter shows (Administration > Certificates,
// or the ESXi host's DCUI) before pinning.
type CertificateError struct {
	// Host is the server's host:port.
	Host string
	// Pinned is the thumbprint Options.Thumbprint asked for, normalised; it
	// is empty when none was pinned.
	Pinned string
	// SHA256 and SHA1 are the thumbprints of the certificate the server
	// presented, as vCenter shows them (upper-case hex pairs joined by
	// colons). They are empty when the server presented no certificate.
	SHA256, SHA1 string
	// Err is the certificate verification error, when there was one.
	Err error
}

func (e *CertificateError) Error() string {
	if e.Pinned != "" {
		return fmt.Sprintf("the certificate of %s has SHA-256 thumbprint %s (SHA-1 %s), not the pinned Options.Thumbprint %s; "+
			"if the certificate was replaced, check the new thumbprint in vCenter and update Options.Thumbprint",
			e.Host, e.SHA256, e.SHA1, e.Pinned)
	}
	msg := fmt.Sprintf("the certificate of %s is not trusted", e.Host)
	if e.Err != nil {
		msg += " (" + e.Err.Error() + ")"
	}
	msg += "; set Options.RootCAs to the CA that signed it (the VMCA root for a default vCenter)"
	if e.SHA256 != "" {
		msg += ", or, after checking out of band that it is the server's, pin it with Options.Thumbprint " + e.SHA256
	}
	return msg
}

// Unwrap returns the verification error, if any.
func (e *CertificateError) Unwrap() []error {
	if e.Err == nil {
		return nil
	}
	return []error{e.Err}
}

// thumbprints returns the SHA-256 and SHA-1 thumbprints of a certificate in
// vCenter's notation.
func thumbprints(cert *x509.Certificate) (sha256Hex, sha1Hex string) {
	s256 := sha256.Sum256(cert.Raw)
	s1 := sha1.Sum(cert.Raw)
	return colonHex(s256[:]), colonHex(s1[:])
}

func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":")
}

// parseThumbprint decodes a certificate thumbprint as vCenter, ESXi, govc or
// openssl print it: hex, in either case, with or without colons or spaces,
// SHA-256 (32 bytes) or SHA-1 (20 bytes).
func parseThumbprint(s string) ([]byte, error) {
	clean := strings.NewReplacer(":", "", " ", "", "-", "").Replace(strings.TrimSpace(s))
	b, err := hex.DecodeString(clean)
	if err != nil || (len(b) != sha256.Size && len(b) != sha1.Size) {
		return nil, draas.Invalidf("vsphere: Options.Thumbprint %q is not a SHA-256 or SHA-1 certificate thumbprint; "+
			"copy it as vCenter shows it, e.g. AB:CD:…:EF (32 hex pairs for SHA-256, 20 for SHA-1)", s)
	}
	return b, nil
}

// pinTLS makes cfg accept exactly the certificate whose thumbprint is pin
// (SHA-256 or SHA-1) instead of verifying a CA chain: a mismatch fails the
// handshake with a *CertificateError.
func pinTLS(cfg *tls.Config, pin []byte) {
	cfg.InsecureSkipVerify = true // replaced by the pin check below
	pinned := colonHex(pin)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &CertificateError{Host: cs.ServerName, Pinned: pinned, Err: errors.New("the server presented no certificate")}
		}
		leaf := cs.PeerCertificates[0]
		var sum []byte
		if len(pin) == sha256.Size {
			s := sha256.Sum256(leaf.Raw)
			sum = s[:]
		} else {
			s := sha1.Sum(leaf.Raw)
			sum = s[:]
		}
		if subtle.ConstantTimeCompare(sum, pin) == 1 {
			return nil
		}
		e := &CertificateError{Host: cs.ServerName, Pinned: pinned}
		e.SHA256, e.SHA1 = thumbprints(leaf)
		return e
	}
}

// certificateError turns a TLS verification failure inside err into a
// *CertificateError naming host and the thumbprints of the certificate the
// server presented; other errors are returned unchanged.
func certificateError(host string, err error) error {
	var ce *CertificateError
	if errors.As(err, &ce) {
		if ce.Host == "" || !strings.Contains(ce.Host, ":") {
			ce.Host = host
		}
		return ce
	}
	var cert *x509.Certificate
	var verr *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var he x509.HostnameError
	var ie x509.CertificateInvalidError
	switch {
	case errors.As(err, &verr):
		if len(verr.UnverifiedCertificates) > 0 {
			cert = verr.UnverifiedCertificates[0]
		}
	case errors.As(err, &uae):
		cert = uae.Cert
	case errors.As(err, &he):
		cert = he.Certificate
	case errors.As(err, &ie):
		cert = ie.Cert
	default:
		return err
	}
	e := &CertificateError{Host: host, Err: err}
	if verr != nil {
		e.Err = verr.Err
	}
	if cert != nil {
		e.SHA256, e.SHA1 = thumbprints(cert)
	}
	return e
}
