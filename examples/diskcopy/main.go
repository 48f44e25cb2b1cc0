// Command diskcopy copies a disk from a SOURCE to a SINK with draas's copy
// engine (package blockcopy): in parallel, skipping holes and zero blocks,
// with SHA-256 per block, an optional verify pass, a rate limit and a
// checkpoint to resume an interrupted copy.
//
// Usage:
//
//	diskcopy [flags] SOURCE SINK
//
// SOURCE and SINK are URLs:
//
//	file:///abs/path/disk.raw          a raw image file or block device (or a bare path)
//	s3://bucket/prefix/vm/point/disk   a disk of a recovery point in an S3 backup store;
//	                                   point is an ID or "latest", and "new" as SINK
//	ebs://snap-0123456789abcdef0       an EBS snapshot, through the EBS direct APIs;
//	                                   as SINK ebs://new or ebs://new?parent=snap-…
//	vmdk:///abs/path/disk.vmdk         a VMDK file (?subformat=… as SINK)
//	vsphere://user@vcenter/VM/disk-N   disk N of a powered-off vSphere VM; the password
//	                                   comes from DRAAS_VSPHERE_PASSWORD
//
// The schemes are those of package diskurl; -h describes them. The s3 and
// ebs schemes use the AWS SDK's normal configuration (environment, ~/.aws
// files, SSO, instance role);
// --endpoint and --s3-endpoint (or AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_S3)
// point them at a simulator such as examples/awssim, which prints its
// endpoint and, on its second line, its S3 endpoint:
//
//	export AWS_ACCESS_KEY_ID=AKID AWS_SECRET_ACCESS_KEY=SECRET AWS_REGION=us-east-1
//	diskcopy --endpoint URL --s3-endpoint S3URL disk.raw s3://backups/site-a/web-1/new/disk-0
//	diskcopy --endpoint URL --s3-endpoint S3URL s3://backups/site-a/web-1/latest/disk-0 ebs://new
//	diskcopy --endpoint URL ebs://snap-… copy.raw
//
// Human messages go to stderr. A SINK that creates a recovery point or a
// snapshot prints the URL that reads it back on stdout; with --json, stdout
// holds the copy's blockcopy.Stats as JSON instead, with that URL as
// "created". The exit code is 0 when the copy succeeded, 1 when it failed or
// was interrupted, and 2 for a usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/opendraas/draas"
	"github.com/opendraas/draas/blockcopy"
	"github.com/opendraas/draas/diskurl"
)

// Exit codes.
const (
	exitOK     = 0 // the copy succeeded
	exitFailed = 1 // the copy failed or was interrupted
	exitUsage  = 2 // bad flags or arguments
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, term.IsTerminal(int(os.Stderr.Fd())))
	stop()
	os.Exit(code)
}

// config is the parsed command line.
type config struct {
	// sourceArg and sinkArg are SOURCE and SINK as the user typed them.
	sourceArg, sinkArg string
	source, sink       *diskurl.Location

	concurrency int
	verify      bool
	rate        int64
	checkpoint  string
	overwrite   bool
	resume      bool
	json        bool
	quiet       bool

	endpoint     string
	s3Endpoint   string
	changedSince string
}

// outcome is what a copy did: its statistics and, for a SINK that creates a
// recovery point or snapshot, the URL that reads the new disk back.
type outcome struct {
	blockcopy.Stats
	Created string `json:"created,omitempty"`
}

// usageError is a mistake in the command line (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// copyError is a failure of blockcopy.Copy itself, after the sink was
// created: the one failure that may leave partial output to resume.
type copyError struct{ err error }

func (e copyError) Error() string { return e.err.Error() }
func (e copyError) Unwrap() error { return e.err }

// run is the whole command: it parses args, copies, reports to stdout and
// stderr, and returns the exit code. progress says whether stderr is a
// terminal that can show a progress bar. ctx is cancelled on Ctrl-C.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, progress bool) int {
	cfg, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "diskcopy: %v\nRun 'diskcopy -h' for usage.\n", err)
		return exitUsage
	}
	res, err := copyDisk(ctx, cfg, stderr, progress && !cfg.quiet)
	stats := res.Stats
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "diskcopy: %v\n", err)
		return exitUsage
	}
	var ce copyError
	ran := err == nil || errors.As(err, &ce)
	if cfg.json && ran {
		// Stats of a failed copy say how far it got; print them too.
		out, jerr := json.MarshalIndent(res, "", "  ")
		if jerr != nil {
			fmt.Fprintf(stderr, "diskcopy: encode statistics: %v\n", jerr)
			return exitFailed
		}
		fmt.Fprintf(stdout, "%s\n", out)
	}
	if err != nil {
		if ran && ctx.Err() != nil {
			fmt.Fprintf(stderr, "\ndiskcopy: interrupted after writing %s of a %s disk\n", formatBytes(stats.BytesCopied), formatBytes(stats.Size))
		} else {
			fmt.Fprintf(stderr, "diskcopy: %v\n", err)
		}
		if ran {
			fmt.Fprintf(stderr, "diskcopy: %s\n", failureAdvice(err, cfg, args))
		}
		return exitFailed
	}
	if !cfg.quiet {
		fmt.Fprintf(stderr, "diskcopy: %s\n", summary(stats))
	}
	if res.Created != "" && !cfg.json {
		fmt.Fprintln(stdout, res.Created)
	}
	return exitOK
}

// parseArgs parses the command line. Flags come before SOURCE and SINK. It
// returns flag.ErrHelp after printing the usage for -h.
func parseArgs(args []string, stderr io.Writer) (config, error) {
	var cfg config
	var rate byteFlag
	fs := flag.NewFlagSet("diskcopy", flag.ContinueOnError)
	// Parse errors are reported once, by run; the usage only on -h.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.IntVar(&cfg.concurrency, "concurrency", 0, "blocks in flight at once (0 means the engine's default, 8)")
	fs.BoolVar(&cfg.verify, "verify", false, "read the committed SINK back and compare it with SOURCE")
	fs.Var(&rate, "rate", "cap reads at `BYTES` per second, e.g. 100M (0 means no limit)")
	fs.StringVar(&cfg.checkpoint, "checkpoint", "", "record progress in `FILE` so that an interrupted copy can be resumed")
	fs.BoolVar(&cfg.overwrite, "overwrite", false, "replace SINK if it exists")
	fs.BoolVar(&cfg.resume, "resume", false, "continue the interrupted copy recorded in --checkpoint FILE")
	fs.BoolVar(&cfg.json, "json", false, "print the copy's statistics as JSON on stdout")
	fs.BoolVar(&cfg.quiet, "quiet", false, "print no progress and no summary, only errors")
	fs.StringVar(&cfg.endpoint, "endpoint", "", "send every AWS request to `URL` (a simulator such as examples/awssim) instead of AWS; or set AWS_ENDPOINT_URL")
	fs.StringVar(&cfg.s3Endpoint, "s3-endpoint", "", "send S3 requests to `URL`, path-style (default: --endpoint); or set AWS_ENDPOINT_URL_S3")
	fs.StringVar(&cfg.changedSince, "changed-since", "", "copy only what SOURCE reports changed since `BASE` (a recovery point ID for s3://, a snapshot ID for ebs://) into SINK ebs://new?parent=P, where snapshot P holds BASE's content")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "Usage: diskcopy [flags] SOURCE SINK\n\n")
			fmt.Fprintf(stderr, "Copies the disk at SOURCE to SINK. SOURCE and SINK are URLs:\n%s\n", schemeHelp(registry(cfg, stderr)))
			fmt.Fprintf(stderr, "s3 and ebs URLs use the AWS SDK's configuration (AWS_REGION, AWS_PROFILE, ~/.aws,\nSSO, instance role); --endpoint and --s3-endpoint point them at a simulator.\n\n")
			fmt.Fprintf(stderr, "Flags:\n")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			fmt.Fprintf(stderr, "\nExit codes: 0 copied, 1 copy failed or interrupted, 2 usage error.\n")
			return cfg, err
		}
		return cfg, usageError{err}
	}
	cfg.rate = int64(rate)
	pos := fs.Args()
	if len(pos) != 2 {
		for _, a := range pos {
			if strings.HasPrefix(a, "-") {
				return cfg, usagef("flag %s comes after SOURCE or SINK: put flags first, as in diskcopy [flags] SOURCE SINK", a)
			}
		}
		return cfg, usagef("want SOURCE and SINK, got %d argument(s): diskcopy [flags] SOURCE SINK", len(pos))
	}
	if cfg.concurrency < 0 {
		return cfg, usagef("--concurrency %d is negative: use a positive number, or 0 for the default", cfg.concurrency)
	}
	if cfg.resume && cfg.checkpoint == "" {
		return cfg, usagef("--resume needs --checkpoint FILE, the checkpoint the interrupted copy wrote")
	}
	if cfg.resume && cfg.overwrite {
		return cfg, usagef("--resume and --overwrite contradict each other: --resume continues a partial copy, --overwrite starts afresh")
	}
	reg := registry(cfg, stderr)
	var err error
	cfg.sourceArg, cfg.sinkArg = pos[0], pos[1]
	if cfg.source, err = reg.Parse(pos[0], diskurl.AsSource); err != nil {
		return cfg, argError("SOURCE", err)
	}
	if cfg.sink, err = reg.Parse(pos[1], diskurl.AsSink); err != nil {
		return cfg, argError("SINK", err)
	}
	if cfg.source.String() == cfg.sink.String() {
		return cfg, usagef("SOURCE and SINK are the same disk (%s): a disk cannot be copied onto itself", pos[0])
	}
	for _, e := range []struct{ flag, url string }{{"--endpoint", cfg.endpoint}, {"--s3-endpoint", cfg.s3Endpoint}} {
		if e.url == "" {
			continue
		}
		if u, err := url.Parse(e.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cfg, usagef("%s %q is not an endpoint URL: give one such as http://127.0.0.1:4566", e.flag, e.url)
		}
	}
	if cfg.changedSince != "" && (cfg.sink.Scheme() != "ebs" || cfg.sink.URL.Query().Get("parent") == "") {
		return cfg, usagef("--changed-since copies only the changes, so SINK must start with BASE's content: give SINK ebs://new?parent=snap-… whose parent holds BASE")
	}
	return cfg, nil
}

// argError is the usage error for a SOURCE or SINK (name) that the
// registry refused with err: it names the argument as the user typed it.
func argError(name string, err error) error {
	var ue *diskurl.Error
	switch {
	case !errors.As(err, &ue):
		return usageError{err}
	case ue.URL == "":
		return usagef("%s is empty: %v", name, ue.Err)
	default:
		return usagef("%s %q: %v", name, ue.URL, ue.Err)
	}
}

// schemeHelp describes the registry's schemes for the usage text.
func schemeHelp(r *diskurl.Registry) string {
	var b strings.Builder
	for _, s := range r.Schemes() {
		fmt.Fprintf(&b, "  %s\n      %s\n", s.Example, strings.ReplaceAll(s.About, "\n", "\n      "))
	}
	return b.String()
}

// copyDisk opens the source, creates the sink and copies. showBar turns on
// the progress bar on stderr.
func copyDisk(ctx context.Context, cfg config, stderr io.Writer, showBar bool) (outcome, error) {
	var ckpt blockcopy.CheckpointStore
	if cfg.checkpoint != "" {
		// A fresh sink would ignore the checkpoint (blockcopy applies one
		// only to the sink it was made for), but more likely --resume was
		// forgotten: say so rather than silently start over.
		if _, err := os.Stat(cfg.checkpoint); err == nil && !cfg.resume {
			return outcome{}, usagef("checkpoint %s exists from an interrupted copy: add --resume to continue that copy, or delete the file to start over", cfg.checkpoint)
		}
		ckpt = blockcopy.FileCheckpoint(cfg.checkpoint)
	}

	src, err := cfg.source.Open(ctx)
	if err != nil {
		return outcome{}, fmt.Errorf("open SOURCE %s: %w", cfg.sourceArg, err)
	}
	defer src.Close()

	so := diskurl.SinkOptions{Overwrite: cfg.overwrite, Resume: cfg.resume, Description: "diskcopy of " + cfg.sourceArg}
	if cfg.resume && ckpt != nil {
		if so.State, err = blockcopy.SinkState(ctx, ckpt); err != nil {
			return outcome{}, fmt.Errorf("read checkpoint %s: %w", cfg.checkpoint, err)
		}
	}
	dst, err := cfg.sink.Create(ctx, src.Size(), so)
	if errors.Is(err, fs.ErrExist) && !cfg.overwrite {
		return outcome{}, fmt.Errorf("SINK %s already exists: add --overwrite to replace it", cfg.sinkArg)
	}
	if err != nil {
		return outcome{}, fmt.Errorf("create SINK %s: %w", cfg.sinkArg, err)
	}

	exts, err := plannedExtents(ctx, cfg, src, dst)
	if err != nil {
		_ = dst.Abort(context.WithoutCancel(ctx))
		return outcome{}, err
	}
	opts := blockcopy.Options{
		Concurrency: cfg.concurrency,
		Verify:      cfg.verify,
		RateLimit:   cfg.rate,
		Checkpoint:  ckpt,
		Extents:     exts,
	}
	if showBar {
		bar := newBar(stderr, src.Size())
		opts.Progress = bar.update
		defer bar.finish()
	}
	stats, err := blockcopy.Copy(ctx, dst, src, opts)
	if err != nil {
		if c, ok := dst.(io.Closer); ok && ckpt != nil {
			// Copy left the sink open for a resume: release it, keeping
			// its partial output.
			_ = c.Close()
		}
		return outcome{Stats: stats}, copyError{fmt.Errorf("copy %s to %s: %w", cfg.sourceArg, cfg.sinkArg, err)}
	}
	if ckpt != nil {
		// The copy is committed: a leftover checkpoint would only make the
		// next run with the same FILE refuse to start.
		if err := ckpt.Delete(ctx); err != nil {
			fmt.Fprintf(stderr, "diskcopy: warning: the copy is complete but checkpoint %s could not be deleted (delete it by hand): %v\n", cfg.checkpoint, err)
		}
	}
	res := outcome{Stats: stats}
	if c, ok := dst.(diskurl.CreatedSink); ok {
		res.Created = c.Created()
	}
	return res, nil
}

// plannedExtents returns the extents the copy covers: with
// --changed-since, the extents the source reports changed since the base;
// otherwise those diskurl.Extents plans (nil, the source's allocated
// extents, unless the sink starts with content of its own).
func plannedExtents(ctx context.Context, cfg config, src diskurl.Source, dst draas.VolumeSink) ([]draas.Extent, error) {
	if cfg.changedSince != "" {
		exts, err := draas.ChangedExtents(ctx, src, cfg.changedSince)
		if err != nil {
			return nil, fmt.Errorf("SOURCE %s cannot say what changed since %s (%w): check BASE, or drop --changed-since to copy everything", cfg.sourceArg, cfg.changedSince, err)
		}
		if exts == nil {
			exts = []draas.Extent{} // nothing changed: copy nothing
		}
		return exts, nil
	}
	exts, err := diskurl.Extents(ctx, src, dst)
	if err != nil {
		return nil, fmt.Errorf("plan the copy of %s into %s: %w", cfg.sourceArg, cfg.sinkArg, err)
	}
	return exts, nil
}

// failureAdvice says what to do after blockcopy.Copy failed with err: how
// to resume when a checkpoint kept the partial output, or how to make the
// next attempt resumable.
func failureAdvice(err error, cfg config, args []string) string {
	if errors.Is(err, blockcopy.ErrVerify) {
		return "SINK was written but does not read back as SOURCE: do not use it; check the storage, then copy again with --overwrite."
	}
	partial := cfg.sink.PartialPath()
	kept := false
	if partial != "" {
		_, serr := os.Stat(partial)
		kept = serr == nil
	}
	switch {
	case cfg.checkpoint == "":
		return "the partial output was removed; add --checkpoint FILE to make a copy resumable."
	case partial != "" && !kept:
		return fmt.Sprintf("no partial output was kept; delete %s and copy again.", cfg.checkpoint)
	case kept:
		return fmt.Sprintf("the partial output was kept in %s and the progress in %s. To resume, run:\n  %s",
			partial, cfg.checkpoint, resumeCommand(args))
	default:
		return fmt.Sprintf("the progress was kept in %s. To resume, run:\n  %s", cfg.checkpoint, resumeCommand(args))
	}
}

// resumeCommand returns the command line that resumes a copy started with
// args: the same flags and arguments with --resume added.
func resumeCommand(args []string) string {
	parts := []string{"diskcopy"}
	resume := false
	for _, a := range args {
		if a == "--resume" || a == "-resume" || strings.HasPrefix(a, "--resume=") || strings.HasPrefix(a, "-resume=") {
			resume = true
		}
	}
	if !resume {
		parts = append(parts, "--resume")
	}
	for _, a := range args {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes s for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// summary is the one-line human report of a finished copy.
func summary(s blockcopy.Stats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "copied %s, zero %s, unchanged %s",
		formatBytes(s.BytesCopied), formatBytes(s.BytesZero), formatBytes(s.BytesUnchanged))
	if s.BlocksResumed > 0 {
		fmt.Fprintf(&b, ", resumed %d blocks", s.BlocksResumed)
	}
	fmt.Fprintf(&b, " of a %s disk in %s (%s), %d retries",
		formatBytes(s.Size), s.Duration.Round(time.Millisecond), formatRate(s.Size, s.Duration), s.Retries)
	if s.Verified {
		b.WriteString(", verified")
	}
	return b.String()
}

// bar draws a progress bar from blockcopy's progress events.
type bar struct {
	pb *progressbar.ProgressBar
}

func newBar(w io.Writer, total int64) *bar {
	return &bar{pb: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("copying"),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	)}
}

// update moves the bar to the bytes the copy has settled: written, skipped
// as zero or unchanged, or recorded done by a checkpoint. Each block counts
// in exactly one of these.
func (b *bar) update(p blockcopy.Progress) {
	done := p.Written + p.SkippedZero + p.SkippedUnchanged + p.Resumed
	if done > p.Total {
		done = p.Total
	}
	_ = b.pb.Set64(done)
}

// finish removes the bar so that the summary or error stands alone.
func (b *bar) finish() {
	_ = b.pb.Clear()
	_ = b.pb.Exit()
}
