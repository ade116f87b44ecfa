package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
	"github.com/google/uuid"
)

// The management API: the same operations on a Runtime and on a Client,
// implemented once by manager over the system database.

// Errors of the management API.
var (
	// ErrInvalidArgument: a malformed filter, or a fork from a step that
	// does not exist.
	ErrInvalidArgument = errors.New("dbos: invalid argument")
	// ErrWorkflowActive: the workflow is running or queued (delete it after
	// cancelling it).
	ErrWorkflowActive = errors.New("dbos: workflow is active")
	// ErrWorkflowFinished: the workflow finished (SUCCESS or ERROR) and
	// cannot be resumed; fork it instead.
	ErrWorkflowFinished = errors.New("dbos: workflow finished")
)

// Statuses only queued workflows have (DBOS's queues).
const (
	StatusEnqueued = sysdb.StatusEnqueued
	StatusDelayed  = sysdb.StatusDelayed
)

// ListFilter selects workflows for ListWorkflows. Empty fields do not
// filter; list fields match any of their values.
type ListFilter struct {
	IDs                []string // these workflows, of any application
	Status             []string // PENDING, ENQUEUED, SUCCESS, ERROR, ...
	Name               []string // workflow names, as recorded (package.Function)
	Queue              []string
	ExecutorID         []string
	ApplicationVersion []string
	IDPrefix           string
	ParentID           string // the children of this workflow
	// CreatedAfter and CreatedBefore bound the creation time, inclusive.
	CreatedAfter, CreatedBefore time.Time
	// Limit caps the number of workflows (0: no cap); Offset skips the
	// first ones, for paging.
	Limit, Offset int
	// OldestFirst orders by creation time ascending; the default is newest
	// first.
	OldestFirst bool
}

// WorkflowInfo is a workflow as operators see it: its row, with its inputs,
// output and error decoded for display.
type WorkflowInfo struct {
	ID                 string
	Name               string
	Status             string
	ExecutorID         string
	ApplicationVersion string
	ApplicationName    string
	QueueName          string
	ParentID           string
	ForkedFrom         string
	WasForkedFrom      bool
	RecoveryAttempts   int
	Serialization      string
	CreatedAt          time.Time
	UpdatedAt          time.Time
	StartedAt          time.Time // zero: unknown
	CompletedAt        time.Time // zero: not finished
	Deadline           time.Time // zero: none
	// Input is the recorded arguments as JSON (a portable_json workflow's
	// positional arguments as an array); Output the recorded result as
	// JSON; Error the recorded error's message. A value that cannot be
	// decoded is shown as stored, after a note saying so.
	Input, Output, Error string
	// Err is the recorded error, as RetrieveWorkflow's handle returns it.
	Err error
}

// StepDetail is one recorded step of a workflow.
type StepDetail struct {
	StepID      int
	Name        string
	Output      string // JSON
	Error       string // the error's message; "" when the step succeeded
	Err         error
	ChildID     string // the child workflow this step started, if any
	StartedAt   time.Time
	CompletedAt time.Time
}

// ForkOptions tune ForkWorkflow.
type ForkOptions struct {
	// NewID is the fork's workflow ID. Default: a new UUID.
	NewID string
	// ApplicationVersion runs the fork on another version (the one with the
	// fixed code). Default: the original's.
	ApplicationVersion string
}

// manager implements the management API over a store; check says whether
// its owner (a Runtime or Client) can still be used.
type manager struct {
	store sysdb.Store
	check func() error
}

func (m manager) sysManager() (sysdb.Manager, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	sm, ok := m.store.(sysdb.Manager)
	if !ok {
		return nil, fmt.Errorf("%w: this system database store has no management operations", ErrConfig)
	}
	return sm, nil
}

var knownStatuses = []string{sysdb.StatusPending, sysdb.StatusEnqueued, sysdb.StatusDelayed, sysdb.StatusSuccess,
	sysdb.StatusError, sysdb.StatusCancelled, sysdb.StatusDeadLetter}

func (f ListFilter) toSysdb() (sysdb.ListFilter, error) {
	for _, s := range f.Status {
		if !slices.Contains(knownStatuses, s) {
			return sysdb.ListFilter{}, fmt.Errorf("%w: unknown workflow status %q (want one of %s)", ErrInvalidArgument, s, strings.Join(knownStatuses, ", "))
		}
	}
	if f.Limit < 0 || f.Offset < 0 {
		return sysdb.ListFilter{}, fmt.Errorf("%w: negative limit or offset (%d, %d)", ErrInvalidArgument, f.Limit, f.Offset)
	}
	if !f.CreatedAfter.IsZero() && !f.CreatedBefore.IsZero() && f.CreatedAfter.After(f.CreatedBefore) {
		return sysdb.ListFilter{}, fmt.Errorf("%w: CreatedAfter %s is after CreatedBefore %s", ErrInvalidArgument,
			f.CreatedAfter.Format(time.RFC3339), f.CreatedBefore.Format(time.RFC3339))
	}
	out := sysdb.ListFilter{IDs: f.IDs, Statuses: f.Status, Names: f.Name, Queues: f.Queue, ExecutorIDs: f.ExecutorID,
		AppVersions: f.ApplicationVersion, IDPrefix: f.IDPrefix, ParentID: f.ParentID, Limit: f.Limit, Offset: f.Offset, Ascending: f.OldestFirst}
	if !f.CreatedAfter.IsZero() {
		out.CreatedAfterMS = f.CreatedAfter.UnixMilli()
	}
	if !f.CreatedBefore.IsZero() {
		out.CreatedBeforeMS = f.CreatedBefore.UnixMilli()
	}
	return out, nil
}

func (m manager) listWorkflows(ctx context.Context, f ListFilter) ([]WorkflowInfo, error) {
	sm, err := m.sysManager()
	if err != nil {
		return nil, err
	}
	sf, err := f.toSysdb()
	if err != nil {
		return nil, err
	}
	rows, err := sm.ListWorkflows(ctx, sf)
	if err != nil {
		return nil, errorf(ErrDatabase, err, "dbos: listing workflows")
	}
	out := make([]WorkflowInfo, len(rows))
	for i, r := range rows {
		out[i] = workflowInfo(r)
	}
	return out, nil
}

func (m manager) retrieveWorkflow(ctx context.Context, id string) (WorkflowInfo, error) {
	sm, err := m.sysManager()
	if err != nil {
		return WorkflowInfo{}, err
	}
	rows, err := sm.ListWorkflows(ctx, sysdb.ListFilter{IDs: []string{id}})
	if err != nil {
		return WorkflowInfo{}, errorf(ErrDatabase, err, "dbos: reading workflow %s", id)
	}
	if len(rows) == 0 {
		return WorkflowInfo{}, fmt.Errorf("%w: %s", ErrWorkflowNotFound, id)
	}
	return workflowInfo(rows[0]), nil
}

func (m manager) workflowSteps(ctx context.Context, id string) ([]StepDetail, error) {
	if _, err := m.retrieveWorkflow(ctx, id); err != nil {
		return nil, err
	}
	steps, err := m.store.Steps(ctx, id)
	if err != nil {
		return nil, errorf(ErrDatabase, err, "dbos: reading the steps of workflow %s", id)
	}
	out := make([]StepDetail, len(steps))
	for i, s := range steps {
		format := s.Serialization
		d := StepDetail{StepID: s.StepID, Name: s.Name, ChildID: s.ChildID, Output: displayValue(s.Output, format)}
		d.Err, d.Error = displayError(s.Error, format)
		if s.StartedMS > 0 {
			d.StartedAt = time.UnixMilli(s.StartedMS)
		}
		if s.CompletedMS > 0 {
			d.CompletedAt = time.UnixMilli(s.CompletedMS)
		}
		out[i] = d
	}
	return out, nil
}

func (m manager) cancelWorkflow(ctx context.Context, id string) error {
	if _, err := m.retrieveWorkflow(ctx, id); err != nil {
		return err
	}
	if _, err := m.store.Cancel(ctx, sysdb.CancelParams{ID: id}); err != nil {
		return errorf(ErrDatabase, err, "dbos: cancelling workflow %s", id)
	}
	return nil
}

func (m manager) resumeWorkflow(ctx context.Context, id string) error {
	sm, err := m.sysManager()
	if err != nil {
		return err
	}
	err = sm.ResumeWorkflow(ctx, id)
	switch {
	case errors.Is(err, sysdb.ErrNotFound):
		return fmt.Errorf("%w: %s", ErrWorkflowNotFound, id)
	case errors.Is(err, sysdb.ErrFinished):
		return fmt.Errorf("%w: cannot resume it (%v); fork it from the step to re-run", ErrWorkflowFinished, err)
	case err != nil:
		return errorf(ErrDatabase, err, "dbos: resuming workflow %s", id)
	}
	return nil
}

func (m manager) forkWorkflow(ctx context.Context, id string, fromStep int, o ForkOptions) (string, error) {
	sm, err := m.sysManager()
	if err != nil {
		return "", err
	}
	if o.NewID == "" {
		o.NewID = uuid.NewString()
	}
	if err := validateWorkflowID(o.NewID); err != nil {
		return "", err
	}
	err = sm.ForkWorkflow(ctx, sysdb.ForkParams{OriginalID: id, NewID: o.NewID, StartStep: fromStep, AppVersion: o.ApplicationVersion})
	switch {
	case errors.Is(err, sysdb.ErrNotFound):
		return "", fmt.Errorf("%w: %s", ErrWorkflowNotFound, id)
	case errors.Is(err, sysdb.ErrBadStep):
		return "", fmt.Errorf("%w: fork: %v", ErrInvalidArgument, err)
	case err != nil:
		if _, e := m.retrieveWorkflow(ctx, o.NewID); e == nil {
			return "", fmt.Errorf("%w: fork: workflow %s exists", ErrWorkflowConflict, o.NewID)
		}
		return "", errorf(ErrDatabase, err, "dbos: forking workflow %s", id)
	}
	return o.NewID, nil
}

func (m manager) deleteWorkflows(ctx context.Context, ids []string, children bool) ([]string, error) {
	sm, err := m.sysManager()
	if err != nil {
		return nil, err
	}
	deleted, err := sm.DeleteWorkflows(ctx, ids, children)
	if errors.Is(err, sysdb.ErrActive) {
		return nil, fmt.Errorf("%w: %v", ErrWorkflowActive, err)
	}
	if err != nil {
		return nil, errorf(ErrDatabase, err, "dbos: deleting workflows")
	}
	return deleted, nil
}

func workflowInfo(r sysdb.ListedWorkflow) WorkflowInfo {
	w := WorkflowInfo{ID: r.ID, Name: r.Name, Status: r.Status, ExecutorID: r.ExecutorID, ApplicationVersion: r.AppVersion,
		ApplicationName: r.AppName, QueueName: r.QueueName, ParentID: r.ParentID, ForkedFrom: r.ForkedFrom,
		WasForkedFrom: r.WasForkedFrom, RecoveryAttempts: r.RecoveryAttempts, Serialization: r.Serialization,
		CreatedAt: time.UnixMilli(r.CreatedMS), UpdatedAt: time.UnixMilli(r.UpdatedMS),
		Input: displayInputs(r.Inputs, r.Serialization), Output: displayValue(r.Output, r.Serialization)}
	if r.StartedMS > 0 {
		w.StartedAt = time.UnixMilli(r.StartedMS)
	}
	if r.CompletedMS > 0 {
		w.CompletedAt = time.UnixMilli(r.CompletedMS)
	}
	if r.DeadlineMS > 0 {
		w.Deadline = time.UnixMilli(r.DeadlineMS)
	}
	switch r.Status {
	case sysdb.StatusError, sysdb.StatusCancelled, sysdb.StatusDeadLetter:
		w.Err = statusError(r.WorkflowRow)
		w.Error = w.Err.Error()
	}
	return w
}

// displayValue is a recorded value as JSON text.
func displayValue(s, format string) string {
	if s == "" {
		return ""
	}
	b, err := jsonBytes(s, format)
	if err != nil {
		return fmt.Sprintf("(cannot be decoded: %v) %s", err, s)
	}
	return string(b)
}

// displayInputs shows portable_json's positional arguments as an array:
// the call's arguments, without DBOS's envelope.
func displayInputs(s, format string) string {
	v := displayValue(s, format)
	if format != sysdb.FormatPortable || v == "" {
		return v
	}
	var env portableArgs
	if json.Unmarshal([]byte(v), &env) != nil || env.PositionalArgs == nil {
		return v
	}
	b, err := json.Marshal(env.PositionalArgs)
	if err != nil {
		return v
	}
	return string(b)
}

func displayError(s, format string) (error, string) {
	if s == "" {
		return nil, ""
	}
	e, err := decodeError(s, format)
	if err != nil {
		return nil, fmt.Sprintf("(cannot be decoded: %v) %s", err, s)
	}
	return e, e.Error()
}
