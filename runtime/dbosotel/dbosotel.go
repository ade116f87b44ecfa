// Package dbosotel makes OpenTelemetry spans and metrics of what a dbosgen
// runtime does. Mounting it is one line before Launch:
//
//	cfg.Observer = dbosotel.New(tracerProvider, meterProvider)
//
// # Spans
//
// One span per workflow execution ("workflow <name>"), per step attempt
// ("step <name>"), per transaction attempt ("transaction <name>") and per
// queue wait ("queue <queue>"), all of kind internal. Step and transaction
// spans are children of their workflow's span, or of the caller's span
// outside a workflow, and the body of each sees its span in its context, so
// spans it starts (an HTTP client's, a database driver's) nest under it.
// Replays of recorded outcomes make no span: nothing runs. A failed attempt
// or execution records its error and has status Error; one interrupted by
// Shutdown does not (it is not an outcome: the workflow resumes).
//
// Attributes: dbos.workflow.id, dbos.workflow.name, dbos.workflow.parent_id,
// dbos.workflow.recovered, dbos.workflow.attempt (the execution's number,
// DBOS's recovery_attempts), dbos.workflow.status (as the execution leaves
// the workflow: SUCCESS, ERROR, CANCELLED, or PENDING when interrupted),
// dbos.workflow.superseded, dbos.workflow.queue, dbos.executor.id and
// dbos.app.version on workflow spans; dbos.workflow.id, dbos.step.id,
// dbos.step.name, dbos.step.attempt (from 1), dbos.step.max_attempts,
// dbos.step.outcome (success, retry, error, interrupted; superseded for a
// transaction another execution recorded first) and dbos.step.retry_in_ms
// on step and transaction spans, with dbos.transaction.read_only and
// dbos.transaction.retry_reason on transaction spans; dbos.queue.name on
// queue waits.
//
// # The trace of a workflow
//
// A workflow started directly runs under the caller's span, and a child
// under its parent's execution span. The caller's trace context is also
// stored with the workflow (W3C trace context, in the attributes column of
// DBOS's workflow_status), so that an execution in another process or after
// a crash continues it: a recovered execution's span is a child of the span
// that first started the workflow, in the same trace, with a link to the
// span that resumed it (Launch's, or a second caller's) when there is one.
// A parent rather than a link, so that one trace holds the whole history of
// a workflow, however many executions it took; the first execution's span
// ended with status PENDING. A queued workflow's wait span starts when it
// was enqueued, under the enqueuer's stored context, and parents its
// execution.
//
// # Metrics
//
//   - dbos.workflow.executions {execution}: executions started, by
//     dbos.workflow.name and dbos.workflow.recovered.
//   - dbos.workflow.outcomes {workflow}: workflows that reached a final
//     status (SUCCESS, ERROR, CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED),
//     counted once, by the execution that recorded it, by
//     dbos.workflow.name and dbos.workflow.status.
//   - dbos.step.attempts {attempt}: step attempts, by dbos.step.name and
//     dbos.step.outcome.
//   - dbos.step.retries {retry}: failed step attempts followed by another,
//     by dbos.step.name.
//   - dbos.transaction.attempts {attempt}: transaction attempts, by
//     dbos.step.name and dbos.step.outcome; dbos.transaction.retries
//     {retry}: those run again, by dbos.step.name and
//     dbos.transaction.retry_reason.
//   - dbos.queue.depth {workflow}: an asynchronous gauge of the workflows
//     waiting in each queue, by dbos.queue.name and dbos.app.name, read from
//     each launched runtime that reports queue depths.
package dbosotel

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/dbosgen/dbosgen/runtime/dbos"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer and meter.
const ScopeName = "github.com/dbosgen/dbosgen/runtime/dbosotel"

// Attribute keys of spans and metrics.
const (
	WorkflowID         = attribute.Key("dbos.workflow.id")
	WorkflowName       = attribute.Key("dbos.workflow.name")
	WorkflowParentID   = attribute.Key("dbos.workflow.parent_id")
	WorkflowRecovered  = attribute.Key("dbos.workflow.recovered")
	WorkflowAttempt    = attribute.Key("dbos.workflow.attempt")
	WorkflowStatus     = attribute.Key("dbos.workflow.status")
	WorkflowSuperseded = attribute.Key("dbos.workflow.superseded")
	WorkflowQueue      = attribute.Key("dbos.workflow.queue")
	ExecutorID         = attribute.Key("dbos.executor.id")
	AppVersion         = attribute.Key("dbos.app.version")
	AppName            = attribute.Key("dbos.app.name")
	StepID             = attribute.Key("dbos.step.id")
	StepName           = attribute.Key("dbos.step.name")
	StepAttempt        = attribute.Key("dbos.step.attempt")
	StepMaxAttempts    = attribute.Key("dbos.step.max_attempts")
	StepOutcome        = attribute.Key("dbos.step.outcome")
	StepRetryInMS      = attribute.Key("dbos.step.retry_in_ms")
	TxReadOnly         = attribute.Key("dbos.transaction.read_only")
	TxRetryReason      = attribute.Key("dbos.transaction.retry_reason")
	QueueName          = attribute.Key("dbos.queue.name")
)

// Observer is a dbos.Observer that makes spans and metrics. Make one with
// New; it may serve several runtimes.
type Observer struct {
	dbos.NopObserver
	tracer trace.Tracer
	prop   propagation.TextMapPropagator

	wfExecutions, wfOutcomes metric.Int64Counter
	stepAttempts, stepRetry  metric.Int64Counter
	txAttempts, txRetry      metric.Int64Counter

	mu      sync.Mutex
	sources map[*dbos.Runtime]queueSource
}

type queueSource struct {
	app    string
	depths func(context.Context) (map[string]int64, error)
}

// Option configures New.
type Option func(*Observer)

// WithPropagator sets how trace contexts are written into a workflow's
// stored carrier and read back. The default is W3C trace context
// (propagation.TraceContext), whatever the global propagator is; pass
// otel.GetTextMapPropagator() to follow the global one, or add
// propagation.Baggage to carry baggage into recovered workflows too.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(o *Observer) { o.prop = p }
}

// New returns an Observer making spans with tp and metrics with mp; nil
// takes the global provider (otel.GetTracerProvider, otel.GetMeterProvider).
func New(tp trace.TracerProvider, mp metric.MeterProvider, opts ...Option) *Observer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	o := &Observer{
		tracer:  tp.Tracer(ScopeName),
		prop:    propagation.TraceContext{},
		sources: map[*dbos.Runtime]queueSource{},
	}
	for _, opt := range opts {
		opt(o)
	}
	m := mp.Meter(ScopeName)
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil {
			otel.Handle(err) // c is still usable: a no-op
		}
		return c
	}
	o.wfExecutions = counter("dbos.workflow.executions", "{execution}", "Workflow executions started, first or resumed.")
	o.wfOutcomes = counter("dbos.workflow.outcomes", "{workflow}", "Workflows that reached a final status.")
	o.stepAttempts = counter("dbos.step.attempts", "{attempt}", "Step attempts, by outcome.")
	o.stepRetry = counter("dbos.step.retries", "{retry}", "Failed step attempts followed by another attempt.")
	o.txAttempts = counter("dbos.transaction.attempts", "{attempt}", "Transaction attempts, by outcome.")
	o.txRetry = counter("dbos.transaction.retries", "{retry}", "Transactions run again after a serialization failure or a lost connection.")
	if _, err := m.Int64ObservableGauge("dbos.queue.depth", metric.WithUnit("{workflow}"),
		metric.WithDescription("Workflows waiting in a queue."), metric.WithInt64Callback(o.observeQueues)); err != nil {
		otel.Handle(err)
	}
	return o
}

// spanKey keeps this observer's span in a context, apart from whatever span
// another observer put there after it.
type spanKey struct{ o *Observer }

func (o *Observer) start(ctx context.Context, name string, opts ...trace.SpanStartOption) context.Context {
	ctx, span := o.tracer.Start(ctx, name, append(opts, trace.WithSpanKind(trace.SpanKindInternal))...)
	return context.WithValue(ctx, spanKey{o}, span)
}

func (o *Observer) span(ctx context.Context) trace.Span {
	if s, ok := ctx.Value(spanKey{o}).(trace.Span); ok {
		return s
	}
	return trace.SpanFromContext(context.Background()) // a no-op span
}

// fail marks span failed with err.
func fail(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// TraceCarrier implements dbos.Observer: ctx's trace context, to be stored
// with the workflow it starts.
func (o *Observer) TraceCarrier(ctx context.Context) map[string]string {
	c := propagation.MapCarrier{}
	o.prop.Inject(ctx, c)
	if len(c) == 0 {
		return nil
	}
	return c
}

// continued returns ctx with the stored trace context of carrier as the
// parent of what starts next, and a link to the span ctx had, if it was
// another; ctx unchanged when the carrier holds no valid context.
func (o *Observer) continued(ctx context.Context, carrier map[string]string) (context.Context, []trace.SpanStartOption) {
	if len(carrier) == 0 {
		return ctx, nil
	}
	cur := trace.SpanContextFromContext(ctx)
	ext := o.prop.Extract(ctx, propagation.MapCarrier(carrier))
	stored := trace.SpanContextFromContext(ext)
	if !stored.IsValid() || stored.Equal(cur) {
		return ctx, nil
	}
	if cur.IsValid() {
		return ext, []trace.SpanStartOption{trace.WithLinks(trace.Link{SpanContext: cur})}
	}
	return ext, nil
}

// WorkflowStarted implements dbos.Observer.
func (o *Observer) WorkflowStarted(ctx context.Context, e dbos.WorkflowExecution) context.Context {
	ctx, opts := o.continued(ctx, e.TraceCarrier)
	attrs := []attribute.KeyValue{WorkflowID.String(e.ID), WorkflowName.String(e.Name),
		WorkflowRecovered.Bool(e.Recovered), WorkflowAttempt.Int(e.Attempt),
		ExecutorID.String(e.ExecutorID), AppVersion.String(e.AppVersion)}
	if e.ParentID != "" {
		attrs = append(attrs, WorkflowParentID.String(e.ParentID))
	}
	if e.Queue != "" {
		attrs = append(attrs, WorkflowQueue.String(e.Queue))
	}
	ctx = o.start(ctx, "workflow "+e.Name, append(opts, trace.WithAttributes(attrs...))...)
	o.wfExecutions.Add(ctx, 1, metric.WithAttributes(WorkflowName.String(e.Name), WorkflowRecovered.Bool(e.Recovered)))
	return ctx
}

// WorkflowEnded implements dbos.Observer.
func (o *Observer) WorkflowEnded(ctx context.Context, e dbos.WorkflowExecutionEnd) {
	span := o.span(ctx)
	span.SetAttributes(WorkflowStatus.String(e.Status), WorkflowSuperseded.Bool(e.Superseded))
	if e.Err != nil && !errors.Is(e.Err, dbos.ErrShutdown) {
		fail(span, e.Err)
	}
	span.End()
	if final(e.Status) && !e.Superseded {
		o.wfOutcomes.Add(ctx, 1, metric.WithAttributes(WorkflowName.String(e.Name), WorkflowStatus.String(e.Status)))
	}
}

func final(status string) bool {
	switch status {
	case dbos.StatusSuccess, dbos.StatusError, dbos.StatusCancelled, dbos.StatusMaxRecoveryAttemptsExceeded:
		return true
	}
	return false
}

// WorkflowParked implements dbos.Observer: a span, in the workflow's trace,
// that says so, and the outcome counted.
func (o *Observer) WorkflowParked(ctx context.Context, e dbos.WorkflowParked) {
	ctx, opts := o.continued(ctx, e.TraceCarrier)
	ctx = o.start(ctx, "workflow "+e.Name, append(opts, trace.WithAttributes(WorkflowID.String(e.ID),
		WorkflowName.String(e.Name), WorkflowRecovered.Bool(true), WorkflowAttempt.Int(e.Executions+1),
		WorkflowStatus.String(e.Status)))...)
	span := o.span(ctx)
	span.SetStatus(codes.Error, "parked after too many recovery attempts")
	span.End()
	o.wfOutcomes.Add(ctx, 1, metric.WithAttributes(WorkflowName.String(e.Name), WorkflowStatus.String(e.Status)))
}

func stepAttrs(s dbos.StepInfo) []attribute.KeyValue {
	attrs := []attribute.KeyValue{StepName.String(s.Name), StepAttempt.Int(s.Attempt + 1)}
	if s.WorkflowID != "" {
		attrs = append(attrs, WorkflowID.String(s.WorkflowID), StepID.Int(s.StepID))
	}
	return attrs
}

// StepStarted implements dbos.Observer.
func (o *Observer) StepStarted(ctx context.Context, e dbos.StepAttempt) context.Context {
	return o.start(ctx, "step "+e.Name, trace.WithAttributes(append(stepAttrs(e.StepInfo), StepMaxAttempts.Int(e.MaxAttempts))...))
}

// StepEnded implements dbos.Observer.
func (o *Observer) StepEnded(ctx context.Context, e dbos.StepAttemptEnd) {
	span, outcome := o.span(ctx), e.Outcome()
	span.SetAttributes(StepOutcome.String(outcome))
	if e.Retry {
		span.SetAttributes(StepRetryInMS.Int64(e.RetryIn.Milliseconds()))
	}
	if e.Err != nil && !e.Interrupted {
		fail(span, e.Err)
	}
	span.End()
	o.stepAttempts.Add(ctx, 1, metric.WithAttributes(StepName.String(e.Name), StepOutcome.String(outcome)))
	if e.Retry {
		o.stepRetry.Add(ctx, 1, metric.WithAttributes(StepName.String(e.Name)))
	}
}

// TransactionStarted implements dbos.Observer.
func (o *Observer) TransactionStarted(ctx context.Context, e dbos.TransactionAttempt) context.Context {
	return o.start(ctx, "transaction "+e.Name, trace.WithAttributes(append(stepAttrs(e.StepInfo), TxReadOnly.Bool(e.ReadOnly))...))
}

// TransactionEnded implements dbos.Observer.
func (o *Observer) TransactionEnded(ctx context.Context, e dbos.TransactionAttemptEnd) {
	span, outcome := o.span(ctx), e.Outcome()
	span.SetAttributes(StepOutcome.String(outcome))
	if e.Retry {
		span.SetAttributes(TxRetryReason.String(e.RetryReason), StepRetryInMS.Int64(e.RetryIn.Milliseconds()))
	}
	if e.Err != nil && !e.Interrupted {
		fail(span, e.Err)
	}
	span.End()
	o.txAttempts.Add(ctx, 1, metric.WithAttributes(StepName.String(e.Name), StepOutcome.String(outcome)))
	if e.Retry {
		o.txRetry.Add(ctx, 1, metric.WithAttributes(StepName.String(e.Name), TxRetryReason.String(e.RetryReason)))
	}
}

// QueueWaitStarted implements dbos.Observer: an event on the enqueuer's
// span. The wait's own span is made when it ends, wherever that is.
func (o *Observer) QueueWaitStarted(ctx context.Context, e dbos.QueueWait) {
	trace.SpanFromContext(ctx).AddEvent("dbos.workflow.enqueued", trace.WithAttributes(QueueName.String(e.Queue),
		WorkflowID.String(e.WorkflowID), WorkflowName.String(e.WorkflowName)))
}

// QueueWaitEnded implements dbos.Observer: the wait's span, from the enqueue
// to now, in the enqueuer's trace; the workflow's execution is its child.
func (o *Observer) QueueWaitEnded(ctx context.Context, e dbos.QueueWaitEnd) context.Context {
	ctx, opts := o.continued(ctx, e.TraceCarrier)
	if !e.EnqueuedAt.IsZero() {
		opts = append(opts, trace.WithTimestamp(e.EnqueuedAt))
	}
	ctx = o.start(ctx, "queue "+e.Queue, append(opts, trace.WithAttributes(QueueName.String(e.Queue),
		WorkflowID.String(e.WorkflowID), WorkflowName.String(e.WorkflowName)))...)
	span := o.span(ctx)
	if e.Err != nil {
		fail(span, e.Err)
	}
	end := e.DequeuedAt
	if end.IsZero() {
		end = time.Now()
	}
	span.End(trace.WithTimestamp(end))
	return ctx
}

// Launched implements dbos.Observer: a runtime that reports queue depths
// feeds the dbos.queue.depth gauge until it shuts down.
func (o *Observer) Launched(_ context.Context, e dbos.RuntimeEvent) {
	if e.QueueDepths == nil {
		return
	}
	o.mu.Lock()
	o.sources[e.Runtime] = queueSource{app: e.AppName, depths: e.QueueDepths}
	o.mu.Unlock()
}

// ShutDown implements dbos.Observer.
func (o *Observer) ShutDown(_ context.Context, e dbos.RuntimeEvent) {
	o.mu.Lock()
	delete(o.sources, e.Runtime)
	o.mu.Unlock()
}

func (o *Observer) observeQueues(ctx context.Context, obs metric.Int64Observer) error {
	o.mu.Lock()
	sources := make([]queueSource, 0, len(o.sources))
	for _, s := range o.sources {
		sources = append(sources, s)
	}
	o.mu.Unlock()
	var errs []error
	for _, s := range sources {
		depths, err := s.depths(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for q, n := range depths {
			obs.Observe(n, metric.WithAttributes(QueueName.String(q), AppName.String(s.app)))
		}
	}
	return errors.Join(errs...)
}

var _ dbos.Observer = (*Observer)(nil)
