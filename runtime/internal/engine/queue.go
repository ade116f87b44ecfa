package engine

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

// InternalQueueName is DBOS's queue for workflows that DBOS's tools set
// back to ENQUEUED (ResumeWorkflow, ForkWorkflow). Every executor serves it,
// without limits.
const InternalQueueName = sysdb.InternalQueue

// ErrQueueDeduplicated: an enqueue named a deduplication ID that a workflow
// of the queue that has not finished holds.
var ErrQueueDeduplicated = errors.New("dbos: deduplication ID already in use on the queue")

func init() { RegisterError(ErrQueueDeduplicated) }

// QueueOptions are a queue's flow control, as DBOS's. Zero means no limit.
type QueueOptions struct {
	// WorkerConcurrency bounds the queue's workflows running at once in one
	// executor.
	WorkerConcurrency int
	// GlobalConcurrency bounds the queue's workflows running at once across
	// every executor of the application.
	GlobalConcurrency int
	// RateLimit bounds how many of the queue's workflows start per period,
	// across every executor.
	RateLimit RateLimit
	// PriorityEnabled lets an enqueue set EnqueueOptions.Priority (lower
	// runs first; equal priorities run in enqueue order).
	PriorityEnabled bool
	// Partitioned makes every enqueue name a partition key
	// (EnqueueOptions.PartitionKey); PartitionConcurrency then bounds each
	// partition's workflows running at once across every executor.
	Partitioned          bool
	PartitionConcurrency int
}

// RateLimit is at most Limit starts in any window of length Period.
type RateLimit struct {
	Limit  int
	Period time.Duration
}

// Queue is a named queue of workflows in the system database. Create queues
// with NewQueue in package-level variables, like registered workflows, so
// that every executor of the application knows their limits.
type Queue struct {
	name string
	opts QueueOptions
	call EnqueueOptions // per-call options of a queue returned by With
}

// EnqueueOptions are the options of one enqueue. Zero fields mean the
// defaults.
type EnqueueOptions struct {
	// WorkflowID names the workflow (default: the ID set with WithWorkflowID
	// on the context, else a child ID inside a workflow, else random).
	WorkflowID string
	// DeduplicationID: while a workflow of the queue holding it has not
	// finished, another enqueue with it fails with ErrQueueDeduplicated.
	DeduplicationID string
	// Priority orders the queue when QueueOptions.PriorityEnabled: lower
	// first. Default 0.
	Priority int
	// PartitionKey names the partition of a partitioned queue (required
	// there, refused elsewhere).
	PartitionKey string
	// Delay keeps the workflow from starting before this much time passed.
	Delay time.Duration
	// Timeout replaces the workflow's timeout= directive; the timeout of a
	// queued workflow runs from when it is dequeued.
	Timeout time.Duration
}

var queues = struct {
	sync.RWMutex
	byName map[string]*Queue
}{byName: map[string]*Queue{InternalQueueName: {name: InternalQueueName}}}

// NewQueue declares a queue. It panics, as regexp.MustCompile does, on
// options that cannot work and on a name declared twice: both are
// programming errors found at start-up.
func NewQueue(name string, opts QueueOptions) *Queue {
	if err := checkQueue(name, opts); err != nil {
		panic(err)
	}
	q := &Queue{name: name, opts: opts}
	queues.Lock()
	defer queues.Unlock()
	if _, dup := queues.byName[name]; dup {
		panic(fmt.Errorf("%w: queue %q declared twice", ErrConfig, name))
	}
	queues.byName[name] = q
	return q
}

func checkQueue(name string, o QueueOptions) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: a queue needs a name", ErrConfig)
	case o.WorkerConcurrency < 0 || o.GlobalConcurrency < 0 || o.PartitionConcurrency < 0 || o.RateLimit.Limit < 0:
		return fmt.Errorf("%w: queue %q: limits cannot be negative", ErrConfig, name)
	case o.RateLimit.Limit > 0 && o.RateLimit.Period <= 0:
		return fmt.Errorf("%w: queue %q: a rate limit needs a positive period", ErrConfig, name)
	case o.RateLimit.Limit == 0 && o.RateLimit.Period != 0:
		return fmt.Errorf("%w: queue %q: a rate limit period needs a positive limit", ErrConfig, name)
	case o.PartitionConcurrency > 0 && !o.Partitioned:
		return fmt.Errorf("%w: queue %q: PartitionConcurrency needs Partitioned", ErrConfig, name)
	case o.WorkerConcurrency > 0 && o.GlobalConcurrency > 0 && o.WorkerConcurrency > o.GlobalConcurrency:
		return fmt.Errorf("%w: queue %q: worker concurrency %d exceeds global concurrency %d",
			ErrConfig, name, o.WorkerConcurrency, o.GlobalConcurrency)
	}
	return nil
}

// Name is the queue's name.
func (q *Queue) Name() string { return q.name }

// Options are the queue's limits.
func (q *Queue) Options() QueueOptions { return q.opts }

// With returns the queue with options for the enqueue it is passed to. The
// options live in the returned value only: not in the context, not in the
// workflow, not in q.
func (q *Queue) With(o EnqueueOptions) *Queue {
	c := *q
	c.call = o
	return &c
}

// servedQueues are the queues an executor serves: listen (every declared
// queue when empty) and DBOS's internal queue.
func servedQueues(listen []string) ([]*Queue, error) {
	queues.RLock()
	defer queues.RUnlock()
	var out []*Queue
	if len(listen) == 0 {
		for _, q := range queues.byName {
			out = append(out, q)
		}
	} else {
		seen := map[string]bool{InternalQueueName: true}
		out = append(out, queues.byName[InternalQueueName])
		for _, n := range listen {
			q, ok := queues.byName[n]
			if !ok {
				return nil, fmt.Errorf("%w: Config.ListenQueues names queue %q, which no NewQueue declares", ErrConfig, n)
			}
			if !seen[n] {
				seen[n] = true
				out = append(out, q)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// queued reports the statuses of a workflow waiting on a queue.
func queued(status string) bool {
	return status == sysdb.StatusEnqueued || status == sysdb.StatusDelayed
}
