// Command awssim serves the in-process AWS simulator (EBS direct APIs, EC2,
// Route53) on loopback, so that any AWS client can be pointed at it.
//
// The first line of its output is the endpoint URL; a hint on using it with
// the aws CLI follows. It serves until interrupted (SIGINT or SIGTERM).
//
//	awssim [--addr 127.0.0.1:PORT]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/opendraas/draas/awssim"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on (port 0: a free port)")
	region := flag.String("region", "us-east-1", "region the simulator reports")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, err := awssim.New(awssim.Options{Addr: *addr, Region: *region})
	if err != nil {
		log.Fatalf("awssim: %v", err)
	}
	defer srv.Close()

	fmt.Println(srv.URL)
	fmt.Printf("s3 %s\n", srv.S3URL)
	fmt.Printf(`
The first line is the endpoint of EBS, EC2 and Route53; S3 (path-style)
has its own, on the second line. Point any AWS client at them with dummy
credentials, for example:

  export AWS_ACCESS_KEY_ID=AKID AWS_SECRET_ACCESS_KEY=SECRET AWS_DEFAULT_REGION=%s
  aws --endpoint-url %s ebs start-snapshot --volume-size 1
  aws --endpoint-url %s ec2 describe-snapshots
  aws --endpoint-url %s s3 ls

Serving until interrupted.
`, *region, srv.URL, srv.URL, srv.S3URL)

	<-ctx.Done()
}
