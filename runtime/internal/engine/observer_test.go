package engine_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
	"github.com/jmoiron/sqlx"
)

// obsRecorder is an Observer that writes each event as one line, and puts a
// mark in each context it returns so tests can check what the bodies see.
type obsRecorder struct {
	dbos.NopObserver
	name   string // prefixes its marks
	mu     sync.Mutex
	events []string
	raw    []any
}

type markKey struct{ observer string }

func (o *obsRecorder) add(e any, format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, fmt.Sprintf(format, args...))
	o.raw = append(o.raw, e)
}

func (o *obsRecorder) mark(ctx context.Context, m string) context.Context {
	return context.WithValue(ctx, markKey{o.name}, m)
}

// lines returns the events whose line contains sub.
func (o *obsRecorder) lines(sub string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, e := range o.events {
		if strings.Contains(e, sub) {
			out = append(out, e)
		}
	}
	return out
}

func (o *obsRecorder) Launched(_ context.Context, e dbos.RuntimeEvent) {
	o.add(e, "launched %s", e.ExecutorID)
}

func (o *obsRecorder) ShutDown(_ context.Context, e dbos.RuntimeEvent) {
	o.add(e, "shutdown %s", e.ExecutorID)
}

func (o *obsRecorder) LeftAlone(_ context.Context, e dbos.LeftAlone) {
	o.add(e, "left-alone %s %v", e.WorkflowID, e.Versions)
}

func (o *obsRecorder) WorkflowStarted(ctx context.Context, e dbos.WorkflowExecution) context.Context {
	o.add(e, "wf-start %s parent=%s recovered=%v attempt=%d", e.ID, e.ParentID, e.Recovered, e.Attempt)
	return o.mark(ctx, "wf:"+e.ID)
}

func (o *obsRecorder) WorkflowEnded(ctx context.Context, e dbos.WorkflowExecutionEnd) {
	o.add(e, "wf-end %s %s superseded=%v err=%v mark=%v", e.ID, e.Status, e.Superseded, e.Err != nil, ctx.Value(markKey{o.name}))
}

func (o *obsRecorder) WorkflowParked(_ context.Context, e dbos.WorkflowParked) {
	o.add(e, "wf-parked %s", e.ID)
}

func (o *obsRecorder) StepStarted(ctx context.Context, e dbos.StepAttempt) context.Context {
	o.add(e, "step-start %s/%d %s #%d/%d", e.WorkflowID, e.StepID, e.Name, e.Attempt, e.MaxAttempts)
	return o.mark(ctx, fmt.Sprintf("step:%s#%d", e.Name, e.Attempt))
}

func (o *obsRecorder) StepEnded(ctx context.Context, e dbos.StepAttemptEnd) {
	o.add(e, "step-end %s/%d %s #%d %s mark=%v", e.WorkflowID, e.StepID, e.Name, e.Attempt, e.Outcome(), ctx.Value(markKey{o.name}))
}

func (o *obsRecorder) TransactionStarted(ctx context.Context, e dbos.TransactionAttempt) context.Context {
	o.add(e, "tx-start %s/%d %s #%d", e.WorkflowID, e.StepID, e.Name, e.Attempt)
	return o.mark(ctx, "tx:"+e.Name)
}

func (o *obsRecorder) TransactionEnded(ctx context.Context, e dbos.TransactionAttemptEnd) {
	o.add(e, "tx-end %s/%d %s #%d %s", e.WorkflowID, e.StepID, e.Name, e.Attempt, e.Outcome())
}

// The hook seam: every execution, step attempt and transaction attempt is
// reported, bracketed, with the context the observer returned in the body;
// replayed steps are not; a Shutdown leaves an execution PENDING and the
// next Launch reports a recovered one; observers combine in order.
func TestObserverEvents(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		a, b := &obsRecorder{name: "a"}, &obsRecorder{name: "b"}
		withObs := func(c *dbos.Config) { c.Observer = dbos.Observers(a, nil, b) }
		var c counter
		marks := func(ctx context.Context) string {
			return fmt.Sprintf("%v|%v", ctx.Value(markKey{"a"}), ctx.Value(markKey{"b"}))
		}
		var seen sync.Map // what the bodies saw: key -> marks
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			id, _ := dbos.WorkflowID(ctx)
			seen.Store("body "+id, marks(ctx))
			if in.N == 1 { // a child
				return "child", nil
			}
			if _, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "flaky", RetriesAllowed: true, MaxAttempts: 3},
				func(ctx context.Context) (int, error) {
					if c.inc("flaky") == 1 {
						return 0, errors.New("transient")
					}
					seen.Store("flaky", marks(ctx))
					return 1, nil
				}); err != nil {
				return "", err
			}
			if _, err := dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "tx"}, func(ctx context.Context, tx *sqlx.Tx) (int, error) {
				seen.Store("tx", marks(ctx))
				var n int
				return n, tx.GetContext(ctx, &n, "SELECT 1")
			}); err != nil {
				return "", err
			}
			child := in
			child.N = 1
			if _, err := testWF.Run(ctx, child); err != nil {
				return "", err
			}
			if c.inc("body") == 1 {
				<-ctx.Done() // the first execution waits for Shutdown
				return "", ctx.Err()
			}
			return "done", nil
		})

		rt, ctx := launch(t, url, withObs)
		must(testWF.Start(dbos.WithWorkflowID(ctx, "obs"), in))
		// The body's first execution has passed its child and waits: only
		// then does Shutdown interrupt it where the recovery expects.
		waitFor(t, "the child to finish", func() bool { return len(a.lines("wf-end obs-3 SUCCESS")) == 1 && c.get("body") == 1 })
		shutdown(t, rt)

		want := []string{
			"launched exec-1",
			"wf-start obs parent= recovered=false attempt=1",
			"step-start obs/1 flaky #0/3",
			"step-end obs/1 flaky #0 retry mark=step:flaky#0",
			"step-start obs/1 flaky #1/3",
			"step-end obs/1 flaky #1 success mark=step:flaky#1",
			"tx-start obs/2 tx #0",
			"tx-end obs/2 tx #0 success",
			"wf-start obs-3 parent=obs recovered=false attempt=1",
			"wf-end obs-3 SUCCESS superseded=false err=false mark=wf:obs-3",
			"wf-end obs PENDING superseded=false err=true mark=wf:obs",
			"shutdown exec-1",
		}
		for _, o := range []*obsRecorder{a, b} {
			if got := o.lines(""); !slices.Equal(got, want) {
				t.Fatalf("observer %s saw\n\t%s\nwant\n\t%s", o.name, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
			}
		}
		for k, v := range map[string]string{"body obs": "wf:obs|wf:obs", "body obs-3": "wf:obs-3|wf:obs-3",
			"flaky": "step:flaky#1|step:flaky#1", "tx": "tx:tx|tx:tx"} {
			if got, _ := seen.Load(k); got != v {
				t.Errorf("%s saw marks %v, want %s", k, got, v)
			}
		}
		end := a.raw[len(a.raw)-2].(dbos.WorkflowExecutionEnd)
		if !errors.Is(end.Err, dbos.ErrShutdown) {
			t.Errorf("interrupted execution ended with %v, want ErrShutdown", end.Err)
		}

		// Recovery: the recorded steps and the finished child are replayed,
		// unreported; the body runs on and finishes.
		a.events, a.raw = nil, nil
		rt, ctx = launch(t, url, func(c *dbos.Config) { c.Observer = a })
		h := must(dbos.RetrieveWorkflow[string](ctx, "obs"))
		if v := must(h.Result(ctx)); v != "done" {
			t.Fatalf("recovered result %q", v)
		}
		want = []string{
			"launched exec-1",
			"wf-start obs parent= recovered=true attempt=2",
			"wf-end obs SUCCESS superseded=false err=false mark=wf:obs",
		}
		if got := a.lines(""); !slices.Equal(got, want) {
			t.Fatalf("after recovery saw\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
	})
}

// Steps and transactions outside a workflow are reported too, with no
// workflow ID; an exhausted step says so on its last attempt.
func TestObserverOutsideWorkflow(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		o := &obsRecorder{name: "o"}
		_, ctx := launch(t, url, func(c *dbos.Config) { c.Observer = o })
		_, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "doomed", RetriesAllowed: true, MaxAttempts: 2},
			func(ctx context.Context) (int, error) { return 0, errors.New("no") })
		if !errors.Is(err, dbos.ErrMaxStepRetriesExceeded) {
			t.Fatalf("err = %v", err)
		}
		if _, err := dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "plain", ReadOnly: true},
			func(ctx context.Context, tx *sqlx.Tx) (int, error) { return 1, nil }); err != nil {
			t.Fatal(err)
		}
		want := []string{
			"step-start /0 doomed #0/2", "step-end /0 doomed #0 retry mark=step:doomed#0",
			"step-start /0 doomed #1/2", "step-end /0 doomed #1 error mark=step:doomed#1",
			"tx-start /0 plain #0", "tx-end /0 plain #0 success",
		}
		if got := o.lines(" /0 "); !slices.Equal(got, want) {
			t.Fatalf("saw\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		var ends []dbos.StepAttemptEnd
		for _, e := range o.raw {
			if e, ok := e.(dbos.StepAttemptEnd); ok {
				ends = append(ends, e)
			}
		}
		if first := ends[0]; !first.Retry || first.Exhausted != nil || first.Err == nil {
			t.Fatalf("first attempt: %+v", first)
		}
		if last := ends[1]; last.Exhausted == nil || last.Exhausted.MaxAttempts != 2 || len(last.Exhausted.Errors) != 2 {
			t.Fatalf("last attempt: Exhausted = %+v", last.Exhausted)
		}
	})
}

// carrierObserver stores the "trace" value of the starting context as its
// trace carrier, and puts "wf:<id>" there for the workflow's body, so a
// child's carrier names its parent.
type carrierObserver struct {
	obsRecorder
}

type traceKey struct{}

func (o *carrierObserver) TraceCarrier(ctx context.Context) map[string]string {
	v, _ := ctx.Value(traceKey{}).(string)
	if v == "" {
		return nil
	}
	return map[string]string{"traceparent": v, "": "dropped"}
}

func (o *carrierObserver) WorkflowStarted(ctx context.Context, e dbos.WorkflowExecution) context.Context {
	o.add(e, "wf-start %s recovered=%v carrier=%v", e.ID, e.Recovered, e.TraceCarrier)
	return context.WithValue(ctx, traceKey{}, "wf:"+e.ID)
}

// The caller's trace context is stored with the workflow at its start (in
// DBOS's attributes column, under dbosgen's key) and handed back to the
// observer when the workflow is recovered; a child's is its parent's body's.
// What cannot be stored is dropped without failing the start, and
// attributes written by other tools are ignored.
func TestObserverTraceCarrier(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		o := &carrierObserver{obsRecorder{name: "c"}}
		withObs := func(c *dbos.Config) { c.Observer = o }
		var c counter
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			if in.N == 1 {
				return "child", nil
			}
			child := in
			child.N = 1
			if _, err := testWF.Run(ctx, child); err != nil {
				return "", err
			}
			id, _ := dbos.WorkflowID(ctx)
			if c.inc(id) == 1 {
				<-ctx.Done()
				return "", ctx.Err()
			}
			return "done", nil
		})
		rt, ctx := launch(t, url, withObs)
		traced := context.WithValue(ctx, traceKey{}, "00-trace-one")
		must(testWF.Start(dbos.WithWorkflowID(traced, "tc"), in))
		must(testWF.Start(dbos.WithWorkflowID(context.WithValue(ctx, traceKey{}, "bad\x00value"), "tc-nul"), in))
		must(testWF.Start(dbos.WithWorkflowID(ctx, "tc-foreign"), in))
		waitFor(t, "three bodies", func() bool { return c.get("tc") == 1 && c.get("tc-nul") == 1 && c.get("tc-foreign") == 1 })
		attrs := func(id string) string {
			var s sql.NullString
			q := "SELECT attributes FROM workflow_status WHERE workflow_uuid = ?"
			if rt.AppDB().DriverName() == "pgx" {
				q = "SELECT attributes::TEXT FROM dbos.workflow_status WHERE workflow_uuid = $1"
			}
			if err := rt.AppDB().Get(&s, q, id); err != nil {
				t.Fatalf("attributes of %s: %v", id, err)
			}
			return s.String
		}
		for id, want := range map[string]string{"tc": "00-trace-one", "tc-1": "wf:tc", "tc-nul": "", "tc-foreign": ""} {
			var got map[string]map[string]string
			if a := attrs(id); a != "" {
				must(struct{}{}, json.Unmarshal([]byte(a), &got))
			}
			if tc := got["dbosgen.trace_context"]; tc["traceparent"] != want || len(tc) > 1 {
				t.Errorf("attributes of %s: %v; want traceparent %q only", id, got, want)
			}
		}
		execSQL(t, rt, `UPDATE {dbos}workflow_status SET attributes = '{"owner": "ops"}' WHERE workflow_uuid = 'tc-foreign'`)
		shutdown(t, rt)

		o.events = nil
		_, ctx = launch(t, url, withObs)
		for _, id := range []string{"tc", "tc-nul", "tc-foreign"} {
			h := must(dbos.RetrieveWorkflow[string](ctx, id))
			if v := must(h.Result(ctx)); v != "done" {
				t.Fatalf("%s: %q", id, v)
			}
		}
		for _, want := range []string{
			"wf-start tc recovered=true carrier=map[traceparent:00-trace-one]",
			"wf-start tc-nul recovered=true carrier=map[]",
			"wf-start tc-foreign recovered=true carrier=map[]",
		} {
			if len(o.lines(want)) != 1 {
				t.Errorf("no event %q in\n\t%s", want, strings.Join(o.lines(""), "\n\t"))
			}
		}
	})
}
