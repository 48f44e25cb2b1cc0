package guestimage

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// ErrNoMirror is wrapped by [AptMirror]'s error when apt's sources name no
// mirror for the suite.
var ErrNoMirror = errors.New("guestimage: no Debian mirror in apt's sources")

// AptMirror returns the URI of the first source of Debian packages in apt's
// configuration under dir (normally "/etc/apt") that serves suite (for
// example "bookworm", not "bookworm-security") with the main component:
// sources.list, then sources.list.d/*.list and *.sources in name order, in
// the one-line and the deb822 formats. Disabled entries (Enabled: no) and
// deb-src are ignored.
func AptMirror(dir, suite string) (string, error) {
	files := []string{filepath.Join(dir, "sources.list")}
	more, _ := filepath.Glob(filepath.Join(dir, "sources.list.d", "*"))
	sort.Strings(more)
	files = append(files, more...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return "", fmt.Errorf("guestimage: reading apt sources: %w", err)
		}
		var entries []aptSource
		switch {
		case strings.HasSuffix(f, ".sources"):
			entries = parseDeb822(string(b))
		case strings.HasSuffix(f, ".list"):
			entries = parseOneLine(string(b))
		}
		for _, e := range entries {
			if e.serves(suite) {
				return e.uri, nil
			}
		}
	}
	return "", fmt.Errorf("%w: none under %s serves %s main", ErrNoMirror, dir, suite)
}

type aptSource struct {
	types      []string
	uri        string
	suites     []string
	components []string
	enabled    bool
}

func (s aptSource) serves(suite string) bool {
	return s.enabled && s.uri != "" && slices.Contains(s.types, "deb") &&
		slices.Contains(s.suites, suite) && slices.Contains(s.components, "main")
}

// parseOneLine reads "deb [options] uri suite component..." lines.
func parseOneLine(text string) []aptSource {
	var out []aptSource
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		// Options in brackets may hold spaces: drop them whole.
		if i := strings.Index(line, "["); i >= 0 {
			if j := strings.Index(line[i:], "]"); j >= 0 {
				line = line[:i] + " " + line[i+j+1:]
			}
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		out = append(out, aptSource{types: f[:1], uri: f[1], suites: f[2:3], components: f[3:], enabled: true})
	}
	return out
}

// parseDeb822 reads the stanzas of a .sources file.
func parseDeb822(text string) []aptSource {
	var out []aptSource
	fields := map[string]string{}
	last := ""
	flush := func() {
		if len(fields) > 0 {
			uris := strings.Fields(fields["uris"])
			s := aptSource{
				types:      strings.Fields(fields["types"]),
				suites:     strings.Fields(fields["suites"]),
				components: strings.Fields(fields["components"]),
				enabled:    !strings.EqualFold(strings.TrimSpace(fields["enabled"]), "no"),
			}
			for _, u := range uris {
				s.uri = u
				out = append(out, s)
			}
		}
		fields = map[string]string{}
		last = ""
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				fields[last] += " " + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
	}
	flush()
	return out
}
