package rfc2136_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/dns/rfc2136"
)

// Point db.example.com. at a new address on the zone's primary DNS server,
// in an update signed with TSIG key draas-key, and read it back.
func Example() {
	// An in-process server for example.com. stands in for the zone's
	// primary (BIND, Knot, …); in production pass its host:port and the
	// key's secret from its key statement.
	srv, err := startTestServer()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	dns, err := rfc2136.New(srv.Addr, rfc2136.Options{TSIGKey: "draas-key", TSIGSecret: srv.Secret})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	rec := draas.Record{Zone: "example.com.", Name: "db.example.com.", Type: "A", TTL: time.Minute, Values: []string{"10.20.0.5"}}
	if err := dns.Upsert(ctx, rec); err != nil {
		log.Fatal(err)
	}
	got, err := dns.Lookup(ctx, "example.com.", "db.example.com.", "A")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.Name, got.Type, got.TTL, got.Values)
	// Output: db.example.com. A 1m0s [10.20.0.5]
}
