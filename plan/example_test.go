package plan_test

import (
	"fmt"

	"github.com/opendraas/draas/plan"
)

// ExampleParse shows a plan error: it names the file, the line, the field
// and the fix.
func ExampleParse() {
	_, err := plan.Parse("shop.yaml", []byte(`name: shop
defaults: {instanceType: m5.large, subnet: subnet-prod}
vms:
  - name: db
  - name: web
    dependsOn: [dbb]
`))
	fmt.Println(err)
	// Output:
	// shop.yaml:6: vms[1].dependsOn[0]: unknown VM "dbb" (the plan's VMs are db, web)
}
