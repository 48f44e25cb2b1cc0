package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/opendraas/draas/failback"
	"github.com/opendraas/draas/failover"
	"github.com/opendraas/draas/observe"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/replicate"
	"github.com/opendraas/draas/report"
)

// app is one invocation: its flags, where it writes, its logger and
// metrics. Nothing in it outlives the invocation.
type app struct {
	g globals
	stdio
	getenv func(string) string
	args   []string // the command line, for the resume hint

	out    io.Writer // human output: stdout, or stderr with --json
	tty    bool      // out is a terminal: draw progress bars
	log    *slog.Logger
	events *observe.Logger
	// metrics is nil without --metrics.
	metrics   *observe.Metrics
	metricsSv *http.Server
	// hinted is set once a command printed what to do after an
	// interruption.
	hinted bool
	// region is the AWS region of the configuration loaded, for the
	// reports' detail files.
	region string
}

// start sets up output, logging and the metrics server.
func (a *app) start() error {
	a.out, a.tty = a.stdout, a.stdoutTTY
	if a.g.json {
		a.out, a.tty = a.stderr, a.stderrTTY
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.g.logLevel)); err != nil {
		return usagef("--log-level: %v", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(a.stderr, hopts)
	if a.g.logFormat == "json" {
		h = slog.NewJSONHandler(a.stderr, hopts)
	}
	a.log = slog.New(h)
	a.events = observe.NewLogger(a.log, observe.LogOptions{})
	if a.g.metrics == "" {
		return nil
	}
	reg := prometheus.NewRegistry()
	m, err := observe.NewMetrics(reg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", a.g.metrics)
	if err != nil {
		return usagef("--metrics %s: %v: name a free host:port to listen on", a.g.metrics, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	a.metrics = m
	a.metricsSv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go a.metricsSv.Serve(ln)
	a.say("metrics: http://%s/metrics", ln.Addr())
	return nil
}

// stop shuts the metrics server down.
func (a *app) stop() {
	if a.metricsSv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		a.metricsSv.Shutdown(ctx)
	}
}

// say prints a line of human output.
func (a *app) say(format string, args ...any) {
	fmt.Fprintf(a.out, format+"\n", args...)
}

// orchestrateEvents is the consumer of a workflow's events: the log, the
// metrics and the progress display.
func (a *app) orchestrateEvents(kind string, progress func(orchestrate.Event)) func(orchestrate.Event) {
	var metrics func(orchestrate.Event)
	if a.metrics != nil {
		metrics = a.metrics.OrchestrateEvents(kind)
	}
	return observe.Tee(a.events.Orchestrate, metrics, progress)
}

// replicateEvents is the consumer of a replicator's events.
func (a *app) replicateEvents(progress func(replicate.Event)) func(replicate.Event) {
	var metrics func(replicate.Event)
	if a.metrics != nil {
		metrics = a.metrics.ReplicateEvents()
	}
	return observe.Tee(a.events.Replicate, metrics, progress)
}

// loadPlan reads and validates a plan file; its errors name the file,
// line and field.
// planArg loads the plan named by a command's one argument, PLAN.
func planArg(args []string) (*plan.Plan, error) {
	if err := needArgs(args, "PLAN"); err != nil {
		return nil, err
	}
	return loadPlan(args[0])
}

func loadPlan(path string) (*plan.Plan, error) {
	p, err := plan.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usagef("plan file %s does not exist: name a DR plan in YAML (see examples/plans/three-tier.yaml)", path)
	}
	return p, err
}

// detail is what a run's workflow reported, kept beside the report as
// <report>.detail.json: the instance IDs, volumes and DNS values later
// commands need (failback --from, drill --cleanup --report), which the
// report itself carries only as notes.
type detail struct {
	// Region is the AWS region the run worked in (empty with --simulate),
	// so that a later command acts in the same one.
	Region    string             `json:"region,omitempty"`
	Failover  *failover.Report   `json:"failover,omitempty"`
	Failback  *failback.Report   `json:"failback,omitempty"`
	Replicate []replicate.Result `json:"replicate,omitempty"`
}

// detailPath returns the detail file of a report file: FILE.json's is
// FILE.detail.json; a detail file is its own.
func detailPath(reportPath string) string {
	if strings.HasSuffix(reportPath, ".detail.json") {
		return reportPath
	}
	return strings.TrimSuffix(reportPath, ".json") + ".detail.json"
}

// readDetail reads the detail kept beside a report.
func readDetail(reportPath string) (detail, error) {
	path := detailPath(reportPath)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return detail{}, usagef("%s has no detail file beside it (%s): name a report draasctl wrote, with its .detail.json", reportPath, path)
	}
	if err != nil {
		return detail{}, err
	}
	var d detail
	if err := json.Unmarshal(data, &d); err != nil {
		return detail{}, usagef("%s is not a draasctl detail file: %v", path, err)
	}
	return d, nil
}

// shown says what writeReport prints besides the report's paths.
type shown struct {
	// summary prints the run's summary; interrupted heads it as such.
	summary, interrupted bool
	// final prints the report on stdout with --json: the command's one
	// JSON document (a drill's report before its clean-up is not).
	final bool
}

// writeReport writes the run's report (JSON and HTML) and its detail into
// dir and prints the paths and what show asks for. It returns the JSON
// report's path.
func (a *app) writeReport(dir string, run report.Run, d detail, show shown) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	jsonPath, htmlPath, err := writeRun(dir, run)
	if err != nil {
		return "", err
	}
	d.Region = a.region
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(detailPath(jsonPath), append(data, '\n')); err != nil {
		return "", err
	}
	if a.g.json && show.final {
		if err := report.WriteJSON(a.stdout, run); err != nil {
			return "", err
		}
	}
	if show.summary {
		printSummary(a.out, run, show.interrupted)
	}
	a.say("report: %s\n        %s", jsonPath, htmlPath)
	return jsonPath, nil
}

// writeRun writes the run with report.Write, whose file names have the
// run's start to the second: the same run again (a drill rewritten with
// its clean-up proof) replaces its files, and another run that started in
// the same second gets the names with its run ID (or a counter) added
// rather than replacing the first run's.
func writeRun(dir string, run report.Run) (jsonPath, htmlPath string, err error) {
	first := filepath.Join(dir, report.Name(run))
	name := func(i int) string { // first, first-<run ID>, first-2, first-3, …
		if i == 0 {
			return first
		}
		if run.RunID != "" {
			if i == 1 {
				return first + "-" + run.RunID
			}
			i--
		}
		return fmt.Sprintf("%s-%d", first, i+1)
	}
	i := 0
	for !freeFor(name(i)+".json", run) {
		i++
	}
	if i == 0 {
		return report.Write(dir, run)
	}
	base := name(i)
	tmp, err := os.MkdirTemp(dir, ".report-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp)
	tj, th, err := report.Write(tmp, run)
	if err != nil {
		return "", "", err
	}
	if err := os.Rename(tj, base+".json"); err != nil {
		return "", "", err
	}
	if err := os.Rename(th, base+".html"); err != nil {
		return "", "", errors.Join(err, os.Remove(base+".json"))
	}
	return base + ".json", base + ".html", nil
}

// freeFor reports whether path may hold run's report: nothing is there,
// or run's own report (of the same start and run ID).
func freeFor(path string, run report.Run) bool {
	if _, err := os.Lstat(path); err != nil {
		return true
	}
	other, ok := readRun(path)
	return ok && other.Start.Equal(run.Start) && other.RunID == run.RunID
}

// readRun reads the report at path, if there is one.
func readRun(path string) (report.Run, bool) {
	f, err := os.Open(path)
	if err != nil {
		return report.Run{}, false
	}
	defer f.Close()
	run, err := report.ReadJSON(f)
	return run, err == nil
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it into place.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".draasctl-*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// printSummary prints a run's verdict and one line per VM.
func printSummary(w io.Writer, run report.Run, interrupted bool) {
	v := run.Verdict()
	t := run.Totals()
	what := string(run.Kind)
	if run.Mode != "" {
		what += " (" + run.Mode + ")"
	}
	verdict := verdictWord(v.Overall)
	if interrupted {
		verdict = "INTERRUPTED"
	}
	fmt.Fprintf(w, "%s of plan %s: %s, %d of %d VMs ok in %s\n", what, run.Plan, verdict,
		t.VMs[report.StatusOK], len(run.VMs), run.Duration().Round(time.Millisecond))
	judged := func(name string, o report.Outcome, target, achieved time.Duration) {
		if o == report.NotJudged || interrupted {
			return
		}
		why := ""
		if o == report.Fail && achieved <= target {
			why = ", not every VM is ok"
		}
		fmt.Fprintf(w, "  %s %s: %s (target %s%s)\n", name, achieved.Round(time.Millisecond), o, target, why)
	}
	judged("RTO", v.RTO, run.Targets.RTO, run.Achieved.RTO)
	judged("RPO", v.RPO, run.Targets.RPO, run.Achieved.RPO)
	if t.Retries > 0 {
		fmt.Fprintf(w, "  retries: %d (AWS requests throttled or failed and retried, repeated steps, retried disk reads and writes)\n", t.Retries)
	}
	if run.Cleanup != nil {
		fmt.Fprintf(w, "  clean-up: %s (%d removed, %d remaining, verified %t)\n", v.Cleanup,
			len(run.Cleanup.Removed), len(run.Cleanup.Remaining), run.Cleanup.Verified)
	}
	for _, vm := range run.VMs {
		line := fmt.Sprintf("  %-12s %-9s", vm.Name, vm.Status)
		if vm.Error != "" {
			line += " " + vm.Error
		} else {
			// The report has every note; the recovery point's is long.
			var notes []string
			for _, n := range vm.Notes {
				if !strings.HasPrefix(n, "recovery point ") {
					notes = append(notes, n)
				}
			}
			line += " " + strings.Join(notes, "; ")
		}
		fmt.Fprintln(w, line)
	}
}

func verdictWord(o report.Outcome) string {
	if o == report.Pass {
		return "ok"
	}
	return "FAILED"
}

// verdictError turns a run's verdict into the command's result: nil when
// it passed, exit code 4 when every VM got there but a target was missed,
// exit code 1 otherwise.
func verdictError(run report.Run) error {
	v := run.Verdict()
	if v.Overall == report.Pass {
		return nil
	}
	allOK := true
	for _, vm := range run.VMs {
		allOK = allOK && vm.Status == report.StatusOK
	}
	if allOK && len(run.Errors) == 0 && v.Cleanup != report.Fail {
		var what []string
		if v.RTO == report.Fail {
			what = append(what, fmt.Sprintf("RTO %s over its target %s", run.Achieved.RTO.Round(time.Millisecond), run.Targets.RTO))
		}
		if v.RPO == report.Fail {
			what = append(what, fmt.Sprintf("RPO %s over its target %s", run.Achieved.RPO.Round(time.Millisecond), run.Targets.RPO))
		}
		return missed(fmt.Errorf("%s of plan %s missed its targets: %s", run.Kind, run.Plan, strings.Join(what, ", ")))
	}
	msg := strings.Join(run.Errors, "; ")
	if msg == "" {
		msg = "not every VM is ok"
	}
	return failed(fmt.Errorf("%s of plan %s failed: %s", run.Kind, run.Plan, msg))
}

// journal is a run's journal in the state directory, or none with
// --simulate: the simulated cloud ends with the process, so a journal of
// its resources could never be resumed.
type journal struct {
	path string // "" for none
	j    *orchestrate.FileJournal
	// finished is the number of steps an earlier run recorded.
	finished int
}

// openJournal opens the journal of a plan's runs of a kind ("failover",
// "drill", "failback-direct", …): state/<plan>-<kind>.journal.
func (a *app) openJournal(ctx context.Context, planName, kind string) (*journal, error) {
	if a.g.simulate {
		return &journal{}, nil
	}
	if err := os.MkdirAll(a.g.state, 0o755); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	path := a.journalPath(planName, kind)
	j := orchestrate.NewFileJournal(path)
	entries, err := j.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: move the file aside to start over", err)
	}
	done := map[string]bool{}
	for _, e := range entries {
		done[e.Step] = !e.Undone
	}
	n := 0
	for _, ok := range done {
		if ok {
			n++
		}
	}
	jr := &journal{path: path, j: j, finished: n}
	if n > 0 {
		a.say("resuming from %s: %d steps finished in an earlier run", path, n)
	}
	return jr, nil
}

// journalPath is the journal of a plan's runs of a kind.
func (a *app) journalPath(planName, kind string) string {
	return filepath.Join(a.g.state, planName+"-"+kind+".journal")
}

// orchestrate returns the journal for orchestrate.Options, nil for none.
func (j *journal) orchestrate() orchestrate.Journal {
	if j.j == nil {
		return nil
	}
	return j.j
}

// archive moves a finished run's journal aside, as
// <plan>-<kind>-<id>.journal.done, so that the next run starts anew.
func (j *journal) archive(id string) error {
	if j.path == "" {
		return nil
	}
	dst := strings.TrimSuffix(j.path, ".journal") + "-" + id + ".journal.done"
	if err := os.Rename(j.path, dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("archive journal: %w", err)
	}
	return nil
}

// interrupted prints what to do after a run was interrupted.
func (a *app) interrupted(j *journal) {
	a.hinted = true
	if j.path == "" {
		a.say("interrupted. With --simulate the simulated cloud ended with this process, so there is nothing to resume: run again to start over.")
		return
	}
	a.say("interrupted. The journal %s keeps every finished step.\nTo resume, run the same command again with the same --state:\n  draasctl %s", j.path, strings.Join(quoteArgs(a.args), " "))
}

// failedRun prints what to do after a run, kept in the journal at path,
// in which some VM failed.
func (a *app) failedRun(path string) {
	if a.g.simulate {
		return
	}
	a.say("The journal %s keeps every finished step: fix the cause and run the same command again to retry only what failed, or move the journal aside to start over.", path)
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, s := range args {
		if s == "" || strings.ContainsAny(s, " \t'\"$\\") {
			s = "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
		out[i] = s
	}
	return out
}

// newID returns a random run ID.
func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
