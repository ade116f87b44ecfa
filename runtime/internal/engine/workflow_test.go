package engine_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// Item 15: random IDs by default, WithWorkflowID, deterministic child IDs.
func TestWorkflowIDs(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		child := setBody(t, func(ctx context.Context, in input) (string, error) {
			id, _ := dbos.WorkflowID(ctx)
			return id, nil
		})
		parent := input{Key: t.Name() + "/parent"}
		bodies.Store(parent.Key, body(func(ctx context.Context, in input) (string, error) {
			a, err := otherWF.Run(ctx, child)
			if err != nil {
				return "", err
			}
			h, err := otherWF.Start(ctx, child)
			if err != nil {
				return "", err
			}
			b, err := h.Result(ctx)
			return a + " " + b, err
		}))
		h1 := must(testWF.Start(ctx, parent))
		h2 := must(testWF.Start(ctx, parent))
		uuidRE := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
		if !uuidRE.MatchString(h1.ID()) || h1.ID() == h2.ID() {
			t.Fatalf("default IDs %q, %q: want two distinct UUIDs", h1.ID(), h2.ID())
		}
		out := must(testWF.Run(dbos.WithWorkflowID(ctx, "order-7"), parent))
		if out != "order-7-1 order-7-2" {
			t.Fatalf("child IDs %q, want order-7-1 order-7-2", out)
		}
		for _, bad := range []string{"", string(make([]byte, dbos.MaxWorkflowIDLength+1))} {
			if _, err := testWF.Start(dbos.WithWorkflowID(ctx, bad), parent); !errors.Is(err, dbos.ErrInvalidWorkflowID) {
				t.Fatalf("ID of %d bytes: err = %v, want ErrInvalidWorkflowID", len(bad), err)
			}
		}
	})
}

// Item 16: the ID of a finished workflow returns its recorded result without
// running the body; concurrent calls with one ID run the body once.
func TestWorkflowIdempotency(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		var c counter
		gate := make(chan struct{})
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			n := c.inc("body")
			<-gate
			return fmt.Sprintf("run %d", n), nil
		})
		ctx = dbos.WithWorkflowID(ctx, "idem-1")
		var wg sync.WaitGroup
		results := make([]string, 8)
		errs := make([]error, 8)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = testWF.Run(ctx, in)
			}()
		}
		time.Sleep(100 * time.Millisecond)
		close(gate)
		wg.Wait()
		for i := range results {
			if errs[i] != nil || results[i] != "run 1" {
				t.Fatalf("call %d: %q, %v; want run 1", i, results[i], errs[i])
			}
		}
		if out := must(testWF.Run(ctx, in)); out != "run 1" || c.get("body") != 1 {
			t.Fatalf("after finishing: %q with %d body runs; want run 1, 1", out, c.get("body"))
		}
		// The same ID under another workflow name is refused.
		if _, err := otherWF.Run(ctx, in); !errors.Is(err, dbos.ErrWorkflowConflict) {
			t.Fatalf("other workflow with the same ID: err = %v, want ErrWorkflowConflict", err)
		}
	})
}

// Concurrent executions with one ID in two runtimes (two processes) run the
// body at most... once each, but every step outcome is recorded once and both
// see the same one.
func TestWorkflowSameIDTwoRuntimes(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx1 := launch(t, url, withExecutor("a"))
		_, ctx2 := launch(t, url, withExecutor("b"))
		var c counter
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			return dbos.RunStep(ctx, &dbos.StepOptions{Name: "pick"}, func(ctx context.Context) (string, error) {
				return fmt.Sprintf("value %d", c.inc("pick")), nil
			})
		})
		var wg sync.WaitGroup
		out := make([]string, 2)
		for i, ctx := range []context.Context{ctx1, ctx2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				out[i], err = testWF.Run(dbos.WithWorkflowID(ctx, "shared-id"), in)
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if out[0] != out[1] {
			t.Fatalf("two runtimes saw %q and %q for one workflow", out[0], out[1])
		}
	})
}

// Handles report status, and errors round-trip through the database with
// their message and registered sentinels.
func TestHandleStatusAndErrorRoundTrip(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		errOutOfStock := errors.New("out of stock")
		dbos.RegisterError(errOutOfStock)
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			return "", fmt.Errorf("reserving sku-1: %w", errOutOfStock)
		})
		h := must(testWF.Start(dbos.WithWorkflowID(ctx, "wf-err"), in))
		_, err := h.Result(ctx)
		if !errors.Is(err, errOutOfStock) {
			t.Fatalf("err = %v", err)
		}
		st := must(h.Status(ctx))
		if st.Status != dbos.StatusError || st.Name != "test.wf" || st.ExecutorID != "exec-1" || st.ApplicationVersion != "v1" {
			t.Fatalf("status %+v", st)
		}
		if !errors.Is(st.Err, errOutOfStock) || st.Err.Error() != "reserving sku-1: out of stock" {
			t.Fatalf("recorded error %v does not match its sentinel or lost its message", st.Err)
		}
		// Read back by another runtime that never saw the error value.
		_, ctx2 := launch(t, url, withExecutor("reader"))
		_, err = must(dbos.RetrieveWorkflow[string](ctx2, "wf-err")).Result(ctx2)
		if !errors.Is(err, errOutOfStock) || err.Error() != "reserving sku-1: out of stock" {
			t.Fatalf("replayed err = %v", err)
		}
		if _, err := dbos.RetrieveWorkflow[string](ctx, "no-such"); !errors.Is(err, dbos.ErrWorkflowNotFound) {
			t.Fatalf("missing workflow: err = %v", err)
		}
		_ = rt
	})
}

// Async steps take their step ID at call time, so concurrent steps replay
// to the same outcomes whatever order they finished in.
func TestAsyncSteps(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		var c counter
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			var fs []*dbos.Future[string]
			for i := range 5 {
				fs = append(fs, dbos.RunStepAsync(ctx, &dbos.StepOptions{Name: fmt.Sprint("s", i)}, func(ctx context.Context) (string, error) {
					id, _ := dbos.StepID(ctx)
					time.Sleep(time.Duration(5-i) * 10 * time.Millisecond) // finish in reverse order
					c.inc("run")
					return fmt.Sprintf("%d:%d", i, id), nil
				}))
			}
			var out string
			for _, f := range fs {
				v, err := f.Get(ctx)
				if err != nil {
					return "", err
				}
				out += v + " "
			}
			return out, nil
		})
		out := must(testWF.Run(dbos.WithWorkflowID(ctx, "wf-async"), in))
		if out != "0:1 1:2 2:3 3:4 4:5 " {
			t.Fatalf("out = %q", out)
		}
		if n := countRows(t, rt, "operation_outputs"); n != 5 {
			t.Fatalf("%d rows, want 5", n)
		}
		// Replay from the records: re-open the workflow as PENDING.
		execSQL(t, rt, "UPDATE {dbos}workflow_status SET status = 'PENDING', output = NULL WHERE workflow_uuid = 'wf-async'")
		out2 := must(testWF.Run(dbos.WithWorkflowID(ctx, "wf-async"), in))
		if out2 != out || c.get("run") != 5 {
			t.Fatalf("replay gave %q with %d runs; want %q with 5", out2, c.get("run"), out)
		}
	})
}

// Item 19: cancellation reaches the running workflow's context, in this
// runtime or another; the interrupted step is not recorded.
func TestCancelWorkflow(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt1, ctx1 := launch(t, url, withExecutor("runner"))
		_, ctx2 := launch(t, url, withExecutor("canceller"))
		started := make(chan struct{}, 1)
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			if _, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "quick"}, func(ctx context.Context) (int, error) { return 1, nil }); err != nil {
				return "", err
			}
			return dbos.RunStep(ctx, &dbos.StepOptions{Name: "long"}, func(ctx context.Context) (string, error) {
				started <- struct{}{}
				<-ctx.Done()
				return "", ctx.Err()
			})
		})
		h := must(testWF.Start(dbos.WithWorkflowID(ctx1, "wf-cancel"), in))
		<-started
		begin := time.Now()
		if err := dbos.CancelWorkflow(ctx2, "wf-cancel"); err != nil {
			t.Fatal(err)
		}
		_, err := h.Result(ctx1)
		if !errors.Is(err, dbos.ErrWorkflowCancelled) {
			t.Fatalf("err = %v, want ErrWorkflowCancelled", err)
		}
		t.Logf("cancellation delivered across runtimes in %v", time.Since(begin))
		if n := countRows(t, rt1, "operation_outputs"); n != 1 {
			t.Fatalf("%d step rows: the interrupted step must not be recorded", n)
		}
		st := must(rt1.WorkflowStatus(ctx1, "wf-cancel"))
		if st.Status != dbos.StatusCancelled || !errors.Is(st.Err, dbos.ErrWorkflowCancelled) {
			t.Fatalf("status %s err %v", st.Status, st.Err)
		}
		// Calling it again returns the cancellation, without running it.
		if _, err := testWF.Run(dbos.WithWorkflowID(ctx1, "wf-cancel"), in); !errors.Is(err, dbos.ErrWorkflowCancelled) {
			t.Fatalf("re-run of a cancelled workflow: err = %v", err)
		}
		if err := dbos.CancelWorkflow(ctx1, "never-existed"); !errors.Is(err, dbos.ErrWorkflowNotFound) {
			t.Fatalf("cancelling a missing workflow: %v", err)
		}
	})
}

// A workflow timeout cancels it, and the deadline is recorded.
func TestWorkflowTimeout(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			<-ctx.Done()
			return "", ctx.Err()
		})
		h := must(timeoutWF.Start(ctx, in))
		_, err := h.Result(ctx)
		if !errors.Is(err, dbos.ErrWorkflowCancelled) {
			t.Fatalf("err = %v, want ErrWorkflowCancelled", err)
		}
		st := must(rt.WorkflowStatus(ctx, h.ID()))
		if st.Status != dbos.StatusCancelled || st.Deadline.IsZero() {
			t.Fatalf("status %+v", st)
		}
	})
}
