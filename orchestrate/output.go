package orchestrate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"

	"github.com/opendraas/draas"
)

// Key names a typed output of a step: a value of type T that the step
// records with [Put] and that its dependents (and its own Undo) read with
// [Get]. A workflow creates its keys once, with [NewKey], and uses the same
// Key value wherever it records or reads that output, so that the name and
// the type are written in one place:
//
//	var instanceKey = orchestrate.NewKey[draas.Instance]("instance")
//
// Values are kept as JSON: in the run, in the [Journal] (so that a resumed
// run reads what an earlier run recorded) and in the [Report]. T must
// therefore survive a round trip through encoding/json; keep values small,
// as every journal entry holds its step's outputs.
type Key[T any] struct {
	name string
}

// NewKey returns the key of the output named name, of type T. Names are
// scoped to a step: two steps may record outputs under the same name.
func NewKey[T any](name string) Key[T] {
	return Key[T]{name: name}
}

// Name returns the key's name, under which its value is kept in
// [Outputs].
func (k Key[T]) Name() string { return k.name }

// From decodes k's value from outs, the outputs of one step as a
// [StepReport] or a journal [Entry] holds them. It reports false, with a
// nil error, if outs holds no value under k's name, and returns an error
// wrapping [ErrOutputType] if the value recorded there is not a T.
func (k Key[T]) From(outs Outputs) (T, bool, error) {
	var v T
	raw, ok := outs[k.name]
	if !ok {
		return v, false, nil
	}
	if err := decode(raw, &v); err != nil {
		return v, true, fmt.Errorf("%w: output %q holds %s, not a %v: %v", ErrOutputType, k.name, abbrev(raw), reflect.TypeFor[T](), err)
	}
	return v, true, nil
}

// Outputs are the outputs one step recorded: each value, JSON-encoded,
// under its key's name. A value recorded by an earlier version as a plain
// string is a JSON string, which a Key[string] reads.
type Outputs map[string]json.RawMessage

// ErrOutputType is wrapped by the error of [Get] (and [Key.From]) when the
// value recorded under a key's name does not decode as the key's type: two
// keys of different types share a name, or a journal written by another
// version of the workflow is resumed. It wraps [draas.ErrInvalid].
var ErrOutputType error = outputTypeError{}

type outputTypeError struct{}

func (outputTypeError) Error() string { return "orchestrate: output has another type" }
func (outputTypeError) Unwrap() error { return draas.ErrInvalid }

// ErrNoOutput is wrapped by the error of [Get] when the step recorded no
// value under the key (in this run or, for a resumed step, the run that
// finished it). It wraps [draas.ErrNotFound].
var ErrNoOutput error = noOutputError{}

type noOutputError struct{}

func (noOutputError) Error() string { return "orchestrate: no such output" }
func (noOutputError) Unwrap() error { return draas.ErrNotFound }

// decode decodes raw into v, refusing fields v does not have, so that a
// struct of another type is an error rather than a zero value.
func decode(raw json.RawMessage, v any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

func abbrev(raw json.RawMessage) string {
	if len(raw) > 40 {
		return string(raw[:37]) + "..."
	}
	return string(raw)
}

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

// errNoStep is returned by Put called with a context that is not a step's
// Run context, and by Get with one that is no step's context.
var errNoStep = draas.Invalidf("orchestrate: Put and Get need the context passed to a step's Run (or, for Get, Undo)")

// Put records v under k in the outputs of the step whose Run received ctx
// (or a context derived from it), replacing an earlier value under the same
// key, for example the instance the step launched. Outputs are saved in the
// [Journal] when the step succeeds, so that after a resume its dependents
// (and its Undo) still read them with [Get], and they appear in the
// [Report] (for a step that failed, what its attempts recorded). Values set
// by a failed attempt are kept for the next one, which may replace them.
//
// Put is safe for concurrent use. It returns an error, and records nothing,
// if ctx is not a step's Run context (an Undo context included) or v cannot
// be encoded as JSON.
func Put[T any](ctx context.Context, k Key[T], v T) error {
	s, _ := ctx.Value(scopeKey{}).(*scope)
	if s == nil || s.undo {
		return errNoStep
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("orchestrate: output %q of step %q: %w", k.name, s.r.dag.nodes[s.step].step.ID, err)
	}
	s.r.outMu.Lock()
	defer s.r.outMu.Unlock()
	if s.r.outputs[s.step] == nil {
		s.r.outputs[s.step] = make(Outputs)
	}
	s.r.outputs[s.step][k.name] = raw
	return nil
}

// Get returns the value recorded under k by step, which must be the step
// whose Run or Undo received ctx or one of its direct or transitive
// dependencies: those are the only steps certain to have finished. It
// returns an error wrapping [draas.ErrInvalid] if ctx is not a step's
// context or step is neither, one wrapping [ErrNoOutput] if no value was
// recorded under k (in this run or, for a resumed step, an earlier one), and
// one wrapping [ErrOutputType] if the value is not a T.
func Get[T any](ctx context.Context, step string, k Key[T]) (T, error) {
	var zero T
	s, _ := ctx.Value(scopeKey{}).(*scope)
	if s == nil {
		return zero, errNoStep
	}
	self := s.r.dag.nodes[s.step].step.ID
	i, ok := s.r.dag.index[step]
	if !ok || i != s.step && !s.r.dag.ancestor(i, s.step) {
		return zero, draas.Invalidf("orchestrate: step %q reads output %q of step %q, which is not one of its dependencies", self, k.name, step)
	}
	s.r.outMu.Lock()
	v, found, err := k.From(s.r.outputs[i])
	s.r.outMu.Unlock()
	switch {
	case err != nil:
		return zero, fmt.Errorf("step %q reads step %q: %w", self, step, err)
	case !found:
		return zero, fmt.Errorf("%w: step %q reads output %q of step %q, which recorded none", ErrNoOutput, self, k.name, step)
	}
	return v, nil
}

// outputsOf returns a copy of step i's outputs, or nil if it has none.
func (r *runner) outputsOf(i int) Outputs {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	if len(r.outputs[i]) == 0 {
		return nil
	}
	return maps.Clone(r.outputs[i])
}
