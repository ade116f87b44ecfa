package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// riverPoolSize is the pgx pool River gets: pgxpool's own default is
// max(4, cores) = 4 connections here, too few for 16 workers and 16
// producers; 20 is what dbosgen and the DBOS SDK open by default.
const riverPoolSize = 20

// riverArgs is the benchmark's River job; its worker does nothing and
// returns: River records the job's completion, and that is its only write.
type riverArgs struct {
	N int `json:"n"`
}

func (riverArgs) Kind() string { return "peers_job" }

type riverWorker struct {
	river.WorkerDefaults[riverArgs]
}

func (*riverWorker) Work(ctx context.Context, job *river.Job[riverArgs]) error { return nil }

func riverCases(o *options) []peerCase {
	mk := func(settings string, cooldown, poll time.Duration) peerCase {
		return peerCase{
			System: "River", Key: "river", Settings: settings,
			CountDone: `SELECT count(*) FROM river_job WHERE state = 'completed'`,
			StartDrain: func(ctx context.Context, dbURL string, o *options, log logf) (func() error, error) {
				return riverDrain(ctx, dbURL, o, cooldown, poll)
			},
			StartLatency: func(ctx context.Context, dbURL string, o *options, log logf) (func(context.Context, int) error, func() error, error) {
				return riverLatency(ctx, dbURL, o, cooldown, poll)
			},
		}
	}
	return []peerCase{
		mk(fmt.Sprintf("defaults (FetchCooldown 100ms, FetchPollInterval 1s), MaxWorkers %d", o.Workers), 0, 0),
		mk(fmt.Sprintf("fastest (FetchCooldown 1ms, FetchPollInterval 1ms), MaxWorkers %d", o.Workers),
			river.FetchCooldownMin, river.FetchPollIntervalMin),
	}
}

// riverClient migrates River's schema into dbURL and makes a client with
// o.Workers workers on the default queue; cooldown and poll 0 are River's
// defaults.
func riverClient(ctx context.Context, dbURL string, o *options, cooldown, poll time.Duration) (*river.Client[pgx.Tx], *pgxpool.Pool, error) {
	p, err := pool(ctx, dbURL, riverPoolSize)
	if err != nil {
		return nil, nil, err
	}
	quiet := slog.New(slog.NewTextHandler(o.logOutput(), &slog.HandlerOptions{Level: slog.LevelError}))
	m, err := rivermigrate.New(riverpgxv5.New(p), &rivermigrate.Config{Logger: quiet})
	if err == nil {
		_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	}
	if err != nil {
		p.Close()
		return nil, nil, fmt.Errorf("River migration: %w", err)
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &riverWorker{})
	c, err := river.NewClient(riverpgxv5.New(p), &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: o.Workers}},
		Workers:           workers,
		FetchCooldown:     cooldown,
		FetchPollInterval: poll,
		Logger:            quiet,
	})
	if err != nil {
		p.Close()
		return nil, nil, err
	}
	return c, p, nil
}

func riverStop(c *river.Client[pgx.Tx], p *pgxpool.Pool) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.Stop(ctx)
		p.Close()
		return err
	}
}

func riverDrain(ctx context.Context, dbURL string, o *options, cooldown, poll time.Duration) (func() error, error) {
	c, p, err := riverClient(ctx, dbURL, o, cooldown, poll)
	if err != nil {
		return nil, err
	}
	// Preload with the client not started: nothing works the jobs yet.
	for i := 0; i < o.Jobs; i += 1000 {
		batch := make([]river.InsertManyParams, 0, 1000)
		for j := i; j < min(i+1000, o.Jobs); j++ {
			batch = append(batch, river.InsertManyParams{Args: riverArgs{N: j}})
		}
		if _, err := c.InsertMany(ctx, batch); err != nil {
			p.Close()
			return nil, fmt.Errorf("River InsertMany: %w", err)
		}
	}
	if err := c.Start(ctx); err != nil {
		p.Close()
		return nil, fmt.Errorf("River Start: %w", err)
	}
	return riverStop(c, p), nil
}

// riverLatency: op inserts a job and waits for River's completion event for
// it, which River sends once the job's completed state is committed.
func riverLatency(ctx context.Context, dbURL string, o *options, cooldown, poll time.Duration) (func(context.Context, int) error, func() error, error) {
	c, p, err := riverClient(ctx, dbURL, o, cooldown, poll)
	if err != nil {
		return nil, nil, err
	}
	events, unsubscribe := c.SubscribeConfig(&river.SubscribeConfig{
		ChanSize: 100_000,
		Kinds:    []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled},
	})
	w := &riverWaiters{waiting: map[int64]chan *river.Event{}, early: map[int64]*river.Event{}}
	go w.dispatch(events)
	if err := c.Start(ctx); err != nil {
		unsubscribe()
		p.Close()
		return nil, nil, fmt.Errorf("River Start: %w", err)
	}
	op := func(ctx context.Context, n int) error {
		res, err := c.Insert(ctx, riverArgs{N: n}, nil)
		if err != nil {
			return err
		}
		select {
		case ev := <-w.wait(res.Job.ID):
			if ev.Kind != river.EventKindJobCompleted {
				return fmt.Errorf("River job %d: %s", res.Job.ID, ev.Kind)
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	stop := riverStop(c, p)
	return op, func() error { err := stop(); unsubscribe(); return err }, nil
}

// riverWaiters hands each completion event to the producer waiting for
// that job, or keeps it for the producer about to wait.
type riverWaiters struct {
	mu      sync.Mutex
	waiting map[int64]chan *river.Event
	early   map[int64]*river.Event
}

func (w *riverWaiters) dispatch(events <-chan *river.Event) {
	for ev := range events {
		if ev == nil || ev.Job == nil {
			continue
		}
		w.mu.Lock()
		if ch, ok := w.waiting[ev.Job.ID]; ok {
			delete(w.waiting, ev.Job.ID)
			ch <- ev
		} else {
			w.early[ev.Job.ID] = ev
		}
		w.mu.Unlock()
	}
}

func (w *riverWaiters) wait(id int64) <-chan *river.Event {
	ch := make(chan *river.Event, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if ev, ok := w.early[id]; ok {
		delete(w.early, id)
		ch <- ev
	} else {
		w.waiting[id] = ch
	}
	return ch
}
