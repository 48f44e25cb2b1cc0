package account_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/account"
	"github.com/opendraas/draas/aws/ebs"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/draastest"
)

func sim(t *testing.T, opts awssim.Options) *awssim.Server {
	t.Helper()
	opts.Buckets = append(opts.Buckets, "backups")
	srv, err := awssim.New(opts)
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	return srv
}

// fast backs off in milliseconds: the simulator throttles only when told to.
func fast() aws.Retryer {
	return awsretry.NewStandard(func(o *awsretry.StandardOptions) {
		o.MaxBackoff = 20 * time.Millisecond
		o.RateLimiter = ratelimit.None
	})
}

// keys records the access key IDs that signed the requests passing through
// a reverse proxy in front of an endpoint.
type keys struct {
	mu   sync.Mutex
	seen map[string]int
	// tokens are the session tokens seen (temporary credentials).
	tokens map[string]int
}

var credentialRE = regexp.MustCompile(`Credential=([^/]+)/`)

func proxy(t *testing.T, target string) (string, *keys) {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	k := &keys{seen: map[string]int{}, tokens: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		if m := credentialRE.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
			k.seen[m[1]]++
		}
		if tok := r.Header.Get("X-Amz-Security-Token"); tok != "" {
			k.tokens[tok]++
		}
		k.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, k
}

func (k *keys) count(id string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.seen[id]
}

func (k *keys) only() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var ids []string
	for id := range k.seen {
		ids = append(ids, id)
	}
	return ids
}

// copyDisk writes a small disk as a DR copy through the account's copy
// store and returns its snapshot ID.
func copyDisk(t *testing.T, a *account.Account) string {
	t.Helper()
	ctx := context.Background()
	disk := draastest.NewDisk(2<<20, ebs.BlockSize)
	disk.WriteAt(bytes.Repeat([]byte("dr"), 4096), 0)
	sink, err := a.Copies.NewCopy(ctx, draas.CopyRequest{Plan: "shop", VM: "db", Disk: "os", RecoveryPoint: "p1", PointTime: time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC), Size: disk.Size()})
	require.NoError(t, err)
	_, err = blockcopy.Copy(ctx, sink, disk, blockcopy.Options{Verify: true})
	require.NoError(t, err)
	return sink.SnapshotID()
}

// touchStore writes an object into the backup bucket with the account's S3
// client and lists the store, so that both go through the backup account.
func touchStore(t *testing.T, a *account.Account) {
	t.Helper()
	ctx := context.Background()
	_, err := a.S3.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("backups"), Key: aws.String("site-a/marker"), Body: bytes.NewReader([]byte("x"))})
	require.NoError(t, err)
	vms, err := a.BackupStore("backups", "site-a", s3.Options{}).VMs(ctx)
	require.NoError(t, err)
	assert.Empty(t, vms)
}

func hasObject(t *testing.T, srv *awssim.Server, key string) bool {
	t.Helper()
	_, err := srv.S3().HeadObject(context.Background(), &awss3.HeadObjectInput{Bucket: aws.String("backups"), Key: aws.String(key)})
	return err == nil
}

func TestOneAccount(t *testing.T) {
	srv := sim(t, awssim.Options{})
	cfg := srv.Config()
	cfg.Retryer = fast
	a, err := account.New(cfg, account.Options{Backup: account.Backup{Endpoint: srv.S3URL}})
	require.NoError(t, err)
	require.NotNil(t, a.Launcher)
	require.NotNil(t, a.DNS)
	snap := copyDisk(t, a)
	info, err := srv.SnapshotInfo(snap)
	require.NoError(t, err)
	assert.Equal(t, "completed", info.State)
	touchStore(t, a)
	assert.True(t, hasObject(t, srv, "site-a/marker"), "the backup store is the account's own S3")

	// The snapshot reads back through the shared EBS client.
	src, err := a.OpenSnapshot(context.Background(), snap)
	require.NoError(t, err)
	assert.Equal(t, int64(1<<30), src.Size(), "a snapshot's size is whole GiB")
	copies, err := a.Copies.Copies(context.Background(), "shop", "db")
	require.NoError(t, err)
	require.Len(t, copies, 1)
	assert.Equal(t, snap, copies[0].SnapshotID)
}

// The DR copies and instances in the customer's account, the backup store
// in the provider's, reached with a configuration of its own.
func TestBackupStoreInAnotherAccountWithItsOwnConfig(t *testing.T) {
	dr := sim(t, awssim.Options{AccountID: "111111111111"})
	provider := sim(t, awssim.Options{AccountID: "222222222222", Region: "eu-west-1"})
	s3URL, seen := proxy(t, provider.S3URL)
	cfg := dr.Config()
	cfg.Retryer = fast
	bcfg := provider.Config()
	bcfg.Credentials = credentials.NewStaticCredentialsProvider("AKIDPROVIDER", "secret", "")
	a, err := account.New(cfg, account.Options{Backup: account.Backup{Config: &bcfg, Endpoint: s3URL}})
	require.NoError(t, err)

	touchStore(t, a)
	assert.True(t, hasObject(t, provider, "site-a/marker"), "the store is in the provider's S3")
	assert.False(t, hasObject(t, dr, "site-a/marker"), "nothing went to the DR account's S3")
	assert.Equal(t, []string{"AKIDPROVIDER"}, seen.only(), "every S3 request signed with the provider's credentials")
	assert.Equal(t, "eu-west-1", a.S3.Options().Region, "the bucket's region")

	images := len(provider.Snapshots()) // the images' root snapshots
	snap := copyDisk(t, a)
	_, err = dr.SnapshotInfo(snap)
	assert.NoError(t, err, "the DR copy is in the DR account")
	assert.Len(t, provider.Snapshots(), images, "no snapshot made in the provider's account")
	assert.Equal(t, "us-east-1", a.EC2.Options().Region)
}

// fakeSTS answers AssumeRole with fixed temporary credentials and records
// the requests.
type fakeSTS struct {
	mu    sync.Mutex
	calls []url.Values
}

func (f *fakeSTS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.calls = append(f.calls, r.PostForm)
	f.mu.Unlock()
	if r.PostForm.Get("Action") != "AssumeRole" {
		http.Error(w, "unexpected action", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>ASIAASSUMED</AccessKeyId>
      <SecretAccessKey>assumed-secret</SecretAccessKey>
      <SessionToken>assumed-token</SessionToken>
      <Expiration>%s</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::222222222222:assumed-role/draas-backup-read/%s</Arn>
      <AssumedRoleId>AROAEXAMPLE:%s</AssumedRoleId>
    </AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleResponse>`, time.Now().Add(time.Hour).UTC().Format(time.RFC3339), r.PostForm.Get("RoleSessionName"), r.PostForm.Get("RoleSessionName"))
}

// The backup store in the provider's account, reached by assuming a role
// there with the DR account's own credentials: one AssumeRole, whose
// temporary credentials sign every S3 request, while EC2 and EBS keep the
// DR account's.
func TestBackupStoreThroughAnAssumedRole(t *testing.T) {
	dr := sim(t, awssim.Options{AccountID: "111111111111"})
	provider := sim(t, awssim.Options{AccountID: "222222222222"})
	s3URL, s3Seen := proxy(t, provider.S3URL)
	drURL, drSeen := proxy(t, dr.URL)
	stsFake := &fakeSTS{}
	stsSrv := httptest.NewServer(stsFake)
	t.Cleanup(stsSrv.Close)

	cfg := dr.Config()
	cfg.BaseEndpoint = aws.String(drURL)
	cfg.Retryer = fast
	cfg.Credentials = credentials.NewStaticCredentialsProvider("AKIDCUSTOMER", "secret", "")
	// The role is assumed with the DR account's credentials; only the STS
	// endpoint differs here, because STS is not simulated.
	base := cfg.Copy()
	base.BaseEndpoint = aws.String(stsSrv.URL)
	a, err := account.New(cfg, account.Options{Backup: account.Backup{
		Config:     &base,
		RoleARN:    "arn:aws:iam::222222222222:role/draas-backup-read",
		ExternalID: "customer-42",
		Endpoint:   s3URL,
	}})
	require.NoError(t, err)
	stsFake.mu.Lock()
	assert.Empty(t, stsFake.calls, "New makes no request")
	stsFake.mu.Unlock()

	touchStore(t, a)
	touchStore(t, a)
	assert.True(t, hasObject(t, provider, "site-a/marker"))
	assert.Equal(t, []string{"ASIAASSUMED"}, s3Seen.only(), "S3 requests are signed with the role's credentials")
	s3Seen.mu.Lock()
	assert.Positive(t, s3Seen.tokens["assumed-token"], "with the session token")
	s3Seen.mu.Unlock()

	stsFake.mu.Lock()
	require.Len(t, stsFake.calls, 1, "the role's credentials are cached")
	call := stsFake.calls[0]
	stsFake.mu.Unlock()
	assert.Equal(t, "arn:aws:iam::222222222222:role/draas-backup-read", call.Get("RoleArn"))
	assert.Equal(t, "customer-42", call.Get("ExternalId"))
	assert.Equal(t, "draas", call.Get("RoleSessionName"))

	copyDisk(t, a)
	assert.Positive(t, drSeen.count("AKIDCUSTOMER"))
	assert.Zero(t, drSeen.count("ASIAASSUMED"), "EC2 and EBS keep the DR account's credentials")
}

// The EBS client takes the configuration's retryer and the account's rate
// limit, which sees throttling.
func TestEBSClientUsesTheRetryerAndTheLimit(t *testing.T) {
	srv := sim(t, awssim.Options{})
	cfg := srv.Config()
	cfg.Retryer = func() aws.Retryer {
		return awsretry.NewStandard(func(o *awsretry.StandardOptions) { o.MaxAttempts = 1 })
	}
	limit := ebs.NewAdaptiveLimit(10, 100)
	a, err := account.New(cfg, account.Options{EBSLimit: limit})
	require.NoError(t, err)
	assert.Same(t, limit, a.EBSLimit)
	srv.Throttle("StartSnapshot", 1)
	_, err = ebs.NewSink(context.Background(), a.EBS, 1<<20, ebs.SinkOptions{})
	require.ErrorIs(t, err, draas.ErrThrottled)
	assert.Equal(t, 1, srv.Calls("StartSnapshot"), "one attempt: the configuration's retryer, not the default five")
	assert.Equal(t, int64(1), limit.Throttled(), "the account's limit saw the throttling")
	assert.Less(t, limit.Rate(), 100.0)

	d, err := account.New(srv.Config(), account.Options{})
	require.NoError(t, err)
	require.NotNil(t, d.EBSLimit, "a default limit")
	assert.Equal(t, 1000.0, d.EBSLimit.Rate())
}

func TestNewNeedsARegion(t *testing.T) {
	_, err := account.New(aws.Config{}, account.Options{})
	assert.ErrorIs(t, err, draas.ErrInvalid)
	assert.ErrorContains(t, err, "no region")
	srv := sim(t, awssim.Options{})
	_, err = account.New(srv.Config(), account.Options{Backup: account.Backup{Config: &aws.Config{}}})
	assert.ErrorIs(t, err, draas.ErrInvalid)
	assert.ErrorContains(t, err, "Backup.Config has no region")
}
