package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opendraas/draas/internal/oracle"
)

// chromium returns the path of a Chromium binary (see oracle.Require).
func chromium(t *testing.T) string {
	t.Helper()
	return oracle.Require(t, "chromium", "apt-get install chromium (or bash .ci/browser.sh)", "chromium-browser")
}

// runChromium runs headless Chromium with a fresh profile and returns its
// standard output.
func runChromium(ctx context.Context, t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	profile := t.TempDir()
	args = append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + profile,
	}, args...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+profile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// attr returns the value of the attribute of the first element matching
// the start of a tag, from Chromium's serialised DOM.
func attr(t *testing.T, dom, tagStart, name string) string {
	t.Helper()
	i := strings.Index(dom, tagStart)
	if i < 0 {
		t.Fatalf("no %s in the DOM", tagStart)
	}
	tag := dom[i : i+strings.IndexByte(dom[i:], '>')]
	m := regexp.MustCompile(` ` + regexp.QuoteMeta(name) + `="([^"]*)"`).FindStringSubmatch(tag)
	if m == nil {
		t.Fatalf("%s has no %s: %s", tagStart, name, tag)
	}
	return m[1]
}

// text returns the text content of the element with the given data-field.
func text(t *testing.T, dom, field string) string {
	t.Helper()
	m := regexp.MustCompile(`data-field="` + field + `"[^>]*>(.*?)</td>`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no cell data-field=%q in the DOM", field)
	}
	return regexp.MustCompile(`<[^>]*>`).ReplaceAllString(m[1], "")
}

// TestBrowser renders reports in headless Chromium and checks, from the DOM
// it built, that the chart is there with one bar per started step and that
// the page shows the JSON's numbers, and takes a screenshot of the drill's
// page (DRAAS_REPORT_SCREENSHOT=file.png keeps it).
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	bin := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 18*time.Second)
	defer cancel()
	dir := t.TempDir()

	drill := WithCleanup(FromFailover(drillReport(), Targets{RTO: 5 * time.Minute, RPO: time.Hour}),
		CleanupProof{Removed: []string{"i-db", "i-web", "i-evil", "vol-db1", "vol-db2", "vol-web1", "vol-evil"}, Verified: true})
	back := FromFailback(failbackReport(), Targets{RTO: 10 * time.Minute})
	back.Start = back.Start.Add(time.Second) // another file name

	for _, r := range []Run{drill, back} {
		jsonPath, htmlPath, err := Write(dir, r)
		if err != nil {
			t.Fatal(err)
		}
		var j struct {
			Achieved struct{ RTO, RPO string }
			Totals   struct{ BytesMoved int64 }
			VMs      []struct {
				Steps []struct{ Start string }
			}
			CriticalPath []string
		}
		b, err := os.ReadFile(jsonPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &j); err != nil {
			t.Fatal(err)
		}
		started := 0
		for _, vm := range j.VMs {
			for _, s := range vm.Steps {
				if s.Start != "" {
					started++
				}
			}
		}

		// One launch per page: the DOM, and for the drill a screenshot too.
		args := []string{"--dump-dom", "file://" + htmlPath}
		shot := filepath.Join(dir, string(r.Kind)+".png")
		if r.Kind == KindDrill {
			args = append(args, "--screenshot="+shot, "--window-size=1200,900")
		}
		dom := string(runChromium(ctx, t, bin, args...))
		if !strings.Contains(dom, `<svg id="gantt"`) {
			t.Fatalf("%s: no svg#gantt in the DOM:\n%.2000s", r.Kind, dom)
		}
		svg := dom[strings.Index(dom, `<svg id="gantt"`):]
		svg = svg[:strings.Index(svg, "</svg>")]
		bars := strings.Count(svg, `<rect class="bar `)
		if bars != started || attr(t, dom, `<svg id="gantt"`, "data-bars") != strconv.Itoa(started) {
			t.Errorf("%s: %d bars in the chart, data-bars %s; want %d (the JSON's started steps)",
				r.Kind, bars, attr(t, dom, `<svg id="gantt"`, "data-bars"), started)
		}
		crit := strings.Count(svg, `data-critical="true"`)
		if want := attr(t, dom, `<svg id="gantt"`, "data-critical"); strconv.Itoa(crit) != want {
			t.Errorf("%s: %d critical bars, data-critical %s", r.Kind, crit, want)
		}
		if got := text(t, dom, "rto"); got != j.Achieved.RTO {
			t.Errorf("%s: the page shows RTO %q, the JSON %q", r.Kind, got, j.Achieved.RTO)
		}
		if got := text(t, dom, "rpo"); got != j.Achieved.RPO {
			t.Errorf("%s: the page shows RPO %q, the JSON %q", r.Kind, got, j.Achieved.RPO)
		}
		if got, want := text(t, dom, "bytes"), fmt.Sprintf("(%d bytes)", j.Totals.BytesMoved); !strings.Contains(got, want) {
			t.Errorf("%s: the page shows bytes %q, want the JSON's %s", r.Kind, got, want)
		}
		if strings.Contains(dom, "<script") {
			t.Errorf("%s: the DOM has a script element", r.Kind)
		}
		if r.Kind == KindDrill {
			if !strings.Contains(dom, "&lt;script&gt;alert") {
				t.Error("the hostile error is not shown as text")
			}
			if crit == 0 {
				t.Error("no bar on the critical path")
			}
			checkScreenshot(t, shot)
		}
	}
}

// checkScreenshot checks that the PNG is a 1200×900 picture with content.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 30<<10 {
		t.Errorf("screenshot is %d bytes: too small to show the report", len(b))
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if s := img.Bounds().Size(); s.X != 1200 || s.Y != 900 {
		t.Errorf("screenshot is %v, want 1200×900", s)
	}
	colours := map[[3]uint32]bool{}
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y += 3 {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 3 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, b >> 8}] = true
		}
	}
	if len(colours) < 50 {
		t.Errorf("screenshot has %d colours: the page did not render", len(colours))
	}
	if dst := os.Getenv("DRAAS_REPORT_SCREENSHOT"); dst != "" {
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Error(err)
		}
	}
}
