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
// in a separate application database it writes transaction_outputs, and the
// runtime copies the outcome to the system database after the commit.
type TxRecorder struct {
	insert, lookup string
}

// Queryer is what TxRecorder reads through: a *sql.DB or a *sql.Tx.
type Queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// NewTxRecorder builds the statements for an engine. table is
// "operation_outputs" when the application database is the system database,
// "transaction_outputs" otherwise; schema applies to PostgreSQL only.
func NewTxRecorder(sqlite bool, schema string, sameAsSystem bool) TxRecorder {
	table := "transaction_outputs"
	if sameAsSystem {
		table = "operation_outputs"
	}
	if !sqlite {
		table = quoteIdent(schema) + "." + table
	}
	r := TxRecorder{
		insert: `INSERT INTO ` + table + ` (workflow_uuid, function_id, function_name, output, error, created_at)
VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), $6) ON CONFLICT (workflow_uuid, function_id) DO NOTHING`,
		lookup: `SELECT function_name, COALESCE(output, ''), COALESCE(error, '') FROM ` + table + `
WHERE workflow_uuid = $1 AND function_id = $2`,
	}
	if sqlite {
		r.insert = strings.NewReplacer("$1", "?1", "$2", "?2", "$3", "?3", "$4", "?4", "$5", "?5", "$6", "?6").Replace(r.insert)
		r.lookup = strings.NewReplacer("$1", "?1", "$2", "?2").Replace(r.lookup)
	}
	return r
}

// Record inserts the outcome in tx; false means one was recorded already.
func (r TxRecorder) Record(ctx context.Context, tx *sql.Tx, s StepRow) (bool, error) {
	res, err := tx.ExecContext(ctx, r.insert, s.WorkflowID, s.StepID, s.Name, s.Output, s.Error, time.Now().UnixMilli())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Lookup reads a recorded outcome.
func (r TxRecorder) Lookup(ctx context.Context, q Queryer, workflowID string, stepID int) (StepRow, bool, error) {
	s := StepRow{WorkflowID: workflowID, StepID: stepID}
	err := q.QueryRowContext(ctx, r.lookup, workflowID, stepID).Scan(&s.Name, &s.Output, &s.Error)
	if errors.Is(err, sql.ErrNoRows) {
		return s, false, nil
	}
	return s, err == nil, err
}
