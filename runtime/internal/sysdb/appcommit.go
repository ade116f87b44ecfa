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

// TxContext is the context a transaction begins with and its function runs
// in: the caller's, with one value of the caller's (the engine's step) and
// what the driver needs (the pendingCommit), and the Tx itself. One
// allocation where a context.WithValue for each, the Tx and its
// pendingCommit were four.
type TxContext struct {
	context.Context
	key, val any
	tx       Tx
	pending  pendingCommit // PostgreSQL
}

// Set makes c parent's context with val under key.
func (c *TxContext) Set(parent context.Context, key, val any) {
	c.Context, c.key, c.val = parent, key, val
}

func (c *TxContext) Value(key any) any {
	switch key {
	case pendingKey{}:
		return &c.pending
	case c.key:
		return c.val
	}
	return c.Context.Value(key)
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
