package engine

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// halted says why no new step, transaction or child of the workflow may
// start: it was cancelled, it passed its deadline, or its runtime is shutting
// down; nil while it may go on. Wrappers ask before running anything, so a
// body that never looks at its context still stops at its next durable call.
func (w *workflowState) halted() error {
	if w.ctx == nil {
		return nil
	}
	if err := w.rt.leaseLost(); err != nil {
		// Fenced: the executor that adopts this workflow runs it from here.
		return err
	}
	if w.ctx.Err() == nil {
		// Shutdown reaches w.ctx a moment after the runtime's context (an
		// AfterFunc), and the deadline timer may not have fired yet: look
		// at the sources.
		if w.rt.ctx.Err() != nil {
			return w.interrupted()
		}
		if d, ok := w.ctx.Deadline(); !ok || time.Now().Before(d) {
			return nil
		}
		return fmt.Errorf("%w: workflow %s passed its timeout", ErrWorkflowCancelled, w.id)
	}
	cause := context.Cause(w.ctx)
	switch {
	case errors.Is(cause, ErrWorkflowCancelled):
		return cause
	case errors.Is(cause, ErrShutdown):
		return w.interrupted()
	case errors.Is(cause, ErrLeaseLost):
		return cause
	}
	// The body has returned: this is a goroutine that outlived it, and what
	// it starts would not be part of the workflow's recorded history.
	return fmt.Errorf("%w: workflow %s has already returned", ErrNondeterministic, w.id)
}

func (w *workflowState) interrupted() error {
	return fmt.Errorf("%w: workflow %s interrupted; it resumes on the next Launch", ErrShutdown, w.id)
}

// refuse is the error a wrapper of a halted workflow returns, naming what it
// did not start.
func refuse(halt error, what string) error {
	return fmt.Errorf("%s not started: %w", what, halt)
}
