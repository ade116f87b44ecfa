package engine_test

import (
	"context"
	"errors"
	"maps"
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

var qAdopt = dbos.NewQueue("test-adopt", dbos.QueueOptions{WorkerConcurrency: 1})

// A queued workflow of an executor that went away goes back to its queue
// when a live executor adopts it, as DBOS's recovery does: the adopter runs
// it within the queue's worker concurrency, after its own queued workflow,
// not beside it. (The torture suite found adopters running more queued
// workflows at once than the limit.)
func TestLeaseAdoptedQueuedWorkflowKeepsWorkerConcurrency(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		l, in := newQueuedLedger(t)
		lease := withLease(600 * time.Millisecond)
		leaver, lctx := launch(t, url, withExecutor("leaver"), lease)
		in.N = 1
		must(testWF.Enqueue(dbos.WithWorkflowID(lctx, "q-left"), qAdopt, in))
		waitFor(t, "the leaver's queued body", func() bool { r, _, _ := l.get(); return r == 1 })
		stayer, sctx := launch(t, url, withExecutor("stayer"), lease)
		in.N = 2
		own := must(testWF.Enqueue(dbos.WithWorkflowID(sctx, "q-own"), qAdopt, in))
		waitFor(t, "the stayer's queued body", func() bool { r, _, _ := l.get(); return r == 2 })
		shutdown(t, leaver)
		waitFor(t, "the adoption of q-left", func() bool {
			st, err := stayer.WorkflowStatus(sctx, "q-left")
			return err == nil && st.ExecutorID == "stayer"
		})
		l.resetPeak()                      // from here on, only the stayer runs bodies
		time.Sleep(300 * time.Millisecond) // a resume beside q-own would have started by now
		if _, p, s := l.get(); p > 1 || s[1] != 1 {
			t.Fatalf("after adopting q-left the stayer ran %d queued bodies at once (worker concurrency 1); q-left started %d times",
				p, s[1])
		}
		close(l.release)
		if out := must(own.Result(sctx)); out != "done" {
			t.Fatalf("q-own: %q", out)
		}
		left := must(dbos.RetrieveWorkflow[string](sctx, "q-left"))
		if out := must(left.Result(sctx)); out != "done" {
			t.Fatalf("q-left: %q", out)
		}
		if _, p, s := l.get(); p > 1 || s[1] != 2 || s[2] != 1 {
			t.Fatalf("peak %d (worker concurrency 1); q-left started %d times, q-own %d", p, s[1], s[2])
		}
	})
}

// queuedLedger counts the bodies of queued workflows that block until
// release: how many run now, the most that ran at once, and how often each
// (by its input's N) started.
type queuedLedger struct {
	mu            sync.Mutex
	running, peak int
	starts        map[int]int
	release       chan struct{}
}

func newQueuedLedger(t *testing.T) (*queuedLedger, input) {
	l := &queuedLedger{starts: map[int]int{}, release: make(chan struct{})}
	in := setBody(t, func(ctx context.Context, in input) (string, error) {
		l.mu.Lock()
		l.running++
		l.peak = max(l.peak, l.running)
		l.starts[in.N]++
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			l.running--
			l.mu.Unlock()
		}()
		select {
		case <-l.release:
			return "done", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	})
	return l, in
}

// get returns the bodies running now, the peak, and the starts per N.
func (l *queuedLedger) get() (int, int, map[int]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.running, l.peak, maps.Clone(l.starts)
}

// resetPeak makes the peak count from now on.
func (l *queuedLedger) resetPeak() {
	l.mu.Lock()
	l.peak = l.running
	l.mu.Unlock()
}

// An executor restarted under its own ID resumes the workflows it had
// dequeued, and they still count against the queue's worker concurrency
// (PENDING rows of this executor on the queue), so what it dequeues next
// waits for them: the limit holds across the restart.
func TestRestartKeepsWorkerConcurrency(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		l, in := newQueuedLedger(t)
		rt, ctx := launch(t, url, withExecutor("restarter"))
		in.N = 1
		must(testWF.Enqueue(dbos.WithWorkflowID(ctx, "q-first"), qAdopt, in))
		waitFor(t, "q-first's body", func() bool { r, _, _ := l.get(); return r == 1 })
		in.N = 2
		must(testWF.Enqueue(dbos.WithWorkflowID(ctx, "q-second"), qAdopt, in))
		shutdown(t, rt)
		if r, p, _ := l.get(); r != 0 || p != 1 {
			t.Fatalf("before the restart: %d running, peak %d", r, p)
		}

		_, ctx = launch(t, url, withExecutor("restarter"))
		waitFor(t, "a queued body after the restart", func() bool { r, _, _ := l.get(); return r == 1 })
		time.Sleep(300 * time.Millisecond) // a second body beside it would have started by now
		if _, p, _ := l.get(); p > 1 {
			t.Fatalf("after the restart %d queued bodies ran at once (worker concurrency 1)", p)
		}
		close(l.release)
		for _, id := range []string{"q-first", "q-second"} {
			h := must(dbos.RetrieveWorkflow[string](ctx, id))
			if out := must(h.Result(ctx)); out != "done" {
				t.Fatalf("%s: %q", id, out)
			}
		}
		if _, p, s := l.get(); p > 1 || s[1] != 2 || s[2] != 1 {
			t.Fatalf("peak %d (worker concurrency 1); q-first started %d times, q-second %d", p, s[1], s[2])
		}
	})
}
