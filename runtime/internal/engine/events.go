package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

const (
	setEventStepName = "DBOS.setEvent"
	getEventStepName = "DBOS.getEvent"
)

// SetEvent sets the calling workflow's event key to value: the last write
// wins, and every write is kept in DBOS's workflow_events_history under its
// step. Waiters in GetEvent, in any process and in DBOS clients, wake.
// Workflows only: elsewhere it fails with ErrNotInWorkflow.
func SetEvent(ctx context.Context, key string, value any) error {
	wf, err := workflowOnly(ctx, "SetEvent")
	if err != nil {
		return err
	}
	id := wf.nextStepID()
	if rec, ok, err := recordedAt(wf, id, setEventStepName); ok || err != nil {
		if err != nil {
			return err
		}
		return storedError(wf, rec)
	}
	encoded, err := encodeValue(value)
	if err != nil {
		return recordFailure(wf, id, setEventStepName, time.Now().UnixMilli(),
			fmt.Errorf("dbos: SetEvent %q of workflow %s: the value cannot be stored as JSON: %w", key, wf.id, err))
	}
	ev := sysdb.Event{WorkflowID: wf.id, Key: key, Value: encoded, Serialization: sysdb.FormatPortable}
	step := sysdb.StepRow{WorkflowID: wf.id, StepID: id, Name: setEventStepName, StartedMS: time.Now().UnixMilli()}
	stored, err := writeStep(wf, setEventStepName, func(ctx context.Context) (sysdb.StepRow, bool, error) {
		return wf.rt.store.SetEvent(ctx, ev, step)
	})
	if err != nil {
		return wf.abort(dbErr(err, "dbos: SetEvent %q of workflow %s", key, wf.id))
	}
	return storedError(wf, stored)
}

// GetEvent waits up to timeout for workflowID's event key and returns its
// value; ok is false when it was not set in time. From a workflow it is a
// step: a replay returns what the first execution read (and its timeout
// waits only what remains after a recovery).
func GetEvent[T any](ctx context.Context, workflowID, key string, timeout time.Duration) (_ T, _ bool, err error) {
	var zero T
	wf := workflowFrom(ctx)
	if wf != nil && stepFrom(ctx) != nil {
		wf = nil // inside a step: a plain read, the step records its outcome
	}
	var rt *Runtime
	var id, sleepID int
	if wf != nil {
		if halt := wf.halted(); halt != nil {
			return zero, false, refuse(halt, "dbos: GetEvent")
		}
		rt = wf.rt
		id, sleepID = wf.nextStepID(), wf.nextStepID()
		if rec, ok, err := recordedAt(wf, id, getEventStepName); ok || err != nil {
			if err != nil {
				return zero, false, err
			}
			return storedValue[T](wf, rec)
		}
		var ended func(error)
		ctx, ended = observe(ctx, wf, id, getEventStepName)
		defer func() { ended(err) }()
	} else {
		if rt, err = runtimeFrom(ctx); err != nil {
			return zero, false, err
		}
	}
	started := time.Now()
	w := rt.subscribe(sysdb.EventsChannel, sysdb.Payload(workflowID, key))
	defer w.cancel()
	var ev sysdb.Event
	read := func(ctx context.Context) (found bool, err error) {
		ev, found, err = rt.store.GetEvent(ctx, workflowID, key)
		return found, err
	}
	found, err := w.check(ctx, read)
	if err != nil {
		return zero, false, err
	}
	if !found {
		deadline := started.Add(timeout)
		if wf != nil {
			wake, err := wakeTime(wf, sleepID, timeout)
			if err != nil {
				return zero, false, err
			}
			deadline = time.UnixMilli(wake)
		}
		if found, err = w.until(ctx, wf, deadline, read); err != nil {
			return zero, false, err
		}
	}
	row := sysdb.StepRow{WorkflowID: workflowID, StepID: id, Name: getEventStepName, StartedMS: started.UnixMilli(), Serialization: ev.Serialization}
	if found {
		row.Output = ev.Value
	}
	if wf == nil {
		return storedValue[T](&workflowState{rt: rt, id: workflowID}, row)
	}
	// The value is recorded as read, in its own format: a replay decodes it
	// as the first execution did.
	row.WorkflowID = wf.id
	if !found {
		row.Serialization = ""
	}
	stored, fresh, dbErr := wf.rt.recordStepAs(row)
	if dbErr != nil {
		return zero, false, wf.abort(errorf(ErrDatabase, dbErr, "dbos: recording GetEvent of workflow %s", wf.id))
	}
	if !fresh {
		if err := checkStored(wf, stored, getEventStepName); err != nil {
			return zero, false, err
		}
	}
	return storedValue[T](wf, stored)
}

// recordStepAs is recordStep keeping row.Serialization.
func (rt *Runtime) recordStepAs(row sysdb.StepRow) (stored sysdb.StepRow, fresh bool, err error) {
	err = rt.retryDB(rt.dbCtx, func(ctx context.Context) (err error) {
		stored, fresh, err = rt.store.RecordStepAs(ctx, row)
		return err
	})
	return stored, fresh, err
}
