package sysdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Management operations (list, delete, resume, fork, retention), written
// once over the engine seam like ops.go. Their semantics are those of the
// DBOS Go SDK v1.8.0's system database (ListWorkflows, DeleteWorkflows,
// ResumeWorkflows, ForkWorkflows), so that a row touched by dbosgen's tools
// looks to DBOS as if DBOS's own tools had touched it, and the reverse.

// InternalQueue is DBOS's internal queue: resumed and forked workflows are
// enqueued on it, and executors run them from there.
const InternalQueue = "_dbos_internal_queue"

// Errors of the management operations.
var (
	// ErrActive: the operation needs a workflow that is not running
	// (PENDING, ENQUEUED or DELAYED).
	ErrActive = errors.New("workflow is active")
	// ErrFinished: the workflow finished (SUCCESS or ERROR) and cannot be
	// resumed; DBOS's resume leaves such rows alone too.
	ErrFinished = errors.New("workflow finished")
	// ErrBadStep: a fork's start step is negative or past the workflow's
	// last recorded step + 1.
	ErrBadStep = errors.New("bad start step")
)

// Manager is the Store's management surface. Both engines' stores implement
// it; it is an interface of its own so that the hot path (Store) stays
// small.
type Manager interface {
	// ListWorkflows returns the rows matching f, with inputs and outcomes.
	ListWorkflows(ctx context.Context, f ListFilter) ([]ListedWorkflow, error)
	// DeleteWorkflows removes workflows (and, with children, their
	// descendants) with every row that refers to them, in one transaction.
	// It fails with ErrActive, deleting nothing, when one of them is active.
	// It returns the IDs deleted.
	DeleteWorkflows(ctx context.Context, ids []string, children bool) ([]string, error)
	// ResumeWorkflow enqueues a CANCELLED or MAX_RECOVERY_ATTEMPTS_EXCEEDED
	// workflow (and re-enqueues a PENDING or ENQUEUED one) on InternalQueue
	// with its recovery attempts reset, as DBOS's resume does. A SUCCESS or
	// ERROR workflow is left alone and ErrFinished returned; an unknown one
	// gives ErrNotFound.
	ResumeWorkflow(ctx context.Context, id string) error
	// ForkWorkflow creates p.NewID, ENQUEUED on InternalQueue, with the
	// original's inputs and the step outcomes (and events and streams) it
	// recorded before p.StartStep.
	ForkWorkflow(ctx context.Context, p ForkParams) error
	// DeleteFinishedBefore deletes at most limit finished workflows (SUCCESS,
	// ERROR, CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED) of this application
	// created before cutoffMS, oldest first, and returns how many.
	DeleteFinishedBefore(ctx context.Context, cutoffMS int64, limit int) (int, error)
}

// ListFilter selects workflows. Empty fields do not filter; list fields
// match any of their values.
type ListFilter struct {
	IDs             []string
	Statuses        []string
	Names           []string
	Queues          []string
	ExecutorIDs     []string
	AppVersions     []string
	IDPrefix        string
	ParentID        string
	CreatedAfterMS  int64 // inclusive; 0: none
	CreatedBeforeMS int64 // inclusive; 0: none
	Limit           int   // 0: none
	Offset          int
	Ascending       bool // oldest first; default newest first
}

// ListedWorkflow is a WorkflowRow with the columns only the management
// views need.
type ListedWorkflow struct {
	WorkflowRow
	ForkedFrom    string
	WasForkedFrom bool
	StartedMS     int64
	CompletedMS   int64
}

// ForkParams describes a fork.
type ForkParams struct {
	OriginalID string
	NewID      string
	StartStep  int    // steps with a lower ID are copied
	AppVersion string // "": the original's
}

const listedColumns = `s.workflow_uuid, COALESCE(s.forked_from, ''), CASE WHEN s.was_forked_from THEN 1 ELSE 0 END,
	COALESCE(s.started_at_epoch_ms, 0), COALESCE(s.completed_at, 0), `

// ListWorkflows implements Manager. Like DBOS's, a listing that names no
// IDs shows this application's rows and unclaimed ones (application_name
// NULL) only.
func (s *store) ListWorkflows(ctx context.Context, f ListFilter) ([]ListedWorkflow, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	in := func(col string, vals []string) {
		if len(vals) == 0 {
			return
		}
		marks := make([]string, len(vals))
		for i, v := range vals {
			marks[i] = arg(v)
		}
		where = append(where, col+" IN ("+strings.Join(marks, ", ")+")")
	}
	in("s.workflow_uuid", f.IDs)
	in("s.status", f.Statuses)
	in("s.name", f.Names)
	in("s.queue_name", f.Queues)
	in("s.executor_id", f.ExecutorIDs)
	in("s.application_version", f.AppVersions)
	if f.IDPrefix != "" {
		// Not LIKE: SQLite's is case-insensitive, and a prefix holding % or _
		// must match literally.
		where = append(where, fmt.Sprintf("substr(s.workflow_uuid, 1, %d) = %s", utf8.RuneCountInString(f.IDPrefix), arg(f.IDPrefix)))
	}
	if f.ParentID != "" {
		where = append(where, "s.parent_workflow_id = "+arg(f.ParentID))
	}
	if f.CreatedAfterMS > 0 {
		where = append(where, "s.created_at >= "+arg(f.CreatedAfterMS))
	}
	if f.CreatedBeforeMS > 0 {
		where = append(where, "s.created_at <= "+arg(f.CreatedBeforeMS))
	}
	if len(f.IDs) == 0 && s.appName != "" {
		where = append(where, "(s.application_name = "+arg(s.appName)+" OR s.application_name IS NULL)")
	}
	q := `SELECT ` + listedColumns + wfColumns + ` FROM ` + wfFrom
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if f.Ascending {
		q += " ORDER BY s.created_at ASC, s.workflow_uuid ASC"
	} else {
		q += " ORDER BY s.created_at DESC, s.workflow_uuid DESC"
	}
	if f.Limit > 0 {
		q += " LIMIT " + arg(f.Limit)
	} else if f.Offset > 0 {
		q += " LIMIT -1" // SQLite needs a LIMIT before OFFSET; see below
	}
	if f.Offset > 0 {
		q += " OFFSET " + arg(f.Offset)
	}
	if !s.dl.sqlite {
		q = strings.Replace(q, " LIMIT -1", " LIMIT ALL", 1)
	}
	rs, err := s.d.reader().Query(ctx, s.dl.render(q), args...)
	return collect(rs, err, func(r rows, w *ListedWorkflow) error {
		var forked int
		err := scanWorkflow(r, &w.WorkflowRow, &w.ID, &w.ForkedFrom, &forked, &w.StartedMS, &w.CompletedMS)
		w.WasForkedFrom = forked != 0
		return err
	})
}

// descendants is every workflow descended from $1 (not $1 itself).
const descendants = `WITH RECURSIVE tree(id) AS (
	SELECT workflow_uuid FROM {schema}.workflow_status WHERE parent_workflow_id = $1
	UNION SELECT c.workflow_uuid FROM {schema}.workflow_status c JOIN tree ON c.parent_workflow_id = tree.id
) SELECT id FROM tree`

// dependentTables hold rows keyed by workflow_uuid. DBOS declares no
// foreign key on the first three; the others cascade on PostgreSQL, but
// SQLite enforces foreign keys only when asked, so they are deleted
// explicitly on both engines.
var dependentTables = []string{"workflow_input", "workflow_output", "operation_outputs",
	"workflow_events", "workflow_events_history", "streams"}

// DeleteWorkflows implements Manager.
func (s *store) DeleteWorkflows(ctx context.Context, ids []string, children bool) ([]string, error) {
	var deleted []string
	err := s.d.inTx(ctx, func(tx querier) error {
		all := append([]string(nil), ids...)
		if children {
			for _, id := range ids {
				rs, err := tx.Query(ctx, s.dl.render(descendants), id)
				kids, err := collect(rs, err, func(r rows, id *string) error { return r.Scan(id) })
				if err != nil {
					return err
				}
				all = append(all, kids...)
			}
		}
		deleted = deleted[:0]
		for len(all) > 0 {
			chunk := all[:min(len(all), maxInList)]
			all = all[len(chunk):]
			list, args := s.inList(chunk)
			q := `SELECT workflow_uuid, status FROM {schema}.workflow_status WHERE workflow_uuid IN (` + list + `)`
			if !s.dl.sqlite {
				// Locked, so that a resume committing between this check
				// and the delete waits, and the check stays true. (SQLite's
				// write transaction already excludes every other writer.)
				q += ` FOR UPDATE`
			}
			rs, err := tx.Query(ctx, s.dl.render(q), args...)
			type st struct{ id, status string }
			found, err := collect(rs, err, func(r rows, v *st) error { return r.Scan(&v.id, &v.status) })
			if err != nil {
				return err
			}
			for _, f := range found {
				switch f.status {
				case StatusPending, StatusEnqueued, StatusDelayed:
					return fmt.Errorf("%w: %s is %s (cancel it first)", ErrActive, f.id, f.status)
				}
				deleted = append(deleted, f.id)
			}
			for _, t := range append(dependentTables, "workflow_status") {
				if _, err := tx.Exec(ctx, s.dl.render(`DELETE FROM {schema}.`+t+` WHERE workflow_uuid IN (`+list+`)`), args...); err != nil {
					return fmt.Errorf("deleting from %s: %w", t, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return deleted, nil
}

// inList is "$1, $2, ..." for ids, with its arguments.
func (s *store) inList(ids []string) (string, []any) {
	marks := make([]string, len(ids))
	args := make([]any, len(ids))
	for i, id := range ids {
		marks[i], args[i] = fmt.Sprintf("$%d", i+1), id
	}
	return strings.Join(marks, ", "), args
}

// resumeSet is DBOS's resume update: back on a queue, counters and claims
// cleared, so that any executor dequeues it as new.
const resumeSet = `UPDATE {schema}.workflow_status
SET status = 'ENQUEUED', queue_name = $2, recovery_attempts = 0, workflow_deadline_epoch_ms = NULL,
	deduplication_id = NULL, owner_xid = NULL, started_at_epoch_ms = NULL, updated_at = $3, completed_at = NULL
WHERE workflow_uuid = $1 AND status NOT IN ('SUCCESS', 'ERROR')`

// ResumeWorkflow implements Manager: the update, then (only when it
// changed nothing) a read saying why.
func (s *store) ResumeWorkflow(ctx context.Context, id string) error {
	n, err := s.d.writer().Exec(ctx, s.dl.render(resumeSet), id, InternalQueue, nowMS())
	if err != nil || n == 1 {
		return err
	}
	var status string
	err = s.d.writer().QueryRow(ctx, s.dl.render(`SELECT COALESCE(status, '') FROM {schema}.workflow_status WHERE workflow_uuid = $1`), id).Scan(&status)
	if isNoRows(err) {
		return fmt.Errorf("%w: workflow %s", ErrNotFound, id)
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: workflow %s is %s", ErrFinished, id, status)
}

// The fork's statements, as DBOS's ForkWorkflows writes them: a new
// ENQUEUED row carrying the original's identity columns, its inputs, and
// the checkpoints below the start step.
const (
	forkStatus = `INSERT INTO {schema}.workflow_status (workflow_uuid, status, name, authenticated_user, assumed_role,
	authenticated_roles, application_version, application_id, queue_name, recovery_attempts, forked_from, serialization,
	class_name, config_name, attributes, application_name, created_at, updated_at)
SELECT $2::TEXT, 'ENQUEUED', name, authenticated_user, assumed_role, authenticated_roles,
	COALESCE(NULLIF($3, ''), application_version), application_id, $4, 0, workflow_uuid, serialization,
	class_name, config_name, attributes, COALESCE(application_name, NULLIF($5, '')), $6, $6
FROM {schema}.workflow_status WHERE workflow_uuid = $1`
	forkInputs = `INSERT INTO {schema}.workflow_input (workflow_uuid, inputs)
SELECT $2::TEXT, COALESCE(i.inputs, s.inputs) FROM {schema}.workflow_status s
	LEFT JOIN {schema}.workflow_input i ON i.workflow_uuid = s.workflow_uuid
WHERE s.workflow_uuid = $1`
	forkSteps = `INSERT INTO {schema}.operation_outputs (workflow_uuid, function_id, output, error, function_name,
	child_workflow_id, started_at_epoch_ms, completed_at_epoch_ms, serialization, application_name)
SELECT $2::TEXT, function_id, output, error, function_name, child_workflow_id, started_at_epoch_ms, completed_at_epoch_ms,
	serialization, (SELECT application_name FROM {schema}.workflow_status WHERE workflow_uuid = $2)
FROM {schema}.operation_outputs WHERE workflow_uuid = $1 AND function_id < $3`
	forkEventsHistory = `INSERT INTO {schema}.workflow_events_history (workflow_uuid, function_id, key, value, serialization)
SELECT $2::TEXT, function_id, key, value, serialization FROM {schema}.workflow_events_history
WHERE workflow_uuid = $1 AND function_id < $3`
	// Only each key's latest value below the start step, as DBOS copies it.
	forkEvents = `INSERT INTO {schema}.workflow_events (workflow_uuid, key, value, serialization)
SELECT $2::TEXT, key, value, serialization FROM (
	SELECT key, value, serialization, ROW_NUMBER() OVER (PARTITION BY key ORDER BY function_id DESC) AS rn
	FROM {schema}.workflow_events_history WHERE workflow_uuid = $1 AND function_id < $3
) ranked WHERE rn = 1`
	forkStreams = `INSERT INTO {schema}.streams (workflow_uuid, key, value, "offset", function_id, serialization)
SELECT $2::TEXT, key, value, "offset", function_id, serialization FROM {schema}.streams
WHERE workflow_uuid = $1 AND function_id < $3`
)

// ForkWorkflow implements Manager, in one transaction. A start step past
// the last recorded step + 1 is refused with ErrBadStep: it would copy
// nothing more than the last step + 1 does, and is most likely a typo.
func (s *store) ForkWorkflow(ctx context.Context, p ForkParams) error {
	if p.StartStep < 0 {
		return fmt.Errorf("%w: %d is negative", ErrBadStep, p.StartStep)
	}
	return s.d.inTx(ctx, func(tx querier) error {
		var last int
		err := tx.QueryRow(ctx, s.dl.render(`SELECT COALESCE((SELECT MAX(function_id) FROM {schema}.operation_outputs WHERE workflow_uuid = $1), 0)
FROM {schema}.workflow_status WHERE workflow_uuid = $1`), p.OriginalID).Scan(&last)
		if isNoRows(err) {
			return fmt.Errorf("%w: workflow %s", ErrNotFound, p.OriginalID)
		}
		if err != nil {
			return err
		}
		if p.StartStep > last+1 {
			return fmt.Errorf("%w: workflow %s recorded steps up to %d; fork from at most %d", ErrBadStep, p.OriginalID, last, last+1)
		}
		if _, err := tx.Exec(ctx, s.dl.render(forkStatus), p.OriginalID, p.NewID, p.AppVersion, InternalQueue, s.appName, nowMS()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.dl.render(forkInputs), p.OriginalID, p.NewID); err != nil {
			return err
		}
		if p.StartStep > 0 {
			for _, q := range []string{forkSteps, forkEventsHistory, forkEvents, forkStreams} {
				if _, err := tx.Exec(ctx, s.dl.render(q), p.OriginalID, p.NewID, p.StartStep); err != nil {
					return err
				}
			}
		}
		_, err = tx.Exec(ctx, s.dl.render(`UPDATE {schema}.workflow_status SET was_forked_from = TRUE WHERE workflow_uuid = $1`), p.OriginalID)
		return err
	})
}

// DeleteFinishedBefore implements Manager: one bounded batch.
func (s *store) DeleteFinishedBefore(ctx context.Context, cutoffMS int64, limit int) (int, error) {
	q := `SELECT workflow_uuid FROM {schema}.workflow_status
WHERE created_at < $1 AND status IN ('SUCCESS', 'ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')`
	args := []any{cutoffMS, limit}
	if s.appName != "" {
		q += ` AND (application_name = $3 OR application_name IS NULL)`
		args = append(args, s.appName)
	}
	q += ` ORDER BY created_at LIMIT $2`
	rs, err := s.d.reader().Query(ctx, s.dl.render(q), args...)
	ids, err := collect(rs, err, func(r rows, id *string) error { return r.Scan(id) })
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	// A workflow resumed between the read and the delete is active again:
	// the delete refuses the whole batch, and the next round skips it.
	deleted, err := s.DeleteWorkflows(ctx, ids, false)
	return len(deleted), err
}

var (
	_ Manager = (*Postgres)(nil)
	_ Manager = (*SQLite)(nil)
)
