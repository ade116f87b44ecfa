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

	"github.com/google/uuid"
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
	path    string
	appName string  // application_name of the rows this store writes
	w       *sql.DB // one connection, BEGIN IMMEDIATE: all writes
	r       *sql.DB // query_only readers
}

// busyTimeout bounds how long a connection waits for another process's write
// lock (or, for readers, for a WAL recovery) before failing with SQLITE_BUSY.
const busyTimeout = 30 * time.Second

// sqliteMaxVars is the number of bind variables one statement may use on every
// SQLite build (the historical SQLITE_MAX_VARIABLE_NUMBER default).
const sqliteMaxVars = 999

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
	return &SQLite{path: abs, appName: appName, w: w, r: r}, nil
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

// sqliteStatements are the canonical queries rendered for SQLite, and the
// statements only SQLite runs.
var sqliteQ = buildQueries(dialect{sqlite: true})

var (
	sqliteInsertStatus = dialect{sqlite: true}.render(`INSERT INTO workflow_status AS w (workflow_uuid, status, name, executor_id,
	application_version, application_name, parent_workflow_id, recovery_attempts, workflow_timeout_ms,
	workflow_deadline_epoch_ms, created_at, updated_at, started_at_epoch_ms, serialization, owner_xid, creator_xid, attributes)
VALUES ($1, 'PENDING', $2, $3, $4, NULLIF($5, ''), NULLIF($6, ''), 1, NULLIF($7, 0), NULLIF($8, 0), $9, $9, $9, 'portable_json', $10, $10,
	NULLIF($12, ''))
ON CONFLICT (workflow_uuid) DO UPDATE SET
	recovery_attempts = w.recovery_attempts + CASE WHEN w.status = 'PENDING' THEN 1 ELSE 0 END,
	status = CASE WHEN w.status = 'PENDING' AND w.recovery_attempts > $11 THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE w.status END,
	executor_id = CASE WHEN w.status = 'PENDING' THEN excluded.executor_id ELSE w.executor_id END,
	updated_at = CASE WHEN w.status = 'PENDING' THEN excluded.updated_at ELSE w.updated_at END
RETURNING workflow_uuid`)
	sqliteInsertInputs = `INSERT INTO workflow_input (workflow_uuid, inputs) VALUES (?1, ?2) ON CONFLICT (workflow_uuid) DO NOTHING`
	sqliteDeadLetter   = `INSERT INTO workflow_output (workflow_uuid, error) VALUES (?1, ?2) ON CONFLICT (workflow_uuid) DO NOTHING`
	sqliteFinish       = `UPDATE workflow_status SET status = ?2, updated_at = ?3, completed_at = ?3, deduplication_id = NULL, owner_xid = NULL
WHERE workflow_uuid = ?1 AND status = 'PENDING'`
	sqliteOutcome = `INSERT INTO workflow_output (workflow_uuid, output, error) VALUES (?1, NULLIF(?2, ''), NULLIF(?3, ''))
ON CONFLICT (workflow_uuid) DO UPDATE SET output = excluded.output, error = excluded.error`
	sqliteCancel = dialect{sqlite: true}.render(`UPDATE {schema}.workflow_status SET status = 'CANCELLED', updated_at = $2, completed_at = $2,
	started_at_epoch_ms = NULL, queue_name = NULL, deduplication_id = NULL, owner_xid = NULL
WHERE workflow_uuid IN (` + cancelTree + ` SELECT id FROM tree) AND status NOT IN ('SUCCESS', 'ERROR', 'CANCELLED')
RETURNING workflow_uuid`)
)

// InitWorkflow implements Store in one short transaction on the write
// connection: the status upsert, the inputs of a new workflow, the error of
// one it dead-letters, then the row as it stands. (SQLite has no
// data-modifying CTE; the statements cost no round trip.)
//
// SQLite has no xmax, so whether the row was inserted is read off the row: a
// fresh row is PENDING with recovery_attempts = 1 and created_at = this
// call's timestamp. An existing row cannot look like that: the conflict
// branch leaves a non-PENDING row non-PENDING, and turns a PENDING row's
// count n into n+1, which is 1 only when n = 0 — and no writer creates a
// PENDING row with a count of 0. The timestamp is a second guard: the
// conflict branch never writes created_at.
func (s *SQLite) InitWorkflow(ctx context.Context, ip InitParams) (InitResult, error) {
	r := ip.Row
	now := nowMS()
	res := InitResult{Row: WorkflowRow{ID: r.ID}}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var id string
		if err := tx.QueryRowContext(ctx, sqliteInsertStatus, r.ID, r.Name, r.ExecutorID, r.AppVersion, s.appName,
			r.ParentID, r.TimeoutMS, r.DeadlineMS, now, uuid.NewString(), ip.MaxRecoveryAttempts, r.Attributes).Scan(&id); err != nil {
			return err
		}
		if err := scanWorkflow(tx.QueryRowContext(ctx, sqliteQ.workflow, r.ID), &res.Row); err != nil {
			return err
		}
		w := &res.Row
		res.Inserted = w.Status == StatusPending && w.RecoveryAttempts == 1 && w.CreatedMS == now && w.Inputs == ""
		if res.Inserted {
			w.Inputs = r.Inputs
			if _, err := tx.ExecContext(ctx, sqliteInsertInputs, r.ID, r.Inputs); err != nil {
				return err
			}
		}
		if w.Status == StatusDeadLetter && w.Error == "" && ip.DeadLetterError != "" {
			w.Error = ip.DeadLetterError
			if _, err := tx.ExecContext(ctx, sqliteDeadLetter, r.ID, ip.DeadLetterError); err != nil {
				return err
			}
		}
		return nil
	})
	return res, err
}

// writeTx runs fn in a transaction on the write connection.
func (s *SQLite) writeTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Steps implements Store.
func (s *SQLite) Steps(ctx context.Context, workflowID string) ([]StepRow, error) {
	rows, err := s.r.QueryContext(ctx, sqliteQ.steps, workflowID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StepRow
	for rows.Next() {
		st := StepRow{WorkflowID: workflowID}
		if err := scanStep(rows, &st); err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

// RecordStep implements Store: one INSERT; only when another execution
// recorded the step first, a second query reads that outcome.
func (s *SQLite) RecordStep(ctx context.Context, st StepRow) (StepRow, bool, error) {
	res, err := s.w.ExecContext(ctx, sqliteQ.recordStep, stepArgs(st, s.appName)...)
	if err != nil {
		return StepRow{}, false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return StepRow{}, false, err
	}
	if n == 1 {
		st.Serialization = FormatPortable
		return st, true, nil
	}
	got := StepRow{WorkflowID: st.WorkflowID}
	// The conflicting row is committed (the INSERT saw it), so any snapshot
	// taken from now on sees it: the read pool is fine.
	err = scanStep(s.r.QueryRowContext(ctx, sqliteQ.recordedStep, st.WorkflowID, st.StepID), &got)
	return got, false, err
}

// FinishWorkflow implements Store: the status update and, if it applied,
// the outcome, in one transaction.
func (s *SQLite) FinishWorkflow(ctx context.Context, id, status, output, errText string) (bool, error) {
	var done bool
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, sqliteFinish, id, status, nowMS())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n != 1 {
			return err
		}
		done = true
		_, err = tx.ExecContext(ctx, sqliteOutcome, id, output, errText)
		return err
	})
	return done, err
}

// Workflow implements Store.
func (s *SQLite) Workflow(ctx context.Context, id string) (WorkflowRow, error) {
	w := WorkflowRow{ID: id}
	err := scanWorkflow(s.r.QueryRowContext(ctx, sqliteQ.workflow, id), &w)
	if errors.Is(err, sql.ErrNoRows) {
		return w, ErrNotFound
	}
	return w, err
}

// PendingOtherVersions implements Store.
func (s *SQLite) PendingOtherVersions(ctx context.Context, executorID, appVersion string) ([]VersionCount, error) {
	rows, err := s.r.QueryContext(ctx, sqliteQ.otherVersions, executorID, appVersion, s.appName)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanVersionCounts(rows)
}

// Pending implements Store.
func (s *SQLite) Pending(ctx context.Context, executorID, appVersion string) ([]WorkflowRow, error) {
	rows, err := s.r.QueryContext(ctx, sqliteQ.pending, executorID, appVersion, s.appName)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []WorkflowRow
	for rows.Next() {
		var w WorkflowRow
		if err := scanWorkflow(rows, &w, &w.ID); err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// Cancel implements Store with one UPDATE. SQLite has no NOTIFY: running
// workflows learn of it by polling Cancelled (see WatchCancellations).
func (s *SQLite) Cancel(ctx context.Context, id string) (bool, error) {
	rows, err := s.w.QueryContext(ctx, sqliteCancel, id, nowMS())
	if err != nil {
		return false, err
	}
	defer rows.Close()
	found := false
	for rows.Next() {
		var got string
		if err := rows.Scan(&got); err != nil {
			return false, err
		}
		found = found || got == id
	}
	return found, rows.Err()
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

var _ Store = (*SQLite)(nil)
