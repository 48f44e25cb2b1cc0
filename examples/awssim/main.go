// Command awssim serves the in-process AWS simulator (EBS direct APIs, EC2,
// Route 53, and S3 on an endpoint of its own) on loopback, so that any AWS
// client can be pointed at it.
//
// The first line of its output is the endpoint URL of EBS, EC2 and Route 53,
// the second "s3 " and the S3 endpoint (path-style); a hint on using them
// with the aws CLI follows. It serves until interrupted (SIGINT or SIGTERM).
//
//	awssim [--addr 127.0.0.1:PORT] [--region R] [--env-file FILE]
//
// --env-file writes, once the simulator listens, a file that a shell can
// source: AWSSIM_ENDPOINT, AWSSIM_S3_ENDPOINT and AWSSIM_PID (to stop it
// with kill). The file is written whole (renamed into place) and removed
// when the simulator stops, so a script can wait for it:
//
//	go run ./examples/awssim --env-file awssim.env &
//	until [ -s awssim.env ]; do sleep 0.2; done; . ./awssim.env
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
	envFile := flag.String("env-file", "", "once listening, write AWSSIM_ENDPOINT, AWSSIM_S3_ENDPOINT and AWSSIM_PID into `FILE` for a shell to source; removed on exit")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, err := awssim.New(awssim.Options{Addr: *addr, Region: *region})
	if err != nil {
		log.Fatalf("awssim: %v", err)
	}
	defer srv.Close()

	if *envFile != "" {
		if err := writeEnvFile(*envFile, srv.URL, srv.S3URL); err != nil {
			log.Fatalf("awssim: %v", err)
		}
		defer os.Remove(*envFile)
	}

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

// writeEnvFile writes the simulator's endpoints and process ID as shell
// assignments into path, through a temporary file renamed into place so that
// a reader never sees a partial file.
func writeEnvFile(path, endpoint, s3Endpoint string) error {
	content := fmt.Sprintf("AWSSIM_ENDPOINT=%s\nAWSSIM_S3_ENDPOINT=%s\nAWSSIM_PID=%d\n", endpoint, s3Endpoint, os.Getpid())
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
