package awssim_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/awssim"
)

func newS3Sim(t *testing.T, buckets ...string) *awssim.Server {
	t.Helper()
	srv, err := awssim.New(awssim.Options{Buckets: buckets})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	return srv
}

// checksumming is an S3 client that sends and validates checksums, as
// clients made by config.LoadDefaultConfig do.
func checksumming(o *s3.Options) {
	o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenSupported
	o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenSupported
}

// plain sends no checksum, as older clients (aws CLI v1) do.
func plain(o *s3.Options) {
	o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
}

func noS3Retries(o *s3.Options) { o.RetryMaxAttempts = 1 }

func getBody(t *testing.T, c *s3.Client, bucket, key string) ([]byte, error) {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

func putObject(c *s3.Client, bucket, key string, body []byte, optFns ...func(*s3.PutObjectInput)) error {
	in := &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body)))}
	for _, fn := range optFns {
		fn(in)
	}
	_, err := c.PutObject(context.Background(), in)
	return err
}

// TestS3OverwriteReplacesChecksum overwrites an object that has a CRC32
// with one written without a checksum or with another algorithm: a
// validating reader gets the new bytes (gofakes3 kept the old CRC32, and
// the SDK failed every read with "checksum did not match").
func TestS3OverwriteReplacesChecksum(t *testing.T) {
	srv := newS3Sim(t, "bkt")
	sums, none := srv.S3(checksumming), srv.S3(plain)
	for _, c := range []struct {
		name string
		over func() error
	}{
		{"without a checksum", func() error { return putObject(none, "bkt", "k", []byte("second")) }},
		{"with a CRC32C", func() error {
			return putObject(sums, "bkt", "k", []byte("second"), func(in *s3.PutObjectInput) { in.ChecksumAlgorithm = s3types.ChecksumAlgorithmCrc32c })
		}},
		{"with a SHA-256", func() error {
			return putObject(sums, "bkt", "k", []byte("second"), func(in *s3.PutObjectInput) { in.ChecksumAlgorithm = s3types.ChecksumAlgorithmSha256 })
		}},
	} {
		require.NoError(t, putObject(sums, "bkt", "k", []byte("first")), c.name)
		body, err := getBody(t, sums, "bkt", "k")
		require.NoError(t, err, c.name)
		require.Equal(t, "first", string(body))
		head, err := sums.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k"), ChecksumMode: s3types.ChecksumModeEnabled})
		require.NoError(t, err)
		require.NotEmpty(t, aws.ToString(head.ChecksumCRC32), "the first write's CRC32 is kept")

		require.NoError(t, c.over(), c.name)
		body, err = getBody(t, sums, "bkt", "k")
		require.NoError(t, err, "%s: read of the overwritten object", c.name)
		require.Equal(t, "second", string(body), c.name)
		head, err = sums.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k"), ChecksumMode: s3types.ChecksumModeEnabled})
		require.NoError(t, err)
		require.Empty(t, aws.ToString(head.ChecksumCRC32), "%s: the old CRC32 is gone", c.name)
	}
}

// TestS3BadDigest checks that a PUT whose checksum does not match its body
// is refused, as S3 refuses it, and stores nothing.
func TestS3BadDigest(t *testing.T) {
	srv := newS3Sim(t, "bkt")
	c := srv.S3(plain, noS3Retries)
	err := putObject(c, "bkt", "k", []byte("data"), func(in *s3.PutObjectInput) { in.ChecksumCRC32 = aws.String("AAAAAA==") })
	requireCode(t, err, "BadDigest", http.StatusBadRequest)
	_, err = getBody(t, c, "bkt", "k")
	var nsk *s3types.NoSuchKey
	require.ErrorAs(t, err, &nsk)
	// The right checksum is accepted.
	require.NoError(t, putObject(srv.S3(checksumming), "bkt", "k", []byte("data"), func(in *s3.PutObjectInput) { in.ChecksumAlgorithm = s3types.ChecksumAlgorithmCrc32 }))
}

// TestS3NoSuchBucket checks that a bucket must exist, as in a real account:
// requests for a missing one get NoSuchBucket, and Options.Buckets,
// Server.CreateBucket and the CreateBucket call make one.
func TestS3NoSuchBucket(t *testing.T) {
	srv := newS3Sim(t, "backups")
	c := srv.S3(noS3Retries)
	ctx := context.Background()

	err := putObject(c, "nosuch", "k", []byte("x"))
	requireCode(t, err, "NoSuchBucket", http.StatusNotFound)
	_, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("nosuch")})
	var nsb *s3types.NoSuchBucket
	require.ErrorAs(t, err, &nsb)
	_, err = getBody(t, c, "nosuch", "k")
	requireCode(t, err, "NoSuchBucket", http.StatusNotFound)
	_, err = c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("nosuch")})
	var re *awshttp.ResponseError
	require.ErrorAs(t, err, &re)
	require.Equal(t, http.StatusNotFound, re.HTTPStatusCode())

	require.NoError(t, putObject(c, "backups", "k", []byte("x")), "a bucket of Options.Buckets")
	require.NoError(t, srv.CreateBucket("made-later"))
	require.NoError(t, srv.CreateBucket("made-later"), "creating a bucket that exists")
	require.NoError(t, putObject(c, "made-later", "k", []byte("x")))
	_, err = c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("by-api")})
	require.NoError(t, err)
	require.NoError(t, putObject(c, "by-api", "k", []byte("x")))
	require.Error(t, srv.CreateBucket("Not_A_Bucket"))

	_, err = awssim.New(awssim.Options{Buckets: []string{"x"}})
	require.Error(t, err, "a bucket name S3 refuses")
}

// TestS3Faults checks that the fault API applies to S3 operations, named as
// in the S3 API, and to "*".
func TestS3Faults(t *testing.T) {
	srv := newS3Sim(t, "bkt")
	c := srv.S3(noS3Retries)
	ctx := context.Background()

	srv.Throttle("PutObject", 1)
	requireCode(t, putObject(c, "bkt", "k", []byte("x")), "SlowDown", http.StatusServiceUnavailable)
	srv.ClearFaults()
	require.NoError(t, putObject(c, "bkt", "k", []byte("x")))
	require.Equal(t, 2, srv.Calls("PutObject"))

	srv.FailNth("GetObject", 2)
	_, err := getBody(t, c, "bkt", "k")
	require.NoError(t, err)
	_, err = getBody(t, c, "bkt", "k")
	requireCode(t, err, "InternalError", http.StatusInternalServerError)

	srv.ThrottleNth("*", 1)
	_, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("bkt")})
	requireCode(t, err, "SlowDown", http.StatusServiceUnavailable)
	require.Equal(t, 1, srv.Calls("ListObjectsV2"))
	_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k")})
	require.NoError(t, err)
	require.Equal(t, 1, srv.Calls("HeadObject"))

	srv.ThrottleNth("DeleteObjects", 1)
	_, err = c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String("bkt"), Delete: &s3types.Delete{Objects: []s3types.ObjectIdentifier{{Key: aws.String("k")}}}})
	require.Error(t, err)
	require.False(t, errors.Is(err, context.Canceled))
	require.Equal(t, 1, srv.Calls("DeleteObjects"))
}
