package diskurl

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/opendraas/draas/vsphere"
)

// Options configure the built-in schemes of [New]. The zero value gives a
// registry whose file and vmdk schemes work; s3, ebs and vsphere URLs parse,
// and opening them needs the fields below.
type Options struct {
	// AWSConfig returns the AWS configuration that the s3 and ebs schemes
	// make their clients with. It is called once per registry, the first
	// time an s3 or ebs URL is opened or created, so that a program that
	// copies local files needs no AWS configuration. A program that holds
	// an aws.Config already returns it:
	//
	//	AWSConfig: func(context.Context) (aws.Config, error) { return cfg, nil }
	//
	// When nil, opening or creating an s3 or ebs URL fails with
	// draas.ErrInvalid.
	AWSConfig func(ctx context.Context) (aws.Config, error)
	// S3Options adjust the S3 client after the configuration is applied,
	// e.g. path-style addressing for a simulator.
	S3Options []func(*awss3.Options)
	// Concurrency is the number of blocks the caller's copies keep in
	// flight; it sizes the EBS client's connection pool (ebs.NewClient).
	// 0 means blockcopy's default.
	Concurrency int

	// VSphereLogin returns the options to log in to the vCenter at host
	// (host[:port]) as user, the URL's user ("" when the URL names none):
	// the password at least, and the user when the URL has none. A URL's
	// thumbprint and insecure parameters, when present, override what it
	// returns. When nil, vsphere URLs log in as their user without a
	// password.
	VSphereLogin func(ctx context.Context, host, user string) (vsphere.Options, error)
	// VSpherePasswordHelp tells a user where the vCenter password goes,
	// since a vsphere URL must not carry it (it would show in process
	// listings and shell history); it appears in errors and help, e.g.
	// "set DRAAS_VSPHERE_PASSWORD". Empty means a generic sentence.
	VSpherePasswordHelp string

	// Notice receives remarks that do not stop a copy. Nil drops them.
	//
	// AWS requests of s3 and ebs URLs are retried for as long as the
	// context allows (aws/account.NewRetryer), unless the configuration
	// AWSConfig returns sets a Retryer of its own.
	Notice func(msg string)
}

// New returns a registry of the built-in schemes, in this order: file, s3,
// ebs, vmdk, vsphere (see the package documentation for their syntax).
// More can be registered on it.
func New(opts Options) *Registry {
	notice := opts.Notice
	if notice == nil {
		notice = func(string) {}
	}
	c := &cloud{config: opts.AWSConfig, s3Options: opts.S3Options, concurrency: opts.Concurrency, notice: notice}
	return &Registry{schemes: []Scheme{
		fileScheme(),
		c.s3Scheme(),
		c.ebsScheme(),
		vmdkScheme(),
		vsphereScheme(opts.VSphereLogin, opts.VSpherePasswordHelp),
	}}
}
