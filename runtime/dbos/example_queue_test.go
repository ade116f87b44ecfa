package dbos_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/dbosgen/dbosgen/runtime/dbosimpl"
)

// Queues are declared in package-level variables, so every executor of the
// application knows their limits.
var emails = dbos.NewQueue("example-emails", dbos.QueueOptions{
	WorkerConcurrency: 4,                                               // per executor
	GlobalConcurrency: 16,                                              // across executors
	RateLimit:         dbos.RateLimit{Limit: 100, Period: time.Minute}, // starts per minute
	PriorityEnabled:   true,
})

// What dbosgen generates for
//
//	//dbos:workflow
//	func send(ctx context.Context, to string) (string, error)
var sendWorkflow = dbosimpl.RegisterWorkflow(dbosimpl.WorkflowOptions{Name: "example.send"},
	func(ctx context.Context, to string) (string, error) { return "sent to " + to, nil })

func enqueueSendWorkflow(ctx context.Context, q *dbos.Queue, to string) (*dbos.WorkflowHandle[string], error) {
	return sendWorkflow.Enqueue(ctx, q, to)
}

// launchExample launches a runtime on a fresh SQLite file.
func launchQueueExample() (context.Context, func()) {
	rt, done := launchExample()
	return dbos.WithRuntime(context.Background(), rt), done
}

func ExampleNewQueue() {
	ctx, done := launchQueueExample()
	defer done()

	h, err := enqueueSendWorkflow(ctx, emails, "ann@example.com")
	if err != nil {
		panic(err)
	}
	fmt.Println(h.Result(ctx))
	// Output: sent to ann@example.com <nil>
}

// Per-call options go with the queue value that Queue.With returns: they
// apply to the enqueue it is passed to, and to nothing else (not the next
// call with the same context, not the workflow's body).
func ExampleQueue_With() {
	ctx, done := launchQueueExample()
	defer done()

	welcome := emails.With(dbos.EnqueueOptions{
		WorkflowID:      "welcome-bob",
		DeduplicationID: "welcome:bob",
		Priority:        1, // lower runs first
		Delay:           100 * time.Millisecond,
		Timeout:         time.Minute, // counted from the dequeue
	})
	h, err := enqueueSendWorkflow(ctx, welcome, "bob@example.com")
	if err != nil {
		panic(err)
	}
	fmt.Println(h.ID())

	// Another workflow holding the deduplication ID is refused while the
	// first has not finished.
	_, err = enqueueSendWorkflow(ctx, emails.With(dbos.EnqueueOptions{DeduplicationID: "welcome:bob"}), "bob@example.com")
	fmt.Println(errors.Is(err, dbos.ErrQueueDeduplicated))

	fmt.Println(h.Result(ctx))
	// Output:
	// welcome-bob
	// true
	// sent to bob@example.com <nil>
}
