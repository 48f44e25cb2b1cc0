package draastest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opendraas/draas"
)

// DNS is an in-memory draas.DNS that models Route53: zones named by their
// domain, each holding record sets keyed by name and type.
//
// Zone and record names are compared without regard to case or a trailing
// dot, and returned fully qualified ("db.example.com."). Records must lie in
// their zone; A records hold IPv4 addresses and CNAME records exactly one
// name, and a CNAME cannot share its name with another record (all
// draas.ErrInvalid or draas.ErrConflict). TTLs are kept in whole seconds. A
// zone that does not exist fails with draas.ErrNotFound, even for Delete;
// Delete of a missing record in an existing zone is not an error and, unlike
// Route53, does not require the record's values to match.
//
// Every method counts its call and is subject to the [Faults] (named by the
// method: "Upsert", "Lookup", "Delete"). All methods are safe for concurrent
// use.
type DNS struct {
	faults *Faults

	mu    sync.Mutex
	zones map[string]map[recordKey]draas.Record
}

type recordKey struct{ name, typ string }

var _ draas.DNS = (*DNS)(nil)

// NewDNS returns a DNS serving the given zones (e.g. "example.com"), subject
// to the faults f; nil means a fresh Faults, available from [DNS.Faults].
func NewDNS(f *Faults, zones ...string) *DNS {
	if f == nil {
		f = new(Faults)
	}
	d := &DNS{faults: f, zones: map[string]map[recordKey]draas.Record{}}
	for _, z := range zones {
		d.AddZone(z)
	}
	return d
}

// Faults returns the faults the DNS is subject to, for configuring them and
// counting calls.
func (d *DNS) Faults() *Faults { return d.faults }

// Calls returns the number of calls of the method op so far.
func (d *DNS) Calls(op string) int { return d.faults.Calls(op) }

// AddZone adds an empty zone; adding an existing zone changes nothing.
func (d *DNS) AddZone(zone string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	z := fqdn(zone)
	if _, ok := d.zones[z]; !ok {
		d.zones[z] = map[recordKey]draas.Record{}
	}
}

// Records returns the records of a zone sorted by name and type, or nil for
// an unknown zone.
func (d *DNS) Records(zone string) []draas.Record {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []draas.Record
	for _, r := range d.zones[fqdn(zone)] {
		out = append(out, cloneRecord(r))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Type < out[j].Type
	})
	return out
}

// Upsert creates or replaces the record set r.
func (d *DNS) Upsert(ctx context.Context, r draas.Record) error {
	if err := d.faults.Inject(ctx, "Upsert"); err != nil {
		return err
	}
	r, err := normalizeRecord(r)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	recs, err := d.zone(r.Zone)
	if err != nil {
		return err
	}
	for k := range recs {
		if k.name == r.Name && k.typ != r.Type && (k.typ == "CNAME" || r.Type == "CNAME") {
			return fmt.Errorf("draastest: upsert %s %s: a %s record of that name exists and a CNAME cannot share its name; delete it first: %w", r.Type, r.Name, k.typ, draas.ErrConflict)
		}
	}
	recs[recordKey{r.Name, r.Type}] = r
	return nil
}

// Lookup returns the record set with the given zone, name and type, or an
// error wrapping draas.ErrNotFound.
func (d *DNS) Lookup(ctx context.Context, zone, name, typ string) (draas.Record, error) {
	if err := d.faults.Inject(ctx, "Lookup"); err != nil {
		return draas.Record{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	recs, err := d.zone(fqdn(zone))
	if err != nil {
		return draas.Record{}, err
	}
	r, ok := recs[recordKey{fqdn(name), strings.ToUpper(typ)}]
	if !ok {
		return draas.Record{}, fmt.Errorf("draastest: lookup %s %s in zone %s: %w", typ, name, zone, draas.ErrNotFound)
	}
	return cloneRecord(r), nil
}

// Delete removes the record set with r's zone, name and type; a missing
// record is not an error.
func (d *DNS) Delete(ctx context.Context, r draas.Record) error {
	if err := d.faults.Inject(ctx, "Delete"); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	recs, err := d.zone(fqdn(r.Zone))
	if err != nil {
		return err
	}
	delete(recs, recordKey{fqdn(r.Name), strings.ToUpper(r.Type)})
	return nil
}

// zone returns the records of zone z (normalized), or an error wrapping
// draas.ErrNotFound. d.mu is held.
func (d *DNS) zone(z string) (map[recordKey]draas.Record, error) {
	recs, ok := d.zones[z]
	if !ok {
		return nil, fmt.Errorf("draastest: DNS zone %s: %w", z, draas.ErrNotFound)
	}
	return recs, nil
}

// normalizeRecord checks r and returns it with its zone and name fully
// qualified, its type in upper case and its TTL in whole seconds.
func normalizeRecord(r draas.Record) (draas.Record, error) {
	r = cloneRecord(r)
	r.Zone, r.Name, r.Type = fqdn(r.Zone), fqdn(r.Name), strings.ToUpper(r.Type)
	r.TTL = r.TTL.Truncate(time.Second)
	if r.Name != r.Zone && !strings.HasSuffix(r.Name, "."+r.Zone) {
		return r, draas.Invalidf("draastest: record %s is not in zone %s; name it inside the zone", r.Name, r.Zone)
	}
	if r.TTL < 0 {
		return r, draas.Invalidf("draastest: record %s has negative TTL %v", r.Name, r.TTL)
	}
	if len(r.Values) == 0 {
		return r, draas.Invalidf("draastest: record %s %s has no values; give at least one", r.Type, r.Name)
	}
	switch r.Type {
	case "A":
		for _, v := range r.Values {
			if a, err := netip.ParseAddr(v); err != nil || !a.Is4() {
				return r, draas.Invalidf("draastest: A record %s: value %q is not an IPv4 address", r.Name, v)
			}
		}
	case "CNAME":
		if len(r.Values) != 1 {
			return r, draas.Invalidf("draastest: CNAME record %s has %d values; it takes exactly one name", r.Name, len(r.Values))
		}
	default:
		return r, draas.Invalidf("draastest: record %s has type %q; use A or CNAME", r.Name, r.Type)
	}
	return r, nil
}

// fqdn returns name in lower case with one trailing dot.
func fqdn(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, ".")) + "."
}

func cloneRecord(r draas.Record) draas.Record {
	r.Values = slices.Clone(r.Values)
	return r
}
