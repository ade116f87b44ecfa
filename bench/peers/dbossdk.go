package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	sdk "github.com/dbos-inc/dbos-transact-golang/dbos"
)

const (
	sdkApp      = "peers"
	sdkWorkflow = "peers.job"
	sdkStep     = "peers.answer"
	sdkQueue    = "peers-dbos"
)

// sdkJob is the DBOS SDK's job: a workflow running one checkpointed step,
// as dbosgen's genwf.Job does.
func sdkJob(ctx sdk.Context, n int) (int, error) {
	return sdk.RunAsStep(ctx, func(context.Context) (int, error) { return n + 1, nil }, sdk.WithStepName(sdkStep))
}

func dbosCases(o *options) []peerCase {
	mk := func(settings string, poll, wait time.Duration) peerCase {
		return peerCase{
			System: "DBOS SDK", Key: "dbos", Settings: settings,
			CountDone:        `SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS' AND queue_name = '` + sdkQueue + `'`,
			CountCheckpoints: `SELECT count(*) FROM dbos.operation_outputs WHERE function_name = '` + sdkStep + `'`,
			StartDrain: func(ctx context.Context, dbURL string, o *options, log logf) (func() error, error) {
				return sdkDrain(ctx, dbURL, o, poll)
			},
			StartLatency: func(ctx context.Context, dbURL string, o *options, log logf) (func(context.Context, int) error, func() error, error) {
				return sdkLatency(ctx, dbURL, o, poll, wait)
			},
		}
	}
	return []peerCase{
		mk(fmt.Sprintf("defaults (queue polling 1s, GetResult polling 1s), WorkerConcurrency %d", o.Workers), 0, 0),
		mk(fmt.Sprintf("fastest (queue polling %s, GetResult polling %s), WorkerConcurrency %d", o.DBOSFastPoll, o.DBOSFastWait, o.Workers),
			o.DBOSFastPoll, o.DBOSFastWait),
	}
}

// sdkExecutor is a DBOS context with the job and the queue registered.
type sdkExecutor struct {
	ctx      sdk.Context
	queue    sdk.Queue
	stopping atomic.Bool // set at shutdown: DBOS logs its own cancellation as errors then
}

// newSDKExecutor makes a DBOS context (which migrates the system database)
// with the job registered and the queue registered with o.Workers worker
// concurrency and, unless poll is 0 (DBOS's default, 1s), poll as its
// polling interval. It is not launched.
func newSDKExecutor(ctx context.Context, dbURL, executor string, o *options, poll time.Duration) (*sdkExecutor, error) {
	e := &sdkExecutor{}
	dctx, err := sdk.NewContext(ctx, sdk.Config{
		AppName:     sdkApp,
		DatabaseURL: dbURL,
		ExecutorID:  executor,
		Logger:      slog.New(untilStopping{slog.NewTextHandler(o.logOutput(), &slog.HandlerOptions{Level: slog.LevelError}), &e.stopping}),
	})
	if err != nil {
		return nil, fmt.Errorf("DBOS NewContext: %w", err)
	}
	e.ctx = dctx
	sdk.RegisterWorkflow(dctx, sdkJob, sdk.WithWorkflowName(sdkWorkflow))
	qopts := []sdk.QueueOption{sdk.WithWorkerConcurrency(o.Workers)}
	if poll > 0 {
		qopts = append(qopts, sdk.WithQueueBasePollingInterval(poll))
	}
	if e.queue, err = sdk.RegisterQueue(dctx, sdkQueue, qopts...); err != nil {
		return nil, errors.Join(fmt.Errorf("DBOS RegisterQueue: %w", err), e.shutdown())
	}
	return e, nil
}

func (e *sdkExecutor) shutdown() error {
	e.stopping.Store(true)
	return sdk.Shutdown(e.ctx, 30*time.Second)
}

// untilStopping passes records on until stopping is set.
type untilStopping struct {
	slog.Handler
	stopping *atomic.Bool
}

func (h untilStopping) Handle(ctx context.Context, r slog.Record) error {
	if h.stopping.Load() {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h untilStopping) WithAttrs(attrs []slog.Attr) slog.Handler {
	return untilStopping{h.Handler.WithAttrs(attrs), h.stopping}
}

func (h untilStopping) WithGroup(name string) slog.Handler {
	return untilStopping{h.Handler.WithGroup(name), h.stopping}
}

func sdkDrain(ctx context.Context, dbURL string, o *options, poll time.Duration) (func() error, error) {
	e, err := newSDKExecutor(ctx, dbURL, "peers-consumer", o, poll)
	if err != nil {
		return nil, err
	}
	// Preload with DBOS's client while the context is not launched: nothing
	// dequeues yet.
	client, err := sdk.NewClient(ctx, sdk.ClientConfig{
		DatabaseURL: withParam(dbURL, "pool_max_conns", "8"),
		AppName:     sdkApp,
		Logger:      slog.New(slog.NewTextHandler(o.logOutput(), &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("DBOS NewClient: %w", err), e.shutdown())
	}
	var (
		seq      atomic.Int64
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for n := seq.Add(1); n <= int64(o.Jobs); n = seq.Add(1) {
				if _, err := sdk.Enqueue[int](client, sdkQueue, sdkWorkflow, int(n)); err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, fmt.Errorf("DBOS client Enqueue: %w", err))
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	err = sdk.Shutdown(client, 10*time.Second)
	if err = errors.Join(firstErr, err); err != nil {
		return nil, errors.Join(err, e.shutdown())
	}
	if err := sdk.Launch(e.ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("DBOS Launch: %w", err), e.shutdown())
	}
	return e.shutdown, nil
}

// sdkLatency: op enqueues the job from the launched context that serves the
// queue and waits on the handle's GetResult, which polls the workflow's row
// every wait (DBOS's default, 1s, when wait is 0).
func sdkLatency(ctx context.Context, dbURL string, o *options, poll, wait time.Duration) (func(context.Context, int) error, func() error, error) {
	e, err := newSDKExecutor(ctx, dbURL, "peers-latency", o, poll)
	if err != nil {
		return nil, nil, err
	}
	if err := sdk.Launch(e.ctx); err != nil {
		return nil, nil, errors.Join(fmt.Errorf("DBOS Launch: %w", err), e.shutdown())
	}
	op := func(ctx context.Context, n int) error {
		h, err := sdk.RunWorkflow(e.ctx, sdkJob, n, sdk.WithQueue(e.queue))
		if err != nil {
			return err
		}
		opts := []sdk.GetResultOption{sdk.WithHandlePollingInterval(wait)} // 0: the default
		if dl, ok := ctx.Deadline(); ok {
			opts = append(opts, sdk.WithHandleTimeout(time.Until(dl)))
		}
		v, err := h.GetResult(opts...)
		if err != nil {
			if dl, ok := ctx.Deadline(); ctx.Err() != nil || ok && !time.Now().Before(dl) {
				return context.DeadlineExceeded
			}
			return err
		}
		if v != n+1 {
			return fmt.Errorf("DBOS workflow %s returned %d, want %d", h.GetWorkflowID(), v, n+1)
		}
		return nil
	}
	return op, e.shutdown, nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
