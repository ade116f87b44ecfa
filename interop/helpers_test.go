package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/jackc/pgx/v5"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	"github.com/dbosgen/dbosgen/interop/app"
	dbosgen "github.com/dbosgen/dbosgen/runtime/dbos"
)

// The two applications sharing a system database. They share an executor ID
// and an application version on purpose: only application_name tells their
// workflows apart, so recovery that ignored it would show.
const (
	genApp     = "interop-gen" // the dbosgen application (./app)
	sdkApp     = "interop-sdk" // the DBOS SDK application (sdk_test.go)
	executorID = "local"
	appVersion = "interop-v1"
	appPkg     = "github.com/dbosgen/dbosgen/interop/app"
)

// cancelWithin bounds how long a dbosgen workflow may keep running after a
// DBOS client cancelled it. DBOS's CancelWorkflow sends no notification, so
// dbosgen sees it by polling the status row.
const cancelWithin = 6 * time.Second

// testLogger returns the logger a test's runtimes and clients log to. Their
// logs are kept and printed only if the test fails (a logger that called
// t.Log would panic when a runtime logs after its test ended).
func testLogger(t *testing.T, who string) *slog.Logger {
	t.Helper()
	buf := &lockedBuffer{}
	t.Cleanup(func() {
		if logs := buf.String(); t.Failed() && logs != "" {
			t.Logf("logs of %s:\n%s", who, logs)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// childLogger is what a child process logs to: its stderr, which the parent
// prints if the child fails.
var childLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role))
	}
	code := m.Run()
	cleanupCLI()
	os.Exit(code)
}

// newDB creates a fresh PostgreSQL database for t (dropped when t ends) and
// returns its URL; it fails t saying how to start PostgreSQL if it is down.
func newDB(t *testing.T) string {
	t.Helper()
	return dbtest.Postgres(t)
}

// launchGen launches a dbosgen runtime of genApp on url; it is shut down when
// t ends unless the test shuts it down first.
func launchGen(t *testing.T, url string) *dbosgen.Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rt, err := dbosgen.Launch(ctx, dbosgen.Config{
		AppName:            genApp,
		SystemDatabaseURL:  url,
		ExecutorID:         executorID,
		ApplicationVersion: appVersion,
		Logger:             testLogger(t, "the dbosgen runtime launched at "+time.Now().Format("15:04:05.000")),
		Setup:              app.Setup,
	})
	if err != nil {
		t.Fatalf("dbosgen.Launch(AppName %q) on %s: %v", genApp, url, err)
	}
	t.Cleanup(func() { shutdownGen(t, rt) })
	return rt
}

func shutdownGen(t *testing.T, rt *dbosgen.Runtime) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := rt.Shutdown(ctx); err != nil {
		t.Errorf("dbosgen rt.Shutdown: %v", err)
	}
}

// on returns a context that runs dbosgen wrappers on rt (several runtimes
// live in this process, so the default one is never relied upon).
func on(rt *dbosgen.Runtime) context.Context {
	return dbosgen.WithRuntime(context.Background(), rt)
}

// newClient opens the DBOS SDK's client on url, acting for appName ("" is the
// nameless client the DBOS CLI uses: it sees every application).
func newClient(t *testing.T, url, appName string) sdk.Client {
	t.Helper()
	// The client's own context derives from this one for its whole life, so
	// it is not bounded here; SystemDBStartupTimeout bounds the connection.
	c, err := sdk.NewClient(context.Background(), sdk.ClientConfig{
		DatabaseURL:            url,
		AppName:                appName,
		Logger:                 testLogger(t, fmt.Sprintf("the DBOS client of %q", appName)),
		SystemDBStartupTimeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatalf("DBOS SDK v1.8.0 dbos.NewClient(AppName %q) on a database made by dbosgen: %v", appName, err)
	}
	t.Cleanup(func() {
		if err := sdk.Shutdown(c, 10*time.Second); err != nil {
			t.Errorf("DBOS client Shutdown: %v", err)
		}
	})
	return c
}

// listOne lists one workflow with inputs and outputs loaded (a client that is
// not launched loads neither by default).
func listOne(t *testing.T, c sdk.Client, id string) (sdk.WorkflowStatus, bool) {
	t.Helper()
	ws, err := sdk.ListWorkflows(c, sdk.WithFilterWorkflowIDs(id),
		sdk.WithFilterLoadInput(true), sdk.WithFilterLoadOutput(true))
	if err != nil {
		t.Fatalf("DBOS client ListWorkflows(WithFilterWorkflowIDs(%q)): %v", id, err)
	}
	if len(ws) == 0 {
		return sdk.WorkflowStatus{}, false
	}
	return ws[0], true
}

// steps returns a workflow's steps with their outputs loaded.
func steps(t *testing.T, c sdk.Client, id string) []sdk.StepInfo {
	t.Helper()
	st, err := sdk.GetWorkflowSteps(c, id, sdk.WithStepsLoadOutput(true))
	if err != nil {
		t.Fatalf("DBOS client GetWorkflowSteps(%q): %v", id, err)
	}
	return st
}

// sameJSON reports whether got, marshalled to JSON, equals want (JSON text),
// comparing values rather than text.
func sameJSON(got any, want string) (bool, string) {
	b, err := json.Marshal(got)
	if err != nil {
		return false, fmt.Sprintf("<unmarshallable %T: %v>", got, err)
	}
	var g, w any
	if err := json.Unmarshal(b, &g); err != nil {
		return false, string(b)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		panic(fmt.Sprintf("bad expected JSON %s: %v", want, err))
	}
	return reflect.DeepEqual(g, w), string(b)
}

func checkJSON(t *testing.T, what string, got any, want string) {
	t.Helper()
	if ok, gotText := sameJSON(got, want); !ok {
		t.Errorf("%s:\n  got  %s (Go type %T)\n  want %s", what, gotText, got, want)
	}
}

// portable returns err as DBOS's cross-language error, if it is one.
func portable(err error) (*sdk.PortableWorkflowError, bool) {
	var pe *sdk.PortableWorkflowError
	ok := errors.As(err, &pe)
	return pe, ok
}

func describeErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	if pe, ok := portable(err); ok {
		return fmt.Sprintf("PortableWorkflowError{Name: %q, Message: %q, Code: %v, Data: %v}", pe.Name, pe.Message, pe.Code, pe.Data)
	}
	return fmt.Sprintf("%T: %v", err, err)
}

// query runs one SQL query on url and returns its single row, scanned into dest.
func query(t *testing.T, url, sql string, args []any, dest ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		t.Fatalf("%s %v: %v", sql, args, err)
	}
}

// rawRow is a workflow_status row as stored, read without any SDK.
type rawRow struct {
	Status, Name, AppName, Executor, Version, Queue string
	Attempts                                        int64
	Updated                                         int64
}

func (r rawRow) String() string {
	return fmt.Sprintf("status=%s name=%s application_name=%s executor_id=%s application_version=%s queue_name=%q recovery_attempts=%d updated_at=%d",
		r.Status, r.Name, r.AppName, r.Executor, r.Version, r.Queue, r.Attempts, r.Updated)
}

func readRow(t *testing.T, url, id string) rawRow {
	t.Helper()
	var r rawRow
	query(t, url, `SELECT status, name, COALESCE(application_name, '<NULL>'), executor_id, application_version,
		COALESCE(queue_name, ''), recovery_attempts, updated_at FROM dbos.workflow_status WHERE workflow_uuid = $1`,
		[]any{id}, &r.Status, &r.Name, &r.AppName, &r.Executor, &r.Version, &r.Queue, &r.Attempts, &r.Updated)
	return r
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// The DBOS CLI (github.com/dbos-inc/dbos-transact-golang/cmd/dbos), built
// once per test run.
var cli struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func cliBinary(t *testing.T) string {
	t.Helper()
	cli.once.Do(func() {
		cli.dir, cli.err = os.MkdirTemp("", "interop-dbos-cli-")
		if cli.err != nil {
			return
		}
		cli.path = filepath.Join(cli.dir, "dbos")
		cmd := exec.Command("go", "build", "-o", cli.path, "github.com/dbos-inc/dbos-transact-golang/cmd/dbos")
		out, err := cmd.CombinedOutput()
		if err != nil {
			cli.err = fmt.Errorf("go build github.com/dbos-inc/dbos-transact-golang/cmd/dbos: %v\n%s", err, out)
		}
	})
	if cli.err != nil {
		t.Fatal(cli.err)
	}
	return cli.path
}

func cleanupCLI() {
	if cli.dir != "" {
		os.RemoveAll(cli.dir)
	}
}

// runCLI runs the DBOS CLI with args in an empty directory (so no
// dbos-config.yaml is picked up) and returns its stdout.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := cliBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = withoutEnv(os.Environ(), "DBOS_SYSTEM_DATABASE_URL", "DBOS__APPVERSION", "DBOS__VMID")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("dbos %s: %v\nstderr: %s", strings.Join(redactArgs(args), " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func redactArgs(args []string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if i > 0 && out[i-1] == "--db-url" {
			out[i] = "<url>"
		}
	}
	return out
}

func withoutEnv(env []string, names ...string) []string {
	var out []string
outer:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue outer
			}
		}
		out = append(out, kv)
	}
	return out
}
