package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
	"github.com/google/uuid"
)

const (
	sendStepName = "DBOS.send"
	recvStepName = "DBOS.recv"
)

// SendOption configures Send.
type SendOption func(*sendOptions)

type sendOptions struct{ idempotencyKey string }

// WithIdempotencyKey makes a Send from outside a workflow deliver at most
// one message for the key and destination however often it is retried (the
// message's ID is key::destination, as DBOS builds it). Inside a workflow
// Send is exactly once without it.
func WithIdempotencyKey(key string) SendOption {
	return func(o *sendOptions) { o.idempotencyKey = key }
}

// Send sends msg to the workflow destinationID on topic ("" is DBOS's null
// topic). From a workflow it is a step: exactly once, however often the
// workflow is recovered. To a workflow that does not exist it fails with an
// error matching ErrWorkflowNotFound.
func Send(ctx context.Context, destinationID, topic string, msg any, opts ...SendOption) (err error) {
	var o sendOptions
	for _, opt := range opts {
		opt(&o)
	}
	value, err := encodeValue(msg)
	if err != nil {
		return fmt.Errorf("dbos: Send to %s: the message cannot be stored as JSON: %w", destinationID, err)
	}
	m := sysdb.Message{Destination: destinationID, Topic: topic, Value: value, Serialization: sysdb.FormatPortable}
	if o.idempotencyKey != "" {
		m.MessageUUID = o.idempotencyKey + "::" + destinationID
	}
	wf := workflowFrom(ctx)
	if wf == nil || stepFrom(ctx) != nil {
		// Outside a workflow, or inside a step (which records its own
		// outcome): a plain send. The ID is fixed before the retries, so a
		// retry after a lost acknowledgement does not send twice.
		return sendPlain(ctx, m)
	}
	if halt := wf.halted(); halt != nil {
		return refuse(halt, "dbos: Send")
	}
	id := wf.nextStepID()
	if rec, ok, err := recordedAt(wf, id, sendStepName); ok || err != nil {
		if err != nil {
			return err
		}
		return storedError(wf, rec)
	}
	_, ended := observe(ctx, wf, id, sendStepName)
	defer func() { ended(err) }()
	started := time.Now().UnixMilli()
	step := sysdb.StepRow{WorkflowID: wf.id, StepID: id, Name: sendStepName, StartedMS: started}
	stored, err := writeStep(wf, sendStepName, func(ctx context.Context) (sysdb.StepRow, bool, error) {
		return wf.rt.store.Send(ctx, m, &step)
	})
	if errors.Is(err, sysdb.ErrNoDestination) {
		return recordFailure(wf, id, sendStepName, started, noDestination(destinationID))
	}
	if err != nil {
		return wf.abort(dbErr(err, "dbos: Send from workflow %s to %s", wf.id, destinationID))
	}
	return storedError(wf, stored)
}

func noDestination(id string) error {
	return fmt.Errorf("%w: cannot send to workflow %s: it does not exist", ErrWorkflowNotFound, id)
}

func sendPlain(ctx context.Context, m sysdb.Message) error {
	rt, err := runtimeFrom(ctx)
	if err != nil {
		return err
	}
	if m.MessageUUID == "" {
		m.MessageUUID = uuid.NewString()
	}
	err = rt.retryDB(ctx, func(ctx context.Context) error {
		_, _, err := rt.store.Send(ctx, m, nil)
		return err
	})
	switch {
	case errors.Is(err, sysdb.ErrNoDestination):
		return noDestination(m.Destination)
	case err != nil:
		return dbErr(err, "dbos: Send to %s", m.Destination)
	}
	return nil
}

// Recv waits up to timeout for a message on topic sent to the calling
// workflow and consumes the oldest one, exactly once: the consume and its
// checkpoint are one transaction, and a recovered execution returns what
// the first one received. ok is false when none came in time (also
// recorded, so a replay times out alike); the timeout's end is recorded
// too, so a recovered execution waits only what remains. Workflows only:
// elsewhere it fails with ErrNotInWorkflow.
func Recv[T any](ctx context.Context, topic string, timeout time.Duration) (_ T, _ bool, err error) {
	var zero T
	wf, err := workflowOnly(ctx, "Recv")
	if err != nil {
		return zero, false, err
	}
	// Two IDs, as DBOS takes them: the receive, then its timeout's sleep
	// (recorded only when it has to wait).
	id, sleepID := wf.nextStepID(), wf.nextStepID()
	if rec, ok, err := recordedAt(wf, id, recvStepName); ok || err != nil {
		if err != nil {
			return zero, false, err
		}
		return storedValue[T](wf, rec)
	}
	ctx, ended := observe(ctx, wf, id, recvStepName)
	defer func() { ended(err) }()
	started := time.Now().UnixMilli()
	store := wf.rt.store
	topic = sysdb.TopicOrNull(topic)
	step := sysdb.StepRow{WorkflowID: wf.id, StepID: id, Name: recvStepName, StartedMS: started}
	// Each look consumes the oldest message, if any, and records it with
	// the step in one statement: a wake-up costs one round trip.
	var res sysdb.RecvResult
	look := func(orTimeout bool) func(context.Context) (bool, error) {
		return func(ctx context.Context) (done bool, err error) {
			res, err = store.Recv(ctx, wf.id, topic, step, orTimeout)
			return res.Recorded, err
		}
	}
	w := wf.rt.subscribe(sysdb.NotificationsChannel, sysdb.Payload(wf.id, topic))
	defer w.cancel()
	done, err := w.check(ctx, look(false))
	if err == nil && !done {
		var wake int64
		if wake, err = wakeTime(wf, sleepID, timeout); err == nil {
			done, err = w.until(ctx, wf, time.UnixMilli(wake), look(false))
		}
	}
	if err == nil && !done {
		// The timeout has passed: record it, or the message that came at
		// the last moment. On dbCtx, riding out outages: it is an outcome.
		if halt := wf.halted(); halt != nil {
			return zero, false, refuse(halt, "dbos: Recv")
		}
		err = wf.rt.retryDB(wf.rt.dbCtx, func(ctx context.Context) error {
			if _, err := look(true)(ctx); err != nil {
				return err
			}
			if !res.Recorded {
				return fmt.Errorf("receive at step %d recorded nothing", id)
			}
			return nil
		})
	}
	if err != nil {
		// Interrupted while waiting: not an outcome; the next execution
		// waits again, for what remains.
		if halt := wf.halted(); halt != nil {
			return zero, false, halt
		}
		if ctx.Err() != nil {
			return zero, false, ctx.Err()
		}
		return zero, false, wf.abort(dbErr(err, "dbos: Recv in workflow %s", wf.id))
	}
	if !res.Fresh {
		if err := checkStored(wf, res.Step, recvStepName); err != nil {
			return zero, false, err
		}
	}
	return storedValue[T](wf, res.Step)
}
