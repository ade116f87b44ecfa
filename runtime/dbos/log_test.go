package dbos_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/runtime/dbos"
)

// logRecorder is a slog.Handler that keeps every record with its attributes,
// so tests can check what the runtime logged and with what.
type logRecorder struct {
	mu   sync.Mutex
	recs []capturedLog
}

type capturedLog struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (c *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (c *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *logRecorder) WithGroup(string) slog.Handler            { return c }

func (c *logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := capturedLog{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	c.mu.Lock()
	c.recs = append(c.recs, rec)
	c.mu.Unlock()
	return nil
}

// find returns the records with message msg and every key=value of kv.
func (c *logRecorder) find(msg string, kv ...string) []capturedLog {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []capturedLog
next:
	for _, r := range c.recs {
		if r.msg != msg {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if r.attrs[kv[i]] != kv[i+1] {
				continue next
			}
		}
		out = append(out, r)
	}
	return out
}

// once checks that exactly one record matches, and that it says what to do
// next, and returns it.
func (c *logRecorder) once(t *testing.T, msg string, kv ...string) capturedLog {
	t.Helper()
	got := c.find(msg, kv...)
	if len(got) != 1 {
		t.Fatalf("%d log records %q with %v, want 1", len(got), msg, kv)
	}
	if got[0].attrs["next"] == "" || got[0].level < slog.LevelWarn {
		t.Errorf("log record %q at %v with %v: want a warning or error saying what to do next", msg, got[0].level, got[0].attrs)
	}
	return got[0]
}

// Issue 10, item 8: every terminal outcome is logged once, with the
// workflow's ID and name and what to do next: a workflow in ERROR, a step
// out of retries, a cancellation, a workflow parked after too many recovery
// attempts, and the PENDING workflows of other versions Launch leaves alone.
func TestTerminalOutcomesLogged(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		logs := &logRecorder{}
		withLogs := func(c *dbos.Config) { c.Logger = slog.New(logs) }
		version := func(v string) func(*dbos.Config) { return func(c *dbos.Config) { c.ApplicationVersion = v } }
		var c counter
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			switch in.N {
			case 1:
				return dbos.RunStep(ctx, &dbos.StepOptions{Name: "flaky", RetriesAllowed: true, MaxAttempts: 2, Interval: time.Millisecond},
					func(ctx context.Context) (string, error) { return "", errors.New("still down") })
			case 2:
				id, _ := dbos.WorkflowID(ctx)
				c.inc(id)
				<-ctx.Done()
				return "", ctx.Err()
			}
			return "", errors.New("boom")
		})
		blocking := in
		blocking.N = 2

		// Left behind by another version.
		rt, ctx := launch(t, url, version("v0"), withLogs)
		for _, id := range []string{"old-1", "old-2"} {
			must(testWF.Start(dbos.WithWorkflowID(ctx, id), blocking))
			waitFor(t, id+" to run", func() bool { return c.get(id) == 1 })
		}
		shutdown(t, rt)
		_, ctx = launch(t, url, version("v1"), withLogs)
		r := logs.once(t, "PENDING workflows of other application versions left alone", "executor_id", "exec-1")
		if r.attrs["count"] != "2" || !strings.Contains(r.attrs["versions"], "v0 (2)") {
			t.Errorf("other versions logged as %v; want count 2 naming v0 (2)", r.attrs)
		}

		if _, err := testWF.Run(dbos.WithWorkflowID(ctx, "failing"), in); err == nil {
			t.Fatal("failing workflow succeeded")
		}
		logs.once(t, "workflow failed", "workflow_id", "failing", "workflow", "test.wf")

		retrying := in
		retrying.N = 1
		if _, err := testWF.Run(dbos.WithWorkflowID(ctx, "retrying"), retrying); !errors.Is(err, dbos.ErrMaxStepRetriesExceeded) {
			t.Fatalf("retrying: err = %v", err)
		}
		logs.once(t, "step exhausted its retries", "workflow_id", "retrying", "workflow", "test.wf", "step", "flaky")
		logs.once(t, "workflow failed", "workflow_id", "retrying")
		// Calling finished workflows again logs nothing more.
		_, _ = testWF.Run(dbos.WithWorkflowID(ctx, "retrying"), retrying)
		logs.once(t, "step exhausted its retries", "workflow_id", "retrying")
		logs.once(t, "workflow failed", "workflow_id", "retrying")

		h := must(testWF.Start(dbos.WithWorkflowID(ctx, "cancelled"), blocking))
		waitFor(t, "cancelled to run", func() bool { return c.get("cancelled") == 1 })
		must(struct{}{}, dbos.CancelWorkflow(ctx, "cancelled"))
		if _, err := h.Result(ctx); !errors.Is(err, dbos.ErrWorkflowCancelled) {
			t.Fatalf("cancelled: err = %v", err)
		}
		logs.once(t, "workflow cancelled", "workflow_id", "cancelled", "workflow", "test.wf")

		// Parked: one recovery past max_recovery_attempts (2).
		rt, ctx = launch(t, url, version("v1"), withExecutor("parker"), withLogs)
		must(fragileWF.Start(dbos.WithWorkflowID(ctx, "parked"), blocking))
		waitFor(t, "parked to run", func() bool { return c.get("parked") == 1 })
		shutdown(t, rt)
		rt, _ = launch(t, url, version("v1"), withExecutor("fixer"))
		execSQL(t, rt, "UPDATE {dbos}workflow_status SET recovery_attempts = 3 WHERE workflow_uuid = 'parked'")
		shutdown(t, rt)
		rt, ctx = launch(t, url, version("v1"), withExecutor("parker"), withLogs)
		logs.once(t, "workflow parked after too many recovery attempts", "workflow_id", "parked", "workflow", "test.fragile")
		if _, err := fragileWF.Run(dbos.WithWorkflowID(ctx, "parked"), blocking); !errors.Is(err, dbos.ErrMaxRecoveryAttemptsExceeded) {
			t.Fatalf("parked: err = %v", err)
		}
		logs.once(t, "workflow parked after too many recovery attempts", "workflow_id", "parked")
	})
}
