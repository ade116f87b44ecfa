// Package genwf is the dbosgen side of the peer benchmark: one workflow with
// one checkpointed step, the same trivial job River and the DBOS Go SDK run
// in the harness. dbos_gen.go is generated from it:
//
//	cd bench/peers && go run github.com/dbosgen/dbosgen/cmd/dbosgen ./...
package genwf

//go:generate go run github.com/dbosgen/dbosgen/cmd/dbosgen

import (
	"context"
	"sync"

	"github.com/dbosgen/dbosgen/runtime/dbos"
)

// answer is the job's one step: trivial work whose outcome is checkpointed.
//
//dbos:step
func answer(ctx context.Context, n int) (int, error) {
	return n + 1, nil
}

// Job is the benchmark's job: a workflow that runs answer once.
//
//dbos:workflow
func Job(ctx context.Context, n int) (int, error) {
	return answerStep(ctx, n)
}

// IdleQueue is served by the runtime that preloads the drain: it is the one
// queue that runtime listens to, so it runs none of the jobs it enqueues.
var IdleQueue = dbos.NewQueue("peers-idle", dbos.QueueOptions{})

var (
	queuesMu sync.Mutex
	queues   = map[string]*dbos.Queue{}
)

// Queue returns the benchmark queue named name, declaring it with
// WorkerConcurrency workers (0: no limit) the first time: dbos.NewQueue
// panics on a name declared twice, and the harness may run several times in
// one process. Every other option is dbosgen's default.
func Queue(name string, workers int) *dbos.Queue {
	queuesMu.Lock()
	defer queuesMu.Unlock()
	if q, ok := queues[name]; ok {
		return q
	}
	q := dbos.NewQueue(name, dbos.QueueOptions{WorkerConcurrency: workers})
	queues[name] = q
	return q
}
