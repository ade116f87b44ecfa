package sysdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	_ "modernc.org/sqlite" // driver "sqlite": pure Go, no cgo
)

// SQLite is the Store on an embedded SQLite file (modernc.org/sqlite through
// database/sql). It is the zero-configuration default; PostgreSQL is the
// production and multi-process engine.
//
// # Connections and the write lock
//
// SQLite allows one writer per file at a time. The store keeps two pools on
// the file:
//
//   - the write pool (WriteDB) has exactly one connection. Every write in this
//     process goes through it: the Store's own statements, Migrate, and —
//     by contract — application transactions. database/sql hands the
//     connection to one caller at a time and queues the others (honouring
//     their contexts), so writers in one process never race each other for
//     SQLite's file lock and never see SQLITE_BUSY. Its transactions start
//     with BEGIN IMMEDIATE (DSN _txlock=immediate), so a transaction takes the
//     file's write lock up front instead of failing to upgrade a read lock
//     halfway through (the classic WAL "database is locked" on a deferred
//     transaction).
//   - the read pool (ReadDB) has several
//     connections opened with query_only=1. In WAL mode readers never block
//     and are never blocked by the writer. A write attempted on it fails at
//     once ("attempt to write a readonly database") instead of racing the
//     writer: misuse is loud, not intermittent.
//
// Other processes on the same file are serialized by SQLite's own lock; every
// connection waits for it up to busyTimeout (busy_timeout pragma), which is far
// longer than any single-statement write or checkpoint transaction holds it.
//
// # How a transaction implementation takes the write lock
//
// Run a read-write application transaction as WriteDB().BeginTx (or
// sqlx.NewDb(WriteDB(), "sqlite").BeginTxx): that acquires the single write
// connection — the process-wide write lock — and issues BEGIN IMMEDIATE — the
// file-wide lock. Record the transaction's outcome (transaction_outputs)
// through that same *sql.Tx, so one commit holds the user's writes and the
// checkpoint. Rule that keeps it deadlock-free: while a goroutine holds the
// write connection (an open *sql.Tx, *sql.Conn, or unclosed *sql.Rows from
// WriteDB) it must not call any Store write method (InitWorkflow, RecordStep,
// FinishWorkflow, Cancel, Migrate) nor begin a second write transaction: those
// would wait for the connection it holds. Store reads (Steps, Workflow,
// Pending, Cancelled) use the read pool and are always safe, e.g. to look up a
// recorded outcome before or during a transaction. Step checkpoints from other
// goroutines simply queue behind an open transaction until it commits or rolls
// back, so keep transactions short, and always end them (defer Rollback).
// Read-only transactions (sql.TxOptions{ReadOnly: true}) may use ReadDB and
// then run concurrently with everything. Isolation: the driver ignores
// sql.TxOptions.Isolation; every SQLite transaction is SERIALIZABLE (one
// writer at a time, readers on a WAL snapshot), so any requested level is met.
type SQLite struct {
	*store
	path string
	w    *sql.DB // one connection, BEGIN IMMEDIATE: all writes
	r    *sql.DB // query_only readers
}

// busyTimeout bounds how long a connection waits for another process's write
// lock (or, for readers, for a WAL recovery) before failing with SQLITE_BUSY.
const busyTimeout = 30 * time.Second

// OpenSQLite opens (creating it and its directory if needed) the SQLite file at
// path, for the application appName. Call Migrate before using the store.
//
// Journal mode is WAL: readers and the writer do not block each other, and a
// commit appends to the log instead of rewriting pages. synchronous is FULL:
// with WAL, NORMAL already survives a crash or SIGKILL of the process (the
// committed frames are in the OS page cache and the WAL is replayed on next
// open) but can lose the last commits on power loss or an OS crash; FULL
// fsyncs the WAL at every commit, so a recorded checkpoint is as durable as a
// PostgreSQL commit with synchronous_commit=on. The cost is one fsync per
// commit, which a per-step checkpoint pays on PostgreSQL too.
func OpenSQLite(ctx context.Context, path, appName string) (*SQLite, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, fmt.Errorf("sqlite %s: creating directory: %w", path, err)
	}
	// file: URI so that any character in the path is escaped, not parsed.
	base := (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
	common := fmt.Sprintf("_busy_timeout=%d&_synchronous=FULL", busyTimeout.Milliseconds())

	w, err := sql.Open("sqlite", base+"?"+common+"&_journal_mode=WAL&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// Open the write connection first: it switches the file to WAL (a
	// persistent setting) before any reader connects.
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		w.Close()
		return nil, fmt.Errorf("sqlite %s: journal_mode is %q, WAL is required (is the file on a filesystem without shared memory support?)", path, mode)
	}

	r, err := sql.Open("sqlite", base+"?"+common+"&_query_only=1")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	s := &SQLite{path: abs, w: w, r: r}
	d := &sqliteDriver{w: w, r: r, app: orNull(appName)}
	s.store = newStore(d, sqliteDialect, appName)
	d.wr = newSQLiteWriter(w, s.store.q)
	s.hub = newNotifier(nil)
	return s, nil
}

// Path is the absolute path of the database file.
func (s *SQLite) Path() string { return s.path }

// DB is the handle application transactions on this file must use: it is the
// write pool (WriteDB), whose single connection is the process's write lock
// and whose transactions begin IMMEDIATE. See the type's documentation for
// the rules that keep transactions and checkpoints free of deadlocks.
func (s *SQLite) DB() *sql.DB { return s.w }

// WriteDB is the single-connection pool every write goes through; it is the
// same handle as DB. Leave its pool settings as they are: the store keeps
// statements prepared on its one connection for as long as that lives.
func (s *SQLite) WriteDB() *sql.DB { return s.w }

// ReadDB is the read-only pool (query_only connections); use it for queries
// and read-only transactions, which never wait for the writer.
func (s *SQLite) ReadDB() *sql.DB { return s.r }

// Close closes both pools.
func (s *SQLite) Close() {
	s.d.(*sqliteDriver).wr.close()
	s.r.Close()
	s.w.Close()
}

// sqliteDriver writes through the single write connection and reads
// through the read pool; a workflow's start, steps and finish go below
// database/sql (sqliteWriter).
type sqliteDriver struct {
	w, r *sql.DB
	wr   *sqliteWriter
	app  any // application_name as the writer binds it, boxed once
}

func (d *sqliteDriver) writer() querier { return sqlQuerier{d.w} }
func (d *sqliteDriver) reader() querier { return sqlQuerier{d.r} }

func (d *sqliteDriver) inTx(ctx context.Context, fn func(querier) error) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(sqlQuerier{tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// WatchCancellations reports false and delivers nothing: SQLite has no
// LISTEN/NOTIFY and no cross-process change feed, so the runtime polls
// Cancelled for the workflows it is running (a cheap indexed read on the
// read pool that never waits for the writer).
func (s *SQLite) WatchCancellations(ctx context.Context, fn func(id string)) bool {
	return false
}

var _ Store = (*SQLite)(nil)
