package plan

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Limits on what a plan file may be, so that a broken or hostile file gives
// a short, useful answer instead of a flood of errors or a stalled process.
const (
	// MaxFileSize is the largest plan file Load reads: far more than a plan
	// of a thousand VMs with boot scripts at EC2's user data limit needs.
	MaxFileSize = 16 << 20
	// maxAliasNodes bounds how many values YAML aliases (*name) may expand
	// to in all. A plan may reuse a mapping through an alias; a document
	// whose aliases multiply ("billion laughs") is refused instead of
	// expanded.
	maxAliasNodes = 10000
	// maxErrors is how many problems an error lists; the rest are counted.
	maxErrors = 20
)

// shape checks the YAML document against the plan's Go types before it is
// decoded, so that a value of the wrong kind is reported with its field
// path, its line, the type expected and how to write it, rather than as
// the decoder's "cannot unmarshal !!seq into string". It expands aliases
// and merge keys (<<) as the decoder does, within maxAliasNodes.
type shape struct {
	file string
	es   Errors
}

// aliasBomb returns an error if the aliases in the document rooted at n
// expand it by more than maxAliasNodes values (each anchor's expanded
// size is counted once, so this takes time in the size of the file).
func aliasBomb(file string, n *yaml.Node) *Error {
	memo := map[*yaml.Node]int{}
	added, worst := 0, (*yaml.Node)(nil)
	var size func(n *yaml.Node) int
	size = func(n *yaml.Node) int {
		if v, ok := memo[n]; ok {
			return v
		}
		memo[n] = 1 // a cycle, which the parser refuses anyway, counts once
		total := 1
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			total = size(n.Alias)
			added += total
			if worst == nil || total > memo[worst] {
				worst = n
			}
		}
		for _, c := range n.Content {
			total += size(c)
			if total > 1<<30 {
				total = 1 << 30
			}
		}
		memo[n] = total
		return total
	}
	size(n)
	if added <= maxAliasNodes {
		return nil
	}
	return &Error{File: file, Line: worst.Line,
		Message: fmt.Sprintf("YAML aliases (*name) expand to more than %d values: a plan needs no such expansion; write the values out or use fewer aliases", maxAliasNodes)}
}

var durationType = reflect.TypeFor[Duration]()

// check walks n, the value of field, against t.
func (s *shape) check(n *yaml.Node, t reflect.Type, field string) {
	n = deref(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an empty value leaves the field unset
	}
	switch {
	case t == durationType:
		if !s.kind(n, yaml.ScalarNode, t, field) {
			return
		}
		if _, err := time.ParseDuration(n.Value); err != nil {
			s.add(n, field, "%q is not a duration: write it like 15m, 1h or 90s", n.Value)
		}
	case t.Kind() == reflect.Struct:
		if !s.kind(n, yaml.MappingNode, t, field) {
			return
		}
		s.fields(n, t, field, map[string]bool{})
	case t.Kind() == reflect.Slice:
		if !s.kind(n, yaml.SequenceNode, t, field) {
			return
		}
		for i, c := range n.Content {
			s.check(c, t.Elem(), fmt.Sprintf("%s[%d]", field, i))
		}
	default:
		if !s.kind(n, yaml.ScalarNode, t, field) {
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			s.add(n, field, "expected %s, got %q", describe(t), n.Value)
		}
	}
}

// fields checks the keys and values of mapping n against struct t; seen
// holds the keys already set, so that a merged mapping (<<) does not
// override them.
func (s *shape) fields(n *yaml.Node, t reflect.Type, field string, seen map[string]bool) {
	known := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		known[name] = f.Type
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		key := k.Value
		sub := key
		if field != "" {
			sub = field + "." + key
		}
		ft, ok := known[key]
		if !ok {
			msg := fmt.Sprintf("unknown field %q: check its spelling against the plan format (docs/plan-format.md)", key)
			if near := nearest(key, known); near != "" {
				msg = fmt.Sprintf("unknown field %q: did you mean %q? (docs/plan-format.md lists the fields)", key, near)
			}
			s.es = append(s.es, &Error{File: s.file, Line: k.Line, Field: sub, Message: msg})
			continue
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		s.check(v, ft, sub)
	}
	// Keys of merged mappings count only where the mapping itself does not
	// set them, as the decoder does.
	for _, m := range merges {
		m = deref(m)
		list := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			list = m.Content
		}
		for _, m := range list {
			if m = deref(m); m.Kind != yaml.MappingNode {
				s.add(m, field, "a merge (<<) takes a mapping or a list of mappings, got %s", got(m))
				continue
			}
			s.fields(m, t, field, seen)
		}
	}
}

// kind reports whether n is of kind k, and adds an error if not.
func (s *shape) kind(n *yaml.Node, k yaml.Kind, t reflect.Type, field string) bool {
	if n.Kind == k {
		return true
	}
	fix := ""
	switch {
	case k == yaml.SequenceNode && n.Kind == yaml.ScalarNode:
		fix = fmt.Sprintf(": write it as a list, e.g. [%s]", n.Value)
	case k == yaml.ScalarNode && n.Kind == yaml.SequenceNode:
		fix = ": write a single value, not a list"
	case k == yaml.MappingNode:
		fix = ": write its fields indented below it (field: value)"
	case k == yaml.ScalarNode && n.Kind == yaml.MappingNode:
		fix = ": write a single value, not fields"
	}
	s.add(n, field, "expected %s, got %s%s", describe(t), got(n), fix)
	return false
}

func (s *shape) add(n *yaml.Node, field, format string, args ...any) {
	s.es = append(s.es, &Error{File: s.file, Line: n.Line, Field: field, Message: fmt.Sprintf(format, args...)})
}

// describe says in words what a value of type t is written as.
func describe(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration (like 15m)"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "a whole number"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return "a list of mappings (- field: value)"
	case t.Kind() == reflect.Slice:
		return "a list of " + strings.TrimPrefix(describe(t.Elem()), "a ") + "s"
	case t.Kind() == reflect.Struct:
		return "a mapping (field: value)"
	}
	return t.String()
}

// got says in words what n is.
func got(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// nearest returns the known field that key most likely misspells, or "".
func nearest(key string, known map[string]reflect.Type) string {
	best, bestD := "", 3
	if len(key) > 64 {
		return ""
	}
	for k := range known {
		if strings.EqualFold(k, key) {
			return k
		}
		if d := distance(strings.ToLower(k), strings.ToLower(key)); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// bound removes repeated problems (the same message at the same line, as
// an alias repeats them) and keeps the first maxErrors, with a last one
// counting the rest.
func (es Errors) bound() Errors {
	seen := map[string]bool{}
	var out Errors
	more := 0
	for _, e := range es {
		k := fmt.Sprintf("%s\x00%d\x00%s", e.File, e.Line, e.Message)
		if seen[k] {
			continue
		}
		seen[k] = true
		if len(out) < maxErrors {
			out = append(out, e)
		} else {
			more++
		}
	}
	if more > 0 {
		file := out[0].File
		out = append(out, &Error{File: file, Message: fmt.Sprintf("and %d more problems: fix these first", more)})
	}
	return out
}
