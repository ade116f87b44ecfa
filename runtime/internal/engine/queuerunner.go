package engine

import (
	"context"
	"errors"
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
	if r.rt.lease.refusal(r.rt.cfg.ExecutorID) != nil {
		// Fenced: it could start nothing it claimed. Claimed rows would
		// wait, PENDING on this executor, for it to hold its lease again,
		// and if it died first, for nobody: an adopter may have dropped its
		// lease row already, and only an expired row is adopted. The queues
		// stay due for a round once the lease is back.
		return false
	}
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
	if errors.Is(err, ErrShutdown) {
		return // PENDING on this executor: the next Launch recovers it
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
	rt.starts.started(row.ID, h.ex)
	return h.ex.done, nil
}

// startSignal hands a dequeued workflow's execution to the callers waiting
// on its handle (WorkflowHandle.Result) in this process, so that they see
// it start at once rather than at their next poll of its row.
type startSignal struct {
	mu      sync.Mutex
	waiters map[string][]chan *execution
	// recent keeps the executions started in the last recentFor, for a
	// waiter that registers just after its workflow started (and maybe
	// finished already): it need not wait for its next poll of the row.
	recent map[string]*execution
	order  []recentStart
}

type recentStart struct {
	id string
	at time.Time
}

const recentFor = 2 * time.Second

func (s *startSignal) register(id string) chan *execution {
	ch := make(chan *execution, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiters == nil {
		s.waiters = map[string][]chan *execution{}
	}
	s.waiters[id] = append(s.waiters[id], ch)
	return ch
}

func (s *startSignal) unregister(id string, ch chan *execution) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[id]
	for i, w := range ws {
		if w == ch {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(s.waiters, id)
	} else {
		s.waiters[id] = ws
	}
}

func (s *startSignal) started(id string, ex *execution) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.recent == nil {
		s.recent = map[string]*execution{}
	}
	n := 0
	for n < len(s.order) && now.Sub(s.order[n].at) > recentFor {
		if s.recent[s.order[n].id] != nil {
			delete(s.recent, s.order[n].id)
		}
		n++
	}
	s.order = append(s.order[n:], recentStart{id, now})
	s.recent[id] = ex
	for _, ch := range s.waiters[id] {
		ch <- ex // buffered, one send per registration
	}
	delete(s.waiters, id)
}

// waitLocalStart waits up to d for workflow id to run in this runtime and
// returns its execution, or nil when d or ctx ends first.
func (rt *Runtime) waitLocalStart(ctx context.Context, id string, d time.Duration) *execution {
	ch := rt.starts.register(id)
	defer rt.starts.unregister(id, ch)
	if ex := rt.running(id); ex != nil {
		return ex
	}
	rt.starts.mu.Lock()
	ex := rt.starts.recent[id]
	rt.starts.mu.Unlock()
	if ex != nil {
		return ex
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case ex := <-ch:
		return ex
	case <-timer.C:
	case <-ctx.Done():
	}
	return nil
}
