package dbos

import (
	"context"

	"github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// Runtime runs workflows against one system database. Launch makes one;
// several may run in one process, each its own executor.
type Runtime = engine.Runtime

// Config configures a Runtime. Every field is optional; see the README's
// configuration table for defaults and environment variables.
type Config = engine.Config

// WorkflowHandle is a started workflow: its ID, its status, and its result
// once it finishes, in this process or another.
type WorkflowHandle[R any] = engine.WorkflowHandle[R]

// Future is the pending result of an async step (xStepAsync).
type Future[R any] = engine.Future[R]

// WorkflowStatus is a workflow's recorded state.
type WorkflowStatus = engine.WorkflowStatus

// StepInfo describes the step running on a context: its workflow, step ID,
// name, and current attempt.
type StepInfo = engine.StepInfo

// Launch connects to the system database, creates DBOS's schema on a new
// one, and recovers this executor's PENDING workflows of the current
// application version, each from its last completed step.
func Launch(ctx context.Context, cfg Config) (*Runtime, error) { return engine.Launch(ctx, cfg) }

// WithWorkflowID names the workflow started directly with the returned
// context; a retried call with the same context reaches the same workflow.
func WithWorkflowID(ctx context.Context, id string) context.Context {
	return engine.WithWorkflowID(ctx, id)
}

// WithRuntime attaches rt to ctx: wrappers called with it outside a workflow
// use rt rather than the first runtime launched.
func WithRuntime(ctx context.Context, rt *Runtime) context.Context {
	return engine.WithRuntime(ctx, rt)
}

// WorkflowID is the ID of the workflow running on ctx.
func WorkflowID(ctx context.Context) (string, bool) { return engine.WorkflowID(ctx) }

// StepID is the ID of the step running on ctx.
func StepID(ctx context.Context) (int, bool) { return engine.StepID(ctx) }

// CurrentStep describes the step running on ctx, with its attempt number.
func CurrentStep(ctx context.Context) (StepInfo, bool) { return engine.CurrentStep(ctx) }

// RetrieveWorkflow returns a handle to the workflow with this ID, running or
// finished, in this process or another.
func RetrieveWorkflow[R any](ctx context.Context, id string) (*WorkflowHandle[R], error) {
	return engine.RetrieveWorkflow[R](ctx, id)
}

// CancelWorkflow cancels a workflow that has not finished, and its
// descendants: no new step of theirs starts, and their running executions,
// in any process, see their contexts cancelled.
func CancelWorkflow(ctx context.Context, id string) error { return engine.CancelWorkflow(ctx, id) }

// RegisterError makes errors.Is(replayed, err) hold for errors that matched
// err when they were recorded. Register your package's sentinel errors in an
// init function; the sentinel's message is its name in the database, so keep
// messages unique and stable.
func RegisterError(err error) { engine.RegisterError(err) }

// Observer sees what a runtime does as it happens: workflow executions,
// step and transaction attempts, queue waits, workflows parked or left alone
// at Launch. Set Config.Observer to install one; package
// runtime/dbosotel makes one for OpenTelemetry. Embed NopObserver in your
// own. The runtime's logs come from the same events.
type Observer = engine.Observer

// NopObserver does nothing; embed it in an Observer to implement only the
// methods you need.
type NopObserver = engine.NopObserver

// The events an Observer receives.
type (
	// RuntimeEvent: a runtime launched or is shutting down.
	RuntimeEvent = engine.RuntimeEvent
	// LeftAlone: PENDING workflows Launch does not resume.
	LeftAlone = engine.LeftAlone
	// VersionCount: PENDING workflows of one other application version.
	VersionCount = engine.VersionCount
	// WorkflowExecution: an execution of a workflow's body begins.
	WorkflowExecution = engine.WorkflowExecution
	// WorkflowExecutionEnd: it ended, with the status it leaves.
	WorkflowExecutionEnd = engine.WorkflowExecutionEnd
	// WorkflowParked: a start parked a workflow that had started too often.
	WorkflowParked = engine.WorkflowParked
	// StepAttempt: one attempt of a step begins.
	StepAttempt = engine.StepAttempt
	// StepAttemptEnd: it ended; whether the step retries.
	StepAttemptEnd = engine.StepAttemptEnd
	// TransactionAttempt: one attempt of a transaction begins.
	TransactionAttempt = engine.TransactionAttempt
	// TransactionAttemptEnd: it ended; whether it runs again.
	TransactionAttemptEnd = engine.TransactionAttemptEnd
	// QueueWait: a workflow was enqueued.
	QueueWait = engine.QueueWait
	// QueueWaitEnd: its wait ended.
	QueueWaitEnd = engine.QueueWaitEnd
)

// Observers combines observers: ...Started methods run in the order given,
// each with the context the previous returned; ...Ended methods in reverse.
func Observers(obs ...Observer) Observer { return engine.Observers(obs...) }
