package engine_test

import (
	"context"
	"testing"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// pgxpool's pool_* parameters in the system database URL size the system
// pool; the application database, which defaults to the same URL and is
// opened through database/sql, must not pass them to the server.
func TestPoolParamsInURL(t *testing.T) {
	defer fatalOnMust(t)
	url := dbtest.Postgres(t) + "&pool_max_conns=3&pool_min_conns=1"
	rt, ctx := launch(t, url)
	if err := rt.AppDB().Ping(); err != nil {
		t.Fatalf("application database: %v", err)
	}
	in := setBody(t, func(ctx context.Context, in input) (string, error) {
		return dbos.RunStep(ctx, &dbos.StepOptions{Name: "s"}, func(ctx context.Context) (string, error) { return "ok", nil })
	})
	if out := must(testWF.Run(ctx, in)); out != "ok" {
		t.Fatalf("out = %q", out)
	}
	if n := countRows(t, rt, "operation_outputs"); n != 1 {
		t.Fatalf("%d step rows", n)
	}
}
