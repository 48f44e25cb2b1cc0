package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	vcsim "github.com/vmware/govmomi/simulator"

	"github.com/opendraas/draas"
	awssimsrv "github.com/opendraas/draas/awssim"
	"github.com/opendraas/draas/lab"
	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/plan"
	"github.com/opendraas/draas/replicate"
	"github.com/opendraas/draas/report"
)

// The tests drive draasctl as a process, built once by TestMain, as an
// operator or a script would.
var (
	draasctl string // the binary
	awssim   string // examples/awssim's binary
)

const threeTier = "../plans/three-tier.yaml"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "draasctl-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	draasctl = filepath.Join(dir, "draasctl")
	awssim = filepath.Join(dir, "awssim")
	// One go build for both: -o DIR/ writes each command into DIR.
	if out, err := exec.Command("go", "build", "-o", dir+string(filepath.Separator), ".", "../awssim").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is the environment of a draasctl process: dummy AWS credentials, no
// shared configuration and no instance metadata, so nothing but the
// simulators on 127.0.0.1 is ever asked.
func env(t *testing.T) []string {
	home := t.TempDir()
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"AWS_ACCESS_KEY_ID=AKIDTEST",
		"AWS_SECRET_ACCESS_KEY=test-secret",
		"AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + filepath.Join(home, "none"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"),
	}
}

// result is a finished draasctl process.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// ctl runs draasctl to the end.
func ctl(t *testing.T, extraEnv []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, draasctl, args...)
	cmd.Env = append(env(t), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		r.code = ee.ExitCode()
	} else {
		require.NoError(t, err, "run draasctl %q", args)
	}
	return r
}

// process is a draasctl (or awssim) process still running, whose output
// is read line by line.
type process struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	out   strings.Builder // stdout and stderr, as lines arrive
	lines chan string
	done  chan struct{}
}

func start(t *testing.T, extraEnv []string, bin string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(env(t), extraEnv...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	require.NoError(t, cmd.Start())
	p := &process{cmd: cmd, lines: make(chan string, 1000), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		close(p.lines)
	}()
	go func() {
		cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitFor returns the first line matching re, failing the test if none
// comes within the timeout.
func (p *process) waitFor(t *testing.T, re string, timeout time.Duration) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("the process ended before printing a line matching %q:\n%s", re, p.output())
			}
			if m := rx.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-deadline:
			t.Fatalf("no line matching %q within %s:\n%s", re, timeout, p.output())
		}
	}
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// wait waits for the process to end and returns its exit code.
func (p *process) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("the process did not end within %s:\n%s", timeout, p.output())
	}
	return p.cmd.ProcessState.ExitCode()
}

// readReport reads a report and checks its HTML page exists beside it.
func readReport(t *testing.T, path string) report.Run {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	run, err := report.ReadJSON(f)
	require.NoError(t, err)
	html, err := os.ReadFile(strings.TrimSuffix(path, ".json") + ".html")
	require.NoError(t, err)
	assert.Contains(t, string(html), "<html")
	return run
}

func lastReport(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^report: (\S+\.json)$`).FindAllStringSubmatch(out, -1)
	require.NotEmpty(t, m, "no report path in:\n%s", out)
	return m[len(m)-1][1]
}

func TestSimulatedDrillWithCleanup(t *testing.T) {
	state := t.TempDir()
	began := time.Now()
	r := ctl(t, nil, "--simulate", "--state", state, "drill", threeTier, "--cleanup", "--json")
	require.Equal(t, exitOK, r.code, r)
	assert.Less(t, time.Since(began), 30*time.Second)
	assert.Contains(t, r.stderr, "simulate: backed up db")
	assert.Contains(t, r.stderr, "simulate: replicated")

	// Exactly one JSON document on stdout: the report with the proof.
	var fromStdout report.Run
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	require.NoError(t, dec.Decode(&fromStdout))
	assert.False(t, dec.More(), "one JSON document on stdout")

	run := readReport(t, lastReport(t, r.stderr))
	assert.Equal(t, report.KindDrill, run.Kind)
	assert.Equal(t, "shop", run.Plan)
	require.Len(t, run.VMs, 3)
	for _, vm := range run.VMs {
		assert.Equal(t, report.StatusOK, vm.Status, vm.Name)
	}
	require.NotNil(t, run.Cleanup, "the clean-up proof is recorded")
	assert.True(t, run.Cleanup.Verified)
	assert.Empty(t, run.Cleanup.Remaining)
	assert.Len(t, run.Cleanup.Removed, 6, "3 instances and 3 volumes")
	assert.Equal(t, report.Pass, run.Verdict().Overall)
	assert.Equal(t, run.RunID, fromStdout.RunID)
	assert.NotNil(t, fromStdout.Cleanup)

	// report re-renders the page and judges the run.
	page := strings.TrimSuffix(lastReport(t, r.stderr), ".json") + ".html"
	require.NoError(t, os.Remove(page))
	rr := ctl(t, nil, "report", lastReport(t, r.stderr))
	require.Equal(t, exitOK, rr.code, rr)
	assert.Contains(t, rr.stdout, "drill of plan shop: ok, 3 of 3 VMs ok")
	assert.Contains(t, rr.stdout, "clean-up: pass")
	assert.FileExists(t, page)
}

func TestBadPlans(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string // in the message: file:line, field, fix
	}{
		{"syntax-error.yaml", []string{"syntax-error.yaml:7:", "did not find expected ',' or ']'", "YAML syntax"}},
		{"unknown-dependency.yaml", []string{"unknown-dependency.yaml:12:", "vms[2].dependsOn[0]", `unknown VM "dbb"`, "the plan's VMs are app, db, web"}},
		{"cycle.yaml", []string{"cycle.yaml:8:", "vms[0].dependsOn", "dependency cycle db → web → app → db", "remove one of these dependencies"}},
		{"missing-subnet.yaml", []string{"missing-subnet.yaml:11:", "vms[2].subnet", "VM web has no subnet", "set it or defaults.subnet"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			for _, args := range [][]string{
				{"validate", path},
				{"--simulate", "--state", t.TempDir(), "drill", path},
			} {
				r := ctl(t, nil, args...)
				assert.Equal(t, exitUsage, r.code, r)
				for _, w := range tc.want {
					assert.Contains(t, r.stderr, w, "%q", args)
				}
			}
		})
	}
	r := ctl(t, nil, "validate", threeTier)
	assert.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "plan shop is valid: 3 VMs, started in the order db → app → web")
}

func TestPlanDryRun(t *testing.T) {
	r := ctl(t, nil, "--state", t.TempDir(), "plan", threeTier)
	require.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "failover of plan shop: 3 VMs, 22 steps to run in 11 waves")
	assert.Contains(t, r.stdout, "wave 7: db/dns, app/launch")
	assert.Less(t, strings.Index(r.stdout, "db/launch"), strings.Index(r.stdout, "app/launch"))

	r = ctl(t, nil, "plan", "--drill", "--json", threeTier, "--state", t.TempDir())
	require.Equal(t, exitOK, r.code, r)
	var sc orchestrate.Schedule
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sc))
	assert.NotContains(t, sc.Order(), "db/dns", "a drill with no drill zone changes no DNS")
	assert.Contains(t, sc.Order(), "web/healthy")
}

func TestPlanFailbackDryRun(t *testing.T) {
	r := ctl(t, nil, "--state", t.TempDir(), "plan", "--failback", threeTier)
	require.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "failback-direct of plan shop: 3 VMs, 21 steps to run in")
	assert.Less(t, strings.Index(r.stdout, "db/power-on"), strings.Index(r.stdout, "app/power-on"), "VMs power on in dependency order")
	assert.Contains(t, r.stdout, "db/dns")

	r = ctl(t, nil, "plan", "--failback", "--pre-seed", "--json", threeTier, "--state", t.TempDir())
	require.Equal(t, exitOK, r.code, r)
	var sc orchestrate.Schedule
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &sc))
	assert.Contains(t, sc.Order(), "web/copy")
	assert.NotContains(t, sc.Order(), "web/power-on", "a pre-seed powers nothing on")

	r = ctl(t, nil, "plan", "--failback", "--cut-over", threeTier, "--state", t.TempDir())
	require.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "failback-cut-over of plan shop")

	r = ctl(t, nil, "plan", "--pre-seed", threeTier)
	assert.Equal(t, exitUsage, r.code, r)
	assert.Contains(t, r.stderr, "add --failback")
}

func TestSimulatedFailback(t *testing.T) {
	state := t.TempDir()
	r := ctl(t, nil, "--simulate", "--disk-mib", "8", "--state", state, "failback", threeTier, "--cut-over")
	require.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "simulate: failing over first")
	assert.Contains(t, r.stdout, "simulate: pre-seeding first")
	run := readReport(t, lastReport(t, r.stdout))
	assert.Equal(t, report.KindFailback, run.Kind)
	assert.Equal(t, "cut-over", run.Mode)
	for _, vm := range run.VMs {
		assert.Equal(t, report.StatusOK, vm.Status, vm.Name)
	}
	reports, err := filepath.Glob(filepath.Join(state, "*.json"))
	require.NoError(t, err)
	assert.Len(t, reports, 6, "failover, pre-seed and cut-over, each with its detail: %q", reports)
}

func TestReplicateWatchServesMetrics(t *testing.T) {
	p := start(t, nil, draasctl, "--simulate", "--disk-mib", "8", "--state", t.TempDir(), "--metrics", "127.0.0.1:0", "replicate", "--watch", threeTier)
	url := p.waitFor(t, `^metrics: (http://127\.0\.0\.1:\d+/metrics)$`, 20*time.Second)[1]
	p.waitFor(t, `^report: `, 30*time.Second) // a round is done
	resp, err := http.Get(url)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(body), `draas_replications_total{action="full",vm="db"} 1`)
	assert.Contains(t, string(body), `draas_dr_copy_rpo_ok{vm="web"} 1`)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	assert.Equal(t, exitOK, p.wait(t, 20*time.Second), "Ctrl-C is how --watch ends")
	assert.Contains(t, p.output(), "stopped.")
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, exitUsage, "no command given"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"-h"}, exitOK, "Exit codes: 0 ok"},
		{[]string{"drill", "-h"}, exitOK, "--cleanup removes it"},
		{[]string{"validate"}, exitUsage, "want 1 argument(s), PLAN"},
		{[]string{"validate", "testdata/nonexistent.yaml"}, exitUsage, "plan file testdata/nonexistent.yaml does not exist"},
		{[]string{"validate", "testdata"}, exitUsage, "testdata: is a directory: name the plan's YAML file"},
		{[]string{"--log-level", "loud", "validate", threeTier}, exitUsage, `--log-level "loud"`},
		{[]string{"failback", threeTier}, exitUsage, "pass --from REPORT"},
		{[]string{"failback", threeTier, "--from", "x.json", "--pre-seed", "--cut-over"}, exitUsage, "first --pre-seed"},
		{[]string{"drill", "--report", "x.json"}, exitUsage, "add --cleanup"},
		{[]string{"seed", threeTier}, exitUsage, "only against a simulator"},
		{[]string{"--simulate", "--endpoint", "http://127.0.0.1:1", "status", threeTier}, exitUsage, "--simulate runs its own simulators"},
		{[]string{"report", "testdata/cycle.yaml"}, exitUsage, "name a run's JSON report"},
	} {
		r := ctl(t, nil, tc.args...)
		assert.Equal(t, tc.code, r.code, "%q: %s", tc.args, r)
		assert.Contains(t, r.stdout+r.stderr, tc.want, "%q", tc.args)
	}
}

// simulator is a long-running examples/awssim process.
type simulator struct {
	url, s3url string
	ec2        *awsec2.Client
}

func startSimulator(t *testing.T) simulator {
	p := start(t, nil, awssim)
	t.Cleanup(func() { p.cmd.Process.Signal(syscall.SIGINT) })
	url := p.waitFor(t, `^(http://127\.0\.0\.1:\d+)$`, 10*time.Second)[1]
	s3url := p.waitFor(t, `^s3 (http://127\.0\.0\.1:\d+)$`, 10*time.Second)[1]
	cfg := aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(url),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "test-secret", "")}
	return simulator{url: url, s3url: s3url, ec2: awsec2.NewFromConfig(cfg)}
}

// instances returns the live instances of plan shop in role, by VM.
func (s simulator) instances(t *testing.T, role string) map[string][]string {
	t.Helper()
	out, err := s.ec2.DescribeInstances(context.Background(), &awsec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:" + draas.TagPlan), Values: []string{"shop"}},
		{Name: aws.String("tag:" + draas.TagRole), Values: []string{role}},
	}})
	require.NoError(t, err)
	got := map[string][]string{}
	for _, res := range out.Reservations {
		for _, in := range res.Instances {
			if in.State.Name == ec2types.InstanceStateNameTerminated {
				continue
			}
			for _, tag := range in.Tags {
				if aws.ToString(tag.Key) == draas.TagVM {
					got[aws.ToString(tag.Value)] = append(got[aws.ToString(tag.Value)], aws.ToString(in.InstanceId))
				}
			}
		}
	}
	return got
}

// volumes returns the IDs and states of the volumes that are not deleted.
func (s simulator) volumes(t *testing.T) []string {
	t.Helper()
	out, err := s.ec2.DescribeVolumes(context.Background(), &awsec2.DescribeVolumesInput{})
	require.NoError(t, err)
	var got []string
	for _, v := range out.Volumes {
		if v.State != ec2types.VolumeStateDeleted && v.State != ec2types.VolumeStateDeleting {
			got = append(got, aws.ToString(v.VolumeId)+" "+string(v.State))
		}
	}
	slices.Sort(got)
	return got
}

func (s simulator) linuxImage(t *testing.T) string {
	t.Helper()
	out, err := s.ec2.DescribeImages(context.Background(), &awsec2.DescribeImagesInput{Owners: []string{"amazon"},
		Filters: []ec2types.Filter{{Name: aws.String("root-device-name"), Values: []string{"/dev/xvda"}}}})
	require.NoError(t, err)
	require.NotEmpty(t, out.Images)
	return aws.ToString(out.Images[0].ImageId)
}

// TestInterruptedFailoverResumes runs the AWS path against a long-running
// awssim: seed it, replicate, fail over and interrupt the failover with
// SIGINT right after the app VM's instance was launched but before the
// journal recorded it, then rerun: the failover completes, the report
// shows the resumed steps, and the app VM has still one instance, the
// same. A drill and its clean-up from the drill's report, in a separate
// process, follow against the same simulator.
func TestInterruptedFailoverResumes(t *testing.T) {
	sim := startSimulator(t)
	state := t.TempDir()
	global := []string{"--endpoint", sim.url, "--s3-endpoint", sim.s3url, "--bucket", "draas-backups", "--prefix", "test", "--disk-mib", "8",
		"--state", state, "--poll", "10ms", "--health", "ec2", "--image-id", sim.linuxImage(t)}
	args := func(more ...string) []string { return append(append([]string{}, global...), more...) }

	// The simulator has no bucket until seed creates it, as an account
	// would not: a mistyped bucket is named as missing, not taken for an
	// empty store.
	r := ctl(t, nil, args("replicate", threeTier)...)
	assert.NotEqual(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout+r.stderr, "no bucket draas-backups")
	assert.NotContains(t, r.stdout+r.stderr, "back it up first")

	r = ctl(t, nil, args("seed", threeTier)...)
	require.Equal(t, exitOK, r.code, r)
	r = ctl(t, nil, args("replicate", threeTier)...)
	require.Equal(t, exitOK, r.code, r)
	r = ctl(t, nil, args("--bucket", "nosuch", "replicate", threeTier)...)
	assert.NotEqual(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout+r.stderr, "no bucket nosuch")
	assert.NotContains(t, r.stdout+r.stderr, "back it up first")
	r = ctl(t, nil, args("status", threeTier)...)
	require.Equal(t, exitOK, r.code, r)
	assert.Regexp(t, `(?m)^web\s+\S+\s+\d+s\s+30m0s\s+1\s+0\s+OK$`, r.stdout)

	p := start(t, []string{pauseEnv + "=app/launch"}, draasctl, args("failover", threeTier)...)
	p.waitFor(t, `test hook DRAAS_TEST_PAUSE_AT=app/launch: paused`, 30*time.Second)
	before := sim.instances(t, "failover")
	require.Len(t, before["app"], 1, "the app's instance exists while the step is paused")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	assert.Equal(t, exitInterrupted, p.wait(t, 20*time.Second), p.output())
	assert.Contains(t, p.output(), "To resume, run the same command again with the same --state")
	assert.Contains(t, p.output(), "failover of plan shop: INTERRUPTED")
	assert.Regexp(t, `(?m)^\s+app\s+cancelled\s`, p.output(), "the VM the interruption stopped is cancelled, not failed")
	assert.NotRegexp(t, `(?m)^\s+\S+\s+failed\s`, p.output())
	journal := filepath.Join(state, "shop-failover.journal")
	require.FileExists(t, journal)

	r = ctl(t, nil, args("plan", threeTier)...)
	require.Equal(t, exitOK, r.code, r)
	assert.Regexp(t, `(?m)^1\s+app/launch`, r.stdout, "the dry run starts where the failover stopped")

	r = ctl(t, nil, args("failover", threeTier)...)
	require.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "resuming from "+journal)
	run := readReport(t, lastReport(t, r.stdout))
	resumed := map[string]bool{}
	for _, vm := range run.VMs {
		assert.Equal(t, report.StatusOK, vm.Status, vm.Name)
		for _, s := range vm.Steps {
			if s.Status == orchestrate.Resumed {
				resumed[vm.Name+"/"+s.Name] = true
			}
		}
	}
	assert.True(t, resumed["db/launch"] && resumed["db/healthy"] && resumed["app/volumes"], "resumed steps: %v", resumed)
	assert.False(t, resumed["app/launch"], "the interrupted launch ran again")

	after := sim.instances(t, "failover")
	for _, vm := range []string{"db", "app", "web"} {
		assert.Len(t, after[vm], 1, "one instance of %s: %v", vm, after)
	}
	assert.Equal(t, before["app"], after["app"], "the resumed launch found the instance its client token made")
	assert.NoFileExists(t, journal, "a finished failover's journal is moved aside")
	done, _ := filepath.Glob(filepath.Join(state, "shop-failover-*.journal.done"))
	assert.Len(t, done, 1)

	failoverReport := lastReport(t, r.stdout)

	// The same command again, after the failover finished: it says the
	// plan is failed over and where the report is, and makes nothing.
	volumes := sim.volumes(t)
	for _, v := range volumes {
		assert.NotContains(t, v, " available", "the failover left a volume unused")
	}
	r = ctl(t, nil, args("failover", threeTier)...)
	require.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "plan shop is already failed over: run "+run.RunID)
	assert.Contains(t, r.stdout, "report: "+failoverReport)
	assert.Equal(t, volumes, sim.volumes(t), "no volume made")
	assert.Equal(t, after, sim.instances(t, "failover"), "no instance launched")
	// With another state directory, the journal and the report are not
	// there: the failover is refused, naming the instances that run.
	r = ctl(t, nil, append(args("failover", threeTier), "--state", t.TempDir())...)
	require.Equal(t, exitFailed, r.code, r)
	assert.Contains(t, r.stderr, "failover shop: already failed over: VM app runs on instance "+after["app"][0]+" (run "+run.RunID+")")
	assert.Contains(t, r.stderr, "No report of that failover is in")
	assert.Equal(t, volumes, sim.volumes(t), "no volume made")
	assert.Equal(t, after, sim.instances(t, "failover"), "no instance launched")

	// Failback writes to vSphere, which this test has not.
	r = ctl(t, nil, args("failback", threeTier, "--from", failoverReport)...)
	assert.Equal(t, exitUsage, r.code, r)
	assert.Contains(t, r.stderr, "pass --vcenter URL")

	// A drill interrupted right after web's instance was launched, then
	// removed by another process from the interrupted drill's report: the
	// instance the report does not name is found by the drill's tag.
	p = start(t, []string{pauseEnv + "=web/launch"}, draasctl, args("drill", threeTier)...)
	p.waitFor(t, `test hook DRAAS_TEST_PAUSE_AT=web/launch: paused`, 30*time.Second)
	require.Len(t, sim.instances(t, "drill"), 3)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	require.Equal(t, exitInterrupted, p.wait(t, 20*time.Second), p.output())
	drillReport := lastReport(t, p.output())
	run = readReport(t, drillReport)
	require.Equal(t, "web", run.VMs[2].Name)
	assert.Equal(t, report.StatusCancelled, run.VMs[2].Status, "web's launch was cut short: cancelled, not failed")
	assert.NotContains(t, strings.Join(run.VMs[2].Notes, " "), "instance ", "the report names no instance of web")
	require.FileExists(t, filepath.Join(state, "shop-drill.journal"))

	r = ctl(t, nil, args("drill", "--cleanup", "--report", drillReport)...)
	require.Equal(t, exitOK, r.code, r)
	assert.Empty(t, sim.instances(t, "drill"), "the drill is gone, web's instance too")
	run = readReport(t, drillReport)
	require.NotNil(t, run.Cleanup, "the proof is in the drill's report")
	assert.True(t, run.Cleanup.OK(), "%+v", run.Cleanup)
	assert.Len(t, run.Cleanup.Removed, 6, "3 instances and 3 volumes: %q", run.Cleanup.Removed)
	assert.NoFileExists(t, filepath.Join(state, "shop-drill.journal"), "the removed drill's journal is retired")
	assert.Len(t, sim.instances(t, "failover"), 3, "the clean-up left production alone")
}

func TestWriteRunKeepsOtherRuns(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	first := report.Run{Kind: report.KindFailover, Plan: "shop", RunID: "aaa", Start: start, End: start.Add(time.Second)}
	second := first
	second.RunID, second.Start = "bbb", start.Add(300*time.Millisecond) // the same second
	p1, _, err := writeRun(dir, first)
	require.NoError(t, err)
	p2, _, err := writeRun(dir, second)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "failover-shop-20260102T030405.json"), p1)
	assert.Equal(t, filepath.Join(dir, "failover-shop-20260102T030405-bbb.json"), p2)
	again, _, err := writeRun(dir, second)
	require.NoError(t, err)
	assert.Equal(t, p2, again, "the same run replaces its own report")
	assert.Equal(t, "aaa", readReport(t, p1).RunID)
}

func TestExitCode(t *testing.T) {
	live := context.Background()
	stopped, cancel := context.WithCancel(live)
	cancel()
	for _, tc := range []struct {
		ctx  context.Context
		err  error
		want int
	}{
		{live, nil, exitOK},
		{live, errors.New("boom"), exitFailed},
		{live, draas.Invalidf("bad"), exitUsage},
		{live, failed(draas.Invalidf("a step's bad input")), exitFailed},
		{live, missed(errors.New("slow")), exitMissed},
		{live, usagef("flag"), exitUsage},
		{live, errors.Join(draas.Invalidf("bad"), &draas.OpError{Op: "DescribeSubnets", Kind: draas.ErrThrottled, Err: errors.New("RequestLimitExceeded")}), exitFailed},
		{stopped, errors.New("cancelled"), exitInterrupted},
		{stopped, nil, exitOK},
	} {
		assert.Equal(t, tc.want, exitCode(tc.ctx, tc.err), "%v", tc.err)
	}
}

func TestParseInterleaved(t *testing.T) {
	var std stdio
	std.stdout, std.stderr = io.Discard, io.Discard
	a, _, args, err := parse([]string{"--state", "s1", "drill", "p.yaml", "--cleanup", "--simulate", "--", "--x"}, std, os.Getenv)
	require.NoError(t, err)
	assert.Equal(t, []string{"p.yaml", "--x"}, args)
	assert.Equal(t, "s1", a.g.state, "a global before the command stands")
	assert.True(t, a.g.simulate, "a global after the command counts")
}

func TestVSphereCredentials(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	require.NoError(t, os.WriteFile(good, []byte("# vCenter\nuser = admin@vsphere.local\npassword=s3cret=x\n"), 0o600))
	bad := filepath.Join(dir, "bad")
	require.NoError(t, os.WriteFile(bad, []byte("admin:s3cret\n"), 0o600))

	a := &app{getenv: func(string) string { return "" }}
	a.g.credentials = good
	user, pass, err := a.vsphereCredentials()
	require.NoError(t, err)
	assert.Equal(t, "admin@vsphere.local", user)
	assert.Equal(t, "s3cret=x", pass)

	a.g.credentials = bad
	_, _, err = a.vsphereCredentials()
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret", "a malformed line is not quoted")
	assert.Contains(t, err.Error(), bad+":1:")

	a.g.credentials = ""
	vars := map[string]string{"DRAAS_VSPHERE_USER": "u", "DRAAS_VSPHERE_PASSWORD": "p"}
	a.getenv = func(k string) string { return vars[k] }
	user, pass, err = a.vsphereCredentials()
	require.NoError(t, err)
	assert.Equal(t, [2]string{"u", "p"}, [2]string{user, pass})
}

// backupOutput checks backup's human output: a recovery point per VM, and
// a line per disk.
func backupOutput(t *testing.T, out string, vms ...string) {
	t.Helper()
	for _, vm := range vms {
		assert.Regexp(t, `(?m)^`+vm+`: recovery point \S+ in \S+$`, out)
	}
	assert.Len(t, regexp.MustCompile(`(?m)^\S+: recovery point `).FindAllString(out, -1), len(vms))
	assert.Regexp(t, `(?m)^  \S+\s+(full|incremental)\s+[\d.]+ (KiB|MiB) read$`, out)
}

func TestSimulatedBackup(t *testing.T) {
	r := ctl(t, nil, "--simulate", "--state", t.TempDir(), "--disk-mib", "8", "backup", threeTier)
	require.Equal(t, exitOK, r.code, r)
	backupOutput(t, r.stdout, "db", "app", "web")

	r = ctl(t, nil, "--simulate", "--state", t.TempDir(), "--disk-mib", "8", "--json", "backup", threeTier, "--vm", "web")
	require.Equal(t, exitOK, r.code, r)
	backupOutput(t, r.stderr, "web")
	var results []backupResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &results), r.stdout)
	require.Len(t, results, 1)
	assert.Equal(t, "web", results[0].VM)
	assert.NotEmpty(t, results[0].Point)
	require.NotEmpty(t, results[0].Disks)
	assert.Empty(t, results[0].Error)

	r = ctl(t, nil, "--simulate", "backup", threeTier, "--vm", "nope")
	assert.Equal(t, exitUsage, r.code, r)
	assert.Contains(t, r.stderr, "plan shop has no such VM")
	r = ctl(t, nil, "--bucket", "b", "backup", threeTier)
	assert.Equal(t, exitUsage, r.code, r)
	assert.Contains(t, r.stderr, "pass --vcenter URL")
}

// TestBackupFromVCenter runs the real path against simulators: the backup
// store in a long-running awssim (seeded first), the VMs on a vcsim in
// the test process, dialed with --vcenter, --thumbprint and credentials
// from the environment.
func TestBackupFromVCenter(t *testing.T) {
	sim := startSimulator(t)
	global := []string{"--endpoint", sim.url, "--s3-endpoint", sim.s3url, "--bucket", "draas-backups", "--prefix", "test",
		"--disk-mib", "8", "--state", t.TempDir()}
	args := func(more ...string) []string { return append(append([]string{}, global...), more...) }
	r := ctl(t, nil, args("seed", threeTier)...)
	require.Equal(t, exitOK, r.code, r)

	ctx := context.Background()
	p, err := plan.Load(threeTier)
	require.NoError(t, err)
	l, err := lab.Start(ctx, p, lab.Options{VSphere: true, DatastoreOverTLS: true, DiskMiB: 8})
	require.NoError(t, err)
	defer l.Close()
	pass, _ := vcsim.DefaultLogin.Password()
	creds := []string{"DRAAS_VSPHERE_USER=" + vcsim.DefaultLogin.Username(), "DRAAS_VSPHERE_PASSWORD=" + pass}

	r = ctl(t, creds, args("--vcenter", l.VCenter.URL, "--thumbprint", l.VCenter.Thumbprint, "--json", "backup", threeTier)...)
	require.Equal(t, exitOK, r.code, r)
	backupOutput(t, r.stderr, "db", "app", "web")
	var results []backupResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &results), r.stdout)
	require.Len(t, results, 3)
	for _, res := range results {
		require.Len(t, res.Disks, 1, res.VM)
		assert.Equal(t, "scsi0-0", res.Disks[0].Disk.Name, "vSphere's disk names: the backup read vcsim")
		assert.False(t, res.Disks[0].Incremental, "vcsim has no CBT")
		assert.Positive(t, res.Disks[0].Stats.BytesRead)
	}
	// A vCenter whose certificate is not the pinned one is refused.
	r = ctl(t, creds, args("--vcenter", l.VCenter.URL, "--thumbprint", strings.Repeat("AB:", 31)+"AB", "backup", threeTier, "--vm", "db")...)
	assert.Equal(t, exitFailed, r.code, r)
	assert.Contains(t, r.stderr, "vCenter "+l.VCenter.URL)
}

// TestResolveErrorExitCode: a plan naming what the account does not have
// is a usage error (exit 2) naming the plan file; a lookup AWS still
// throttled is a failed run (exit 1), whose message does not blame the
// plan.
func TestResolveErrorExitCode(t *testing.T) {
	ctx := context.Background()
	notFound := fmt.Errorf("defaults.securityGroups[0]: %w: no security group \"web\"", draas.ErrNotFound)
	err := resolveError("shop.yaml", notFound)
	assert.Equal(t, exitUsage, exitCode(ctx, err))
	assert.ErrorContains(t, err, "shop.yaml: defaults.securityGroups[0]")

	throttled := fmt.Errorf("defaults.securityGroups[0]: %w", &draas.OpError{Op: "DescribeSecurityGroups", Resource: `look up security group "web"`,
		Kind: draas.ErrThrottled, Err: errors.New("api error RequestLimitExceeded: Request limit exceeded.")})
	err = resolveError("shop.yaml", throttled)
	assert.Equal(t, exitFailed, exitCode(ctx, err), "%v", err)
	assert.ErrorIs(t, err, draas.ErrThrottled)
	assert.ErrorContains(t, err, "resolve the plan's network")
}

// TestThrottledAccount runs the AWS path against a simulator that throttles
// half of the calls to every API: status, replication and a failover
// complete as without throttling (exit 0, where the SDK's three attempts
// made status exit 1 and the failover exit 2 blaming the plan), and the
// summaries count the retries.
func TestThrottledAccount(t *testing.T) {
	srv, err := awssimsrv.New(awssimsrv.Options{})
	require.NoError(t, err)
	defer srv.Close()
	state := t.TempDir()
	global := []string{"--endpoint", srv.URL, "--s3-endpoint", srv.S3URL, "--bucket", "draas-backups", "--prefix", "test", "--disk-mib", "4",
		"--state", state, "--poll", "10ms", "--health", "ec2", "--image-id", srv.DefaultImageID(), "--max-backoff", "20ms"}
	args := func(more ...string) []string { return append(append([]string{}, global...), more...) }
	r := ctl(t, nil, args("seed", threeTier)...)
	require.Equal(t, exitOK, r.code, r)

	srv.Throttle("*", 0.5)
	r = ctl(t, nil, args("replicate", threeTier)...)
	require.Equal(t, exitOK, r.code, r)
	assert.Regexp(t, `(?m)^  retries: [1-9]\d* `, r.stdout+r.stderr)

	r = ctl(t, nil, args("status", threeTier)...)
	require.Equal(t, exitOK, r.code, r)
	assert.Regexp(t, `(?m)^web\s+\S+\s+\d+s\s+30m0s\s+1\s+0\s+OK$`, r.stdout)

	r = ctl(t, nil, args("failover", threeTier)...)
	require.Equal(t, exitOK, r.code, r)
	assert.Regexp(t, `(?m)^  retries: [1-9]\d* `, r.stdout+r.stderr)
	run := readReport(t, lastReport(t, r.stdout+r.stderr))
	assert.Positive(t, run.Totals().Retries)
	for _, vm := range run.VMs {
		assert.Equal(t, report.StatusOK, vm.Status, vm.Name)
	}
	assert.Positive(t, srv.Calls("DescribeSecurityGroups"))
}

// TestStatusSaysCopyPendingOrFailed: a VM within its RPO whose newer copy
// a replicate left unfinished is not plain OK: status says the copy is
// pending (or failed) and what to do.
func TestStatusSaysCopyPendingOrFailed(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, []replicate.VMStatus{
		{VM: "db", RecoveryPoint: "p1", Age: time.Minute, Target: 30 * time.Minute, OK: true, Copies: 1, Pending: 1, PendingPoint: "p2"},
		{VM: "app", RecoveryPoint: "p1", Age: time.Minute, Target: 30 * time.Minute, OK: true, Copies: 1, Pending: 1, PendingPoint: "p2", Failed: 1},
		{VM: "web", RecoveryPoint: "p1", Age: time.Minute, Target: 30 * time.Minute, OK: true, Copies: 1},
	})
	out := b.String()
	assert.Regexp(t, `(?m)^db\s+p1\s+1m0s\s+30m0s\s+1\s+1\s+OK, COPY PENDING$`, out)
	assert.Regexp(t, `(?m)^app\s+p1\s+1m0s\s+30m0s\s+1\s+1\s+OK, COPY FAILED$`, out)
	assert.Regexp(t, `(?m)^web\s+p1\s+1m0s\s+30m0s\s+1\s+0\s+OK$`, out)
	assert.Contains(t, out, "db: the copy of recovery point p2 is not complete")
	assert.Contains(t, out, "app: 1 copies of recovery point p2 failed")
}
