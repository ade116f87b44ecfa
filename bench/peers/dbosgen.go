package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbosgen/dbosgen/bench/peers/genwf"
	"github.com/dbosgen/dbosgen/runtime/dbos"
)

const (
	genApp  = "peers"
	genStep = "github.com/dbosgen/dbosgen/bench/peers/genwf.answer"
)

// dbosgenCases: dbosgen has no polling to tune; it runs at its defaults,
// on a queue with WorkerConcurrency o.Workers (16 workers, as River and DBOS
// get) and on a queue with the default options (no limits).
func dbosgenCases(o *options) []peerCase {
	mk := func(settings, queue string, workers int) peerCase {
		return peerCase{
			System: "dbosgen", Key: "dbosgen", Settings: settings,
			CountDone:        `SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS' AND queue_name = '` + queue + `'`,
			CountCheckpoints: `SELECT count(*) FROM dbos.operation_outputs WHERE function_name = '` + genStep + `'`,
			StartDrain: func(ctx context.Context, dbURL string, o *options, log logf) (func() error, error) {
				return genDrain(ctx, dbURL, o, genwf.Queue(queue, workers))
			},
			StartLatency: func(ctx context.Context, dbURL string, o *options, log logf) (func(context.Context, int) error, func() error, error) {
				return genLatency(ctx, dbURL, o, genwf.Queue(queue, workers))
			},
		}
	}
	return []peerCase{
		mk(fmt.Sprintf("defaults, WorkerConcurrency %d", o.Workers), fmt.Sprintf("peers-dbosgen-%d", o.Workers), o.Workers),
		mk("defaults, queue without limits", "peers-dbosgen", 0),
	}
}

// genLaunch launches a dbosgen runtime on dbURL with its default settings
// but for the executor ID (several runtimes live in this process), the
// logger, and listen (nil: the default, every declared queue).
func genLaunch(ctx context.Context, dbURL, executor string, o *options, listen []string, poolSize int) (*dbos.Runtime, error) {
	rt, err := dbos.Launch(ctx, dbos.Config{
		AppName:           genApp,
		SystemDatabaseURL: dbURL,
		ExecutorID:        executor,
		Logger:            slog.New(slog.NewTextHandler(o.logOutput(), &slog.HandlerOptions{Level: slog.LevelError})),
		ListenQueues:      listen,
		SystemPoolSize:    poolSize,
	})
	if err != nil {
		return nil, fmt.Errorf("dbosgen Launch (%s): %w", executor, err)
	}
	return rt, nil
}

func genShutdown(rt *dbos.Runtime) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return rt.Shutdown(ctx)
	}
}

func genDrain(ctx context.Context, dbURL string, o *options, q *dbos.Queue) (func() error, error) {
	// The producer serves only the idle queue: it runs none of the jobs it
	// preloads.
	prt, err := genLaunch(ctx, dbURL, "peers-producer", o, []string{genwf.IdleQueue.Name()}, 8)
	if err != nil {
		return nil, err
	}
	pctx := dbos.WithRuntime(ctx, prt)
	var (
		seq      atomic.Int64
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for n := seq.Add(1); n <= int64(o.Jobs); n = seq.Add(1) {
				if _, err := genwf.EnqueueJobWorkflow(pctx, q, int(n)); err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, fmt.Errorf("dbosgen enqueue: %w", err))
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(firstErr, genShutdown(prt)()); err != nil {
		return nil, err
	}
	// The consumer: dbosgen's defaults (its pool, every declared queue).
	rt, err := genLaunch(ctx, dbURL, "peers-consumer", o, nil, 0)
	if err != nil {
		return nil, err
	}
	return genShutdown(rt), nil
}

// genLatency: op enqueues the job on the runtime that serves the queue and
// waits on the handle's Result.
func genLatency(ctx context.Context, dbURL string, o *options, q *dbos.Queue) (func(context.Context, int) error, func() error, error) {
	rt, err := genLaunch(ctx, dbURL, "peers-latency", o, nil, 0)
	if err != nil {
		return nil, nil, err
	}
	op := func(ctx context.Context, n int) error {
		ctx = dbos.WithRuntime(ctx, rt)
		h, err := genwf.EnqueueJobWorkflow(ctx, q, n)
		if err != nil {
			return err
		}
		v, err := h.Result(ctx)
		if err != nil {
			return err
		}
		if v != n+1 {
			return fmt.Errorf("dbosgen workflow %s returned %d, want %d", h.ID(), v, n+1)
		}
		return nil
	}
	return op, genShutdown(rt), nil
}
