package engine_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
	"github.com/jackc/pgx/v5"
)

// batchCounter counts the statements that carried several step checkpoints.
type batchCounter struct{ n atomic.Int64 }

func (b *batchCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, "operation_outputs") && strings.Contains(d.SQL, "unnest(") {
		b.n.Add(1)
	}
	return ctx
}

func (b *batchCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// Concurrent checkpoints share statements by default, and never with
// Config.DisableStepBatching; either way every step is recorded once.
func TestStepBatchingConfig(t *testing.T) {
	for _, disable := range []bool{false, true} {
		url := dbtest.Postgres(t)
		tr := &batchCounter{}
		rt, ctx := launch(t, url, func(c *dbos.Config) { c.DisableStepBatching = disable; dbos.SetTracer(c, tr) })
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			for range 5 {
				if _, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "s"}, func(ctx context.Context) (int, error) { return 1, nil }); err != nil {
					return "", err
				}
			}
			return "ok", nil
		})
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				if _, err := testWF.Run(ctx, in); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if n := countRows(t, rt, "operation_outputs"); n != 64*5 {
			t.Fatalf("disable=%v: %d checkpoints, want %d", disable, n, 64*5)
		}
		switch got := tr.n.Load(); {
		case disable && got != 0:
			t.Errorf("DisableStepBatching: %d shared statements, want none", got)
		case !disable && got == 0:
			t.Error("64 concurrent workflows never shared a checkpoint statement")
		}
	}
}
