package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// What a queued workflow costs in statements, counted as stmtcount_test.go
// counts: the enqueue is one statement; draining a preloaded queue without
// queue-wide limits costs one step record and one finish per workflow, and
// one dequeue statement (no transaction) per batch of up to 100.
func TestQueueStatementCount(t *testing.T) {
	url := dbtest.URL(t, "postgres")
	// The producer serves another queue: the work waits for the consumer.
	_, pctx, ptr := launchTraced(t, url, withExecutor("producer"), func(c *dbos.Config) { c.ListenQueues = []string{qWorker.Name()} })
	in := setBody(t, func(ctx context.Context, in input) (string, error) {
		return dbos.RunStep(ctx, &dbos.StepOptions{Name: "one"}, func(ctx context.Context) (string, error) { return "x", nil })
	})
	const n = 150
	ptr.start()
	var hs []*dbos.WorkflowHandle[string]
	for i := range n {
		in.N = i
		hs = append(hs, must(testWF.Enqueue(pctx, qBasic, in)))
	}
	enq := kinds(ptr.stop())
	// The producer's own runner may dequeue (nothing) from its queues meanwhile.
	delete(enq, "begin")
	delete(enq, "commit")
	delete(enq, "dequeue")
	delete(enq, "queue-load")
	if enq["enqueue"] != n || len(enq) != 1 {
		t.Fatalf("%d enqueues sent %v; want one statement each", n, enq)
	}

	tr := &stmtTracer{}
	tr.start()
	_, ctx := launch(t, url, withExecutor("consumer"), func(c *dbos.Config) { dbos.SetTracer(c, tr) })
	for _, h := range hs {
		must(h.Result(ctx))
	}
	got := tr.stop()
	k := kinds(got)
	var other []string
	for kind, c := range k {
		if strings.HasPrefix(kind, "other") {
			other = append(other, fmt.Sprintf("%d× %s", c, kind))
		}
	}
	t.Logf("drain of %d queued one-step workflows: %v", n, k)
	for _, s := range got {
		if s.kind == "dequeue" || s.kind == "queue-lock" || s.kind == "queue-load" {
			t.Logf("%s", s)
		}
	}
	if k["step"] != n || k["finish"] != n {
		t.Fatalf("want %d step records and finishes: %v", n, k)
	}
	// Launch's schema checks run in transactions of their own, under
	// advisory locks keyed by the migrations they guard.
	migrations := 0
	for _, s := range got {
		if s.kind == "queue-lock" && strings.Contains(s.key, "migrat") {
			migrations++
		}
	}
	if k["dequeue"] > 3 || k["commit"] > migrations {
		t.Fatalf("%d dequeue statements in %d transactions for %d workflows (batches of 100): %v", k["dequeue"], k["commit"], n, other)
	}
	if k["load-steps"] != 0 || k["read-workflow"] != 0 {
		t.Fatalf("a fresh queued workflow needs no reads of its row or steps: %v", k)
	}
}

// An enqueue to a queue without limits that the enqueuer serves inserts the
// workflow already claimed and runs it at once: a one-step queued workflow
// costs what a started one does, three statements.
func TestQueueStatementCountServedHere(t *testing.T) {
	url := dbtest.URL(t, "postgres")
	_, ctx, tr := launchTraced(t, url)
	in := setBody(t, func(ctx context.Context, in input) (string, error) {
		return dbos.RunStep(ctx, &dbos.StepOptions{Name: "one"}, func(ctx context.Context) (string, error) { return "x", nil })
	})
	must(must(testWF.Enqueue(ctx, qBasic, in)).Result(ctx)) // warm
	tr.start()
	h := must(testWF.Enqueue(ctx, qBasic, in))
	must(h.Result(ctx))
	got := tr.stop()
	var ss []stmt
	for _, s := range got {
		if s.kind != "dequeue" { // the runner may look at the queue meanwhile
			ss = append(ss, s)
		}
	}
	wantStmts(t, "an enqueue served here", ss, "enqueue("+h.ID()+")", "step("+h.ID()+")", "finish("+h.ID()+")")
	if st := must(h.Status(ctx)); st.Status != dbos.StatusSuccess || st.ExecutorID != "exec-1" {
		t.Fatalf("status %+v", st)
	}
}
