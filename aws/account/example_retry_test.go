package account_test

import (
	"context"
	"fmt"
	"log"
	"time"

	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/opendraas/draas/aws/account"
	"github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/retry"
)

// An account's clients retry what AWS throttles for as long as the
// context allows, and count the retries in the context's retry.Counter.
// Here half of the simulator's EC2 calls are throttled; the backoff is
// short for the example (leave RetryOptions zero against AWS).
func ExampleNewRetryer() {
	srv, err := awssim.New(awssim.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	a, err := account.New(srv.Config(), account.Options{Retry: account.RetryOptions{MaxBackoff: 5 * time.Millisecond}})
	if err != nil {
		log.Fatal(err)
	}
	srv.Throttle("DescribeVolumes", 0.5)

	var retries retry.Counter
	ctx, cancel := context.WithTimeout(retry.WithCounter(context.Background(), &retries), time.Minute)
	defer cancel()
	for range 20 {
		if _, err := a.EC2.DescribeVolumes(ctx, &awsec2.DescribeVolumesInput{}); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("20 calls succeeded; retried:", retries.Load() > 0, "; every retry counted:", int(retries.Load())+20 == srv.Calls("DescribeVolumes"))
	// Output: 20 calls succeeded; retried: true ; every retry counted: true
}
