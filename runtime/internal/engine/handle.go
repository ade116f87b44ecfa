package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

// Workflow statuses, as stored in the system database.
const (
	StatusPending                     = sysdb.StatusPending
	StatusSuccess                     = sysdb.StatusSuccess
	StatusError                       = sysdb.StatusError
	StatusCancelled                   = sysdb.StatusCancelled
	StatusMaxRecoveryAttemptsExceeded = sysdb.StatusDeadLetter
)

// WorkflowStatus is a workflow's row in the system database.
type WorkflowStatus struct {
	ID                 string
	Name               string
	Status             string
	ExecutorID         string
	ApplicationVersion string
	ParentID           string
	RecoveryAttempts   int
	Deadline           time.Time // zero: none
	CreatedAt          time.Time
	UpdatedAt          time.Time
	// Err is the recorded error of a workflow in ERROR, CANCELLED or
	// MAX_RECOVERY_ATTEMPTS_EXCEEDED.
	Err error
}

// WorkflowHandle refers to a started workflow.
type WorkflowHandle[R any] struct {
	rt *Runtime
	id string
	ex *execution // set when the workflow runs (or ran) in this runtime
	// servedHere: enqueued to a queue this runtime serves, so Result first
	// waits for it to start here before reading its row.
	servedHere bool
}

// ID returns the workflow's ID.
func (h *WorkflowHandle[R]) ID() string { return h.id }

// Result waits for the workflow to finish and returns its result. ctx bounds
// the wait only: cancelling it does not cancel the workflow.
// errRunningElsewhere ends a start in this runtime that found its workflow
// running under another executor: its callers poll the row instead.
var errRunningElsewhere = errors.New("dbos: workflow running under another executor")

func (h *WorkflowHandle[R]) Result(ctx context.Context) (R, error) {
	var zero R
	ex := h.ex
	delay := 20 * time.Millisecond
	if ex == nil && h.servedHere {
		ex = h.rt.waitLocalStart(ctx, h.id, delay)
	}
	for {
		if ex != nil {
			select {
			case <-ex.done:
				if ex.err != errRunningElsewhere {
					return typed[R](h.id, ex.value, ex.err)
				}
				ex = nil // joined a start that found it running elsewhere: poll
				continue
			case <-ctx.Done():
				return zero, ctx.Err()
			}
		}
		// Running elsewhere (another process or runtime): poll its row.
		if err := h.rt.shutDownError(); err != nil {
			return zero, err
		}
		row, err := h.rt.store.Workflow(ctx, h.id)
		switch {
		case errors.Is(err, sysdb.ErrNotFound):
			return zero, fmt.Errorf("%w: %s", ErrWorkflowNotFound, h.id)
		case err != nil && !sysdb.IsTransient(err):
			return zero, errorf(ErrDatabase, err, "dbos: reading the status of workflow %s", h.id)
		case err == nil && row.Status != sysdb.StatusPending && !queued(row.Status):
			v, err := outcome[R](row)
			return typed[R](h.id, v, err)
		}
		if ex = h.rt.waitLocalStart(ctx, h.id, delay); ex != nil {
			continue
		}
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
		delay = min(delay*2, time.Second)
	}
}

// Status reads the workflow's current row.
func (h *WorkflowHandle[R]) Status(ctx context.Context) (WorkflowStatus, error) {
	return h.rt.WorkflowStatus(ctx, h.id)
}

func typed[R any](id string, v any, err error) (R, error) {
	switch x := v.(type) {
	case R:
		return x, err
	case rawJSON:
		out, derr := decodeValue[R](x.text, x.format)
		if derr != nil {
			return out, errorf(ErrCorruptRecord, derr, "dbos: recorded output of workflow %s", id)
		}
		return out, err
	}
	var zero R
	return zero, err
}

// RetrieveWorkflow returns a handle to the workflow with this ID, running or
// finished, in this process or another.
func RetrieveWorkflow[R any](ctx context.Context, id string) (*WorkflowHandle[R], error) {
	rt, err := runtimeFrom(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := rt.WorkflowStatus(ctx, id); err != nil {
		return nil, err
	}
	return &WorkflowHandle[R]{rt: rt, id: id, ex: rt.running(id)}, nil
}

// WorkflowStatus reads a workflow's row.
func (rt *Runtime) WorkflowStatus(ctx context.Context, id string) (WorkflowStatus, error) {
	if err := rt.shutDownError(); err != nil {
		return WorkflowStatus{}, err
	}
	row, err := rt.store.Workflow(ctx, id)
	if errors.Is(err, sysdb.ErrNotFound) {
		return WorkflowStatus{}, fmt.Errorf("%w: %s", ErrWorkflowNotFound, id)
	}
	if err != nil {
		return WorkflowStatus{}, errorf(ErrDatabase, err, "dbos: reading the status of workflow %s", id)
	}
	st := WorkflowStatus{ID: id, Name: row.Name, Status: row.Status, ExecutorID: row.ExecutorID,
		ApplicationVersion: row.AppVersion, ParentID: row.ParentID, RecoveryAttempts: row.RecoveryAttempts,
		CreatedAt: time.UnixMilli(row.CreatedMS), UpdatedAt: time.UnixMilli(row.UpdatedMS)}
	if row.DeadlineMS > 0 {
		st.Deadline = time.UnixMilli(row.DeadlineMS)
	}
	if row.Status != sysdb.StatusPending && row.Status != sysdb.StatusSuccess {
		st.Err = statusError(row)
	}
	return st, nil
}

// CancelWorkflow cancels a PENDING workflow and its PENDING descendants:
// their status becomes CANCELLED and the contexts of their running
// executions, in any process, are cancelled. From then on none of them
// starts a step, transaction or child, whether or not its body watches its
// context. A step interrupted this way is not recorded. Cancelling a finished
// workflow does nothing to it (its PENDING descendants are still cancelled).
func CancelWorkflow(ctx context.Context, id string) error {
	rt, err := runtimeFrom(ctx)
	if err != nil {
		return err
	}
	return rt.CancelWorkflow(ctx, id)
}

// CancelWorkflow is the package-level CancelWorkflow on this runtime.
func (rt *Runtime) CancelWorkflow(ctx context.Context, id string) error {
	if err := rt.shutDownError(); err != nil {
		return err
	}
	cause := fmt.Errorf("%w: workflow %s was cancelled", ErrWorkflowCancelled, id)
	if _, err := rt.store.Cancel(ctx, sysdb.CancelParams{ID: id}); err != nil {
		return errorf(ErrDatabase, err, "dbos: cancelling workflow %s", id)
	}
	if _, err := rt.WorkflowStatus(ctx, id); err != nil {
		return err
	}
	rt.cancelLocal(id, cause)
	rt.pollCancellations(ctx) // its descendants running here, at once
	return nil
}
