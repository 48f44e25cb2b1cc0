package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/opendraas/draas/diskurl"
	"github.com/opendraas/draas/vsphere"
)

// registry returns the disk URL schemes diskcopy knows, configured from the
// command line and the environment: AWS from the SDK's normal configuration
// chain (environment, shared config and credentials files, SSO, instance
// role), loaded only when an s3 or ebs URL needs it; the vCenter password
// from DRAAS_VSPHERE_PASSWORD.
func registry(cfg config, stderr io.Writer) *diskurl.Registry {
	return diskurl.New(diskurl.Options{
		AWSConfig:   func(ctx context.Context) (aws.Config, error) { return loadAWSConfig(ctx, cfg.endpoint) },
		S3Options:   []func(*awss3.Options){s3PathStyle(cfg.s3Endpoint)},
		Concurrency: cfg.concurrency,
		VSphereLogin: func(_ context.Context, _, user string) (vsphere.Options, error) {
			if user == "" {
				user = os.Getenv("DRAAS_VSPHERE_USER")
			}
			return vsphere.Options{Username: user, Password: os.Getenv("DRAAS_VSPHERE_PASSWORD")}, nil
		},
		VSpherePasswordHelp: "set DRAAS_VSPHERE_PASSWORD",
		Notice:              func(msg string) { fmt.Fprintf(stderr, "diskcopy: note: %s\n", msg) },
	})
}

// loadAWSConfig loads the AWS configuration; endpoint, when set, replaces
// the endpoint of every AWS service, for a simulator such as examples/awssim
// or moto_server.
func loadAWSConfig(ctx context.Context, endpoint string) (aws.Config, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load the AWS configuration (environment, ~/.aws/config, ~/.aws/credentials): %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, errors.New("no AWS region is configured: set AWS_REGION (or a region in ~/.aws/config)")
	}
	if endpoint != "" {
		cfg.BaseEndpoint = aws.String(endpoint)
	}
	return cfg, nil
}

// s3PathStyle sets S3's endpoint to endpoint when it is set (default: the
// --endpoint of every service) and addresses any S3 endpoint set here or in
// the environment path-style (http://host/bucket/key), as simulators need.
func s3PathStyle(endpoint string) func(*awss3.Options) {
	return func(o *awss3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		if o.BaseEndpoint != nil {
			o.UsePathStyle = true
		}
	}
}
