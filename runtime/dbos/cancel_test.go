package dbos_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/jmoiron/sqlx"
)

// durableCalls tries one of each durable call and returns their errors; c
// counts which functions ran.
func durableCalls(ctx context.Context, c *counter, child input) map[string]error {
	errs := map[string]error{}
	_, errs["step"] = dbos.RunStep(ctx, &dbos.StepOptions{Name: "two"}, func(ctx context.Context) (int, error) {
		return c.inc("step"), nil
	})
	_, errs["async step"] = dbos.RunStepAsync(ctx, &dbos.StepOptions{Name: "three"}, func(ctx context.Context) (int, error) {
		return c.inc("async step"), nil
	}).Get(context.Background())
	_, errs["transaction"] = dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "four"}, func(ctx context.Context, tx *sqlx.Tx) (int, error) {
		return c.inc("transaction"), nil
	})
	_, errs["child"] = otherWF.Run(ctx, child)
	return errs
}

// Item 20: once a workflow is cancelled, or past its deadline, no step,
// async step, transaction or child of it starts, though its body never
// looks at its context; its outcome stays the cancellation.
func TestCancelledWorkflowStartsNothing(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		var c counter
		reached := make(chan struct{})
		gate := make(chan struct{})
		got := make(chan map[string]error, 1)
		var in input
		in = setBody(t, func(ctx context.Context, x input) (string, error) {
			if x.N == 1 { // a child
				c.inc("child")
				return "child", nil
			}
			if _, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "one"}, func(ctx context.Context) (int, error) { return 1, nil }); err != nil {
				return "", err
			}
			close(reached)
			if x.N == 2 {
				time.Sleep(500 * time.Millisecond) // past the 300ms timeout, not watching ctx
			} else {
				<-gate // something other than ctx
			}
			child := in
			child.N = 1
			errs := durableCalls(ctx, &c, child)
			got <- errs
			return "finished", errs["step"]
		})
		check := func(id string, h *dbos.WorkflowHandle[string]) {
			t.Helper()
			if _, err := h.Result(ctx); !errors.Is(err, dbos.ErrWorkflowCancelled) {
				t.Errorf("%s: result err = %v, want ErrWorkflowCancelled", id, err)
			}
			for what, err := range <-got {
				if !errors.Is(err, dbos.ErrWorkflowCancelled) {
					t.Errorf("%s: %s after cancellation: err = %v, want ErrWorkflowCancelled", id, what, err)
				}
				if n := c.get(what); n != 0 {
					t.Errorf("%s: the %s ran %d times after cancellation", id, what, n)
				}
			}
			if n := scalar[int](t, rt, "SELECT count(*) FROM {dbos}operation_outputs WHERE workflow_uuid = '"+id+"'"); n != 1 {
				t.Errorf("%s: %d step rows, want 1: nothing after the cancellation may be recorded", id, n)
			}
			if st := must(rt.WorkflowStatus(ctx, id)); st.Status != dbos.StatusCancelled {
				t.Errorf("%s: status %s, want CANCELLED", id, st.Status)
			}
		}

		h := must(testWF.Start(dbos.WithWorkflowID(ctx, "cancelled"), in))
		<-reached
		must(struct{}{}, dbos.CancelWorkflow(ctx, "cancelled"))
		close(gate)
		check("cancelled", h)

		reached = make(chan struct{})
		timed := in
		timed.N = 2
		check("timed-out", must(timeoutWF.Start(dbos.WithWorkflowID(ctx, "timed-out"), timed)))
	})
}

// Item 20: a parent's timeout reaches the children it started or called:
// they get its deadline, recorded on their rows, and stop with it.
func TestParentTimeoutReachesChildren(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		var c counter
		var in input
		in = setBody(t, func(ctx context.Context, x input) (string, error) {
			switch x.N {
			case 1: // a child that waits for its context
				<-ctx.Done()
				return "", context.Cause(ctx)
			case 2: // a child that does not, then takes a step
				time.Sleep(600 * time.Millisecond)
				return dbos.RunStep(ctx, &dbos.StepOptions{Name: "late"}, func(ctx context.Context) (string, error) {
					c.inc("late")
					return "ran", nil
				})
			}
			waiter, sleeper := in, in
			waiter.N, sleeper.N = 1, 2
			if _, err := otherWF.Start(ctx, waiter); err != nil { // parent-1
				return "", err
			}
			if _, err := otherWF.Start(ctx, sleeper); err != nil { // parent-2
				return "", err
			}
			return otherWF.Run(ctx, waiter) // parent-3
		})
		h := must(timeoutWF.Start(dbos.WithWorkflowID(ctx, "parent"), in))
		if _, err := h.Result(ctx); !errors.Is(err, dbos.ErrWorkflowCancelled) {
			t.Fatalf("parent: err = %v, want ErrWorkflowCancelled", err)
		}
		parent := must(rt.WorkflowStatus(ctx, "parent"))
		for _, id := range []string{"parent-1", "parent-2", "parent-3"} {
			res, err := must(dbos.RetrieveWorkflow[string](ctx, id)).Result(ctx)
			if !errors.Is(err, dbos.ErrWorkflowCancelled) {
				t.Errorf("%s: %q, %v; want ErrWorkflowCancelled", id, res, err)
			}
			st := must(rt.WorkflowStatus(ctx, id))
			if st.Status != dbos.StatusCancelled || !st.Deadline.Equal(parent.Deadline) {
				t.Errorf("%s: status %s, deadline %v; want CANCELLED with the parent's deadline %v", id, st.Status, st.Deadline, parent.Deadline)
			}
		}
		if c.get("late") != 0 {
			t.Errorf("a child ran a step after its parent's deadline")
		}
	})
}

// Item 20: cancelling a workflow cancels its running descendants, in the
// runtime that runs them, from another one.
func TestCancelReachesDescendants(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url, withExecutor("runner"))
		_, ctx2 := launch(t, url, withExecutor("canceller"))
		var c counter
		var in input
		in = setBody(t, func(ctx context.Context, x input) (string, error) {
			if x.N < 2 { // parent and child start the next generation
				next := in
				next.N = x.N + 1
				if _, err := otherWF.Start(ctx, next); err != nil {
					return "", err
				}
			}
			c.inc("waiting")
			<-ctx.Done()
			return "", context.Cause(ctx)
		})
		h := must(testWF.Start(dbos.WithWorkflowID(ctx, "root"), in))
		waitFor(t, "three generations to run", func() bool { return c.get("waiting") == 3 })
		must(struct{}{}, dbos.CancelWorkflow(ctx2, "root"))
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := h.Result(rctx); !errors.Is(err, dbos.ErrWorkflowCancelled) {
			t.Fatalf("root: err = %v", err)
		}
		for _, id := range []string{"root-1", "root-1-1"} {
			if _, err := must(dbos.RetrieveWorkflow[string](ctx, id)).Result(rctx); !errors.Is(err, dbos.ErrWorkflowCancelled) {
				t.Errorf("%s: err = %v, want ErrWorkflowCancelled", id, err)
			}
			if st := must(rt.WorkflowStatus(ctx, id)); st.Status != dbos.StatusCancelled {
				t.Errorf("%s: status %s, want CANCELLED", id, st.Status)
			}
		}
	})
}
