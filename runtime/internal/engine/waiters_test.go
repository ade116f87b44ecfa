package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// Many workflows wait in Recv at once on a small pool: waiting holds no
// connection, and on PostgreSQL one listening connection serves them all.
func TestManyRecvWaiters(t *testing.T) {
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			defer fatalOnMust(t)
			n := 1000
			if engine != "postgres" {
				n = 200 // SQLite waiters poll: fewer, to keep the shared machine responsive
			}
			url := dbtest.URL(t, engine)
			rt, ctx := launch(t, limitPool(url, 4))
			in := setBody(t, func(ctx context.Context, in input) (string, error) {
				v, ok, err := dbos.Recv[int](ctx, "go", time.Minute)
				return fmt.Sprint(v, ok), err
			})
			var hs []*dbos.WorkflowHandle[string]
			for i := range n {
				hs = append(hs, must(testWF.Start(dbos.WithWorkflowID(ctx, fmt.Sprint("waiter-", i)), in)))
			}
			waitFor(t, "every workflow waiting", func() bool {
				return scalar[int](t, rt, "SELECT count(*) FROM {dbos}operation_outputs WHERE function_name = 'DBOS.sleep'") == n
			})
			if engine == "postgres" {
				listeners := scalar[int](t, rt, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'`)
				conns := scalar[int](t, rt, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
				t.Logf("%d workflows waiting: %d listening connection(s), %d connections in all", n, listeners, conns)
				if listeners != 1 {
					t.Errorf("%d listening connections, want 1", listeners)
				}
				// The system pool (4), the listener and the test's own
				// application pool: not one per waiter.
				if conns > 4+1+10 {
					t.Errorf("%d connections for %d waiters", conns, n)
				}
			}
			for i := range n {
				must(0, dbos.Send(ctx, fmt.Sprint("waiter-", i), "go", i))
			}
			wait, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			for i, h := range hs {
				out, err := h.Result(wait)
				if err != nil || out != fmt.Sprint(i, " true") {
					t.Fatalf("waiter %d: %q, %v", i, out, err)
				}
			}
			if c := scalar[int](t, rt, "SELECT count(*) FROM {dbos}notifications WHERE consumed"); c != n {
				t.Errorf("%d messages consumed, want %d", c, n)
			}
		})
	}
}
