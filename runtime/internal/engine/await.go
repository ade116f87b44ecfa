package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

// How often a waiter (Recv, GetEvent, ReadStream) looks at the database by
// itself. On PostgreSQL notifications wake it, and the listener wakes every
// waiter after it reconnects, so the poll only catches what nothing
// announces (a DBOS tool writing without pg_notify). On SQLite, writes of
// this process wake it at once and the poll is how writes of other
// processes are seen.
const (
	pgPoll     = 5 * time.Second
	sqlitePoll = 200 * time.Millisecond
)

func (rt *Runtime) pollEvery() time.Duration {
	if rt.store.Notifies() {
		return pgPoll
	}
	return sqlitePoll
}

// waiter is a subscription to one payload on one channel, taken before the
// first look at the database so that a write between the look and the wait
// still wakes it.
type waiter struct {
	rt     *Runtime
	wake   <-chan struct{}
	cancel func()
}

func (rt *Runtime) subscribe(channel, payload string) *waiter {
	w, cancel := rt.store.Subscribe(channel, payload)
	return &waiter{rt: rt, wake: w, cancel: cancel}
}

// until waits until check holds or the deadline (zero: none) passes, and
// reports whether check held. The caller has looked once already (after
// subscribing): until looks again at each wake-up, poll and the deadline.
// It stops with the workflow's halt error when wf (may be nil) is
// cancelled, timed out or shut down, and with ctx's error when ctx ends.
func (w *waiter) until(ctx context.Context, wf *workflowState, deadline time.Time, check func(context.Context) (bool, error)) (bool, error) {
	var done <-chan struct{}
	if wf != nil {
		done = wf.ctx.Done()
	}
	var expired <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expired = t.C
	}
	poll := w.rt.pollEvery()
	for {
		// Jittered, so that many waiters started together do not poll
		// together.
		tick := time.NewTimer(poll/2 + rand.N(poll/2))
		select {
		case <-w.wake:
		case <-tick.C:
		case <-expired:
			tick.Stop()
			return w.check(ctx, check) // one last look: a write may have landed at the deadline
		case <-done:
			tick.Stop()
			return false, wf.halted()
		case <-ctx.Done():
			tick.Stop()
			return false, ctx.Err()
		}
		tick.Stop()
		ok, err := w.check(ctx, check)
		if ok || err != nil {
			return ok, err
		}
	}
}

func (w *waiter) check(ctx context.Context, check func(context.Context) (bool, error)) (ok bool, err error) {
	err = w.rt.retryDB(ctx, func(ctx context.Context) (err error) {
		ok, err = check(ctx)
		return err
	})
	if err != nil {
		return false, errorf(ErrDatabase, err, "dbos: waiting for a message, event or stream value")
	}
	return ok, nil
}

// recordedAt returns the outcome recorded under id by an earlier execution,
// checking that it is the call this execution makes.
func recordedAt(wf *workflowState, id int, name string) (sysdb.StepRow, bool, error) {
	rec, ok := wf.recorded[id]
	if !ok {
		return rec, false, nil
	}
	if rec.Name != name {
		return rec, true, wf.abort(&NondeterministicError{WorkflowID: wf.id, StepID: id, Recorded: rec.Name, Called: name})
	}
	return rec, true, nil
}

// checkStored checks a step row another execution recorded first.
func checkStored(wf *workflowState, stored sysdb.StepRow, name string) error {
	if stored.Name != name {
		return wf.abort(&NondeterministicError{WorkflowID: wf.id, StepID: stored.StepID, Recorded: stored.Name, Called: name})
	}
	return nil
}

// storedError is the error recorded in a step row, nil when none.
func storedError(wf *workflowState, rec sysdb.StepRow) error {
	if rec.Error == "" {
		return nil
	}
	recErr, err := decodeError(rec.Error, rec.Serialization)
	if err != nil {
		return wf.abort(errorf(ErrCorruptRecord, err, "dbos: recorded error of step %d (%s) of workflow %s", rec.StepID, rec.Name, wf.id))
	}
	return recErr
}

// storedValue decodes a value recorded by Recv or GetEvent: ok is false when
// none was (a timeout).
func storedValue[T any](wf *workflowState, rec sysdb.StepRow) (T, bool, error) {
	var zero T
	if err := storedError(wf, rec); err != nil {
		return zero, false, err
	}
	if rec.Output == "" {
		return zero, false, nil
	}
	v, err := decodeValue[T](rec.Output, rec.Serialization)
	if err != nil {
		return zero, false, errorf(ErrCorruptRecord, err, "dbos: value received by step %d (%s) of workflow %s does not decode as %T",
			rec.StepID, rec.Name, wf.id, zero)
	}
	return v, true, nil
}

// writeStep runs a write that records its own step (Send, SetEvent,
// WriteStream) on dbCtx, riding out outages, and returns the step as it is
// recorded: this one, or the one an earlier execution recorded.
func writeStep(wf *workflowState, name string, op func(context.Context) (sysdb.StepRow, bool, error)) (sysdb.StepRow, error) {
	var stored sysdb.StepRow
	var fresh bool
	err := wf.rt.retryDB(wf.rt.dbCtx, func(ctx context.Context) (err error) {
		stored, fresh, err = op(ctx)
		return err
	})
	if err != nil {
		return stored, err
	}
	if !fresh {
		return stored, checkStored(wf, stored, name)
	}
	return stored, nil
}

// recordFailure records err as the outcome of a write step that did not
// happen (a missing destination, a closed stream), so a replay fails alike.
func recordFailure(wf *workflowState, id int, name string, started int64, err error) error {
	_, err = record(wf, sysdb.StepRow{WorkflowID: wf.id, StepID: id, Name: name, StartedMS: started}, struct{}{}, err)
	return err
}

func dbErr(err error, format string, args ...any) error {
	return errorf(ErrDatabase, err, "%s", fmt.Sprintf(format, args...))
}

// observe tells the runtime's observer that a workflow's built-in step
// (a sleep, a send, a receive...) starts its first execution, and returns
// the function that tells it how the step ended: its wait shows in traces
// like a step's. Replays are not observed, as recorded steps are not.
func observe(ctx context.Context, wf *workflowState, id int, name string) (context.Context, func(error)) {
	at := StepAttempt{StepInfo: StepInfo{WorkflowID: wf.id, StepID: id, Name: name, MaxAttempts: 1}, WorkflowName: wf.name}
	obs := wf.rt.obs
	actx := obs.StepStarted(ctx, at)
	return actx, func(err error) {
		end := StepAttemptEnd{StepAttempt: at, Err: err, Interrupted: err != nil && (ctx.Err() != nil || wf.halted() != nil)}
		obs.StepEnded(context.WithoutCancel(actx), end)
	}
}
