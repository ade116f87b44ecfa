package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

// ErrNotInWorkflow: a workflow-only call (Sleep, Recv, SetEvent,
// WriteStream, CloseStream) made outside a workflow body, or inside a step
// or transaction, where it could not be recorded as a step of its own.
var ErrNotInWorkflow = errors.New("dbos: only a workflow body can call this, not a step, a transaction or code outside a workflow")

func init() { registerError("dbos.not_in_workflow", ErrNotInWorkflow) }

// Step names, as DBOS records them, so that DBOS's tools show them alike.
const (
	sleepStepName = "DBOS.sleep"
)

// workflowOnly returns the workflow ctx runs in, or ErrNotInWorkflow naming
// the call.
func workflowOnly(ctx context.Context, what string) (*workflowState, error) {
	if s := stepFrom(ctx); s != nil {
		return nil, fmt.Errorf("%w: %s called inside step %s", ErrNotInWorkflow, what, s.info.Name)
	}
	wf := workflowFrom(ctx)
	if wf == nil {
		return nil, fmt.Errorf("%w: %s called outside a workflow", ErrNotInWorkflow, what)
	}
	if halt := wf.halted(); halt != nil {
		return nil, refuse(halt, "dbos: "+what)
	}
	return wf, nil
}

// Sleep pauses the workflow for d, durably: the wake-up time is recorded as
// a step on first execution, so an execution resumed after a crash sleeps
// only what remains (and not at all when the time has passed). Cancellation,
// timeout or shutdown of the workflow ends the sleep with their error.
func Sleep(ctx context.Context, d time.Duration) (err error) {
	wf, err := workflowOnly(ctx, "Sleep")
	if err != nil {
		return err
	}
	id := wf.nextStepID()
	if _, replayed := wf.recorded[id]; !replayed {
		var done func(error)
		ctx, done = observe(ctx, wf, id, sleepStepName)
		defer func() { done(err) }()
	}
	wakeMS, err := wakeTime(wf, id, d)
	if err != nil {
		return err
	}
	t := time.NewTimer(time.Until(time.UnixMilli(wakeMS)))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-wf.ctx.Done():
		return wf.halted()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wakeTime records (or replays) a DBOS.sleep step whose output is the unix
// ms at which it ends, as DBOS records it. Recv and GetEvent record their
// timeouts the same way, so that they too wait only what remains.
func wakeTime(wf *workflowState, id int, d time.Duration) (int64, error) {
	if rec, ok := wf.recorded[id]; ok {
		return replay[int64](wf, rec, sleepStepName)
	}
	now := time.Now()
	wake := now.Add(d).UnixMilli()
	return record(wf, sysdb.StepRow{WorkflowID: wf.id, StepID: id, Name: sleepStepName, StartedMS: now.UnixMilli()}, wake, nil)
}
