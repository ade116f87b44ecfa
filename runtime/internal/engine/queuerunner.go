package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

// The queue runner is one goroutine per runtime: it dequeues from the
// queues this executor serves whenever something may have become runnable
// (an enqueue here or, on PostgreSQL, anywhere; a queued workflow finishing
// here) and on a slow poll, which covers what no notification announces:
// delays ending, rate-limit windows sliding, slots freed by other
// executors, enqueues by DBOS clients (no NOTIFY).

// dequeueBatch bounds the rows claimed by one dequeue statement; a full
// batch is followed at once by the next.
const dequeueBatch = 100

// Poll intervals: PostgreSQL is woken by notifications and polls only as a
// fallback; SQLite (no notifications across processes) polls more often.
var (
	pgQueuePoll     = time.Second
	sqliteQueuePoll = 200 * time.Millisecond
)

type queueRunner struct {
	rt     *Runtime
	queues map[string]*Queue // served, by name
	wake   chan struct{}
	poll   time.Duration
	mu     sync.Mutex
	due    map[string]bool // queues to dequeue from in the next round
}

// startQueues starts the runtime's queue runner. Called by Launch, after
// recovery and before the runtime is handed out.
func (rt *Runtime) startQueues(listen []string) error {
	qs, err := servedQueues(listen)
	if err != nil {
		return err
	}
	qr, ok := rt.store.(sysdb.Queuer)
	if !ok {
		return nil
	}
	r := &queueRunner{rt: rt, queues: map[string]*Queue{}, due: map[string]bool{}, wake: make(chan struct{}, 1), poll: sqliteQueuePoll}
	for _, q := range qs {
		r.queues[q.name] = q
	}
	if qr.WatchQueues(r.signal) {
		r.poll = pgQueuePoll
	}
	rt.queueRunner.Store(r)
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		r.run(qr)
	}()
	return nil
}

// signal marks a queue for the next round and wakes the runner; queues this
// executor does not serve are ignored.
func (r *queueRunner) signal(name string) {
	if r.queues[name] == nil {
		return
	}
	r.mu.Lock()
	r.due[name] = true
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// wakeQueue wakes this runtime's runner after an enqueue to name.
func (rt *Runtime) wakeQueue(name string) {
	if r := rt.queueRunner.Load(); r != nil {
		r.signal(name)
	}
}

func (r *queueRunner) run(qr sysdb.Queuer) {
	ctx := r.rt.ctx
	t := time.NewTicker(r.poll)
	defer t.Stop()
	r.pollQueues(ctx, qr) // whatever waits from before Launch
	for {
		for r.round(ctx, qr) && ctx.Err() == nil {
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-t.C:
			r.pollQueues(ctx, qr)
		}
	}
}

// pollQueues marks the served queues that have runnable rows due.
func (r *queueRunner) pollQueues(ctx context.Context, qr sysdb.Queuer) {
	names, err := qr.RunnableQueues(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.rt.log.Warn("dbos: listing queues with work failed; retrying on the next poll", "error", err)
		}
		return
	}
	r.mu.Lock()
	for _, n := range names {
		if r.queues[n] != nil {
			r.due[n] = true
		}
	}
	r.mu.Unlock()
}

// round dequeues once from every due queue (every partition of a
// partitioned one) and starts what it claimed; it reports whether a queue
// is due again (a dequeue came back full, so more may be waiting).
func (r *queueRunner) round(ctx context.Context, qr sysdb.Queuer) (more bool) {
	r.mu.Lock()
	due := r.due
	r.due = map[string]bool{}
	r.mu.Unlock()
	rt := r.rt
	for name := range due {
		q := r.queues[name]
		keys := []string{""}
		if q.opts.Partitioned {
			var err error
			if keys, err = qr.PartitionKeys(ctx, q.name); err != nil {
				r.logFailure(q, err)
				continue
			}
		}
		for _, key := range keys {
			p := sysdb.DequeueParams{Queue: q.name, ExecutorID: rt.cfg.ExecutorID, AppVersion: rt.cfg.ApplicationVersion,
				WorkerConcurrency: q.opts.WorkerConcurrency, GlobalConcurrency: q.opts.GlobalConcurrency,
				RateLimit: q.opts.RateLimit.Limit, RatePeriodMS: q.opts.RateLimit.Period.Milliseconds(),
				PartitionKey: key, PartitionConcurrency: q.opts.PartitionConcurrency, Max: dequeueBatch}
			rows, err := qr.Dequeue(ctx, p)
			if err != nil {
				r.logFailure(q, err)
				continue
			}
			for _, row := range rows {
				r.runDequeued(q, row)
			}
			if len(rows) == dequeueBatch {
				r.mu.Lock()
				r.due[name] = true
				r.mu.Unlock()
				more = true
			}
		}
	}
	return more
}

func (r *queueRunner) logFailure(q *Queue, err error) {
	if r.rt.ctx.Err() == nil {
		r.rt.log.Warn("dbos: dequeue failed; retrying on the next poll", "queue", q.name, "error", err)
	}
}

// claimedRunner is a registered workflow that can run a row Dequeue claimed.
type claimedRunner interface {
	runClaimed(rt *Runtime, row sysdb.Dequeued) (done <-chan struct{}, err error)
}

// runDequeued runs a claimed row as recovery runs a PENDING one. A row this
// binary cannot run stays PENDING on this executor, reported like a
// recovery problem, for a binary that can (DBOS's semantics for a recovered
// workflow of unknown name).
func (r *queueRunner) runDequeued(q *Queue, row sysdb.Dequeued) {
	rt := r.rt
	var err error
	if w, ok := lookupWorkflow(row.Name); !ok {
		err = fmt.Errorf("%w: dequeued workflow %s: no workflow named %q in this binary (left PENDING)", ErrUnknownWorkflow, row.ID, row.Name)
	} else if cr, ok := w.(claimedRunner); ok {
		var done <-chan struct{}
		limited := q.opts.WorkerConcurrency > 0 || q.opts.GlobalConcurrency > 0 || q.opts.PartitionConcurrency > 0
		if done, err = cr.runClaimed(rt, row); err == nil && limited {
			// A slot of the queue frees when it ends: look again.
			go func() {
				select {
				case <-done:
					r.signal(q.name)
				case <-rt.ctx.Done():
				}
			}()
		}
	}
	if err != nil {
		rt.log.Error("dequeued workflow not started", "workflow_id", row.ID, "workflow", row.Name, "error", err)
		rt.mu.Lock()
		rt.recoveryProblems = append(rt.recoveryProblems, err)
		rt.mu.Unlock()
	}
}

// runClaimed implements claimedRunner: the claim already made the row
// PENDING for this executor and counted the attempt, so it starts without
// InitWorkflow, and loads recorded steps only when there are some.
func (w *Workflow[A, R]) runClaimed(rt *Runtime, row sysdb.Dequeued) (<-chan struct{}, error) {
	if _, err := decodeArgs[A](row.Inputs, row.Serialization); err != nil {
		return nil, errorf(ErrCorruptRecord, err, "dbos: dequeued workflow %s (%s): its inputs do not decode (left PENDING)", row.ID, row.Name)
	}
	h, err := start(rt, w, startParams{ctx: rt.ctx, id: row.ID, inputs: row.Inputs, format: row.Serialization,
		parentID: row.ParentID, claimed: &row})
	if err != nil {
		return nil, err
	}
	return h.ex.done, nil
}
