package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

// Terminal outcomes are logged once each, where they happen, with what to do
// next: a workflow that ends badly is otherwise silent until someone calls
// Result, and one left PENDING may never be asked about at all. The logs are
// the runtime's first Observer: they see the same events as Config.Observer.

// logObserver writes the runtime's logs of outcomes and retries to log
// (slog.Default() when nil).
type logObserver struct {
	NopObserver
	log *slog.Logger
}

func (l logObserver) logger() *slog.Logger {
	if l.log == nil {
		return slog.Default()
	}
	return l.log
}

func (l logObserver) WorkflowEnded(_ context.Context, e WorkflowExecutionEnd) {
	switch {
	case e.Status == StatusCancelled:
		l.logger().Warn("workflow cancelled", "workflow_id", e.ID, "workflow", e.Name, "reason", e.Err,
			"next", "its recorded steps stay; nothing more of it runs; start the workflow under a new ID to run it again")
	case e.Superseded:
		// Another execution recorded the outcome, and logs it.
	case e.Status == StatusError:
		l.logger().Error("workflow failed", "workflow_id", e.ID, "workflow", e.Name, "error", e.Err,
			"next", "the error is recorded and every call with this workflow ID returns it; fix the cause and start the workflow under a new ID")
	case e.Status == StatusPending && (errors.Is(e.Err, ErrDatabase) || errors.Is(e.Err, ErrCorruptRecord)):
		l.logger().Error("workflow stopped without recording an outcome", "workflow_id", e.ID, "workflow", e.Name, "error", e.Err)
	}
}

func (l logObserver) WorkflowParked(_ context.Context, e WorkflowParked) {
	l.logger().Error("workflow parked after too many recovery attempts", "workflow_id", e.ID, "workflow", e.Name,
		"status", e.Status, "attempts", e.Executions, "max_recovery_attempts", e.MaxRecoveryAttempts,
		"next", fmt.Sprintf("it started %d times without finishing (a crash, kill or hang each time); "+
			"look for the cause in its recorded steps and those executions' logs, then start it under a new ID", e.Executions))
}

func (l logObserver) StepEnded(_ context.Context, e StepAttemptEnd) {
	switch {
	case e.Retry:
		l.logger().Warn("step attempt failed; retrying", "step", e.Name, "workflow_id", e.WorkflowID,
			"step_id", e.StepID, "attempt", e.Attempt+1, "max_attempts", e.MaxAttempts, "retry_in", e.RetryIn, "error", e.Err)
	case e.Exhausted != nil:
		const fix = "fix the cause, or allow more attempts (max_attempts=) if it is transient"
		attrs := []any{"step", e.Exhausted.Step, "max_attempts", e.Exhausted.MaxAttempts, "error", e.Exhausted}
		if e.WorkflowID == "" {
			attrs = append(attrs, "next", "the error is returned to the caller; "+fix)
		} else {
			attrs = append(attrs, "workflow_id", e.WorkflowID, "workflow", e.WorkflowName, "step_id", e.StepID,
				"next", "the error is recorded as the step's outcome and returned to the workflow; "+fix)
		}
		l.logger().Error("step exhausted its retries", attrs...)
	}
}

func (l logObserver) TransactionEnded(_ context.Context, e TransactionAttemptEnd) {
	if e.Retry {
		l.logger().Info("transaction retried after a "+e.RetryReason, "transaction", e.Name,
			"workflow_id", e.WorkflowID, "step_id", e.StepID, "attempt", e.Attempt+1, "error", e.Err)
	}
}

func (l logObserver) LeftAlone(_ context.Context, e LeftAlone) {
	if e.WorkflowID != "" {
		l.logger().Error("workflow not recovered", "workflow_id", e.WorkflowID, "workflow", e.WorkflowName, "error", e.Err)
		return
	}
	if len(e.Versions) == 0 {
		return
	}
	total, names := 0, make([]string, len(e.Versions))
	for i, v := range e.Versions {
		total += v.Count
		names[i] = fmt.Sprintf("%s (%d)", v.Version, v.Count)
	}
	l.logger().Warn("PENDING workflows of other application versions left alone", "executor_id", e.ExecutorID,
		"app_version", e.AppVersion, "count", total, "versions", strings.Join(names, ", "),
		"next", fmt.Sprintf("launch a binary of that application version with executor ID %s to finish them, or cancel them; "+
			"this version does not run them, because their recorded steps may not match its code", e.ExecutorID))
}

// reportOtherVersions reports the PENDING workflows of this executor that
// Launch leaves alone because another application version started them.
func (rt *Runtime) reportOtherVersions(ctx context.Context) {
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
	e := LeftAlone{ExecutorID: rt.cfg.ExecutorID, AppVersion: rt.cfg.ApplicationVersion, Versions: make([]VersionCount, len(vs))}
	for i, v := range vs {
		e.Versions[i] = VersionCount{Version: v.Version, Count: v.Count}
	}
	rt.obs.LeftAlone(ctx, e)
}
