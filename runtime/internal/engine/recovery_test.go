package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
	"github.com/jmoiron/sqlx"
)

// blockUntilCancelled is a body whose workflow stays PENDING until its
// runtime shuts down, after recording one step.
func blockUntilCancelled(c *counter) body {
	return func(ctx context.Context, in input) (string, error) {
		if _, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "first"}, func(ctx context.Context) (int, error) {
			return c.inc("first"), nil
		}); err != nil {
			return "", err
		}
		id, _ := dbos.WorkflowID(ctx)
		c.inc("body")
		if in.N > 0 && c.inc(id) > in.N {
			return "finished", nil
		}
		<-ctx.Done()
		return "", ctx.Err()
	}
}

// Item 17: Launch recovers this executor's PENDING workflows of the current
// version from their last completed step; recovery attempts are counted;
// past max_recovery_attempts the workflow is parked with an error.
func TestRecoveryAttemptsAndDeadLetter(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		var c counter
		in := setBody(t, blockUntilCancelled(&c))
		rt, ctx := launch(t, url)
		must(fragileWF.Start(dbos.WithWorkflowID(ctx, "fragile"), in))
		waitFor(t, "the body to run", func() bool { return c.get("body") == 1 })
		shutdown(t, rt)

		// max_recovery_attempts=2: two recoveries run the body again...
		for i := 2; i <= 3; i++ {
			rt, ctx = launch(t, url)
			waitFor(t, "recovery to run the body", func() bool { return c.get("body") == i })
			st := must(rt.WorkflowStatus(ctx, "fragile"))
			if st.Status != dbos.StatusPending || st.RecoveryAttempts != i {
				t.Fatalf("after recovery %d: status %s, attempts %d", i-1, st.Status, st.RecoveryAttempts)
			}
			shutdown(t, rt)
		}
		// ...the third parks it.
		rt, ctx = launch(t, url)
		st := must(rt.WorkflowStatus(ctx, "fragile"))
		if st.Status != dbos.StatusMaxRecoveryAttemptsExceeded || !errors.Is(st.Err, dbos.ErrMaxRecoveryAttemptsExceeded) {
			t.Fatalf("status %s, err %v; want MAX_RECOVERY_ATTEMPTS_EXCEEDED", st.Status, st.Err)
		}
		if c.get("body") != 3 || c.get("first") != 1 {
			t.Fatalf("body ran %d times, first step %d; want 3 and 1", c.get("body"), c.get("first"))
		}
		if _, err := fragileWF.Run(dbos.WithWorkflowID(ctx, "fragile"), in); !errors.Is(err, dbos.ErrMaxRecoveryAttemptsExceeded) {
			t.Fatalf("calling a parked workflow: err = %v", err)
		}
	})
}

// Item 17 and 18: only workflows of this executor and application version
// are recovered; the version defaults to the generated hash and can be set
// by config or environment.
func TestRecoveryScope(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		var c counter
		in := setBody(t, blockUntilCancelled(&c))
		in.N = 1 // a recovered execution finishes
		for _, v := range []struct{ exec, version, id string }{
			{"exec-1", "v1", "mine"}, {"exec-2", "v1", "other-executor"}, {"exec-1", "v0", "old-version"},
		} {
			rt, ctx := launch(t, url, withExecutor(v.exec), func(c *dbos.Config) { c.ApplicationVersion = v.version })
			before := c.get("body")
			must(testWF.Start(dbos.WithWorkflowID(ctx, v.id), in))
			waitFor(t, "the body to run", func() bool { return c.get("body") == before+1 })
			if v.exec != "exec-2" {
				// exec-2 stays live: a shut-down executor's workflows of
				// this version would be adopted (see lease_test.go).
				shutdown(t, rt)
			}
		}
		rt, ctx := launch(t, url) // exec-1, v1
		out := must(must(dbos.RetrieveWorkflow[string](ctx, "mine")).Result(ctx))
		if out != "finished" {
			t.Fatalf("recovered result %q", out)
		}
		for _, id := range []string{"other-executor", "old-version"} {
			if st := must(rt.WorkflowStatus(ctx, id)); st.Status != dbos.StatusPending || st.RecoveryAttempts != 1 {
				t.Fatalf("%s: status %s, attempts %d; another executor's or version's workflow was touched", id, st.Status, st.RecoveryAttempts)
			}
		}
	})
}

func TestApplicationVersion(t *testing.T) {
	url := "sqlite://" + t.TempDir() + "/v.sqlite"
	rt, _ := launch(t, url, func(c *dbos.Config) { c.ApplicationVersion = "" })
	generated := rt.ApplicationVersion()
	if len(generated) != 16 {
		t.Fatalf("generated version %q: want a 16-hex-digit hash of the registered packages", generated)
	}
	shutdown(t, rt)
	t.Setenv(dbos.EnvAppVersion, "from-env")
	rt, _ = launch(t, url, func(c *dbos.Config) { c.ApplicationVersion = "" })
	if v := rt.ApplicationVersion(); v != "from-env" {
		t.Fatalf("env override: version %q", v)
	}
	shutdown(t, rt)
	rt, _ = launch(t, url, func(c *dbos.Config) { c.ApplicationVersion = "from-config" })
	if v := rt.ApplicationVersion(); v != "from-config" {
		t.Fatalf("config override: version %q", v)
	}
}

// A PENDING workflow whose name this binary does not register is reported
// and left untouched.
func TestRecoveryUnknownWorkflow(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		var c counter
		in := setBody(t, blockUntilCancelled(&c))
		rt, ctx := launch(t, url)
		must(testWF.Start(dbos.WithWorkflowID(ctx, "renamed"), in))
		waitFor(t, "the body to run", func() bool { return c.get("body") == 1 })
		shutdown(t, rt)

		// Rename it to a workflow nothing registers (from another executor,
		// so no recovery runs meanwhile), then launch its executor.
		rt, _ = launch(t, url, withExecutor("someone-else"))
		execSQL(t, rt, "UPDATE {dbos}workflow_status SET name = 'gone.Workflow' WHERE workflow_uuid = 'renamed'")
		shutdown(t, rt)

		rt, ctx = launch(t, url)
		problems := rt.RecoveryProblems()
		if len(problems) != 1 || !errors.Is(problems[0], dbos.ErrUnknownWorkflow) || !strings.Contains(problems[0].Error(), "gone.Workflow") {
			t.Fatalf("recovery problems %v; want one ErrUnknownWorkflow naming gone.Workflow", problems)
		}
		st := must(rt.WorkflowStatus(ctx, "renamed"))
		if st.Status != dbos.StatusPending || st.RecoveryAttempts != 1 {
			t.Fatalf("status %s attempts %d: the unknown workflow was touched", st.Status, st.RecoveryAttempts)
		}
	})
}

// Config.Setup runs before recovery resumes anything, so a recovered
// workflow finds the application's tables; its error fails Launch.
func TestSetupRunsBeforeRecovery(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		var c counter
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			if c.inc("body") == 1 {
				<-ctx.Done()
				return "", ctx.Err()
			}
			return fmt.Sprintf("setup had run %d time(s)", c.get("setup")), nil
		})
		rt, ctx := launch(t, url)
		must(testWF.Start(dbos.WithWorkflowID(ctx, "needs-tables"), in))
		waitFor(t, "the body to run", func() bool { return c.get("body") == 1 })
		shutdown(t, rt)

		_, err := dbos.Launch(context.Background(), dbos.Config{SystemDatabaseURL: url, ExecutorID: "exec-1", ApplicationVersion: "v1",
			Logger: testLogger(t), Setup: func(ctx context.Context, db *sqlx.DB) error { return errors.New("no permission") }})
		if err == nil || !strings.Contains(err.Error(), "Config.Setup: no permission") {
			t.Fatalf("Launch with a failing Setup: err = %v", err)
		}
		if c.get("body") != 1 {
			t.Fatal("a workflow was recovered although Setup failed")
		}
		_, ctx = launch(t, url, func(cfg *dbos.Config) {
			cfg.Setup = func(ctx context.Context, db *sqlx.DB) error {
				_, err := db.ExecContext(ctx, "CREATE TABLE app_table (id INTEGER)")
				c.inc("setup")
				return err
			}
		})
		out := must(must(dbos.RetrieveWorkflow[string](ctx, "needs-tables")).Result(ctx))
		if out != "setup had run 1 time(s)" {
			t.Fatalf("recovered workflow saw %q", out)
		}
	})
}
