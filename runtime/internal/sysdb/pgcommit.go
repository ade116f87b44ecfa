package sysdb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

	insert    string // the strict checkpoint insert; "" commits plainly
	params    [][]byte
	paramsArr [12][]byte // backs params

	sent bool // Commit ran the pipeline: out is its outcome
	out  CommitOutcome
}

// arm makes the next Commit send insert with args (strings and integers)
// before COMMIT, in PostgreSQL's text format.
func (p *pendingCommit) arm(insert string, args []any) error {
	if len(args) > len(p.paramsArr) {
		return fmt.Errorf("checkpoint: %d arguments", len(args))
	}
	size := 0
	for _, a := range args {
		if v, ok := a.(string); ok {
			size += len(v)
		} else {
			size += 20 // an int64's digits and sign
		}
	}
	buf := make([]byte, 0, size) // never grows: params slice it
	p.params = p.paramsArr[:0]
	for i, a := range args {
		start := len(buf)
		switch v := a.(type) {
		case string:
			buf = append(buf, v...)
		case int:
			buf = strconv.AppendInt(buf, int64(v), 10)
		case int64:
			buf = strconv.AppendInt(buf, v, 10)
		default:
			return fmt.Errorf("checkpoint argument %d: unexpected %T", i+1, a)
		}
		p.params = append(p.params, buf[start:len(buf):len(buf)])
	}
	p.insert = insert
	return nil
}

// errCheckpointRefused is what database/sql hears when the checkpoint
// failed and nothing committed; RecordAndCommit reads the outcome itself.
var errCheckpointRefused = errors.New("checkpoint refused: transaction rolled back")

// Commit is database/sql's commit of the transaction.
func (p *pendingCommit) Commit() error {
	c := p.conn
	defer func() { c.tx = nil }()
	if p.insert == "" {
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
func (p *pendingCommit) pipelineCommit() CommitOutcome {
	var out CommitOutcome
	c, ctx := p.conn.pgx, p.ctx
	// Prepared once per connection; pgx answers later calls from its cache.
	sd, err := c.Prepare(ctx, "dbosgen_checkpoint", p.insert)
	if err != nil {
		out.RecordErr = err
		return out
	}
	pipe := c.PgConn().StartPipeline(ctx)
	begin := !p.begun
	if begin {
		pipe.SendQueryParams(p.begin, nil, nil, nil, nil)
	}
	pipe.SendQueryStatement(sd, p.params, nil, nil)
	pipe.SendQueryParams("COMMIT", nil, nil, nil, nil)
	var ierr, cerr error
	if err := pipe.Sync(); err != nil {
		ierr = err
	} else if begin {
		ierr = pipelineResult(pipe)
	}
	if ierr == nil {
		if ierr = pipelineResult(pipe); ierr == nil {
			cerr = pipelineResult(pipe)
		}
	}
	if err := pipe.Close(); err != nil && ierr == nil && cerr == nil {
		cerr = err
	}
	var pgErr *pgconn.PgError
	switch {
	case ierr == nil:
		out.Recorded, out.CommitErr = true, cerr
	case !errors.As(ierr, &pgErr):
		// No answer from the server: whether the pipeline's COMMIT landed
		// is unknown, and the record will say.
		out.CommitErr = ierr
	case pgErr.Code == "23505":
		// Recorded by another execution: the COMMIT was skipped.
	default:
		out.RecordErr = ierr // the server refused the checkpoint: nothing committed
	}
	return out
}

// pipelineResult reads the outcome of the pipeline's next statement.
func pipelineResult(pipe *pgconn.Pipeline) error {
	_, err := pipelineTag(pipe)
	return err
}

// pipelineTag reads the command tag of the pipeline's next statement.
func pipelineTag(pipe *pgconn.Pipeline) (pgconn.CommandTag, error) {
	res, err := pipe.GetResults()
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	if rr, ok := res.(*pgconn.ResultReader); ok {
		return rr.Close()
	}
	return pgconn.CommandTag{}, fmt.Errorf("pipeline: unexpected %T", res)
}
