package dbos

import (
	"context"

	"github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// Operating workflows: list, inspect, cancel, resume, fork and delete them,
// from a Runtime or from a Client that runs none. The same methods exist on
// *Runtime.

// Client operates on a system database's workflows without running any: no
// workflow starts, nothing is recovered. Safe beside live executors.
type Client = engine.Client

// ListFilter selects workflows for ListWorkflows; see its fields.
type ListFilter = engine.ListFilter

// WorkflowInfo is a workflow with its inputs, output and error decoded for
// display.
type WorkflowInfo = engine.WorkflowInfo

// StepDetail is one recorded step: name, output or error, child, timings.
type StepDetail = engine.StepDetail

// ForkOptions tune ForkWorkflow (the new ID, another application version).
type ForkOptions = engine.ForkOptions

// Statuses of queued workflows.
const (
	StatusEnqueued = engine.StatusEnqueued
	StatusDelayed  = engine.StatusDelayed
)

// Errors of the management API.
var (
	ErrInvalidArgument  = engine.ErrInvalidArgument  // a malformed filter, a fork from a step that does not exist
	ErrWorkflowActive   = engine.ErrWorkflowActive   // deleting a running or queued workflow
	ErrWorkflowFinished = engine.ErrWorkflowFinished // resuming a SUCCESS or ERROR workflow (fork it instead)
)

// OpenClient connects to the system database at url (postgres://… or a
// SQLite path) for management, seeing every application's workflows.
// Close it when done.
func OpenClient(ctx context.Context, url string) (*Client, error) { return engine.OpenClient(ctx, url) }

// OpenClientConfig is OpenClient with cfg's system-database fields; with
// cfg.AppName set it sees that application's workflows and unclaimed ones.
func OpenClientConfig(ctx context.Context, cfg Config) (*Client, error) {
	return engine.OpenClientConfig(ctx, cfg)
}
