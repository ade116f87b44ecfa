package sysdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

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

// textParams encodes a checkpoint's arguments (strings and integers) in
// PostgreSQL's text format.
func textParams(args []any) ([][]byte, error) {
	out := make([][]byte, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			out[i] = []byte(v)
		case int:
			out[i] = strconv.AppendInt(nil, int64(v), 10)
		case int64:
			out[i] = strconv.AppendInt(nil, v, 10)
		default:
			return nil, fmt.Errorf("checkpoint argument %d: unexpected %T", i+1, a)
		}
	}
	return out, nil
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
		// pgconn's pipeline rather than a pgx batch: both statements go
		// behind one Sync, in one write.
		params, err := textParams(a.rec.args(s))
		if err != nil {
			out.RecordErr = err
			return nil
		}
		// The checkpoint is a statement prepared once per connection (no
		// round trip after the first); COMMIT goes as text.
		sd, err := c.Conn().Prepare(ctx, "dbosgen_checkpoint", a.rec.strict)
		if err != nil {
			out.RecordErr = err
			return nil
		}
		pipe := c.Conn().PgConn().StartPipeline(ctx)
		pipe.SendQueryStatement(sd, params, nil, nil)
		pipe.SendQueryParams("COMMIT", nil, nil, nil, nil)
		var ierr, cerr error
		if err := pipe.Sync(); err != nil {
			ierr = err
		} else {
			ierr = pipelineResult(pipe)
			if ierr == nil {
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
			// No answer from the server: whether the pipeline's COMMIT
			// landed is unknown, and the record will say.
			out.CommitErr = ierr
		case pgErr.Code == "23505":
			// Recorded by another execution: the COMMIT was skipped.
		default:
			out.RecordErr = ierr // the server refused the checkpoint: nothing committed
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
