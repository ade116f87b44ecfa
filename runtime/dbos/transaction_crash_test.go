package dbos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	"github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/jmoiron/sqlx"
)

// The crash tests run the workflow in a child process — this test binary,
// re-executed with txChildEnv describing the scenario — and kill it with
// SIGKILL at a chosen point, then recover the workflow in this process.

const txChildEnv = "DBOSGEN_TX_CHILD"

type txChildSpec struct {
	Scenario   string // "greet" or "window"
	SysURL     string
	AppURL     string // "" for the system database
	Dir        string // where the child and the parent signal each other with files
	WorkflowID string
}

// Bodies of the crash scenarios, registered under fixed keys in both
// processes.
const (
	greetKey  = "tx-crash/greet"
	windowKey = "tx-crash/window"
)

const windowOutput = "recorded in the application database"

// windowBody inserts one greeting in one transaction; hook runs inside it,
// after the insert.
func windowBody(hook func(context.Context) error) body {
	return func(ctx context.Context, in input) (string, error) {
		out, err := dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "window_insert"}, func(ctx context.Context, tx *sqlx.Tx) (string, error) {
			txRuns.inc("window")
			if _, err := tx.NamedExecContext(ctx, `INSERT INTO greetings (name, note) VALUES (:name, :note)`, greeting{"gina", "hello"}); err != nil {
				return "", err
			}
			if hook != nil {
				if err := hook(ctx); err != nil {
					return "", err
				}
			}
			return windowOutput, nil
		})
		if err != nil {
			return "", err
		}
		return out + "; done", nil
	}
}

func withAppDB(url string) func(*dbos.Config) {
	return func(c *dbos.Config) { c.ApplicationDatabaseURL = url }
}

func txTouch(path string) error { return os.WriteFile(path, nil, 0o644) }

func txFileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestTransactionChildProcess is the child of the crash tests; it does
// nothing in a normal run.
func TestTransactionChildProcess(t *testing.T) {
	raw := os.Getenv(txChildEnv)
	if raw == "" {
		t.Skip("helper process of the transaction crash tests")
	}
	var spec txChildSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	key := greetKey
	switch spec.Scenario {
	case "greet":
		// Stop inside bob's insert transaction, with the row written but not
		// committed.
		bodies.Store(key, greetBody(func(ctx context.Context) error {
			if err := txTouch(filepath.Join(spec.Dir, "paused")); err != nil {
				return err
			}
			<-ctx.Done()
			return ctx.Err()
		}))
	case "window":
		key = windowKey
		// Wait inside the transaction until the parent has locked the
		// system database's checkpoints, then commit: the application
		// commit lands, the system checkpoint cannot.
		bodies.Store(key, windowBody(func(ctx context.Context) error {
			if err := txTouch(filepath.Join(spec.Dir, "in-tx")); err != nil {
				return err
			}
			for !txFileExists(filepath.Join(spec.Dir, "go")) {
				time.Sleep(5 * time.Millisecond)
			}
			return nil
		}))
	default:
		t.Fatalf("unknown scenario %q", spec.Scenario)
	}
	rt, ctx := launch(t, spec.SysURL, withAppDB(spec.AppURL))
	appExec(t, rt.AppDB(), greetingsDDL)
	if _, err := testWF.Start(dbos.WithWorkflowID(ctx, spec.WorkflowID), input{Key: key}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Minute)
	t.Fatal("the child was not killed")
}

type txChild struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
}

func startTxChild(t *testing.T, spec txChildSpec) *txChild {
	t.Helper()
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	c := &txChild{done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestTransactionChildProcess$", "-test.v", "-test.count=1")
	c.cmd.Env = append(os.Environ(), txChildEnv+"="+string(raw))
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.done
	})
	return c
}

// waitFile waits for the child to create path.
func (c *txChild) waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !txFileExists(path) {
		select {
		case <-c.done:
			t.Fatalf("the child exited before creating %s:\n%s", filepath.Base(path), c.out.String())
		case <-deadline:
			_ = c.cmd.Process.Kill()
			<-c.done
			t.Fatalf("timed out waiting for the child to create %s:\n%s", filepath.Base(path), c.out.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (c *txChild) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.done
	if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the child was not killed by SIGKILL (%v):\n%s", c.cmd.ProcessState, c.out.String())
	}
}

// openDB opens a database by URL, beside the runtime, for inspection.
func openByURL(t testing.TB, url string) *sqlx.DB {
	t.Helper()
	var db *sqlx.DB
	var err error
	if path, ok := strings.CutPrefix(url, "sqlite://"); ok {
		db, err = sqlx.Open("sqlite", "file:"+path+"?_busy_timeout=30000")
	} else {
		db, err = sqlx.Open("pgx", url)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// dbosTable names a dbosgen table on db's engine.
func txTable(db *sqlx.DB, table string) string {
	if db.DriverName() == "pgx" {
		return "dbos." + table
	}
	return table
}

// TestTransactionGreetingsSIGKILL: the greetings workflow's process is
// killed with SIGKILL inside its second transaction (alice committed and
// recorded, bob written but not committed). Recovery does not run alice's
// insert again, runs bob's once: exactly one row each.
func TestTransactionGreetingsSIGKILL(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		dir := t.TempDir()
		c := startTxChild(t, txChildSpec{Scenario: "greet", SysURL: url, Dir: dir, WorkflowID: "greet-kill"})
		c.waitFile(t, filepath.Join(dir, "paused"))
		c.kill(t)

		bodies.Store(greetKey, greetBody(nil))
		defer bodies.Delete(greetKey)
		alice, bob := txRuns.get("insert alice"), txRuns.get("insert bob")
		rt, ctx := launch(t, url) // recovers greet-kill
		out, err := must(dbos.RetrieveWorkflow[string](ctx, "greet-kill")).Result(ctx)
		if err != nil || out != "hello/hi" {
			t.Fatalf("recovered workflow: %q, %v; want hello/hi", out, err)
		}
		if a, b := txRuns.get("insert alice")-alice, txRuns.get("insert bob")-bob; a != 0 || b != 1 {
			t.Fatalf("after recovery alice's insert ran %d times, bob's %d; want 0 and 1", a, b)
		}
		var rows []greeting
		if err := rt.AppDB().Select(&rows, `SELECT name, note FROM greetings ORDER BY name`); err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 || rows[0] != (greeting{"alice", "hello"}) || rows[1] != (greeting{"bob", "hi"}) {
			t.Fatalf("greetings = %v; want exactly one alice and one bob", rows)
		}
		if n := countRows(t, rt, "operation_outputs"); n != 4 {
			t.Fatalf("%d checkpoints; want 4", n)
		}
	})
}

// lockCheckpoints stops every write to the system database's
// operation_outputs until the returned function is called.
func txLockCheckpoints(t *testing.T, sysURL string) (unlock func()) {
	t.Helper()
	db := openByURL(t, sysURL)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stmts := []string{"BEGIN", "LOCK TABLE dbos.operation_outputs IN SHARE MODE"}
	if db.DriverName() != "pgx" {
		stmts = []string{"BEGIN IMMEDIATE"} // the whole file's write lock
	}
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	return func() {
		if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Errorf("unlocking: %v", err)
		}
		conn.Close()
	}
}

// TestTransactionCrashBetweenCommits: with a separate application database,
// the process is killed after the transaction committed in the application
// database (with its transaction_outputs record) and before the system
// checkpoint. On recovery the application record is authoritative: the
// function does not run again, the greeting exists once, the workflow
// completes with the recorded output, and the system checkpoint is
// back-filled.
func TestTransactionCrashBetweenCommits(t *testing.T) {
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			defer fatalOnMust(t)
			sysURL, appURL := dbtest.URL(t, engine), dbtest.URL(t, engine)
			dir := t.TempDir()
			c := startTxChild(t, txChildSpec{Scenario: "window", SysURL: sysURL, AppURL: appURL, Dir: dir, WorkflowID: "window-1"})
			c.waitFile(t, filepath.Join(dir, "in-tx"))
			unlock := txLockCheckpoints(t, sysURL)
			if err := txTouch(filepath.Join(dir, "go")); err != nil {
				t.Fatal(err)
			}
			app, sys := openByURL(t, appURL), openByURL(t, sysURL)
			waitFor(t, "the application commit", func() bool {
				var n int
				err := app.Get(&n, `SELECT count(*) FROM `+txTable(app, "dbosgen_transaction_outputs"))
				return err == nil && n == 1
			})
			time.Sleep(50 * time.Millisecond) // the child is now waiting to checkpoint
			c.kill(t)
			unlock()
			if n := appCount(t, sys, `SELECT count(*) FROM `+txTable(sys, "operation_outputs")); n != 0 {
				t.Fatalf("%d system checkpoints: the kill missed the window between the two commits", n)
			}
			if n := appCount(t, app, `SELECT count(*) FROM greetings`); n != 1 {
				t.Fatalf("%d greetings after the crash", n)
			}

			bodies.Store(windowKey, windowBody(nil))
			defer bodies.Delete(windowKey)
			runs := txRuns.get("window")
			rt, ctx := launch(t, sysURL, withAppDB(appURL)) // recovers window-1
			out, err := must(dbos.RetrieveWorkflow[string](ctx, "window-1")).Result(ctx)
			if err != nil || out != windowOutput+"; done" {
				t.Fatalf("recovered workflow: %q, %v", out, err)
			}
			if n := txRuns.get("window") - runs; n != 0 {
				t.Fatalf("the committed transaction ran %d more times", n)
			}
			if n := appCount(t, rt.AppDB(), `SELECT count(*) FROM greetings`); n != 1 {
				t.Fatalf("%d greetings; want 1", n)
			}
			var rec struct {
				Name   string `db:"function_name"`
				Output string `db:"output"`
			}
			if err := sys.Get(&rec, `SELECT function_name, output FROM `+txTable(sys, "operation_outputs")+
				` WHERE workflow_uuid = 'window-1' AND function_id = 1`); err != nil {
				t.Fatalf("the system checkpoint was not back-filled: %v", err)
			}
			if want, _ := json.Marshal(windowOutput); rec.Name != "window_insert" || rec.Output != string(want) {
				t.Fatalf("back-filled checkpoint %+v", rec)
			}
		})
	}
}

// TestTransactionSeparateDatabase: transactions on an application database
// other than the system database (PostgreSQL beside PostgreSQL, SQLite beside
// SQLite): the user's writes and the transaction_outputs record commit
// together there, the checkpoint follows in the system database, errors and
// read-only results are checkpointed in the system database only, and a lost
// checkpoint is back-filled from the application record on replay.
func TestTransactionSeparateDatabase(t *testing.T) {
	errRefused := errors.New("refused")
	dbos.RegisterError(errRefused)
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			defer fatalOnMust(t)
			sysURL, appURL := dbtest.URL(t, engine), dbtest.URL(t, engine)
			rt, ctx := launch(t, sysURL, withAppDB(appURL))
			appExec(t, rt.AppDB(), greetingsDDL)
			sys := openByURL(t, sysURL)
			var c counter
			in := setBody(t, func(ctx context.Context, in input) (string, error) {
				if err := exampleInsert(ctx, "hal", "hello"); err != nil {
					return "", err
				}
				_, err := dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "refuse"}, func(ctx context.Context, tx *sqlx.Tx) (int, error) {
					c.inc("refuse")
					_, err := tx.ExecContext(ctx, `INSERT INTO greetings (name, note) VALUES ('hal', 'again')`)
					return 0, errors.Join(err, errRefused)
				})
				if !errors.Is(err, errRefused) {
					return "", errors.New("the refusal was lost")
				}
				return dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "read", ReadOnly: true}, func(ctx context.Context, tx *sqlx.Tx) (string, error) {
					c.inc("read")
					var note string
					err := tx.GetContext(ctx, &note, `SELECT note FROM greetings WHERE name = 'hal'`)
					return note, err
				})
			})
			if out := must(testWF.Run(dbos.WithWorkflowID(ctx, "sep-1"), in)); out != "hello" {
				t.Fatalf("out = %q", out)
			}
			if n := appCount(t, rt.AppDB(), `SELECT count(*) FROM greetings`); n != 1 {
				t.Fatalf("%d greetings; want 1", n)
			}
			if n := appCount(t, rt.AppDB(), `SELECT count(*) FROM `+txTable(rt.AppDB(), "dbosgen_transaction_outputs")); n != 1 {
				t.Fatalf("%d application records; want 1 (only the committed write)", n)
			}
			if n := appCount(t, sys, `SELECT count(*) FROM `+txTable(sys, "operation_outputs")); n != 3 {
				t.Fatalf("%d system checkpoints; want 3", n)
			}
			var tables int
			if sys.DriverName() == "pgx" {
				tables = appCount(t, sys, `SELECT count(*) FROM information_schema.tables WHERE table_name = 'greetings'`)
			} else {
				tables = appCount(t, sys, `SELECT count(*) FROM sqlite_master WHERE name = 'greetings'`)
			}
			if tables != 0 {
				t.Fatal("the greetings table is in the system database: AppDB is not the application database")
			}

			// Lose the system checkpoints, as a crash between the commits
			// would, and run the workflow again: the write is back-filled
			// from the application record, the others run again (they had no
			// effects), the greeting stays single.
			appExec(t, sys, `DELETE FROM `+txTable(sys, "operation_outputs"))
			appExec(t, sys, `UPDATE `+txTable(sys, "workflow_status")+` SET status = 'PENDING', output = NULL`)
			runs := txRuns.get("insert hal")
			if out := must(testWF.Run(dbos.WithWorkflowID(ctx, "sep-1"), in)); out != "hello" {
				t.Fatalf("replay: out = %q", out)
			}
			if txRuns.get("insert hal") != runs || c.get("refuse") != 2 || c.get("read") != 2 {
				t.Fatalf("replay ran insert %d, refuse %d, read %d times", txRuns.get("insert hal")-runs, c.get("refuse"), c.get("read"))
			}
			if n := appCount(t, rt.AppDB(), `SELECT count(*) FROM greetings`); n != 1 {
				t.Fatalf("%d greetings after replay; want 1", n)
			}
			if n := appCount(t, sys, `SELECT count(*) FROM `+txTable(sys, "operation_outputs")); n != 3 {
				t.Fatalf("%d system checkpoints after replay; want 3", n)
			}
		})
	}
}
