package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
	"github.com/jackc/pgx/v5"
)

// The performance contract (DESIGN.md), proved by counting what the system
// pool sends through a pgx QueryTracer: a first execution costs one statement
// to start, one per step and one to finish; a child workflow costs its own
// start and finish plus one step record in its parent; a re-execution loads
// the recorded outcomes with one query; a finished workflow called again by
// ID costs one statement.

// withTracing installs an observer that stores a trace context with every
// workflow: the counts hold with tracing on (the context rides in the start
// statement).
func withTracing(c *dbos.Config) { c.Observer = &carrierObserver{obsRecorder{name: "count"}} }

// traced is a context whose trace the observer of withTracing stores.
func traced(ctx context.Context) context.Context {
	return context.WithValue(ctx, traceKey{}, "00-counted")
}

// stmt is one statement the system pool sent.
type stmt struct {
	kind string // see classify
	key  string // the first argument: the workflow ID for workflow statements
}

func (s stmt) String() string { return s.kind + "(" + s.key + ")" }

// stmtTracer records every statement while it is on.
type stmtTracer struct {
	mu   sync.Mutex
	on   bool
	sent []stmt
}

func (tr *stmtTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	s := stmt{kind: classify(d.SQL)}
	batch := []stmt{s}
	if len(d.Args) > 0 {
		switch k := d.Args[0].(type) {
		case string:
			batch[0].key = k
		case []string:
			// Starts, step checkpoints or outcomes that shared one
			// statement (a batch): each row counts, under its own workflow.
			batch = batch[:0]
			for _, wf := range k {
				batch = append(batch, stmt{kind: s.kind, key: wf})
			}
		}
	}
	tr.mu.Lock()
	if tr.on {
		tr.sent = append(tr.sent, batch...)
	}
	tr.mu.Unlock()
	return ctx
}

func (tr *stmtTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// start begins a counting window with an empty record.
func (tr *stmtTracer) start() {
	tr.mu.Lock()
	tr.on, tr.sent = true, nil
	tr.mu.Unlock()
}

// stop ends the window and returns the workflow statements it saw: the
// cancellation poller and listener, which run on their own schedule, are
// left out.
func (tr *stmtTracer) stop() []stmt {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.on = false
	var out []stmt
	for _, s := range tr.sent {
		if s.kind != "cancel-poll" && s.kind != "listen" && s.kind != "queue-poll" && s.kind != "lease" {
			out = append(out, s)
		}
	}
	return out
}

// classify names a system statement by its SQL text.
func classify(sql string) string {
	q := strings.Join(strings.Fields(sql), " ")
	switch {
	case strings.HasPrefix(q, "WITH ins AS ( INSERT INTO") && strings.Contains(q, ".workflow_status"),
		strings.HasPrefix(q, "WITH v AS ( SELECT * FROM unnest(") && strings.Contains(q, ".workflow_input (workflow_uuid, inputs)"):
		return "start"
	case strings.HasPrefix(q, "INSERT INTO") && strings.Contains(q, ".operation_outputs"):
		return "step"
	case strings.HasPrefix(q, "SELECT function_id") && strings.Contains(q, ".operation_outputs"):
		return "load-steps"
	case strings.HasPrefix(q, "SELECT") && strings.Contains(q, ".operation_outputs"):
		return "read-step"
	case strings.HasPrefix(q, "WITH u AS ( UPDATE") && strings.Contains(q, ".workflow_status SET status = $2"),
		strings.HasPrefix(q, "WITH v AS ( SELECT * FROM unnest(") && strings.Contains(q, ".workflow_status s SET status = v.status"):
		return "finish"
	case strings.HasPrefix(q, "SELECT workflow_uuid FROM") && strings.Contains(q, "'CANCELLED'"):
		return "cancel-poll"
	case strings.HasPrefix(q, "SELECT s.workflow_uuid,") && strings.Contains(q, "'PENDING'"):
		return "list-pending"
	case strings.HasPrefix(q, "SELECT COALESCE(s.name, '')"):
		return "read-workflow"
	case strings.Contains(q, ".dbosgen_executors"):
		return "lease" // renewal and adoption: on their own schedule, not per workflow
	case (strings.HasPrefix(q, "WITH s AS (UPDATE") || strings.HasPrefix(q, "WITH lim AS (")) && strings.Contains(q, "SKIP LOCKED"):
		return "dequeue"
	case strings.HasPrefix(q, "WITH ins AS (INSERT") && strings.Contains(q, "'ENQUEUED'"):
		return "enqueue"
	case strings.HasPrefix(q, "SELECT COALESCE(SUM(CASE WHEN status = 'PENDING'"):
		return "queue-load"
	case strings.HasPrefix(q, "SELECT pg_advisory_xact_lock(hashtext"):
		return "queue-lock"
	case q == "begin" || q == "commit":
		return q
	case strings.HasPrefix(q, "SELECT DISTINCT queue_name"):
		return "queue-poll"
	case strings.HasPrefix(q, "LISTEN"):
		return "listen"
	case strings.Contains(q, "'CANCELLED'"):
		return "cancel"
	}
	return "other: " + q
}

func kinds(ss []stmt) map[string]int {
	m := map[string]int{}
	for _, s := range ss {
		m[s.kind]++
	}
	return m
}

// launchTraced launches a runtime on PostgreSQL with a counting tracer.
func launchTraced(t *testing.T, url string, mods ...func(*dbos.Config)) (*dbos.Runtime, context.Context, *stmtTracer) {
	tr := &stmtTracer{}
	mods = append(mods, func(c *dbos.Config) { dbos.SetTracer(c, tr) })
	rt, ctx := launch(t, url, mods...)
	return rt, ctx, tr
}

func wantStmts(t *testing.T, what string, got []stmt, want ...string) {
	t.Helper()
	var g []string
	for _, s := range got {
		g = append(g, s.String())
	}
	if strings.Join(g, " ") != strings.Join(want, " ") {
		t.Fatalf("%s sent %d statements:\n  %s\nwant %d:\n  %s", what, len(g), strings.Join(g, "\n  "), len(want), strings.Join(want, "\n  "))
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestStatementCountFirstExecution(t *testing.T) {
	defer fatalOnMust(t)
	url := dbtest.Postgres(t)
	_, ctx, tr := launchTraced(t, url, withTracing)
	ctx = traced(ctx)
	in := setBody(t, func(ctx context.Context, in input) (string, error) {
		sum := 0
		for i := range in.N {
			v, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "add"}, func(ctx context.Context) (int, error) { return i, nil })
			if err != nil {
				return "", err
			}
			sum += v
		}
		// Async steps, a failing step and a retried step cost the same.
		f := dbos.RunStepAsync(ctx, &dbos.StepOptions{Name: "async"}, func(ctx context.Context) (int, error) { return 1, nil })
		_, failErr := dbos.RunStep(ctx, &dbos.StepOptions{Name: "fails"}, func(ctx context.Context) (int, error) { return 0, errors.New("boom") })
		attempts := 0
		_, _ = dbos.RunStep(ctx, &dbos.StepOptions{Name: "retried", RetriesAllowed: true, MaxAttempts: 3, Interval: 1},
			func(ctx context.Context) (int, error) {
				if attempts++; attempts < 3 {
					return 0, errors.New("again")
				}
				return 0, nil
			})
		a, err := f.Get(ctx)
		if err != nil {
			return "", err
		}
		return fmt.Sprint(sum+a, failErr), nil
	})
	for _, n := range []int{0, 1, 10} {
		in.N = n
		id := fmt.Sprintf("count-%d", n)
		tr.start()
		out, err := testWF.Run(dbos.WithWorkflowID(ctx, id), in)
		got := tr.stop()
		if err != nil {
			t.Fatalf("workflow with %d steps: %v", n, err)
		}
		steps := n + 3
		want := append(append([]string{"start(" + id + ")"}, repeat("step("+id+")", steps)...), "finish("+id+")")
		wantStmts(t, fmt.Sprintf("first execution of a workflow of %d steps (%q)", steps, out), got, want...)
		t.Logf("first execution, %d steps: %d statements", steps, len(got))
	}
}

func TestStatementCountChildWorkflow(t *testing.T) {
	defer fatalOnMust(t)
	url := dbtest.Postgres(t)
	rt, ctx, tr := launchTraced(t, url, withTracing)
	ctx = traced(ctx)
	var in input
	in = setBody(t, func(ctx context.Context, x input) (string, error) {
		if x.N == 0 { // the child: two steps
			for i := range 2 {
				if _, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "c"}, func(ctx context.Context) (int, error) { return i, nil }); err != nil {
					return "", err
				}
			}
			return "child", nil
		}
		if _, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "p"}, func(ctx context.Context) (int, error) { return 0, nil }); err != nil {
			return "", err
		}
		child := in
		child.N = 0
		return otherWF.Run(ctx, child)
	})
	in.N = 1
	tr.start()
	out := must(testWF.Run(dbos.WithWorkflowID(ctx, "parent"), in))
	got := tr.stop()
	if out != "child" {
		t.Fatalf("out = %q", out)
	}
	// The parent's record of the child (step 2) is sent once the child has
	// started, concurrently with the child's own statements: compare counts
	// per workflow, and the order within each.
	var parent, child []stmt
	for _, s := range got {
		switch s.key {
		case "parent":
			parent = append(parent, s)
		case "parent-2":
			child = append(child, s)
		default:
			t.Fatalf("unexpected statement %v", s)
		}
	}
	wantStmts(t, "the parent", parent, "start(parent)", "step(parent)", "step(parent)", "finish(parent)")
	wantStmts(t, "the child", child, "start(parent-2)", "step(parent-2)", "step(parent-2)", "finish(parent-2)")
	if got[1].String() != "step(parent)" || got[2].String() != "start(parent-2)" || got[len(got)-1].String() != "finish(parent)" {
		t.Fatalf("order: %v", got)
	}
	t.Logf("parent with 1 step and a 2-step child: %d statements", len(got))
	if n := countRows(t, rt, "workflow_status WHERE attributes IS NOT NULL"); n != 2 {
		t.Fatalf("%d workflows stored a trace context, want 2", n)
	}
}

func TestStatementCountReexecution(t *testing.T) {
	defer fatalOnMust(t)
	url := dbtest.Postgres(t)
	rt, ctx := launch(t, url)
	block := make(chan struct{})
	blocked := make(chan struct{}, 1)
	in := setBody(t, func(ctx context.Context, in input) (string, error) {
		for i := range 6 {
			_, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: fmt.Sprint("s", i)}, func(ctx context.Context) (int, error) {
				if i == 4 {
					select {
					case blocked <- struct{}{}:
					default:
					}
					select {
					case <-block:
					case <-ctx.Done():
						return 0, ctx.Err()
					}
				}
				return i, nil
			})
			if err != nil {
				return "", err
			}
		}
		return "done", nil
	})

	// Interrupted after 4 of 6 steps, then called again by ID: resumed.
	h := must(testWF.Start(dbos.WithWorkflowID(ctx, "again"), in))
	<-blocked
	shutdown(t, rt)
	if _, err := h.Result(context.Background()); !errors.Is(err, dbos.ErrShutdown) {
		t.Fatalf("interrupted: %v", err)
	}
	close(block)
	_, ctx2, tr2 := launchTraced(t, url, withExecutor("other")) // recovers nothing of exec-1
	tr2.start()
	if out := must(testWF.Run(dbos.WithWorkflowID(ctx2, "again"), in)); out != "done" {
		t.Fatalf("out = %q", out)
	}
	// A call by ID of a workflow that exists takes two starts: the insert
	// of a new workflow finds the ID, then the restart (a new workflow's
	// start is one statement that names no other table; see pgInsert).
	wantStmts(t, "a re-execution by ID of a workflow with 4 of 6 steps recorded", tr2.stop(),
		"start(again)", "start(again)", "load-steps(again)", "step(again)", "step(again)", "finish(again)")

	// A finished workflow called again by ID: the two starts alone.
	tr2.start()
	if out := must(testWF.Run(dbos.WithWorkflowID(ctx2, "again"), in)); out != "done" {
		t.Fatalf("out = %q", out)
	}
	wantStmts(t, "calling a finished workflow by ID", tr2.stop(), "start(again)", "start(again)")

	// Recovery by Launch: interrupted after 4 of 6 steps again. The run
	// above passed step 5 and left a token in blocked: drop it, or the
	// shutdown below would come before step 4 (and, since a shut-down
	// workflow starts no more steps, leave fewer than 4 recorded).
	select {
	case <-blocked:
	default:
	}
	block = make(chan struct{})
	rt3, ctx3, _ := launchTraced(t, url, withExecutor("crashing"))
	h3 := must(testWF.Start(dbos.WithWorkflowID(ctx3, "recovered"), in))
	<-blocked
	shutdown(t, rt3)
	if _, err := h3.Result(context.Background()); !errors.Is(err, dbos.ErrShutdown) {
		t.Fatalf("interrupted: %v", err)
	}
	close(block)
	tr4 := &stmtTracer{}
	tr4.start()
	rt4, _ := launch(t, url, withExecutor("crashing"), func(c *dbos.Config) { dbos.SetTracer(c, tr4) })
	waitFor(t, "the recovered workflow to finish", func() bool {
		st, err := rt4.WorkflowStatus(context.Background(), "recovered")
		return err == nil && st.Status == dbos.StatusSuccess
	})
	got := tr4.stop()
	var wf []stmt
	for _, s := range got {
		if s.key == "recovered" {
			wf = append(wf, s)
		}
	}
	// The status reads are the test's own polling.
	var exec []stmt
	for _, s := range wf {
		if s.kind != "read-workflow" {
			exec = append(exec, s)
		}
	}
	wantStmts(t, "recovery of a workflow with 4 of 6 steps recorded", exec,
		"start(recovered)", "load-steps(recovered)", "step(recovered)", "step(recovered)", "finish(recovered)")
	if k := kinds(got); k["list-pending"] != 1 || k["load-steps"] != 1 {
		t.Fatalf("Launch's recovery sent %v; want one pending listing and one load of recorded steps", k)
	}
}
