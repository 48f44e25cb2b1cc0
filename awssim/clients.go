package awssim

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Config returns an aws.Config for the simulator: its region, static dummy
// credentials, and BaseEndpoint set to URL, so that EBS, EC2 and Route53
// clients made from it talk to the simulator. For S3 use [Server.S3Options].
func (s *Server) Config() aws.Config {
	return aws.Config{
		Region:       s.opts.Region,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDAWSSIM", "awssim-secret", ""),
		BaseEndpoint: aws.String(s.URL),
	}
}

// S3Options is a client option that points an S3 client at the simulator's
// S3 endpoint with path-style addressing:
// s3.NewFromConfig(srv.Config(), srv.S3Options).
func (s *Server) S3Options(o *s3.Options) {
	o.BaseEndpoint = aws.String(s.S3URL)
	o.UsePathStyle = true
}

// EBS returns an EBS direct APIs client for the simulator.
func (s *Server) EBS(optFns ...func(*ebs.Options)) *ebs.Client {
	return ebs.NewFromConfig(s.Config(), optFns...)
}

// EC2 returns an EC2 client for the simulator.
func (s *Server) EC2(optFns ...func(*ec2.Options)) *ec2.Client {
	return ec2.NewFromConfig(s.Config(), optFns...)
}

// Route53 returns a Route53 client for the simulator.
func (s *Server) Route53(optFns ...func(*route53.Options)) *route53.Client {
	return route53.NewFromConfig(s.Config(), optFns...)
}

// S3 returns an S3 client for the simulator's S3 endpoint.
func (s *Server) S3(optFns ...func(*s3.Options)) *s3.Client {
	return s3.NewFromConfig(s.Config(), append([]func(*s3.Options){s.S3Options}, optFns...)...)
}
