package sysdb

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
)

// TxRecorder records a transaction's outcome inside the user's own database
// transaction, so the outcome commits if and only if the user's writes do.
// In the system database it writes operation_outputs (one commit holds both);
// in a separate application database it writes appTable, and the runtime
// copies the outcome to the system database after the commit.
type TxRecorder struct {
	insert, lookup string
	// strict is insert without ON CONFLICT: a duplicate fails on its key,
	// which aborts the transaction (see AppDB.RecordAndCommit).
	strict  string
	appName string
	system  bool
	stmt    *sql.Stmt // the insert, prepared once (SQLite; see Prepare)
}

// Queryer is what TxRecorder reads through: a *sql.DB or a *sql.Tx.
type Queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// NewTxRecorder builds the statements for an engine; schema applies to
// PostgreSQL only; appName is written on system-database rows.
func NewTxRecorder(sqlite bool, schema string, sameAsSystem bool, appName string) TxRecorder {
	d := pgDialect(schema)
	if sqlite {
		d = sqliteDialect
	}
	r := TxRecorder{appName: appName, system: sameAsSystem}
	if sameAsSystem {
		q := buildQueries(d)
		r.insert, r.lookup = q.recordStep, q.recordedStep
		r.strict = strings.Replace(r.insert, onConflictNothing, "", 1)
		return r
	}
	r.insert = d.render(`INSERT INTO {schema}.` + appTable + ` (workflow_uuid, function_id, function_name, output, error, created_at)
VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), $6)` + onConflictNothing)
	r.lookup = d.render(`SELECT function_id, function_name, COALESCE(output, ''), COALESCE(error, ''), '', serialization, 0, created_at
FROM {schema}.` + appTable + ` WHERE workflow_uuid = $1 AND function_id = $2`)
	r.strict = strings.Replace(r.insert, onConflictNothing, "", 1)
	return r
}

// Prepare prepares the insert on db, whose transactions Record will then
// reuse it in. Worth it on SQLite, whose driver otherwise compiles the
// statement at every call; pgx caches its statements by itself.
func (r *TxRecorder) Prepare(ctx context.Context, db *sql.DB) error {
	stmt, err := db.PrepareContext(ctx, r.insert)
	if err != nil {
		return err
	}
	r.stmt = stmt
	return nil
}

// Record inserts the outcome in tx; false means one was recorded already.
func (r *TxRecorder) Record(ctx context.Context, tx *sql.Tx, s StepRow) (bool, error) {
	if s.CompletedMS == 0 {
		s.CompletedMS = time.Now().UnixMilli()
	}
	args := r.args(s)
	var res sql.Result
	var err error
	if r.stmt != nil {
		res, err = tx.StmtContext(ctx, r.stmt).ExecContext(ctx, args...)
	} else {
		res, err = tx.ExecContext(ctx, r.insert, args...)
	}
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// args are the insert's arguments for s.
func (r *TxRecorder) args(s StepRow) []any {
	if s.CompletedMS == 0 {
		s.CompletedMS = time.Now().UnixMilli()
	}
	if r.system {
		return stepArgs(s, r.appName)
	}
	return []any{s.WorkflowID, s.StepID, s.Name, s.Output, s.Error, s.CompletedMS}
}

// encode appends the insert's arguments for s to a, as text: args without
// boxing each value.
func (r *TxRecorder) encode(a *textArgs, s StepRow) {
	if s.CompletedMS == 0 {
		s.CompletedMS = nowMS()
	}
	a.str(s.WorkflowID).num(int64(s.StepID)).str(s.Name).str(s.Output).str(s.Error)
	if r.system {
		a.str(s.ChildID).num(s.StartedMS).num(s.CompletedMS).str(r.appName)
		return
	}
	a.num(s.CompletedMS)
}

// Lookup reads a recorded outcome.
func (r *TxRecorder) Lookup(ctx context.Context, q Queryer, workflowID string, stepID int) (StepRow, bool, error) {
	s := StepRow{WorkflowID: workflowID, StepID: stepID}
	err := scanStep(q.QueryRowContext(ctx, r.lookup, workflowID, stepID), &s)
	if errors.Is(err, sql.ErrNoRows) {
		return s, false, nil
	}
	return s, err == nil, err
}
