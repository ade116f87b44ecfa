package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
	"github.com/jmoiron/sqlx"
)

// Bad input through the public API: a clear error, no panic, nothing recorded
// touched. (Empty and oversized IDs are in TestWorkflowIDs, an unregistered
// name at recovery in TestRecoveryUnknownWorkflow.)

// scalar reads one value from the system database (see execSQL).
func scalar[T any](t testing.TB, rt *dbos.Runtime, query string, args ...any) T {
	t.Helper()
	if rt.AppDB().DriverName() == "pgx" {
		query = strings.ReplaceAll(query, "{dbos}", "dbos.")
	} else {
		query = strings.ReplaceAll(query, "{dbos}", "")
		query = rt.AppDB().Rebind(query)
	}
	var v T
	if err := rt.AppDB().Get(&v, query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v
}

func TestBadWorkflowIDText(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		var c counter
		in := setBody(t, func(ctx context.Context, in input) (string, error) { c.inc("body"); return "ok", nil })
		for _, id := range []string{"nul\x00byte", "bad\xffutf8", strings.Repeat("é", dbos.MaxWorkflowIDLength/2) + "x"} {
			_, err := testWF.Start(dbos.WithWorkflowID(ctx, id), in)
			if !errors.Is(err, dbos.ErrInvalidWorkflowID) {
				t.Errorf("ID %q: err = %v, want ErrInvalidWorkflowID", id, err)
			}
		}
		// The limit is inclusive, and a long ID round-trips.
		long := strings.Repeat("x", dbos.MaxWorkflowIDLength)
		if out := must(testWF.Run(dbos.WithWorkflowID(ctx, long), in)); out != "ok" {
			t.Fatalf("result %q", out)
		}
		if n := countRows(t, rt, "workflow_status"); n != 1 || c.get("body") != 1 {
			t.Fatalf("%d workflows recorded, body ran %d times; want only the valid one", n, c.get("body"))
		}
	})
}

// Garbage in recorded outputs, errors, inputs and statuses: every read of it
// is ErrCorruptRecord, and the garbage stays as it was for a human to fix.
func TestCorruptRecords(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		var c counter
		fail := errors.New("app failure")
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			c.inc("body")
			if in.N == 1 {
				return "", fail
			}
			return "fine", nil
		})
		rt, ctx := launch(t, url)
		must(testWF.Run(dbos.WithWorkflowID(ctx, "out"), in))
		must(testWF.Run(dbos.WithWorkflowID(ctx, "typed"), in))
		must(testWF.Run(dbos.WithWorkflowID(ctx, "status"), in))
		errIn := in
		errIn.N = 1
		if _, err := testWF.Run(dbos.WithWorkflowID(ctx, "err"), errIn); !errors.Is(err, fail) {
			t.Fatalf("err = %v", err)
		}
		execSQL(t, rt, "UPDATE {dbos}workflow_output SET output = '{not json' WHERE workflow_uuid = 'out'")
		execSQL(t, rt, "UPDATE {dbos}workflow_output SET output = '42' WHERE workflow_uuid = 'typed'") // JSON, wrong type
		execSQL(t, rt, "UPDATE {dbos}workflow_output SET error = '[garbage' WHERE workflow_uuid = 'err'")
		execSQL(t, rt, "UPDATE {dbos}workflow_status SET status = 'BOGUS' WHERE workflow_uuid = 'status'")

		for _, id := range []string{"out", "typed", "err", "status"} {
			in := in
			if id == "err" {
				in = errIn // the inputs it was started with: others are a conflict
			}
			if _, err := testWF.Run(dbos.WithWorkflowID(ctx, id), in); !errors.Is(err, dbos.ErrCorruptRecord) || !strings.Contains(err.Error(), id) {
				t.Errorf("Run %s: err = %v, want ErrCorruptRecord naming the workflow", id, err)
			}
			h, err := dbos.RetrieveWorkflow[string](ctx, id)
			if err != nil {
				t.Fatalf("RetrieveWorkflow %s: %v", id, err)
			}
			if _, err := h.Result(ctx); !errors.Is(err, dbos.ErrCorruptRecord) {
				t.Errorf("Result %s: err = %v, want ErrCorruptRecord", id, err)
			}
		}
		if st := must(rt.WorkflowStatus(ctx, "err")); !errors.Is(st.Err, dbos.ErrCorruptRecord) {
			t.Errorf("WorkflowStatus(err).Err = %v, want ErrCorruptRecord", st.Err)
		}
		if c.get("body") != 4 {
			t.Errorf("bodies ran %d times, want 4: a corrupt record must not run a finished workflow again", c.get("body"))
		}
		if s := scalar[string](t, rt, "SELECT output FROM {dbos}workflow_output WHERE workflow_uuid = 'out'"); s != "{not json" {
			t.Errorf("output rewritten to %q", s)
		}
		if s := scalar[string](t, rt, "SELECT status FROM {dbos}workflow_status WHERE workflow_uuid = 'status'"); s != "BOGUS" {
			t.Errorf("status rewritten to %q", s)
		}
	})
}

// A PENDING workflow with a corrupt step output or error: its next execution
// stops with ErrCorruptRecord, does not run the step again, records nothing,
// and leaves the workflow PENDING. One with corrupt inputs is not recovered
// and not touched.
func TestCorruptPendingWorkflow(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		var c counter
		in := setBody(t, blockUntilCancelled(&c))
		rt, ctx := launch(t, url)
		for _, id := range []string{"step-out", "step-err", "inputs"} {
			must(testWF.Start(dbos.WithWorkflowID(ctx, id), in))
		}
		waitFor(t, "the bodies to run", func() bool { return c.get("body") == 3 })
		shutdown(t, rt)

		// Corrupt them from another executor, so no recovery runs meanwhile.
		rt, ctx = launch(t, url, withExecutor("other"))
		execSQL(t, rt, "UPDATE {dbos}operation_outputs SET output = '{{{' WHERE workflow_uuid = 'step-out'")
		execSQL(t, rt, "UPDATE {dbos}operation_outputs SET output = NULL, error = 'nope' WHERE workflow_uuid = 'step-err'")
		execSQL(t, rt, "UPDATE {dbos}workflow_input SET inputs = '{\"key\": 7' WHERE workflow_uuid = 'inputs'")
		for _, id := range []string{"step-out", "step-err"} {
			_, err := testWF.Run(dbos.WithWorkflowID(ctx, id), in)
			if !errors.Is(err, dbos.ErrCorruptRecord) || !strings.Contains(err.Error(), "step 1") {
				t.Errorf("%s: err = %v, want ErrCorruptRecord naming step 1", id, err)
			}
			if st := must(rt.WorkflowStatus(ctx, id)); st.Status != dbos.StatusPending {
				t.Errorf("%s: status %s, want PENDING", id, st.Status)
			}
		}
		if c.get("first") != 3 {
			t.Errorf("the recorded step ran %d times, want 3 (once per workflow)", c.get("first"))
		}
		if n := scalar[int](t, rt, "SELECT count(*) FROM {dbos}operation_outputs WHERE output = '{{{' OR error = 'nope'"); n != 2 {
			t.Errorf("%d corrupt step rows left as they were, want 2", n)
		}
		attempts := func(rt *dbos.Runtime) int {
			return scalar[int](t, rt, "SELECT recovery_attempts FROM {dbos}workflow_status WHERE workflow_uuid = 'inputs'")
		}
		before := attempts(rt)
		shutdown(t, rt)
		rt, _ = launch(t, url) // exec-1: recovers step-out, step-err (failing again) and inputs
		var problem error
		for _, p := range rt.RecoveryProblems() {
			if strings.Contains(p.Error(), "inputs") {
				problem = p
			}
		}
		if !errors.Is(problem, dbos.ErrCorruptRecord) {
			t.Fatalf("recovery problems %v: want ErrCorruptRecord for workflow inputs", rt.RecoveryProblems())
		}
		if a := attempts(rt); a != before {
			t.Errorf("recovery attempts %d -> %d: a workflow that cannot be decoded was touched", before, a)
		}
	})
}

// A system schema written by a newer release: Launch refuses with
// ErrSchemaTooNew, telling to upgrade, and changes nothing.
// lockedBuffer collects log output written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestSchemaFromNewerRelease(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		var c counter
		in := setBody(t, blockUntilCancelled(&c))
		rt, ctx := launch(t, url, withExecutor("old"))
		must(testWF.Start(dbos.WithWorkflowID(ctx, "w"), in))
		waitFor(t, "the body", func() bool { return c.get("body") == 1 })
		version := scalar[int](t, rt, "SELECT max(version) FROM {dbos}dbos_migrations")
		execSQL(t, rt, "UPDATE {dbos}dbos_migrations SET version = version + 1")

		// DBOS migrations only add: a newer DBOS schema is used, and logged.
		var logs lockedBuffer
		rt2, err := dbos.Launch(context.Background(), dbos.Config{SystemDatabaseURL: url, ExecutorID: "new", ApplicationVersion: "v1",
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatalf("Launch on a newer DBOS schema: %v", err)
		}
		defer rt2.Shutdown(context.Background())
		if l := logs.String(); !strings.Contains(l, "newer DBOS release") || !strings.Contains(l, fmt.Sprint(version+1)) {
			t.Errorf("log does not report the newer schema version %d:\n%s", version+1, l)
		}
		if v := scalar[int](t, rt, "SELECT max(version) FROM {dbos}dbos_migrations"); v != version+1 {
			t.Errorf("schema version %d after Launch, want %d (never downgraded)", v, version+1)
		}
		st := must(rt.WorkflowStatus(ctx, "w"))
		if st.Status != dbos.StatusPending || st.RecoveryAttempts != 1 || c.get("first") != 1 {
			t.Errorf("workflow %s attempts %d, step ran %d times: the refused Launch touched it", st.Status, st.RecoveryAttempts, c.get("first"))
		}
	})
}

// Config.Schema names the system schema; names that need quoting work, and
// two schemas in one database are independent.
func TestSchemaNameQuoted(t *testing.T) {
	url := dbtest.Postgres(t)
	schemas := []string{`my "odd" schema`, `x"; DROP TABLE pg_class; --`}
	var rts []*dbos.Runtime
	var c counter
	in := setBody(t, func(ctx context.Context, in input) (string, error) {
		if _, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "step"}, func(ctx context.Context) (int, error) {
			return c.inc("step"), nil
		}); err != nil {
			return "", err
		}
		return dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "tx"}, func(ctx context.Context, tx *sqlx.Tx) (string, error) {
			var s string
			err := tx.GetContext(ctx, &s, "SELECT current_schema()")
			return s, err
		})
	})
	blk := input{Key: t.Name() + "/block"}
	bodies.Store(blk.Key, blockUntilCancelled(&counter{}))
	t.Cleanup(func() { bodies.Delete(blk.Key) })
	for _, s := range schemas {
		rt, ctx := launch(t, url, func(c *dbos.Config) { c.Schema = s })
		rts = append(rts, rt)
		must(testWF.Run(dbos.WithWorkflowID(ctx, "same-id"), in))
		must(testWF.Start(dbos.WithWorkflowID(ctx, "to-cancel"), blk))
		if err := rt.CancelWorkflow(ctx, "to-cancel"); err != nil {
			t.Fatalf("schema %q: cancel: %v", s, err)
		}
	}
	if c.get("step") != 2 {
		t.Fatalf("the step ran %d times; want once per schema (same workflow ID in two independent schemas)", c.get("step"))
	}
	db := rts[0].AppDB()
	for _, s := range schemas {
		var tables []string
		if err := db.Select(&tables, `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`, s); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(tables, ","); got != "application_versions,dbos_migrations,dbosgen_executors,dbosgen_sys_migrations,event_dispatch_kv,notifications,operation_outputs,queues,streams,"+
			"workflow_events,workflow_events_history,workflow_input,workflow_output,workflow_schedules,workflow_status" {
			t.Errorf("schema %q holds tables %q", s, got)
		}
		var n int
		if err := db.Get(&n, `SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'dbos'`); err != nil || n != 0 {
			t.Errorf("default schema dbos exists (%d, %v) though Config.Schema was set", n, err)
		}
	}
	// Relaunching on an existing odd schema recovers from it.
	shutdown(t, rts[0])
	rt, ctx := launch(t, url, func(c *dbos.Config) { c.Schema = schemas[0] })
	if st := must(rt.WorkflowStatus(ctx, "same-id")); st.Status != dbos.StatusSuccess {
		t.Fatalf("status %s", st.Status)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// No database password in errors or logs.
func TestNoPasswordInErrorsOrLogs(t *testing.T) {
	const secret = "Sup3rSecretPW"
	good := dbtest.Postgres(t)
	withPassword := strings.Replace(good, "postgres://postgres@", "postgres://postgres:"+secret+"@", 1)
	cases := []struct {
		name        string
		system, app string
		wantErr     bool
	}{
		{"refused URL", "postgres://alice:" + secret + "@127.0.0.1:1/db?sslmode=disable&connect_timeout=2", "", true},
		{"refused key=value", "host=127.0.0.1 port=1 user=alice password=" + secret + " dbname=db sslmode=disable connect_timeout=2", "", true},
		{"refused quoted key=value", "host=127.0.0.1 port=1 user=alice password='" + secret + " x' dbname=db sslmode=disable connect_timeout=2", "", true},
		{"refused query password", "postgres://alice@127.0.0.1:1/db?sslmode=disable&connect_timeout=2&password=" + secret, "", true},
		{"bad port", "postgres://alice:" + secret + "@127.0.0.1:notaport/db", "", true},
		// A missing database is created (and logged), unless the role may not.
		{"no such database", strings.Replace(missingDatabase(t, "pw"), "postgres://postgres@", "postgres://postgres:"+secret+"@", 1), "", false},
		{"no such database, not creatable", asRolePassword(t, missingDatabase(t, "pwnc"), testRoleWithPassword(t, "NOCREATEDB", secret), secret), "", true},
		{"application database refused", good, "postgres://alice:" + secret + "@127.0.0.1:1/app?sslmode=disable&connect_timeout=2", true},
		{"launched with a password", withPassword, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			cfg := dbos.Config{SystemDatabaseURL: tc.system, ApplicationDatabaseURL: tc.app, ExecutorID: "e", ApplicationVersion: "v1",
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			rt, err := dbos.Launch(context.Background(), cfg)
			if rt != nil {
				ctx := dbos.WithRuntime(context.Background(), rt)
				if _, err := testWF.Run(ctx, setBody(t, func(ctx context.Context, in input) (string, error) { return "ok", nil })); err != nil {
					t.Errorf("run: %v", err)
				}
				shutdown(t, rt)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("Launch: err = %v, want error: %v", err, tc.wantErr)
			}
			if err != nil {
				if !errors.Is(err, dbos.ErrDatabase) && !errors.Is(err, dbos.ErrConfig) {
					t.Errorf("err = %v: want ErrDatabase or ErrConfig", err)
				}
				for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
					if strings.Contains(s, secret) {
						t.Errorf("the error shows the password: %s", s)
					}
				}
			}
			if strings.Contains(logs.String(), secret) {
				t.Errorf("the logs show the password:\n%s", logs.String())
			}
			t.Logf("err: %v", err)
		})
	}
}
