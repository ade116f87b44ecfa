package engine_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// startWF starts testWF with body b under id and returns its handle.
func startWF(t *testing.T, ctx context.Context, id string, b body) *dbos.WorkflowHandle[string] {
	t.Helper()
	in := setBody(t, b)
	return must(testWF.Start(dbos.WithWorkflowID(ctx, id), in))
}

func result(t *testing.T, h *dbos.WorkflowHandle[string]) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return h.Result(ctx)
}

func TestSleepRecordsWakeTime(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		h := startWF(t, ctx, "sleeper", func(ctx context.Context, in input) (string, error) {
			if err := dbos.Sleep(ctx, 200*time.Millisecond); err != nil {
				return "", err
			}
			return "awake", nil
		})
		began := time.Now()
		if out, err := result(t, h); err != nil || out != "awake" {
			t.Fatalf("result = %q, %v", out, err)
		}
		if d := time.Since(began); d < 150*time.Millisecond {
			t.Errorf("returned after %v: the sleep did not sleep", d)
		}
		name := scalar[string](t, rt, "SELECT function_name FROM {dbos}operation_outputs WHERE workflow_uuid = 'sleeper' AND function_id = 1")
		if name != "DBOS.sleep" {
			t.Errorf("step 1 is %q, want DBOS.sleep", name)
		}
	})
}

// A recorded wake-up time in the past: the replay does not sleep again.
func TestSleepReplayWaitsOnlyWhatRemains(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		release := make(chan struct{})
		h := startWF(t, ctx, "replayed-sleep", func(ctx context.Context, in input) (string, error) {
			if err := dbos.Sleep(ctx, time.Hour); err != nil {
				return "", err
			}
			<-release
			return "done", nil
		})
		_ = h
		waitFor(t, "the sleep step", func() bool {
			return scalar[int](t, rt, "SELECT count(*) FROM {dbos}operation_outputs WHERE workflow_uuid = 'replayed-sleep'") == 1
		})
		// Move the recorded wake-up into the past, as if the hour had gone
		// by while the process was down, then resume in a new runtime.
		past := fmt.Sprint(time.Now().Add(-time.Second).UnixMilli())
		execSQL(t, rt, "UPDATE {dbos}operation_outputs SET output = '"+past+"' WHERE workflow_uuid = 'replayed-sleep'")
		shutdown(t, rt)
		close(release)
		_, ctx2 := launch(t, url)
		h2 := must(dbos.RetrieveWorkflow[string](ctx2, "replayed-sleep"))
		if out, err := result(t, h2); err != nil || out != "done" {
			t.Fatalf("result after recovery = %q, %v", out, err)
		}
	})
}

func TestSleepEndsOnCancel(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		h := startWF(t, ctx, "cancel-sleep", func(ctx context.Context, in input) (string, error) {
			return "", dbos.Sleep(ctx, time.Hour)
		})
		time.Sleep(100 * time.Millisecond)
		must(0, dbos.CancelWorkflow(ctx, "cancel-sleep"))
		if _, err := result(t, h); !errors.Is(err, dbos.ErrWorkflowCancelled) {
			t.Fatalf("err = %v, want ErrWorkflowCancelled", err)
		}
	})
}
