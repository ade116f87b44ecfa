package engine_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// An enqueue from a workflow is a step of it: the child's ID derives from
// the parent's, and a replay finds the child instead of enqueueing another.
func TestQueueEnqueueFromWorkflow(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		var c counter
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			if in.N == 1 { // the child
				c.inc("child")
				return "child", nil
			}
			c.inc("parent")
			h, err := testWF.Enqueue(ctx, qBasic, input{Key: in.Key, N: 1})
			if err != nil {
				return "", err
			}
			v, err := h.Result(ctx)
			return h.ID() + ":" + v, err
		})
		got := must(testWF.Run(dbos.WithWorkflowID(ctx, "parent-1"), in))
		if got != "parent-1-1:child" {
			t.Fatalf("parent returned %q, want the child's deterministic ID parent-1-1", got)
		}
		rows := countRows(t, rt, "workflow_status")

		// Run the parent again from its history: the enqueue replays.
		execSQL(t, rt, "UPDATE {dbos}workflow_status SET status = 'PENDING' WHERE workflow_uuid = 'parent-1'")
		execSQL(t, rt, "DELETE FROM {dbos}workflow_output WHERE workflow_uuid = 'parent-1'")
		shutdown(t, rt)
		rt, ctx = launch(t, url)
		h := must(dbos.RetrieveWorkflow[string](ctx, "parent-1"))
		if got := must(h.Result(ctx)); got != "parent-1-1:child" {
			t.Fatalf("replayed parent returned %q", got)
		}
		if c.get("parent") != 2 || c.get("child") != 1 {
			t.Fatalf("parent ran %d times, child %d; want 2 and 1", c.get("parent"), c.get("child"))
		}
		if n := countRows(t, rt, "workflow_status"); n != rows {
			t.Fatalf("%d workflows after the replay, %d before: the enqueue ran again", n, rows)
		}
	})
}

func TestQueueEnqueueFromStepRefused(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			return dbos.RunStep(ctx, &dbos.StepOptions{Name: "s"}, func(ctx context.Context) (string, error) {
				_, err := testWF.Enqueue(ctx, qBasic, input{Key: in.Key, N: 9})
				return "", err
			})
		})
		if _, err := testWF.Run(ctx, in); !errors.Is(err, dbos.ErrWorkflowInStep) {
			t.Fatalf("got %v, want ErrWorkflowInStep", err)
		}
	})
}

// A workflow that DBOS's ResumeWorkflow sets back to ENQUEUED on its
// internal queue runs again from its recorded steps.
func TestQueueInternalQueueResume(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		var c counter
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			c.inc("body")
			v, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "once"}, func(ctx context.Context) (int, error) {
				return c.inc("step"), nil
			})
			return fmt.Sprint(v), err
		})
		h := must(testWF.Start(ctx, in))
		must(h.Result(ctx))
		// What DBOS's resume writes (see its sysdb ResumeWorkflow).
		execSQL(t, rt, "UPDATE {dbos}workflow_status SET status = 'ENQUEUED', queue_name = '"+dbos.InternalQueueName+
			"', recovery_attempts = 0, started_at_epoch_ms = NULL WHERE workflow_uuid = '"+h.ID()+"'")
		execSQL(t, rt, "DELETE FROM {dbos}workflow_output WHERE workflow_uuid = '"+h.ID()+"'")
		waitFor(t, "the resumed workflow to finish", func() bool {
			return c.get("body") == 2 && must(h.Status(ctx)).Status == dbos.StatusSuccess
		})
		if c.get("step") != 1 {
			t.Fatalf("the recorded step ran %d times", c.get("step"))
		}
		if got := must(dbos.RetrieveWorkflow[string](ctx, h.ID())); must(got.Result(ctx)) != "1" {
			t.Fatal("resumed workflow did not replay its step's outcome")
		}
	})
}

// WithWorkflowID names the enqueued workflow as it names a started one: a
// second enqueue with the same context reaches the same workflow.
func TestQueueEnqueueIdempotentID(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		in := setBody(t, func(ctx context.Context, in input) (string, error) { return "x", nil })
		idCtx := dbos.WithWorkflowID(ctx, "q-id")
		a := must(testWF.Enqueue(idCtx, qBasic, in))
		b := must(testWF.Enqueue(idCtx, qBasic, in))
		if a.ID() != "q-id" || b.ID() != "q-id" {
			t.Fatalf("IDs %s, %s", a.ID(), b.ID())
		}
		must(b.Result(ctx))
		if _, err := otherWF.Enqueue(idCtx, qBasic, in); !errors.Is(err, dbos.ErrWorkflowConflict) {
			t.Fatalf("another workflow with the ID: %v, want ErrWorkflowConflict", err)
		}
		c := must(testWF.Enqueue(ctx, qBasic.With(dbos.EnqueueOptions{WorkflowID: "q-id-2"}), in))
		if c.ID() != "q-id-2" {
			t.Fatalf("EnqueueOptions.WorkflowID: got %s", c.ID())
		}
		must(c.Result(ctx))
	})
}
