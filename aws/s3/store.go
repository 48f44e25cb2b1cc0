// Package s3 is the draas backup store: recovery points of virtual machines
// kept in an S3 bucket as content-addressed chunks and JSON manifests.
//
// A [Store] is a draas.BackupStore. It writes a recovery point of a VM with
// [Store.BeginPoint], which returns a [PointWriter]: each
// disk is written through a [Sink] (a draas.VolumeSink), which uploads every
// 512 KiB block that is not all zeros as a chunk named by the SHA-256 of its
// bytes, once, and on Commit writes the disk's manifest. [PointWriter.Commit]
// then writes the point's record, the atomic commit: a point without it does
// not exist for readers, so a multi-disk point is complete or absent.
// Incremental backups upload only chunks that the previous point of the VM
// does not already hold.
//
// Points are read with [Store.OpenDisk], which returns a *[Source] (a
// draas.BlockSource that also lists its allocated extents, reports the
// changes since an earlier point from the two manifests alone, and hands out
// the recorded SHA-256 of each block). Every chunk read is verified against
// its name.
//
// [Store.Prune] deletes old points and [Store.GC] deletes chunks no
// committed point references once they are older than a grace period.
//
// The object layout, the JSON formats and the rules that make concurrent
// backups, pruning and garbage collection safe are specified in
// docs/backup-store.md, so that another implementation can read and write
// the same store.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/klauspost/compress/zstd"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/internal/awserr"
	"github.com/opendraas/draas/retry"
)

// BlockSize is the size of the blocks a [Sink] accepts and of the chunks the
// store keeps (the last block of a disk whose size is not a multiple of it
// is shorter).
const BlockSize = 512 << 10

// DefaultGrace is the grace period used when [Options].Grace is zero.
const DefaultGrace = 24 * time.Hour

// API is the subset of the S3 client that a [Store] uses. *awss3.Client
// implements it; wrap it to add metrics, logging or fault injection.
type API interface {
	awss3.ListObjectsV2APIClient
	PutObject(ctx context.Context, in *awss3.PutObjectInput, optFns ...func(*awss3.Options)) (*awss3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *awss3.GetObjectInput, optFns ...func(*awss3.Options)) (*awss3.GetObjectOutput, error)
	HeadObject(ctx context.Context, in *awss3.HeadObjectInput, optFns ...func(*awss3.Options)) (*awss3.HeadObjectOutput, error)
	DeleteObject(ctx context.Context, in *awss3.DeleteObjectInput, optFns ...func(*awss3.Options)) (*awss3.DeleteObjectOutput, error)
	DeleteObjects(ctx context.Context, in *awss3.DeleteObjectsInput, optFns ...func(*awss3.Options)) (*awss3.DeleteObjectsOutput, error)
}

var _ API = (*awss3.Client)(nil)

var (
	_ draas.BackupStore = (*Store)(nil)
	_ draas.PointWriter = (*PointWriter)(nil)
)

// Encryption selects the server-side encryption the store requests for the
// objects it writes.
type Encryption int

const (
	// EncryptionDefault requests nothing: the bucket's default encryption
	// applies (SSE-S3 on every bucket created since 2023).
	EncryptionDefault Encryption = iota
	// EncryptionS3 requests SSE-S3 (AES256, keys managed by S3).
	EncryptionS3
	// EncryptionKMS requests SSE-KMS with Options.KMSKeyID, or with the
	// account's aws/s3 key when KMSKeyID is empty.
	EncryptionKMS
)

// Compression selects how chunks are compressed. A chunk that does not get
// smaller is stored uncompressed whatever the setting.
type Compression int

const (
	// CompressionDefault is zstd at its default level.
	CompressionDefault Compression = iota
	// CompressionNone stores chunks uncompressed.
	CompressionNone
	// CompressionFastest is zstd at its fastest level.
	CompressionFastest
	// CompressionBetter is zstd at a better ratio for more CPU.
	CompressionBetter
	// CompressionBest is zstd at its best ratio, slowest.
	CompressionBest
)

// Options tunes a [Store]. The zero value is useful: the bucket's default
// encryption, zstd at its default level, 8 parallel metadata requests, a
// 24-hour grace period, the real clock and the default retry policy for
// interrupted downloads.
type Options struct {
	// Encryption is the server-side encryption requested for every object
	// written (chunks, manifests, point records).
	Encryption Encryption
	// KMSKeyID is the KMS key (ID, ARN or alias) for EncryptionKMS. Setting
	// it with another Encryption is an error.
	KMSKeyID string
	// Compression is the chunk compression.
	Compression Compression
	// Concurrency bounds the store's own parallel requests (loading point
	// records, deleting objects, GC checks) and sizes the compressor's pool;
	// 0 means 8. Block uploads and downloads run at the caller's
	// concurrency (for example blockcopy's).
	Concurrency int
	// Grace is how long an unreferenced chunk or an uncommitted manifest is
	// left alone because a backup still running may need it; 0 means
	// [DefaultGrace]. A backup must commit within Grace/2 of BeginPoint for
	// a concurrent GC to be safe (see docs/backup-store.md). GCOptions.Grace
	// overrides it for one GC.
	Grace time.Duration
	// Clock returns the current time; nil means time.Now. It dates points
	// begun with a zero time and ages objects against their S3 LastModified
	// time for the grace period.
	Clock func() time.Time
	// Retry retries what the S3 client's own retryer cannot: a download
	// whose response body broke off after the response had started
	// (connection reset, short body). Request-level failures (throttling,
	// 5xx, resets before a response) are retried by the client's retryer,
	// configured on the client (config.WithRetryer), and are not retried a
	// second time here; after that they come back as errors wrapping
	// draas.ErrThrottled or draas.ErrTransient for the caller (for example
	// blockcopy) to retry the whole operation. Setting Retry.Retryable
	// replaces this classification.
	Retry retry.Policy
}

// Store is a backup store in an S3 bucket under a key prefix. It is safe for
// concurrent use. It holds no state of its own beyond its configuration:
// every answer comes from the bucket.
type Store struct {
	api    API
	bucket string
	pfx    string // "" or the prefix followed by "/"
	opts   Options
	err    error // configuration error, returned by every method

	enc   *zstd.Encoder // nil when compression is off
	dec   *zstd.Decoder
	bufs  sync.Pool // *[]byte of capacity BlockSize+2, for chunk objects
	retry retry.Policy
}

// New returns a store of recovery points kept in bucket under prefix (which
// may be empty; leading and trailing slashes are ignored). client is usually
// an *awss3.Client.
//
// New does not fail: an invalid configuration (an empty bucket, a prefix
// with "." or ".." segments, a KMS key without EncryptionKMS) makes every
// method return an error wrapping draas.ErrInvalid that names the problem.
// New makes no request; a missing bucket surfaces on first use, as an error
// wrapping draas.ErrNotFound that says "no bucket NAME" and wraps the
// client's error (a smithy.APIError whose code is NoSuchBucket).
func New(client API, bucket, prefix string, opts Options) *Store {
	s := &Store{api: client, bucket: bucket, opts: opts}
	if s.opts.Concurrency <= 0 {
		s.opts.Concurrency = 8
	}
	if s.opts.Grace <= 0 {
		s.opts.Grace = DefaultGrace
	}
	if s.opts.Clock == nil {
		s.opts.Clock = time.Now
	}
	s.retry = opts.Retry
	if s.retry.Retryable == nil {
		s.retry.Retryable = isBodyReadError
	}
	s.bufs.New = func() any { b := make([]byte, 0, BlockSize+2); return &b }
	s.err = s.configure(prefix)
	return s
}

func (s *Store) configure(prefix string) error {
	if s.api == nil {
		return draas.Invalidf("s3 store: client is nil; pass an *s3.Client (s3.NewFromConfig)")
	}
	if s.bucket == "" {
		return draas.Invalidf("s3 store: bucket name is empty; pass the bucket that holds the backups")
	}
	if strings.ContainsAny(s.bucket, "/ ") {
		return draas.Invalidf("s3 store: bucket %q contains '/' or a space; pass a bare bucket name and put folders in the prefix", s.bucket)
	}
	p := strings.Trim(prefix, "/")
	if p != "" {
		for _, seg := range strings.Split(p, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return draas.Invalidf("s3 store: prefix %q has an empty, '.' or '..' segment; use plain folder names such as \"backups/site-a\"", prefix)
			}
			for _, r := range seg {
				if r < 0x20 || r == 0x7f {
					return draas.Invalidf("s3 store: prefix %q contains a control character; use printable folder names", prefix)
				}
			}
		}
		s.pfx = p + "/"
	}
	switch s.opts.Encryption {
	case EncryptionDefault, EncryptionS3:
		if s.opts.KMSKeyID != "" {
			return draas.Invalidf("s3 store: Options.KMSKeyID is set but Options.Encryption is not EncryptionKMS; set Encryption: s3.EncryptionKMS or clear the key")
		}
	case EncryptionKMS:
	default:
		return draas.Invalidf("s3 store: unknown Options.Encryption %d; use EncryptionDefault, EncryptionS3 or EncryptionKMS", s.opts.Encryption)
	}
	var level zstd.EncoderLevel
	switch s.opts.Compression {
	case CompressionNone:
	case CompressionDefault:
		level = zstd.SpeedDefault
	case CompressionFastest:
		level = zstd.SpeedFastest
	case CompressionBetter:
		level = zstd.SpeedBetterCompression
	case CompressionBest:
		level = zstd.SpeedBestCompression
	default:
		return draas.Invalidf("s3 store: unknown Options.Compression %d; use one of the Compression constants", s.opts.Compression)
	}
	if level != 0 {
		enc, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(level),
			zstd.WithEncoderConcurrency(s.opts.Concurrency),
			zstd.WithWindowSize(BlockSize),
			zstd.WithLowerEncoderMem(true))
		if err != nil {
			return fmt.Errorf("s3 store: zstd encoder: %w", err)
		}
		s.enc = enc
	}
	// The decoder is needed even without compression: chunks written with
	// another setting must stay readable.
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(s.opts.Concurrency),
		zstd.WithDecoderMaxMemory(2*BlockSize),
		zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		return fmt.Errorf("s3 store: zstd decoder: %w", err)
	}
	s.dec = dec
	return nil
}

// Bucket returns the store's bucket.
func (s *Store) Bucket() string { return s.bucket }

// Prefix returns the store's key prefix without a trailing slash ("" for
// the bucket's root).
func (s *Store) Prefix() string { return strings.TrimSuffix(s.pfx, "/") }

func (s *Store) now() time.Time { return s.opts.Clock() }

// ---- keys -------------------------------------------------------------

const (
	chunksDir    = "chunks/"
	vmsDir       = "vms/"
	pointsDir    = "/points/"
	pointFile    = "point.json"
	pendingFile  = "pending.json"
	disksDir     = "disks/"
	manifestExt  = ".json"
	maxNameBytes = 128
)

func (s *Store) chunkKey(sum [32]byte) string {
	h := fmt.Sprintf("%x", sum)
	return s.pfx + chunksDir + h[:2] + "/" + h
}

func (s *Store) vmPointsPrefix(vm string) string { return s.pfx + vmsDir + vm + pointsDir }

func (s *Store) pointDir(vm, id string) string { return s.vmPointsPrefix(vm) + id + "/" }

func (s *Store) pointKey(vm, id string) string { return s.pointDir(vm, id) + pointFile }

func (s *Store) pendingKey(vm, id string) string { return s.pointDir(vm, id) + pendingFile }

func (s *Store) manifestKey(vm, id, disk string) string {
	return s.pointDir(vm, id) + disksDir + disk + manifestExt
}

// validName checks a VM, disk or point name: it becomes one component of an
// object key.
func validName(field, name string) error {
	const rule = "use 1-128 letters, digits, '.', '_' or '-', not starting with '.'"
	if name == "" {
		return draas.Invalidf("%s name is empty; %s", field, rule)
	}
	if len(name) > maxNameBytes {
		return draas.Invalidf("%s name %q is %d bytes long; %s", field, name, len(name), rule)
	}
	if name[0] == '.' {
		return draas.Invalidf("%s name %q starts with '.'; %s", field, name, rule)
	}
	for i, r := range name {
		if !nameRune(r) {
			return draas.Invalidf("%s name %q has %q at byte %d, which cannot be part of an object key here; %s, e.g. %q",
				field, name, r, i, rule, suggestName(name))
		}
	}
	return nil
}

func nameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

func suggestName(name string) string {
	var b strings.Builder
	for _, r := range name {
		if nameRune(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return strings.TrimLeft(b.String(), ".")
}

// ---- errors -------------------------------------------------------------

// opErr wraps an S3 error as a draas.OpError whose Kind is the sentinel the
// error maps to (ErrNotFound, ErrThrottled, ErrTransient, ErrConflict).
func opErr(op, resource string, err error) error {
	if err == nil {
		return nil
	}
	var oe *draas.OpError
	if errors.As(err, &oe) && oe.Op == op && oe.Resource == resource {
		return err
	}
	return &draas.OpError{Op: op, Resource: resource, Kind: classify(err), Err: err}
}

// opErr is opErr for a request to the store's bucket: a missing bucket is
// said in so many words, so that a mistyped bucket name is not taken for an
// empty store ("no recovery point") or a missing object.
func (s *Store) opErr(op, resource string, err error) error {
	// Only some operations model NoSuchBucket as *types.NoSuchBucket
	// (ListObjectsV2 does, GetObject does not): go by the error code.
	var ae smithy.APIError
	if err != nil && errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket" {
		return &draas.OpError{Op: op, Resource: resource, Kind: draas.ErrNotFound,
			Err: &noBucketError{Bucket: s.bucket, Err: err}}
	}
	return opErr(op, resource, err)
}

// noBucketError is the cause of an error for a bucket that does not exist.
// It wraps the S3 client's error (a smithy.APIError with the code
// NoSuchBucket).
type noBucketError struct {
	Bucket string
	Err    error
}

func (e *noBucketError) Error() string {
	return fmt.Sprintf("no bucket %s: check the bucket name (and the region), or create the bucket: %v", e.Bucket, e.Err)
}

func (e *noBucketError) Unwrap() error { return e.Err }

// classify maps an S3 client error to a draas sentinel, or nil. S3's own
// meanings come first (503 is SlowDown, 412 a failed If-None-Match), then
// the mapping shared by draas's AWS packages.
func classify(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	var (
		nsk *types.NoSuchKey
		nf  *types.NotFound
		nsb *types.NoSuchBucket
	)
	if errors.As(err, &nsk) || errors.As(err, &nf) || errors.As(err, &nsb) {
		return draas.ErrNotFound
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case 503:
			return draas.ErrThrottled
		case 409, 412:
			return draas.ErrConflict
		}
	}
	if k := awserr.Kind(err); k != nil {
		return k
	}
	if awsretry.IsErrorRetryables(awsretry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary ||
		errors.Is(err, io.ErrUnexpectedEOF) {
		return draas.ErrTransient
	}
	return nil
}

// bodyReadError marks a download whose body broke off: the one failure the
// store retries itself (see Options.Retry).
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "reading response body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

func isBodyReadError(err error) bool {
	var be *bodyReadError
	return errors.As(err, &be)
}

// ---- object I/O -----------------------------------------------------------

// objInfo is what a listing or a HEAD tells of an object.
type objInfo struct {
	Key          string
	LastModified time.Time
	Size         int64
	ETag         string
}

// list calls fn for every object whose key starts with prefix, in key order.
func (s *Store) list(ctx context.Context, prefix string, fn func(objInfo) error) error {
	p := awss3.NewListObjectsV2Paginator(s.api, &awss3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return s.opErr("ListObjectsV2", "s3://"+s.bucket+"/"+prefix, err)
		}
		for _, o := range page.Contents {
			oi := objInfo{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), ETag: aws.ToString(o.ETag)}
			if o.LastModified != nil {
				oi.LastModified = *o.LastModified
			}
			if err := fn(oi); err != nil {
				return err
			}
		}
	}
	return nil
}

// get downloads an object into buf (grown as needed) and returns it (also
// on error, so that the caller can reuse the buffer). An
// object longer than limit bytes fails with ErrChecksumMismatch: it cannot
// be what the store wrote; so does one whose complete body fails the S3
// client's checksum validation, naming the object, without a retry. A body
// that breaks off is retried under the store's policy.
func (s *Store) get(ctx context.Context, op, resource, key string, buf []byte, limit int64) ([]byte, error) {
	var out []byte
	_, err := s.retry.Do(ctx, func(ctx context.Context) error {
		resp, err := s.api.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
		if err != nil {
			return s.opErr(op, resource, err)
		}
		defer resp.Body.Close()
		b, over, err := readAll(resp.Body, buf[:0], limit)
		out = b
		n := int64(len(b))
		if err != nil && resp.ContentLength != nil && n == *resp.ContentLength {
			// The whole body arrived and the reader still failed: that is the
			// client's own integrity check (the SDK validates the checksum S3
			// stored with the object when it reaches the end of the body),
			// not the connection. Reading again gets the same bytes.
			return &draas.OpError{Op: op, Resource: resource, Kind: draas.ErrChecksumMismatch,
				Err: fmt.Errorf("object s3://%s/%s does not match the checksum S3 keeps for it (it was replaced or damaged in the bucket): %w", s.bucket, key, err)}
		}
		if err != nil {
			return &draas.OpError{Op: op, Resource: resource, Kind: draas.ErrTransient, Err: &bodyReadError{err}}
		}
		if over {
			return &draas.OpError{Op: op, Resource: resource, Kind: draas.ErrChecksumMismatch,
				Err: fmt.Errorf("object s3://%s/%s is larger than the %d bytes it can be", s.bucket, key, limit)}
		}
		if resp.ContentLength != nil && *resp.ContentLength != n {
			return &draas.OpError{Op: op, Resource: resource, Kind: draas.ErrTransient,
				Err: &bodyReadError{fmt.Errorf("got %d of %d bytes: %w", n, *resp.ContentLength, io.ErrUnexpectedEOF)}}
		}
		return nil
	})
	return out, err
}

// readAll reads r to its end into buf, growing it as needed. It stops early
// with over set when r holds more than limit bytes.
func readAll(r io.Reader, buf []byte, limit int64) (b []byte, over bool, err error) {
	b = buf[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > limit {
			return b, true, nil
		}
		if err == io.EOF {
			return b, false, nil
		}
		if err != nil {
			return b, false, err
		}
	}
}

// head returns the object's metadata, or an error wrapping ErrNotFound.
func (s *Store) head(ctx context.Context, op, resource, key string) (objInfo, error) {
	out, err := s.api.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		return objInfo{}, s.opErr(op, resource, err)
	}
	oi := objInfo{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: aws.ToString(out.ETag)}
	if out.LastModified != nil {
		oi.LastModified = *out.LastModified
	}
	return oi, nil
}

// put uploads data. With ifNoneMatch the write fails with an error wrapping
// ErrConflict when the key exists.
func (s *Store) put(ctx context.Context, op, resource, key string, data []byte, contentType string, ifNoneMatch bool) error {
	in := &awss3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String(contentType),
	}
	if ifNoneMatch {
		in.IfNoneMatch = aws.String("*")
	}
	switch s.opts.Encryption {
	case EncryptionS3:
		in.ServerSideEncryption = types.ServerSideEncryptionAes256
	case EncryptionKMS:
		in.ServerSideEncryption = types.ServerSideEncryptionAwsKms
		if s.opts.KMSKeyID != "" {
			in.SSEKMSKeyId = aws.String(s.opts.KMSKeyID)
		}
	}
	_, err := s.api.PutObject(ctx, in)
	return s.opErr(op, resource, err)
}

// deleteKeys deletes keys in batches of up to 1000, a missing key being no
// error. It returns how many keys it deleted.
func (s *Store) deleteKeys(ctx context.Context, op string, keys []string) (int, error) {
	deleted := 0
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		batch := keys[:n]
		keys = keys[n:]
		objs := make([]types.ObjectIdentifier, len(batch))
		for i, k := range batch {
			objs[i] = types.ObjectIdentifier{Key: aws.String(k)}
		}
		out, err := s.api.DeleteObjects(ctx, &awss3.DeleteObjectsInput{
			Bucket: aws.String(s.bucket),
			Delete: &types.Delete{Objects: objs, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return deleted, s.opErr(op, fmt.Sprintf("%d objects in s3://%s/%s", len(batch), s.bucket, s.pfx), err)
		}
		var errs []error
		for _, e := range out.Errors {
			if aws.ToString(e.Code) == "NoSuchKey" {
				continue
			}
			errs = append(errs, fmt.Errorf("%s: %s: %s", aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message)))
		}
		deleted += len(batch) - len(out.Errors)
		if len(errs) > 0 {
			return deleted, &draas.OpError{Op: op, Resource: "s3://" + s.bucket + "/" + s.pfx, Err: errors.Join(errs...)}
		}
	}
	return deleted, nil
}
