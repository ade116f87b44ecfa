package dbos_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/runtime/dbos"
)

// A URL naming no engine we know is refused with advice; an unreachable
// server fails fast, naming what was tried, instead of hanging.
func TestLaunchBadTargets(t *testing.T) {
	_, err := dbos.Launch(context.Background(), dbos.Config{SystemDatabaseURL: "mysql://root@localhost/db"})
	if !errors.Is(err, dbos.ErrConfig) || !strings.Contains(err.Error(), "postgres://") {
		t.Fatalf("unknown engine: err = %v; want ErrConfig listing the accepted forms", err)
	}
	start := time.Now()
	_, err = dbos.Launch(context.Background(), dbos.Config{SystemDatabaseURL: "postgres://postgres@127.0.0.1:1/app?sslmode=disable&connect_timeout=2"})
	if !errors.Is(err, dbos.ErrDatabase) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("unreachable server: err = %v; want ErrDatabase naming 127.0.0.1:1", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("unreachable server: Launch took %v", d)
	}
}

// With no URL configured the runtime uses .dbos/<AppName>.sqlite in the
// working directory; a context without a runtime falls back to the first one
// launched (an HTTP handler's r.Context(), say); after Shutdown calls fail
// with a clear error.
func TestDefaultsAndFallbackRuntime(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv(dbos.EnvSystemDatabaseURL, "")
	t.Setenv(dbos.EnvAppDatabaseURL, "")
	rt, err := dbos.Launch(context.Background(), dbos.Config{AppName: "my app", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(".dbos", "my_app.sqlite")); err != nil {
		t.Fatalf("default SQLite file: %v", err)
	}
	in := setBody(t, func(ctx context.Context, in input) (string, error) { return "ran", nil })
	out, err := testWF.Run(context.Background(), in) // no runtime in the context
	if err != nil || out != "ran" {
		t.Fatalf("fallback runtime: %q, %v", out, err)
	}
	shutdown(t, rt)
	if _, err := testWF.Run(dbos.WithRuntime(context.Background(), rt), in); !errors.Is(err, dbos.ErrShutdown) {
		t.Fatalf("after Shutdown: err = %v, want ErrShutdown", err)
	}
	// Issue 10, item 9: not "call dbos.Launch first".
	if _, err := testWF.Run(context.Background(), in); !errors.Is(err, dbos.ErrShutdown) || errors.Is(err, dbos.ErrNoRuntime) {
		t.Fatalf("no runtime left running after Shutdown: err = %v, want ErrShutdown", err)
	}
}
