package sysdb

import (
	"context"
	"database/sql"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// appDBOn opens the application database of tg's system store, as the
// engine does when they are one database.
func appDBOn(t *testing.T, tg *target, s Store) *AppDB {
	t.Helper()
	ctx := context.Background()
	switch s := s.(type) {
	case *SQLite:
		a, err := AppOnSQLite(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	case *Postgres:
		a, err := PostgresApp(ctx, s.Pool(), "dbos", "app", true, func() {})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		return a
	}
	t.Fatalf("unknown store %T", s)
	return nil
}

var _ = pgxpool.New

// RecordAndCommit commits the user's writes with a fresh checkpoint, and
// rolls them back when the step was recorded by another execution.
func TestRecordAndCommit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)
		mustInit(t, s, initParams("wf"))
		a := appDBOn(t, tg, s)
		if _, err := a.DB().Exec(`CREATE TABLE writes (v INTEGER)`); err != nil {
			t.Fatal(err)
		}
		run := func(v int) CommitOutcome {
			tx, err := a.Begin(ctx, sql.LevelSerializable, false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO writes (v) VALUES (?)`), v); err != nil {
				t.Fatal(err)
			}
			return a.RecordAndCommit(ctx, tx, StepRow{WorkflowID: "wf", StepID: 1, Name: "tx", Output: "1"})
		}
		if out := run(1); !out.Recorded || out.RecordErr != nil || out.CommitErr != nil {
			t.Fatalf("first: %+v", out)
		}
		if out := run(2); out.Recorded || out.RecordErr != nil || out.CommitErr != nil {
			t.Fatalf("duplicate: %+v, want not recorded and no error", out)
		}
		var vs []int
		if err := a.DB().Select(&vs, `SELECT v FROM writes`); err != nil || len(vs) != 1 || vs[0] != 1 {
			t.Fatalf("writes %v, %v; want only the first transaction's", vs, err)
		}
		// The connection went back to the pool in a usable state.
		for range 3 {
			if err := a.DB().PingContext(ctx); err != nil {
				t.Fatal(err)
			}
		}
	})
}
