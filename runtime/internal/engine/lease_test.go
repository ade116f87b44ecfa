package engine_test

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// In-process executor leases, on both engines; lease_process_test.go has
// the process tests.

func withLease(d time.Duration) func(*dbos.Config) {
	return func(c *dbos.Config) { c.ExecutorLease = d }
}

// A configured executor ID held by a live runtime is refused with
// ErrExecutorInUse; once that runtime shuts down it is free at once.
func TestLeaseExecutorIDInUse(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, _ := launch(t, url, withExecutor("busy"))
		_, err := dbos.Launch(context.Background(), dbos.Config{AppName: "test", SystemDatabaseURL: url, ExecutorID: "busy",
			ApplicationVersion: "v1", Logger: testLogger(t)})
		if !errors.Is(err, dbos.ErrExecutorInUse) {
			t.Fatalf("second Launch as busy: err = %v, want ErrExecutorInUse", err)
		}
		shutdown(t, rt)
		if rt2, _ := launch(t, url, withExecutor("busy")); rt2.ExecutorID() != "busy" {
			t.Fatalf("relaunch: executor %s", rt2.ExecutorID())
		}
	})
}

// With no executor ID configured, runtimes take the host name, then
// host-2, …; a restart takes the host name back.
func TestLeaseDefaultExecutorID(t *testing.T) {
	t.Setenv(dbos.EnvExecutorID, "")
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "local"
	}
	forEachEngine(t, func(t *testing.T, url string) {
		def := withExecutor("")
		rt1, _ := launch(t, url, def)
		rt2, _ := launch(t, url, def)
		if rt1.ExecutorID() != host || rt2.ExecutorID() != host+"-2" {
			t.Fatalf("default executor IDs %q and %q; want %q and %q", rt1.ExecutorID(), rt2.ExecutorID(), host, host+"-2")
		}
		shutdown(t, rt1)
		if rt3, _ := launch(t, url, def); rt3.ExecutorID() != host {
			t.Fatalf("after a restart: executor %q, want %q", rt3.ExecutorID(), host)
		}
	})
}

// A shut-down executor's interrupted workflows are adopted by a live
// executor of the same version and finish from their checkpoint; another
// version's are left alone.
func TestLeaseShutdownExecutorAdopted(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		var c counter
		var finish atomic.Bool
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			if _, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "first"}, func(ctx context.Context) (int, error) {
				return c.inc("first"), nil
			}); err != nil {
				return "", err
			}
			c.inc("body")
			if finish.Load() {
				return "finished", nil
			}
			<-ctx.Done()
			return "", ctx.Err()
		})
		lease := withLease(600 * time.Millisecond)
		old, octx := launch(t, url, withExecutor("old"), lease, func(c *dbos.Config) { c.ApplicationVersion = "v0" })
		must(testWF.Start(dbos.WithWorkflowID(octx, "old-version"), in))
		waitFor(t, "the old body", func() bool { return c.get("body") == 1 })
		shutdown(t, old)
		leaver, lctx := launch(t, url, withExecutor("leaver"), lease)
		must(testWF.Start(dbos.WithWorkflowID(lctx, "left"), in))
		waitFor(t, "the body", func() bool { return c.get("body") == 2 })
		stayer, sctx := launch(t, url, withExecutor("stayer"), lease)
		finish.Store(true)
		shutdown(t, leaver)
		out := must(must(dbos.RetrieveWorkflow[string](sctx, "left")).Result(sctx))
		st := must(stayer.WorkflowStatus(sctx, "left"))
		if out != "finished" || st.ExecutorID != "stayer" || c.get("first") != 2 {
			t.Fatalf("adopted workflow: %q by %s, first step ran %d times (want finished, stayer, 2: once per workflow)", out, st.ExecutorID, c.get("first"))
		}
		if st := must(stayer.WorkflowStatus(sctx, "old-version")); st.Status != dbos.StatusPending || st.ExecutorID != "old" {
			t.Fatalf("another version's workflow: %s by %s; want PENDING by old", st.Status, st.ExecutorID)
		}
	})
}

// A runtime whose lease ran out stops its workflow at the next step (the
// step does not run, nothing is recorded), refuses new workflows, and once
// it holds its lease again resumes the workflow from its checkpoint.
func TestLeaseFencedRuntimeStopsAndResumes(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		var c counter
		release := make(chan struct{})
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			for _, name := range []string{"first", "second"} {
				if _, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: name}, func(ctx context.Context) (int, error) {
					return c.inc(name), nil
				}); err != nil {
					return "", err
				}
				if name == "first" {
					<-release
				}
			}
			return "finished", nil
		})
		rt, ctx := launch(t, url, withLease(600*time.Millisecond))
		h := must(testWF.Start(dbos.WithWorkflowID(ctx, "fenced"), in))
		waitFor(t, "the first step", func() bool { return c.get("first") == 1 })
		dbos.ExpireLease(rt)
		if _, err := testWF.Start(dbos.WithWorkflowID(ctx, "new"), in); !errors.Is(err, dbos.ErrLeaseLost) {
			t.Fatalf("starting a workflow while fenced: err = %v, want ErrLeaseLost", err)
		}
		close(release)
		if _, err := h.Result(ctx); !errors.Is(err, dbos.ErrLeaseLost) {
			t.Fatalf("fenced workflow: err = %v, want ErrLeaseLost", err)
		}
		if c.get("second") != 0 {
			t.Fatal("the fenced workflow ran its next step")
		}
		waitFor(t, "the resumed workflow", func() bool {
			st, err := rt.WorkflowStatus(ctx, "fenced")
			return err == nil && st.Status == dbos.StatusSuccess
		})
		if c.get("first") != 1 || c.get("second") != 1 {
			t.Fatalf("steps ran first=%d second=%d, want once each", c.get("first"), c.get("second"))
		}
	})
}

// The lease's steady cost: an idle executor sends, per third of its lease,
// one renewal and one adoption poll, and nothing else.
func TestLeaseRenewalCost(t *testing.T) {
	url := dbtest.URL(t, "postgres")
	const lease = 600 * time.Millisecond
	_, _, tr := launchTraced(t, url, withLease(lease))
	tr.start()
	const window = 2 * time.Second
	time.Sleep(window)
	tr.mu.Lock()
	sent := tr.sent
	tr.on = false
	tr.mu.Unlock()
	n := map[string]int{}
	for _, s := range sent {
		switch {
		case s.kind == "cancel-poll" || s.kind == "listen" || s.kind == "queue-poll":
		case s.kind == "lease" && s.key == "exec-1":
			n["renew"]++
		case s.kind == "lease" && s.key == "test":
			n["adoption-poll"]++
		case s.kind == "lease" && s.key == "v1":
			// Once, at launch: other versions' stranded workflows.
		default:
			t.Errorf("unexpected statement %s", s)
		}
	}
	ticks := int(window / (lease / 3))
	// A loaded machine delays ticks (a ticker drops what it cannot
	// deliver), never adds any; the last poll may trail the window.
	if n["renew"] < 1 || n["renew"] > ticks+1 || n["adoption-poll"] > n["renew"] || n["adoption-poll"] < n["renew"]-1 {
		t.Fatalf("in %v: %v; want about %d renewals and as many polls", window, n, ticks)
	}
	perSec := float64(n["renew"]+n["adoption-poll"]) / window.Seconds()
	t.Logf("lease %v: %d renewals + %d adoption polls in %v = %.1f statements/s; at the default 15s lease: %.2f statements/s",
		lease, n["renew"], n["adoption-poll"], window, perSec, 2/(15.0/3))
}

// Workflows left PENDING under the former default executor ID "local" (no
// lease row: a release before leases) are resumed by the next process
// launched with a default executor ID.
func TestLeaseLegacyDefaultExecutorAdopted(t *testing.T) {
	t.Setenv(dbos.EnvExecutorID, "")
	forEachEngine(t, func(t *testing.T, url string) {
		var c counter
		in := setBody(t, blockUntilCancelled(&c))
		in.N = 1 // a recovered execution finishes
		old, octx := launch(t, url, withExecutor("local"))
		must(testWF.Start(dbos.WithWorkflowID(octx, "legacy"), in))
		waitFor(t, "the body", func() bool { return c.get("body") == 1 })
		shutdown(t, old)
		// What a release before leases left: no lease row for "local".
		inspector, _ := launch(t, url, withExecutor("inspector"), func(c *dbos.Config) { c.ApplicationVersion = "other" })
		execSQL(t, inspector, "DELETE FROM {dbos}dbosgen_executors WHERE executor_id = 'local'")
		rt, ctx := launch(t, url, withExecutor(""))
		wait, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		out := must(must(dbos.RetrieveWorkflow[string](ctx, "legacy")).Result(wait))
		if st := must(rt.WorkflowStatus(ctx, "legacy")); out != "finished" || st.ExecutorID != rt.ExecutorID() {
			t.Fatalf("legacy workflow: %q by %s; want finished by %s", out, st.ExecutorID, rt.ExecutorID())
		}
	})
}

// A new call with the ID of a workflow that another live executor is
// running does not run it a second time: it waits for that executor's
// outcome. (A call with the ID of a dead executor's workflow takes it over,
// as before leases.)
func TestStartOfAnotherExecutorsWorkflowWaits(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		var c counter
		release := make(chan struct{})
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			c.inc("body")
			<-release
			return "ran once", nil
		})
		_, ctxA := launch(t, url, withExecutor("exec-a"))
		_, ctxB := launch(t, url, withExecutor("exec-b"))
		ha := must(testWF.Start(dbos.WithWorkflowID(ctxA, "shared"), in))
		waitFor(t, "the body on exec-a", func() bool { return c.get("body") == 1 })
		hb := must(testWF.Start(dbos.WithWorkflowID(ctxB, "shared"), in))
		time.Sleep(300 * time.Millisecond)
		if n := c.get("body"); n != 1 {
			t.Fatalf("the body ran %d times; a second live executor must not run it", n)
		}
		st := must(hb.Status(ctxB))
		if st.ExecutorID != "exec-a" || st.RecoveryAttempts != 1 {
			t.Errorf("after exec-b's call: executor %q, attempts %d; want exec-a's row untouched", st.ExecutorID, st.RecoveryAttempts)
		}
		close(release)
		if got := must(hb.Result(ctxB)); got != "ran once" {
			t.Fatalf("exec-b's result %q", got)
		}
		if got := must(ha.Result(ctxA)); got != "ran once" || c.get("body") != 1 {
			t.Fatalf("exec-a's result %q, body ran %d times", got, c.get("body"))
		}
	})
}
