package sysdb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func enqueue(t *testing.T, q Queuer, id, queue string, mod func(*EnqueueParams)) EnqueueResult {
	t.Helper()
	p := EnqueueParams{Row: WorkflowRow{ID: id, Name: "pkg.Workflow", QueueName: queue, ExecutorID: "producer", AppVersion: "v1", Inputs: `["` + id + `"]`}}
	if mod != nil {
		mod(&p)
	}
	r, err := q.Enqueue(context.Background(), p)
	if err != nil {
		t.Fatalf("Enqueue(%s): %v", id, err)
	}
	return r
}

func dequeue(t *testing.T, q Queuer, p DequeueParams) []string {
	t.Helper()
	if p.Max == 0 {
		p.Max = 100
	}
	if p.ExecutorID == "" {
		p.ExecutorID = "exec-a"
	}
	p.AppVersion = "v1"
	rows, err := q.Dequeue(context.Background(), p)
	if err != nil {
		t.Fatalf("Dequeue: %v", err)
	}
	var ids []string
	for _, r := range rows {
		if r.Status != StatusPending || r.ExecutorID != p.ExecutorID || r.Inputs != `["`+r.ID+`"]` || r.HasSteps || r.RecoveryAttempts != 1 {
			t.Fatalf("dequeued row %+v: want PENDING on %s with its inputs, no steps, attempt 1", r, p.ExecutorID)
		}
		ids = append(ids, r.ID)
	}
	return ids
}

// The queue operations on both engines: enqueue, deduplication, limits,
// priority then FIFO, delays, and the deadline set at dequeue.
func TestQueueOps(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		q := tg.migrated(t).(Queuer)
		ctx := context.Background()
		for i := range 5 {
			r := enqueue(t, q, fmt.Sprint("w", i), "jobs", func(p *EnqueueParams) { p.Row.TimeoutMS = 5000 })
			if !r.Inserted || r.Row.Status != StatusEnqueued {
				t.Fatalf("enqueue: %+v", r)
			}
		}
		if r := enqueue(t, q, "w0", "jobs", nil); r.Inserted || r.Row.Name != "pkg.Workflow" || r.Row.Status != StatusEnqueued {
			t.Fatalf("enqueue of an existing ID: %+v", r)
		}
		// Worker concurrency 2: two now, none until they finish.
		got := dequeue(t, q, DequeueParams{Queue: "jobs", WorkerConcurrency: 2})
		if fmt.Sprint(got) != "[w0 w1]" {
			t.Fatalf("first dequeue %v, want [w0 w1] (FIFO)", got)
		}
		if got := dequeue(t, q, DequeueParams{Queue: "jobs", WorkerConcurrency: 2}); len(got) != 0 {
			t.Fatalf("dequeue past worker concurrency: %v", got)
		}
		// Global concurrency 3 counts every executor's PENDING rows.
		if got := dequeue(t, q, DequeueParams{Queue: "jobs", ExecutorID: "exec-b", GlobalConcurrency: 3}); fmt.Sprint(got) != "[w2]" {
			t.Fatalf("dequeue under global concurrency 3 with 2 running: %v, want [w2]", got)
		}
		s := q.(Store)
		w, err := s.Workflow(ctx, "w2")
		if err != nil || w.DeadlineMS == 0 || w.DeadlineMS-time.Now().UnixMilli() > 5000 {
			t.Fatalf("deadline of a dequeued workflow: %+v, %v; want now + its 5s timeout", w, err)
		}
		// Rate limit: starts within the period count, whoever made them.
		if got := dequeue(t, q, DequeueParams{Queue: "jobs", RateLimit: 1, RatePeriodMS: 60000}); len(got) != 1 {
			t.Fatalf("first rate-limited dequeue: %v", got)
		}
		if got := dequeue(t, q, DequeueParams{Queue: "jobs", RateLimit: 1, RatePeriodMS: 60000}); len(got) != 0 {
			t.Fatalf("second start within the period: %v", got)
		}

		// Deduplication, freed when the holder finishes.
		enqueue(t, q, "d1", "dedup", func(p *EnqueueParams) { p.DeduplicationID = "k" })
		if _, err := q.Enqueue(ctx, EnqueueParams{Row: WorkflowRow{ID: "d2", Name: "x", QueueName: "dedup", Inputs: "[]"}, DeduplicationID: "k"}); !errors.Is(err, ErrDeduplicated) {
			t.Fatalf("second enqueue with the deduplication ID: %v", err)
		}
		dequeue(t, q, DequeueParams{Queue: "dedup"})
		if _, err := s.FinishWorkflow(ctx, FinishParams{ID: "d1", Status: StatusSuccess, Output: "1"}); err != nil {
			t.Fatal(err)
		}
		enqueue(t, q, "d3", "dedup", func(p *EnqueueParams) { p.DeduplicationID = "k" })

		// Priority, then FIFO; a delayed row waits for its time.
		for i, p := range []int{3, 1, 3, 0} {
			enqueue(t, q, fmt.Sprint("p", i), "prio", func(e *EnqueueParams) { e.Priority = p })
		}
		enqueue(t, q, "late", "prio", func(e *EnqueueParams) { e.DelayUntilMS = time.Now().Add(300 * time.Millisecond).UnixMilli() })
		if got := dequeue(t, q, DequeueParams{Queue: "prio"}); fmt.Sprint(got) != "[p3 p1 p0 p2]" {
			t.Fatalf("priority order %v, want [p3 p1 p0 p2]", got)
		}
		names, err := q.RunnableQueues(ctx)
		if err != nil || fmt.Sprint(names) != "[dedup jobs]" {
			t.Fatalf("RunnableQueues %v, %v; want [dedup jobs] (the delayed row is not runnable yet)", names, err)
		}
		time.Sleep(350 * time.Millisecond)
		if got := dequeue(t, q, DequeueParams{Queue: "prio"}); fmt.Sprint(got) != "[late]" {
			t.Fatalf("after its delay: %v", got)
		}
	})
}

// Due DELAYED rows and ENQUEUED rows form one queue: a dequeue takes them
// in priority order across both, and its limit counts both, with and
// without worker concurrency.
func TestDequeueMergesDelayedAndEnqueued(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		q := tg.migrated(t).(Queuer)
		for _, queue := range []string{"mixed", "mixed-local"} {
			due := time.Now().Add(100 * time.Millisecond).UnixMilli()
			enqueue(t, q, queue+"-e2", queue, func(e *EnqueueParams) { e.Priority = 2 })
			enqueue(t, q, queue+"-d1", queue, func(e *EnqueueParams) { e.Priority = 1; e.DelayUntilMS = due })
			enqueue(t, q, queue+"-e3", queue, func(e *EnqueueParams) { e.Priority = 3 })
			enqueue(t, q, queue+"-d0", queue, func(e *EnqueueParams) { e.Priority = 0; e.DelayUntilMS = due })
			enqueue(t, q, queue+"-d4", queue, func(e *EnqueueParams) { e.Priority = 4; e.DelayUntilMS = due })
			time.Sleep(time.Until(time.UnixMilli(due)) + 20*time.Millisecond)
			p := DequeueParams{Queue: queue, Max: 3}
			if queue == "mixed-local" {
				p.WorkerConcurrency = 3
			}
			want := []string{queue + "-d0", queue + "-d1", queue + "-e2"}
			if got := dequeue(t, q, p); !slices.Equal(got, want) {
				t.Fatalf("%s: dequeued %v, want %v", queue, got, want)
			}
			p.WorkerConcurrency = 0
			want = []string{queue + "-e3", queue + "-d4"}
			if got := dequeue(t, q, p); !slices.Equal(got, want) {
				t.Fatalf("%s: then %v, want %v", queue, got, want)
			}
		}
	})
}
