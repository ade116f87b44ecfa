package engine_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// Test workflows are registered once, like generated code does, and look up
// their per-test body by key, so each test can say what its workflow does.
type input struct {
	Key string `json:"key"`
	N   int    `json:"n"`
}

type body func(ctx context.Context, in input) (string, error)

var bodies sync.Map // key -> body

func dispatch(ctx context.Context, in input) (string, error) {
	b, ok := bodies.Load(in.Key)
	if !ok {
		return "", fmt.Errorf("no test body for %q", in.Key)
	}
	return b.(body)(ctx, in)
}

var (
	testWF       = dbos.RegisterWorkflow(dbos.WorkflowOptions{Name: "test.wf"}, dispatch)
	otherWF      = dbos.RegisterWorkflow(dbos.WorkflowOptions{Name: "test.other"}, dispatch)
	fragileWF    = dbos.RegisterWorkflow(dbos.WorkflowOptions{Name: "test.fragile", MaxRecoveryAttempts: 2}, dispatch)
	timeoutWF    = dbos.RegisterWorkflow(dbos.WorkflowOptions{Name: "test.timeout", Timeout: 300 * time.Millisecond}, dispatch)
	testLogLevel = slog.LevelWarn
)

func init() { dbos.RegisterVersion("github.com/dbosgen/dbosgen/runtime/dbos_test", "testhash") }

// setBody registers the body of the calling test's workflows and returns the
// input that selects it.
func setBody(t *testing.T, b body) input {
	t.Helper()
	bodies.Store(t.Name(), b)
	t.Cleanup(func() { bodies.Delete(t.Name()) })
	return input{Key: t.Name()}
}

// forEachEngine runs f against a fresh PostgreSQL database and a fresh
// SQLite file.
func forEachEngine(t *testing.T, f func(t *testing.T, url string)) {
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			defer fatalOnMust(t)
			f(t, dbtest.URL(t, engine))
		})
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	var out io.Writer = testWriter{t}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: testLogLevel}))
}

// launch starts a runtime on url; it is shut down when t ends.
func launch(t testing.TB, url string, mods ...func(*dbos.Config)) (*dbos.Runtime, context.Context) {
	t.Helper()
	cfg := dbos.Config{AppName: "test", SystemDatabaseURL: url, ExecutorID: "exec-1", ApplicationVersion: "v1", Logger: testLogger(t)}
	for _, m := range mods {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := dbos.Launch(ctx, cfg)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	t.Cleanup(func() { shutdown(t, rt) })
	return rt, dbos.WithRuntime(context.Background(), rt)
}

func shutdown(t testing.TB, rt *dbos.Runtime) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rt.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func withExecutor(id string) func(*dbos.Config) { return func(c *dbos.Config) { c.ExecutorID = id } }

// counter counts calls, safely across goroutines.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) inc(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[k]++
	return c.n[k]
}

func (c *counter) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

// must returns v, or fails the running test (see forEachEngine) on err.
func must[T any](v T, err error) T {
	if err != nil {
		panic(mustFailure{err})
	}
	return v
}

type mustFailure struct{ err error }

// fatalOnMust turns a must failure in the test goroutine into t.Fatal.
func fatalOnMust(t *testing.T) {
	if p := recover(); p != nil {
		if f, ok := p.(mustFailure); ok {
			t.Fatalf("unexpected error: %v", f.err)
		}
		panic(p)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countRows counts a system table's rows through the application database,
// which is the system database in these tests.
func countRows(t testing.TB, rt *dbos.Runtime, table string) int {
	t.Helper()
	if rt.AppDB().DriverName() == "pgx" {
		table = "dbos." + table
	}
	var n int
	if err := rt.AppDB().Get(&n, "SELECT count(*) FROM "+table); err != nil {
		t.Fatalf("counting %s: %v", table, err)
	}
	return n
}

// execSQL runs a statement on the system database, for tests that corrupt it.
func execSQL(t testing.TB, rt *dbos.Runtime, query string, args ...any) {
	t.Helper()
	if rt.AppDB().DriverName() == "pgx" {
		query = strings.ReplaceAll(query, "{dbos}", "dbos.")
	} else {
		query = strings.ReplaceAll(query, "{dbos}", "")
		query = rt.AppDB().Rebind(query)
	}
	if _, err := rt.AppDB().Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}
