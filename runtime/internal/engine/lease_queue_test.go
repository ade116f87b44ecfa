package engine_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// A fenced runtime claims nothing from its queues: what it dequeued it could
// not start, and the rows would wait PENDING on its executor, adopted by
// nobody once an adopter had dropped its lease row. Once it holds its lease
// again it serves its queues as before.
func TestLeaseFencedRuntimeDequeuesNothing(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		var c counter
		proceed, hold := make(chan struct{}), make(chan struct{})
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			switch in.N {
			case 1: // fences the runtime at its second step
				if _, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "first"}, func(ctx context.Context) (int, error) {
					return c.inc("first"), nil
				}); err != nil {
					return "", err
				}
				<-proceed
				_, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "second"}, func(ctx context.Context) (int, error) {
					return c.inc("second"), nil
				})
				return "fenced", err
			case 2: // keeps it fenced: a running workflow blocks the lease's return
				c.inc("holder")
				<-hold
				return "held", nil
			}
			c.inc("queued")
			return "queued", nil
		})
		rt, ctx := launch(t, url, withLease(600*time.Millisecond))
		var once sync.Once
		release := func() { once.Do(func() { close(hold) }) }
		t.Cleanup(release) // before the shutdown, even when the test fails
		in.N = 1
		fencer := must(testWF.Start(dbos.WithWorkflowID(ctx, "fencer"), in))
		in.N = 2
		must(testWF.Start(dbos.WithWorkflowID(ctx, "holder"), in))
		waitFor(t, "both bodies", func() bool { return c.get("first") == 1 && c.get("holder") == 1 })
		dbos.ExpireLease(rt)
		close(proceed)
		if _, err := fencer.Result(ctx); !errors.Is(err, dbos.ErrLeaseLost) || c.get("second") != 0 {
			t.Fatalf("fencing workflow: err = %v, second step ran %d times; want ErrLeaseLost before it", err, c.get("second"))
		}
		in.N = 3
		h := must(testWF.Enqueue(dbos.WithWorkflowID(ctx, "queued"), qWorker, in))
		time.Sleep(1500 * time.Millisecond) // several queue polls and lease renewals
		if st := must(h.Status(ctx)); st.Status != dbos.StatusEnqueued || c.get("queued") != 0 {
			t.Fatalf("while fenced: the queued workflow is %s on %q, ran %d times; want ENQUEUED, not run", st.Status, st.ExecutorID, c.get("queued"))
		}
		release()
		if out := must(h.Result(ctx)); out != "queued" {
			t.Fatalf("queued workflow after the lease came back: %q", out)
		}
	})
}
