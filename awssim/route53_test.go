package awssim_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"
	"github.com/stretchr/testify/require"

	"github.com/opendraas/draas/awssim"
)

func newRoute53(t *testing.T, opts awssim.Options) (*awssim.Server, *route53.Client) {
	t.Helper()
	srv := startSim(t, opts)
	return srv, route53.NewFromConfig(sdkConfig(srv.URL))
}

func change(action types.ChangeAction, name string, typ types.RRType, ttl int64, values ...string) types.Change {
	rrs := &types.ResourceRecordSet{Name: aws.String(name), Type: typ, TTL: aws.Int64(ttl)}
	for _, v := range values {
		rrs.ResourceRecords = append(rrs.ResourceRecords, types.ResourceRecord{Value: aws.String(v)})
	}
	return types.Change{Action: action, ResourceRecordSet: rrs}
}

func changeRecords(ctx context.Context, c *route53.Client, zone string, changes ...types.Change) (*route53.ChangeResourceRecordSetsOutput, error) {
	return c.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(zone), ChangeBatch: &types.ChangeBatch{Changes: changes},
	})
}

func waitChange(t *testing.T, c *route53.Client, id *string) {
	t.Helper()
	w := route53.NewResourceRecordSetsChangedWaiter(c, func(o *route53.ResourceRecordSetsChangedWaiterOptions) {
		o.MinDelay, o.MaxDelay = waitMin, waitMax
	})
	require.NoError(t, w.Wait(context.Background(), &route53.GetChangeInput{Id: id}, waitFor))
}

// listAll lists every record set of a zone, maxItems at a time.
func listAll(t *testing.T, c *route53.Client, zone string, maxItems int32) ([]types.ResourceRecordSet, int) {
	t.Helper()
	var out []types.ResourceRecordSet
	in := &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zone), MaxItems: aws.Int32(maxItems)}
	pages := 0
	for {
		page, err := c.ListResourceRecordSets(context.Background(), in)
		require.NoError(t, err)
		pages++
		out = append(out, page.ResourceRecordSets...)
		if !page.IsTruncated {
			return out, pages
		}
		in.StartRecordName, in.StartRecordType, in.StartRecordIdentifier = page.NextRecordName, page.NextRecordType, page.NextRecordIdentifier
	}
}

func TestRoute53Records(t *testing.T) {
	srv, c := newRoute53(t, awssim.Options{})
	ctx := context.Background()

	hz, err := c.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: aws.String("Example.com"), CallerReference: aws.String("ref-1")})
	require.NoError(t, err)
	require.Equal(t, "example.com.", aws.ToString(hz.HostedZone.Name))
	require.Regexp(t, `^/hostedzone/Z[0-9A-Z]+$`, aws.ToString(hz.HostedZone.Id))
	require.Len(t, hz.DelegationSet.NameServers, 4)
	require.Contains(t, aws.ToString(hz.Location), aws.ToString(hz.HostedZone.Id))
	zone := aws.ToString(hz.HostedZone.Id)
	waitChange(t, c, hz.ChangeInfo.Id)

	_, err = c.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: aws.String("example.com"), CallerReference: aws.String("ref-1")})
	requireCode(t, err, "HostedZoneAlreadyExists", http.StatusConflict)
	var exists *types.HostedZoneAlreadyExists
	require.ErrorAs(t, err, &exists)

	// UPSERT creates, CREATE of an existing set fails, UPSERT replaces.
	up, err := changeRecords(ctx, c, zone, change(types.ChangeActionUpsert, "www.example.com", types.RRTypeA, 60, "10.0.0.1"))
	require.NoError(t, err)
	require.Equal(t, types.ChangeStatusPending, up.ChangeInfo.Status)
	waitChange(t, c, up.ChangeInfo.Id)
	_, err = changeRecords(ctx, c, zone, change(types.ChangeActionCreate, "WWW.example.com.", types.RRTypeA, 60, "10.0.0.2"))
	requireCode(t, err, "InvalidChangeBatch", http.StatusBadRequest)
	var icb *types.InvalidChangeBatch
	require.ErrorAs(t, err, &icb)
	require.Contains(t, err.Error(), "but it already exists")
	_, err = changeRecords(ctx, c, zone, change(types.ChangeActionUpsert, "www.example.com", types.RRTypeA, 300, "10.0.0.2", "10.0.0.3"))
	require.NoError(t, err)

	// A batch is atomic: one bad change and nothing is applied.
	_, err = changeRecords(ctx, c, zone,
		change(types.ChangeActionCreate, "api.example.com", types.RRTypeCname, 60, "lb.example.net"),
		change(types.ChangeActionCreate, "www.example.com", types.RRTypeA, 60, "10.0.0.9"))
	requireCode(t, err, "InvalidChangeBatch", http.StatusBadRequest)
	sets, err := srv.RecordSets(zone)
	require.NoError(t, err)
	require.Len(t, sets, 3, "NS, SOA and www only")

	// DELETE must match exactly.
	_, err = changeRecords(ctx, c, zone, change(types.ChangeActionDelete, "www.example.com", types.RRTypeA, 300, "10.0.0.2"))
	requireCode(t, err, "InvalidChangeBatch", http.StatusBadRequest)
	require.Contains(t, err.Error(), "do not match")
	_, err = changeRecords(ctx, c, zone, change(types.ChangeActionDelete, "nope.example.com", types.RRTypeA, 300, "10.0.0.2"))
	requireCode(t, err, "InvalidChangeBatch", http.StatusBadRequest)
	require.Contains(t, err.Error(), "not found")
	_, err = changeRecords(ctx, c, zone, change(types.ChangeActionDelete, "www.example.com", types.RRTypeA, 300, "10.0.0.3", "10.0.0.2"))
	require.NoError(t, err)

	// Other validation.
	_, err = changeRecords(ctx, c, zone, change(types.ChangeActionCreate, "www.other.org", types.RRTypeA, 60, "10.0.0.1"))
	requireCode(t, err, "InvalidChangeBatch", http.StatusBadRequest)
	_, err = changeRecords(ctx, c, zone, change(types.ChangeActionCreate, "example.com", types.RRTypeCname, 60, "x.example.net"))
	requireCode(t, err, "InvalidChangeBatch", http.StatusBadRequest)
	_, err = changeRecords(ctx, c, zone, change(types.ChangeActionCreate, "bad.example.com", types.RRTypeA, 60, "not-an-ip"))
	requireCode(t, err, "InvalidChangeBatch", http.StatusBadRequest)
	_, err = changeRecords(ctx, c, zone, types.Change{Action: types.ChangeActionCreate, ResourceRecordSet: &types.ResourceRecordSet{
		Name: aws.String("x.example.com"), Type: types.RRTypeA}})
	requireCode(t, err, "InvalidInput", http.StatusBadRequest)
	_, err = changeRecords(ctx, c, "Z0000000000999", change(types.ChangeActionUpsert, "www.example.com", types.RRTypeA, 60, "10.0.0.1"))
	requireCode(t, err, "NoSuchHostedZone", http.StatusNotFound)
	var nsz *types.NoSuchHostedZone
	require.ErrorAs(t, err, &nsz)

	// Many records, listed a page at a time in Route53's order.
	var batch []types.Change
	for i := range 25 {
		batch = append(batch, change(types.ChangeActionCreate, fmt.Sprintf("host%02d.example.com", i), types.RRTypeA, 60, fmt.Sprintf("10.1.0.%d", i+1)))
	}
	batch = append(batch,
		change(types.ChangeActionCreate, "host03.example.com", types.RRTypeTxt, 60, `"v=1"`),
		change(types.ChangeActionCreate, "a.b.example.com", types.RRTypeAaaa, 60, "2001:db8::1"),
		change(types.ChangeActionCreate, "*.example.com", types.RRTypeA, 60, "10.9.9.9"))
	cr, err := changeRecords(ctx, c, zone, batch...)
	require.NoError(t, err)
	waitChange(t, c, cr.ChangeInfo.Id)
	all, pages := listAll(t, c, zone, 4)
	require.Len(t, all, 30)
	require.Equal(t, 8, pages)
	var got []string
	for _, r := range all {
		got = append(got, aws.ToString(r.Name)+" "+string(r.Type))
	}
	require.Equal(t, []string{"example.com. NS", "example.com. SOA", `\052.example.com. A`, "a.b.example.com. AAAA"}, got[:4])
	require.Equal(t, []string{"host03.example.com. A", "host03.example.com. TXT"}, got[7:9])
	sets, err = srv.RecordSets(zone)
	require.NoError(t, err)
	require.Len(t, sets, len(all))
	for i, s := range sets {
		require.Equal(t, aws.ToString(all[i].Name), s.Name)
		require.Equal(t, string(all[i].Type), s.Type)
	}
	from, err := c.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zone),
		StartRecordName: aws.String("host24.example.com"), StartRecordType: types.RRTypeA})
	require.NoError(t, err)
	require.Len(t, from.ResourceRecordSets, 1)
	require.False(t, from.IsTruncated)

	// A zone with records cannot be deleted.
	_, err = c.DeleteHostedZone(ctx, &route53.DeleteHostedZoneInput{Id: aws.String(zone)})
	requireCode(t, err, "HostedZoneNotEmpty", http.StatusBadRequest)
	var deletes []types.Change
	for _, r := range all {
		if r.Type != types.RRTypeSoa && r.Type != types.RRTypeNs {
			deletes = append(deletes, types.Change{Action: types.ChangeActionDelete, ResourceRecordSet: &r})
		}
	}
	_, err = changeRecords(ctx, c, zone, deletes...)
	require.NoError(t, err)
	del, err := c.DeleteHostedZone(ctx, &route53.DeleteHostedZoneInput{Id: aws.String(zone)})
	require.NoError(t, err)
	waitChange(t, c, del.ChangeInfo.Id)
	_, err = c.GetHostedZone(ctx, &route53.GetHostedZoneInput{Id: aws.String(zone)})
	requireCode(t, err, "NoSuchHostedZone", http.StatusNotFound)
}

func TestRoute53Zones(t *testing.T) {
	srv, c := newRoute53(t, awssim.Options{})
	ctx := context.Background()
	vpcID, err := srv.AddVPC("10.50.0.0/16", map[string]string{"purpose": "drill"})
	require.NoError(t, err)

	var ids []string
	for i, name := range []string{"b.example.com", "a.example.com", "example.org", "corp.internal"} {
		in := &route53.CreateHostedZoneInput{Name: aws.String(name), CallerReference: aws.String(fmt.Sprint("ref-", i))}
		if name == "corp.internal" {
			in.VPC = &types.VPC{VPCId: aws.String(vpcID), VPCRegion: types.VPCRegionUsEast1}
			in.HostedZoneConfig = &types.HostedZoneConfig{PrivateZone: true, Comment: aws.String("drill DNS")}
		}
		out, err := c.CreateHostedZone(ctx, in)
		require.NoError(t, err)
		ids = append(ids, aws.ToString(out.HostedZone.Id))
	}
	_, err = c.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: aws.String("x.internal"), CallerReference: aws.String("ref-x"),
		VPC: &types.VPC{VPCId: aws.String("vpc-0000000000000beef"), VPCRegion: types.VPCRegionUsEast1}})
	requireCode(t, err, "InvalidVPCId", http.StatusBadRequest)

	priv, err := c.GetHostedZone(ctx, &route53.GetHostedZoneInput{Id: aws.String(ids[3])})
	require.NoError(t, err)
	require.True(t, priv.HostedZone.Config.PrivateZone)
	require.Equal(t, "drill DNS", aws.ToString(priv.HostedZone.Config.Comment))
	require.Equal(t, vpcID, aws.ToString(priv.VPCs[0].VPCId))
	require.Nil(t, priv.DelegationSet)
	require.Equal(t, int64(2), aws.ToInt64(priv.HostedZone.ResourceRecordSetCount))

	var listed []string
	p := route53.NewListHostedZonesPaginator(c, &route53.ListHostedZonesInput{MaxItems: aws.Int32(3)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		require.NoError(t, err)
		for _, z := range page.HostedZones {
			listed = append(listed, aws.ToString(z.Id))
		}
	}
	require.Equal(t, ids, listed)

	byName, err := c.ListHostedZonesByName(ctx, &route53.ListHostedZonesByNameInput{MaxItems: aws.Int32(2)})
	require.NoError(t, err)
	require.True(t, byName.IsTruncated)
	require.Equal(t, []string{"a.example.com.", "b.example.com."}, zoneNames(byName.HostedZones))
	require.Equal(t, "corp.internal.", aws.ToString(byName.NextDNSName))
	byName, err = c.ListHostedZonesByName(ctx, &route53.ListHostedZonesByNameInput{DNSName: byName.NextDNSName, HostedZoneId: byName.NextHostedZoneId})
	require.NoError(t, err)
	require.False(t, byName.IsTruncated)
	require.Equal(t, []string{"corp.internal.", "example.org."}, zoneNames(byName.HostedZones))

	zones := srv.HostedZones()
	require.Len(t, zones, 4)
	require.True(t, zones[3].Private)
	require.Equal(t, []string{vpcID}, zones[3].VPCIDs)
}

func zoneNames(zs []types.HostedZone) []string {
	var out []string
	for _, z := range zs {
		out = append(out, aws.ToString(z.Name))
	}
	return out
}

func TestRoute53ThrottlingRetried(t *testing.T) {
	srv, c := newRoute53(t, awssim.Options{})
	ctx := context.Background()
	hz, err := c.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: aws.String("example.com"), CallerReference: aws.String("r")})
	require.NoError(t, err)
	srv.Throttle("ChangeResourceRecordSets", 0.3)
	for i := range 30 {
		_, err := changeRecords(ctx, c, aws.ToString(hz.HostedZone.Id),
			change(types.ChangeActionUpsert, fmt.Sprintf("h%d.example.com", i), types.RRTypeA, 60, "10.0.0.1"))
		require.NoError(t, err)
	}
	require.Greater(t, srv.Calls("ChangeResourceRecordSets"), 30, "throttled calls were retried")

	srv.ClearFaults()
	srv.ThrottleNth("GetHostedZone", 1)
	_, err = c.GetHostedZone(ctx, &route53.GetHostedZoneInput{Id: hz.HostedZone.Id}, func(o *route53.Options) { o.RetryMaxAttempts = 1 })
	requireCode(t, err, "Throttling", http.StatusBadRequest)
	srv.FailNth("ListResourceRecordSets", 1)
	out, err := c.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: hz.HostedZone.Id})
	require.NoError(t, err)
	require.Len(t, out.ResourceRecordSets, 32)
}
