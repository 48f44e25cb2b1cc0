package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opendraas/draas/orchestrate"
	"github.com/opendraas/draas/plan"
)

func TestFromFailover(t *testing.T) {
	targets := Targets{RTO: 5 * time.Minute, RPO: time.Hour}
	r := FromFailover(drillReport(), targets)
	if r.Kind != KindDrill || r.Plan != "shop" || r.RunID != "run-42" || !r.Start.Equal(t0) || !r.End.Equal(at(5*time.Minute)) {
		t.Fatalf("header = %v %q %q %v %v", r.Kind, r.Plan, r.RunID, r.Start, r.End)
	}
	if r.Targets != targets {
		t.Errorf("Targets = %+v, want %+v", r.Targets, targets)
	}
	want := Targets{RTO: 4*time.Minute + 30*time.Second, RPO: 40 * time.Minute}
	if r.Achieved != want {
		t.Errorf("Achieved = %+v, want %+v (RTO from the report, RPO the oldest point's age)", r.Achieved, want)
	}
	if len(r.VMs) != 3 {
		t.Fatalf("%d VMs", len(r.VMs))
	}
	for i, w := range []struct {
		name    string
		status  Status
		steps   int
		retries int
	}{{"db", StatusOK, 5, 3}, {"web", StatusOK, 6, 0}, {"evil", StatusFailed, 5, 3}} {
		vm := r.VMs[i]
		if vm.Name != w.name || vm.Status != w.status || len(vm.Steps) != w.steps || vm.Retries != w.retries {
			t.Errorf("VM %d = %s %s, %d steps, %d retries; want %s %s, %d, %d",
				i, vm.Name, vm.Status, len(vm.Steps), vm.Retries, w.name, w.status, w.steps, w.retries)
		}
	}
	if s := r.VMs[2].Steps[4]; s.Status != orchestrate.Failed || s.Error != hostile || s.Attempts != 4 {
		t.Errorf("evil/healthy = %+v", s)
	}
	if len(r.Errors) != 1 || r.Errors[0] != "evil: healthy: "+hostile {
		t.Errorf("Errors = %q", r.Errors)
	}
	if !r.OnCriticalPath("web", "dns") || r.OnCriticalPath("evil", "healthy") {
		t.Errorf("critical path %q not carried over", r.CriticalPath)
	}
	if v := r.Verdict(); v != (Verdict{RTO: Fail, RPO: Fail, Cleanup: NotJudged, Overall: Fail}) {
		t.Errorf("Verdict = %+v: a failed VM meets no target", v)
	}
	notes := strings.Join(r.VMs[1].Notes, "\n")
	for _, want := range []string{"instance i-web at 10.9.0.11", "volumes vol-web1", "DNS A www.drill.example. → 10.9.0.11", "up after 4m30s", "25m0s old"} {
		if !strings.Contains(notes, want) {
			t.Errorf("web's notes lack %q:\n%s", want, notes)
		}
	}

	rep := drillReport()
	rep.Mode = "failover"
	if k := FromFailover(rep, targets).Kind; k != KindFailover {
		t.Errorf("Kind of a failover = %s", k)
	}
}

func TestFromFailback(t *testing.T) {
	r := FromFailback(failbackReport(), Targets{RTO: 10 * time.Minute, RPO: time.Minute})
	if r.Kind != KindFailback || r.Mode != "direct" {
		t.Fatalf("Kind, Mode = %s, %s", r.Kind, r.Mode)
	}
	if r.Achieved.RTO != 8*time.Minute || r.Achieved.RPO != 0 {
		t.Errorf("Achieved = %+v, want the downtime as RTO and no loss", r.Achieved)
	}
	a, b := r.VMs[0], r.VMs[1]
	if a.Status != StatusOK || len(a.Steps) != 5 || a.BytesMoved != 3<<30 || a.BlocksMoved != 6144 || a.Retries != 1 {
		t.Errorf("a = %+v", a)
	}
	if b.Status != StatusFailed || len(b.Steps) != 5 || b.Retries != 2 || b.Steps[3].Name != "copy" || b.Steps[3].Error != "read snap-b: throttled" {
		t.Errorf("b = %+v", b)
	}
	if b.Steps[4].Started() || b.Steps[4].Status != orchestrate.Skipped {
		t.Errorf("b/power-on = %+v, want skipped, never started", b.Steps[4])
	}
	if len(r.Errors) != 1 || !strings.HasPrefix(r.Errors[0], "b: copy: ") {
		t.Errorf("Errors = %q", r.Errors)
	}

	pre := failbackReport()
	pre.Mode = "pre-seed"
	pre.VMs[0].Up, pre.VMs[0].Downtime = false, 0
	pre.Steps = pre.Steps[:4] // a's steps up to its copy
	pre.VMs = pre.VMs[:1]
	r = FromFailback(pre, Targets{RTO: 10 * time.Minute, RPO: time.Minute})
	if r.Targets != (Targets{}) || r.VMs[0].Status != StatusOK {
		t.Errorf("pre-seed: Targets %+v, a %s; want no targets and a ok once copied", r.Targets, r.VMs[0].Status)
	}
	if v := r.Verdict(); v.Overall != Pass || v.RTO != NotJudged {
		t.Errorf("pre-seed verdict %+v", v)
	}
}

func TestFromReplicate(t *testing.T) {
	r := FromReplicate("shop", replicateResults(), Targets{RTO: time.Minute, RPO: 10 * time.Minute})
	if r.Kind != KindReplicate || r.Plan != "shop" {
		t.Fatalf("Kind, Plan = %s, %s", r.Kind, r.Plan)
	}
	if r.Targets != (Targets{RPO: 10 * time.Minute}) {
		t.Errorf("Targets = %+v, want the RPO only", r.Targets)
	}
	if !r.Start.Equal(t0) || !r.End.Equal(at(4*time.Minute+10*time.Second)) {
		t.Errorf("Start, End = %v, %v", r.Start, r.End)
	}
	if r.Achieved.RPO != 6*time.Minute+30*time.Second {
		t.Errorf("Achieved.RPO = %v", r.Achieved.RPO)
	}
	if want := []string{"web/copy"}; !reflect.DeepEqual(r.CriticalPath, want) {
		t.Errorf("CriticalPath = %q, want %q", r.CriticalPath, want)
	}
	db := r.VMs[0]
	want := Step{Name: "copy", Start: t0, End: at(90 * time.Second), Status: orchestrate.Succeeded, Attempts: 1}
	if len(db.Steps) != 1 || db.Steps[0] != want {
		t.Errorf("db steps = %+v, want [%+v]", db.Steps, want)
	}
	if db.BytesMoved != 64<<20 || db.BlocksMoved != 128 || db.BlocksSkipped != 8064 || db.Retries != 2 || db.RecoveryPoint != "rp-db-8" {
		t.Errorf("db = %+v", db)
	}
	if !strings.Contains(strings.Join(r.VMs[1].Notes, "\n"), "warning: old copy snap-0 not deleted yet") {
		t.Errorf("web's warning is not a note: %q", r.VMs[1].Notes)
	}
	mail := r.VMs[2]
	if mail.Status != StatusFailed || mail.Steps[0].Status != orchestrate.Failed || mail.Error != "copy: list recovery points: access denied" {
		t.Errorf("mail = %+v", mail)
	}
	tot := r.Totals()
	if tot.BytesMoved != 64<<20+1<<30 || tot.BlocksMoved != 2176 || tot.BlocksSkipped != 8164 || tot.Retries != 3 {
		t.Errorf("Totals = %+v", tot)
	}
	if v := r.Verdict(); v.RTO != NotJudged || v.RPO != Fail || v.Overall != Fail {
		t.Errorf("Verdict = %+v", v)
	}
	ok := FromReplicate("shop", replicateResults()[:2], Targets{RPO: 10 * time.Minute})
	if v := ok.Verdict(); v != (Verdict{RTO: NotJudged, RPO: Pass, Cleanup: NotJudged, Overall: Pass}) {
		t.Errorf("Verdict without the failure = %+v", v)
	}
}

func TestTargetsFromPlan(t *testing.T) {
	p := &plan.Plan{}
	p.Replication.Interval = plan.Duration(15 * time.Minute)
	if got := TargetsFromPlan(p, time.Hour); got != (Targets{RTO: time.Hour, RPO: 30 * time.Minute}) {
		t.Errorf("default RPO: %+v", got)
	}
	p.Replication.RPO = plan.Duration(20 * time.Minute)
	if got := TargetsFromPlan(p, 0); got != (Targets{RPO: 20 * time.Minute}) {
		t.Errorf("explicit RPO: %+v", got)
	}
}

func TestVerdict(t *testing.T) {
	base := func() Run {
		return Run{Kind: KindDrill, Targets: Targets{RTO: time.Minute, RPO: time.Hour},
			Achieved: Targets{RTO: 50 * time.Second, RPO: 30 * time.Minute},
			VMs:      []VM{{Name: "a", Status: StatusOK}}}
	}
	for _, tc := range []struct {
		name string
		edit func(*Run)
		want Verdict
	}{
		{"met", func(*Run) {}, Verdict{Pass, Pass, NotJudged, Pass}},
		{"rto missed", func(r *Run) { r.Achieved.RTO = 61 * time.Second }, Verdict{Fail, Pass, NotJudged, Fail}},
		{"exactly on target", func(r *Run) { r.Achieved = r.Targets }, Verdict{Pass, Pass, NotJudged, Pass}},
		{"no targets", func(r *Run) { r.Targets = Targets{} }, Verdict{NotJudged, NotJudged, NotJudged, Pass}},
		{"skipped VM", func(r *Run) { r.VMs = append(r.VMs, VM{Name: "b", Status: StatusSkipped}) }, Verdict{Fail, Fail, NotJudged, Fail}},
		{"clean", func(r *Run) { *r = WithCleanup(*r, CleanupProof{Removed: []string{"i-1"}, Verified: true}) }, Verdict{Pass, Pass, Pass, Pass}},
		{"leftovers", func(r *Run) {
			*r = WithCleanup(*r, CleanupProof{Removed: []string{"i-1"}, Remaining: []string{"vol-1"}, Verified: true})
		}, Verdict{Pass, Pass, Fail, Fail}},
		{"unverified", func(r *Run) { *r = WithCleanup(*r, CleanupProof{Removed: []string{"i-1"}}) }, Verdict{Pass, Pass, Fail, Fail}},
		{"errors", func(r *Run) { r.Errors = []string{"x"} }, Verdict{Pass, Pass, NotJudged, Fail}},
	} {
		r := base()
		tc.edit(&r)
		if got := r.Verdict(); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestWithCleanupCopies(t *testing.T) {
	removed := []string{"i-1", "vol-1"}
	r0 := Run{Kind: KindDrill, Errors: make([]string, 0, 4)}
	r := WithCleanup(r0, CleanupProof{Removed: removed, Remaining: []string{"vol-2"}, Verified: true})
	removed[0] = "changed"
	if r.Cleanup.Removed[0] != "i-1" {
		t.Error("WithCleanup kept the caller's slice")
	}
	if len(r.Errors) != 1 || !strings.Contains(r.Errors[0], "vol-2") {
		t.Errorf("Errors = %q", r.Errors)
	}
	if r0.Cleanup != nil || r0.Errors[:1][0] != "" {
		t.Error("WithCleanup changed its argument")
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for _, r := range []Run{
		WithCleanup(FromFailover(drillReport(), Targets{RTO: 5 * time.Minute, RPO: 90 * time.Second}),
			CleanupProof{Removed: []string{"i-db", "vol-db1"}, Remaining: []string{}, Verified: true}),
		FromFailback(failbackReport(), Targets{RTO: 10 * time.Minute}),
		FromReplicate("shop", replicateResults(), Targets{RPO: 10 * time.Minute}),
	} {
		var buf bytes.Buffer
		if err := WriteJSON(&buf, r); err != nil {
			t.Fatal(err)
		}
		got, err := ReadJSON(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("%s: round trip differs:\n got %+v\nwant %+v", r.Kind, got, r)
		}
		var raw map[string]any
		if err := json.Unmarshal(buf.Bytes(), &raw); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"kind", "plan", "start", "end", "targets", "achieved", "vms", "duration", "totals", "verdict"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("%s: JSON has no %q", r.Kind, k)
			}
		}
		if raw["duration"] != formatDuration(r.Duration()) {
			t.Errorf("duration = %v", raw["duration"])
		}
		if got := raw["verdict"].(map[string]any)["overall"]; got != string(r.Verdict().Overall) {
			t.Errorf("verdict.overall = %v", got)
		}
	}

	var buf bytes.Buffer
	r := FromFailover(drillReport(), Targets{RTO: 5 * time.Minute, RPO: 90*time.Second + 250*time.Millisecond})
	if err := WriteJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	s := buf.String()
	for _, want := range []string{`"targets": {` + "\n" + `    "rto": "5m0s",` + "\n" + `    "rpo": "1m30.25s"`,
		`"achieved": {` + "\n" + `    "rto": "4m30s",`, `"duration": "38s"`, `"start": "2026-05-01T10:00:00Z"`, `"bytesMoved": 0`} {
		if !strings.Contains(s, want) {
			t.Errorf("JSON lacks %q:\n%s", want, s)
		}
	}
	if _, err := ReadJSON(strings.NewReader(`{"targets":{"rto":"soon"}}`)); err == nil {
		t.Error("ReadJSON accepted a bad duration")
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 1500 * time.Microsecond: "2ms", 90 * time.Second: "1m30s",
		time.Hour + 250*time.Millisecond: "1h0m0.25s", 4*time.Minute + 12*time.Second + 499*time.Microsecond: "4m12s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for d, want := range map[time.Duration]string{0: "0", 500 * time.Millisecond: "500ms", 90 * time.Second: "1m30s",
		2 * time.Minute: "2m", 3 * time.Hour: "3h", 90 * time.Minute: "1h30m"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for span, want := range map[time.Duration]time.Duration{
		300 * time.Millisecond: 50 * time.Millisecond, 5 * time.Minute: 30 * time.Second, 4*time.Minute + 10*time.Second: 30 * time.Second,
		10 * time.Hour: time.Hour, 20 * 24 * time.Hour: 2 * 24 * time.Hour,
	} {
		if got := tickStep(span); got != want {
			t.Errorf("tickStep(%v) = %v, want %v", span, got, want)
		}
	}
}

var (
	barRE   = regexp.MustCompile(`<rect class="bar [^"]*"[^>]*>`)
	fieldRE = func(field string) *regexp.Regexp {
		return regexp.MustCompile(`data-field="` + field + `"[^>]*data-value="([^"]*)"`)
	}
)

func htmlOf(t *testing.T, r Run) string {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteHTML(&buf, r); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestHTML(t *testing.T) {
	r := WithCleanup(FromFailover(drillReport(), Targets{RTO: 5 * time.Minute, RPO: time.Hour}),
		CleanupProof{Removed: []string{"i-db", "i-web", "i-evil", "vol-db1"}, Verified: true})
	h := htmlOf(t, r)

	steps := 0
	for _, vm := range r.VMs {
		steps += len(vm.Steps)
	}
	bars := barRE.FindAllString(h, -1)
	if len(bars) != steps {
		t.Errorf("%d bars, want one per step: %d", len(bars), steps)
	}
	if !strings.Contains(h, `<svg id="gantt"`) || !strings.Contains(h, `data-bars="`+strconv.Itoa(steps)+`"`) {
		t.Error("svg#gantt lacks data-bars")
	}
	crit := 0
	for _, b := range bars {
		if strings.Contains(b, `data-critical="true"`) != strings.Contains(b, " crit\"") {
			t.Errorf("bar's class and data-critical disagree: %s", b)
		}
		if strings.Contains(b, `data-critical="true"`) {
			crit++
		}
	}
	if crit != len(r.CriticalPath)-1 { // every entry but failover's "run" step
		t.Errorf("%d bars on the critical path, want %d", crit, len(r.CriticalPath)-1)
	}
	if !strings.Contains(h, `data-vm="evil" data-step="healthy" data-status="failed" data-critical="false"`) {
		t.Error("no failed bar for evil/healthy")
	}

	for field, want := range map[string]string{
		"rto": "4m30s", "rto-target": "5m0s", "rpo": "40m0s", "rpo-target": "1h0m0s",
		"bytes": "0", "retries": "6", "errors": "1", "duration": "5m0s",
	} {
		m := fieldRE(field).FindStringSubmatch(h)
		if m == nil || m[1] != want {
			t.Errorf("data-field=%q: %q, want %q", field, m, want)
		}
	}
	if !strings.Contains(h, `class="num pass" data-field="rto" data-value="4m30s">4m30s</td>`) ||
		!strings.Contains(h, `data-field="rto-verdict" data-verdict="fail">fail<div class="reason">within the target, but 1 of 3 VMs not ok</div>`) {
		t.Error("the RTO cells do not show the JSON's value, within the target but failed")
	}
	if !strings.Contains(h, `id="cleanup" data-verdict="pass"`) || !strings.Contains(h, "<li>vol-db1</li>") {
		t.Error("no clean-up proof section")
	}
	if !strings.Contains(h, `<time data-field="start" datetime="2026-05-01T10:00:00Z">2026-05-01 10:00:00.000 UTC</time>`) {
		t.Error("the start time is not shown with the JSON's value")
	}

	// Never-started steps have a row but no bar.
	fb := FromFailback(failbackReport(), Targets{})
	h = htmlOf(t, fb)
	if n := len(barRE.FindAllString(h, -1)); n != 9 || !strings.Contains(h, `data-bars="9" data-steps="10"`) {
		t.Errorf("failback: %d bars, want 9 of 10 steps", n)
	}
	if !strings.Contains(h, "skipped (never started)") {
		t.Error("the skipped step is not shown")
	}
	if strings.Contains(h, `id="cleanup"`) {
		t.Error("a failback has a clean-up section")
	}
}

func TestHTMLEscapes(t *testing.T) {
	r := FromFailover(drillReport(), Targets{})
	evil := `x"><script>alert(1)</script><img src=x onerror=alert(2)>`
	r.Plan = evil
	r.RunID = evil
	r.VMs[2].Name = evil
	r.VMs[2].Notes = append(r.VMs[2].Notes, evil)
	r.VMs[2].Steps[4].Name = evil
	r.CriticalPath = append(r.CriticalPath, evil+"/"+evil)
	r = WithCleanup(r, CleanupProof{Removed: []string{evil}, Remaining: []string{evil}})
	h := htmlOf(t, r)
	for _, bad := range []string{"<script", "<img", `x">`} {
		if strings.Contains(h, bad) {
			i := strings.Index(h, bad)
			t.Errorf("unescaped %q in the page: …%s…", bad, h[max(i-80, 0):min(i+80, len(h))])
		}
	}
	if !strings.Contains(h, "&lt;script&gt;") {
		t.Error("the hostile text is not shown escaped")
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	r := FromReplicate("shop/prod eu", replicateResults(), Targets{RPO: 10 * time.Minute})
	r.Start = time.Date(2026, 5, 1, 12, 0, 7, 0, time.FixedZone("CEST", 2*3600))
	jp, hp, err := Write(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "replicate-shop_prod_eu-20260501T100007.json"); jp != want {
		t.Errorf("JSON path %s, want %s", jp, want)
	}
	if hp != strings.TrimSuffix(jp, ".json")+".html" {
		t.Errorf("HTML path %s", hp)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("%d files in dir, want 2 (no temporary files left)", len(entries))
	}
	b, err := os.ReadFile(jp)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Start.Equal(r.Start) || len(got.VMs) != 3 {
		t.Errorf("read back %+v", got)
	}
	h, err := os.ReadFile(hp)
	if err != nil || !bytes.HasPrefix(h, []byte("<!DOCTYPE html>")) {
		t.Errorf("HTML file: %v, %.40q", err, h)
	}
	if fi, err := os.Stat(hp); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("HTML file mode: %v", err)
	}
	if _, _, err := Write(filepath.Join(dir, "missing"), r); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
}

// TestFromFailoverNotesRemovedAndLeftoverVolumes: the volumes a run
// removed at its end, and those it could not, are in the VM's notes.
func TestFromFailoverNotesRemovedAndLeftoverVolumes(t *testing.T) {
	rep := drillReport()
	rep.VMs[1].RemovedVolumes = []string{"vol-root1"}
	rep.VMs[1].Leftover = []string{"volume vol-root2: throttled"}
	notes := strings.Join(FromFailover(rep, Targets{}).VMs[1].Notes, "\n")
	for _, want := range []string{"removed unused volumes vol-root1", "left behind: volume vol-root2: throttled"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
}
