package interop

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	sdk "github.com/dbos-inc/dbos-transact-golang/dbos"
	dbosgen "github.com/dbosgen/dbosgen/runtime/dbos"
)

// TestLaunchOnFreshDatabase measures, in one run, how long each runtime
// takes to launch on a new database: create DBOS's schema (dbosgen in one
// transaction, DBOS in one per migration) and be ready. It reports; it does
// not assert timings (the machine is shared), only that both launch.
func TestLaunchOnFreshDatabase(t *testing.T) {
	const rounds = 3
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var gen, dbos time.Duration
	for range rounds {
		url := newDB(t)
		began := time.Now()
		rt, err := dbosgen.Launch(context.Background(), dbosgen.Config{AppName: genApp, SystemDatabaseURL: url, Logger: quiet})
		if err != nil {
			t.Fatalf("dbosgen.Launch: %v", err)
		}
		gen += time.Since(began)
		_ = rt.Shutdown(context.Background())

		url = newDB(t)
		began = time.Now()
		ctx, err := sdk.NewContext(context.Background(), sdk.Config{AppName: sdkApp, DatabaseURL: url, Logger: quiet})
		if err != nil {
			t.Fatalf("DBOS NewContext: %v", err)
		}
		if err := sdk.Launch(ctx); err != nil {
			t.Fatalf("DBOS Launch: %v", err)
		}
		dbos += time.Since(began)
		_ = sdk.Shutdown(ctx, 10*time.Second)
	}
	t.Logf("launch on a fresh database, mean of %d: dbosgen %v, DBOS Go SDK v1.8.0 %v (%.2fx)",
		rounds, gen/rounds, dbos/rounds, float64(gen)/float64(dbos))
}
