package dbos_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/jmoiron/sqlx"
)

// Issue 10, item 9: after Shutdown every call says the runtime was shut
// down (ErrShutdown), whether the context names the runtime or falls back to
// the process default; none says to call dbos.Launch.
func TestCallsAfterShutdown(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		in := setBody(t, func(ctx context.Context, in input) (string, error) { return "ran", nil })
		must(testWF.Run(dbos.WithWorkflowID(ctx, "before"), in))
		shutdown(t, rt)
		calls := map[string]func(context.Context) error{
			"Run": func(ctx context.Context) error { _, err := testWF.Run(ctx, in); return err },
			"Start": func(ctx context.Context) error {
				_, err := testWF.Start(dbos.WithWorkflowID(ctx, "before"), in)
				return err
			},
			"RunTransaction": func(ctx context.Context) error {
				_, err := dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "tx"}, func(context.Context, *sqlx.Tx) (int, error) { return 1, nil })
				return err
			},
			"RetrieveWorkflow": func(ctx context.Context) error { _, err := dbos.RetrieveWorkflow[string](ctx, "before"); return err },
			"CancelWorkflow":   func(ctx context.Context) error { return dbos.CancelWorkflow(ctx, "before") },
		}
		if _, err := rt.WorkflowStatus(ctx, "before"); !errors.Is(err, dbos.ErrShutdown) {
			t.Errorf("rt.WorkflowStatus after Shutdown: err = %v, want ErrShutdown", err)
		}
		for name, call := range calls {
			for how, ctx := range map[string]context.Context{"with its runtime": ctx, "with none": context.Background()} {
				err := call(ctx)
				if !errors.Is(err, dbos.ErrShutdown) || strings.Contains(err.Error(), "Launch first") {
					t.Errorf("%s %s after Shutdown: err = %v, want ErrShutdown", name, how, err)
				}
			}
		}
	})
}
