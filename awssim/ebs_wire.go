package awssim

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// This file holds the EBS direct APIs' wire format (restJson1): errors,
// timestamps and the opaque block and page tokens.

// EBS direct error codes and reasons, as the service model (ebs-2019-11-02)
// names them. The model has no reason for a checksum mismatch; the simulator
// reports one as INVALID_PARAMETER_VALUE, the reason AWS gives for block data
// it cannot accept.
const (
	ebsValidation = "ValidationException"       // 400
	ebsNotFound   = "ResourceNotFoundException" // 404
	ebsThrottled  = "RequestThrottledException" // 400
	ebsInternal   = "InternalServerException"   // 500
	ebsConflict   = "ConflictException"         // 409

	reasonInvalidParameter  = "INVALID_PARAMETER_VALUE"
	reasonInvalidSnapshotID = "INVALID_SNAPSHOT_ID"
	reasonInvalidBlock      = "INVALID_BLOCK"
	reasonInvalidBlockToken = "INVALID_BLOCK_TOKEN"
	reasonInvalidPageToken  = "INVALID_PAGE_TOKEN"
	reasonInvalidTag        = "INVALID_TAG"
	reasonInvalidVolumeSize = "INVALID_VOLUME_SIZE"
	reasonUnrelated         = "UNRELATED_SNAPSHOTS"
	reasonWriteTimeout      = "WRITE_REQUEST_TIMEOUT"
	reasonSnapshotNotFound  = "SNAPSHOT_NOT_FOUND"
	reasonAccountThrottled  = "ACCOUNT_THROTTLED"
)

// ebsError is an error response of the EBS direct APIs.
type ebsError struct {
	status int
	code   string // the shape name, sent as __type and X-Amzn-ErrorType
	reason string // optional Reason member
	msg    string
}

func (e *ebsError) Error() string { return e.code + ": " + e.msg }

func ebsInvalid(reason, format string, args ...any) *ebsError {
	return &ebsError{http.StatusBadRequest, ebsValidation, reason, fmt.Sprintf(format, args...)}
}

func snapshotNotFound(id string) *ebsError {
	return &ebsError{http.StatusNotFound, ebsNotFound, reasonSnapshotNotFound,
		fmt.Sprintf("The snapshot '%s' does not exist.", id)}
}

func faultError(kind faultKind) *ebsError {
	if kind == faultThrottle {
		return &ebsError{http.StatusBadRequest, ebsThrottled, reasonAccountThrottled, "Rate exceeded"}
	}
	return &ebsError{http.StatusInternalServerError, ebsInternal, "", "An internal error has occurred."}
}

// writeEBSError sends err the way the EBS direct APIs send errors: the status
// from the model, the shape name in X-Amzn-ErrorType and in the body's
// __type, and the members Message and Reason.
func writeEBSError(w http.ResponseWriter, err error) {
	e, ok := err.(*ebsError)
	if !ok {
		e = &ebsError{http.StatusInternalServerError, ebsInternal, "", err.Error()}
	}
	body := struct {
		Type    string `json:"__type"`
		Message string `json:"Message"`
		Reason  string `json:"Reason,omitempty"`
	}{e.code, e.msg, e.reason}
	w.Header().Set("X-Amzn-ErrorType", e.code)
	writeEBSJSON(w, e.status, body)
}

func writeEBSJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

func ebsRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// epochTime is a timestamp as restJson1 sends it by default: seconds since
// the Unix epoch, as a JSON number with millisecond precision.
type epochTime time.Time

func (t epochTime) MarshalJSON() ([]byte, error) {
	ms := time.Time(t).UnixMilli()
	return strconv.AppendFloat(nil, float64(ms)/1e3, 'f', -1, 64), nil
}

// ebsTag is the Tag structure of the EBS direct APIs.
type ebsTag struct {
	Key   string `json:"Key"`
	Value string `json:"Value"`
}

// Token lifetimes from the EBS direct APIs FAQ: block tokens are valid for
// seven days, page (next) tokens for 60 minutes.
const (
	blockTokenLifetime = 7 * 24 * time.Hour
	pageTokenLifetime  = 60 * time.Minute
)

// ebsState is what the EBS direct APIs keep beside the snapshots. Guarded by
// Server.mu.
type ebsState struct {
	tokens cipher.AEAD // seals block and page tokens; made on first use
}

// seal makes an opaque token of the given fields, encrypted and
// authenticated under a key of this server's, so a client can neither read
// nor forge one, and a token made for one snapshot, index or listing is
// rejected for another. Callers hold s.mu.
func (s *Server) seal(fields ...string) string {
	if s.ebs.tokens == nil {
		key := make([]byte, 32)
		rand.Read(key)
		block, _ := aes.NewCipher(key)
		s.ebs.tokens, _ = cipher.NewGCM(block)
	}
	nonce := make([]byte, s.ebs.tokens.NonceSize())
	rand.Read(nonce)
	sealed := s.ebs.tokens.Seal(nonce, nonce, []byte(strings.Join(fields, "\x00")), nil)
	return base64.StdEncoding.EncodeToString(sealed)
}

// unseal returns the fields of a token made by seal, or false if the token
// was not made by this server. Callers hold s.mu.
func (s *Server) unseal(token string) ([]string, bool) {
	raw, err := base64.StdEncoding.DecodeString(token)
	if err != nil || s.ebs.tokens == nil || len(raw) < s.ebs.tokens.NonceSize() {
		return nil, false
	}
	n := s.ebs.tokens.NonceSize()
	payload, err := s.ebs.tokens.Open(nil, raw[:n], raw[n:], nil)
	if err != nil {
		return nil, false
	}
	return strings.Split(string(payload), "\x00"), true
}

// blockToken returns the token that lets GetSnapshotBlock read block idx of
// snapshot id until expiry. Callers hold s.mu.
func (s *Server) blockToken(id string, idx int64, expiry time.Time) string {
	return s.seal("block", id, strconv.FormatInt(idx, 10), strconv.FormatInt(expiry.Unix(), 10))
}

// checkBlockToken reports whether token is a live block token for block idx
// of snapshot id. Callers hold s.mu.
func (s *Server) checkBlockToken(token, id string, idx int64) bool {
	f, ok := s.unseal(token)
	if !ok || len(f) != 4 || f[0] != "block" || f[1] != id || f[2] != strconv.FormatInt(idx, 10) {
		return false
	}
	exp, err := strconv.ParseInt(f[3], 10, 64)
	return err == nil && s.now().Unix() <= exp
}

// pageToken returns the NextToken of a listing (kind "list" or "changed" of
// the snapshots ids) that continues at block index next. Callers hold s.mu.
func (s *Server) pageToken(kind string, ids [2]string, next int64) string {
	exp := s.now().Add(pageTokenLifetime).Unix()
	return s.seal("page", kind, ids[0], ids[1], strconv.FormatInt(next, 10), strconv.FormatInt(exp, 10))
}

// checkPageToken returns the block index a NextToken continues at, or an
// INVALID_PAGE_TOKEN error if it belongs to another listing or expired.
// Callers hold s.mu.
func (s *Server) checkPageToken(token, kind string, ids [2]string) (int64, error) {
	bad := ebsInvalid(reasonInvalidPageToken, "The pagination token is invalid or has expired.")
	f, ok := s.unseal(token)
	if !ok || len(f) != 6 || f[0] != "page" || f[1] != kind || f[2] != ids[0] || f[3] != ids[1] {
		return 0, bad
	}
	next, err1 := strconv.ParseInt(f[4], 10, 64)
	exp, err2 := strconv.ParseInt(f[5], 10, 64)
	if err1 != nil || err2 != nil || s.now().Unix() > exp {
		return 0, bad
	}
	return next, nil
}

// linearChecksum is the LINEAR aggregation of per-block SHA-256 digests:
// SHA-256 over the raw digests concatenated in ascending block index order.
func linearChecksum(sums [][32]byte) [32]byte {
	var buf bytes.Buffer
	for _, s := range sums {
		buf.Write(s[:])
	}
	return sha256.Sum256(buf.Bytes())
}
