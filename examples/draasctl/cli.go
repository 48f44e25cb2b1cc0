package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/opendraas/draas"
)

// Exit codes, for scripts to branch on (docs/draasctl.md lists them).
const (
	exitOK          = 0 // the command did what it was asked
	exitFailed      = 1 // the run failed: a VM did not get there, a clean-up left resources, a call failed
	exitUsage       = 2 // bad command line or invalid plan
	exitInterrupted = 3 // SIGINT or SIGTERM: stopped cleanly, the journal kept; rerun to resume
	exitMissed      = 4 // the run succeeded but missed its RTO or RPO target
)

// exitError gives an error its exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usagef is a mistake in the command line (exit code 2).
func usagef(format string, args ...any) error {
	return &exitError{exitUsage, fmt.Errorf(format, args...)}
}

// failed marks err as a run that failed (exit code 1), even if it wraps
// draas.ErrInvalid: the command line was fine, the run was not.
func failed(err error) error { return &exitError{exitFailed, err} }

// missed marks a run that succeeded but missed its targets (exit code 4).
func missed(err error) error { return &exitError{exitMissed, err} }

// exitCode maps what a command returned to the process's exit code. A
// cancelled ctx means a signal interrupted the command.
func exitCode(ctx context.Context, err error) int {
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil {
		return exitInterrupted
	}
	if ee, ok := errors.AsType[*exitError](err); ok {
		return ee.code
	}
	// A request AWS still throttled (or failed) when the run gave up is
	// never the command line's fault, whatever else the error wraps.
	if errors.Is(err, draas.ErrThrottled) || errors.Is(err, draas.ErrTransient) {
		return exitFailed
	}
	if errors.Is(err, draas.ErrInvalid) {
		return exitUsage
	}
	return exitFailed
}

// globals are the flags every command accepts, before or after its name.
type globals struct {
	simulate  bool
	state     string
	json      bool
	logLevel  string
	logFormat string
	metrics   string
	diskMiB   int64

	// AWS.
	region     string
	endpoint   string
	s3Endpoint string
	bucket     string
	prefix     string
	// backupRole and backupExternalID reach a bucket in another account.
	backupRole       string
	backupExternalID string
	imageID          string
	poll             time.Duration
	health           string
	// maxBackoff caps the wait between retries of an AWS request.
	maxBackoff time.Duration

	// vSphere, for backup and failback.
	vcenter     string
	thumbprint  string
	credentials string
	datacenter  string
	cluster     string
	datastore   string
	network     string
	folder      string
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.BoolVar(&g.simulate, "simulate", false, "run against simulators embedded in this process (AWS, and a vSphere site whose VMs hold generated disks); they end with the process")
	fs.StringVar(&g.state, "state", "draas-state", "directory for journals and reports")
	fs.BoolVar(&g.json, "json", false, "print the result as JSON on stdout (human output goes to stderr)")
	fs.StringVar(&g.logLevel, "log-level", "warn", "log level on stderr: debug, info, warn or error (info logs every step)")
	fs.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&g.metrics, "metrics", "", "serve Prometheus metrics on `ADDR` (host:port; port 0 picks one) at /metrics")
	fs.Int64Var(&g.diskMiB, "disk-mib", 32, "with --simulate or seed: size in MiB of each generated disk of a VM whose plan lists none")

	fs.StringVar(&g.region, "region", "", "AWS region (default: the plan's aws.region, then the SDK's configuration)")
	fs.StringVar(&g.endpoint, "endpoint", "", "`URL` of EBS, EC2 and Route53, for a simulator such as examples/awssim")
	fs.StringVar(&g.s3Endpoint, "s3-endpoint", "", "`URL` of S3 (path-style), for a simulator")
	fs.StringVar(&g.bucket, "bucket", "", "S3 bucket of the backup store (replicate, backup, seed)")
	fs.StringVar(&g.prefix, "prefix", "draas", "key prefix of the backup store in the bucket")
	fs.StringVar(&g.backupRole, "backup-role", "", "`ARN` of a role to assume for the backup store, when its bucket is in another account (docs/iam.md)")
	fs.StringVar(&g.backupExternalID, "backup-external-id", "", "external ID the --backup-role's trust policy asks for")
	fs.StringVar(&g.imageID, "image-id", "", "AMI instances boot from before their root volume is swapped for the DR copy (default: the plan's aws.imageId)")
	fs.DurationVar(&g.poll, "poll", 0, "time between state polls of volumes, instances, DNS and health checks (default: 2s for AWS calls, 5s for health)")
	fs.DurationVar(&g.maxBackoff, "max-backoff", 0, "longest wait between two attempts of a throttled or failed AWS request, which is retried until the command is interrupted (default 20s)")
	fs.StringVar(&g.health, "health", "all", "health checks: all (EC2 status, and TCP and HTTP from this machine), or ec2 (EC2 status checks only, when this machine cannot reach the VPC)")

	fs.StringVar(&g.vcenter, "vcenter", "", "`URL` of the vCenter backup reads from and failback writes to (https://vcenter.example.com)")
	fs.StringVar(&g.thumbprint, "thumbprint", "", "pin vCenter's TLS certificate by its SHA-256 or SHA-1 thumbprint")
	fs.StringVar(&g.credentials, "vsphere-credentials", "", "`FILE` with user=… and password=… lines (default: DRAAS_VSPHERE_USER and DRAAS_VSPHERE_PASSWORD)")
	fs.StringVar(&g.datacenter, "vsphere-datacenter", "", "datacenter of VMs failback creates (default: the first)")
	fs.StringVar(&g.cluster, "vsphere-cluster", "", "cluster of VMs failback creates")
	fs.StringVar(&g.datastore, "vsphere-datastore", "", "datastore of VMs failback creates")
	fs.StringVar(&g.network, "vsphere-network", "", "network of VMs failback creates")
	fs.StringVar(&g.folder, "vsphere-folder", "", "folder of VMs failback creates")
}

func (g *globals) check() error {
	switch g.logLevel {
	case "debug", "info", "warn", "error":
	default:
		return usagef("--log-level %q: use debug, info, warn or error", g.logLevel)
	}
	if g.logFormat != "text" && g.logFormat != "json" {
		return usagef("--log-format %q: use text or json", g.logFormat)
	}
	if g.health != "all" && g.health != "ec2" {
		return usagef("--health %q: use all or ec2", g.health)
	}
	if g.poll < 0 || g.maxBackoff < 0 || g.diskMiB <= 0 {
		return usagef("--poll and --max-backoff must not be negative and --disk-mib must be positive")
	}
	if g.simulate && (g.endpoint != "" || g.s3Endpoint != "" || g.vcenter != "" || g.backupRole != "") {
		return usagef("--simulate runs its own simulators: drop --endpoint, --s3-endpoint, --backup-role and --vcenter, or drop --simulate")
	}
	if g.backupExternalID != "" && g.backupRole == "" {
		return usagef("--backup-external-id goes with --backup-role: pass the role to assume")
	}
	if g.state == "" {
		return usagef("--state is empty: name a directory for journals and reports")
	}
	return nil
}

// action runs a command with its positional arguments.
type action func(ctx context.Context, a *app, args []string) error

// command is one subcommand: setup registers its own flags and returns
// what runs it.
type command struct {
	name, args, summary string
	setup               func(fs *flag.FlagSet) action
}

func commands() []command {
	return []command{
		{"validate", "PLAN", "check a plan file; print the VMs in start order", validateCmd},
		{"plan", "PLAN [--drill | --failback [--pre-seed | --cut-over] [--from REPORT]]", "dry run: the ordered steps of a failover (or drill, or failback) in waves, none run", planCmd},
		{"replicate", "PLAN [--watch]", "replicate every VM into DR copies once, or on the plan's schedule until Ctrl-C", replicateCmd},
		{"status", "PLAN", "each VM's DR copy age against its RPO target (exit 4 if one is over)", statusCmd},
		{"drill", "PLAN [--cleanup] | --cleanup --report FILE", "drill in the isolated drill network; --cleanup removes it and records the proof", drillCmd},
		{"failover", "PLAN", "fail the plan's VMs over to AWS, in dependency order; resumable", failoverCmd},
		{"failback", "PLAN --from REPORT [--pre-seed | --cut-over --pre-seed-report FILE]", "bring failed-over VMs back to vSphere", failbackCmd},
		{"report", "FILE.json", "re-render a report as HTML beside it and print its summary (exit code from its verdict)", reportCmd},
		{"backup", "PLAN [--vm NAME]...", "back the plan's VMs (or the --vm ones) up from vCenter into the backup store as new recovery points", backupCmd},
		{"seed", "PLAN", "prepare a long-running simulator (--endpoint) for a plan: network, DNS zones, generated disks backed up", seedCmd},
	}
}

// stdio is where a command writes, and whether each stream is a terminal.
type stdio struct {
	stdout, stderr       io.Writer
	stdoutTTY, stderrTTY bool
}

// run is the whole program: it parses args, runs the command and returns
// the exit code. ctx is cancelled by SIGINT or SIGTERM.
func run(ctx context.Context, args []string, std stdio, getenv func(string) string) int {
	a, act, rest, err := parse(args, std, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(std.stderr, "draasctl: %v\nRun 'draasctl -h' for usage.\n", err)
		return exitUsage
	}
	err = a.start()
	if err == nil {
		err = act(ctx, a, rest)
	}
	a.stop()
	code := exitCode(ctx, err)
	switch {
	case code == exitInterrupted && a.hinted:
		// The command said what was interrupted and how to resume.
	case code == exitInterrupted:
		fmt.Fprintln(std.stderr, "draasctl: interrupted")
	case err != nil:
		printError(std.stderr, err)
	}
	return code
}

// printError prints each line of err (a plan's errors are one per line)
// after the program's name.
func printError(w io.Writer, err error) {
	for line := range strings.Lines(err.Error()) {
		fmt.Fprintf(w, "draasctl: %s", line)
		if !strings.HasSuffix(line, "\n") {
			fmt.Fprintln(w)
		}
	}
}

// parse reads the global flags, the command and the command's flags, which
// may be interleaved with its arguments.
func parse(args []string, std stdio, getenv func(string) string) (*app, action, []string, error) {
	a := &app{stdio: std, getenv: getenv, args: args}
	top := flag.NewFlagSet("draasctl", flag.ContinueOnError)
	top.SetOutput(std.stderr)
	a.g.register(top)
	top.Usage = func() { usage(std.stderr, top) }
	if err := top.Parse(args); err != nil {
		return nil, nil, nil, err
	}
	rest := top.Args()
	if len(rest) == 0 {
		usage(std.stderr, top)
		return nil, nil, nil, errors.New("no command given")
	}
	name := rest[0]
	if name == "help" {
		usage(std.stdout, top)
		return nil, nil, nil, flag.ErrHelp
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		fs := flag.NewFlagSet("draasctl "+name, flag.ContinueOnError)
		fs.SetOutput(std.stderr)
		act := c.setup(fs) // the command's own flags first, for its usage
		own := map[string]bool{}
		fs.VisitAll(func(f *flag.Flag) { own[f.Name] = true })
		// The globals again, bound to the same values, so that they may
		// follow the command too. Values parsed before the command stand
		// unless repeated after it.
		set := map[string]string{}
		top.Visit(func(f *flag.Flag) { set[f.Name] = f.Value.String() })
		a.g.register(fs)
		for name, v := range set {
			fs.Set(name, v)
		}
		fs.Usage = func() { commandUsage(std.stderr, c, fs, own) }
		pos, err := parseInterleaved(fs, rest[1:])
		if err != nil {
			return nil, nil, nil, err
		}
		if err := a.g.check(); err != nil {
			return nil, nil, nil, err
		}
		return a, act, pos, nil
	}
	return nil, nil, nil, fmt.Errorf("unknown command %q", name)
}

// parseInterleaved parses flags anywhere among the arguments (the flag
// package stops at the first argument) and returns the arguments; "--"
// ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func usage(w io.Writer, top *flag.FlagSet) {
	fmt.Fprintf(w, `Usage: draasctl [global flags] COMMAND [flags] ARGS

draasctl runs the DR workflows of one plan file against AWS and vSphere, or
with --simulate against simulators in this process. docs/draasctl.md is the
guide.

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n             %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(w, `
Exit codes: 0 ok, 1 run failed, 2 usage or invalid plan, 3 interrupted
(rerun to resume), 4 RTO or RPO target missed.

Global flags (before or after the command):
`)
	top.SetOutput(w)
	top.PrintDefaults()
}

func commandUsage(w io.Writer, c command, fs *flag.FlagSet, own map[string]bool) {
	fmt.Fprintf(w, "Usage: draasctl %s %s\n\n%s.\n", c.name, c.args, c.summary)
	var has bool
	fs.VisitAll(func(f *flag.Flag) { has = has || own[f.Name] })
	if has {
		fmt.Fprintf(w, "\nFlags:\n")
		sub := flag.NewFlagSet(c.name, flag.ContinueOnError)
		fs.VisitAll(func(f *flag.Flag) {
			if own[f.Name] {
				sub.Var(f.Value, f.Name, f.Usage)
			}
		})
		sub.SetOutput(w)
		sub.PrintDefaults()
	}
	fmt.Fprintf(w, "\nGlobal flags are listed by 'draasctl -h'.\n")
}

// needArgs checks the number of positional arguments.
func needArgs(args []string, names ...string) error {
	if len(args) != len(names) {
		return usagef("want %d argument(s), %s; got %d: %q", len(names), strings.Join(names, " "), len(args), args)
	}
	return nil
}
