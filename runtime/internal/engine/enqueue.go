package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
	"github.com/google/uuid"
)

// Enqueue puts the workflow on q and returns its handle at once; an
// executor serving q runs it within q's limits. Outside a workflow it is one
// statement. Inside a workflow it is a step of the caller: the child's ID is
// derived from the caller's, and a replay returns the handle of the child
// enqueued the first time without enqueueing again. From a step it is
// refused (ErrWorkflowInStep).
func (w *Workflow[A, R]) Enqueue(ctx context.Context, q *Queue, args A) (*WorkflowHandle[R], error) {
	if stepFrom(ctx) != nil {
		return nil, fmt.Errorf("%w: cannot enqueue workflow %s", ErrWorkflowInStep, w.opts.Name)
	}
	if q == nil {
		return nil, fmt.Errorf("%w: enqueue of workflow %s on a nil queue", ErrConfig, w.opts.Name)
	}
	o := q.call
	if err := checkEnqueue(q, o); err != nil {
		return nil, err
	}
	rt, err := runtimeFrom(ctx)
	if err != nil {
		return nil, err
	}
	id := o.WorkflowID
	if id == "" {
		id, _ = ctx.Value(workflowIDKey).(string)
	}
	if _, set := ctx.Value(workflowIDKey).(string); set || o.WorkflowID != "" {
		if err := validateWorkflowID(id); err != nil {
			return nil, err
		}
	}
	parent := workflowFrom(ctx)
	var stepID int
	if parent != nil {
		if halt := parent.halted(); halt != nil {
			return nil, refuse(halt, "dbos: enqueue of workflow "+w.opts.Name)
		}
		stepID = parent.nextStepID()
		if rec, ok := parent.recorded[stepID]; ok {
			if rec.Name != w.opts.Name {
				return nil, parent.abort(&NondeterministicError{WorkflowID: parent.id, StepID: stepID, Recorded: rec.Name, Called: w.opts.Name})
			}
			if rec.Error != "" {
				// The earlier execution's enqueue was refused: so is this one.
				recErr, err := decodeError(rec.Error, rec.Serialization)
				if err != nil {
					return nil, parent.abort(errorf(ErrCorruptRecord, err, "dbos: recorded enqueue of workflow %s step %d", parent.id, stepID))
				}
				return nil, recErr
			}
			// Enqueued by an earlier execution: the same child, not a new one.
			return &WorkflowHandle[R]{rt: rt, id: rec.ChildID, ex: rt.running(rec.ChildID)}, nil
		}
		if id == "" {
			id = fmt.Sprintf("%s-%d", parent.id, stepID)
		}
	}
	if id == "" {
		id = uuid.NewString()
	}
	inputs, err := encodeArgs(args)
	if err != nil {
		return nil, fmt.Errorf("dbos: inputs of workflow %s cannot be stored as JSON: %w", w.opts.Name, err)
	}
	row := sysdb.WorkflowRow{ID: id, Name: w.opts.Name, QueueName: q.name, ExecutorID: rt.cfg.ExecutorID,
		AppVersion: rt.cfg.ApplicationVersion, Inputs: inputs}
	timeout := w.opts.Timeout
	if o.Timeout > 0 {
		timeout = o.Timeout
	}
	row.TimeoutMS = timeout.Milliseconds()
	if parent != nil {
		// The parent's deadline bounds the child wherever it runs; its own
		// timeout starts at dequeue (the dequeue keeps a deadline already set).
		row.ParentID, row.DeadlineMS = parent.id, parent.deadlineMS
	}
	p := sysdb.EnqueueParams{Row: row, DeduplicationID: o.DeduplicationID, Priority: o.Priority, PartitionKey: o.PartitionKey}
	if o.Delay > 0 {
		p.DelayUntilMS = time.Now().Add(o.Delay).UnixMilli()
	}
	// Other executors are told unless this one will run it at once: it
	// serves the queue and the queue has no limit that could hold it back
	// here (a delayed workflow is found by the executors' polls).
	r := rt.queueRunner.Load()
	servedHere := r != nil && r.queues[q.name] != nil
	p.Notify = !servedHere || q.opts != (QueueOptions{})
	// A queue without limits that this executor serves would be dequeued
	// by it at once: insert the workflow claimed and start it here, which
	// saves the dequeue and the runner's hop (the row is what a dequeue
	// would have made of it). A delayed one waits on the queue; a child
	// keeps its parent's deadline bound, so it goes the common way.
	claim := servedHere && q.opts == (QueueOptions{}) && o.Delay == 0 && parent == nil
	if claim {
		p.Claim = true
		if timeout > 0 {
			p.Row.DeadlineMS = time.Now().Add(timeout).UnixMilli()
		}
	}
	qr, ok := rt.store.(sysdb.Queuer)
	if !ok {
		return nil, fmt.Errorf("%w: this system database has no queues", ErrConfig)
	}
	var res sysdb.EnqueueResult
	err = rt.retryDB(ctx, func(ctx context.Context) (err error) {
		res, err = qr.Enqueue(ctx, p)
		return err
	})
	switch {
	case errors.Is(err, sysdb.ErrDeduplicated):
		err = fmt.Errorf("%w: queue %s already holds a workflow with deduplication ID %q", ErrQueueDeduplicated, q.name, o.DeduplicationID)
		if parent != nil {
			// Recorded like any outcome, so a replay fails the same way.
			return nil, parent.recordEnqueueError(stepID, w.opts.Name, err)
		}
		return nil, err
	case err != nil:
		err = errorf(ErrDatabase, err, "dbos: enqueueing workflow %s (%s) on queue %s", id, w.opts.Name, q.name)
		if parent != nil {
			return nil, parent.abort(err)
		}
		return nil, err
	}
	if !res.Inserted {
		cur := res.Row
		if cur.Name != w.opts.Name {
			return nil, fmt.Errorf("%w: workflow ID %s belongs to workflow %s, not %s", ErrWorkflowConflict, id, cur.Name, w.opts.Name)
		}
		if err := sameInputs[A](id, w.opts.Name, cur.Inputs, cur.Serialization, inputs); err != nil {
			return nil, err
		}
	} else if claim {
		cl := sysdb.Dequeued{WorkflowRow: res.Row}
		return start(rt, w, startParams{ctx: ctx, id: id, inputs: inputs, format: sysdb.FormatPortable, args: args, claimed: &cl})
	} else {
		rt.wakeQueue(q.name)
	}
	if parent != nil {
		now := time.Now().UnixMilli()
		st := sysdb.StepRow{WorkflowID: parent.id, StepID: stepID, Name: w.opts.Name, ChildID: id, StartedMS: now, CompletedMS: now}
		if _, _, err := rt.recordStep(st); err != nil {
			return nil, parent.abort(errorf(ErrDatabase, err, "dbos: recording enqueued child %s of workflow %s", id, parent.id))
		}
	}
	return &WorkflowHandle[R]{rt: rt, id: id, ex: rt.running(id), servedHere: servedHere}, nil
}

// recordEnqueueError records a refused enqueue as the step's outcome.
func (w *workflowState) recordEnqueueError(stepID int, name string, err error) error {
	st := sysdb.StepRow{WorkflowID: w.id, StepID: stepID, Name: name, Error: encodeError(err), CompletedMS: time.Now().UnixMilli()}
	if _, _, dbErr := w.rt.recordStep(st); dbErr != nil {
		return w.abort(errorf(ErrDatabase, dbErr, "dbos: recording the refused enqueue of workflow %s", w.id))
	}
	return err
}

// checkEnqueue refuses per-call options that q cannot honour.
func checkEnqueue(q *Queue, o EnqueueOptions) error {
	switch {
	case o.Priority != 0 && !q.opts.PriorityEnabled:
		return fmt.Errorf("%w: queue %s: a priority needs QueueOptions.PriorityEnabled", ErrConfig, q.name)
	case o.PartitionKey != "" && !q.opts.Partitioned:
		return fmt.Errorf("%w: queue %s is not partitioned: no partition key", ErrConfig, q.name)
	case o.PartitionKey == "" && q.opts.Partitioned:
		return fmt.Errorf("%w: queue %s is partitioned: EnqueueOptions.PartitionKey is required", ErrConfig, q.name)
	case o.Delay < 0 || o.Timeout < 0:
		return fmt.Errorf("%w: queue %s: negative delay or timeout", ErrConfig, q.name)
	}
	return nil
}
