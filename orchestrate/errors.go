package orchestrate

import (
	"errors"
	"fmt"
	"time"

	"github.com/opendraas/draas"
)

// ErrInvalidGraph is wrapped by every error that reports a malformed [Graph]
// or [Step]: an empty or duplicate ID, a missing Run, an unknown dependency,
// a dependency cycle. It wraps [draas.ErrInvalid], so errors.Is matches
// either sentinel, and such errors are never retried.
var ErrInvalidGraph error = invalidGraphError{}

type invalidGraphError struct{}

func (invalidGraphError) Error() string { return "orchestrate: invalid graph" }
func (invalidGraphError) Unwrap() error { return draas.ErrInvalid }

// invalidf returns an error wrapping ErrInvalidGraph with a formatted message.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidGraph}, args...)...)
}

// ErrTimeout is wrapped by the error of a step attempt that outlived
// [Step.Timeout]. Such an error reports Timeout() == true and does not wrap
// context.DeadlineExceeded, so [draas.IsRetryable] (the default classifier of
// a [retry.Policy]) retries it: a hung attempt is abandoned and tried again.
var ErrTimeout = errors.New("orchestrate: step attempt timed out")

// attemptTimeout is the error of an attempt that outlived its step's Timeout.
// It is also the cause of the attempt's context, so a step that returns
// context.Cause(ctx) returns it directly.
type attemptTimeout struct {
	d time.Duration
}

func (e *attemptTimeout) Error() string {
	return fmt.Sprintf("orchestrate: attempt timed out after %v", e.d)
}
func (e *attemptTimeout) Unwrap() error { return ErrTimeout }
func (e *attemptTimeout) Timeout() bool { return true }

// ErrPanic is wrapped by the error of a step attempt (Run or Undo) that
// panicked. The panic is recovered in the goroutine that called the step and
// reported as that step's failure, with the panic value and stack in the
// message; it is not retried. A panic in a goroutine the step started itself
// cannot be recovered and crashes the program, as anywhere in Go.
var ErrPanic = errors.New("orchestrate: step panicked")

// StepError reports a step whose Run (or, during rollback, Undo) failed. Run
// returns one per failed step, joined, so errors.As finds them and errors.Is
// reaches the step's own error.
type StepError struct {
	// Step is the ID of the step.
	Step string
	// Undo is true when the error comes from the step's Undo during rollback.
	Undo bool
	// Attempts is the number of attempts made.
	Attempts int
	// Err is the last attempt's error.
	Err error
}

func (e *StepError) Error() string {
	op := "step"
	if e.Undo {
		op = "undo of step"
	}
	switch {
	case e.Attempts > 1:
		return fmt.Sprintf("%s %q failed after %d attempts: %v", op, e.Step, e.Attempts, e.Err)
	default:
		return fmt.Sprintf("%s %q failed: %v", op, e.Step, e.Err)
	}
}

// Unwrap returns the step's error.
func (e *StepError) Unwrap() error { return e.Err }
