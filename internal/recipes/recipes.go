// Package recipes finds the shell recipes of the repository's Markdown
// documentation, so that a test can run each one as written and the docs
// cannot drift from the code.
//
// A recipe is a fenced code block whose info string is sh or bash:
//
//	```sh
//	go run ./examples/drill
//	```
//
// The test in this package (TestRecipes, run when DRAAS_RECIPES=1, as .ci/run
// does) runs every recipe of README.md and docs/*.md with bash -e -o
// pipefail, in a scratch copy of the repository, with a time limit. A recipe
// that fails fails the test. A block that cannot run there says so in an HTML
// comment on the line just before its fence (several comments may be
// stacked); the reason is required and the test lists it:
//
//	<!-- recipe: skip (needs a real AWS account) -->
//	<!-- recipe: skip-line "go test ./..." (the test itself is part of it) -->
//	<!-- recipe: needs aws -->
//	<!-- recipe: timeout 3m -->
//
// skip leaves the whole block out. skip-line leaves out the lines whose
// command (the line without a trailing # comment, trimmed) is exactly the
// quoted text, and runs the rest. needs NAME skips the block when the
// command NAME is not on PATH, and runs it otherwise. timeout bounds the
// block's run (a Go duration) instead of the default limit, so that a
// recipe waiting for something that never comes fails soon.
package recipes

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Recipe is one shell block of a Markdown file.
type Recipe struct {
	File string // the Markdown file, as given to Parse
	Line int    // line of the opening fence, 1-based
	Lang string // "sh" or "bash"
	Body string // the block's lines, without the fences, each ending in "\n"

	// Skip is the reason the whole block is not run, or "".
	Skip string
	// SkipLines are the commands (see CommandOf) that are not run, each
	// with the reason.
	SkipLines []SkipLine
	// Needs are commands that must be on PATH for the block to run.
	Needs []string
	// Timeout bounds the block's run; 0 means the runner's default.
	Timeout time.Duration
}

// SkipLine is a command a recipe marks as not run, and why.
type SkipLine struct {
	Command string
	Reason  string
}

// Name identifies the recipe in test output: file:line.
func (r Recipe) Name() string { return fmt.Sprintf("%s:%d", r.File, r.Line) }

// Script returns the block as it runs: the lines of SkipLines replaced by a
// no-op that shows what was left out. It returns an error if a skip-line
// matches no line of the block (the marker is stale).
func (r Recipe) Script() (string, error) {
	used := make([]bool, len(r.SkipLines))
	var b strings.Builder
	for line := range strings.SplitAfterSeq(r.Body, "\n") {
		cmd := CommandOf(line)
		skipped := false
		for i, s := range r.SkipLines {
			if cmd == s.Command {
				used[i] = true
				skipped = true
			}
		}
		if skipped {
			fmt.Fprintf(&b, ": recipe line not run: %q\n", cmd)
			continue
		}
		b.WriteString(line)
	}
	for i, s := range r.SkipLines {
		if !used[i] {
			return "", fmt.Errorf("%s: skip-line %q matches no line of the block", r.Name(), s.Command)
		}
	}
	return b.String(), nil
}

// CommandOf returns a shell line's command: the line without a trailing
// comment (a # preceded by a blank), trimmed. It does not parse quotes; it
// is meant for the one-line commands that skip-line names.
func CommandOf(line string) string {
	line = strings.TrimSpace(line)
	if strings.HasPrefix(line, "#") {
		return ""
	}
	if i := strings.Index(line, " #"); i >= 0 {
		line = line[:i]
	} else if i := strings.Index(line, "\t#"); i >= 0 {
		line = line[:i]
	}
	return strings.TrimSpace(line)
}

var (
	markerRE = regexp.MustCompile(`^<!--\s*recipe:\s*(.*?)\s*-->$`)
	skipRE   = regexp.MustCompile(`^skip\s+\((.+)\)$`)
	lineRE   = regexp.MustCompile(`^skip-line\s+"([^"]+)"\s+\((.+)\)$`)
	needsRE  = regexp.MustCompile(`^needs\s+([A-Za-z0-9_.+-]+)$`)
	limitRE  = regexp.MustCompile(`^timeout\s+(\S+)$`)
)

// Parse returns the sh and bash blocks of a Markdown file with their
// markers. Its errors name file and line: a malformed or unknown recipe
// marker, one that is not directly followed by a sh or bash block, or an
// unclosed fence.
func Parse(file string, md []byte) ([]Recipe, error) {
	var (
		recipes []Recipe
		errs    []error
		pending *Recipe // markers seen since the last non-marker line
		pendAt  int     // line of the first pending marker
		inBlock bool
		fence   string // the opening fence's backticks or tildes
		indent  int    // the opening fence's indentation
		cur     *Recipe
		body    strings.Builder
	)
	sc := bufio.NewScanner(bytes.NewReader(md))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Text()
		trimmed := strings.TrimSpace(raw)
		if inBlock {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
				inBlock = false
				if cur != nil {
					cur.Body = body.String()
					recipes = append(recipes, *cur)
					cur = nil
				}
				continue
			}
			if cur != nil {
				body.WriteString(dedent(raw, indent))
				body.WriteString("\n")
			}
			continue
		}
		if m := markerRE.FindStringSubmatch(trimmed); m != nil {
			if pending == nil {
				pending = &Recipe{}
				pendAt = n
			}
			if err := applyMarker(pending, m[1]); err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: %w", file, n, err))
			}
			continue
		}
		if f, info, ok := openingFence(trimmed); ok {
			inBlock, fence = true, f
			indent = len(raw) - len(strings.TrimLeft(raw, " "))
			lang, _, _ := strings.Cut(info, " ")
			if lang == "sh" || lang == "bash" {
				cur = &Recipe{File: file, Line: n, Lang: lang}
				if pending != nil {
					cur.Skip, cur.SkipLines, cur.Needs, cur.Timeout = pending.Skip, pending.SkipLines, pending.Needs, pending.Timeout
				}
				body.Reset()
			} else if pending != nil {
				errs = append(errs, fmt.Errorf("%s:%d: recipe marker before a %q block, not a sh or bash one", file, pendAt, lang))
			}
			pending = nil
			continue
		}
		if pending != nil {
			errs = append(errs, fmt.Errorf("%s:%d: recipe marker not directly followed by a sh or bash block", file, pendAt))
			pending = nil
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", file, err))
	}
	if inBlock {
		errs = append(errs, fmt.Errorf("%s: a code block is not closed at the end of the file", file))
	}
	if pending != nil {
		errs = append(errs, fmt.Errorf("%s:%d: recipe marker at the end of the file", file, pendAt))
	}
	return recipes, errors.Join(errs...)
}

// applyMarker adds one marker's directive to r.
func applyMarker(r *Recipe, directive string) error {
	switch {
	case skipRE.MatchString(directive):
		if r.Skip != "" {
			return errors.New("two recipe: skip markers on one block")
		}
		r.Skip = skipRE.FindStringSubmatch(directive)[1]
	case lineRE.MatchString(directive):
		m := lineRE.FindStringSubmatch(directive)
		r.SkipLines = append(r.SkipLines, SkipLine{Command: m[1], Reason: m[2]})
	case needsRE.MatchString(directive):
		r.Needs = append(r.Needs, needsRE.FindStringSubmatch(directive)[1])
	case limitRE.MatchString(directive):
		d, err := time.ParseDuration(limitRE.FindStringSubmatch(directive)[1])
		if err != nil || d <= 0 {
			return fmt.Errorf("recipe marker %q: want a positive duration like 3m", directive)
		}
		r.Timeout = d
	default:
		return fmt.Errorf("recipe marker %q: want skip (REASON), skip-line \"COMMAND\" (REASON), needs COMMAND or timeout DURATION", directive)
	}
	return nil
}

// openingFence reports whether a trimmed line opens a fenced code block, and
// returns its fence and info string.
func openingFence(trimmed string) (fence, info string, ok bool) {
	for _, c := range []string{"`", "~"} {
		if strings.HasPrefix(trimmed, c+c+c) {
			n := len(trimmed) - len(strings.TrimLeft(trimmed, c))
			return trimmed[:n], strings.TrimSpace(trimmed[n:]), true
		}
	}
	return "", "", false
}

// dedent removes up to n leading spaces: the indentation of a fence inside a
// list item.
func dedent(s string, n int) string {
	for i := 0; i < n && strings.HasPrefix(s, " "); i++ {
		s = s[1:]
	}
	return s
}
