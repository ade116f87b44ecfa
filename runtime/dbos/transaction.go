package dbos

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx" for the application database
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

// appDB is the application database, where transactions run.
type appDB struct {
	db       *sqlx.DB
	sqlite   bool
	same     bool // the system database: the checkpoint commits with the user's writes
	recorder sysdb.TxRecorder
	close    func()
}

func openApp(ctx context.Context, rc resolved, store sysdb.Store) (*appDB, error) {
	a := &appDB{sqlite: rc.app.engine == engineSQLite, same: rc.sameDB}
	a.recorder = sysdb.NewTxRecorder(a.sqlite, rc.Schema, a.same)
	switch {
	case a.sqlite && a.same:
		// The store's write pool has one connection: a transaction holding
		// it is the process's write lock on the file (see sysdb.SQLite).
		a.db = sqlx.NewDb(store.(*sysdb.SQLite).DB(), "sqlite")
		a.close = func() {}
		return a, nil
	case a.sqlite:
		s, err := sysdb.OpenSQLite(ctx, rc.app.path)
		if err == nil {
			if err = sysdb.MigrateSQLiteApp(ctx, s.DB()); err != nil {
				s.Close()
			}
		}
		if err != nil {
			return nil, errorf(ErrDatabase, err, "dbos: application database %s", rc.app)
		}
		a.db, a.close = sqlx.NewDb(s.DB(), "sqlite"), s.Close
		return a, nil
	}
	db, err := sqlx.Open("pgx", rc.app.url)
	if err != nil {
		return nil, fmt.Errorf("%w: application database %s: %v", ErrConfig, rc.app, err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, errorf(ErrDatabase, err, "dbos: cannot reach application database %s (is it running and the URL right?)", rc.app)
	}
	if !a.same {
		if err := sysdb.MigratePostgresApp(ctx, db.DB, rc.Schema); err != nil {
			db.Close()
			return nil, errorf(ErrDatabase, err, "dbos: migrating application database %s", rc.app)
		}
	}
	a.db, a.close = db, func() { db.Close() }
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
// Serialization failures and deadlocks retry in a fresh transaction with
// backoff; errors returned by fn are recorded, not retried. Outside a
// workflow fn runs in a transaction with the same retries and nothing is
// recorded.
func RunTransaction[R any](ctx context.Context, opts *TransactionOptions, fn func(context.Context, *sqlx.Tx) (R, error)) (R, error) {
	var zero R
	if s := stepFrom(ctx); s != nil {
		return zero, fmt.Errorf("%w: transaction %s called from %s", ErrTransactionInStep, opts.Name, s.info.Name)
	}
	rt, err := runtimeFrom(ctx)
	if err != nil {
		return zero, err
	}
	wf := workflowFrom(ctx)
	if wf == nil {
		out, _, err := runTx(ctx, rt, opts, StepInfo{Name: opts.Name}, nil, fn)
		return out, err
	}
	id := wf.nextStepID()
	if rec, ok := wf.recorded[id]; ok {
		return replay[R](wf, rec, opts.Name)
	}
	row := sysdb.StepRow{WorkflowID: wf.id, StepID: id, Name: opts.Name}
	if !rt.app.same && wf.recorded != nil {
		// A previous execution may have committed in the application
		// database and crashed before its system checkpoint: that record is
		// authoritative, and is copied to the system database now.
		rec, found, err := rt.app.recorder.Lookup(ctx, rt.app.db, wf.id, id)
		if err != nil {
			return zero, wf.abort(errorf(ErrDatabase, err, "dbos: reading transaction %d (%s) of workflow %s", id, opts.Name, wf.id))
		}
		if found {
			return backfill[R](wf, rec, opts.Name)
		}
	}
	info := StepInfo{WorkflowID: wf.id, StepID: id, Name: opts.Name, MaxAttempts: 1}
	rowp := &row
	if opts.ReadOnly {
		rowp = nil // a read-only transaction cannot write its checkpoint; it has no effects to protect
	}
	out, rec, err := runTx(ctx, rt, opts, info, rowp, fn)
	switch {
	case errors.Is(err, errAlreadyRecorded):
		if rt.app.same {
			return replay[R](wf, rec, opts.Name)
		}
		return backfill[R](wf, rec, opts.Name)
	case err != nil && ctx.Err() != nil:
		return out, err // interrupted: not an outcome
	case err != nil && wf.aborted() != nil:
		return out, err
	case err == nil && rowp != nil && rt.app.same:
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

// runTx runs fn in a transaction, retrying serialization failures. With a
// row, fn's output is recorded inside the transaction; if another execution
// recorded this step first, runTx rolls back and returns that record with
// errAlreadyRecorded.
func runTx[R any](ctx context.Context, rt *Runtime, opts *TransactionOptions, info StepInfo, row *sysdb.StepRow,
	fn func(context.Context, *sqlx.Tx) (R, error)) (R, sysdb.StepRow, error) {
	var zero R
	delay := 10 * time.Millisecond
	for attempt := 0; ; attempt++ {
		info.Attempt = attempt
		out, rec, err := tryTx(ctx, rt, opts, info, row, fn)
		var lost *retryableCommit
		if err == nil || !(sysdb.IsSerializationFailure(err) || errors.As(err, &lost)) || ctx.Err() != nil {
			return out, rec, err
		}
		rt.log.Info("transaction retried after a serialization failure", "transaction", opts.Name,
			"workflow_id", info.WorkflowID, "step_id", info.StepID, "attempt", attempt+1, "error", err)
		rt.txRetries.Add(1)
		select {
		case <-ctx.Done():
			return zero, rec, ctx.Err()
		case <-time.After(delay/2 + rand.N(delay/2+1)):
		}
		delay = min(delay*2, time.Second)
	}
}

func tryTx[R any](ctx context.Context, rt *Runtime, opts *TransactionOptions, info StepInfo, row *sysdb.StepRow,
	fn func(context.Context, *sqlx.Tx) (R, error)) (out R, rec sysdb.StepRow, err error) {
	a := rt.app
	txOpts := &sql.TxOptions{Isolation: opts.Isolation.sqlLevel(), ReadOnly: opts.ReadOnly}
	if a.sqlite {
		txOpts = nil // SQLite is serializable; the driver accepts no levels
	}
	tx, err := a.db.BeginTxx(ctx, txOpts)
	if err != nil {
		return out, rec, errorf(ErrDatabase, err, "dbos: beginning transaction %s", opts.Name)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()
	txCtx := context.WithValue(ctx, stepKey, &stepState{info: info, tx: true})
	out, err = callSafely(txCtx, func(c context.Context) (R, error) { return fn(c, tx) })
	if err != nil {
		return out, rec, err
	}
	if row != nil {
		r := *row
		if r.Output, err = encodeValue(out); err != nil {
			return out, rec, fmt.Errorf("dbos: transaction %s returned a value that cannot be stored as JSON: %w", opts.Name, err)
		}
		fresh, err := a.recorder.Record(ctx, tx.Tx, r)
		if err != nil {
			return out, rec, err
		}
		if !fresh {
			_ = tx.Rollback()
			committed = true
			rec, _, err = a.recorder.Lookup(ctx, a.db, r.WorkflowID, r.StepID)
			if err != nil {
				return out, rec, errorf(ErrDatabase, err, "dbos: reading transaction %d of workflow %s", r.StepID, r.WorkflowID)
			}
			return out, rec, errAlreadyRecorded
		}
	}
	if err := tx.Commit(); err != nil {
		committed = true
		if row == nil || sysdb.IsSerializationFailure(err) {
			return out, rec, err
		}
		// The acknowledgement may be lost while the commit landed: the
		// record in the database says which.
		got, found, lerr := a.recorder.Lookup(context.WithoutCancel(ctx), a.db, row.WorkflowID, row.StepID)
		if lerr == nil && found {
			return out, got, errAlreadyRecorded
		}
		if lerr == nil && sysdb.IsTransient(err) {
			return out, rec, &retryableCommit{err}
		}
		return out, rec, errorf(ErrDatabase, err, "dbos: committing transaction %s", opts.Name)
	}
	committed = true
	return out, rec, nil
}

// retryableCommit marks a commit known not to have landed: run it again.
type retryableCommit struct{ err error }

func (e *retryableCommit) Error() string { return "commit did not land: " + e.err.Error() }
func (e *retryableCommit) Unwrap() error { return e.err }
