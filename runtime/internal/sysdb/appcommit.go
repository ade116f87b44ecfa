package sysdb

import (
	"context"
	"database/sql"
	"errors"

	"github.com/jmoiron/sqlx"
)

// Tx is an application transaction: the *sqlx.Tx the user's function gets
// and, on PostgreSQL, the commit its driver connection runs (see
// pendingCommit), so that its checkpoint and its COMMIT share one round
// trip.
type Tx struct {
	*sqlx.Tx
	pending *pendingCommit // PostgreSQL only
}

// pgTx is a PostgreSQL Tx and its pendingCommit, in one allocation.
type pgTx struct {
	Tx
	pending pendingCommit
}

// Rollback rolls the transaction back; a no-op once it ended.
func (t *Tx) Rollback() error {
	err := t.Tx.Rollback()
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
	p := tx.pending
	if p == nil {
		fresh, err := a.Record(ctx, tx.Tx, s)
		if err != nil || !fresh {
			_ = tx.Rollback()
			return CommitOutcome{RecordErr: err}
		}
		return CommitOutcome{Recorded: true, CommitErr: tx.Commit()}
	}
	p.arm(&a.rec, s)
	err := tx.Commit()
	if !p.sent {
		// database/sql refused before the driver sent anything: the
		// function ended the transaction itself, or ctx ended (and
		// database/sql rolls back). Nothing of this attempt commits now.
		_ = tx.Rollback()
		return CommitOutcome{RecordErr: err}
	}
	return p.out
}
