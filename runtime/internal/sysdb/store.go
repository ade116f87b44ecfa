// Package sysdb is the system database: where workflow status and step
// outcomes are recorded. One Store interface, one implementation per engine.
package sysdb

import (
	"context"
	"errors"
)

// Workflow statuses, spelled as DBOS spells them.
const (
	StatusPending    = "PENDING"
	StatusSuccess    = "SUCCESS"
	StatusError      = "ERROR"
	StatusCancelled  = "CANCELLED"
	StatusDeadLetter = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
)

// FormatJSON names the serialization format of a row's values.
const FormatJSON = "json"

// ErrNotFound is returned when a workflow row does not exist.
var ErrNotFound = errors.New("not found")

// ErrSchemaTooNew is returned by Migrate when the database was migrated by a
// newer release than this one.
var ErrSchemaTooNew = errors.New("system database schema is newer than this dbosgen release")

// WorkflowRow is one row of workflow_status. Output and Error hold JSON; an
// empty string stands for SQL NULL (JSON encodings are never empty).
type WorkflowRow struct {
	ID               string
	Name             string
	Status           string
	ExecutorID       string
	AppVersion       string
	AppName          string
	Inputs           string
	Output           string
	Error            string
	ParentID         string
	RecoveryAttempts int
	TimeoutMS        int64 // 0: none
	DeadlineMS       int64 // unix ms; 0: none
	CreatedMS        int64
	UpdatedMS        int64
}

// InitParams describes a workflow execution that is about to start.
type InitParams struct {
	Row                 WorkflowRow // Status is ignored: a new row is PENDING
	MaxRecoveryAttempts int
	// DeadLetterError is the JSON error recorded when this start pushes the
	// workflow past MaxRecoveryAttempts.
	DeadLetterError string
}

// InitResult is the row as it stands after InitWorkflow.
type InitResult struct {
	Row      WorkflowRow
	Inserted bool // the workflow did not exist before
}

// StepRow is one row of operation_outputs.
type StepRow struct {
	WorkflowID string
	StepID     int
	Name       string
	Output     string
	Error      string
	ChildID    string
}

// Store is the system database. Every method is one statement unless it says
// otherwise, so that the per-step cost stays one round trip.
type Store interface {
	// Migrate creates or upgrades the schema; safe to call from several
	// processes at once.
	Migrate(ctx context.Context) error
	// InitWorkflow inserts a PENDING workflow, or, when the ID exists, counts
	// a new execution attempt of a PENDING one (dead-lettering it past the
	// limit) and returns the row either way.
	InitWorkflow(ctx context.Context, p InitParams) (InitResult, error)
	// Steps returns every recorded outcome of a workflow, in step order.
	Steps(ctx context.Context, workflowID string) ([]StepRow, error)
	// RecordStep records a step outcome. When an outcome is already recorded
	// under that step ID it is returned instead, with recorded=false.
	RecordStep(ctx context.Context, s StepRow) (stored StepRow, recorded bool, err error)
	// FinishWorkflow moves a PENDING workflow to status; it reports whether
	// the row was PENDING.
	FinishWorkflow(ctx context.Context, id, status, output, errJSON string) (bool, error)
	// Workflow returns one workflow's row or ErrNotFound.
	Workflow(ctx context.Context, id string) (WorkflowRow, error)
	// Pending lists the PENDING workflows of an executor and version.
	Pending(ctx context.Context, executorID, appVersion string) ([]WorkflowRow, error)
	// Cancel moves a PENDING workflow to CANCELLED and tells listeners.
	Cancel(ctx context.Context, id, errJSON string) (bool, error)
	// Cancelled returns those of ids whose status is CANCELLED.
	Cancelled(ctx context.Context, ids []string) ([]string, error)
	// WatchCancellations calls fn with the ID of every workflow cancelled from
	// now on, until ctx ends. It reports whether it delivers notifications
	// (true) or the caller must poll Cancelled (false).
	WatchCancellations(ctx context.Context, fn func(id string)) bool
	Close()
}
