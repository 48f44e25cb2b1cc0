package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

//go:embed report.html.tmpl
var pageTemplate string

// page is parsed once; a parsed template is safe for concurrent Execute
// calls and never modified afterwards.
var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"dur":      formatDuration,
	"time":     formatTime,
	"jsontime": jsonTime,
	"since":    func(origin, t time.Time) string { return formatDuration(t.Sub(origin)) },
	"bytes":    formatBytes,
	"title":    kindTitle,
}).Parse(pageTemplate))

// kindTitle is the kind with a capital: "Drill".
func kindTitle(k Kind) string {
	if k == "" {
		return "Run"
	}
	return strings.ToUpper(string(k[:1])) + string(k[1:])
}

// WriteHTML writes the run as a self-contained HTML page (inline CSS, an
// inline SVG Gantt chart, no scripts, no external resources). Every value
// from the run is escaped by html/template.
//
// Elements carry data attributes for tools and tests. The summary's
// elements have data-field="rto", "rto-target", "rpo", "rpo-target",
// "duration", "vms", "bytes", "blocks", "blocks-skipped", "retries" and
// "errors", each with data-value holding the JSON's value (durations as
// the JSON writes them, counts as integers); "rto-verdict", "rpo-verdict"
// and "overall" have data-verdict. svg#gantt has data-bars (bars drawn: one
// per step that started), data-steps (all steps) and data-critical (bars on
// the critical path); each bar, rect.bar, has data-vm, data-step,
// data-status and data-critical. A replication run has no RTO row. The
// clean-up section, section#cleanup, has data-verdict.
func WriteHTML(w io.Writer, r Run) error {
	if err := page.Execute(w, newView(r)); err != nil {
		return fmt.Errorf("report: write HTML: %w", err)
	}
	return nil
}

// view is what the template shows.
type view struct {
	Run
	Duration string
	Totals   Totals
	Counts   struct{ OK, Failed, Cancelled, Skipped int }
	Verdict  Verdict
	RTO, RPO objective
	Gantt    gantt
}

// objective explains a judgement: Met judges the number alone (pass,
// fail, none), Reason says why the verdict is what it is.
type objective struct {
	Met    Outcome
	Reason string
}

func newView(r Run) view {
	v := view{Run: r, Duration: formatDuration(r.Duration()), Totals: r.Totals(), Verdict: r.Verdict(), Gantt: newGantt(r)}
	v.Counts.OK, v.Counts.Failed, v.Counts.Skipped = v.Totals.VMs[StatusOK], v.Totals.VMs[StatusFailed], v.Totals.VMs[StatusSkipped]
	v.Counts.Cancelled = v.Totals.VMs[StatusCancelled]
	notOK := len(r.VMs) - v.Counts.OK
	v.RTO = explain(r.Targets.RTO, r.Achieved.RTO, v.Verdict.RTO, notOK, len(r.VMs))
	v.RPO = explain(r.Targets.RPO, r.Achieved.RPO, v.Verdict.RPO, notOK, len(r.VMs))
	return v
}

func explain(target, achieved time.Duration, verdict Outcome, notOK, vms int) objective {
	switch {
	case verdict == NotJudged:
		return objective{NotJudged, "no target"}
	case achieved > target:
		return objective{Fail, "over the target by " + formatDuration(achieved-target)}
	case verdict == Fail:
		return objective{Pass, fmt.Sprintf("within the target, but %d of %d VMs not ok", notOK, vms)}
	}
	return objective{Pass, "within the target"}
}

// The Gantt chart's geometry, in SVG user units.
const (
	ganttWidth   = 1100
	ganttVMX     = 8   // x of VM names
	ganttStepX   = 150 // x of step names
	ganttChartX  = 290 // x of the time axis' origin
	ganttRight   = 20  // margin right of the axis' end
	ganttTop     = 34  // room for tick labels
	ganttRowH    = 22
	ganttBarH    = 14
	ganttBottom  = 8
	ganttMinBarW = 2.0
)

// gantt is the chart laid out: one row per step of each VM.
type gantt struct {
	Width, Height int
	// Geometry the template draws with.
	VMX, StepX, ChartX, ChartW, EndX float64
	AxisY, MissingX, RowH, BarH      float64
	Rows                             []ganttRow
	Ticks                            []ganttTick
	GroupLines                       []float64
	// Bars counts the bars drawn (the steps that started), Steps all
	// steps, Critical the bars on the critical path.
	Bars, Steps, Critical int
}

type ganttRow struct {
	Y, TextY, BarY float64
	VM             string // shown on the VM's first row only
	VMTitle        string
	Step           string
	StepTitle      string
	Stripe         bool
	Bar            *ganttBar
	Missing        string // why there is no bar
}

type ganttBar struct {
	X, Y, W  float64
	Status   string
	VM, Step string
	Critical bool
	Title    string
}

type ganttTick struct {
	X     float64
	Label string
}

// niceSteps are the tick intervals the axis may use.
var niceSteps = []time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// tickStep returns the smallest nice interval giving at most 10 ticks over
// span.
func tickStep(span time.Duration) time.Duration {
	for _, s := range niceSteps {
		if span/s <= 10 {
			return s
		}
	}
	return (span/10 + 24*time.Hour - 1) / (24 * time.Hour) * 24 * time.Hour
}

// shortDuration writes a tick label: "0", "500ms", "30s", "1m30s", "2h".
func shortDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// truncate shortens s to n runes with an ellipsis.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func newGantt(r Run) gantt {
	g := gantt{
		Width: ganttWidth, VMX: ganttVMX, StepX: ganttStepX, ChartX: ganttChartX, ChartW: ganttWidth - ganttChartX - ganttRight,
		AxisY: ganttTop - 6, MissingX: ganttChartX + 6, RowH: ganttRowH, BarH: ganttBarH,
	}
	g.EndX = g.ChartX + g.ChartW
	// The axis runs from the run's start (or the first step's, without
	// one) to the later of its end and the last step's end. Steps resumed
	// from an earlier run are clamped to the origin.
	origin, end := r.Start, r.End
	for _, vm := range r.VMs {
		for _, s := range vm.Steps {
			if !s.Started() {
				continue
			}
			if r.Start.IsZero() && (origin.IsZero() || s.Start.Before(origin)) {
				origin = s.Start
			}
			if s.End.After(end) {
				end = s.End
			}
		}
	}
	span := end.Sub(origin)
	if span <= 0 {
		span = time.Second
	}
	x := func(t time.Time) float64 {
		d := min(max(t.Sub(origin), 0), span)
		return g.ChartX + g.ChartW*float64(d)/float64(span)
	}
	step := tickStep(span)
	for d := time.Duration(0); d <= span; d += step {
		g.Ticks = append(g.Ticks, ganttTick{X: round1(g.ChartX + g.ChartW*float64(d)/float64(span)), Label: shortDuration(d)})
	}

	y := float64(ganttTop)
	for i, vm := range r.VMs {
		if i > 0 {
			g.GroupLines = append(g.GroupLines, y)
		}
		steps := vm.Steps
		if len(steps) == 0 {
			steps = []Step{{Name: "(no steps)"}}
		}
		for j, s := range steps {
			row := ganttRow{
				Y: y, TextY: y + ganttRowH/2 + 4, BarY: y + (ganttRowH-ganttBarH)/2,
				Step: truncate(s.Name, 18), StepTitle: s.Name, Stripe: i%2 == 1,
			}
			if j == 0 {
				row.VM, row.VMTitle = truncate(vm.Name, 18), vm.Name+": "+string(vm.Status)
			}
			switch {
			case len(vm.Steps) == 0:
				row.Missing = "no steps recorded"
			case !s.Started():
				g.Steps++
				row.Missing = string(s.Status) + " (never started)"
				if s.Error != "" {
					row.Missing += ": " + truncate(s.Error, 60)
				}
			default:
				g.Steps++
				x0, x1 := x(s.Start), x(s.End)
				b := &ganttBar{
					X: round1(x0), Y: row.BarY, W: round1(max(x1-x0, ganttMinBarW)),
					Status: string(s.Status), VM: vm.Name, Step: s.Name,
					Critical: r.OnCriticalPath(vm.Name, s.Name),
				}
				b.Title = barTitle(vm.Name, s, s.Start.Sub(origin), b.Critical)
				row.Bar = b
				g.Bars++
				if b.Critical {
					g.Critical++
				}
			}
			g.Rows = append(g.Rows, row)
			y += ganttRowH
		}
	}
	g.Height = int(y) + ganttBottom
	return g
}

func barTitle(vm string, s Step, offset time.Duration, critical bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s / %s: %s\nstart +%s, duration %s, %d attempt", vm, s.Name, s.Status,
		formatDuration(offset), formatDuration(s.Duration()), s.Attempts)
	if s.Attempts != 1 {
		b.WriteString("s")
	}
	if s.Error != "" {
		b.WriteString("\nerror: " + s.Error)
	}
	if critical {
		b.WriteString("\non the critical path")
	}
	return b.String()
}

// round1 rounds to a tenth of a unit, to keep the SVG short.
func round1(f float64) float64 { return math.Round(f*10) / 10 }
