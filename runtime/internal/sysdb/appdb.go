package sysdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"
)

// AppDB is the application database as the transaction algorithm needs it:
// where a transaction begins, how its outcome is recorded in it and looked
// up, and whether a failed one lost its connection. What differs between
// the engines lives here, so the algorithm (the engine's RunTransaction)
// is written once.
type AppDB struct {
	rw, ro *sqlx.DB // ro: lookups and read-only transactions
	txdb   *sqlx.DB // PostgreSQL: where transactions begin (see pendingCommit)
	sqlite bool
	same   bool // the system database: one commit holds the writes and the checkpoint
	rec    TxRecorder
	close  func()
}

// AppOnSQLite uses the system store's own file as the application database.
// Its write pool has one connection: a transaction holding it is the
// process's write lock on the file (see SQLite).
func AppOnSQLite(ctx context.Context, s *SQLite) (*AppDB, error) {
	a := &AppDB{rw: sqlx.NewDb(s.WriteDB(), "sqlite"), ro: sqlx.NewDb(s.ReadDB(), "sqlite"), sqlite: true, same: true,
		rec: NewTxRecorder(true, "", true, s.appName), close: func() {}}
	return a, a.rec.Prepare(ctx, s.WriteDB())
}

// OpenSQLiteApp opens an SQLite application database of its own and creates
// dbosgen's table in it.
func OpenSQLiteApp(ctx context.Context, path string) (*AppDB, error) {
	s, err := OpenSQLite(ctx, path, "")
	if err != nil {
		return nil, err
	}
	a := &AppDB{rw: sqlx.NewDb(s.WriteDB(), "sqlite"), ro: sqlx.NewDb(s.ReadDB(), "sqlite"), sqlite: true,
		rec: NewTxRecorder(true, "", false, ""), close: s.Close}
	if err = MigrateSQLiteApp(ctx, s.WriteDB()); err == nil {
		err = a.rec.Prepare(ctx, s.WriteDB())
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return a, nil
}

// PostgresApp uses pool as the application database; same says it is the
// system database, else dbosgen's table is created in schema. closeFn
// releases the pool when the AppDB closes.
func PostgresApp(ctx context.Context, pool *pgxpool.Pool, schema, appName string, same bool, closeFn func()) (*AppDB, error) {
	db := stdlib.OpenDBFromPool(pool)
	txdb := sqlx.NewDb(openTxDB(pool), "pgx")
	x := sqlx.NewDb(db, "pgx")
	a := &AppDB{rw: x, ro: x, txdb: txdb, same: same, rec: NewTxRecorder(false, schema, same, appName), close: func() {
		_ = txdb.Close()
		_ = db.Close()
		closeFn()
	}}
	if !same {
		if err := MigratePostgresApp(ctx, db, schema); err != nil {
			a.close()
			return nil, err
		}
	}
	return a, nil
}

// DB is the read-write handle, for the user's own queries and migrations.
func (a *AppDB) DB() *sqlx.DB { return a.rw }

// SameAsSystem reports whether this is the system database.
func (a *AppDB) SameAsSystem() bool { return a.same }

// Begin starts a transaction. SQLite is serializable whatever is asked (its
// driver takes no levels), and read-only transactions run on its read pool,
// beside the writer.
//
// On PostgreSQL the transaction's driver connection holds tx's
// pendingCommit, so that RecordAndCommit can pipeline its checkpoint with
// its COMMIT.
func (a *AppDB) Begin(ctx context.Context, iso sql.IsolationLevel, readOnly bool) (*Tx, error) {
	return a.BeginIn(&TxContext{Context: ctx}, iso, readOnly)
}

// BeginIn is Begin in c (see Set): the transaction's context from then on,
// the one to run its statements in.
func (a *AppDB) BeginIn(c *TxContext, iso sql.IsolationLevel, readOnly bool) (*Tx, error) {
	var err error
	t := &c.tx
	if a.sqlite {
		db, opts := a.rw, (*sql.TxOptions)(nil)
		if readOnly {
			db, opts = a.ro, &sql.TxOptions{ReadOnly: true}
		}
		t.Tx, err = db.BeginTxx(c, opts)
		return t, err
	}
	t.pending = &c.pending
	t.Tx, err = a.txdb.BeginTxx(c, &sql.TxOptions{Isolation: iso, ReadOnly: readOnly})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Record inserts a transaction's outcome in its own transaction; false means
// one was recorded already.
func (a *AppDB) Record(ctx context.Context, tx *sqlx.Tx, s StepRow) (bool, error) {
	return a.rec.Record(ctx, tx.Tx, s)
}

// Lookup reads a recorded outcome, on the read handle.
func (a *AppDB) Lookup(ctx context.Context, workflowID string, stepID int) (StepRow, bool, error) {
	return a.rec.Lookup(ctx, a.ro, workflowID, stepID)
}

// ConnectionLost reports whether tx's connection is gone, so that an error
// the function returned is a lost connection, not its outcome. An embedded
// SQLite file has no connection to lose.
func (a *AppDB) ConnectionLost(ctx context.Context, tx *Tx) bool {
	if a.sqlite {
		return false
	}
	_, err := tx.ExecContext(ctx, "SELECT 1")
	return err != nil && (IsTransient(err) || errors.Is(err, driver.ErrBadConn))
}

// Close releases the handles this AppDB opened.
func (a *AppDB) Close() { a.close() }
