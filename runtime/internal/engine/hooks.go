package engine

import (
	"context"
	"time"
)

// Observer sees what a runtime does as it happens: workflow executions, step
// and transaction attempts, queue waits, workflows parked or left alone.
// Config.Observer installs one; package runtime/dbosotel provides one that
// makes OpenTelemetry spans and metrics. The runtime's own logs of terminal
// outcomes are an Observer too, always installed first, so they come from the
// same events.
//
// Each ...Started method returns the context the work runs with: ctx itself,
// or a context derived from it (carrying a span, say). The body of the
// workflow, step or transaction sees that context, and the matching ...Ended
// method receives it, without its cancellation. Methods run on the goroutine
// doing the work, so they must be safe for concurrent use, quick, and must
// not panic; they are not called for work that is only replayed from its
// recorded outcome.
//
// Embed NopObserver in an implementation: methods added to this interface in
// later releases then do nothing instead of breaking the build.
type Observer interface {
	// Launched is called by Launch before it recovers any workflow.
	Launched(ctx context.Context, e RuntimeEvent)
	// ShutDown is called by Shutdown once the runtime's workflows have
	// stopped, before its databases close.
	ShutDown(ctx context.Context, e RuntimeEvent)
	// LeftAlone reports PENDING workflows of this executor that Launch does
	// not resume.
	LeftAlone(ctx context.Context, e LeftAlone)

	// TraceCarrier returns the trace context of ctx, the caller starting a
	// workflow, as string pairs (a W3C traceparent, say), or nil. The
	// runtime stores the pairs with the workflow, so that an execution in
	// another process (a recovery, a dequeue) continues the caller's trace:
	// it hands them back in WorkflowExecution.TraceCarrier. Carriers of
	// several observers are merged.
	TraceCarrier(ctx context.Context) map[string]string

	// WorkflowStarted is called when an execution of a workflow's body
	// begins; ctx is the caller's (Launch's, for a recovery).
	WorkflowStarted(ctx context.Context, e WorkflowExecution) context.Context
	// WorkflowEnded is called when the execution ends, once its outcome is
	// recorded, before callers waiting for the result see it.
	WorkflowEnded(ctx context.Context, e WorkflowExecutionEnd)
	// WorkflowParked is called when a start finds that the workflow exceeded
	// its max recovery attempts and parks it (MAX_RECOVERY_ATTEMPTS_EXCEEDED)
	// instead of running it.
	WorkflowParked(ctx context.Context, e WorkflowParked)

	// StepStarted and StepEnded bracket one attempt of a step, in a workflow
	// or outside one.
	StepStarted(ctx context.Context, e StepAttempt) context.Context
	StepEnded(ctx context.Context, e StepAttemptEnd)
	// TransactionStarted and TransactionEnded bracket one attempt of a
	// transaction: one database transaction, run again after a
	// serialization failure or a lost connection.
	TransactionStarted(ctx context.Context, e TransactionAttempt) context.Context
	TransactionEnded(ctx context.Context, e TransactionAttemptEnd)

	// QueueWaitStarted is called in the process that enqueues a workflow,
	// with the enqueuer's context, once the workflow is enqueued.
	QueueWaitStarted(ctx context.Context, e QueueWait)
	// QueueWaitEnded is called in the process that dequeues it, possibly
	// another, when its wait ends. The returned context is the one the
	// workflow's execution starts with: its WorkflowStarted receives it,
	// with no TraceCarrier, so a span put in it here parents the execution.
	QueueWaitEnded(ctx context.Context, e QueueWaitEnd) context.Context
}

// RuntimeEvent describes a runtime that launched or is shutting down.
type RuntimeEvent struct {
	Runtime    *Runtime
	AppName    string
	ExecutorID string
	AppVersion string
	// QueueDepths, when set, counts this application's workflows waiting in
	// each queue, by queue name; an observer may call it (from a metrics
	// callback, say) between Launched and ShutDown. Nil until queues exist.
	QueueDepths func(ctx context.Context) (map[string]int64, error)
}

// VersionCount is how many workflows one application version has.
type VersionCount struct {
	Version string
	Count   int
}

// LeftAlone is what Launch does not resume: either the PENDING workflows that
// other application versions started (Versions), or one workflow of this
// version it cannot run (WorkflowID, WorkflowName, Err: no function
// registered under its name, inputs that do not decode, the database).
// Either way the rows stay untouched.
type LeftAlone struct {
	ExecutorID   string
	AppVersion   string
	Versions     []VersionCount
	WorkflowID   string
	WorkflowName string
	Err          error
}

// WorkflowExecution is one execution of a workflow's body.
type WorkflowExecution struct {
	ID         string
	Name       string
	ParentID   string // the workflow that started it as a child; "" for none
	ExecutorID string
	AppVersion string
	// Recovered says an earlier execution started the workflow and did not
	// finish (a crash, a Shutdown): this one resumes it from its recorded
	// steps, started by Launch's recovery or by a call with the same ID.
	Recovered bool
	// Attempt counts the workflow's executions, this one included (DBOS's
	// recovery_attempts): 1 for the first.
	Attempt int
	// Queue is the queue the workflow waited in; "" when started directly.
	Queue string
	// TraceCarrier is the trace context stored when the workflow was first
	// started (see Observer.TraceCarrier), given when this execution should
	// continue it rather than ctx's trace: when Recovered. Nil otherwise.
	TraceCarrier map[string]string
}

// WorkflowExecutionEnd is an execution that ended.
type WorkflowExecutionEnd struct {
	WorkflowExecution
	// Status is the workflow's status as this execution leaves it: SUCCESS,
	// ERROR, CANCELLED, or PENDING when it stopped without an outcome (at
	// Shutdown, or on a database failure: it resumes on the next Launch);
	// "" in the rare case that a recorded status could not be read back.
	Status string
	// Err is the error callers see (nil for SUCCESS); for a cancellation
	// this execution saw, its cause (CancelWorkflow, the timeout).
	Err error
	// Superseded says another execution recorded the workflow's outcome
	// first (and reports it): Status is what it recorded, and this
	// execution's own outcome was discarded.
	Superseded bool
}

// WorkflowParked is a workflow parked at a start because it had started too
// many times without finishing.
type WorkflowParked struct {
	ID                  string
	Name                string
	Status              string // MAX_RECOVERY_ATTEMPTS_EXCEEDED
	Executions          int    // started without finishing
	MaxRecoveryAttempts int
	TraceCarrier        map[string]string // as stored at its first start
}

// StepAttempt is one attempt of a step.
type StepAttempt struct {
	// StepInfo: WorkflowID ("" outside a workflow), StepID, Name, Attempt
	// (from 0) and MaxAttempts.
	StepInfo
	WorkflowName string
}

// StepAttemptEnd is an attempt that ended.
type StepAttemptEnd struct {
	StepAttempt
	Err error // the attempt's error; nil when it succeeded
	// Retry says another attempt follows, after RetryIn.
	Retry   bool
	RetryIn time.Duration
	// Interrupted says the workflow was cancelled, timed out or shut down
	// during the attempt: not an outcome; a resumed workflow runs the step
	// again.
	Interrupted bool
	// Exhausted is set on the last allowed attempt of a failing step with
	// retries: the error the step returns, holding every attempt's error.
	Exhausted *MaxStepRetriesExceededError
}

// Outcome names how the attempt ended: "success", "retry", "error" or
// "interrupted".
func (e StepAttemptEnd) Outcome() string {
	return attemptOutcome(e.Err, e.Retry, e.Interrupted, false)
}

// TransactionAttempt is one attempt of a transaction.
type TransactionAttempt struct {
	// StepInfo: WorkflowID ("" outside a workflow), StepID, Name and
	// Attempt (from 0); MaxAttempts is 1, since only database failures
	// are retried, without limit.
	StepInfo
	WorkflowName string
	ReadOnly     bool
}

// TransactionAttemptEnd is a transaction attempt that ended.
type TransactionAttemptEnd struct {
	TransactionAttempt
	// Err is the function's error (the transaction rolled back), or the
	// database's.
	Err error
	// Retry says the transaction runs again after RetryIn, for RetryReason
	// ("serialization failure" or "connection failure"); nothing committed.
	Retry       bool
	RetryReason string
	RetryIn     time.Duration
	// Interrupted: cancelled, timed out or shut down during the attempt.
	Interrupted bool
	// Superseded: another execution recorded this transaction's outcome
	// first; this attempt rolled back and the recorded outcome is returned.
	Superseded bool
}

// Outcome names how the attempt ended: "success", "retry", "error",
// "interrupted" or "superseded".
func (e TransactionAttemptEnd) Outcome() string {
	return attemptOutcome(e.Err, e.Retry, e.Interrupted, e.Superseded)
}

func attemptOutcome(err error, retry, interrupted, superseded bool) string {
	switch {
	case interrupted:
		return "interrupted"
	case superseded:
		return "superseded"
	case retry:
		return "retry"
	case err != nil:
		return "error"
	}
	return "success"
}

// QueueWait is a workflow waiting in a queue.
type QueueWait struct {
	Queue        string
	WorkflowID   string
	WorkflowName string
	EnqueuedAt   time.Time
	// TraceCarrier is the enqueuer's trace context, as stored with the
	// workflow; set for QueueWaitEnded.
	TraceCarrier map[string]string
}

// QueueWaitEnd is a queue wait that ended.
type QueueWaitEnd struct {
	QueueWait
	DequeuedAt time.Time
	// Err says why the wait ended without the workflow starting
	// (cancelled, timed out); nil when it was dequeued to run.
	Err error
}

// NopObserver does nothing. Embed it in an Observer to implement only the
// methods you need.
type NopObserver struct{}

func (NopObserver) Launched(context.Context, RuntimeEvent)                  {}
func (NopObserver) ShutDown(context.Context, RuntimeEvent)                  {}
func (NopObserver) LeftAlone(context.Context, LeftAlone)                    {}
func (NopObserver) TraceCarrier(context.Context) map[string]string          { return nil }
func (NopObserver) WorkflowEnded(context.Context, WorkflowExecutionEnd)     {}
func (NopObserver) WorkflowParked(context.Context, WorkflowParked)          {}
func (NopObserver) StepEnded(context.Context, StepAttemptEnd)               {}
func (NopObserver) TransactionEnded(context.Context, TransactionAttemptEnd) {}
func (NopObserver) QueueWaitStarted(context.Context, QueueWait)             {}

func (NopObserver) WorkflowStarted(ctx context.Context, _ WorkflowExecution) context.Context {
	return ctx
}

func (NopObserver) StepStarted(ctx context.Context, _ StepAttempt) context.Context { return ctx }

func (NopObserver) TransactionStarted(ctx context.Context, _ TransactionAttempt) context.Context {
	return ctx
}

func (NopObserver) QueueWaitEnded(ctx context.Context, _ QueueWaitEnd) context.Context { return ctx }

// Observers combines observers into one that calls each in turn: ...Started
// methods in the order given, each with the context the previous returned,
// and ...Ended methods in reverse order. Nil observers are skipped.
func Observers(obs ...Observer) Observer {
	var list multiObserver
	for _, o := range obs {
		switch o := o.(type) {
		case nil:
		case multiObserver:
			list = append(list, o...)
		default:
			list = append(list, o)
		}
	}
	if len(list) == 1 {
		return list[0]
	}
	return list
}

type multiObserver []Observer

func (m multiObserver) Launched(ctx context.Context, e RuntimeEvent) {
	for _, o := range m {
		o.Launched(ctx, e)
	}
}

func (m multiObserver) ShutDown(ctx context.Context, e RuntimeEvent) {
	for i := len(m) - 1; i >= 0; i-- {
		m[i].ShutDown(ctx, e)
	}
}

func (m multiObserver) LeftAlone(ctx context.Context, e LeftAlone) {
	for _, o := range m {
		o.LeftAlone(ctx, e)
	}
}

func (m multiObserver) TraceCarrier(ctx context.Context) map[string]string {
	var out map[string]string
	for _, o := range m {
		for k, v := range o.TraceCarrier(ctx) {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

func (m multiObserver) WorkflowStarted(ctx context.Context, e WorkflowExecution) context.Context {
	for _, o := range m {
		ctx = o.WorkflowStarted(ctx, e)
	}
	return ctx
}

func (m multiObserver) WorkflowEnded(ctx context.Context, e WorkflowExecutionEnd) {
	for i := len(m) - 1; i >= 0; i-- {
		m[i].WorkflowEnded(ctx, e)
	}
}

func (m multiObserver) WorkflowParked(ctx context.Context, e WorkflowParked) {
	for _, o := range m {
		o.WorkflowParked(ctx, e)
	}
}

func (m multiObserver) StepStarted(ctx context.Context, e StepAttempt) context.Context {
	for _, o := range m {
		ctx = o.StepStarted(ctx, e)
	}
	return ctx
}

func (m multiObserver) StepEnded(ctx context.Context, e StepAttemptEnd) {
	for i := len(m) - 1; i >= 0; i-- {
		m[i].StepEnded(ctx, e)
	}
}

func (m multiObserver) TransactionStarted(ctx context.Context, e TransactionAttempt) context.Context {
	for _, o := range m {
		ctx = o.TransactionStarted(ctx, e)
	}
	return ctx
}

func (m multiObserver) TransactionEnded(ctx context.Context, e TransactionAttemptEnd) {
	for i := len(m) - 1; i >= 0; i-- {
		m[i].TransactionEnded(ctx, e)
	}
}

func (m multiObserver) QueueWaitStarted(ctx context.Context, e QueueWait) {
	for _, o := range m {
		o.QueueWaitStarted(ctx, e)
	}
}

func (m multiObserver) QueueWaitEnded(ctx context.Context, e QueueWaitEnd) context.Context {
	for _, o := range m {
		ctx = o.QueueWaitEnded(ctx, e)
	}
	return ctx
}

// observerFor is the observer of the runtime ctx finds, or the default logs
// when there is none (a step called before Launch).
func observerFor(ctx context.Context) Observer {
	if rt, err := findRuntime(ctx); err == nil {
		return rt.obs
	}
	return logObserver{}
}
