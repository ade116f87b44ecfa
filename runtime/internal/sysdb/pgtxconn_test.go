package sysdb

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// A transaction whose BEGIN rides with its first statement behaves as an
// ordinary one: every statement runs inside it at the isolation asked, a
// failure of the first statement aborts it, prepared statements run in it,
// and a transaction that sent nothing commits its checkpoint alone.
func TestLazyBegin(t *testing.T) {
	tg := newPostgresTarget(t)
	ctx := context.Background()
	s := tg.migrated(t)
	mustInit(t, s, initParams("wf"))
	a := appDBOn(t, tg, s)
	if _, err := a.DB().Exec(`CREATE TABLE lazy (v TEXT)`); err != nil {
		t.Fatal(err)
	}
	begin := func(iso sql.IsolationLevel, readOnly bool) *Tx {
		t.Helper()
		tx, err := a.Begin(ctx, iso, readOnly)
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	rows := func() []string {
		t.Helper()
		var vs []string
		if err := a.DB().Select(&vs, `SELECT v FROM lazy ORDER BY v`); err != nil {
			t.Fatal(err)
		}
		return vs
	}
	// rollback ends tx and checks that none of its writes stayed.
	rollback := func(tx *Tx) {
		t.Helper()
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if got := rows(); len(got) != 0 {
			t.Fatalf("rolled back, yet %v", got)
		}
	}
	clear := func() {
		t.Helper()
		if _, err := a.DB().Exec(`DELETE FROM lazy`); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("isolation of a first statement with arguments", func(t *testing.T) {
		defer clear()
		for _, c := range []struct {
			iso  sql.IsolationLevel
			want string
		}{{sql.LevelSerializable, "serializable"}, {sql.LevelRepeatableRead, "repeatable read"}, {sql.LevelReadCommitted, "read committed"}} {
			tx := begin(c.iso, false)
			if _, err := tx.ExecContext(ctx, `INSERT INTO lazy SELECT current_setting('transaction_isolation') || $1`, "!"); err != nil {
				t.Fatal(err)
			}
			var inTx bool
			if err := tx.GetContext(ctx, &inTx, `SELECT txid_current_if_assigned() IS NOT NULL`); err != nil || !inTx {
				t.Fatalf("the second statement is not in the first's transaction: %v", err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if got := rows(); len(got) != 1 || got[0] != c.want+"!" {
				t.Fatalf("%v: %v", c.iso, got)
			}
			clear()
		}
	})

	t.Run("rollback", func(t *testing.T) {
		tx := begin(sql.LevelSerializable, false)
		res, err := tx.ExecContext(ctx, `INSERT INTO lazy SELECT $1 FROM generate_series(1, 12)`, "gone")
		if err != nil {
			t.Fatal(err)
		}
		if n, err := res.RowsAffected(); n != 12 || err != nil {
			t.Fatalf("%d rows affected (%v); want 12", n, err)
		}
		rollback(tx)
	})

	t.Run("a first statement the server refuses aborts the transaction", func(t *testing.T) {
		tx := begin(sql.LevelSerializable, false)
		_, err := tx.ExecContext(ctx, `INSERT INTO no_such_table VALUES ($1)`, "x")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42P01" {
			t.Fatalf("err = %v; want undefined_table", err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO lazy VALUES ($1)`, "after")
		if !errors.As(err, &pgErr) || pgErr.Code != "25P02" {
			t.Fatalf("err = %v; want in_failed_sql_transaction", err)
		}
		out := a.RecordAndCommit(ctx, tx, StepRow{WorkflowID: "wf", StepID: 1, Name: "tx", Output: "1"})
		if out.Recorded || out.RecordErr == nil {
			t.Fatalf("%+v; want the checkpoint refused", out)
		}
		if got := rows(); len(got) != 0 {
			t.Fatalf("aborted, yet %v", got)
		}
	})

	t.Run("an argument that cannot be encoded", func(t *testing.T) {
		tx := begin(sql.LevelSerializable, false)
		if _, err := tx.ExecContext(ctx, `INSERT INTO lazy VALUES ($1)`, struct{ X chan int }{}); err == nil {
			t.Fatal("no error")
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO lazy VALUES ($1)`, "ok"); err != nil {
			t.Fatalf("as in an ordinary transaction, a client-side error does not abort it: %v", err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if got := rows(); len(got) != 1 || got[0] != "ok" {
			t.Fatalf("%v", got)
		}
		clear()
	})

	t.Run("queries, statements without arguments, prepared statements", func(t *testing.T) {
		tx := begin(sql.LevelSerializable, false)
		var iso string
		if err := tx.GetContext(ctx, &iso, `SELECT current_setting('transaction_isolation')`); err != nil || iso != "serializable" {
			t.Fatalf("%q, %v", iso, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO lazy VALUES ('plain')`); err != nil {
			t.Fatal(err)
		}
		st, err := tx.PrepareContext(ctx, `INSERT INTO lazy VALUES ($1)`)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.ExecContext(ctx, "prepared"); err != nil {
			t.Fatal(err)
		}
		rollback(tx)
		// A prepared statement as the transaction's first statement.
		tx = begin(sql.LevelSerializable, false)
		st, err = tx.PrepareContext(ctx, `INSERT INTO lazy VALUES ($1)`)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.ExecContext(ctx, "first"); err != nil {
			t.Fatal(err)
		}
		rollback(tx)
	})

	t.Run("a first statement its context ends", func(t *testing.T) {
		tx := begin(sql.LevelSerializable, false)
		defer func() { _ = tx.Rollback() }()
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err := tx.ExecContext(cctx, `SELECT pg_sleep($1)`, 30)
		if !errors.Is(err, context.Canceled) || time.Since(start) > 10*time.Second {
			t.Fatalf("err = %v after %v; want the context's, at once", err, time.Since(start))
		}
		// The server was asked to stop the statement, not left running it.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			var n int
			if err := a.DB().Get(&n, `SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'`); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d backends still sleeping", n)
			}
		}
	})

	t.Run("read only", func(t *testing.T) {
		tx := begin(sql.LevelSerializable, true)
		_, err := tx.ExecContext(ctx, `INSERT INTO lazy VALUES ($1)`, "x")
		if err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Fatalf("err = %v; want a read-only transaction's refusal", err)
		}
		_ = tx.Rollback()
	})

	t.Run("nothing sent", func(t *testing.T) {
		tx := begin(sql.LevelSerializable, false)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		tx = begin(sql.LevelSerializable, false)
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		tx = begin(sql.LevelSerializable, false)
		out := a.RecordAndCommit(ctx, tx, StepRow{WorkflowID: "wf", StepID: 2, Name: "tx", Output: "2"})
		if !out.Recorded || out.RecordErr != nil || out.CommitErr != nil {
			t.Fatalf("%+v", out)
		}
		rec, found, err := a.Lookup(ctx, "wf", 2)
		if err != nil || !found || rec.Output != "2" {
			t.Fatalf("%+v, %v, %v", rec, found, err)
		}
	})

	// The connections went back to the pool outside any transaction.
	for range 3 {
		var inTx bool
		if err := a.DB().Get(&inTx, `SELECT txid_current_if_assigned() IS NOT NULL`); err != nil || inTx {
			t.Fatalf("a pooled connection is inside a transaction (%v)", err)
		}
	}
}
