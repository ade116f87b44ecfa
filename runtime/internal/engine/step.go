package engine

import (
	"context"
	"fmt"
	"math"
	"runtime/debug"
	"sync"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

// StepOptions is a step's retry policy, from its //dbos:step directive.
//
// Generated code spells out every field, the directive's defaults included,
// so what a step does is readable in dbos_gen.go. In a literal written by
// hand, a zero MaxAttempts, BackoffRate or MaxInterval takes the default
// below (none of them can be zero in a directive), but a zero Interval is
// no wait between attempts, as interval_seconds=0 and interval=0s are: the
// default 1s belongs to a directive without either key, not to the zero
// value.
type StepOptions struct {
	Name           string
	RetriesAllowed bool
	MaxAttempts    int           // default 3; used only when RetriesAllowed
	Interval       time.Duration // the first wait; 0 (or less) retries at once
	BackoffRate    float64       // default 2 when 0 (or less)
	MaxInterval    time.Duration // default 1h when 0 (or less)
	// ShouldRetry, when set, decides whether an error is worth another
	// attempt; an error it refuses is returned at once.
	ShouldRetry func(error) bool
}

func (o *StepOptions) attempts() int {
	if !o.RetriesAllowed {
		return 1
	}
	if o.MaxAttempts <= 0 {
		return 3
	}
	return o.MaxAttempts
}

// Delay is the wait after failed attempt i (from 0):
// min(Interval × BackoffRate^i, MaxInterval), and 0 when Interval is 0.
func (o *StepOptions) Delay(i int) time.Duration {
	interval, rate, limit := o.Interval, o.BackoffRate, o.MaxInterval
	if interval <= 0 {
		return 0
	}
	if rate <= 0 {
		rate = 2
	}
	if limit <= 0 {
		limit = time.Hour
	}
	d := float64(interval) * math.Pow(rate, float64(i))
	if d >= float64(limit) || math.IsInf(d, 0) || math.IsNaN(d) {
		return limit
	}
	return time.Duration(d)
}

// RunStep runs fn as a durable step. Generated xStep wrappers call it.
//
// Inside a workflow the step takes the next step ID; an outcome recorded
// under that ID by an earlier execution is returned without running fn, and
// otherwise fn's final outcome is recorded with one statement. Outside a
// workflow fn runs with its retry policy and nothing is recorded. Inside
// another step fn is a plain call.
func RunStep[R any](ctx context.Context, opts *StepOptions, fn func(context.Context) (R, error)) (R, error) {
	if stepFrom(ctx) != nil {
		return fn(ctx)
	}
	wf := workflowFrom(ctx)
	if wf == nil {
		return runPlain(ctx, opts, fn)
	}
	return runStepAt(ctx, wf, wf.nextStepID(), opts, fn)
}

// runPlain runs a step outside any workflow: its retry policy, no record.
func runPlain[R any](ctx context.Context, opts *StepOptions, fn func(context.Context) (R, error)) (R, error) {
	return runAttempts(ctx, observerFor(ctx), opts, StepAttempt{StepInfo: StepInfo{Name: opts.Name}}, fn)
}

// Future is the pending result of an asynchronous step.
type Future[R any] struct {
	done  chan struct{}
	value R
	err   error
}

// Get waits for the step and returns its outcome, or ctx's error.
func (f *Future[R]) Get(ctx context.Context) (R, error) {
	select {
	case <-f.done:
		return f.value, f.err
	case <-ctx.Done():
		var zero R
		return zero, ctx.Err()
	}
}

// Done is closed when the step has finished.
func (f *Future[R]) Done() <-chan struct{} { return f.done }

// RunStepAsync starts fn as a durable step in its own goroutine. The step ID
// is taken now, at the call, so concurrent steps replay deterministically.
// The workflow finishes only once every async step it started has finished
// and been recorded, awaited or not.
func RunStepAsync[R any](ctx context.Context, opts *StepOptions, fn func(context.Context) (R, error)) *Future[R] {
	f := &Future[R]{done: make(chan struct{})}
	run := func() (R, error) { return runPlain(ctx, opts, fn) }
	switch wf := workflowFrom(ctx); {
	case stepFrom(ctx) != nil:
		run = func() (R, error) { return callSafely(ctx, fn) }
	case wf != nil:
		if !wf.async.add() {
			// Called by a goroutine that outlived the body: the workflow's
			// outcome may be recorded already, so this step cannot be.
			f.err = fmt.Errorf("%w: step %s started after workflow %s returned", ErrNondeterministic, opts.Name, wf.id)
			close(f.done)
			return f
		}
		id := wf.nextStepID()
		// Shutdown waits for it like for its workflow; the workflow's own
		// count is held, so this Add cannot race Shutdown's Wait.
		wf.rt.wg.Add(1)
		run = func() (R, error) {
			defer wf.rt.wg.Done()
			defer wf.async.done()
			return runStepAt(ctx, wf, id, opts, fn)
		}
	}
	go func() {
		defer close(f.done)
		f.value, f.err = run()
	}()
	return f
}

// asyncSteps counts a workflow's running async steps. Once the body has
// returned, wait closes it: no async step starts after that.
type asyncSteps struct {
	mu      sync.Mutex
	running int
	closed  bool
	idle    chan struct{} // made by wait when steps still run
}

func (a *asyncSteps) add() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.running++
	return true
}

func (a *asyncSteps) done() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running--; a.running == 0 && a.idle != nil {
		close(a.idle)
	}
}

// wait closes a and waits for the steps still running.
func (a *asyncSteps) wait() {
	a.mu.Lock()
	a.closed = true
	if a.running == 0 {
		a.mu.Unlock()
		return
	}
	a.idle = make(chan struct{})
	a.mu.Unlock()
	<-a.idle
}

func runStepAt[R any](ctx context.Context, wf *workflowState, id int, opts *StepOptions, fn func(context.Context) (R, error)) (R, error) {
	if halt := wf.halted(); halt != nil {
		var zero R
		return zero, refuse(halt, "dbos: step "+opts.Name)
	}
	if err := wf.kitCheck(id); err != nil {
		var zero R
		return zero, err
	}
	if rec, ok := wf.recorded[id]; ok {
		return replay[R](wf, rec, opts.Name)
	}
	started := time.Now().UnixMilli()
	at := StepAttempt{StepInfo: StepInfo{WorkflowID: wf.id, StepID: id, Name: opts.Name}, WorkflowName: wf.name}
	out, err := runAttempts(ctx, wf.rt.obs, opts, at, fn)
	if err != nil && ctx.Err() != nil {
		// Interrupted by cancellation or shutdown: not an outcome. The next
		// execution runs the step again.
		return out, err
	}
	return record(wf, sysdb.StepRow{WorkflowID: wf.id, StepID: id, Name: opts.Name, StartedMS: started}, out, err)
}

// record stores a step's outcome and returns what the workflow must see: the
// outcome, or the one another execution recorded first.
func record[R any](wf *workflowState, row sysdb.StepRow, out R, err error) (R, error) {
	if err != nil {
		row.Error = encodeError(err)
	} else if row.Output, err = encodeValue(out); err != nil {
		err = fmt.Errorf("dbos: step %s of workflow %s returned a value that cannot be stored as JSON: %w", row.Name, wf.id, err)
		row.Output, row.Error = "", encodeError(err)
	}
	stored, fresh, dbErr := wf.rt.recordStep(row)
	if dbErr != nil {
		var zero R
		return zero, wf.abort(errorf(ErrDatabase, dbErr, "dbos: recording step %d (%s) of workflow %s", row.StepID, row.Name, wf.id))
	}
	if !fresh {
		return replay[R](wf, stored, row.Name)
	}
	return out, err
}

// replay returns a recorded outcome.
func replay[R any](wf *workflowState, rec sysdb.StepRow, name string) (R, error) {
	var zero R
	if rec.Name != name {
		return zero, wf.abort(&NondeterministicError{WorkflowID: wf.id, StepID: rec.StepID, Recorded: rec.Name, Called: name})
	}
	if rec.Error != "" {
		recErr, err := decodeError(rec.Error, rec.Serialization)
		if err != nil {
			return zero, wf.abort(errorf(ErrCorruptRecord, err, "dbos: recorded error of step %d (%s) of workflow %s", rec.StepID, name, wf.id))
		}
		return zero, recErr
	}
	v, err := decodeValue[R](rec.Output, rec.Serialization)
	if err != nil {
		return zero, wf.abort(errorf(ErrCorruptRecord, err, "dbos: recorded output of step %d (%s) of workflow %s", rec.StepID, name, wf.id))
	}
	return v, nil
}

// runAttempts runs fn up to opts.attempts() times with exponential backoff,
// telling obs of each attempt.
func runAttempts[R any](ctx context.Context, obs Observer, opts *StepOptions, at StepAttempt, fn func(context.Context) (R, error)) (R, error) {
	var zero R
	max := opts.attempts()
	at.MaxAttempts = max
	var errs []error
	for i := 0; i < max; i++ {
		at.Attempt = i
		actx := obs.StepStarted(ctx, at)
		out, err := callSafely(context.WithValue(actx, stepKey, &stepState{info: at.StepInfo}), fn)
		end := StepAttemptEnd{StepAttempt: at, Err: err}
		endCtx := actx // may be cancelled: the end of an attempt is reported all the same
		if err == nil {
			obs.StepEnded(endCtx, end)
			return out, nil
		}
		if !opts.RetriesAllowed || ctx.Err() != nil || (opts.ShouldRetry != nil && !opts.ShouldRetry(err)) {
			end.Interrupted = ctx.Err() != nil
			obs.StepEnded(endCtx, end)
			return zero, err
		}
		errs = append(errs, err)
		if i == max-1 {
			end.Exhausted = &MaxStepRetriesExceededError{Step: opts.Name, MaxAttempts: max, Errors: errs}
			obs.StepEnded(endCtx, end)
			return zero, end.Exhausted
		}
		delay := opts.Delay(i)
		end.Retry, end.RetryIn = true, delay
		obs.StepEnded(endCtx, end)
		if delay <= 0 {
			continue // an explicit zero interval: retry at once
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return zero, ctx.Err()
		case <-t.C:
		}
	}
	return zero, &MaxStepRetriesExceededError{Step: opts.Name, MaxAttempts: max, Errors: errs} // max < 1: unreachable
}

// callSafely turns a panic in fn into an error.
func callSafely[R any](ctx context.Context, fn func(context.Context) (R, error)) (out R, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Value: fmt.Sprint(p), Stack: string(debug.Stack())}
		}
	}()
	return fn(ctx)
}
