package engine_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
	"github.com/jmoiron/sqlx"
)

// runConcurrentTransactions runs n workflows at once, each with one
// transaction that holds its connection a moment, and fails t unless all
// succeed.
func runConcurrentTransactions(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	in := setBody(t, func(ctx context.Context, in input) (string, error) {
		return dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "sleepy"}, func(ctx context.Context, tx *sqlx.Tx) (string, error) {
			_, err := tx.ExecContext(ctx, "SELECT pg_sleep(0.02)")
			return "ok", err
		})
	})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			in := in
			in.N = i
			if _, err := testWF.Run(ctx, in); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("workflow: %v", err)
	}
}

// Item 6 of issue 10: with pool_max_conns=4 on the URL, 60 concurrent
// transactions opened 63 connections. Every pool honours its cap: the
// application's transactions share the system pool when the application
// database is the system database, so the runtime holds at most the cap plus
// the one connection that listens for cancellations.
func TestPoolCapsConnections(t *testing.T) {
	const workflows = 60
	t.Run("url wins over the field", func(t *testing.T) {
		url := dbtest.Postgres(t) + "&pool_max_conns=4"
		_, ctx := launch(t, url, func(c *dbos.Config) { c.SystemPoolSize = 10 })
		s := sampleConnections(t, "datname = $1", dbName(t, url))
		runConcurrentTransactions(t, ctx, workflows)
		if peak := s.finish(); peak > 4+1 || peak < 2 {
			t.Fatalf("%d concurrent transactions with pool_max_conns=4: peak of %d connections, want 2 to 5 (4 pooled + 1 listening)", workflows, peak)
		}
	})
	t.Run("field", func(t *testing.T) {
		url := dbtest.Postgres(t)
		_, ctx := launch(t, url, func(c *dbos.Config) { c.SystemPoolSize = 3 })
		s := sampleConnections(t, "datname = $1", dbName(t, url))
		runConcurrentTransactions(t, ctx, workflows)
		if peak := s.finish(); peak > 3+1 || peak < 2 {
			t.Fatalf("%d concurrent transactions with SystemPoolSize=3: peak of %d connections, want 2 to 4", workflows, peak)
		}
	})
	t.Run("separate application database", func(t *testing.T) {
		sys, app := dbtest.Postgres(t)+"&pool_max_conns=2", dbtest.Postgres(t)
		_, ctx := launch(t, sys, func(c *dbos.Config) { c.ApplicationDatabaseURL, c.ApplicationPoolSize = app, 3 })
		sysConns := sampleConnections(t, "datname = $1", dbName(t, sys))
		appConns := sampleConnections(t, "datname = $1", dbName(t, app))
		runConcurrentTransactions(t, ctx, workflows)
		if peak := appConns.finish(); peak > 3 || peak < 2 {
			t.Fatalf("%d concurrent transactions with ApplicationPoolSize=3: peak of %d application database connections, want 2 to 3", workflows, peak)
		}
		if peak := sysConns.finish(); peak > 2+1 {
			t.Fatalf("system database: peak of %d connections with pool_max_conns=2, want at most 3", peak)
		}
	})
}

// A wait for a pooled connection is bounded by Config.ConnectionWaitTimeout
// and logged with the pool's state; the workflow fails with ErrDatabase
// instead of hanging.
func TestPoolWaitBounded(t *testing.T) {
	defer fatalOnMust(t)
	var logs logBuffer
	url := dbtest.Postgres(t) + "&pool_max_conns=1"
	rt, ctx := launch(t, url, func(c *dbos.Config) {
		c.ConnectionWaitTimeout = time.Second
		c.Logger = logs.logger()
	})
	// The application database is the system database, so this holds the
	// system pool's only connection.
	held := must(rt.AppDB().Connx(context.Background()))
	in := setBody(t, func(ctx context.Context, in input) (string, error) { return "ran", nil })
	start := time.Now()
	_, err := testWF.Run(ctx, in)
	took := time.Since(start)
	held.Close()
	if !errors.Is(err, dbos.ErrDatabase) || !strings.Contains(err.Error(), "no pooled connection came free within 1s") {
		t.Fatalf("err = %v; want ErrDatabase saying no connection came free", err)
	}
	if took > 5*time.Second {
		t.Fatalf("the workflow waited %v for a connection; the wait is bounded by 1s", took)
	}
	for _, want := range []string{"waiting more than 333ms for a database connection", "no database connection free after 1s", "max=1 in_use=1 idle=0"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	// Once the connection is back, workflows run again.
	if out := must(testWF.Run(ctx, in)); out != "ran" {
		t.Fatalf("after the wait: %q", out)
	}
}
