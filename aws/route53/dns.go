// Package route53 implements draas.DNS on Amazon Route 53: upsert A and
// CNAME records with a TTL, wait until the change is in sync, read records
// back, and delete them.
package route53

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsr53 "github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/aws/internal/awserr"
)

// API is the part of the Route 53 client this package uses; *route53.Client
// implements it.
type API interface {
	awsr53.GetChangeAPIClient
	ChangeResourceRecordSets(ctx context.Context, in *awsr53.ChangeResourceRecordSetsInput, optFns ...func(*awsr53.Options)) (*awsr53.ChangeResourceRecordSetsOutput, error)
	ListResourceRecordSets(ctx context.Context, in *awsr53.ListResourceRecordSetsInput, optFns ...func(*awsr53.Options)) (*awsr53.ListResourceRecordSetsOutput, error)
	ListHostedZonesByName(ctx context.Context, in *awsr53.ListHostedZonesByNameInput, optFns ...func(*awsr53.Options)) (*awsr53.ListHostedZonesByNameOutput, error)
}

var _ API = (*awsr53.Client)(nil)

// Options tunes a [DNS]. The zero value is useful.
type Options struct {
	// WaitTimeout bounds the wait for a change to be INSYNC; default 5m.
	WaitTimeout time.Duration
	// PollInterval is the waiter's minimum delay; default 2s.
	PollInterval time.Duration
	// PrivateZones selects private hosted zones when a zone is given by
	// name; by default public zones are chosen.
	PrivateZones bool
}

// DNS is a draas.DNS on Route 53. A record's Zone is a hosted zone ID
// ("Z0123…" or "/hostedzone/Z0123…") or a zone name ("example.com."),
// looked up once and remembered.
type DNS struct {
	api  API
	opts Options

	mu    sync.Mutex
	zones map[string]string // name -> ID
}

var _ draas.DNS = (*DNS)(nil)

// New returns a DNS using api.
func New(api API, opts Options) *DNS {
	if opts.WaitTimeout <= 0 {
		opts.WaitTimeout = 5 * time.Minute
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	return &DNS{api: api, opts: opts, zones: map[string]string{}}
}

// fqdn lowercases name and adds the final dot.
func fqdn(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

func (d *DNS) zoneID(ctx context.Context, zone string) (string, error) {
	if zone == "" {
		return "", draas.Invalidf("route53: record has no zone: set Record.Zone to a hosted zone ID or name")
	}
	if id, ok := strings.CutPrefix(zone, "/hostedzone/"); ok {
		return id, nil
	}
	if !strings.Contains(zone, ".") {
		return zone, nil // an ID
	}
	name := fqdn(zone)
	d.mu.Lock()
	id, ok := d.zones[name]
	d.mu.Unlock()
	if ok {
		return id, nil
	}
	out, err := d.api.ListHostedZonesByName(ctx, &awsr53.ListHostedZonesByNameInput{DNSName: aws.String(name)})
	if err != nil {
		return "", awserr.Wrap("ListHostedZonesByName", name, err)
	}
	for _, z := range out.HostedZones {
		private := z.Config != nil && z.Config.PrivateZone
		if fqdn(aws.ToString(z.Name)) == name && private == d.opts.PrivateZones {
			id = strings.TrimPrefix(aws.ToString(z.Id), "/hostedzone/")
			d.mu.Lock()
			d.zones[name] = id
			d.mu.Unlock()
			return id, nil
		}
	}
	return "", &draas.OpError{Op: "ListHostedZonesByName", Resource: name, Kind: draas.ErrNotFound,
		Err: fmt.Errorf("no %s hosted zone named %s", map[bool]string{true: "private", false: "public"}[d.opts.PrivateZones], name)}
}

func validate(r draas.Record) error {
	if r.Type != "A" && r.Type != "CNAME" {
		return draas.Invalidf("route53: record %s has type %q: use A or CNAME", r.Name, r.Type)
	}
	if len(r.Values) == 0 {
		return draas.Invalidf("route53: record %s %s has no values", r.Name, r.Type)
	}
	if r.Type == "CNAME" && len(r.Values) != 1 {
		return draas.Invalidf("route53: CNAME %s has %d values; a CNAME has exactly one", r.Name, len(r.Values))
	}
	if r.TTL < time.Second {
		return draas.Invalidf("route53: record %s has TTL %v: use at least 1s", r.Name, r.TTL)
	}
	return nil
}

func recordSet(r draas.Record) *types.ResourceRecordSet {
	rs := &types.ResourceRecordSet{
		Name: aws.String(fqdn(r.Name)),
		Type: types.RRType(r.Type),
		TTL:  aws.Int64(int64(r.TTL / time.Second)),
	}
	for _, v := range r.Values {
		rs.ResourceRecords = append(rs.ResourceRecords, types.ResourceRecord{Value: aws.String(v)})
	}
	return rs
}

// Upsert creates or replaces the record and waits until Route 53 reports the
// change INSYNC.
func (d *DNS) Upsert(ctx context.Context, r draas.Record) error {
	if err := validate(r); err != nil {
		return err
	}
	return d.change(ctx, r, types.ChangeActionUpsert, recordSet(r))
}

func (d *DNS) change(ctx context.Context, r draas.Record, action types.ChangeAction, rs *types.ResourceRecordSet) error {
	zone, err := d.zoneID(ctx, r.Zone)
	if err != nil {
		return err
	}
	res := fmt.Sprintf("%s %s in %s", fqdn(r.Name), r.Type, zone)
	out, err := d.api.ChangeResourceRecordSets(ctx, &awsr53.ChangeResourceRecordSetsInput{
		HostedZoneId: aws.String(zone),
		ChangeBatch: &types.ChangeBatch{
			Comment: aws.String("draas"),
			Changes: []types.Change{{Action: action, ResourceRecordSet: rs}},
		},
	})
	if err != nil {
		return awserr.Wrap("ChangeResourceRecordSets "+string(action), res, err)
	}
	w := awsr53.NewResourceRecordSetsChangedWaiter(d.api, func(o *awsr53.ResourceRecordSetsChangedWaiterOptions) { o.MinDelay = d.opts.PollInterval })
	if err := w.Wait(ctx, &awsr53.GetChangeInput{Id: out.ChangeInfo.Id}, d.opts.WaitTimeout); err != nil {
		return awserr.Wrap("wait change INSYNC", res, err)
	}
	return nil
}

// Lookup returns the record set with the given name and type.
func (d *DNS) Lookup(ctx context.Context, zone, name, typ string) (draas.Record, error) {
	id, err := d.zoneID(ctx, zone)
	if err != nil {
		return draas.Record{}, err
	}
	name = fqdn(name)
	out, err := d.api.ListResourceRecordSets(ctx, &awsr53.ListResourceRecordSetsInput{
		HostedZoneId: aws.String(id), StartRecordName: aws.String(name), StartRecordType: types.RRType(typ), MaxItems: aws.Int32(1),
	})
	if err != nil {
		return draas.Record{}, awserr.Wrap("ListResourceRecordSets", name+" "+typ, err)
	}
	for _, rs := range out.ResourceRecordSets {
		if fqdn(unescape(aws.ToString(rs.Name))) != name || string(rs.Type) != typ {
			continue
		}
		rec := draas.Record{Zone: zone, Name: name, Type: typ, TTL: time.Duration(aws.ToInt64(rs.TTL)) * time.Second}
		for _, v := range rs.ResourceRecords {
			rec.Values = append(rec.Values, aws.ToString(v.Value))
		}
		return rec, nil
	}
	return draas.Record{}, &draas.OpError{Op: "ListResourceRecordSets", Resource: name + " " + typ + " in " + id, Kind: draas.ErrNotFound}
}

// unescape undoes Route 53's octal escapes of names (\052 for '*').
func unescape(s string) string { return strings.ReplaceAll(s, `\052`, "*") }

// Delete removes the record set with r's zone, name and type, whatever its
// current values; a missing record is not an error.
func (d *DNS) Delete(ctx context.Context, r draas.Record) error {
	cur, err := d.Lookup(ctx, r.Zone, r.Name, r.Type)
	if errors.Is(err, draas.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	err = d.change(ctx, cur, types.ChangeActionDelete, recordSet(cur))
	if errors.Is(err, draas.ErrInvalid) {
		// Deleted by someone else between the lookup and the change.
		if _, lerr := d.Lookup(ctx, r.Zone, r.Name, r.Type); errors.Is(lerr, draas.ErrNotFound) {
			return nil
		}
	}
	return err
}
