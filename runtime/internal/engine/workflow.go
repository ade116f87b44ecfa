package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
	"github.com/google/uuid"
)

// MaxWorkflowIDLength bounds workflow IDs so they stay index-friendly.
const MaxWorkflowIDLength = 1024

// WorkflowOptions come from a //dbos:workflow directive.
type WorkflowOptions struct {
	Name string
	// MaxRecoveryAttempts bounds how often an unfinished workflow is
	// re-executed before it is parked as MAX_RECOVERY_ATTEMPTS_EXCEEDED.
	// Default 100.
	MaxRecoveryAttempts int
	// Timeout, when set, cancels the workflow that long after it first
	// started; the deadline survives recovery.
	Timeout time.Duration
	// Schedule, a cron spec, runs the workflow at every tick (see
	// schedule.go); ScheduleArgs makes a tick's inputs.
	Schedule     string
	ScheduleArgs func(scheduled, actual time.Time) any
}

// Workflow is a registered workflow function with typed inputs A and output
// R. Generated code creates one per //dbos:workflow function.
type Workflow[A, R any] struct {
	opts WorkflowOptions
	fn   func(context.Context, A) (R, error)
}

// RegisterWorkflow registers fn for recovery under opts.Name. Generated code
// calls it in a package-level variable initializer.
func RegisterWorkflow[A, R any](opts WorkflowOptions, fn func(context.Context, A) (R, error)) *Workflow[A, R] {
	if opts.MaxRecoveryAttempts <= 0 {
		opts.MaxRecoveryAttempts = 100
	}
	w := &Workflow[A, R]{opts: opts, fn: fn}
	register(w)
	return w
}

func (w *Workflow[A, R]) workflowName() string { return w.opts.Name }

// Name is the workflow's registered name.
func (w *Workflow[A, R]) Name() string { return w.opts.Name }

// Run starts the workflow and waits for its result.
func (w *Workflow[A, R]) Run(ctx context.Context, args A) (R, error) {
	h, err := w.Start(ctx, args)
	if err != nil {
		var zero R
		return zero, err
	}
	return h.Result(ctx)
}

// Start starts the workflow in its own goroutine and returns its handle. The
// workflow does not end when ctx is cancelled: it is durable, and is stopped
// only by CancelWorkflow, its timeout, or Shutdown.
func (w *Workflow[A, R]) Start(ctx context.Context, args A) (*WorkflowHandle[R], error) {
	if stepFrom(ctx) != nil {
		return nil, fmt.Errorf("%w: cannot start workflow %s", ErrWorkflowInStep, w.opts.Name)
	}
	rt, err := runtimeFrom(ctx)
	if err != nil {
		return nil, err
	}
	id, _ := ctx.Value(workflowIDKey).(string)
	if _, set := ctx.Value(workflowIDKey).(string); set {
		if err := validateWorkflowID(id); err != nil {
			return nil, err
		}
	}
	parent := workflowFrom(ctx)
	var stepID int
	if parent != nil {
		if halt := parent.halted(); halt != nil {
			return nil, refuse(halt, "dbos: child workflow "+w.opts.Name)
		}
		// A child is a step of its parent: it takes a step ID, and its ID is
		// derived from the parent's so a replay finds the same child.
		stepID = parent.nextStepID()
		if err := parent.kitCheck(stepID); err != nil {
			return nil, err
		}
		if rec, ok := parent.recorded[stepID]; ok {
			if rec.Name != w.opts.Name {
				return nil, parent.abort(&NondeterministicError{WorkflowID: parent.id, StepID: stepID, Recorded: rec.Name, Called: w.opts.Name})
			}
			id = rec.ChildID
		}
		if id == "" {
			id = fmt.Sprintf("%s-%d", parent.id, stepID)
		}
		if h, ok := kitChild[R](parent, id); ok {
			return h, nil
		}
	}
	if id == "" {
		id = uuid.NewString()
	}
	inputs, err := encodeArgs(args)
	if err != nil {
		return nil, fmt.Errorf("dbos: inputs of workflow %s cannot be stored as JSON: %w", w.opts.Name, err)
	}
	p := startParams{ctx: ctx, id: id, inputs: inputs, format: sysdb.FormatPortable, args: args}
	if parent != nil {
		p.parentID, p.parentDeadlineMS = parent.id, parent.deadlineMS
	}
	h, err := start(rt, w, p)
	if err != nil || parent == nil {
		return h, err
	}
	if _, ok := parent.recorded[stepID]; !ok {
		now := time.Now().UnixMilli()
		row := sysdb.StepRow{WorkflowID: parent.id, StepID: stepID, Name: w.opts.Name, ChildID: id, StartedMS: now, CompletedMS: now}
		if _, _, err := rt.recordStep(row); err != nil {
			return nil, parent.abort(errorf(ErrDatabase, err, "dbos: recording child workflow %s of workflow %s", id, parent.id))
		}
	}
	return h, nil
}

func validateWorkflowID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty workflow ID", ErrInvalidWorkflowID)
	}
	if len(id) > MaxWorkflowIDLength {
		return fmt.Errorf("%w: workflow ID is %d bytes, the limit is %d", ErrInvalidWorkflowID, len(id), MaxWorkflowIDLength)
	}
	if !utf8.ValidString(id) || strings.ContainsRune(id, 0) {
		// PostgreSQL text cannot hold either; refuse alike on every engine.
		return fmt.Errorf("%w: workflow ID %q is not valid UTF-8 text without NUL bytes", ErrInvalidWorkflowID, id)
	}
	return nil
}

// resume implements recoverable: it runs a PENDING workflow from its row.
func (w *Workflow[A, R]) resume(ctx context.Context, rt *Runtime, row sysdb.WorkflowRow) error {
	// Inputs that cannot be decoded are reported before the row is touched
	// (no recovery attempt counted), like an unregistered name.
	if _, err := decodeArgs[A](row.Inputs, row.Serialization); err != nil {
		return errorf(ErrCorruptRecord, err, "dbos: cannot recover workflow %s (%s): its recorded inputs do not decode (left PENDING)", row.ID, row.Name)
	}
	_, err := start(rt, w, startParams{ctx: ctx, id: row.ID, inputs: row.Inputs, format: row.Serialization, parentID: row.ParentID})
	return err
}

type startParams struct {
	ctx      context.Context
	id       string
	inputs   string
	format   string // of inputs: portable_json for a call, the row's on recovery
	args     any    // the typed arguments; nil when recovering from a row
	parentID string
	// parentDeadlineMS bounds a child's deadline by its parent's (unix ms;
	// 0: none), so a parent's timeout reaches the children it starts.
	parentDeadlineMS int64
	// claimed is the row a dequeue made PENDING for this executor: it
	// starts without InitWorkflow (see runClaimed).
	claimed *sysdb.Dequeued
}

// execution is one running workflow in this runtime. Callers that start a
// workflow whose ID is already running here wait on it instead of running
// the body a second time.
type execution struct {
	name   string
	inputs string // as the first start encoded or read them
	format string // their serialization
	// recorded is closed once the workflow's row is in the database; a
	// second caller of Start returns only then, as the first does, so a
	// returned handle always means a durable workflow.
	recorded chan struct{}
	done     chan struct{}
	value    any
	err      error
	cancel   context.CancelCauseFunc
}

func (e *execution) finish(v any, err error) {
	e.value, e.err = v, err
	close(e.done)
}

func start[A, R any](rt *Runtime, w *Workflow[A, R], p startParams) (*WorkflowHandle[R], error) {
	ex, existing, err := rt.claim(p.id, w.opts.Name, p.inputs, p.format)
	if err != nil {
		return nil, err
	}
	h := &WorkflowHandle[R]{rt: rt, id: p.id, ex: ex}
	_, fresh := p.args.(A)
	if existing {
		if ex.name != w.opts.Name {
			return nil, fmt.Errorf("%w: workflow ID %s is running as %s, not %s", ErrWorkflowConflict, p.id, ex.name, w.opts.Name)
		}
		if fresh {
			if err := sameInputs[A](p.id, w.opts.Name, ex.inputs, ex.format, p.inputs); err != nil {
				return nil, err
			}
		}
		if err := ex.waitRecorded(p.ctx); err != nil {
			return nil, err
		}
		return h, nil
	}
	now := time.Now()
	row := sysdb.WorkflowRow{ID: p.id, Name: w.opts.Name, ExecutorID: rt.cfg.ExecutorID, AppVersion: rt.cfg.ApplicationVersion,
		AppName: rt.cfg.AppName, Inputs: p.inputs, ParentID: p.parentID}
	if w.opts.Timeout > 0 {
		row.TimeoutMS = w.opts.Timeout.Milliseconds()
		row.DeadlineMS = now.Add(w.opts.Timeout).UnixMilli()
	}
	if fresh {
		// A recovery's row exists, and keeps the trace context it has.
		row.Attributes = rt.traceAttributes(p.ctx)
	}
	if d := p.parentDeadlineMS; d > 0 && (row.DeadlineMS == 0 || d < row.DeadlineMS) {
		// Recorded on the child's row, so the bound holds wherever and
		// whenever the child runs again.
		row.DeadlineMS = d
	}
	dead := func() string {
		return encodeError(fmt.Errorf("%w: workflow %s was started more than %d times without finishing",
			ErrMaxRecoveryAttemptsExceeded, p.id, w.opts.MaxRecoveryAttempts+1))
	}
	var res sysdb.InitResult
	if p.claimed != nil {
		res.Row = p.claimed.WorkflowRow
	} else {
		err = rt.retryDB(p.ctx, func(ctx context.Context) (err error) {
			res, err = rt.store.InitWorkflow(ctx, sysdb.InitParams{Row: row, MaxRecoveryAttempts: w.opts.MaxRecoveryAttempts,
				Recovery: !fresh, DeadLetterError: dead})
			return err
		})
	}
	if err != nil {
		err = errorf(ErrDatabase, err, "dbos: starting workflow %s (%s)", p.id, w.opts.Name)
		rt.release(p.id, ex, nil, err)
		return nil, err
	}
	close(ex.recorded)
	cur := res.Row
	if cur.Name != w.opts.Name {
		err := fmt.Errorf("%w: workflow ID %s belongs to workflow %s, not %s", ErrWorkflowConflict, p.id, cur.Name, w.opts.Name)
		rt.release(p.id, ex, nil, err)
		return nil, err
	}
	if fresh && !res.Inserted {
		// The row InitWorkflow returned says what this ID was started
		// with: no extra statement. Recovery (no fresh args) runs the
		// recorded inputs and has nothing to compare.
		if err := sameInputs[A](p.id, w.opts.Name, cur.Inputs, cur.Serialization, p.inputs); err != nil {
			rt.release(p.id, ex, nil, err)
			return nil, err
		}
	}
	if cur.Status == sysdb.StatusDeadLetter && cur.UpdatedMS >= now.UnixMilli() {
		// This start parked it: InitWorkflow touches updated_at only of a
		// PENDING row, so a row parked before this call is older.
		rt.obs.WorkflowParked(p.ctx, WorkflowParked{ID: p.id, Name: w.opts.Name, Status: cur.Status,
			Executions: cur.RecoveryAttempts - 1, MaxRecoveryAttempts: w.opts.MaxRecoveryAttempts, TraceCarrier: traceCarrierOf(cur.Attributes)})
	}
	if cur.Status != sysdb.StatusPending {
		v, err := outcome[R](cur)
		rt.release(p.id, ex, v, err)
		return h, nil
	}
	if p.claimed == nil && cur.ExecutorID != rt.cfg.ExecutorID {
		// Another executor's workflow, running there (or, once that one is
		// gone, adopted): this call waits for its outcome instead of
		// running it in a second live process.
		h.ex = nil
		rt.release(p.id, ex, nil, errRunningElsewhere)
		return h, nil
	}

	wf := &workflowState{rt: rt, id: p.id, name: w.opts.Name, deadlineMS: cur.DeadlineMS, format: cur.Serialization, kit: kitStart(p)}
	a, _ := p.args.(A)
	if !res.Inserted || !fresh {
		// Not the first execution: run from the recorded inputs and outcomes.
		if a, err = decodeArgs[A](cur.Inputs, cur.Serialization); err != nil {
			err = errorf(ErrCorruptRecord, err, "dbos: recorded inputs of workflow %s (%s)", p.id, w.opts.Name)
			rt.release(p.id, ex, nil, err)
			return nil, err
		}
	}
	if !res.Inserted && (p.claimed == nil || p.claimed.HasSteps) {
		if wf.recorded, err = rt.recordedSteps(p.ctx, p.id); err != nil {
			rt.release(p.id, ex, nil, err)
			return nil, err
		}
	}

	exe := WorkflowExecution{ID: p.id, Name: w.opts.Name, ParentID: cur.ParentID, ExecutorID: rt.cfg.ExecutorID,
		AppVersion: rt.cfg.ApplicationVersion, Recovered: !res.Inserted, Attempt: cur.RecoveryAttempts, Queue: cur.QueueName}
	if exe.Recovered {
		// Not the caller's execution: it continues the trace of the call
		// that first started the workflow.
		exe.TraceCarrier = traceCarrierOf(cur.Attributes)
	}
	octx := rt.obs.WorkflowStarted(p.ctx, exe)
	ctx, stop := rt.workflowContext(octx, ex, wf, cur.DeadlineMS)
	go func() {
		defer stop()
		v, err := callSafely(ctx, func(ctx context.Context) (R, error) { return w.fn(ctx, a) })
		// Async steps it left running are part of its history: their
		// outcomes are recorded before its own, so a replay sees them.
		wf.async.wait()
		end := rt.conclude(wf, v, err)
		end.WorkflowExecution = exe
		rt.obs.WorkflowEnded(context.WithoutCancel(octx), end.WorkflowExecutionEnd)
		rt.release(p.id, ex, end.value, end.err)
	}()
	return h, nil
}

// sameInputs returns nil when recorded (the inputs a workflow ID was started
// with) and call (this call's encoded arguments) are the same arguments,
// else an ErrWorkflowConflict naming both. Recorded inputs are compared
// after a round trip through A, so a row written by another tool with other
// spacing or key order still matches.
func sameInputs[A any](id, name, recorded, format, call string) error {
	if recorded == call && format == sysdb.FormatPortable {
		return nil
	}
	a, err := decodeArgs[A](recorded, format)
	if err != nil {
		return errorf(ErrCorruptRecord, err, "dbos: recorded inputs of workflow %s (%s)", id, name)
	}
	if canon, err := encodeArgs(a); err == nil && canon == call {
		return nil
	}
	return fmt.Errorf("%w: workflow ID %s belongs to workflow %s started with inputs %s, not to this call with inputs %s",
		ErrWorkflowConflict, id, name, clip(recorded), clip(call))
}

// clip shortens a value for an error message.
func clip(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// waitRecorded waits until the execution's row is in the database, so that a
// second caller's handle, like the first's, means a durable workflow.
func (e *execution) waitRecorded(ctx context.Context) error {
	select {
	case <-e.recorded:
		return nil
	case <-e.done:
		select {
		case <-e.recorded:
			return nil
		default:
			return e.err // the first start failed before recording it
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// recordedSteps loads the outcomes earlier executions recorded, in one query.
func (rt *Runtime) recordedSteps(ctx context.Context, id string) (map[int]sysdb.StepRow, error) {
	var steps []sysdb.StepRow
	err := rt.retryDB(ctx, func(ctx context.Context) (err error) {
		steps, err = rt.store.Steps(ctx, id)
		return err
	})
	if err != nil {
		return nil, errorf(ErrDatabase, err, "dbos: loading recorded steps of workflow %s", id)
	}
	recorded := make(map[int]sysdb.StepRow, len(steps))
	for _, s := range steps {
		recorded[s.StepID] = s
	}
	return recorded, nil
}

// workflowContext is the context a workflow body runs with. It outlives the
// caller's context but keeps its values, and ends on CancelWorkflow, the
// workflow's deadline, or Shutdown. stop releases it.
func (rt *Runtime) workflowContext(caller context.Context, ex *execution, wf *workflowState, deadlineMS int64) (ctx context.Context, stop func()) {
	ctx = context.WithValue(context.WithoutCancel(caller), workflowIDKey, nil)
	ctx = context.WithValue(ctx, stepKey, nil)
	ctx, cancel := context.WithCancelCause(ctx)
	rt.setCancel(ex, cancel)
	stopOnShutdown := context.AfterFunc(rt.ctx, func() { cancel(ErrShutdown) })
	stopTimer := context.CancelFunc(func() {})
	if deadlineMS > 0 {
		ctx, stopTimer = context.WithDeadlineCause(ctx, time.UnixMilli(deadlineMS),
			fmt.Errorf("%w: workflow %s passed its timeout", ErrWorkflowCancelled, wf.id))
	}
	wf.ctx = ctx
	ctx = context.WithValue(ctx, workflowKey, wf)
	return ctx, func() {
		stopOnShutdown()
		stopTimer()
		cancel(nil)
	}
}

// ending is how an execution ends: what callers see, and what observers
// are told.
type ending struct {
	WorkflowExecutionEnd
	value any
	err   error // what callers see when it differs from Err
}

// conclude records a finished body's outcome and returns what callers see.
func (rt *Runtime) conclude(wf *workflowState, v any, err error) ending {
	if err := wf.kitConclude(); err != nil {
		return ended(nil, sysdb.StatusPending, err) // a simulated crash: no outcome
	}
	if abort := wf.aborted(); abort != nil {
		if errors.Is(abort, ErrDatabase) || errors.Is(abort, ErrCorruptRecord) {
			// The outcome cannot be recorded now, or a record needs repair:
			// leave the workflow PENDING, its rows untouched, so recovery
			// finishes it once the database is back or the row is fixed.
			return ended(nil, sysdb.StatusPending, abort)
		}
		// Nondeterminism: whatever the body made of the error, the workflow
		// cannot stand behind another outcome.
		v, err = nil, abort
	}
	if halt := wf.halted(); halt != nil {
		switch {
		case errors.Is(halt, ErrLeaseLost):
			// Fenced: not an outcome. The adopter (or this executor, once
			// it holds its lease again) finishes the workflow.
			return ended(nil, sysdb.StatusPending, halt)
		case errors.Is(halt, ErrWorkflowCancelled):
			// Whatever the body made of it: a cancelled workflow's outcome is
			// its cancellation.
			return rt.cancelled(wf, halt)
		case err != nil:
			// Shutdown interrupted it: not an outcome.
			return ended(nil, sysdb.StatusPending, halt)
		}
	}
	status, out, errJSON := sysdb.StatusSuccess, "", encodeError(err)
	if err != nil {
		status = sysdb.StatusError
	} else if out, err = encodeValueAs(v, wf.format); err != nil {
		status = sysdb.StatusError
		err = fmt.Errorf("dbos: output of workflow %s cannot be stored as JSON: %w", wf.id, err)
		errJSON = encodeError(err)
	}
	var ok bool
	dbErr := rt.retryDB(rt.ctx, func(c context.Context) (e error) {
		ok, e = rt.store.FinishWorkflow(c, sysdb.FinishParams{ID: wf.id, Status: status, Output: out, Error: errJSON})
		return e
	})
	if dbErr != nil {
		return ended(nil, sysdb.StatusPending, errorf(ErrDatabase, dbErr, "dbos: recording the outcome of workflow %s; it resumes on the next Launch", wf.id))
	}
	if !ok {
		// Cancelled (elsewhere, not yet delivered here), or finished by
		// another execution, which reports its own outcome: the recorded
		// outcome wins.
		v, status, err := rt.recordedStatus(wf.id, err)
		e := ended(v, status, err)
		e.Superseded = status != sysdb.StatusCancelled
		return e
	}
	return ended(v, status, err)
}

func ended(v any, status string, err error) ending {
	return ending{WorkflowExecutionEnd: WorkflowExecutionEnd{Status: status, Err: err}, value: v, err: err}
}

// cancelled ends a cancelled execution. A timeout is recorded here
// (after CancelWorkflow the row is CANCELLED already and only the
// descendants can change), cascading to the workflow's PENDING descendants,
// which are then stopped if they run in this runtime.
func (rt *Runtime) cancelled(wf *workflowState, cause error) ending {
	_ = rt.retryDB(rt.dbCtx, func(c context.Context) error {
		_, err := rt.store.Cancel(c, sysdb.CancelParams{ID: wf.id})
		return err
	})
	rt.pollCancellations(rt.dbCtx)
	v, status, err := rt.recordedStatus(wf.id, cause)
	if status == "" {
		status = sysdb.StatusCancelled // cancelled just now; only the read back failed
	}
	e := ended(v, status, err)
	if status == sysdb.StatusCancelled {
		e.Err = cause // says whether CancelWorkflow or the timeout
	}
	return e
}

// recordedStatus reads the recorded result of a workflow that is no longer
// PENDING, with the status it read; fallback is returned (and status "") if
// it is still pending or cannot be read.
func (rt *Runtime) recordedStatus(id string, fallback error) (any, string, error) {
	var row sysdb.WorkflowRow
	err := rt.retryDB(rt.dbCtx, func(c context.Context) (err error) {
		row, err = rt.store.Workflow(c, id)
		return err
	})
	if err != nil || row.Status == sysdb.StatusPending {
		return nil, "", fallback
	}
	v, err := rawOutcome(row)
	return v, row.Status, err
}

// rawOutcome keeps a recorded output as JSON until a typed handle decodes it.
func rawOutcome(row sysdb.WorkflowRow) (any, error) {
	switch row.Status {
	case sysdb.StatusSuccess:
		return rawJSON{text: row.Output, format: row.Serialization}, nil
	default:
		return nil, statusError(row)
	}
}

type rawJSON struct{ text, format string }

// outcome decodes a finished workflow's recorded result.
func outcome[R any](row sysdb.WorkflowRow) (any, error) {
	if row.Status == sysdb.StatusSuccess {
		v, err := decodeValue[R](row.Output, row.Serialization)
		if err != nil {
			return nil, errorf(ErrCorruptRecord, err, "dbos: recorded output of workflow %s", row.ID)
		}
		return v, nil
	}
	return nil, statusError(row)
}

func statusError(row sysdb.WorkflowRow) error {
	recErr, err := decodeError(row.Error, row.Serialization)
	if err != nil {
		return errorf(ErrCorruptRecord, err, "dbos: recorded error of workflow %s", row.ID)
	}
	switch row.Status {
	case sysdb.StatusError:
		if recErr == nil {
			return errorf(ErrCorruptRecord, nil, "dbos: workflow %s is in ERROR with no recorded error", row.ID)
		}
		return recErr
	case sysdb.StatusCancelled:
		if recErr == nil || !errors.Is(recErr, ErrWorkflowCancelled) {
			return errorf(ErrWorkflowCancelled, recErr, "dbos: workflow %s was cancelled", row.ID)
		}
		return recErr
	case sysdb.StatusDeadLetter:
		if recErr == nil || !errors.Is(recErr, ErrMaxRecoveryAttemptsExceeded) {
			return errorf(ErrMaxRecoveryAttemptsExceeded, recErr, "dbos: workflow %s", row.ID)
		}
		return recErr
	}
	return errorf(ErrCorruptRecord, nil, "dbos: workflow %s has unknown status %q", row.ID, row.Status)
}

// abort marks the execution as unable to record a trustworthy outcome and
// returns err for the caller to pass up.
func (w *workflowState) abort(err error) error {
	w.abortErr.CompareAndSwap(nil, &err)
	return err
}

func (w *workflowState) aborted() error {
	if p := w.abortErr.Load(); p != nil {
		return *p
	}
	return nil
}
