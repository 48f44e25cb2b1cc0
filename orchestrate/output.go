package orchestrate

import (
	"context"
	"errors"
	"maps"
)

// scopeKey is the context key under which a step's context carries its scope.
type scopeKey struct{}

// scope identifies the step whose Run or Undo received a context.
type scope struct {
	r    *runner
	step int
	undo bool
}

func withScope(ctx context.Context, s *scope) context.Context {
	return context.WithValue(ctx, scopeKey{}, s)
}

// errNoStep is returned by SetOutput called with a context that is not a
// step's Run context.
var errNoStep = errors.New("orchestrate: SetOutput needs the context passed to a step's Run")

// SetOutput records value under key in the outputs of the step whose Run
// received ctx (or a context derived from it), replacing an earlier value
// under the same key, for example the ID of the instance the step launched.
// Outputs are saved in the [Journal] when the step succeeds, so that after a
// resume its dependents (and its Undo) still read them with [Output], and
// they appear in the [Report]. Keep them small: they are written with every
// journal entry. Values set by a failed attempt are kept for the next one.
//
// SetOutput is safe for concurrent use. It returns an error, and records
// nothing, if ctx is not a step's Run context (an Undo context included).
func SetOutput(ctx context.Context, key, value string) error {
	s, _ := ctx.Value(scopeKey{}).(*scope)
	if s == nil || s.undo {
		return errNoStep
	}
	s.r.outMu.Lock()
	defer s.r.outMu.Unlock()
	if s.r.outputs[s.step] == nil {
		s.r.outputs[s.step] = make(map[string]string)
	}
	s.r.outputs[s.step][key] = value
	return nil
}

// Output returns the value recorded under key by step, which must be the step
// whose Run or Undo received ctx or one of its direct or transitive
// dependencies: those are the only steps certain to have finished. It reports
// false if ctx is not a step's context, if step is neither, or if no value
// was recorded under key, in this run or (for a resumed step) an earlier one.
func Output(ctx context.Context, step, key string) (string, bool) {
	s, _ := ctx.Value(scopeKey{}).(*scope)
	if s == nil {
		return "", false
	}
	i, ok := s.r.dag.index[step]
	if !ok || i != s.step && !s.r.dag.ancestor(i, s.step) {
		return "", false
	}
	s.r.outMu.Lock()
	defer s.r.outMu.Unlock()
	v, ok := s.r.outputs[i][key]
	return v, ok
}

// outputsOf returns a copy of step i's outputs, or nil if it has none.
func (r *runner) outputsOf(i int) map[string]string {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	if len(r.outputs[i]) == 0 {
		return nil
	}
	return maps.Clone(r.outputs[i])
}
