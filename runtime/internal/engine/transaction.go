package engine

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
	"github.com/jmoiron/sqlx"
)

// Isolation is a transaction's isolation level. The zero value is
// Serializable, the default of //dbos:transaction.
type Isolation int

// Isolation levels. SQLite runs every transaction serializably.
const (
	Serializable Isolation = iota
	RepeatableRead
	ReadCommitted
)

func (i Isolation) sqlLevel() sql.IsolationLevel {
	switch i {
	case RepeatableRead:
		return sql.LevelRepeatableRead
	case ReadCommitted:
		return sql.LevelReadCommitted
	}
	return sql.LevelSerializable
}

// TransactionOptions come from a //dbos:transaction directive.
type TransactionOptions struct {
	Name      string
	Isolation Isolation
	ReadOnly  bool
}

// appDB is the application database, where transactions run: the engine
// half (sysdb.AppDB) and, on PostgreSQL, the pool it runs on.
type appDB struct {
	*sysdb.AppDB
	db   *sqlx.DB
	pool *pgPool // a separate PostgreSQL application database's own pool
}

func (a *appDB) close() { a.AppDB.Close() }

// openApp opens the application database. On PostgreSQL, when it is the
// system database, transactions share sysPool: one cap for the runtime, and
// a checkpoint can commit with the transaction's writes.
func openApp(ctx context.Context, rc resolved, store sysdb.Store, sysPool *pgPool) (*appDB, error) {
	a := &appDB{}
	var err error
	switch {
	case rc.app.engine == engineSQLite && rc.sameDB:
		a.AppDB, err = sysdb.AppOnSQLite(ctx, store.(*sysdb.SQLite))
	case rc.app.engine == engineSQLite:
		a.AppDB, err = sysdb.OpenSQLiteApp(ctx, rc.app.path)
	default:
		// database/sql over a pgxpool: the pool's cap, its bounded and
		// logged waits for a connection, and its size rules (see Config)
		// hold for transactions too. database/sql keeps no idle connections
		// of its own (stdlib.OpenDBFromPool), so none hide from the pool.
		pool := sysPool
		if !rc.sameDB {
			if pool, err = openPool(ctx, rc, "application"); err != nil {
				return nil, fmt.Errorf("application database: %w", err)
			}
			a.pool = pool
		}
		a.AppDB, err = sysdb.PostgresApp(ctx, pool.Pool, rc.Schema, rc.AppName, rc.sameDB, func() {
			if a.pool != nil {
				a.pool.Close()
			}
		})
	}
	if err != nil {
		return nil, errorf(ErrDatabase, err, "dbos: application database %s", rc.app)
	}
	a.db = a.AppDB.DB()
	return a, nil
}

// AppDB is the application database, for queries and migrations of your own
// outside transactions.
func (rt *Runtime) AppDB() *sqlx.DB { return rt.app.db }

// RunTransaction runs fn in one database transaction on the application
// database. Generated xTx wrappers call it.
//
// Inside a workflow it takes the next step ID, and its outcome is recorded in
// the same database transaction as fn's writes, so those writes happen
// exactly once: a replay returns the recorded outcome without running fn.
// Serialization failures and deadlocks (SQLSTATE 40001, 40P01), and a
// connection lost before the commit, run fn again in a fresh transaction
// after a backoff; errors returned by fn roll the transaction back and are
// recorded, not retried. When the database fails in a way that leaves the
// outcome unknown, the workflow stops without recording one and stays
// PENDING, so recovery settles it from the database.
//
// Outside a workflow fn runs once per call in a transaction, with the same
// retries, and nothing is recorded. Inside a step or another transaction
// RunTransaction refuses with ErrTransactionInStep.
//
// Read-only transactions have no effects to protect: their result is
// checkpointed after they end, like a step's. On SQLite every transaction is
// SERIALIZABLE whatever the isolation asked, and read-only transactions run
// on the read-only connections, so they never wait for the writer and
// cannot write.
func RunTransaction[R any](ctx context.Context, opts *TransactionOptions, fn func(context.Context, *sqlx.Tx) (R, error)) (R, error) {
	var zero R
	if s := stepFrom(ctx); s != nil {
		what := "step"
		if s.tx {
			what = "transaction"
		}
		return zero, fmt.Errorf("%w: transaction %s called from %s %s", ErrTransactionInStep, opts.Name, what, s.info.Name)
	}
	rt, err := runtimeFrom(ctx)
	if err != nil {
		return zero, err
	}
	wf := workflowFrom(ctx)
	if wf == nil {
		out, _, err := runTx(ctx, rt, opts, TransactionAttempt{StepInfo: StepInfo{Name: opts.Name, MaxAttempts: 1}}, nil, fn)
		if infra, ok := errorAs[*infraError](err); ok {
			err = infra.err
		}
		return out, err
	}
	if halt := wf.halted(); halt != nil {
		return zero, refuse(halt, "dbos: transaction "+opts.Name)
	}
	id := wf.nextStepID()
	if err := wf.kitCheck(id); err != nil {
		return zero, err
	}
	if rec, ok := wf.recorded[id]; ok {
		return replay[R](wf, rec, opts.Name)
	}
	row := sysdb.StepRow{WorkflowID: wf.id, StepID: id, Name: opts.Name, StartedMS: time.Now().UnixMilli()}
	if !rt.app.SameAsSystem() && wf.recorded != nil {
		// A previous execution may have committed in the application
		// database and crashed before its system checkpoint: that record is
		// authoritative, and is copied to the system database now.
		rec, found, err := rt.app.Lookup(ctx, wf.id, id)
		if err != nil {
			return zero, wf.abort(errorf(ErrDatabase, err, "dbos: reading transaction %d (%s) of workflow %s", id, opts.Name, wf.id))
		}
		if found {
			return backfill[R](wf, rec, opts.Name)
		}
	}
	at := TransactionAttempt{StepInfo: StepInfo{WorkflowID: wf.id, StepID: id, Name: opts.Name, MaxAttempts: 1}, WorkflowName: wf.name}
	rowp := &row
	if opts.ReadOnly {
		rowp = nil // a read-only transaction cannot write its checkpoint; it has no effects to protect
	}
	out, rec, err := runTx(ctx, rt, opts, at, rowp, fn)
	infra, isInfra := errorAs[*infraError](err)
	switch {
	case errors.Is(err, errAlreadyRecorded):
		if rt.app.SameAsSystem() {
			return replay[R](wf, rec, opts.Name)
		}
		return backfill[R](wf, rec, opts.Name)
	case err != nil && ctx.Err() != nil:
		return out, err // interrupted: not an outcome
	case err != nil && wf.aborted() != nil:
		return out, err
	case isInfra:
		// Not the function's outcome: leave the step unrecorded and the
		// workflow PENDING; recovery finds what, if anything, committed.
		return out, wf.abort(infra.err)
	case err == nil && rowp != nil && rt.app.SameAsSystem():
		return out, nil // the checkpoint committed with the writes
	}
	// Application errors (the transaction rolled back), read-only results,
	// and results committed in a separate application database are
	// checkpointed in the system database like a step.
	return record(wf, row, out, err)
}

// backfill copies an outcome recorded in the application database to the
// system database and returns it.
func backfill[R any](wf *workflowState, rec sysdb.StepRow, name string) (R, error) {
	stored, _, err := wf.rt.recordStep(rec)
	if err != nil {
		var zero R
		return zero, wf.abort(errorf(ErrDatabase, err, "dbos: checkpointing transaction %d (%s) of workflow %s", rec.StepID, name, wf.id))
	}
	return replay[R](wf, stored, name)
}

var errAlreadyRecorded = errors.New("transaction outcome already recorded")

// infraError is a failure of the database rather than of the function: it
// is not the transaction's outcome and is never recorded.
type infraError struct{ err error }

func (e *infraError) Error() string { return e.err.Error() }
func (e *infraError) Unwrap() error { return e.err }

// retryError asks runTx to run the transaction again: it lost a
// serialization conflict or its connection, and did not commit.
type retryError struct {
	reason string
	err    error
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// runTx runs fn in a transaction, retrying serialization failures and lost
// connections, and tells the runtime's observers of each attempt. With a
// row, fn's output is recorded inside the transaction; if another execution
// recorded this step first, runTx returns that record with
// errAlreadyRecorded.
func runTx[R any](ctx context.Context, rt *Runtime, opts *TransactionOptions, at TransactionAttempt, row *sysdb.StepRow,
	fn func(context.Context, *sqlx.Tx) (R, error)) (R, sysdb.StepRow, error) {
	at.ReadOnly = opts.ReadOnly
	delay := 10 * time.Millisecond
	for attempt := 0; ; attempt++ {
		at.Attempt = attempt
		actx := rt.obs.TransactionStarted(ctx, at)
		out, rec, err := tryTx(actx, rt, opts, at.StepInfo, row, fn)
		end := TransactionAttemptEnd{TransactionAttempt: at}
		endCtx := actx // may be cancelled: the end of an attempt is reported all the same
		again, ok := errorAs[*retryError](err)
		if !ok {
			switch infra, isInfra := errorAs[*infraError](err); {
			case errors.Is(err, errAlreadyRecorded):
				end.Superseded = true
			case isInfra:
				end.Err = infra.err
			default:
				end.Err = err
			}
			end.Interrupted = err != nil && !end.Superseded && ctx.Err() != nil
			rt.obs.TransactionEnded(endCtx, end)
			return out, rec, err
		}
		end.Err = again.err
		if ctx.Err() != nil {
			end.Interrupted = true
			rt.obs.TransactionEnded(endCtx, end)
			return out, rec, again.err
		}
		wait := delay/2 + rand.N(delay/2+1)
		end.Retry, end.RetryReason, end.RetryIn = true, again.reason, wait
		rt.obs.TransactionEnded(endCtx, end)
		rt.txRetries.Add(1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return out, rec, again.err
		case <-t.C:
		}
		delay = min(delay*2, time.Second)
	}
}

// errorAs is errors.As returning the match. Its target escapes to the heap,
// so it is declared only for an error: a transaction that succeeded
// allocates nothing to learn it.
func errorAs[T error](err error) (T, bool) {
	if err == nil {
		var zero T
		return zero, false
	}
	var target T
	ok := errors.As(err, &target)
	return target, ok
}

// retryable wraps err for another attempt if the transaction lost a
// serialization conflict or its connection; nil otherwise.
func retryable(err error) error {
	switch {
	case sysdb.IsSerializationFailure(err):
		return &retryError{"serialization failure", err}
	case errors.Is(err, driver.ErrBadConn) || sysdb.IsTransient(err):
		return &retryError{"connection failure", err}
	}
	return nil
}

// txFrame is an attempt's context and step state: one allocation (see
// sysdb.TxContext).
type txFrame struct {
	ctx  sysdb.TxContext
	step stepState
}

func tryTx[R any](ctx context.Context, rt *Runtime, opts *TransactionOptions, info StepInfo, row *sysdb.StepRow,
	fn func(context.Context, *sqlx.Tx) (R, error)) (out R, rec sysdb.StepRow, err error) {
	a := rt.app
	f := &txFrame{step: stepState{info: info, tx: true}}
	f.ctx.Set(ctx, stepKey, &f.step)
	txCtx := &f.ctx
	tx, err := a.BeginIn(txCtx, opts.Isolation.sqlLevel(), opts.ReadOnly)
	if err != nil {
		if again := retryable(err); again != nil && ctx.Err() == nil {
			return out, rec, again
		}
		return out, rec, &infraError{errorf(ErrDatabase, err, "dbos: beginning transaction %s", opts.Name)}
	}
	done := false
	defer func() {
		if !done {
			_ = tx.Rollback()
		}
	}()
	out, err = callSafely(txCtx, func(c context.Context) (R, error) { return fn(c, tx.Tx) })
	if err != nil {
		if ctx.Err() != nil {
			return out, rec, err
		}
		if sysdb.IsSerializationFailure(err) {
			return out, rec, &retryError{"serialization failure", err}
		}
		// An error caused by a lost connection is not the function's
		// outcome: nothing committed, run it again.
		if a.ConnectionLost(ctx, tx) {
			return out, rec, &retryError{"connection failure", err}
		}
		return out, rec, err
	}
	if row != nil {
		r := *row
		if r.Output, err = encodeValue(out); err != nil {
			return out, rec, fmt.Errorf("dbos: transaction %s returned a value that cannot be stored as JSON: %w", opts.Name, err)
		}
		res := a.RecordAndCommit(ctx, tx, r)
		done = true
		switch {
		case res.RecordErr != nil:
			if again := retryable(res.RecordErr); again != nil && ctx.Err() == nil {
				return out, rec, again
			}
			// The function left its transaction unusable (it swallowed an
			// error, or committed or rolled back itself): that is its outcome.
			return out, rec, fmt.Errorf("dbos: transaction %s: recording its outcome in its own transaction: %w", opts.Name, res.RecordErr)
		case !res.Recorded && res.CommitErr == nil:
			rec, err = lookupRecorded(rt, r)
			return out, rec, err
		}
		err = res.CommitErr
	} else {
		err = tx.Commit()
		done = true
	}
	if err == nil {
		return out, rec, nil
	}
	if sysdb.IsSerializationFailure(err) {
		return out, rec, &retryError{"serialization failure", err}
	}
	if row == nil {
		if opts.ReadOnly && retryable(err) != nil {
			return out, rec, retryable(err) // no effects: safe to run again
		}
		// Outside a workflow nothing says whether a commit that lost its
		// connection landed.
		return out, rec, &infraError{errorf(ErrDatabase, err, "dbos: committing transaction %s", opts.Name)}
	}
	// The acknowledgement may be lost while the commit landed: the record
	// in the database says which.
	var found bool
	lerr := rt.retryDB(rt.dbCtx, func(c context.Context) (e error) {
		rec, found, e = a.Lookup(c, row.WorkflowID, row.StepID)
		return e
	})
	switch {
	case lerr != nil:
		return out, rec, &infraError{errorf(ErrDatabase, err, "dbos: committing transaction %s (whether it committed is unknown: %v)", opts.Name, lerr)}
	case found:
		return out, rec, errAlreadyRecorded
	case retryable(err) != nil:
		return out, rec, retryable(err) // it did not land
	}
	// The server refused the commit (a deferred constraint, say): the
	// transaction rolled back, and that is its outcome.
	return out, rec, fmt.Errorf("dbos: committing transaction %s: %w", opts.Name, err)
}

// lookupRecorded reads the outcome another execution recorded for row's
// step, and returns it with errAlreadyRecorded.
func lookupRecorded(rt *Runtime, row sysdb.StepRow) (sysdb.StepRow, error) {
	var rec sysdb.StepRow
	var found bool
	err := rt.retryDB(rt.dbCtx, func(c context.Context) (e error) {
		rec, found, e = rt.app.Lookup(c, row.WorkflowID, row.StepID)
		return e
	})
	if err == nil && !found {
		err = errors.New("recorded outcome vanished")
	}
	if err != nil {
		return rec, &infraError{errorf(ErrDatabase, err, "dbos: reading transaction %d of workflow %s", row.StepID, row.WorkflowID)}
	}
	return rec, errAlreadyRecorded
}
