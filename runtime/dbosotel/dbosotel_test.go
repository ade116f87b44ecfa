package dbosotel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	"github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/dbosgen/dbosgen/runtime/dbosimpl"
	"github.com/dbosgen/dbosgen/runtime/dbosotel"
	"github.com/jmoiron/sqlx"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Workflows registered as generated code registers them; each test says
// what their bodies do through a key in their arguments.
type args struct {
	Key string `json:"key"`
	N   int    `json:"n"`
}

var bodies sync.Map // key -> func(context.Context, args) (string, error)

func dispatch(ctx context.Context, a args) (string, error) {
	b, ok := bodies.Load(a.Key)
	if !ok {
		return "", fmt.Errorf("no body for %q", a.Key)
	}
	return b.(func(context.Context, args) (string, error))(ctx, a)
}

var (
	orderWF = dbosimpl.RegisterWorkflow(dbosimpl.WorkflowOptions{Name: "otel.order"}, dispatch)
	childWF = dbosimpl.RegisterWorkflow(dbosimpl.WorkflowOptions{Name: "otel.child"}, dispatch)
)

func setBody(t *testing.T, b func(context.Context, args) (string, error)) args {
	bodies.Store(t.Name(), b)
	t.Cleanup(func() { bodies.Delete(t.Name()) })
	return args{Key: t.Name()}
}

// telemetry is an SDK tracer and meter provider that keep what they record.
type telemetry struct {
	spans  *tracetest.InMemoryExporter
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
	test   trace.Tracer // the test's own spans: the callers'
}

func newTelemetry() *telemetry {
	tel := &telemetry{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(tel.spans))
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	tel.test = tel.tp.Tracer("test")
	return tel
}

// named returns the ended spans called name, with every key=value of kv
// (values compared as emitted strings), in the order they ended.
func (tel *telemetry) named(name string, kv ...any) []tracetest.SpanStub {
	var out []tracetest.SpanStub
next:
	for _, s := range tel.spans.GetSpans() {
		if s.Name != name {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if attr(s, kv[i].(attribute.Key)) != fmt.Sprint(kv[i+1]) {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// one returns the only span named name with kv.
func (tel *telemetry) one(t *testing.T, name string, kv ...any) tracetest.SpanStub {
	t.Helper()
	got := tel.named(name, kv...)
	if len(got) != 1 {
		var all []string
		for _, s := range tel.spans.GetSpans() {
			all = append(all, fmt.Sprintf("%s %v", s.Name, s.Attributes))
		}
		t.Fatalf("%d spans %q with %v, want 1; spans:\n\t%s", len(got), name, kv, strings.Join(all, "\n\t"))
	}
	return got[0]
}

func attr(s tracetest.SpanStub, k attribute.Key) string {
	for _, a := range s.Attributes {
		if a.Key == k {
			return a.Value.Emit()
		}
	}
	return "<none>"
}

// metrics collects every int64 data point as "name{k=v,...}" -> value.
func (tel *telemetry) metrics(t *testing.T) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collecting metrics: %v", err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var points []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				points = d.DataPoints
			case metricdata.Gauge[int64]:
				points = d.DataPoints
			}
			for _, p := range points {
				var kv []string
				for _, a := range p.Attributes.ToSlice() {
					kv = append(kv, string(a.Key)+"="+a.Value.Emit())
				}
				sort.Strings(kv)
				out[m.Name+"{"+strings.Join(kv, ",")+"}"] = p.Value
			}
		}
	}
	return out
}

func (tel *telemetry) wantMetrics(t *testing.T, want map[string]int64) {
	t.Helper()
	got := tel.metrics(t)
	for k, v := range want {
		if got[k] != v {
			var all []string
			for k, v := range got {
				all = append(all, fmt.Sprintf("%s = %d", k, v))
			}
			sort.Strings(all)
			t.Errorf("metric %s = %d, want %d; metrics:\n\t%s", k, got[k], v, strings.Join(all, "\n\t"))
		}
	}
}

func launch(t *testing.T, ctx context.Context, url string, tel *telemetry) *dbos.Runtime {
	t.Helper()
	cfg := dbos.Config{AppName: "oteltest", SystemDatabaseURL: url, ExecutorID: "exec-1", ApplicationVersion: "v1",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cfg.Observer = dbosotel.New(tel.tp, tel.mp)
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rt, err := dbos.Launch(lctx, cfg)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	t.Cleanup(func() { shutdown(t, rt) })
	return rt
}

func shutdown(t *testing.T, rt *dbos.Runtime) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rt.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func forEachEngine(t *testing.T, f func(t *testing.T, url string)) {
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) { f(t, dbtest.URL(t, engine)) })
	}
}

func mustEqual[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// A workflow with a retried step, a transaction and a child, under the
// caller's span: a span per execution and attempt, nested as they ran, each
// seen by its body; a failed workflow's span says so; metrics count it all.
func TestSpansAndMetrics(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		tel := newTelemetry()
		var mu sync.Mutex
		seen := map[string]trace.SpanContext{} // the span each body saw
		see := func(what string, ctx context.Context) {
			mu.Lock()
			seen[what] = trace.SpanContextFromContext(ctx)
			mu.Unlock()
		}
		tries := 0
		in := setBody(t, func(ctx context.Context, a args) (string, error) {
			id, _ := dbos.WorkflowID(ctx)
			see("workflow "+id, ctx)
			switch a.N {
			case 1: // the child
				return dbosimpl.RunStep(ctx, &dbosimpl.StepOptions{Name: "notify"}, func(ctx context.Context) (string, error) {
					return "sent", nil
				})
			case 2:
				return "", errors.New("card declined")
			}
			if _, err := dbosimpl.RunStep(ctx, &dbosimpl.StepOptions{Name: "reserve", RetriesAllowed: true, MaxAttempts: 3, Interval: time.Millisecond},
				func(ctx context.Context) (int, error) {
					see(fmt.Sprint("reserve ", tries), ctx)
					if tries++; tries == 1 {
						return 0, errors.New("stock service unavailable")
					}
					return 1, nil
				}); err != nil {
				return "", err
			}
			if _, err := dbosimpl.RunTransaction(ctx, &dbosimpl.TransactionOptions{Name: "record"}, func(ctx context.Context, tx *sqlx.Tx) (int, error) {
				see("record", ctx)
				var n int
				return n, tx.GetContext(ctx, &n, "SELECT 1")
			}); err != nil {
				return "", err
			}
			child := a
			child.N = 1
			return childWF.Run(ctx, child)
		})
		rt := launch(t, context.Background(), url, tel)
		ctx, request := tel.test.Start(dbos.WithRuntime(context.Background(), rt), "request")
		if out, err := orderWF.Run(dbos.WithWorkflowID(ctx, "order-1"), in); err != nil || out != "sent" {
			t.Fatalf("order-1: %q, %v", out, err)
		}
		failing := in
		failing.N = 2
		if _, err := orderWF.Run(dbos.WithWorkflowID(ctx, "order-2"), failing); err == nil {
			t.Fatal("order-2 succeeded")
		}
		request.End()
		root := request.SpanContext()

		wf := tel.one(t, "workflow otel.order", dbosotel.WorkflowID, "order-1")
		mustEqual(t, "workflow span's parent", wf.Parent.SpanID(), root.SpanID())
		mustEqual(t, "workflow span's trace", wf.SpanContext.TraceID(), root.TraceID())
		for k, v := range map[attribute.Key]string{dbosotel.WorkflowName: "otel.order", dbosotel.WorkflowStatus: "SUCCESS",
			dbosotel.WorkflowRecovered: "false", dbosotel.WorkflowAttempt: "1", dbosotel.ExecutorID: "exec-1", dbosotel.AppVersion: "v1"} {
			mustEqual(t, "workflow span's "+string(k), attr(wf, k), v)
		}
		mustEqual(t, "workflow span's status", wf.Status.Code, codes.Unset)
		mustEqual(t, "span the body saw", seen["workflow order-1"].SpanID(), wf.SpanContext.SpanID())

		for i, outcome := range []string{"retry", "success"} {
			s := tel.one(t, "step reserve", dbosotel.StepAttempt, i+1)
			mustEqual(t, "step span's parent", s.Parent.SpanID(), wf.SpanContext.SpanID())
			mustEqual(t, "step outcome", attr(s, dbosotel.StepOutcome), outcome)
			mustEqual(t, "step ID", attr(s, dbosotel.StepID), "1")
			mustEqual(t, "step workflow ID", attr(s, dbosotel.WorkflowID), "order-1")
			mustEqual(t, "step max attempts", attr(s, dbosotel.StepMaxAttempts), "3")
			mustEqual(t, "span the step saw", seen[fmt.Sprint("reserve ", i)].SpanID(), s.SpanContext.SpanID())
			if wantErr := i == 0; (s.Status.Code == codes.Error) != wantErr || (len(s.Events) > 0) != wantErr {
				t.Errorf("attempt %d: status %v, events %v", i+1, s.Status, s.Events)
			}
		}
		tx := tel.one(t, "transaction record")
		mustEqual(t, "transaction span's parent", tx.Parent.SpanID(), wf.SpanContext.SpanID())
		mustEqual(t, "transaction outcome", attr(tx, dbosotel.StepOutcome), "success")
		mustEqual(t, "transaction step ID", attr(tx, dbosotel.StepID), "2")
		mustEqual(t, "span the transaction saw", seen["record"].SpanID(), tx.SpanContext.SpanID())

		child := tel.one(t, "workflow otel.child")
		mustEqual(t, "child's parent span", child.Parent.SpanID(), wf.SpanContext.SpanID())
		mustEqual(t, "child's trace", child.SpanContext.TraceID(), root.TraceID())
		mustEqual(t, "child's parent ID", attr(child, dbosotel.WorkflowParentID), "order-1")
		mustEqual(t, "child's ID", attr(child, dbosotel.WorkflowID), "order-1-3")
		notify := tel.one(t, "step notify")
		mustEqual(t, "child step's parent", notify.Parent.SpanID(), child.SpanContext.SpanID())

		failed := tel.one(t, "workflow otel.order", dbosotel.WorkflowID, "order-2")
		mustEqual(t, "failed workflow's status attribute", attr(failed, dbosotel.WorkflowStatus), "ERROR")
		mustEqual(t, "failed workflow's span status", failed.Status.Code, codes.Error)
		if len(failed.Events) == 0 || failed.Events[0].Name != "exception" {
			t.Errorf("failed workflow's events: %v; want its error recorded", failed.Events)
		}

		tel.wantMetrics(t, map[string]int64{
			"dbos.step.attempts{dbos.step.name=reserve,dbos.step.outcome=retry}":                    1,
			"dbos.step.attempts{dbos.step.name=reserve,dbos.step.outcome=success}":                  1,
			"dbos.step.attempts{dbos.step.name=notify,dbos.step.outcome=success}":                   1,
			"dbos.step.retries{dbos.step.name=reserve}":                                             1,
			"dbos.transaction.attempts{dbos.step.name=record,dbos.step.outcome=success}":            1,
			"dbos.workflow.executions{dbos.workflow.name=otel.order,dbos.workflow.recovered=false}": 2,
			"dbos.workflow.outcomes{dbos.workflow.name=otel.order,dbos.workflow.status=SUCCESS}":    1,
			"dbos.workflow.outcomes{dbos.workflow.name=otel.order,dbos.workflow.status=ERROR}":      1,
			"dbos.workflow.outcomes{dbos.workflow.name=otel.child,dbos.workflow.status=SUCCESS}":    1,
		})

		// Called again by ID, a finished workflow runs nothing: no span.
		n := len(tel.spans.GetSpans())
		if _, err := orderWF.Run(dbos.WithWorkflowID(ctx, "order-1"), in); err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "spans after calling a finished workflow", len(tel.spans.GetSpans()), n)
	})
}

// A workflow interrupted by Shutdown (a crash, as far as the database can
// tell) and recovered by the next Launch continues the trace of the call
// that started it: its new execution is a child of the caller's span, links
// the span Launch ran under, and only the steps that had not run make
// spans.
func TestRecoveredWorkflowContinuesTrace(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		tel := newTelemetry()
		var mu sync.Mutex
		runs := 0
		charged := make(chan struct{}, 1)
		in := setBody(t, func(ctx context.Context, a args) (string, error) {
			if _, err := dbosimpl.RunStep(ctx, &dbosimpl.StepOptions{Name: "charge"}, func(ctx context.Context) (int, error) { return 1, nil }); err != nil {
				return "", err
			}
			mu.Lock()
			runs++
			first := runs == 1
			mu.Unlock()
			if first {
				charged <- struct{}{}
				<-ctx.Done() // until Shutdown
				return "", ctx.Err()
			}
			return dbosimpl.RunStep(ctx, &dbosimpl.StepOptions{Name: "ship"}, func(ctx context.Context) (string, error) { return "shipped", nil })
		})
		rt := launch(t, context.Background(), url, tel)
		ctx, request := tel.test.Start(dbos.WithRuntime(context.Background(), rt), "request")
		if _, err := orderWF.Start(dbos.WithWorkflowID(ctx, "order-crash"), in); err != nil {
			t.Fatal(err)
		}
		<-charged
		shutdown(t, rt)
		request.End()

		lctx, startup := tel.test.Start(context.Background(), "startup")
		rt = launch(t, lctx, url, tel)
		startup.End()
		h, err := dbos.RetrieveWorkflow[string](dbos.WithRuntime(context.Background(), rt), "order-crash")
		if err != nil {
			t.Fatal(err)
		}
		if out, err := h.Result(context.Background()); err != nil || out != "shipped" {
			t.Fatalf("recovered: %q, %v", out, err)
		}

		root := request.SpanContext()
		first := tel.one(t, "workflow otel.order", dbosotel.WorkflowAttempt, 1)
		mustEqual(t, "first execution's parent", first.Parent.SpanID(), root.SpanID())
		mustEqual(t, "first execution's status attribute", attr(first, dbosotel.WorkflowStatus), "PENDING")
		mustEqual(t, "first execution's span status (interrupted is no error)", first.Status.Code, codes.Unset)

		second := tel.one(t, "workflow otel.order", dbosotel.WorkflowAttempt, 2)
		mustEqual(t, "recovered execution's trace", second.SpanContext.TraceID(), root.TraceID())
		mustEqual(t, "recovered execution's parent", second.Parent.SpanID(), root.SpanID())
		mustEqual(t, "recovered execution's parent is remote", second.Parent.IsRemote(), true)
		mustEqual(t, "recovered", attr(second, dbosotel.WorkflowRecovered), "true")
		mustEqual(t, "recovered execution's status", attr(second, dbosotel.WorkflowStatus), "SUCCESS")
		if len(second.Links) != 1 || second.Links[0].SpanContext.SpanID() != startup.SpanContext().SpanID() {
			t.Errorf("recovered execution's links: %+v; want the startup span", second.Links)
		}
		charge := tel.one(t, "step charge") // replayed in recovery: no second span
		mustEqual(t, "charge's parent", charge.Parent.SpanID(), first.SpanContext.SpanID())
		ship := tel.one(t, "step ship")
		mustEqual(t, "ship's parent", ship.Parent.SpanID(), second.SpanContext.SpanID())
		mustEqual(t, "ship's step ID", attr(ship, dbosotel.StepID), "2")

		tel.wantMetrics(t, map[string]int64{
			"dbos.workflow.executions{dbos.workflow.name=otel.order,dbos.workflow.recovered=false}": 1,
			"dbos.workflow.executions{dbos.workflow.name=otel.order,dbos.workflow.recovered=true}":  1,
			"dbos.workflow.outcomes{dbos.workflow.name=otel.order,dbos.workflow.status=SUCCESS}":    1,
			"dbos.workflow.outcomes{dbos.workflow.name=otel.order,dbos.workflow.status=PENDING}":    0,
		})
	})
}
