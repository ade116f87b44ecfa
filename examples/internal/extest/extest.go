// Package extest builds and runs the examples in tests, against a temporary
// SQLite file or a fresh PostgreSQL database.
package extest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
)

// Build compiles the example in the current directory and returns the path
// of its binary.
func Build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "example")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Env is where an example runs: its working directory (where the default
// .dbos/<app>.sqlite goes) and its system database URL ("" for the default).
type Env struct {
	Dir         string
	DatabaseURL string
}

// Engines returns one Env per engine: the embedded SQLite default in a
// fresh directory, and a fresh PostgreSQL database.
func Engines(t *testing.T) map[string]func(t *testing.T) Env {
	return map[string]func(t *testing.T) Env{
		"sqlite":   func(t *testing.T) Env { return Env{Dir: t.TempDir()} },
		"postgres": func(t *testing.T) Env { return Env{Dir: t.TempDir(), DatabaseURL: dbtest.Postgres(t)} },
	}
}

// Result is how a run ended.
type Result struct {
	Output   string
	ExitCode int  // -1 when killed by a signal
	Killed   bool // ended by SIGKILL
}

// Run runs bin with args in e, with a time limit.
func Run(t *testing.T, e Env, bin string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = e.Dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DBOS_SYSTEM_DATABASE_URL=") && !strings.HasPrefix(kv, "APP_DATABASE_URL=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if e.DatabaseURL != "" {
		cmd.Env = append(cmd.Env, "DBOS_SYSTEM_DATABASE_URL="+e.DatabaseURL)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	res := Result{Output: out.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		t.Fatalf("%s %v did not finish in time:\n%s", filepath.Base(bin), args, res.Output)
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitCode()
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Killed = ws.Signal() == syscall.SIGKILL
		}
	default:
		t.Fatalf("running %s: %v", bin, err)
	}
	t.Logf("$ %s %s\n%s", filepath.Base(bin), strings.Join(args, " "), res.Output)
	return res
}

// Contains fails t unless out contains every one of wants, in order.
func Contains(t *testing.T, out string, wants ...string) {
	t.Helper()
	rest := out
	for _, w := range wants {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("output lacks %q (in order):\n%s", w, out)
		}
		rest = rest[i+len(w):]
	}
}

// Lacks fails t if out contains any of nots.
func Lacks(t *testing.T, out string, nots ...string) {
	t.Helper()
	for _, n := range nots {
		if strings.Contains(out, n) {
			t.Fatalf("output contains %q:\n%s", n, out)
		}
	}
}
