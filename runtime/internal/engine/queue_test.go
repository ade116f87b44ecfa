package engine_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// Queues are declared once, like generated code's package-level variables;
// every test runs on a fresh database, so they do not share rows.
var (
	qBasic     = dbos.NewQueue("test-basic", dbos.QueueOptions{})
	qWorker    = dbos.NewQueue("test-worker", dbos.QueueOptions{WorkerConcurrency: 3})
	qGlobal    = dbos.NewQueue("test-global", dbos.QueueOptions{WorkerConcurrency: 2, GlobalConcurrency: 3})
	qRate      = dbos.NewQueue("test-rate", dbos.QueueOptions{RateLimit: dbos.RateLimit{Limit: 3, Period: 600 * time.Millisecond}})
	qPriority  = dbos.NewQueue("test-priority", dbos.QueueOptions{WorkerConcurrency: 1, PriorityEnabled: true})
	qPartition = dbos.NewQueue("test-partition", dbos.QueueOptions{Partitioned: true, PartitionConcurrency: 1})
)

// ledger records how many bodies run at once, and the order they start in.
type ledger struct {
	mu      sync.Mutex
	running int
	peak    int
	order   []int
	byKey   map[string]int
	keyPeak map[string]int
}

func (l *ledger) enter(n int, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running++
	l.peak = max(l.peak, l.running)
	l.order = append(l.order, n)
	if l.byKey == nil {
		l.byKey, l.keyPeak = map[string]int{}, map[string]int{}
	}
	l.byKey[key]++
	l.keyPeak[key] = max(l.keyPeak[key], l.byKey[key])
}

func (l *ledger) exit(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running--
	l.byKey[key]--
}

func (l *ledger) get() (peak int, order []int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peak, append([]int(nil), l.order...)
}

func TestQueueBasic(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			id, _ := dbos.WorkflowID(ctx)
			return fmt.Sprintf("ran %d as %s", in.N, id), nil
		})
		var hs []*dbos.WorkflowHandle[string]
		for i := range 20 {
			in.N = i
			hs = append(hs, must(testWF.Enqueue(ctx, qBasic, in)))
		}
		for i, h := range hs {
			got := must(h.Result(ctx))
			if want := fmt.Sprintf("ran %d as %s", i, h.ID()); got != want {
				t.Fatalf("result %q, want %q", got, want)
			}
			st := must(h.Status(ctx))
			if st.Status != dbos.StatusSuccess {
				t.Fatalf("status %s", st.Status)
			}
		}
	})
}

func TestQueueWorkerConcurrency(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		var l ledger
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			l.enter(in.N, "")
			defer l.exit("")
			time.Sleep(20 * time.Millisecond)
			return "", nil
		})
		var hs []*dbos.WorkflowHandle[string]
		for i := range 15 {
			in.N = i
			hs = append(hs, must(testWF.Enqueue(ctx, qWorker, in)))
		}
		for _, h := range hs {
			must(h.Result(ctx))
		}
		if peak, order := l.get(); peak > 3 || len(order) != 15 {
			t.Fatalf("peak %d (limit 3), %d ran", peak, len(order))
		}
	})
}

func TestQueueGlobalConcurrencyTwoExecutors(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url, withExecutor("exec-1"))
		launch(t, url, withExecutor("exec-2"))
		var l ledger
		var execs sync.Map
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			l.enter(in.N, "")
			defer l.exit("")
			time.Sleep(30 * time.Millisecond)
			return "", nil
		})
		var hs []*dbos.WorkflowHandle[string]
		for i := range 18 {
			in.N = i
			hs = append(hs, must(testWF.Enqueue(ctx, qGlobal, in)))
		}
		for _, h := range hs {
			must(h.Result(ctx))
			execs.Store(must(h.Status(ctx)).ExecutorID, true)
		}
		if peak, order := l.get(); peak > 3 || len(order) != 18 {
			t.Fatalf("peak %d (global limit 3), %d ran", peak, len(order))
		}
	})
}

func TestQueueRateLimit(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		var mu sync.Mutex
		var starts []time.Time
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
			return "", nil
		})
		var hs []*dbos.WorkflowHandle[string]
		for i := range 9 {
			in.N = i
			hs = append(hs, must(testWF.Enqueue(ctx, qRate, in)))
		}
		for _, h := range hs {
			must(h.Result(ctx))
		}
		// The limit is judged on the database's started_at_epoch_ms; the
		// bodies start after it, so windows here are checked with slack
		// for scheduling only in the safe direction (never a false pass).
		rows := startedAt(t, rt, hs)
		for i := range rows {
			n := 0
			for j := range rows {
				if rows[j] >= rows[i] && rows[j] < rows[i]+600 {
					n++
				}
			}
			if n > 3 {
				t.Fatalf("%d starts within 600ms of %d: %v", n, rows[i], rows)
			}
		}
		if len(starts) != 9 {
			t.Fatalf("%d ran", len(starts))
		}
	})
}

// startedAt reads started_at_epoch_ms of the handles' workflows.
func startedAt(t *testing.T, rt *dbos.Runtime, hs []*dbos.WorkflowHandle[string]) []int64 {
	t.Helper()
	var out []int64
	for _, h := range hs {
		q := "SELECT started_at_epoch_ms FROM dbos.workflow_status WHERE workflow_uuid = $1"
		if rt.AppDB().DriverName() != "pgx" {
			q = "SELECT started_at_epoch_ms FROM workflow_status WHERE workflow_uuid = ?"
		}
		var ms int64
		if err := rt.AppDB().Get(&ms, q, h.ID()); err != nil {
			t.Fatal(err)
		}
		out = append(out, ms)
	}
	return out
}

func TestQueuePriorityThenFIFO(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		// Enqueued before any executor serves the queue, so the order is
		// the queue's alone.
		rt, ctx := launch(t, url, func(c *dbos.Config) { c.ListenQueues = []string{qBasic.Name()} })
		var l ledger
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			l.enter(in.N, "")
			defer l.exit("")
			return "", nil
		})
		prio := []int{5, 1, 5, 0, 1, 3}
		var hs []*dbos.WorkflowHandle[string]
		for i, p := range prio {
			in.N = i
			hs = append(hs, must(testWF.Enqueue(ctx, qPriority.With(dbos.EnqueueOptions{Priority: p}), in)))
		}
		_ = rt
		_, ctx2 := launch(t, url, withExecutor("exec-2"))
		for _, h := range hs {
			must(h.Result(ctx2))
		}
		_, order := l.get()
		want := []int{3, 1, 4, 5, 0, 2}
		if fmt.Sprint(order) != fmt.Sprint(want) {
			t.Fatalf("order %v, want %v", order, want)
		}
	})
}

func TestQueueDeduplication(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		release := make(chan struct{})
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			<-release
			return "done", nil
		})
		q := qBasic.With(dbos.EnqueueOptions{DeduplicationID: "d1"})
		h := must(testWF.Enqueue(ctx, q, in))
		_, err := testWF.Enqueue(ctx, q, input{Key: in.Key, N: 2})
		if !errors.Is(err, dbos.ErrQueueDeduplicated) {
			t.Fatalf("second enqueue: %v, want ErrQueueDeduplicated", err)
		}
		// The options were the queue value's: the plain queue is not deduplicated.
		other := must(testWF.Enqueue(ctx, qBasic, input{Key: in.Key, N: 3}))
		close(release)
		must(h.Result(ctx))
		must(other.Result(ctx))
		// Finished: the ID is free again.
		must(must(testWF.Enqueue(ctx, q, input{Key: in.Key, N: 4})).Result(ctx))
	})
}

func TestQueueDelay(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		var ranAt atomic.Int64
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			ranAt.Store(time.Now().UnixMilli())
			return "", nil
		})
		before := time.Now()
		h := must(testWF.Enqueue(ctx, qBasic.With(dbos.EnqueueOptions{Delay: 700 * time.Millisecond}), in))
		if st := must(h.Status(ctx)); st.Status != "DELAYED" {
			t.Fatalf("status %s, want DELAYED", st.Status)
		}
		must(h.Result(ctx))
		if got := time.UnixMilli(ranAt.Load()).Sub(before); got < 700*time.Millisecond {
			t.Fatalf("ran after %v, before its delay of 700ms", got)
		}
	})
}

func TestQueuePartitions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		var l ledger
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			key := fmt.Sprint(in.N % 2)
			l.enter(in.N, key)
			defer l.exit(key)
			time.Sleep(20 * time.Millisecond)
			return "", nil
		})
		if _, err := testWF.Enqueue(ctx, qPartition, in); !errors.Is(err, dbos.ErrConfig) {
			t.Fatalf("enqueue without a partition key: %v, want ErrConfig", err)
		}
		var hs []*dbos.WorkflowHandle[string]
		for i := range 10 {
			in.N = i
			q := qPartition.With(dbos.EnqueueOptions{PartitionKey: fmt.Sprint(i % 2)})
			hs = append(hs, must(testWF.Enqueue(ctx, q, in)))
		}
		for _, h := range hs {
			must(h.Result(ctx))
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.keyPeak["0"] != 1 || l.keyPeak["1"] != 1 || len(l.order) != 10 {
			t.Fatalf("per-partition peaks %v (limit 1), %d ran", l.keyPeak, len(l.order))
		}
	})
}

func TestQueueCancelEnqueued(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		// The runtime serves only the basic queue: the workflow waits.
		rt, ctx := launch(t, url, func(c *dbos.Config) { c.ListenQueues = []string{qBasic.Name()} })
		var ran atomic.Bool
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			ran.Store(true)
			return "", nil
		})
		h := must(testWF.Enqueue(ctx, qWorker, in))
		if err := rt.CancelWorkflow(ctx, h.ID()); err != nil {
			t.Fatal(err)
		}
		_, ctx2 := launch(t, url, withExecutor("exec-2"))
		if _, err := h.Result(ctx2); !errors.Is(err, dbos.ErrWorkflowCancelled) {
			t.Fatalf("result %v, want ErrWorkflowCancelled", err)
		}
		// Give the serving executor a few polls to (wrongly) start it.
		time.Sleep(600 * time.Millisecond)
		if ran.Load() {
			t.Fatal("a cancelled enqueued workflow started")
		}
	})
}

func TestQueueTimeoutFromDequeue(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url, func(c *dbos.Config) { c.ListenQueues = []string{qBasic.Name()} })
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			if in.N == 1 {
				<-ctx.Done() // runs into its timeout
				return "", context.Cause(ctx)
			}
			return "ok", nil
		})
		q := qWorker.With(dbos.EnqueueOptions{Timeout: 400 * time.Millisecond})
		fast := must(testWF.Enqueue(ctx, q, in))
		in.N = 1
		slow := must(testWF.Enqueue(ctx, q, in))
		// Longer than the timeout on the queue: the clock starts at dequeue.
		time.Sleep(600 * time.Millisecond)
		if st := must(fast.Status(ctx)); st.Status != "ENQUEUED" || !st.Deadline.IsZero() {
			t.Fatalf("queued: status %s deadline %v, want ENQUEUED with none", st.Status, st.Deadline)
		}
		_ = rt
		_, ctx2 := launch(t, url, withExecutor("exec-2"))
		if got := must(fast.Result(ctx2)); got != "ok" {
			t.Fatalf("fast: %q", got)
		}
		if _, err := slow.Result(ctx2); !errors.Is(err, dbos.ErrWorkflowCancelled) {
			t.Fatalf("slow: %v, want ErrWorkflowCancelled (timeout)", err)
		}
	})
}
