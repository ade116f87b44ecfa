package sysdb

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// A checkpoint that waits on the server (here: for a lock another
// transaction holds on its key) ends at its caller's deadline; the
// connection it broke is dropped and the store goes on working.
func TestHotStatementDeadline(t *testing.T) {
	tg := newPostgresTarget(t)
	s := tg.migrated(t).(*Postgres)
	s.SetBatching(false)
	ctx := context.Background()
	mustInit(t, s, initParams("wf"))

	other, err := pgxpool.New(ctx, s.Pool().Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) // before other.Close, which waits for it
	if _, err := tx.Exec(ctx, `INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output) VALUES ('wf', 1, 's', '"theirs"')`); err != nil {
		t.Fatal(err)
	}

	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, _, err = s.RecordStep(dctx, StepRow{WorkflowID: "wf", StepID: 1, Name: "s", Output: `"mine"`})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RecordStep blocked on a lock = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("RecordStep returned after %v, long past its deadline", d)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// The statement cut off may have taken effect or not (its reply was
	// lost): the step's checkpoint is "mine" either way, as the other
	// transaction rolled back.
	for i := range 25 { // more than the pool's connections: none is left with a deadline
		got, fresh, err := s.RecordStep(ctx, StepRow{WorkflowID: "wf", StepID: 1 + i, Name: "s", Output: `"mine"`})
		if err != nil || (!fresh && i > 0) || got.Output != `"mine"` {
			t.Fatalf("RecordStep %d after the lock = %+v, %v, %v", i, got, fresh, err)
		}
	}
}
