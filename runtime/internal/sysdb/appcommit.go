package sysdb

import (
	"context"
	"database/sql"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
)

// Tx is an application transaction: the *sqlx.Tx the user's function gets,
// and, on PostgreSQL, the connection it runs on, so that its checkpoint and
// its COMMIT can share one round trip.
type Tx struct {
	*sqlx.Tx
	conn *sqlx.Conn // PostgreSQL only
}

// end releases the transaction's connection.
func (t *Tx) end() {
	if t.conn != nil {
		_ = t.conn.Close()
	}
}

// Commit commits the transaction and releases its connection.
func (t *Tx) Commit() error {
	err := t.Tx.Commit()
	t.end()
	return err
}

// Rollback rolls the transaction back (a no-op once it ended) and releases
// its connection.
func (t *Tx) Rollback() error {
	err := t.Tx.Rollback()
	t.end()
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}

// CommitOutcome is what RecordAndCommit did.
type CommitOutcome struct {
	// Recorded: the checkpoint was this transaction's; false when another
	// execution had recorded the step (the transaction then rolled back).
	Recorded bool
	// RecordErr: the checkpoint could not be written (the function left
	// the transaction unusable, say); the transaction rolled back.
	RecordErr error
	// CommitErr: the commit failed or its acknowledgement was lost.
	CommitErr error
}

// RecordAndCommit records s in tx and commits both: on PostgreSQL in one
// round trip (the checkpoint INSERT and COMMIT pipelined), elsewhere one
// after the other. A checkpoint that finds the step recorded already fails
// on its key, so the pipelined COMMIT never commits a duplicate: the
// server skips it and the transaction rolls back.
func (a *AppDB) RecordAndCommit(ctx context.Context, tx *Tx, s StepRow) CommitOutcome {
	if tx.conn == nil {
		fresh, err := a.Record(ctx, tx.Tx, s)
		if err != nil || !fresh {
			_ = tx.Rollback()
			return CommitOutcome{RecordErr: err}
		}
		return CommitOutcome{Recorded: true, CommitErr: tx.Commit()}
	}
	var out CommitOutcome
	err := tx.conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return errors.New("not a pgx connection")
		}
		b := &pgx.Batch{}
		b.Queue(a.rec.strict, a.rec.args(s)...)
		b.Queue("COMMIT")
		br := c.Conn().SendBatch(ctx, b)
		_, ierr := br.Exec()
		_, cerr := br.Exec()
		if err := br.Close(); err != nil && ierr == nil && cerr == nil {
			cerr = err
		}
		var pgErr *pgconn.PgError
		switch {
		case ierr != nil && errors.As(ierr, &pgErr) && pgErr.Code == "23505":
			// recorded by another execution: not fresh
		case ierr != nil && (IsTransient(ierr) || pgconn.SafeToRetry(ierr)):
			out.CommitErr = ierr // the round trip failed: whether anything landed is unknown
		case ierr != nil:
			out.RecordErr = ierr
		default:
			out.Recorded, out.CommitErr = true, cerr
		}
		return nil
	})
	if err != nil {
		out = CommitOutcome{CommitErr: err}
	}
	// The server has ended the transaction (committed, or aborted and
	// waiting for a ROLLBACK): let database/sql end its side of it.
	_ = tx.Rollback()
	return out
}
