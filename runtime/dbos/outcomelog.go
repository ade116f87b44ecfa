package dbos

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

// Terminal outcomes are logged once each, where they happen, with what to do
// next: a workflow that ends badly is otherwise silent until someone calls
// Result, and one left PENDING may never be asked about at all.

func (rt *Runtime) logFailed(wf *workflowState, err error) {
	rt.log.Error("workflow failed", "workflow_id", wf.id, "workflow", wf.name, "error", err,
		"next", "the error is recorded and every call with this workflow ID returns it; fix the cause and start the workflow under a new ID")
}

func (rt *Runtime) logCancelled(wf *workflowState, cause error) {
	rt.log.Warn("workflow cancelled", "workflow_id", wf.id, "workflow", wf.name, "reason", cause,
		"next", "its recorded steps stay; nothing more of it runs; start the workflow under a new ID to run it again")
}

func (rt *Runtime) logParked(row sysdb.WorkflowRow, max int) {
	rt.log.Error("workflow parked after too many recovery attempts", "workflow_id", row.ID, "workflow", row.Name,
		"status", row.Status, "attempts", row.RecoveryAttempts-1, "max_recovery_attempts", max,
		"next", fmt.Sprintf("it started %d times without finishing (a crash, kill or hang each time); "+
			"look for the cause in its recorded steps and those executions' logs, then start it under a new ID", row.RecoveryAttempts-1))
}

// logExhausted logs a step whose attempts all failed; wf is nil outside a
// workflow.
func logExhausted(ctx context.Context, wf *workflowState, stepID int, err error) {
	var mx *MaxStepRetriesExceededError
	if !errors.As(err, &mx) {
		return
	}
	const fix = "fix the cause, or allow more attempts (max_attempts=) if it is transient"
	attrs := []any{"step", mx.Step, "max_attempts", mx.MaxAttempts, "error", err}
	if wf == nil {
		attrs = append(attrs, "next", "the error is returned to the caller; "+fix)
		loggerFor(ctx).Error("step exhausted its retries", attrs...)
		return
	}
	attrs = append(attrs, "workflow_id", wf.id, "workflow", wf.name, "step_id", stepID,
		"next", "the error is recorded as the step's outcome and returned to the workflow; "+fix)
	wf.rt.log.Error("step exhausted its retries", attrs...)
}

// logOtherVersions reports the PENDING workflows of this executor that Launch
// leaves alone because another application version started them.
func (rt *Runtime) logOtherVersions(ctx context.Context) {
	var vs []sysdb.VersionCount
	err := rt.retryDB(ctx, func(ctx context.Context) (err error) {
		vs, err = rt.store.PendingOtherVersions(ctx, rt.cfg.ExecutorID, rt.cfg.ApplicationVersion)
		return err
	})
	if err != nil {
		rt.log.Warn("could not count PENDING workflows of other application versions", "executor_id", rt.cfg.ExecutorID, "error", err)
		return
	}
	if len(vs) == 0 {
		return
	}
	total, names := 0, make([]string, len(vs))
	for i, v := range vs {
		total += v.Count
		names[i] = fmt.Sprintf("%s (%d)", v.Version, v.Count)
	}
	rt.log.Warn("PENDING workflows of other application versions left alone", "executor_id", rt.cfg.ExecutorID,
		"app_version", rt.cfg.ApplicationVersion, "count", total, "versions", strings.Join(names, ", "),
		"next", fmt.Sprintf("launch a binary of that application version with executor ID %s to finish them, or cancel them; "+
			"this version does not run them, because their recorded steps may not match its code", rt.cfg.ExecutorID))
}
