package guest

import (
	"strings"
)

// shellVars is a file of shell variable assignments (KEY=value), as
// /etc/os-release and ifcfg files are. It keeps every line's text, so that it
// is written back byte for byte except for the assignments we change.
type shellVars struct {
	lines []shellLine
}

// shellLine is one line. For an assignment, prefix is everything up to and
// including '=', value the unquoted value, quote the quoting it had (0, '"'
// or '\”) and suffix what follows the value (spaces, a comment).
type shellLine struct {
	raw                   string
	key                   string
	prefix, value, suffix string
	quote                 byte
}

func parseShellVars(data []byte) *shellVars {
	f := &shellVars{}
	for _, raw := range strings.Split(string(data), "\n") {
		f.lines = append(f.lines, parseShellLine(raw))
	}
	return f
}

func parseShellLine(raw string) shellLine {
	l := shellLine{raw: raw}
	i := 0
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t') {
		i++
	}
	if strings.HasPrefix(raw[i:], "export ") {
		i += len("export ")
		for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t') {
			i++
		}
	}
	k := i
	for k < len(raw) && (raw[k] == '_' || 'A' <= raw[k] && raw[k] <= 'Z' || 'a' <= raw[k] && raw[k] <= 'z' || k > i && '0' <= raw[k] && raw[k] <= '9') {
		k++
	}
	if k == i || k == len(raw) || raw[k] != '=' {
		return l
	}
	key, prefix := raw[i:k], raw[:k+1]
	rest := raw[k+1:]
	var value strings.Builder
	var quote byte
	j := 0
	switch {
	case strings.HasPrefix(rest, `"`):
		quote = '"'
		j = 1
		for ; j < len(rest) && rest[j] != '"'; j++ {
			if rest[j] == '\\' && j+1 < len(rest) && strings.IndexByte("\\\"$`", rest[j+1]) >= 0 {
				j++
			}
			value.WriteByte(rest[j])
		}
		if j == len(rest) {
			return l // unterminated: not an assignment we understand
		}
		j++
	case strings.HasPrefix(rest, "'"):
		quote = '\''
		end := strings.IndexByte(rest[1:], '\'')
		if end < 0 {
			return l
		}
		value.WriteString(rest[1 : 1+end])
		j = end + 2
	default:
		for ; j < len(rest) && rest[j] != ' ' && rest[j] != '\t' && rest[j] != '\r'; j++ {
			if rest[j] == '"' || rest[j] == '\'' || rest[j] == '\\' || rest[j] == '$' || rest[j] == '`' {
				return l // shell syntax we do not interpret
			}
			value.WriteByte(rest[j])
		}
	}
	suffix := rest[j:]
	if t := strings.TrimLeft(suffix, " \t\r"); t != "" && t[0] != '#' {
		return l // more words after the value: not a plain assignment
	}
	l.key, l.prefix, l.value, l.suffix, l.quote = key, prefix, value.String(), suffix, quote
	return l
}

func (f *shellVars) bytes() []byte {
	var b strings.Builder
	for i, l := range f.lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l.raw)
	}
	return []byte(b.String())
}

// get returns the value of the last assignment to key.
func (f *shellVars) get(key string) (string, bool) {
	v, ok := "", false
	for _, l := range f.lines {
		if l.key == key {
			v, ok = l.value, true
		}
	}
	return v, ok
}

// has reports whether some key for which match is true is assigned.
func (f *shellVars) has(match func(key string) bool) bool {
	for _, l := range f.lines {
		if l.key != "" && match(l.key) {
			return true
		}
	}
	return false
}

// set gives every assignment to key the value v, keeping its quoting, or
// appends an assignment if there is none. It reports whether the text
// changed.
func (f *shellVars) set(key, v string) bool {
	found, changed := false, false
	for i := range f.lines {
		l := &f.lines[i]
		if l.key != key {
			continue
		}
		found = true
		if l.value == v {
			continue
		}
		l.value = v
		l.raw = l.prefix + shellQuote(v, l.quote) + l.suffix
		changed = true
	}
	if !found {
		line := parseShellLine(key + "=" + shellQuote(v, 0))
		// Append before the empty string that a final newline leaves.
		if n := len(f.lines); n > 0 && f.lines[n-1].raw == "" {
			f.lines = append(f.lines[:n-1], line, f.lines[n-1])
		} else {
			f.lines = append(f.lines, line)
		}
		changed = true
	}
	return changed
}

// remove deletes every assignment whose key match accepts and reports
// whether it deleted any.
func (f *shellVars) remove(match func(key string) bool) bool {
	kept := f.lines[:0]
	removed := false
	for _, l := range f.lines {
		if l.key != "" && match(l.key) {
			removed = true
			continue
		}
		kept = append(kept, l)
	}
	f.lines = kept
	return removed
}

// shellQuote writes v in the quoting q, or bare when q is 0 and v needs no
// quotes.
func shellQuote(v string, q byte) string {
	switch q {
	case '\'':
		if !strings.Contains(v, "'") {
			return "'" + v + "'"
		}
	case 0:
		if v != "" && strings.IndexFunc(v, func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("_-.,:/@+%=", r))
		}) < 0 {
			return v
		}
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`")
	return `"` + r.Replace(v) + `"`
}
