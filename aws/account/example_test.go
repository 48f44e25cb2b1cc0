package account_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/opendraas/draas/aws/account"
	"github.com/opendraas/draas/aws/s3"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/plan"
)

// Build the adapters for an account, open the backup store, and resolve a
// plan that names its drill subnet. It runs against awssim; against AWS,
// pass the configuration of config.LoadDefaultConfig(ctx) and leave
// Backup.Endpoint empty.
func Example() {
	ctx := context.Background()
	srv, err := awssim.New(awssim.Options{Buckets: []string{"draas-backups"}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	// The simulated network: a drill VPC with a subnet named "drill".
	vpc, _ := srv.AddVPC("10.99.0.0/16", nil)
	if _, err := srv.AddSubnet(vpc, srv.AvailabilityZones()[0], "10.99.1.0/24", map[string]string{"Name": "drill"}); err != nil {
		log.Fatal(err)
	}

	a, err := account.New(srv.Config(), account.Options{
		Backup: account.Backup{Endpoint: srv.S3URL},
		// With the provider's bucket in another account:
		//   Backup: account.Backup{RoleARN: "arn:aws:iam::PROVIDER:role/draas-backup-read", ExternalID: "..."},
	})
	if err != nil {
		log.Fatal(err)
	}
	store := a.BackupStore("draas-backups", "site-a", s3.Options{})
	vms, err := store.VMs(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("backup store %s/%s: %d VMs\n", store.Bucket(), store.Prefix(), len(vms))

	p, err := plan.Parse("shop.yaml", []byte(`name: shop
defaults: {instanceType: m5.large, subnet: app}
vms: [{name: db}]
drill: {subnet: drill}
`))
	if err != nil {
		log.Fatal(err)
	}
	drill, err := a.ResolvePlan(ctx, p, account.Drill)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("drill subnet %q resolved to an ID: %t, zone %s\n", p.Drill.Subnet,
		strings.HasPrefix(drill.Drill.Subnet, "subnet-"), drill.AWS.AvailabilityZone)
	// drill, a.Launcher, a.Copies and a.DNS are what failover.Run takes.
	// Output:
	// backup store draas-backups/site-a: 0 VMs
	// drill subnet "drill" resolved to an ID: true, zone us-east-1a
}
