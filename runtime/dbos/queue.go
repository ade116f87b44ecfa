package dbos

import "github.com/dbosgen/dbosgen/runtime/internal/engine"

// Queue is a named queue of workflows, in DBOS's tables: DBOS clients in
// any language enqueue to it by name, and every executor serving it runs
// its workflows within its limits. Enqueue with the generated
// enqueueXWorkflow(ctx, q, params...) functions.
type Queue = engine.Queue

// QueueOptions are a queue's flow control: worker and global concurrency,
// a rate limit, priorities, partitions. Zero means no limit.
type QueueOptions = engine.QueueOptions

// RateLimit is at most Limit starts in any window of length Period.
type RateLimit = engine.RateLimit

// EnqueueOptions are the options of one enqueue (workflow ID, deduplication
// ID, priority, partition key, delay, timeout); pass them with Queue.With.
// They belong to that one call: they are not put in the context, so they
// reach neither the next call nor the workflow's body.
type EnqueueOptions = engine.EnqueueOptions

// InternalQueueName is DBOS's queue for the workflows its tools resume and
// fork; every executor serves it.
const InternalQueueName = engine.InternalQueueName

// ErrQueueDeduplicated: an enqueue named a deduplication ID held by a
// workflow of the queue that has not finished.
var ErrQueueDeduplicated = engine.ErrQueueDeduplicated

// NewQueue declares a queue; declare queues in package-level variables. It
// panics on options that cannot work (a rate limit without a period, say)
// and on a name declared twice.
func NewQueue(name string, opts QueueOptions) *Queue { return engine.NewQueue(name, opts) }
