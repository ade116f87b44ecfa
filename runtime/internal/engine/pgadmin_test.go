package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	"github.com/jackc/pgx/v5"
)

// Helpers for tests of connection limits: an admin connection, roles made
// for one test, and a sampler of how many connections the server sees.

func adminConn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dbtest.AdminURL())
	if err != nil {
		t.Fatalf("admin connection: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func adminExec(t testing.TB, sql string) {
	t.Helper()
	c := adminConn(t)
	if _, err := c.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

var roleSeq atomic.Int64

const rolePassword = "dbosgen-test"

// testRole creates a login role with the given options (CONNECTION LIMIT 2,
// say) and drops it when t ends. Call it before creating databases the role
// will own: cleanups run last-registered first, so they are dropped before it.
func testRole(t testing.TB, options string) string {
	t.Helper()
	return testRoleWithPassword(t, options, rolePassword)
}

func testRoleWithPassword(t testing.TB, options, password string) string {
	t.Helper()
	name := fmt.Sprintf("dbosgen_role_%d_%d", os.Getpid(), roleSeq.Add(1))
	adminExec(t, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s' %s", name, password, options))
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), dbtest.AdminURL())
		if err != nil {
			t.Errorf("dropping role %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP ROLE IF EXISTS "+name); err != nil {
			t.Errorf("dropping role %s: %v", name, err)
		}
	})
	return name
}

// asRole rewrites a PostgreSQL URL to log in as a role made by testRole.
func asRole(t testing.TB, raw, role string) string {
	t.Helper()
	return asRolePassword(t, raw, role, rolePassword)
}

func asRolePassword(t testing.TB, raw, role, password string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, password)
	return u.String()
}

// withDatabase rewrites a PostgreSQL URL to name another database.
func withDatabase(t testing.TB, raw, db string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	return u.String()
}

func dbName(t testing.TB, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Path[1:]
}

// sampler counts, every few milliseconds, the server's connections that
// match a pg_stat_activity condition, and keeps the peak.
type sampler struct {
	peak atomic.Int64
	stop chan struct{}
	done sync.WaitGroup
}

func sampleConnections(t testing.TB, where string, args ...any) *sampler {
	t.Helper()
	c := adminConn(t)
	s := &sampler{stop: make(chan struct{})}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		for {
			var n int64
			if err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE "+where, args...).Scan(&n); err == nil && n > s.peak.Load() {
				s.peak.Store(n)
			}
			select {
			case <-s.stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { s.finish() })
	return s
}

// finish stops sampling and returns the peak.
func (s *sampler) finish() int {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.done.Wait()
	return int(s.peak.Load())
}

// logBuffer collects a runtime's log lines, for tests of what is logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
