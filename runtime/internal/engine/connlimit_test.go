package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
	"github.com/jackc/pgx/v5"
	"github.com/jmoiron/sqlx"
)

// limitedDatabase makes a role limited to limit connections and a fresh
// database it owns, and returns the database's URL logged in as the role.
func limitedDatabase(t *testing.T, limit int) (url, role string) {
	t.Helper()
	role = testRole(t, fmt.Sprintf("CONNECTION LIMIT %d", limit))
	url = dbtest.Postgres(t)
	adminExec(t, fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", pgx.Identifier{dbName(t, url)}.Sanitize(), role))
	return asRole(t, url, role), role
}

func launchErr(cfg dbos.Config) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	rt, err := dbos.Launch(ctx, cfg)
	if err == nil {
		_ = rt.Shutdown(context.Background())
		return time.Since(start), errors.New("Launch succeeded")
	}
	return time.Since(start), err
}

// Item 7 of issue 10: with a role limited to 2 connections, Launch and the
// first workflow hung. A runtime needs at least 2 connections (a pool of one
// and the cancellation listener); Launch refuses pools that cannot fit the
// role's limit, says what fits, and a runtime sized to fit works.
func TestConnectionLimitedRole(t *testing.T) {
	t.Run("the default pool does not fit", func(t *testing.T) {
		url, role := limitedDatabase(t, 2)
		took, err := launchErr(dbos.Config{SystemDatabaseURL: url, Logger: testLogger(t)})
		if !errors.Is(err, dbos.ErrConfig) {
			t.Fatalf("err = %v; want ErrConfig", err)
		}
		for _, want := range []string{fmt.Sprintf("role %q may hold 2 connections (CONNECTION LIMIT 2)", role),
			"may open 21: 20 connections for the system pool (the default 20) + 1 listening for cancellations",
			"pool_max_conns=1 in the system database URL (or Config.SystemPoolSize=1)", `ALTER ROLE "` + role + `" CONNECTION LIMIT 21`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
		if took > 10*time.Second {
			t.Fatalf("Launch took %v to refuse", took)
		}
	})
	t.Run("below the minimum", func(t *testing.T) {
		url, _ := limitedDatabase(t, 1)
		_, err := launchErr(dbos.Config{SystemDatabaseURL: url + "&pool_max_conns=1", Logger: testLogger(t)})
		if !errors.Is(err, dbos.ErrConfig) || !strings.Contains(err.Error(), "A runtime needs at least 2 here") {
			t.Fatalf("err = %v; want ErrConfig saying a runtime needs at least 2", err)
		}
	})
	t.Run("a pool of one works", func(t *testing.T) {
		defer fatalOnMust(t)
		url, role := limitedDatabase(t, 2)
		conns := sampleConnections(t, "usename = $1", role)
		rt, ctx := launch(t, url+"&pool_max_conns=1")
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			if in.N < 0 { // the cancellation case: wait to be cancelled
				<-ctx.Done()
				return "", ctx.Err()
			}
			s, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "step"}, func(ctx context.Context) (string, error) { return "step", nil })
			if err != nil {
				return "", err
			}
			return dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "tx"}, func(ctx context.Context, tx *sqlx.Tx) (string, error) {
				var n int
				err := tx.GetContext(ctx, &n, "SELECT $1::int", in.N)
				return fmt.Sprintf("%s %d", s, n), err
			})
		})
		waiting := in
		waiting.N = -1
		h := must(testWF.Start(ctx, waiting))
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() {
				in := in
				in.N = i
				if out, err := testWF.Run(ctx, in); err != nil || out != fmt.Sprintf("step %d", i) {
					t.Errorf("workflow %d: %q, %v", i, out, err)
				}
			})
		}
		wg.Wait()
		must(0, rt.CancelWorkflow(ctx, h.ID()))
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, err := h.Result(rctx); !errors.Is(err, dbos.ErrWorkflowCancelled) {
			t.Fatalf("cancelled workflow: err = %v", err)
		}
		if peak := conns.finish(); peak > 2 {
			t.Fatalf("the role held %d connections; its limit is 2", peak)
		}
	})
	t.Run("slots taken by others at launch", func(t *testing.T) {
		url, _ := limitedDatabase(t, 2)
		for range 2 {
			c, err := pgx.Connect(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
		}
		took, err := launchErr(dbos.Config{SystemDatabaseURL: url + "&pool_max_conns=1", Logger: testLogger(t)})
		if !errors.Is(err, dbos.ErrConfig) || !strings.Contains(err.Error(), "too many connections") ||
			strings.Contains(err.Error(), "is PostgreSQL running") {
			t.Fatalf("err = %v; want ErrConfig saying too many connections", err)
		}
		if took > 10*time.Second {
			t.Fatalf("Launch took %v to refuse", took)
		}
	})
	t.Run("slots taken by others after launch", func(t *testing.T) {
		defer fatalOnMust(t)
		var logs logBuffer
		url, role := limitedDatabase(t, 2)
		rt, ctx := launch(t, url+"&pool_max_conns=1", func(c *dbos.Config) {
			c.ConnectionWaitTimeout = time.Second
			c.Logger = logs.logger()
		})
		// Once the listener holds its connection, the pool's goes and
		// another session takes the slot.
		admin := adminConn(t)
		waitFor(t, "the cancellation listener", func() bool {
			var n int
			err := admin.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND query LIKE 'LISTEN %'", role).Scan(&n)
			return err == nil && n == 1
		})
		dbos.ResetSystemPool(rt)
		var other *pgx.Conn
		waitFor(t, "another session of the role", func() bool {
			var err error
			other, err = pgx.Connect(context.Background(), url)
			return err == nil
		})
		in := setBody(t, func(ctx context.Context, in input) (string, error) { return "ran", nil })
		start := time.Now()
		_, err := testWF.Run(ctx, in)
		took := time.Since(start)
		other.Close(context.Background())
		if !errors.Is(err, dbos.ErrConfig) || !errors.Is(err, dbos.ErrDatabase) || !strings.Contains(err.Error(), "too many connections") {
			t.Fatalf("err = %v; want ErrDatabase and ErrConfig saying too many connections", err)
		}
		if took > 10*time.Second {
			t.Fatalf("the workflow waited %v; the retries are bounded by 1s", took)
		}
		if !strings.Contains(logs.String(), "PostgreSQL refused a connection: too many connections") {
			t.Errorf("log lacks the refusal:\n%s", logs.String())
		}
		// The slot is back: workflows run again.
		waitFor(t, "a workflow to run", func() bool {
			out, err := testWF.Run(ctx, in)
			return err == nil && out == "ran"
		})
	})
}
