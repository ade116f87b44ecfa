// Package sysdb is the system database: DBOS Transact's schema (see
// schema_postgres.go), where workflow status, inputs, outcomes and step
// outcomes are recorded. One Store interface, one implementation per engine,
// both built from the canonical queries in queries.go.
package sysdb

import (
	"context"
	"errors"
)

// Workflow statuses, spelled as DBOS spells them.
const (
	StatusPending    = "PENDING"
	StatusEnqueued   = "ENQUEUED"
	StatusDelayed    = "DELAYED"
	StatusSuccess    = "SUCCESS"
	StatusError      = "ERROR"
	StatusCancelled  = "CANCELLED"
	StatusDeadLetter = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
)

// Serialization formats of a row's values, as DBOS names them. dbosgen
// writes FormatPortable; it reads FormatDBOSJSON (the DBOS Go SDK's default)
// and rows with no format, which DBOS reads as FormatDBOSJSON.
const (
	FormatPortable = "portable_json"
	FormatDBOSJSON = "DBOS_JSON"
)

// ErrNotFound is returned when a workflow row does not exist.
var ErrNotFound = errors.New("not found")

// WorkflowRow is a workflow as the runtime sees it: workflow_status joined
// with workflow_input and workflow_output. Text columns that are NULL read as
// "" (stored values are never empty: JSON encodings have at least one byte).
type WorkflowRow struct {
	ID               string
	Name             string
	Status           string
	ExecutorID       string
	AppVersion       string
	AppName          string // application_name: the application that owns the row
	QueueName        string
	Serialization    string
	Inputs           string
	Output           string
	Error            string
	ParentID         string
	RecoveryAttempts int
	TimeoutMS        int64 // 0: none
	DeadlineMS       int64 // unix ms; 0: none
	CreatedMS        int64
	UpdatedMS        int64
	// Attributes is the attributes column as JSON object text ("" when
	// NULL). DBOS keeps user-defined workflow attributes there; dbosgen
	// adds its own keys (the starting caller's trace context). InitWorkflow
	// writes it when it inserts the row and never changes it afterwards.
	Attributes string
}

// racedSnapshot reports a row the start statement read half-way: inputs
// missing, or a finished status without its outcome (every recorded value
// has at least one byte).
func (w WorkflowRow) racedSnapshot() bool {
	finished := w.Status == StatusSuccess || w.Status == StatusError
	return w.Inputs == "" || finished && w.Output == "" && w.Error == ""
}

// InitParams describes a workflow execution that is about to start.
type InitParams struct {
	Row                 WorkflowRow // Status is ignored: a new row is PENDING
	MaxRecoveryAttempts int
	// Recovery: this start resumes the workflow for this executor (a
	// recovery, an adoption), so it takes a PENDING row over whoever holds
	// it. A new call takes over only a row of this executor's.
	Recovery bool
	// DeadLetterError makes the error recorded when this start pushes the
	// workflow past MaxRecoveryAttempts: only then, as a start almost never
	// does.
	DeadLetterError func() string
}

// InitResult is the row as it stands after InitWorkflow.
type InitResult struct {
	Row      WorkflowRow
	Inserted bool // the workflow did not exist before
}

// FinishParams is a workflow's outcome.
type FinishParams struct {
	ID     string
	Status string // StatusSuccess or StatusError
	Output string // encoded result; "" for none
	Error  string // encoded error; "" for none
}

// CancelParams names the workflow to cancel with its descendants.
type CancelParams struct {
	ID string
}

// StepRow is one row of operation_outputs.
type StepRow struct {
	WorkflowID    string
	StepID        int
	Name          string
	Output        string
	Error         string
	ChildID       string
	Serialization string // "" when written by this release: FormatPortable
	StartedMS     int64  // 0: unknown
	CompletedMS   int64
}

// VersionCount is how many workflows one application version has.
type VersionCount struct {
	Version string
	Count   int
}

// Store is the system database. Every method is one statement on PostgreSQL
// unless it says otherwise, so that the per-step cost stays one round trip.
type Store interface {
	// Migrate creates DBOS's schema on a fresh database, or checks that an
	// existing one is at SchemaVersion or later; safe to call from several
	// processes at once.
	Migrate(ctx context.Context) (MigrateResult, error)
	// InitWorkflow inserts a PENDING workflow with its inputs, or, when the
	// ID exists, counts a new execution attempt of a PENDING one
	// (dead-lettering it past the limit) and returns the row either way.
	InitWorkflow(ctx context.Context, p InitParams) (InitResult, error)
	// Steps returns every recorded outcome of a workflow, in step order.
	Steps(ctx context.Context, workflowID string) ([]StepRow, error)
	// RecordStep records a step outcome. When an outcome is already recorded
	// under that step ID it is returned instead, with recorded=false.
	RecordStep(ctx context.Context, s StepRow) (stored StepRow, recorded bool, err error)
	// FinishWorkflow moves a PENDING workflow to its final status and
	// records its outcome; it reports whether the row was PENDING.
	FinishWorkflow(ctx context.Context, p FinishParams) (bool, error)
	// Workflow returns one workflow's row or ErrNotFound.
	Workflow(ctx context.Context, id string) (WorkflowRow, error)
	// Pending lists this application's PENDING workflows of an executor and
	// version.
	Pending(ctx context.Context, executorID, appVersion string) ([]WorkflowRow, error)
	// PendingOtherVersions counts this application's PENDING workflows of an
	// executor per application version other than appVersion: the ones
	// Launch leaves alone. One grouped query.
	PendingOtherVersions(ctx context.Context, executorID, appVersion string) ([]VersionCount, error)
	// Cancel moves a workflow that has not finished, and every unfinished
	// workflow descended from it, to CANCELLED, and tells listeners. It
	// reports whether the workflow itself changed.
	Cancel(ctx context.Context, p CancelParams) (bool, error)
	// Cancelled returns those of ids whose status is CANCELLED.
	Cancelled(ctx context.Context, ids []string) ([]string, error)
	// WatchCancellations calls fn with the ID of every workflow cancelled from
	// now on, until ctx ends. It reports whether it delivers notifications
	// (true) or the caller must poll Cancelled (false). Cancellations made by
	// other programs (DBOS's CLI) are seen only by polling.
	WatchCancellations(ctx context.Context, fn func(id string)) bool
	Messaging // messages, events and streams: messages.go
	Close()
}
