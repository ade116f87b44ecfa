package dbostest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbosgen/dbosgen/runtime/dbos"
)

// EnvPostgresURL names a PostgreSQL server on which Launch creates a
// database per test; its role must be allowed to create databases. Unset,
// Launch uses SQLite.
const EnvPostgresURL = "DBOSGEN_TEST_POSTGRES_URL"

// Runtime is a runtime launched for one test. It is a *dbos.Runtime, with
// what a test needs besides.
type Runtime struct {
	*dbos.Runtime
	t    testing.TB
	cfg  dbos.Config
	once sync.Once
}

// Option configures Launch.
type Option func(*settings)

type settings struct {
	cfg      dbos.Config
	postgres string
	sqlite   bool
}

// WithConfig is the runtime's configuration: Setup, Logger, AppName,
// ApplicationVersion and the rest. Leave the database URLs empty for an
// isolated database; set, they are used as they are.
func WithConfig(cfg dbos.Config) Option { return func(s *settings) { s.cfg = cfg } }

// WithPostgres runs the test on a database of its own on the PostgreSQL
// server at serverURL (any database there the role may connect to; the role
// must be allowed to create databases). The database is dropped after the
// test.
func WithPostgres(serverURL string) Option {
	return func(s *settings) { s.postgres, s.sqlite = serverURL, false }
}

// WithSQLite runs the test on SQLite even when $DBOSGEN_TEST_POSTGRES_URL is
// set.
func WithSQLite() Option { return func(s *settings) { s.sqlite = true } }

// Launch launches a runtime for t on a database of its own, and shuts it
// down when t ends. The runtime's logs go to t.Log, shown when the test
// fails or with -v. Wrappers called with rt.Context(), or a context derived
// from it, run on this runtime, whatever other tests run beside it.
func Launch(t testing.TB, opts ...Option) *Runtime {
	t.Helper()
	s := settings{postgres: os.Getenv(EnvPostgresURL)}
	for _, o := range opts {
		o(&s)
	}
	cfg := s.cfg
	if cfg.SystemDatabaseURL == "" {
		if s.postgres != "" && !s.sqlite {
			cfg.SystemDatabaseURL = postgresDatabase(t, s.postgres)
		} else {
			cfg.SystemDatabaseURL = "sqlite://" + filepath.Join(t.TempDir(), "dbos.sqlite")
		}
		if cfg.ApplicationDatabaseURL == "" {
			// Not $APP_DATABASE_URL: a test touches only its own database.
			cfg.ApplicationDatabaseURL = cfg.SystemDatabaseURL
		}
	}
	if cfg.AppName == "" {
		cfg.AppName = "dbostest"
	}
	if cfg.ExecutorID == "" {
		cfg.ExecutorID = "dbostest"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	return launch(t, cfg)
}

func launch(t testing.TB, cfg dbos.Config) *Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt, err := dbos.Launch(ctx, cfg)
	if err != nil {
		t.Fatalf("dbostest.Launch: %v", err)
	}
	r := &Runtime{Runtime: rt, t: t, cfg: cfg}
	t.Cleanup(r.shutdown)
	return r
}

// Context returns the test's context (t.Context(), which ends just before
// the cleanups run) attached to r.
func (r *Runtime) Context() context.Context {
	return dbos.WithRuntime(r.t.Context(), r.Runtime)
}

// Restart is the end of the process and the start of the next one: it shuts
// r down, interrupting what runs (which stays PENDING), and launches a new
// runtime on the same databases, with the same executor ID and application
// version, which recovers the PENDING workflows as dbos.Launch does after a
// crash. Use the runtime it returns from then on.
func (r *Runtime) Restart() *Runtime {
	r.t.Helper()
	r.shutdown()
	return launch(r.t, r.cfg)
}

func (r *Runtime) shutdown() {
	r.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			r.t.Errorf("dbostest: shutting the runtime down: %v", err)
		}
	})
}

// postgresDatabase returns the URL of a new database on the server, which
// Launch creates, and drops it when t ends.
func postgresDatabase(t testing.TB, server string) string {
	t.Helper()
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("dbostest: %s=%q is not a postgres:// URL", EnvPostgresURL, server)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "dbostest_" + sanitize(t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	name += "_" + hex.EncodeToString(b[:])
	u.Path = "/" + name
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("dbostest: dropping database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("dbostest: dropping database %s: %v", name, err)
		}
	})
	return u.String()
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '_'
	}, s)
}

// testLogger logs to t.Log while the test runs; afterwards (a runtime
// goroutine finishing late) it drops the lines, which t.Log would refuse.
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}
