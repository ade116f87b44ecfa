package engine

import (
	"context"
	"errors"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

// The management API on a Runtime: the Client's, on the runtime's own
// store (see client.go for each operation's contract).

func (rt *Runtime) mgr() manager { return manager{store: rt.store, check: rt.shutDownError} }

// ListWorkflows is Client.ListWorkflows on this runtime's database.
func (rt *Runtime) ListWorkflows(ctx context.Context, f ListFilter) ([]WorkflowInfo, error) {
	return rt.mgr().listWorkflows(ctx, f)
}

// RetrieveWorkflow is Client.RetrieveWorkflow: the workflow's row with its
// values decoded for display (the package-level RetrieveWorkflow returns a
// typed handle instead).
func (rt *Runtime) RetrieveWorkflow(ctx context.Context, id string) (WorkflowInfo, error) {
	return rt.mgr().retrieveWorkflow(ctx, id)
}

// WorkflowSteps is Client.WorkflowSteps.
func (rt *Runtime) WorkflowSteps(ctx context.Context, id string) ([]StepDetail, error) {
	return rt.mgr().workflowSteps(ctx, id)
}

// ResumeWorkflow is Client.ResumeWorkflow.
func (rt *Runtime) ResumeWorkflow(ctx context.Context, id string) error {
	return rt.mgr().resumeWorkflow(ctx, id)
}

// ForkWorkflow is Client.ForkWorkflow.
func (rt *Runtime) ForkWorkflow(ctx context.Context, id string, fromStep int, o ForkOptions) (string, error) {
	return rt.mgr().forkWorkflow(ctx, id, fromStep, o)
}

// DeleteWorkflows is Client.DeleteWorkflows.
func (rt *Runtime) DeleteWorkflows(ctx context.Context, ids []string, children bool) ([]string, error) {
	return rt.mgr().deleteWorkflows(ctx, ids, children)
}

// Retention defaults (see Config.RetentionAge).
const (
	defaultRetentionInterval = time.Hour
	defaultRetentionBatch    = 1000
)

// startRetention runs the retention loop of Config.RetentionAge until
// Shutdown: a first round at once, then one per interval.
func (rt *Runtime) startRetention() {
	if rt.cfg.RetentionAge <= 0 {
		return
	}
	interval := rt.cfg.RetentionInterval
	if interval <= 0 {
		interval = defaultRetentionInterval
	}
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		for {
			if _, err := rt.PruneWorkflows(rt.ctx, rt.cfg.RetentionAge); err != nil && rt.ctx.Err() == nil {
				rt.log.Warn("dbos: retention: deleting old workflows failed; trying again next round", "error", err)
			}
			select {
			case <-rt.ctx.Done():
				return
			case <-time.After(interval):
			}
		}
	}()
}

// PruneWorkflows deletes this application's finished workflows created
// more than age ago, in batches of Config.RetentionBatchSize (one short
// transaction each, so live executors are never blocked for long), and
// returns how many it deleted. Config.RetentionAge runs it on a schedule.
func (rt *Runtime) PruneWorkflows(ctx context.Context, age time.Duration) (int, error) {
	sm, err := rt.mgr().sysManager()
	if err != nil {
		return 0, err
	}
	batch := rt.cfg.RetentionBatchSize
	if batch <= 0 {
		batch = defaultRetentionBatch
	}
	cutoff := time.Now().Add(-age).UnixMilli()
	total := 0
	for {
		n, err := sm.DeleteFinishedBefore(ctx, cutoff, batch)
		if errors.Is(err, sysdb.ErrActive) {
			continue // one was resumed between the read and the delete; the next batch skips it
		}
		total += n
		if err != nil {
			return total, errorf(ErrDatabase, err, "dbos: retention")
		}
		if n < batch {
			rt.log.Debug("dbos: retention round", "deleted", total, "older_than", age)
			return total, nil
		}
	}
}
