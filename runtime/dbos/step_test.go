package dbos_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/runtime/dbos"
)

// Item 1: outside a workflow a step runs with its retry policy; nothing is recorded.
func TestStepOutsideWorkflow(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		var calls int
		opts := &dbos.StepOptions{Name: "flaky", RetriesAllowed: true, MaxAttempts: 3, Interval: time.Millisecond}
		out, err := dbos.RunStep(ctx, opts, func(ctx context.Context) (int, error) {
			calls++
			if _, inWF := dbos.StepID(ctx); inWF {
				t.Error("StepID reported outside a workflow")
			}
			if calls < 3 {
				return 0, errors.New("transient")
			}
			return 42, nil
		})
		if err != nil || out != 42 || calls != 3 {
			t.Fatalf("got %d, %v after %d calls; want 42, nil after 3", out, err, calls)
		}
		if n := countRows(t, rt, "operation_outputs"); n != 0 {
			t.Fatalf("%d step rows recorded outside a workflow", n)
		}
	})
}

// Items 2 and 9: each step's final outcome is recorded under (workflow, step
// ID); intermediate attempts are not; a re-execution returns recorded
// outcomes without running the steps.
func TestStepRecordedAndReplayed(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		var c counter
		release := make(chan struct{})
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			a, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "a"}, func(ctx context.Context) (string, error) {
				c.inc("a")
				return "A", nil
			})
			if err != nil {
				return "", err
			}
			b, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "b", RetriesAllowed: true, MaxAttempts: 5, Interval: time.Millisecond},
				func(ctx context.Context) (string, error) {
					if c.inc("b") < 3 {
						return "", errors.New("not yet")
					}
					return "B", nil
				})
			if err != nil {
				return "", err
			}
			_, err = dbos.RunStep(ctx, &dbos.StepOptions{Name: "wait"}, func(ctx context.Context) (struct{}, error) {
				c.inc("wait")
				select {
				case <-release:
					return struct{}{}, nil
				case <-ctx.Done():
					return struct{}{}, ctx.Err()
				}
			})
			return a + b, err
		})
		h := must(testWF.Start(dbos.WithWorkflowID(ctx, "wf-replay"), in))
		waitFor(t, "the third step to start", func() bool { return c.get("wait") == 1 })
		if n := countRows(t, rt, "operation_outputs"); n != 2 {
			t.Fatalf("%d step rows after two steps (the second took 3 attempts); want 2", n)
		}
		shutdown(t, rt) // interrupts step 3: not recorded
		if _, err := h.Result(context.Background()); !errors.Is(err, dbos.ErrShutdown) {
			t.Fatalf("interrupted workflow: err = %v, want ErrShutdown", err)
		}

		close(release)
		rt2, ctx2 := launch(t, url) // recovers wf-replay
		h2 := must(dbos.RetrieveWorkflow[string](ctx2, "wf-replay"))
		out, err := h2.Result(ctx2)
		if err != nil || out != "AB" {
			t.Fatalf("recovered result = %q, %v; want AB", out, err)
		}
		if c.get("a") != 1 || c.get("b") != 3 || c.get("wait") != 2 {
			t.Fatalf("calls a=%d b=%d wait=%d; want 1, 3, 2", c.get("a"), c.get("b"), c.get("wait"))
		}
		if n := countRows(t, rt2, "operation_outputs"); n != 3 {
			t.Fatalf("%d step rows; want 3", n)
		}
	})
}

// Item 3: attempts, the exact backoff schedule, no wait after the last
// attempt, and a cancelled context ends the wait.
func TestStepRetryPolicy(t *testing.T) {
	opts := &dbos.StepOptions{Name: "s", RetriesAllowed: true, MaxAttempts: 4, Interval: 20 * time.Millisecond, BackoffRate: 2, MaxInterval: 50 * time.Millisecond}
	for i, want := range []time.Duration{20, 40, 50, 50} {
		if got := opts.Delay(i); got != want*time.Millisecond {
			t.Errorf("Delay(%d) = %v, want %v", i, got, want*time.Millisecond)
		}
	}
	// Zero BackoffRate and MaxInterval take the defaults (2, 1h); a zero
	// Interval is no wait at all (item 21), whatever the other fields say.
	if d := (&dbos.StepOptions{Interval: time.Second}).Delay(1); d != 2*time.Second {
		t.Errorf("default backoff: second delay = %v, want 2s", d)
	}
	if d := (&dbos.StepOptions{Interval: time.Second}).Delay(1000); d != time.Hour {
		t.Errorf("default delay is capped at %v, want 1h", d)
	}
	for i := range 3 {
		if d := (&dbos.StepOptions{}).Delay(i); d != 0 {
			t.Errorf("zero Interval: Delay(%d) = %v, want 0", i, d)
		}
	}

	var stamps []time.Time
	start := time.Now()
	_, err := dbos.RunStep(context.Background(), opts, func(ctx context.Context) (int, error) {
		stamps = append(stamps, time.Now())
		return 0, fmt.Errorf("attempt %d failed", len(stamps))
	})
	total := time.Since(start)
	if len(stamps) != 4 {
		t.Fatalf("%d attempts, want 4", len(stamps))
	}
	for i, want := range []time.Duration{20, 40, 50} {
		if gap := stamps[i+1].Sub(stamps[i]); gap < want*time.Millisecond {
			t.Errorf("wait after attempt %d = %v, want >= %vms", i, gap, want)
		}
	}
	if idle := total - stamps[3].Sub(start); idle > 15*time.Millisecond {
		t.Errorf("waited %v after the last attempt; want no wait", idle)
	}
	if !errors.Is(err, dbos.ErrMaxStepRetriesExceeded) {
		t.Fatalf("err = %v, want ErrMaxStepRetriesExceeded", err)
	}

	// Retries not allowed: one attempt, the error itself.
	calls := 0
	_, err = dbos.RunStep(context.Background(), &dbos.StepOptions{Name: "once", MaxAttempts: 5}, func(ctx context.Context) (int, error) {
		calls++
		return 0, errors.New("boom")
	})
	if calls != 1 || err == nil || err.Error() != "boom" {
		t.Fatalf("without retries: %d calls, err %v; want 1 call, boom", calls, err)
	}

	// ShouldRetry refusing stops at once.
	calls = 0
	permanent := errors.New("permanent")
	_, err = dbos.RunStep(context.Background(), &dbos.StepOptions{Name: "sr", RetriesAllowed: true, MaxAttempts: 5, Interval: time.Millisecond,
		ShouldRetry: func(err error) bool { return !errors.Is(err, permanent) }}, func(ctx context.Context) (int, error) {
		calls++
		return 0, permanent
	})
	if calls != 1 || !errors.Is(err, permanent) {
		t.Fatalf("ShouldRetry=false: %d calls, err %v", calls, err)
	}

	// Cancellation ends the wait between attempts.
	ctx, cancel := context.WithCancel(context.Background())
	calls = 0
	start = time.Now()
	_, err = dbos.RunStep(ctx, &dbos.StepOptions{Name: "slow", RetriesAllowed: true, MaxAttempts: 3, Interval: time.Hour}, func(ctx context.Context) (int, error) {
		calls++
		time.AfterFunc(20*time.Millisecond, cancel)
		return 0, errors.New("fail")
	})
	if !errors.Is(err, context.Canceled) || calls != 1 || time.Since(start) > 5*time.Second {
		t.Fatalf("cancelled wait: err %v after %d calls in %v", err, calls, time.Since(start))
	}
}

// Item 21: an explicit zero interval (interval_seconds=0, interval=0s, which
// the generator emits as Interval: 0) retries at once, in a workflow or not;
// only an absent key takes the default 1s, and the generator spells that out.
func TestStepZeroIntervalRetriesAtOnce(t *testing.T) {
	const attempts = 5
	opts := func() *dbos.StepOptions {
		return &dbos.StepOptions{Name: "at-once", RetriesAllowed: true, MaxAttempts: attempts, Interval: 0, BackoffRate: 2, MaxInterval: time.Hour}
	}
	// Every wait the default would impose is at least a second; five
	// attempts with no wait take milliseconds.
	const budget = 500 * time.Millisecond
	var gaps []time.Duration // between the end of one attempt and the start of the next
	fail := func() func(ctx context.Context) (int, error) {
		gaps = nil
		var last time.Time
		return func(ctx context.Context) (int, error) {
			if !last.IsZero() {
				gaps = append(gaps, time.Since(last))
			}
			defer func() { last = time.Now() }()
			return 0, errors.New("not yet")
		}
	}
	check := func(t *testing.T, err error) {
		t.Helper()
		var me *dbos.MaxStepRetriesExceededError
		if !errors.As(err, &me) || me.MaxAttempts != attempts || len(me.Errors) != attempts {
			t.Fatalf("err = %v; want MaxStepRetriesExceededError after %d attempts", err, attempts)
		}
		if len(gaps) != attempts-1 {
			t.Fatalf("%d waits between attempts; want %d", len(gaps), attempts-1)
		}
		for i, gap := range gaps {
			if gap > budget {
				t.Errorf("waited %v after attempt %d with a zero interval; want no wait (under %v)", gap, i, budget)
			}
		}
	}

	t.Run("outside a workflow", func(t *testing.T) {
		_, err := dbos.RunStep(context.Background(), opts(), fail())
		check(t, err)
	})
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			_, err := dbos.RunStep(ctx, opts(), fail())
			return "", err
		})
		_, err := testWF.Run(dbos.WithWorkflowID(ctx, "wf-zero-interval"), in)
		check(t, err)
	})
}

// Item 4: the retries-exceeded error carries the step name, max attempts and
// every attempt's error, is recorded, and still matches after a replay.
func TestStepMaxRetriesExceeded(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		errTransient := errors.New("upstream unavailable")
		dbos.RegisterError(errTransient)
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			_, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "fetch", RetriesAllowed: true, MaxAttempts: 3, Interval: time.Millisecond},
				func(ctx context.Context) (int, error) {
					info, _ := dbos.CurrentStep(ctx)
					return 0, fmt.Errorf("attempt %d: %w", info.Attempt, errTransient)
				})
			return "", err
		})
		check := func(err error) {
			t.Helper()
			if !errors.Is(err, dbos.ErrMaxStepRetriesExceeded) || !errors.Is(err, errTransient) {
				t.Fatalf("err = %v; want ErrMaxStepRetriesExceeded wrapping errTransient", err)
			}
			var me *dbos.MaxStepRetriesExceededError
			if !errors.As(err, &me) {
				t.Fatalf("errors.As(*MaxStepRetriesExceededError) failed for %T", err)
			}
			if me.Step != "fetch" || me.MaxAttempts != 3 || len(me.Unwrap()) != 3 {
				t.Fatalf("got step %q, max %d, %d errors", me.Step, me.MaxAttempts, len(me.Unwrap()))
			}
			for i, e := range me.Errors {
				if want := fmt.Sprintf("attempt %d: upstream unavailable", i); e.Error() != want {
					t.Fatalf("attempt %d error %q, want %q", i, e.Error(), want)
				}
			}
		}
		_, err := testWF.Run(dbos.WithWorkflowID(ctx, "wf-max"), in)
		check(err)
		// The recorded workflow error, read back: same guarantees.
		_, err = testWF.Run(dbos.WithWorkflowID(ctx, "wf-max"), in)
		check(err)
		var rec *dbos.MaxStepRetriesExceededError
		if errors.As(err, &rec) && rec.Errors[0].(*dbos.RecordedError) == nil {
			t.Fatal("replayed attempt errors are not RecordedErrors")
		}
	})
}

// Item 5: a panic in a step, a transaction or a workflow becomes an error.
func TestPanicsBecomeErrors(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			_, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "p"}, func(ctx context.Context) (int, error) { panic("step exploded") })
			if !errors.Is(err, dbos.ErrPanic) || !strings.Contains(err.Error(), "step exploded") {
				return "", fmt.Errorf("step panic gave %v", err)
			}
			var pe *dbos.PanicError
			if !errors.As(err, &pe) || !strings.Contains(pe.Stack, "step_test.go") {
				return "", fmt.Errorf("step panic error has no stack: %#v", err)
			}
			panic("workflow exploded")
		})
		_, err := testWF.Run(dbos.WithWorkflowID(ctx, "wf-panic"), in)
		if !errors.Is(err, dbos.ErrPanic) || !strings.Contains(err.Error(), "workflow exploded") {
			t.Fatalf("workflow panic: err = %v", err)
		}
		// Recorded: the second call returns the same error without running.
		_, err = testWF.Run(dbos.WithWorkflowID(ctx, "wf-panic"), in)
		if !errors.Is(err, dbos.ErrPanic) || !strings.Contains(err.Error(), "workflow exploded") {
			t.Fatalf("recorded workflow panic: err = %v", err)
		}
	})
}

// Item 6: a step called from a step is a plain call, with no step ID of its own.
// Item 10: the step ID and attempt are visible inside a step.
func TestNestedStepIsPlainCall(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		var seen []string
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			inner := func(ctx context.Context) (int, error) {
				id, _ := dbos.StepID(ctx)
				info, _ := dbos.CurrentStep(ctx)
				seen = append(seen, fmt.Sprintf("inner id=%d name=%s", id, info.Name))
				return 1, nil
			}
			outer := func(ctx context.Context) (int, error) {
				id, _ := dbos.StepID(ctx)
				info, _ := dbos.CurrentStep(ctx)
				seen = append(seen, fmt.Sprintf("outer id=%d attempt=%d/%d", id, info.Attempt, info.MaxAttempts))
				if info.Attempt == 0 {
					return 0, errors.New("retry me")
				}
				return dbos.RunStep(ctx, &dbos.StepOptions{Name: "inner"}, inner)
			}
			if _, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "first"}, func(ctx context.Context) (int, error) { return 0, nil }); err != nil {
				return "", err
			}
			_, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "outer", RetriesAllowed: true, MaxAttempts: 2, Interval: time.Millisecond}, outer)
			return "", err
		})
		must(testWF.Run(ctx, in))
		want := []string{"outer id=2 attempt=0/2", "outer id=2 attempt=1/2", "inner id=2 name=outer"}
		if fmt.Sprint(seen) != fmt.Sprint(want) {
			t.Fatalf("seen %q\nwant %q", seen, want)
		}
		if n := countRows(t, rt, "operation_outputs"); n != 2 {
			t.Fatalf("%d step rows; the nested step must not have its own", n)
		}
	})
}

// Item 7: calling or starting a workflow from a step is an error and does nothing.
func TestWorkflowFromStepRefused(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		inner := setBody(t, func(ctx context.Context, in input) (string, error) { return "ran", nil })
		_, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "s"}, func(ctx context.Context) (string, error) {
			return otherWF.Run(ctx, inner)
		})
		if !errors.Is(err, dbos.ErrWorkflowInStep) {
			t.Fatalf("err = %v, want ErrWorkflowInStep", err)
		}
		if n := countRows(t, rt, "workflow_status"); n != 0 {
			t.Fatalf("%d workflows started from a step", n)
		}
	})
}

// Item 8: a step ID recorded under another name is a nondeterminism error
// naming both; the other step's output is never returned.
func TestNondeterminism(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		name := "charge"
		block := make(chan struct{})
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			out, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: name}, func(ctx context.Context) (string, error) { return "secret", nil })
			if err != nil {
				return "", err
			}
			select {
			case <-block:
				return out, nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		})
		h := must(testWF.Start(dbos.WithWorkflowID(ctx, "wf-nd"), in))
		waitFor(t, "the step to be recorded", func() bool { return countRows(t, rt, "operation_outputs") == 1 })
		shutdown(t, rt)
		_, _ = h.Result(context.Background())
		close(block)

		name = "refund" // the code changed under an unfinished workflow
		rt2, ctx2 := launch(t, url)
		_, err := must(dbos.RetrieveWorkflow[string](ctx2, "wf-nd")).Result(ctx2)
		var nd *dbos.NondeterministicError
		if !errors.Is(err, dbos.ErrNondeterministic) || !errors.As(err, &nd) || nd.Recorded != "charge" || nd.Called != "refund" {
			t.Fatalf("err = %v; want a nondeterminism error naming charge and refund", err)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Fatal("the other step's output leaked")
		}
		st := must(rt2.WorkflowStatus(ctx2, "wf-nd"))
		if st.Status != dbos.StatusError || !errors.Is(st.Err, dbos.ErrNondeterministic) {
			t.Fatalf("status %s, %v; want ERROR with the nondeterminism error", st.Status, st.Err)
		}
	})
}
