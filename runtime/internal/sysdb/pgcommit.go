package sysdb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// A transaction step's checkpoint travels with its COMMIT: one round trip,
// as a raw transaction's COMMIT is. database/sql gives no way to reach the
// connection under a *sql.Tx, and ending a transaction it began behind its
// back costs it a ROLLBACK round trip of its own; so the driver does the
// commit. AppDB.Begin passes a pendingCommit in BeginTx's context; the
// connection (txConn) makes it the driver transaction, and its Commit sends
// whatever checkpoint RecordAndCommit armed it with.

// pendingKey is the context key under which AppDB.Begin hands a
// pendingCommit to the driver.
type pendingKey struct{}

// pendingCommit is one PostgreSQL transaction: the driver.Tx database/sql
// ends, and the checkpoint to send with its COMMIT.
type pendingCommit struct {
	conn  *txConn
	ctx   context.Context
	begin string // BEGIN, sent with the first statement (see txConn)
	begun bool   // the server is in the transaction

	rec *TxRecorder // the checkpoint's statement; nil commits plainly
	row StepRow     // the checkpoint

	sent bool // Commit ran the pipeline: out is its outcome
	out  CommitOutcome
}

// arm makes the next Commit send rec's strict insert of row before COMMIT.
// The parameters are encoded there, on the connection's scratch: until
// then the function may have ended the transaction and its connection gone
// to another.
func (p *pendingCommit) arm(rec *TxRecorder, row StepRow) {
	p.rec, p.row = rec, row
}

// errCheckpointRefused is what database/sql hears when the checkpoint
// failed and nothing committed; RecordAndCommit reads the outcome itself.
var errCheckpointRefused = errors.New("checkpoint refused: transaction rolled back")

// Commit is database/sql's commit of the transaction.
func (p *pendingCommit) Commit() error {
	c := p.conn
	defer func() { c.tx = nil }()
	if p.rec == nil {
		if !p.begun {
			return nil // nothing was sent: nothing to commit
		}
		tag, err := c.pgx.Exec(p.ctx, "commit")
		if err == nil && tag.String() == "ROLLBACK" {
			err = pgx.ErrTxCommitRollback
		}
		return err
	}
	p.sent = true
	p.out = p.pipelineCommit()
	if pg := c.pgx.PgConn(); !pg.IsClosed() && pg.TxStatus() != 'I' {
		// The checkpoint failed, so the server skipped COMMIT and waits in
		// the aborted transaction for a ROLLBACK.
		if _, err := c.pgx.Exec(p.ctx, "rollback"); err != nil {
			return driver.ErrBadConn
		}
	}
	switch {
	case p.out.CommitErr != nil:
		return p.out.CommitErr
	case !p.out.Recorded:
		return errCheckpointRefused
	}
	return nil
}

// Rollback is database/sql's rollback of the transaction.
func (p *pendingCommit) Rollback() error {
	c := p.conn
	c.tx = nil
	if !p.begun {
		return nil
	}
	if _, err := c.pgx.Exec(p.ctx, "rollback"); err != nil {
		// The pool discards a connection left inside a transaction.
		return driver.ErrBadConn
	}
	return nil
}

// pipelineCommit sends the checkpoint insert and COMMIT behind one Sync, in
// one write (BEGIN first if the function sent nothing). A checkpoint that
// finds the step recorded already fails on its key, and the server then
// skips the COMMIT: a duplicate never commits.
//
// As a step's checkpoint (see hot), the round trip is not cut short by the
// caller's cancellation, which would only leave its outcome unknown; the
// caller's deadline, if any, and hotTimeout bound it.
func (p *pendingCommit) pipelineCommit() CommitOutcome {
	var out CommitOutcome
	c, ctx := p.conn.pgx, p.ctx
	// Prepared once per connection; pgx answers later calls from its cache.
	sd, err := c.Prepare(ctx, "dbosgen_checkpoint", p.rec.strict)
	if err != nil {
		out.RecordErr = err
		return out
	}
	pg := c.PgConn()
	nc := pg.Conn()
	deadline := time.Now().Add(hotTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := nc.SetDeadline(deadline); err != nil {
		out.RecordErr = err
		return out
	}
	args := &p.conn.sc.params
	p.rec.encode(args, p.row)
	fe := pg.Frontend()
	begin := !p.begun
	if begin {
		sendExec(fe, p.begin)
	}
	sendPrepared(fe, sd, args.values(), nil, nil)
	sendExec(fe, "COMMIT")
	var r batchReplies
	if err = flushBatch(fe); err == nil {
		r, err = readBatch(pg)
	}
	args.reset()
	insertAt := 0 // the statement that is the checkpoint
	if begin {
		insertAt = 1
	}
	switch {
	case err != nil:
		// No answer from the server: whether the COMMIT landed is unknown,
		// and the record will say.
		abandon(pg)
		out.Recorded, out.CommitErr = r.done > insertAt, err
		if timedOut(err) && ctx.Err() != nil {
			out.CommitErr = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return out
	case r.err == nil:
		out.Recorded = true
		if r.rollback {
			out.CommitErr = pgx.ErrTxCommitRollback
		}
	case r.errAt > insertAt:
		out.Recorded, out.CommitErr = true, r.err // the server refused the COMMIT
	case isUniqueViolation(r.err):
		// Recorded by another execution: the COMMIT was skipped.
	default:
		out.RecordErr = r.err // the server refused the checkpoint (or BEGIN): nothing committed
	}
	if !pg.IsClosed() {
		_ = nc.SetDeadline(time.Time{})
	}
	return out
}
