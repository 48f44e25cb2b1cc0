// Command draasctl runs the disaster-recovery workflows of one DR plan file:
// it validates the plan, shows the order a failover would take, replicates
// the plan's VMs into DR copies, reports how old each copy is, drills,
// fails over to AWS and fails back to vSphere, and writes a report (JSON and
// HTML) of every run.
//
// Usage:
//
//	draasctl [global flags] COMMAND [flags] ARGS
//
//	validate PLAN                check a plan file
//	plan PLAN [--drill]          dry run: the ordered steps of a failover or drill, in waves
//	plan PLAN --failback         dry run of a failback (--pre-seed, --cut-over; --from F for its instances)
//	replicate PLAN [--watch]     replicate every VM once, or on the plan's schedule until Ctrl-C
//	status PLAN                  each VM's DR copy age against its RPO target
//	drill PLAN [--cleanup]       drill in the isolated drill network; --cleanup removes it again
//	drill --cleanup --report F   remove an earlier drill named by its report
//	failover PLAN                fail over to AWS
//	failback PLAN --from F       fail back to vSphere (--pre-seed, then --cut-over)
//	report FILE.json             re-render a report as HTML and print its summary
//	backup PLAN [--vm NAME]...   back the VMs up from vCenter into the backup store
//	seed PLAN                    prepare a long-running simulator (examples/awssim) for a plan
//
// Targets are real AWS (the SDK's normal configuration: environment,
// ~/.aws files, SSO, instance role) and vCenter for backup and failback,
// or, with --simulate, simulators embedded in the process. --endpoint and
// --s3-endpoint point the AWS path at a long-running simulator instead.
// Global flags may come before or after the command.
//
// Journals and reports are kept under --state (default ./draas-state). A
// failover, drill or failback interrupted with Ctrl-C stops cleanly, keeps
// its journal, and the same command run again resumes it without making
// anything twice.
//
// Exit codes: 0 ok; 1 the run failed (some VM did not get there, a clean-up
// left resources, a call failed); 2 bad command line or invalid plan; 3
// interrupted (rerun to resume); 4 the run succeeded but missed its RTO or
// RPO target (for status: some VM's DR copy is older than its RPO).
//
// docs/draasctl.md is the guide.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal the run winds down; a second one kills
		// the process at once.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], stdio{
		stdout:    os.Stdout,
		stderr:    os.Stderr,
		stdoutTTY: term.IsTerminal(int(os.Stdout.Fd())),
		stderrTTY: term.IsTerminal(int(os.Stderr.Fd())),
	}, os.Getenv)
	stop()
	os.Exit(code)
}
