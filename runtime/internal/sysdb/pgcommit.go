package sysdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// A transaction step's checkpoint travels with its COMMIT: one round trip,
// as a raw transaction's COMMIT is. database/sql gives no way to reach the
// connection under a *sql.Tx, and ending a transaction it began behind its
// back costs it a ROLLBACK round trip of its own; so the driver does the
// commit. Transactions begin on a *sql.DB whose connections are pgx's
// stdlib ones with BeginTx replaced: when BeginTx's context carries a
// pendingCommit, the driver transaction is that pendingCommit, and its
// Commit sends whatever checkpoint RecordAndCommit armed it with.

// pendingKey is the context key under which AppDB.Begin hands a
// pendingCommit to the driver.
type pendingKey struct{}

// pendingCommit is one PostgreSQL transaction's commit: the driver.Tx
// database/sql ends, and the checkpoint to send with it.
type pendingCommit struct {
	inner driver.Tx // stdlib's: a plain COMMIT, and ROLLBACK
	ctx   context.Context
	conn  *pgx.Conn

	insert string // the strict checkpoint insert; "" commits plainly
	params [][]byte
	buf    []byte // backs params

	sent bool // Commit ran the pipeline: out is its outcome
	out  CommitOutcome
}

// arm makes the next Commit send insert with args (strings and integers)
// before COMMIT, in PostgreSQL's text format.
func (p *pendingCommit) arm(insert string, args []any) error {
	p.params, p.buf = p.params[:0], p.buf[:0]
	var ends [16]int
	if len(args) > len(ends) {
		return fmt.Errorf("checkpoint: %d arguments", len(args))
	}
	for i, a := range args {
		switch v := a.(type) {
		case string:
			p.buf = append(p.buf, v...)
		case int:
			p.buf = strconv.AppendInt(p.buf, int64(v), 10)
		case int64:
			p.buf = strconv.AppendInt(p.buf, v, 10)
		default:
			return fmt.Errorf("checkpoint argument %d: unexpected %T", i+1, a)
		}
		ends[i] = len(p.buf)
	}
	// Sliced only once buf stops growing.
	start := 0
	for _, end := range ends[:len(args)] {
		p.params = append(p.params, p.buf[start:end:end])
		start = end
	}
	p.insert = insert
	return nil
}

// errCheckpointRefused is what database/sql hears when the checkpoint
// failed and nothing committed; RecordAndCommit reads the outcome itself.
var errCheckpointRefused = errors.New("checkpoint refused: transaction rolled back")

// Commit is database/sql's commit of the transaction.
func (p *pendingCommit) Commit() error {
	if p.insert == "" {
		return p.inner.Commit()
	}
	p.sent = true
	p.out = pipelineCommit(p.ctx, p.conn, p.insert, p.params)
	if pg := p.conn.PgConn(); !pg.IsClosed() && pg.TxStatus() != 'I' {
		// The checkpoint failed, so the server skipped COMMIT and waits in
		// the aborted transaction for a ROLLBACK.
		if err := p.inner.Rollback(); err != nil {
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
func (p *pendingCommit) Rollback() error { return p.inner.Rollback() }

// pipelineCommit sends the checkpoint insert and COMMIT behind one Sync, in
// one write. A checkpoint that finds the step recorded already fails on its
// key, and the server then skips the COMMIT: a duplicate never commits.
func pipelineCommit(ctx context.Context, c *pgx.Conn, insert string, params [][]byte) CommitOutcome {
	var out CommitOutcome
	// Prepared once per connection; pgx answers later calls from its cache.
	sd, err := c.Prepare(ctx, "dbosgen_checkpoint", insert)
	if err != nil {
		out.RecordErr = err
		return out
	}
	pipe := c.PgConn().StartPipeline(ctx)
	pipe.SendQueryStatement(sd, params, nil, nil)
	pipe.SendQueryParams("COMMIT", nil, nil, nil, nil)
	var ierr, cerr error
	if err := pipe.Sync(); err != nil {
		ierr = err
	} else if ierr = pipelineResult(pipe); ierr == nil {
		cerr = pipelineResult(pipe)
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
	res, err := pipe.GetResults()
	if err != nil {
		return err
	}
	if rr, ok := res.(*pgconn.ResultReader); ok {
		_, err = rr.Close()
		return err
	}
	return fmt.Errorf("pipeline: unexpected %T", res)
}

// openTxDB is database/sql over pool for transactions whose checkpoint
// commits with them. Like stdlib.OpenDBFromPool it keeps no idle
// connections: the pool's cap and waits hold.
func openTxDB(pool *pgxpool.Pool) *sql.DB {
	db := sql.OpenDB(txConnector{stdlib.GetPoolConnector(pool)})
	db.SetMaxIdleConns(0)
	return db
}

type txConnector struct{ driver.Connector }

func (c txConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := dc.(*stdlib.Conn)
	if !ok {
		_ = dc.Close()
		return nil, fmt.Errorf("dbos: unexpected driver connection %T", dc)
	}
	return txConn{sc}, nil
}

// txConn is stdlib's connection, every optional driver interface included,
// but for BeginTx.
type txConn struct{ *stdlib.Conn }

func (c txConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.Conn.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	p, ok := ctx.Value(pendingKey{}).(*pendingCommit)
	if !ok {
		return tx, nil
	}
	p.inner, p.ctx, p.conn = tx, ctx, c.Conn.Conn()
	return p, nil
}
