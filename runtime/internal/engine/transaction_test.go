package engine_test

import (
	"context"
	"database/sql"
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

// The seed's greetings example, in Go: what generated exampleInsertTx and
// exampleSelectTx wrappers do. The function gets a *sqlx.Tx and uses
// NamedExec, raw SQL with Rebind, and Get.

type greeting struct {
	Name string `db:"name"`
	Note string `db:"note"`
}

const greetingsDDL = `CREATE TABLE IF NOT EXISTS greetings (name TEXT NOT NULL, note TEXT NOT NULL)`

// txRuns counts how often each transaction function body ran, in this
// process.
var txRuns counter

// exampleInsert inserts through sqlx's named parameters (the seed's query
// builder flavour).
func exampleInsert(ctx context.Context, name, note string) error {
	_, err := dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "example_insert"}, func(ctx context.Context, tx *sqlx.Tx) (struct{}, error) {
		txRuns.inc("insert " + name)
		_, err := tx.NamedExecContext(ctx, `INSERT INTO greetings (name, note) VALUES (:name, :note)`, greeting{name, note})
		return struct{}{}, err
	})
	return err
}

// exampleInsertRaw is the seed's raw SQL flavour; pause, when set, runs
// after the insert, inside the transaction.
func exampleInsertRaw(ctx context.Context, name, note string, pause func(context.Context) error) error {
	_, err := dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "example_insert_raw"}, func(ctx context.Context, tx *sqlx.Tx) (struct{}, error) {
		txRuns.inc("insert " + name)
		if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO greetings (name, note) VALUES (?, ?)`), name, note); err != nil {
			return struct{}{}, err
		}
		if pause != nil {
			return struct{}{}, pause(ctx)
		}
		return struct{}{}, nil
	})
	return err
}

// exampleSelect returns the first note to name, "" if there is none.
func exampleSelect(ctx context.Context, name string) (string, error) {
	return dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "example_select"}, func(ctx context.Context, tx *sqlx.Tx) (string, error) {
		txRuns.inc("select " + name)
		var note string
		err := tx.GetContext(ctx, &note, tx.Rebind(`SELECT note FROM greetings WHERE name = ? LIMIT 1`), name)
		if errors.Is(err, sql.ErrNoRows) {
			return "", nil
		}
		return note, err
	})
}

// greetBody is the greetings workflow: two inserts, two selects. pause runs
// inside the second insert's transaction, after its write.
func greetBody(pause func(context.Context) error) body {
	return func(ctx context.Context, in input) (string, error) {
		if err := exampleInsert(ctx, "alice", "hello"); err != nil {
			return "", err
		}
		if err := exampleInsertRaw(ctx, "bob", "hi", pause); err != nil {
			return "", err
		}
		a, err := exampleSelect(ctx, "alice")
		if err != nil {
			return "", err
		}
		b, err := exampleSelect(ctx, "bob")
		return a + "/" + b, err
	}
}

// appExec runs a statement on the application database, rebinding ?.
func appExec(t testing.TB, db *sqlx.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.Exec(db.Rebind(query), args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// appCount runs a count query on db.
func appCount(t testing.TB, db *sqlx.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Get(&n, db.Rebind(query), args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestTransactionGreetings: the seed's example, replayed after an
// interrupted run: every greeting exists exactly once, the recorded
// transactions do not run again, and rt.AppDB serves the user's own
// migration and reads.
func TestTransactionGreetings(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		appExec(t, rt.AppDB(), greetingsDDL) // the user's own migration
		key := t.Name()
		paused := make(chan struct{}, 1)
		bodies.Store(key, greetBody(func(ctx context.Context) error {
			paused <- struct{}{}
			<-ctx.Done() // interrupted with bob's row written, not committed
			return ctx.Err()
		}))
		t.Cleanup(func() { bodies.Delete(key) })
		before := txRuns.get("insert alice")
		h := must(testWF.Start(dbos.WithWorkflowID(ctx, "greet-1"), input{Key: key}))
		<-paused
		shutdown(t, rt)
		if _, err := h.Result(context.Background()); !errors.Is(err, dbos.ErrShutdown) {
			t.Fatalf("interrupted workflow: err = %v, want ErrShutdown", err)
		}

		bodies.Store(key, greetBody(nil))
		rt2, ctx2 := launch(t, url) // recovers greet-1
		out, err := must(dbos.RetrieveWorkflow[string](ctx2, "greet-1")).Result(ctx2)
		if err != nil || out != "hello/hi" {
			t.Fatalf("recovered workflow: %q, %v; want hello/hi", out, err)
		}
		if n := txRuns.get("insert alice") - before; n != 1 {
			t.Fatalf("alice's insert ran %d times; want 1 (recorded, then replayed)", n)
		}
		var rows []greeting
		if err := rt2.AppDB().Select(&rows, `SELECT name, note FROM greetings ORDER BY name`); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(rows) != "[{alice hello} {bob hi}]" {
			t.Fatalf("greetings = %v; want exactly one alice and one bob", rows)
		}
		if n := countRows(t, rt2, "operation_outputs"); n != 4 {
			t.Fatalf("%d checkpoints; want 4 transactions", n)
		}
		// Calling the finished workflow again runs nothing.
		runs := txRuns.get("select alice")
		if out := must(testWF.Run(dbos.WithWorkflowID(ctx2, "greet-1"), input{Key: key})); out != "hello/hi" || txRuns.get("select alice") != runs {
			t.Fatalf("re-run: %q", out)
		}
	})
}

// TestTransactionSameDatabaseOneCommit: with the application database being
// the system database, the user's writes and the checkpoint commit together
// (on PostgreSQL: in the same transaction ID); interrupted mid-function,
// neither exists.
func TestTransactionSameDatabaseOneCommit(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		appExec(t, rt.AppDB(), greetingsDDL)
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			return "", exampleInsert(ctx, "carol", "hey")
		})
		must(testWF.Run(dbos.WithWorkflowID(ctx, "one-commit"), in))
		if n := appCount(t, rt.AppDB(), `SELECT count(*) FROM greetings`); n != 1 {
			t.Fatalf("%d greetings", n)
		}
		if n := countRows(t, rt, "operation_outputs"); n != 1 {
			t.Fatalf("%d checkpoints; want 1", n)
		}
		if rt.AppDB().DriverName() == "pgx" {
			var a, b string
			must(0, rt.AppDB().Get(&a, `SELECT xmin::text FROM greetings`))
			must(0, rt.AppDB().Get(&b, `SELECT xmin::text FROM dbos.operation_outputs WHERE workflow_uuid = 'one-commit'`))
			if a != b {
				t.Fatalf("the greeting was written by transaction %s, its checkpoint by %s: want one", a, b)
			}
		}

		// Interrupted mid-function: neither the row nor the checkpoint.
		inside := make(chan struct{}, 1)
		in2 := input{Key: t.Name() + "/crash"}
		bodies.Store(in2.Key, body(func(ctx context.Context, in input) (string, error) {
			return "", exampleInsertRaw(ctx, "dave", "yo", func(ctx context.Context) error {
				inside <- struct{}{}
				<-ctx.Done()
				return ctx.Err()
			})
		}))
		defer bodies.Delete(in2.Key)
		h := must(testWF.Start(dbos.WithWorkflowID(ctx, "mid-fn"), in2))
		<-inside
		shutdown(t, rt)
		_, _ = h.Result(context.Background())
		rt2, _ := launch(t, url, func(c *dbos.Config) { c.ExecutorID = "inspector" }) // does not recover mid-fn
		if n := appCount(t, rt2.AppDB(), `SELECT count(*) FROM greetings WHERE name = 'dave'`); n != 0 {
			t.Fatalf("interrupted transaction left %d rows", n)
		}
		if n := countRows(t, rt2, "operation_outputs"); n != 1 {
			t.Fatalf("%d checkpoints; the interrupted transaction must have none", n)
		}
		if st := must(rt2.WorkflowStatus(context.Background(), "mid-fn")); st.Status != dbos.StatusPending {
			t.Fatalf("interrupted workflow is %s; want PENDING", st.Status)
		}
	})
}

// TestTransactionErrorRecorded: an error returned by the function rolls its
// writes back, is recorded, and is replayed without running the function
// again; a panic does the same and matches ErrPanic.
func TestTransactionErrorRecorded(t *testing.T) {
	errNoStock := errors.New("out of stock")
	dbos.RegisterError(errNoStock)
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		appExec(t, rt.AppDB(), greetingsDDL)
		var c counter
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			_, err := dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "reserve"}, func(ctx context.Context, tx *sqlx.Tx) (int, error) {
				c.inc("reserve")
				if _, err := tx.ExecContext(ctx, `INSERT INTO greetings (name, note) VALUES ('erin', 'x')`); err != nil {
					return 0, err
				}
				if in.N == 1 {
					panic("boom")
				}
				return 0, fmt.Errorf("reserving: %w", errNoStock)
			})
			return "", err
		})
		_, err := testWF.Run(dbos.WithWorkflowID(ctx, "tx-err"), in)
		if !errors.Is(err, errNoStock) {
			t.Fatalf("err = %v, want out of stock", err)
		}
		in.N = 1
		_, err = testWF.Run(dbos.WithWorkflowID(ctx, "tx-panic"), in)
		if !errors.Is(err, dbos.ErrPanic) || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("err = %v, want ErrPanic with boom", err)
		}
		if n := appCount(t, rt.AppDB(), `SELECT count(*) FROM greetings`); n != 0 {
			t.Fatalf("%d rows: the failed transactions must roll back", n)
		}
		if n := countRows(t, rt, "operation_outputs"); n != 2 {
			t.Fatalf("%d checkpoints; want both errors recorded", n)
		}
		// Replay both: the recorded errors come back, nothing runs.
		execSQL(t, rt, "UPDATE {dbos}workflow_status SET status = 'PENDING', error = NULL")
		for i, id := range []string{"tx-err", "tx-panic"} {
			in.N = i
			_, err := testWF.Run(dbos.WithWorkflowID(ctx, id), in)
			want := []error{errNoStock, dbos.ErrPanic}[i]
			if !errors.Is(err, want) {
				t.Fatalf("replayed %s: err = %v, want %v", id, err, want)
			}
		}
		if c.get("reserve") != 2 {
			t.Fatalf("function ran %d times; want 2 (once per workflow)", c.get("reserve"))
		}
	})
}

// TestTransactionRefusedInStep: a transaction inside a step or inside
// another transaction returns ErrTransactionInStep and does not run.
func TestTransactionRefusedInStep(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		var c counter
		inner := func(ctx context.Context) error {
			_, err := dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "inner"}, func(ctx context.Context, tx *sqlx.Tx) (int, error) {
				c.inc("inner")
				return 1, nil
			})
			return err
		}
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			fromStep, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "step"}, func(ctx context.Context) (bool, error) {
				return errors.Is(inner(ctx), dbos.ErrTransactionInStep), nil
			})
			if err != nil {
				return "", err
			}
			fromTx, err := dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "outer"}, func(ctx context.Context, tx *sqlx.Tx) (bool, error) {
				return errors.Is(inner(ctx), dbos.ErrTransactionInStep), nil
			})
			return fmt.Sprint(fromStep, fromTx), err
		})
		if out := must(testWF.Run(ctx, in)); out != "true true" {
			t.Fatalf("refusals in a step and in a transaction: %q; want true true", out)
		}
		// Outside a workflow too.
		_, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "plain"}, func(ctx context.Context) (int, error) { return 0, inner(ctx) })
		if !errors.Is(err, dbos.ErrTransactionInStep) {
			t.Fatalf("outside a workflow: err = %v", err)
		}
		if c.get("inner") != 0 {
			t.Fatalf("the refused transaction ran %d times", c.get("inner"))
		}
		if n := countRows(t, rt, "operation_outputs"); n != 2 {
			t.Fatalf("%d checkpoints; want 2 (the step and the outer transaction)", n)
		}
	})
}

// TestTransactionOutsideWorkflow: outside a workflow the function runs once
// per call in a transaction (rolled back on error), nothing is recorded.
func TestTransactionOutsideWorkflow(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		appExec(t, rt.AppDB(), greetingsDDL)
		for range 2 {
			if err := exampleInsert(ctx, "frank", "hello"); err != nil {
				t.Fatal(err)
			}
		}
		if note := must(exampleSelect(ctx, "frank")); note != "hello" {
			t.Fatalf("select: %q", note)
		}
		_, err := dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "fails"}, func(ctx context.Context, tx *sqlx.Tx) (int, error) {
			if _, _, inWF := workflowAndStep(ctx); inWF {
				t.Error("StepID reported outside a workflow")
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO greetings (name, note) VALUES ('frank', 'again')`); err != nil {
				return 0, err
			}
			return 0, errors.New("no")
		})
		if err == nil || err.Error() != "no" {
			t.Fatalf("err = %v", err)
		}
		if n := appCount(t, rt.AppDB(), `SELECT count(*) FROM greetings`); n != 2 {
			t.Fatalf("%d rows; want 2: each call runs once, the failed one rolls back", n)
		}
		if n := countRows(t, rt, "operation_outputs"); n != 0 {
			t.Fatalf("%d checkpoints outside a workflow", n)
		}
	})
}

func workflowAndStep(ctx context.Context) (string, int, bool) {
	id, _ := dbos.WorkflowID(ctx)
	step, ok := dbos.StepID(ctx)
	return id, step, ok
}

// TestTransactionIsolation: the directive's isolation level and read_only
// flag, observed from inside the transaction. On SQLite every transaction
// is serializable whatever the level asked (one writer at a time, readers on
// a snapshot); read_only transactions run on the read-only pool and cannot
// write.
func TestTransactionIsolation(t *testing.T) {
	cases := []struct {
		opts dbos.TransactionOptions
		want string
	}{
		{dbos.TransactionOptions{Name: "default"}, "serializable off"},
		{dbos.TransactionOptions{Name: "rr", Isolation: dbos.RepeatableRead}, "repeatable read off"},
		{dbos.TransactionOptions{Name: "rc", Isolation: dbos.ReadCommitted}, "read committed off"},
		{dbos.TransactionOptions{Name: "ro", ReadOnly: true}, "serializable on"},
		{dbos.TransactionOptions{Name: "rc-ro", Isolation: dbos.ReadCommitted, ReadOnly: true}, "read committed on"},
	}
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		appExec(t, rt.AppDB(), greetingsDDL)
		pg := rt.AppDB().DriverName() == "pgx"
		observe := func(ctx context.Context, opts *dbos.TransactionOptions) (string, error) {
			return dbos.RunTransaction(ctx, opts, func(ctx context.Context, tx *sqlx.Tx) (string, error) {
				var level, ro string
				if !pg {
					var queryOnly int
					err := tx.GetContext(ctx, &queryOnly, `PRAGMA query_only`)
					_, werr := tx.ExecContext(ctx, `INSERT INTO greetings (name, note) VALUES ('iso', ?)`, opts.Name)
					if queryOnly == 1 && werr == nil {
						return "", errors.New("a write succeeded in a read-only transaction")
					}
					level, ro = "serializable", map[bool]string{false: "off", true: "on"}[queryOnly == 1]
					return level + " " + ro, err
				}
				err := tx.QueryRowxContext(ctx, `SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')`).Scan(&level, &ro)
				return level + " " + ro, err
			})
		}
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			c := cases[in.N]
			return observe(ctx, &c.opts)
		})
		for i, c := range cases {
			want := c.want
			if !pg {
				want = "serializable " + strings.Fields(want)[len(strings.Fields(want))-1] // SQLite: always serializable
			}
			in.N = i
			if got := must(testWF.Run(ctx, in)); got != want {
				t.Errorf("%s in a workflow: %q, want %q", c.opts.Name, got, want)
			}
			if got := must(observe(ctx, &c.opts)); got != want {
				t.Errorf("%s outside a workflow: %q, want %q", c.opts.Name, got, want)
			}
		}
		if n := countRows(t, rt, "operation_outputs"); n != len(cases) {
			t.Fatalf("%d checkpoints; want %d (read-only ones recorded too)", n, len(cases))
		}
	})
}

// logCapture records every log message, and passes them to the test log.
type logCapture struct {
	mu   sync.Mutex
	msgs []string
	next slog.Handler
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCapture) Handle(ctx context.Context, r slog.Record) error {
	c.mu.Lock()
	c.msgs = append(c.msgs, r.Message)
	c.mu.Unlock()
	if c.next.Enabled(ctx, r.Level) {
		return c.next.Handle(ctx, r)
	}
	return nil
}
func (c *logCapture) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCapture) WithGroup(string) slog.Handler      { return c }

func (c *logCapture) count(substr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

// TestTransactionSerializationConflict (PostgreSQL): two workflows whose
// serializable transactions read what the other writes (write skew). One
// loses with SQLSTATE 40001 and is retried in a fresh transaction: both
// finish, each effect exactly once, and the retry shows in the metrics and
// the log. The same holds outside a workflow.
func TestTransactionSerializationConflict(t *testing.T) {
	url := dbtest.Postgres(t)
	logs := &logCapture{next: testLogger(t).Handler()}
	rt, ctx := launch(t, url, func(c *dbos.Config) { c.Logger = slog.New(logs) })
	appExec(t, rt.AppDB(), `CREATE TABLE doctors (name TEXT PRIMARY KEY, on_call BOOLEAN NOT NULL)`)
	appExec(t, rt.AppDB(), `CREATE TABLE leaves (name TEXT NOT NULL)`)

	// Each transaction counts the doctors on call, and if another one is on
	// call takes its doctor off call. Both read before either writes.
	round := func(ctx context.Context, in input, barrier *sync.WaitGroup, c *counter) (string, error) {
		return dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "go_off_call"}, func(ctx context.Context, tx *sqlx.Tx) (string, error) {
			me := fmt.Sprint("doc", in.N)
			c.inc(me)
			var onCall int
			if err := tx.GetContext(ctx, &onCall, `SELECT count(*) FROM doctors WHERE on_call`); err != nil {
				return "", err
			}
			if info, _ := dbos.CurrentStep(ctx); info.Attempt == 0 {
				barrier.Done()
				barrier.Wait() // both have read
			}
			if onCall < 2 {
				return me + " stays", nil
			}
			if _, err := tx.ExecContext(ctx, `UPDATE doctors SET on_call = false WHERE name = $1`, me); err != nil {
				return "", err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO leaves (name) VALUES ($1)`, me)
			return me + " leaves", err
		})
	}
	check := func(t *testing.T, outs []string, c *counter, retriesBefore int64) {
		t.Helper()
		got := fmt.Sprint(outs)
		if got != "[doc0 leaves doc1 stays]" && got != "[doc0 stays doc1 leaves]" {
			t.Fatalf("outcomes %s: want exactly one doctor off call", got)
		}
		if n := appCount(t, rt.AppDB(), `SELECT count(*) FROM leaves`); n != 1 {
			t.Fatalf("%d leaves recorded; want 1", n)
		}
		if n := appCount(t, rt.AppDB(), `SELECT count(*) FROM doctors WHERE on_call`); n != 1 {
			t.Fatalf("%d doctors on call; want 1", n)
		}
		if rt.TransactionRetries() <= retriesBefore {
			t.Fatalf("TransactionRetries = %d; want more than %d", rt.TransactionRetries(), retriesBefore)
		}
		if c.get("doc0")+c.get("doc1") < 3 {
			t.Fatalf("functions ran %d+%d times; the loser must have run twice", c.get("doc0"), c.get("doc1"))
		}
	}
	reset := func() {
		appExec(t, rt.AppDB(), `DELETE FROM leaves`)
		appExec(t, rt.AppDB(), `DELETE FROM doctors`)
		appExec(t, rt.AppDB(), `INSERT INTO doctors VALUES ('doc0', true), ('doc1', true)`)
	}

	t.Run("workflows", func(t *testing.T) {
		defer fatalOnMust(t)
		reset()
		var barrier sync.WaitGroup
		barrier.Add(2)
		var c counter
		in := setBody(t, func(ctx context.Context, in input) (string, error) { return round(ctx, in, &barrier, &c) })
		outs := make([]string, 2)
		var wg sync.WaitGroup
		for i := range outs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				in := in
				in.N = i
				var err error
				if outs[i], err = testWF.Run(dbos.WithWorkflowID(ctx, fmt.Sprint("conflict-", i)), in); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		check(t, outs, &c, 0)
		if logs.count("transaction retried after a serialization failure") == 0 {
			t.Fatal("no log line for the retry")
		}
		// Each effect once, in the checkpoints too: replays return the same.
		execSQL(t, rt, "UPDATE {dbos}workflow_status SET status = 'PENDING', output = NULL")
		for i := range outs {
			in.N = i
			if out := must(testWF.Run(dbos.WithWorkflowID(ctx, fmt.Sprint("conflict-", i)), in)); out != outs[i] {
				t.Fatalf("replay %d: %q, want %q", i, out, outs[i])
			}
		}
		if n := appCount(t, rt.AppDB(), `SELECT count(*) FROM leaves`); n != 1 {
			t.Fatalf("%d leaves after replay", n)
		}
	})

	t.Run("outside a workflow", func(t *testing.T) {
		reset()
		before := rt.TransactionRetries()
		var barrier sync.WaitGroup
		barrier.Add(2)
		var c counter
		outs := make([]string, 2)
		var wg sync.WaitGroup
		for i := range outs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if outs[i], err = round(ctx, input{N: i}, &barrier, &c); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		check(t, outs, &c, before)
		if n := countRows(t, rt, "operation_outputs"); n != 2 {
			t.Fatalf("%d checkpoints; only the two workflows' transactions are recorded", n)
		}
	})
}
