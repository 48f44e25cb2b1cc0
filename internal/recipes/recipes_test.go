package recipes

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	md := "# Title\n" +
		"\n" +
		"```sh\n" +
		"go run ./examples/drill   # the demo\n" +
		"go test ./...\n" +
		"```\n" +
		"<!-- recipe: skip (needs a real AWS account) -->\n" +
		"```bash\n" +
		"aws s3 ls\n" +
		"```\n" +
		"```go\n" +
		"package main\n" +
		"```\n" +
		"- in a list:\n" +
		"  <!-- recipe: skip-line \"go test ./...\" (CI runs it) -->\n" +
		"  <!-- recipe: needs aws -->\n" +
		"  <!-- recipe: timeout 90s -->\n" +
		"  ```sh\n" +
		"  go vet ./...\n" +
		"  go test ./...   # every test\n" +
		"  ```\n" +
		"````\n" +
		"```sh\n" +
		"not a recipe: inside a four-backtick block\n" +
		"````\n"
	got, err := Parse("x.md", []byte(md))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d recipes, want 3: %+v", len(got), got)
	}
	if r := got[0]; r.Name() != "x.md:3" || r.Lang != "sh" || r.Body != "go run ./examples/drill   # the demo\ngo test ./...\n" || r.Skip != "" || r.SkipLines != nil {
		t.Errorf("first recipe: %+v", r)
	}
	if r := got[1]; r.Name() != "x.md:8" || r.Lang != "bash" || r.Skip != "needs a real AWS account" {
		t.Errorf("second recipe: %+v", r)
	}
	r := got[2]
	if r.Name() != "x.md:18" || r.Timeout != 90*time.Second || r.Body != "go vet ./...\ngo test ./...   # every test\n" ||
		!slices.Equal(r.Needs, []string{"aws"}) ||
		!slices.Equal(r.SkipLines, []SkipLine{{Command: "go test ./...", Reason: "CI runs it"}}) {
		t.Errorf("third recipe: %+v", r)
	}
	script, err := r.Script()
	if err != nil {
		t.Fatal(err)
	}
	if want := "go vet ./...\n: recipe line not run: \"go test ./...\"\n"; script != want {
		t.Errorf("Script() = %q, want %q", script, want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, md, want string }{
		{"no reason", "<!-- recipe: skip -->\n```sh\nx\n```\n", `x.md:1: recipe marker "skip": want`},
		{"unknown", "<!-- recipe: maybe (why) -->\n```sh\nx\n```\n", `x.md:1: recipe marker "maybe (why)"`},
		{"before go", "<!-- recipe: skip (why) -->\n```go\nx\n```\n", `x.md:1: recipe marker before a "go" block`},
		{"gap", "<!-- recipe: skip (why) -->\n\n```sh\nx\n```\n", "x.md:1: recipe marker not directly followed"},
		{"at end", "text\n<!-- recipe: skip (why) -->\n", "x.md:2: recipe marker at the end"},
		{"unclosed", "```sh\nx\n", "x.md: a code block is not closed"},
		{"bad timeout", "<!-- recipe: timeout soon -->\n```sh\nx\n```\n", `x.md:1: recipe marker "timeout soon": want a positive duration`},
		{"two skips", "<!-- recipe: skip (a) -->\n<!-- recipe: skip (b) -->\n```sh\nx\n```\n", "x.md:2: two recipe: skip markers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.md", []byte(tc.md))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	rs, err := Parse("x.md", []byte("<!-- recipe: skip-line \"go test\" (why) -->\n```sh\ngo vet\n```\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs[0].Script(); err == nil || !strings.Contains(err.Error(), `skip-line "go test" matches no line`) {
		t.Errorf("Script error = %v, want a stale skip-line", err)
	}
}

func TestCommandOf(t *testing.T) {
	for in, want := range map[string]string{
		"go test ./...   # every test\n": "go test ./...",
		"  go vet ./...\n":               "go vet ./...",
		"# a comment\n":                  "",
		"echo a#b\n":                     "echo a#b",
		"x\t# tab comment":               "x",
	} {
		if got := CommandOf(in); got != want {
			t.Errorf("CommandOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// docFiles returns README.md and docs/*.md of the repository, relative to
// root.
func docFiles(t testing.TB, root string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := []string{"README.md"}
	for _, f := range files {
		rel, err := filepath.Rel(root, f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, filepath.ToSlash(rel))
	}
	return out
}

// repoRoot returns the directory of go.mod above the test's directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// loadRecipes parses every documentation file's recipes.
func loadRecipes(t testing.TB, root string) map[string][]Recipe {
	t.Helper()
	all := make(map[string][]Recipe)
	for _, f := range docFiles(t, root) {
		md, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			t.Fatal(err)
		}
		rs, err := Parse(f, md)
		if err != nil {
			t.Error(err)
			continue
		}
		all[f] = rs
	}
	return all
}

// commandLikeRE matches the first line of an untagged block that looks like
// a command someone would paste.
var commandLikeRE = regexp.MustCompile(`^(\$ |go (run|build|test|install|get) |\./|export |aws |bash |sh )`)

// TestDocRecipesWellFormed runs in every go test: the markers of README.md
// and docs/*.md parse, every skip-line matches a line, every recipe is valid
// bash (bash -n), no untagged block looks like a command (tag it sh, so
// that it runs, or text), and no block is tagged shell or console (which
// TestRecipes would not run).
func TestDocRecipesWellFormed(t *testing.T) {
	root := repoRoot(t)
	all := loadRecipes(t, root)
	bash, bashErr := exec.LookPath("bash")
	n := 0
	for _, f := range docFiles(t, root) {
		for _, r := range all[f] {
			n++
			script, err := r.Script()
			if err != nil {
				t.Error(err)
				continue
			}
			if bashErr != nil {
				continue
			}
			cmd := exec.Command(bash, "-n")
			cmd.Stdin = strings.NewReader(script)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s: bash -n: %v\n%s", r.Name(), err, out)
			}
		}
		md, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(md), "\n")
		in := false
		for i, l := range lines {
			trimmed := strings.TrimSpace(l)
			fence, info, ok := openingFence(trimmed)
			switch {
			case in && strings.HasPrefix(trimmed, "```"):
				in = false
			case !in && ok && fence == "```":
				in = true
				if info == "" && i+1 < len(lines) && commandLikeRE.MatchString(strings.TrimSpace(lines[i+1])) {
					t.Errorf("%s:%d: an untagged block that looks like a command: tag it sh (it then runs in CI) or text", f, i+1)
				}
				if lang, _, _ := strings.Cut(info, " "); slices.Contains([]string{"shell", "console", "zsh", "terminal", "shell-session"}, lang) {
					t.Errorf("%s:%d: a %s block: tag it sh, so that it runs in CI", f, i+1, lang)
				}
			}
		}
	}
	if bashErr != nil {
		t.Logf("bash not found: recipes not syntax-checked")
	}
	t.Logf("%d shell recipes in README.md and docs/*.md", n)
}
