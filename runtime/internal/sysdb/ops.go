package sysdb

import (
	"context"
	"slices"
	"strings"

	"github.com/google/uuid"
)

// store is the Store's operations, written once over a driver: Postgres and
// SQLite embed it and add what only they have (opening, migrating,
// notifications).
type store struct {
	d        engineDriver
	dl       dialect
	q        queries
	appName  string // application_name of the rows this store writes and recovers
	batch    *batcher[StepRow]
	finishes *batcher[FinishParams]
	inserts  *batcher[newWorkflow] // PostgreSQL only: SQLite's start is a transaction of its own
	hub      *notifier
}

// maxBatchRows bounds a batch statement's rows.
const maxBatchRows = 256

func newStore(d engineDriver, dl dialect, appName string) *store {
	s := &store{d: d, dl: dl, q: buildQueries(dl), appName: appName}
	s.SetBatching(true)
	return s
}

// SetBatching turns the sharing of round trips by concurrent writes (step
// checkpoints, workflow outcomes, and on PostgreSQL new workflows' starts)
// on or off (off: each is its own statement, for debugging). Call it before
// the store is used.
func (s *store) SetBatching(on bool) {
	if !on {
		s.batch, s.finishes, s.inserts = nil, nil, nil
		return
	}
	s.batch = &batcher[StepRow]{maxRows: maxBatchRows, one: s.recordOne, many: s.recordStepsPG}
	s.finishes = &batcher[FinishParams]{maxRows: maxBatchRows, one: s.finishOne, many: s.finishManyPG}
	if !s.dl.cte {
		s.batch.many, s.finishes.many = s.recordStepsTx, s.finishManyTx
	} else {
		s.inserts = &batcher[newWorkflow]{maxRows: maxBatchRows, one: s.insertOne, many: s.insertManyPG}
	}
}

// InitWorkflow implements Store. On PostgreSQL it is one data-modifying CTE
// (pgInit); on SQLite, which has none, a short transaction of the same
// statements on the single write connection (sqliteDriver.start).
func (s *store) InitWorkflow(ctx context.Context, ip InitParams) (InitResult, error) {
	r := ip.Row
	now := nowMS()
	res := InitResult{Row: WorkflowRow{ID: r.ID}}
	if s.dl.cte {
		r.AppName = s.appName
		ww, xid := s.d.(workflowWriter), uuid.NewString()
		if !ip.Recovery {
			// A new workflow, as most starts are: one lean statement. An
			// inputs row left without its status row (a hand-made delete)
			// fails it, and pgInit replaces those inputs.
			inserted, err := s.insertNew(ctx, newWorkflow{Row: r, Now: now, XID: xid})
			if err != nil && !isUniqueViolation(err) {
				return res, err
			}
			if inserted {
				res.Inserted, res.Row = true, newRow(r, now)
				return res, nil
			}
		}
		err := ww.start(ctx, s.q.init, r, now, xid, ip.MaxRecoveryAttempts, ip.Recovery, &res)
		if err != nil || res.Inserted {
			return res, err
		}
		if w := &res.Row; w.Status == StatusDeadLetter && w.Error == "" && w.UpdatedMS == now && ip.DeadLetterError != nil {
			// This start parked the workflow: its error goes with it, in a
			// statement of its own on this rare path.
			w.Error = ip.DeadLetterError()
			if _, err := s.d.writer().Exec(ctx, s.q.deadLetter, r.ID, w.Error); err != nil {
				return res, err
			}
		}
		if !res.Row.racedSnapshot() {
			return res, nil
		}
		// The row was written by a transaction that committed while this
		// statement ran: the upsert saw its latest version, but the
		// statement's snapshot does not show the inputs or the outcome
		// written with it. Read them again (only in that race); the status
		// and count the upsert returned are the latest.
		w, err := s.Workflow(ctx, r.ID)
		if err == nil {
			res.Row.Inputs = w.Inputs
			if res.Row.Status != StatusPending {
				res.Row.Output, res.Row.Error = w.Output, w.Error
			}
		}
		return res, err
	}
	return s.d.(*sqliteDriver).start(ctx, ip, s.appName, now)
}

// newRow is the row a start inserts for r.
func newRow(r WorkflowRow, now int64) WorkflowRow {
	r.Status, r.Serialization, r.QueueName = StatusPending, FormatPortable, ""
	r.Output, r.Error = "", ""
	r.RecoveryAttempts, r.CreatedMS, r.UpdatedMS = 1, now, now
	return r
}

// FinishWorkflow implements Store: one CTE on PostgreSQL, the status update
// and the outcome in one transaction on SQLite (sqliteDriver.finish);
// concurrent finishes share the statement or the transaction (see batcher).
func (s *store) FinishWorkflow(ctx context.Context, p FinishParams) (bool, error) {
	if s.finishes != nil {
		return s.finishes.record(ctx, p)
	}
	return s.finishOne(ctx, p)
}

// newWorkflow is a new workflow's row for the lean start (pgInsert).
type newWorkflow struct {
	Row WorkflowRow
	Now int64
	XID string
}

// insertNew inserts a new workflow's row (PostgreSQL): alone, or with
// concurrent starts in one statement. False: the ID exists.
func (s *store) insertNew(ctx context.Context, w newWorkflow) (bool, error) {
	if s.inserts != nil {
		return s.inserts.record(ctx, w)
	}
	return s.insertOne(ctx, w)
}

// insertOne inserts a new workflow's row with its own statement.
func (s *store) insertOne(ctx context.Context, w newWorkflow) (bool, error) {
	return s.d.(workflowWriter).insert(ctx, s.q.insert, w.Row, w.Now, w.XID)
}

// finishOne records one workflow's outcome with its own statement.
func (s *store) finishOne(ctx context.Context, p FinishParams) (bool, error) {
	now := nowMS()
	if s.dl.cte {
		return s.d.(workflowWriter).finish(ctx, s.q.finish, p, now)
	}
	return s.d.(*sqliteDriver).finish(ctx, p, now)
}

// Workflow implements Store.
func (s *store) Workflow(ctx context.Context, id string) (WorkflowRow, error) {
	w := WorkflowRow{ID: id}
	err := scanWorkflow(s.d.reader().QueryRow(ctx, s.q.workflow, id), &w)
	if isNoRows(err) {
		return w, ErrNotFound
	}
	return w, err
}

// Pending implements Store.
func (s *store) Pending(ctx context.Context, executorID, appVersion string) ([]WorkflowRow, error) {
	rs, err := s.d.reader().Query(ctx, s.q.pending, executorID, appVersion, s.appName)
	return collect(rs, err, func(r rows, w *WorkflowRow) error { return scanWorkflow(r, w, &w.ID) })
}

// PendingOtherVersions implements Store.
func (s *store) PendingOtherVersions(ctx context.Context, executorID, appVersion string) ([]VersionCount, error) {
	rs, err := s.d.reader().Query(ctx, s.q.otherVersions, executorID, appVersion, s.appName)
	return collect(rs, err, func(r rows, v *VersionCount) error { return r.Scan(&v.Version, &v.Count) })
}

// Cancel implements Store: one statement that also, on PostgreSQL, tells
// listeners (see CancelChannel).
//
// The tree's rows are locked in no set order, so a batch of outcomes that
// locks two of them the other way round can deadlock with it; the server
// then aborts one of the two, and a cancel it aborted runs again.
func (s *store) Cancel(ctx context.Context, p CancelParams) (bool, error) {
	for attempt := 1; ; attempt++ {
		rs, err := s.d.writer().Query(ctx, s.q.cancel, p.ID, nowMS())
		ids, err := collect(rs, err, func(r rows, id *string) error { return r.Scan(id) })
		if isDeadlock(err) && attempt < 3 {
			continue
		}
		return slices.Contains(ids, p.ID), err
	}
}

// Cancelled implements Store: one query with a parameterised IN list (split
// only past maxInList IDs).
func (s *store) Cancelled(ctx context.Context, ids []string) ([]string, error) {
	var out []string
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), maxInList)]
		ids = ids[len(chunk):]
		args := make([]any, len(chunk))
		marks := make([]string, len(chunk))
		for i, id := range chunk {
			args[i] = id
			marks[i] = s.dl.param(i + 1)
		}
		q := s.dl.cached(`SELECT workflow_uuid FROM {schema}.workflow_status WHERE status = 'CANCELLED' AND workflow_uuid IN (`) +
			strings.Join(marks, ", ") + `)`
		rs, err := s.d.reader().Query(ctx, q, args...)
		got, err := collect(rs, err, func(r rows, id *string) error { return r.Scan(id) })
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// maxInList is the number of bind variables one statement may use on every
// SQLite build (the historical SQLITE_MAX_VARIABLE_NUMBER default).
const maxInList = 999

// Steps implements Store.
func (s *store) Steps(ctx context.Context, workflowID string) ([]StepRow, error) {
	rs, err := s.d.reader().Query(ctx, s.q.steps, workflowID)
	return collect(rs, err, func(r rows, st *StepRow) error {
		st.WorkflowID = workflowID
		return scanStep(r, st)
	})
}

// recordOne inserts one step row with its own statement.
func (s *store) recordOne(ctx context.Context, st StepRow) (bool, error) {
	return s.d.recordStep(ctx, s.q.recordStep, st, s.appName)
}

// RecordStep implements Store: one INSERT, which concurrent checkpoints may
// share (see batcher); only when another execution
// recorded the step first, a second query reads that outcome.
func (s *store) RecordStep(ctx context.Context, st StepRow) (StepRow, bool, error) {
	var inserted bool
	var err error
	if s.batch != nil {
		inserted, err = s.batch.record(ctx, st)
	} else {
		inserted, err = s.recordOne(ctx, st)
	}
	if err != nil {
		return StepRow{}, false, err
	}
	if inserted {
		st.Serialization = FormatPortable
		return st, true, nil
	}
	// Another execution recorded this step first: its outcome is the one the
	// workflow must see. It is committed (the INSERT saw it), so the reader
	// sees it too.
	got := StepRow{WorkflowID: st.WorkflowID}
	err = scanStep(s.d.reader().QueryRow(ctx, s.q.recordedStep, st.WorkflowID, st.StepID), &got)
	return got, false, err
}
