package dbosotel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/dbosgen/dbosgen/runtime/dbosotel"
	"go.opentelemetry.io/otel/codes"
)

// Queue waits have no call sites until queues exist: the observer is driven
// directly. The wait's span runs from the enqueue to the dequeue, in the
// enqueuer's trace, and parents the execution; the enqueuer's span gets an
// event.
func TestQueueWait(t *testing.T) {
	tel := newTelemetry()
	o := dbosotel.New(tel.tp, tel.mp)
	ctx, enqueuer := tel.test.Start(context.Background(), "enqueuer")
	carrier := o.TraceCarrier(ctx)
	if carrier["traceparent"] == "" {
		t.Fatalf("carrier %v: want a traceparent", carrier)
	}
	wait := dbos.QueueWait{Queue: "emails", WorkflowID: "q-1", WorkflowName: "otel.mail", EnqueuedAt: time.Now().Add(-time.Second)}
	o.QueueWaitStarted(ctx, wait)
	enqueuer.End()

	wait.TraceCarrier = carrier
	dequeued := time.Now()
	wctx := o.QueueWaitEnded(context.Background(), dbos.QueueWaitEnd{QueueWait: wait, DequeuedAt: dequeued})
	exe := dbos.WorkflowExecution{ID: "q-1", Name: "otel.mail", Queue: "emails", Attempt: 1}
	xctx := o.WorkflowStarted(wctx, exe)
	o.WorkflowEnded(xctx, dbos.WorkflowExecutionEnd{WorkflowExecution: exe, Status: dbos.StatusSuccess})

	root := enqueuer.SpanContext()
	ev := tel.one(t, "enqueuer").Events
	if len(ev) != 1 || ev[0].Name != "dbos.workflow.enqueued" {
		t.Errorf("enqueuer's events: %v", ev)
	}
	q := tel.one(t, "queue emails", dbosotel.QueueName, "emails", dbosotel.WorkflowID, "q-1")
	mustEqual(t, "wait's parent", q.Parent.SpanID(), root.SpanID())
	mustEqual(t, "wait's start", q.StartTime.Equal(wait.EnqueuedAt), true)
	mustEqual(t, "wait's end", q.EndTime.Equal(dequeued), true)
	x := tel.one(t, "workflow otel.mail", dbosotel.WorkflowQueue, "emails")
	mustEqual(t, "execution's parent", x.Parent.SpanID(), q.SpanContext.SpanID())
	mustEqual(t, "execution's trace", x.SpanContext.TraceID(), root.TraceID())

	// A wait that ended without a start (cancelled) is an error.
	o.QueueWaitEnded(context.Background(), dbos.QueueWaitEnd{QueueWait: dbos.QueueWait{Queue: "emails", WorkflowID: "q-2"},
		Err: dbos.ErrWorkflowCancelled})
	mustEqual(t, "cancelled wait's status", tel.one(t, "queue emails", dbosotel.WorkflowID, "q-2").Status.Code, codes.Error)
}

// The queue depth gauge reads every launched runtime that reports depths,
// until it shuts down.
func TestQueueDepthGauge(t *testing.T) {
	tel := newTelemetry()
	o := dbosotel.New(tel.tp, tel.mp)
	ev := dbos.RuntimeEvent{Runtime: new(dbos.Runtime), AppName: "shop",
		QueueDepths: func(context.Context) (map[string]int64, error) {
			return map[string]int64{"emails": 4, "payments": 0}, nil
		}}
	o.Launched(context.Background(), ev)
	tel.wantMetrics(t, map[string]int64{
		"dbos.queue.depth{dbos.app.name=shop,dbos.queue.name=emails}":   4,
		"dbos.queue.depth{dbos.app.name=shop,dbos.queue.name=payments}": 0,
	})
	o.ShutDown(context.Background(), ev)
	for k := range tel.metrics(t) {
		if len(k) > len("dbos.queue.depth") && k[:len("dbos.queue.depth")] == "dbos.queue.depth" {
			t.Errorf("after ShutDown: %s still reported", k)
		}
	}
	// A runtime without queue depths (this release's) feeds nothing.
	o.Launched(context.Background(), dbos.RuntimeEvent{Runtime: new(dbos.Runtime)})
	tel.metrics(t)
}

// A parked workflow makes a failed span in its trace and counts as an
// outcome.
func TestParked(t *testing.T) {
	tel := newTelemetry()
	o := dbosotel.New(tel.tp, tel.mp)
	ctx, caller := tel.test.Start(context.Background(), "caller")
	carrier := o.TraceCarrier(ctx)
	caller.End()
	o.WorkflowParked(context.Background(), dbos.WorkflowParked{ID: "p-1", Name: "otel.fragile",
		Status: dbos.StatusMaxRecoveryAttemptsExceeded, Executions: 3, MaxRecoveryAttempts: 2, TraceCarrier: carrier})
	s := tel.one(t, "workflow otel.fragile", dbosotel.WorkflowID, "p-1")
	mustEqual(t, "parked span's parent", s.Parent.SpanID(), caller.SpanContext().SpanID())
	mustEqual(t, "parked span's status", s.Status.Code, codes.Error)
	mustEqual(t, "parked span's workflow status", attr(s, dbosotel.WorkflowStatus), dbos.StatusMaxRecoveryAttemptsExceeded)
	tel.wantMetrics(t, map[string]int64{
		"dbos.workflow.outcomes{dbos.workflow.name=otel.fragile,dbos.workflow.status=MAX_RECOVERY_ATTEMPTS_EXCEEDED}": 1,
	})
}

// Two observers combined each end their own span, though the context holds
// the other's too; the second's spans nest under the first's. An
// interrupted attempt is not an error; a superseded transaction neither.
func TestCombinedObservers(t *testing.T) {
	tel1, tel2 := newTelemetry(), newTelemetry()
	both := dbos.Observers(dbosotel.New(tel1.tp, tel1.mp), dbosotel.New(tel2.tp, tel2.mp))
	at := dbos.StepAttempt{StepInfo: dbos.StepInfo{WorkflowID: "w", StepID: 2, Name: "fetch", Attempt: 0, MaxAttempts: 1}}
	ctx := both.StepStarted(context.Background(), at)
	both.StepEnded(context.WithoutCancel(ctx), dbos.StepAttemptEnd{StepAttempt: at, Err: context.Canceled, Interrupted: true})
	tx := dbos.TransactionAttempt{StepInfo: dbos.StepInfo{WorkflowID: "w", StepID: 3, Name: "save"}}
	ctx = both.TransactionStarted(context.Background(), tx)
	both.TransactionEnded(ctx, dbos.TransactionAttemptEnd{TransactionAttempt: tx, Superseded: true})
	ctx = both.TransactionStarted(context.Background(), tx)
	both.TransactionEnded(ctx, dbos.TransactionAttemptEnd{TransactionAttempt: tx, Err: errors.New("40001"), Retry: true,
		RetryReason: "serialization failure", RetryIn: 20 * time.Millisecond})
	for i, tel := range []*telemetry{tel1, tel2} {
		s := tel.one(t, "step fetch", dbosotel.StepOutcome, "interrupted")
		mustEqual(t, "interrupted attempt's status", s.Status.Code, codes.Unset)
		mustEqual(t, "superseded transaction's status", tel.one(t, "transaction save", dbosotel.StepOutcome, "superseded").Status.Code, codes.Unset)
		r := tel.one(t, "transaction save", dbosotel.StepOutcome, "retry")
		mustEqual(t, "retried transaction's status", r.Status.Code, codes.Error)
		mustEqual(t, "retried transaction's reason", attr(r, dbosotel.TxRetryReason), "serialization failure")
		mustEqual(t, "retried transaction's delay", attr(r, dbosotel.StepRetryInMS), "20")
		if i == 1 {
			mustEqual(t, "second observer's span is the first's child", s.Parent.SpanID(), tel1.one(t, "step fetch").SpanContext.SpanID())
		}
		tel.wantMetrics(t, map[string]int64{
			"dbos.step.attempts{dbos.step.name=fetch,dbos.step.outcome=interrupted}":                            1,
			"dbos.transaction.attempts{dbos.step.name=save,dbos.step.outcome=superseded}":                       1,
			"dbos.transaction.retries{dbos.step.name=save,dbos.transaction.retry_reason=serialization failure}": 1,
		})
	}
}
