package route53_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsr53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/route53"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/draastest"
)

func newDNS(t *testing.T) (*awssim.Server, *awsr53.Client, *route53.DNS, string) {
	t.Helper()
	srv, err := awssim.New(awssim.Options{})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	client := srv.Route53()
	out, err := client.CreateHostedZone(context.Background(), &awsr53.CreateHostedZoneInput{
		Name: aws.String("example.com"), CallerReference: aws.String("draas-test"),
	})
	require.NoError(t, err)
	return srv, client, route53.New(client, route53.Options{PollInterval: 10 * time.Millisecond}), aws.ToString(out.HostedZone.Id)
}

func TestDNSConformance(t *testing.T) {
	draastest.TestDNS(t, func(t *testing.T) (draas.DNS, string) {
		_, _, d, _ := newDNS(t)
		return d, "example.com."
	})
}

func TestUpsertByZoneIDAndName(t *testing.T) {
	ctx := context.Background()
	srv, _, d, zoneID := newDNS(t)
	rec := draas.Record{Zone: zoneID, Name: "db.example.com", Type: "A", TTL: time.Minute, Values: []string{"10.0.1.5"}}
	require.NoError(t, d.Upsert(ctx, rec))
	got, err := d.Lookup(ctx, "example.com", "DB.example.com.", "A")
	require.NoError(t, err)
	assert.Equal(t, []string{"10.0.1.5"}, got.Values)
	assert.Equal(t, time.Minute, got.TTL)

	rec.Values = []string{"10.0.2.7"}
	require.NoError(t, d.Upsert(ctx, rec))
	got, err = d.Lookup(ctx, zoneID, "db.example.com", "A")
	require.NoError(t, err)
	assert.Equal(t, []string{"10.0.2.7"}, got.Values)

	require.NoError(t, d.Delete(ctx, rec))
	require.NoError(t, d.Delete(ctx, rec), "deleting a missing record is not an error")
	_, err = d.Lookup(ctx, zoneID, "db.example.com", "A")
	require.ErrorIs(t, err, draas.ErrNotFound)
	assert.Positive(t, srv.Calls("GetChange"), "changes are waited for")

	err = d.Upsert(ctx, draas.Record{Zone: zoneID, Name: "x.example.com", Type: "MX", TTL: time.Minute, Values: []string{"a"}})
	require.ErrorIs(t, err, draas.ErrInvalid)
	_, err = d.Lookup(ctx, "nosuch.org", "a.nosuch.org", "A")
	require.ErrorIs(t, err, draas.ErrNotFound)
}
