package engine

import (
	"context"
	"fmt"
	"sync/atomic"
)

// Client operates on the workflows of a system database without running
// any: it starts no workflow, recovers nothing and holds no executor
// identity, so a script, an admin tool or the inspector can use it beside
// live executors.
type Client struct {
	manager
	cfg    resolved
	closed atomic.Bool
}

// clientPoolSize caps a client's PostgreSQL connections by default: it runs
// one statement at a time per request, not workflows.
const clientPoolSize = 4

// OpenClient connects to the system database at url (a PostgreSQL URL or a
// SQLite path, as Config.SystemDatabaseURL) and sees every application's
// workflows. The database's schema is created if missing, as Launch would.
func OpenClient(ctx context.Context, url string) (*Client, error) {
	return OpenClientConfig(ctx, Config{SystemDatabaseURL: url})
}

// OpenClientConfig is OpenClient with the fields of cfg that concern the
// system database (SystemDatabaseURL, Schema, SystemPoolSize,
// ConnectionWaitTimeout, Logger). With AppName set, listings show that
// application's workflows and unclaimed ones only, as DBOS's client does.
func OpenClientConfig(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.SystemPoolSize == 0 {
		cfg.SystemPoolSize = clientPoolSize
	}
	rc, err := resolveConfig(cfg)
	if err != nil {
		return nil, err
	}
	// resolveConfig names an unnamed application "dbos"; a client without a
	// name filters on none.
	rc.AppName = cfg.AppName
	store, _, err := openStore(ctx, rc)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: rc}
	c.manager = manager{store: store, check: c.closedError}
	return c, nil
}

func (c *Client) closedError() error {
	if c.closed.Load() {
		return fmt.Errorf("%w: the client was closed", ErrShutdown)
	}
	return nil
}

// Close closes the client's connections.
func (c *Client) Close() {
	if c.closed.CompareAndSwap(false, true) {
		c.store.Close()
	}
}

// ListWorkflows returns the workflows f selects, newest first unless
// f.OldestFirst.
func (c *Client) ListWorkflows(ctx context.Context, f ListFilter) ([]WorkflowInfo, error) {
	return c.listWorkflows(ctx, f)
}

// RetrieveWorkflow returns one workflow, or an error wrapping
// ErrWorkflowNotFound.
func (c *Client) RetrieveWorkflow(ctx context.Context, id string) (WorkflowInfo, error) {
	return c.retrieveWorkflow(ctx, id)
}

// WorkflowSteps returns a workflow's recorded steps in order.
func (c *Client) WorkflowSteps(ctx context.Context, id string) ([]StepDetail, error) {
	return c.workflowSteps(ctx, id)
}

// CancelWorkflow cancels a workflow that has not finished, with its
// unfinished descendants; the executors running them see it and stop at
// their next step. Cancelling a finished workflow changes nothing.
func (c *Client) CancelWorkflow(ctx context.Context, id string) error {
	return c.cancelWorkflow(ctx, id)
}

// ResumeWorkflow enqueues a CANCELLED or MAX_RECOVERY_ATTEMPTS_EXCEEDED
// workflow on DBOS's internal queue (InternalQueue) with its recovery
// attempts reset, as DBOS's resume does; an executor of its application
// version runs it from its last recorded step. A SUCCESS or ERROR workflow
// cannot be resumed (ErrWorkflowFinished): its outcome is recorded, so a
// re-run would replay it; fork it instead.
func (c *Client) ResumeWorkflow(ctx context.Context, id string) error {
	return c.resumeWorkflow(ctx, id)
}

// ForkWorkflow starts a new workflow from workflow id: same name and
// inputs, the outcomes of the steps before fromStep copied (step IDs start
// at 1; fromStep 0 or 1 re-runs every step), enqueued on InternalQueue,
// optionally on another application version. It returns the new ID. A
// fromStep past the last recorded step + 1 fails with ErrInvalidArgument.
func (c *Client) ForkWorkflow(ctx context.Context, id string, fromStep int, o ForkOptions) (string, error) {
	return c.forkWorkflow(ctx, id, fromStep, o)
}

// DeleteWorkflows deletes finished workflows (and, with children, their
// descendants) with their inputs, outcomes and steps, and returns the IDs
// deleted (unknown IDs are skipped). An active workflow (PENDING, ENQUEUED,
// DELAYED) fails the whole call with ErrWorkflowActive: cancel it first.
func (c *Client) DeleteWorkflows(ctx context.Context, ids []string, children bool) ([]string, error) {
	return c.deleteWorkflows(ctx, ids, children)
}
