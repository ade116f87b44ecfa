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
	path string
	w    *sql.DB // one connection, BEGIN IMMEDIATE: all writes
	r    *sql.DB // query_only readers
}

// busyTimeout bounds how long a connection waits for another process's write
// lock (or, for readers, for a WAL recovery) before failing with SQLITE_BUSY.
const busyTimeout = 30 * time.Second

// sqliteMaxVars is the number of bind variables one statement may use on every
// SQLite build (the historical SQLITE_MAX_VARIABLE_NUMBER default).
const sqliteMaxVars = 999

// OpenSQLite opens (creating it and its directory if needed) the SQLite file at
// path. Call Migrate before using the store.
//
// Journal mode is WAL: readers and the writer do not block each other, and a
// commit appends to the log instead of rewriting pages. synchronous is FULL:
// with WAL, NORMAL already survives a crash or SIGKILL of the process (the
// committed frames are in the OS page cache and the WAL is replayed on next
// open) but can lose the last commits on power loss or an OS crash; FULL
// fsyncs the WAL at every commit, so a recorded checkpoint is as durable as a
// PostgreSQL commit with synchronous_commit=on. The cost is one fsync per
// commit, which a per-step checkpoint pays on PostgreSQL too.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
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
	return &SQLite{path: abs, w: w, r: r}, nil
}

// Path is the absolute path of the database file.
func (s *SQLite) Path() string { return s.path }

// DB is the handle application transactions on this file must use: it is the
// write pool (WriteDB), whose single connection is the process's write lock
// and whose transactions begin IMMEDIATE. See the type's documentation for
// the rules that keep transactions and checkpoints free of deadlocks.
func (s *SQLite) DB() *sql.DB { return s.w }

// WriteDB is the single-connection pool every write goes through; it is the
// same handle as DB.
func (s *SQLite) WriteDB() *sql.DB { return s.w }

// ReadDB is the read-only pool (query_only connections); use it for queries
// and read-only transactions, which never wait for the writer.
func (s *SQLite) ReadDB() *sql.DB { return s.r }

// Close closes both pools.
func (s *SQLite) Close() {
	s.r.Close()
	s.w.Close()
}

// Migrate applies systemMigrations, tracked in dbos_migrations, in one
// BEGIN IMMEDIATE transaction: concurrent migrators (goroutines or
// processes) queue on the write lock, and the second finds nothing to do.
func (s *SQLite) Migrate(ctx context.Context) error {
	return migrateSQLite(ctx, s.w, "dbos_migrations", s.path+": dbos_migrations", systemMigrations)
}

const sqliteInit = `INSERT INTO workflow_status AS w (workflow_uuid, status, name, executor_id,
	application_version, application_id, inputs, parent_workflow_id, recovery_attempts,
	workflow_timeout_ms, workflow_deadline_epoch_ms, created_at, updated_at)
VALUES (?1, 'PENDING', ?2, ?3, ?4, ?5, ?6, NULLIF(?7, ''), 1, NULLIF(?8, 0), NULLIF(?9, 0), ?10, ?10)
ON CONFLICT (workflow_uuid) DO UPDATE SET
	recovery_attempts = w.recovery_attempts + CASE WHEN w.status = 'PENDING' THEN 1 ELSE 0 END,
	status = CASE WHEN w.status = 'PENDING' AND w.recovery_attempts > ?11 THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE w.status END,
	error = CASE WHEN w.status = 'PENDING' AND w.recovery_attempts > ?11 THEN ?12 ELSE w.error END,
	executor_id = CASE WHEN w.status = 'PENDING' THEN excluded.executor_id ELSE w.executor_id END,
	updated_at = CASE WHEN w.status = 'PENDING' THEN excluded.updated_at ELSE w.updated_at END
RETURNING name, status, executor_id, application_version, application_id, COALESCE(inputs, ''),
	COALESCE(output, ''), COALESCE(error, ''), COALESCE(parent_workflow_id, ''), recovery_attempts,
	COALESCE(workflow_timeout_ms, 0), COALESCE(workflow_deadline_epoch_ms, 0), created_at, updated_at`

// InitWorkflow implements Store with one INSERT … ON CONFLICT DO UPDATE …
// RETURNING, the same statement as on PostgreSQL.
//
// SQLite has no xmax, so whether the row was inserted is read off the
// returned row: a fresh row is PENDING with recovery_attempts = 1 and
// created_at = this call's timestamp. An existing row cannot look like that:
// the conflict branch leaves a non-PENDING row non-PENDING, and turns a
// PENDING row's count n into n+1, which is 1 only when n = 0 — and no writer
// creates a PENDING row with a count of 0 (InitWorkflow inserts 1). The
// timestamp is a second guard, for PENDING rows with a count of 0 that
// another tool might create: the conflict branch never writes created_at, so
// such a row would also have to have been created in this very millisecond.
func (s *SQLite) InitWorkflow(ctx context.Context, ip InitParams) (InitResult, error) {
	r := ip.Row
	now := nowMS()
	res := InitResult{Row: WorkflowRow{ID: r.ID}}
	w := &res.Row
	err := s.w.QueryRowContext(ctx, sqliteInit, r.ID, r.Name, r.ExecutorID, r.AppVersion, r.AppName, r.Inputs,
		r.ParentID, r.TimeoutMS, r.DeadlineMS, now, ip.MaxRecoveryAttempts, ip.DeadLetterError).
		Scan(&w.Name, &w.Status, &w.ExecutorID, &w.AppVersion, &w.AppName, &w.Inputs, &w.Output, &w.Error,
			&w.ParentID, &w.RecoveryAttempts, &w.TimeoutMS, &w.DeadlineMS, &w.CreatedMS, &w.UpdatedMS)
	if err != nil {
		return res, err
	}
	res.Inserted = w.Status == StatusPending && w.RecoveryAttempts == 1 && w.CreatedMS == now
	return res, nil
}

const sqliteSteps = `SELECT function_id, function_name, COALESCE(output, ''), COALESCE(error, ''), COALESCE(child_workflow_id, '')
FROM operation_outputs WHERE workflow_uuid = ? ORDER BY function_id`

// Steps implements Store.
func (s *SQLite) Steps(ctx context.Context, workflowID string) ([]StepRow, error) {
	rows, err := s.r.QueryContext(ctx, sqliteSteps, workflowID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StepRow
	for rows.Next() {
		st := StepRow{WorkflowID: workflowID}
		if err := rows.Scan(&st.StepID, &st.Name, &st.Output, &st.Error, &st.ChildID); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

const (
	sqliteRecord = `INSERT INTO operation_outputs (workflow_uuid, function_id, function_name, output, error, child_workflow_id, created_at)
VALUES (?, ?, ?, NULLIF(?, ''), NULLIF(?, ''), NULLIF(?, ''), ?) ON CONFLICT (workflow_uuid, function_id) DO NOTHING`
	sqliteRecorded = `SELECT function_name, COALESCE(output, ''), COALESCE(error, ''), COALESCE(child_workflow_id, '')
FROM operation_outputs WHERE workflow_uuid = ? AND function_id = ?`
)

// RecordStep implements Store: one INSERT; only when another execution
// recorded the step first, a second query reads that outcome.
func (s *SQLite) RecordStep(ctx context.Context, st StepRow) (StepRow, bool, error) {
	res, err := s.w.ExecContext(ctx, sqliteRecord, st.WorkflowID, st.StepID, st.Name, st.Output, st.Error, st.ChildID, nowMS())
	if err != nil {
		return StepRow{}, false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return StepRow{}, false, err
	}
	if n == 1 {
		return st, true, nil
	}
	got := StepRow{WorkflowID: st.WorkflowID, StepID: st.StepID}
	// The conflicting row is committed (the INSERT saw it), so any snapshot
	// taken from now on sees it: the read pool is fine.
	err = s.r.QueryRowContext(ctx, sqliteRecorded, st.WorkflowID, st.StepID).Scan(&got.Name, &got.Output, &got.Error, &got.ChildID)
	return got, false, err
}

const sqliteFinish = `UPDATE workflow_status SET status = ?2, output = NULLIF(?3, ''), error = NULLIF(?4, ''), updated_at = ?5
WHERE workflow_uuid = ?1 AND status = 'PENDING'`

// FinishWorkflow implements Store.
func (s *SQLite) FinishWorkflow(ctx context.Context, id, status, output, errJSON string) (bool, error) {
	return s.execOne(ctx, sqliteFinish, id, status, output, errJSON, nowMS())
}

const sqliteWorkflow = `SELECT name, status, executor_id, application_version, application_id, COALESCE(inputs, ''),
	COALESCE(output, ''), COALESCE(error, ''), COALESCE(parent_workflow_id, ''), recovery_attempts,
	COALESCE(workflow_timeout_ms, 0), COALESCE(workflow_deadline_epoch_ms, 0), created_at, updated_at
FROM workflow_status WHERE workflow_uuid = ?`

// Workflow implements Store.
func (s *SQLite) Workflow(ctx context.Context, id string) (WorkflowRow, error) {
	w := WorkflowRow{ID: id}
	err := s.r.QueryRowContext(ctx, sqliteWorkflow, id).Scan(&w.Name, &w.Status, &w.ExecutorID, &w.AppVersion, &w.AppName,
		&w.Inputs, &w.Output, &w.Error, &w.ParentID, &w.RecoveryAttempts, &w.TimeoutMS, &w.DeadlineMS, &w.CreatedMS, &w.UpdatedMS)
	if errors.Is(err, sql.ErrNoRows) {
		return w, ErrNotFound
	}
	return w, err
}

const sqlitePending = `SELECT workflow_uuid, name, COALESCE(inputs, ''), recovery_attempts
FROM workflow_status WHERE status = 'PENDING' AND executor_id = ? AND application_version = ?
ORDER BY created_at`

// Pending implements Store.
func (s *SQLite) Pending(ctx context.Context, executorID, appVersion string) ([]WorkflowRow, error) {
	rows, err := s.r.QueryContext(ctx, sqlitePending, executorID, appVersion)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []WorkflowRow
	for rows.Next() {
		w := WorkflowRow{Status: StatusPending, ExecutorID: executorID, AppVersion: appVersion}
		if err := rows.Scan(&w.ID, &w.Name, &w.Inputs, &w.RecoveryAttempts); err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

const sqliteCancel = `UPDATE workflow_status SET status = 'CANCELLED', error = ?2, updated_at = ?3
WHERE workflow_uuid = ?1 AND status = 'PENDING'`

// Cancel implements Store with one UPDATE. SQLite has no NOTIFY: running
// workflows learn of it by polling Cancelled (see WatchCancellations).
func (s *SQLite) Cancel(ctx context.Context, id, errJSON string) (bool, error) {
	return s.execOne(ctx, sqliteCancel, id, errJSON, nowMS())
}

// Cancelled implements Store: one query with a parameterised IN list (split
// into several queries only past sqliteMaxVars IDs).
func (s *SQLite) Cancelled(ctx context.Context, ids []string) ([]string, error) {
	var out []string
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), sqliteMaxVars)]
		ids = ids[len(chunk):]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		q := `SELECT workflow_uuid FROM workflow_status WHERE status = 'CANCELLED' AND workflow_uuid IN (?` +
			strings.Repeat(", ?", len(chunk)-1) + `)`
		rows, err := s.r.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, id)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// WatchCancellations reports false and delivers nothing: SQLite has no
// LISTEN/NOTIFY and no cross-process change feed, so the runtime polls
// Cancelled for the workflows it is running (a cheap indexed read on the
// read pool that never waits for the writer).
func (s *SQLite) WatchCancellations(ctx context.Context, fn func(id string)) bool {
	return false
}

func (s *SQLite) execOne(ctx context.Context, q string, args ...any) (bool, error) {
	res, err := s.w.ExecContext(ctx, q, args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

var _ Store = (*SQLite)(nil)
