package awssim

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"maps"
	"net/http"
	"strings"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// The S3 side of the simulator is gofakes3 over its in-memory backend, with
// three corrections that make it answer as S3 does:
//
//   - a bucket must be created (CreateBucket, Options.Buckets or
//     Server.CreateBucket) before use; any other request for a missing
//     bucket gets NoSuchBucket (gofakes3's auto-bucket option would create
//     it silently);
//   - a PUT replaces the object's checksums: gofakes3 carries metadata that
//     a new PUT does not set over from the object it replaces, so an
//     overwritten object kept the old object's x-amz-checksum-crc32 and
//     failed the SDK's response validation on every read;
//   - a PUT whose x-amz-checksum-ALGORITHM header does not match its body
//     fails with BadDigest, as S3 does, instead of being stored.
//
// Faults (Server.Throttle and the others) apply to S3 operations too, named
// as in the S3 API ("GetObject", "PutObject", "ListObjectsV2", ...).

// s3ChecksumHeaders are the metadata keys (canonical header names) of the
// object checksums S3 keeps, with their algorithm.
var s3ChecksumHeaders = map[string]func() hash.Hash{
	"X-Amz-Checksum-Crc32":     func() hash.Hash { return crc32.NewIEEE() },
	"X-Amz-Checksum-Crc32c":    func() hash.Hash { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) },
	"X-Amz-Checksum-Crc64nvme": func() hash.Hash { return crc64.New(crc64.MakeTable(0x9a6c9329ac4bc9b5)) },
	"X-Amz-Checksum-Sha1":      sha1.New,
	"X-Amz-Checksum-Sha256":    sha256.New,
}

// s3ChecksumType is the metadata key of a checksum's type (FULL_OBJECT or
// COMPOSITE), replaced with the checksums.
const s3ChecksumType = "X-Amz-Checksum-Type"

// s3Backend is the in-memory backend with the corrections above. Embedding
// the concrete backend keeps its optional interfaces (versioning) visible to
// gofakes3.
type s3Backend struct {
	*s3mem.Backend
}

// PutObject verifies the checksums the request carries and stores the
// object with exactly those: every other checksum key gets an empty value,
// which stops gofakes3 carrying the replaced object's over and which the
// read methods drop.
func (b s3Backend) PutObject(bucket, key string, meta map[string]string, input io.Reader, size int64, cond *gofakes3.PutConditions) (gofakes3.PutObjectResult, error) {
	body, err := io.ReadAll(io.LimitReader(input, size+1))
	if err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	if int64(len(body)) != size {
		return gofakes3.PutObjectResult{}, gofakes3.ErrorMessagef(gofakes3.ErrIncompleteBody,
			"the body has %d bytes, not the %d its length says", len(body), size)
	}
	for name, newHash := range s3ChecksumHeaders {
		want, ok := meta[name]
		if !ok || want == "" {
			meta[name] = ""
			continue
		}
		h := newHash()
		h.Write(body)
		if got := base64.StdEncoding.EncodeToString(h.Sum(nil)); got != want {
			alg := strings.ToUpper(strings.TrimPrefix(name, "X-Amz-Checksum-"))
			return gofakes3.PutObjectResult{}, gofakes3.ErrorMessagef(gofakes3.ErrBadDigest,
				"The %s you specified did not match the calculated checksum.", alg)
		}
	}
	if _, ok := meta[s3ChecksumType]; !ok {
		meta[s3ChecksumType] = ""
	}
	return b.Backend.PutObject(bucket, key, meta, bytes.NewReader(body), size, cond)
}

func (b s3Backend) GetObject(bucket, key string, rng *gofakes3.ObjectRangeRequest) (*gofakes3.Object, error) {
	return cleanObject(b.Backend.GetObject(bucket, key, rng))
}

func (b s3Backend) HeadObject(bucket, key string) (*gofakes3.Object, error) {
	return cleanObject(b.Backend.HeadObject(bucket, key))
}

func (b s3Backend) GetObjectVersion(bucket, key string, v gofakes3.VersionID, rng *gofakes3.ObjectRangeRequest) (*gofakes3.Object, error) {
	return cleanObject(b.Backend.GetObjectVersion(bucket, key, v, rng))
}

func (b s3Backend) HeadObjectVersion(bucket, key string, v gofakes3.VersionID) (*gofakes3.Object, error) {
	return cleanObject(b.Backend.HeadObjectVersion(bucket, key, v))
}

// cleanObject drops the empty checksum keys PutObject stored, so that they
// are not sent as empty headers.
func cleanObject(obj *gofakes3.Object, err error) (*gofakes3.Object, error) {
	if obj == nil || err != nil {
		return obj, err
	}
	meta := maps.Clone(obj.Metadata)
	for k, v := range meta {
		if v == "" && strings.HasPrefix(k, "X-Amz-Checksum-") {
			delete(meta, k)
		}
	}
	o := *obj
	o.Metadata = meta
	return &o, nil
}

// CreateBucket creates an S3 bucket, as the CreateBucket call does; creating
// one that exists is no error. Buckets can also be made with
// Options.Buckets or through the S3 API.
func (s *Server) CreateBucket(name string) error {
	if ok, err := s.s3mem.BucketExists(name); err != nil || ok {
		return err
	}
	if err := gofakes3.ValidateBucketName(name); err != nil {
		return fmt.Errorf("awssim: bucket %q: %w", name, err)
	}
	err := s.s3mem.CreateBucket(name)
	if gofakes3.HasErrorCode(err, gofakes3.ErrBucketAlreadyExists) {
		return nil
	}
	return err
}

// serveS3 injects the configured faults into S3 requests, then passes them
// to gofakes3.
func (s *Server) serveS3(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := s.fault(s3Operation(r))
		if kind == faultNone {
			next.ServeHTTP(w, r)
			return
		}
		io.Copy(io.Discard, r.Body) // let the client finish sending before it reads the error
		code, status, msg := "InternalError", http.StatusInternalServerError, "We encountered an internal error. Please try again."
		if kind == faultThrottle {
			code, status, msg = "SlowDown", http.StatusServiceUnavailable, "Please reduce your request rate."
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
			`<Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource></Error>`,
			code, msg, r.URL.Path)
	})
}

// s3Operation names the S3 API operation of a path-style request. The SDK
// names most operations in the x-id query parameter; the rest are told by
// method, path and query.
func s3Operation(r *http.Request) string {
	q := r.URL.Query()
	if id := q.Get("x-id"); id != "" {
		return id
	}
	path := strings.Trim(r.URL.Path, "/")
	onBucket := path != "" && !strings.Contains(path, "/")
	switch {
	case path == "":
		return "ListBuckets"
	case onBucket && r.Method == http.MethodGet && q.Has("versioning"):
		return "GetBucketVersioning"
	case onBucket && r.Method == http.MethodPut && q.Has("versioning"):
		return "PutBucketVersioning"
	case onBucket && r.Method == http.MethodGet && q.Has("versions"):
		return "ListObjectVersions"
	case onBucket && r.Method == http.MethodGet && q.Has("uploads"):
		return "ListMultipartUploads"
	case onBucket && r.Method == http.MethodGet && q.Has("location"):
		return "GetBucketLocation"
	case onBucket && r.Method == http.MethodGet && q.Get("list-type") == "2":
		return "ListObjectsV2"
	case onBucket && r.Method == http.MethodGet:
		return "ListObjects"
	case onBucket && r.Method == http.MethodPut:
		return "CreateBucket"
	case onBucket && r.Method == http.MethodHead:
		return "HeadBucket"
	case onBucket && r.Method == http.MethodDelete:
		return "DeleteBucket"
	case onBucket && r.Method == http.MethodPost && q.Has("delete"):
		return "DeleteObjects"
	case r.Method == http.MethodHead:
		return "HeadObject"
	case r.Method == http.MethodGet && q.Has("uploadId"):
		return "ListParts"
	case r.Method == http.MethodGet:
		return "GetObject"
	case r.Method == http.MethodPut && q.Has("partNumber"):
		return "UploadPart"
	case r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "":
		return "CopyObject"
	case r.Method == http.MethodPut:
		return "PutObject"
	case r.Method == http.MethodPost && q.Has("uploads"):
		return "CreateMultipartUpload"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return "CompleteMultipartUpload"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	case r.Method == http.MethodDelete:
		return "DeleteObject"
	}
	return r.Method + "Object"
}
