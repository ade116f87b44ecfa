package sysdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the Store on PostgreSQL through pgx.
type Postgres struct {
	pool   *pgxpool.Pool
	schema string // quoted
	rawSch string
	q      pgQueries
}

// pgQueries are built once per schema name so the hot path only executes.
type pgQueries struct {
	init, steps, record, recorded, finish, workflow, pending, cancel, cancelled string
}

// CancelChannel is the LISTEN/NOTIFY channel that carries cancelled workflow IDs.
const CancelChannel = "dbos_workflow_cancel"

// NewPostgres wraps a pool; schema is the unquoted schema name.
func NewPostgres(pool *pgxpool.Pool, schema string) *Postgres {
	s := quoteIdent(schema)
	r := strings.NewReplacer("{schema}", s)
	return &Postgres{pool: pool, schema: s, rawSch: schema, q: pgQueries{
		init: r.Replace(`INSERT INTO {schema}.workflow_status AS w (workflow_uuid, status, name, executor_id,
	application_version, application_id, inputs, parent_workflow_id, recovery_attempts,
	workflow_timeout_ms, workflow_deadline_epoch_ms, created_at, updated_at)
VALUES ($1, 'PENDING', $2, $3, $4, $5, $6, NULLIF($7, ''), 1, NULLIF($8::BIGINT, 0), NULLIF($9::BIGINT, 0), $10, $10)
ON CONFLICT (workflow_uuid) DO UPDATE SET
	recovery_attempts = w.recovery_attempts + CASE WHEN w.status = 'PENDING' THEN 1 ELSE 0 END,
	status = CASE WHEN w.status = 'PENDING' AND w.recovery_attempts > $11 THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE w.status END,
	error = CASE WHEN w.status = 'PENDING' AND w.recovery_attempts > $11 THEN $12 ELSE w.error END,
	executor_id = CASE WHEN w.status = 'PENDING' THEN EXCLUDED.executor_id ELSE w.executor_id END,
	updated_at = CASE WHEN w.status = 'PENDING' THEN EXCLUDED.updated_at ELSE w.updated_at END
RETURNING name, status, executor_id, application_version, application_id, COALESCE(inputs, ''),
	COALESCE(output, ''), COALESCE(error, ''), COALESCE(parent_workflow_id, ''), recovery_attempts,
	COALESCE(workflow_timeout_ms, 0), COALESCE(workflow_deadline_epoch_ms, 0), created_at, updated_at, (xmax = 0)`),
		steps: r.Replace(`SELECT function_id, function_name, COALESCE(output, ''), COALESCE(error, ''), COALESCE(child_workflow_id, '')
FROM {schema}.operation_outputs WHERE workflow_uuid = $1 ORDER BY function_id`),
		record: r.Replace(`INSERT INTO {schema}.operation_outputs (workflow_uuid, function_id, function_name, output, error, child_workflow_id, created_at)
VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), NULLIF($6, ''), $7) ON CONFLICT (workflow_uuid, function_id) DO NOTHING`),
		recorded: r.Replace(`SELECT function_name, COALESCE(output, ''), COALESCE(error, ''), COALESCE(child_workflow_id, '')
FROM {schema}.operation_outputs WHERE workflow_uuid = $1 AND function_id = $2`),
		finish: r.Replace(`UPDATE {schema}.workflow_status SET status = $2, output = NULLIF($3, ''), error = NULLIF($4, ''), updated_at = $5
WHERE workflow_uuid = $1 AND status = 'PENDING'`),
		workflow: r.Replace(`SELECT name, status, executor_id, application_version, application_id, COALESCE(inputs, ''),
	COALESCE(output, ''), COALESCE(error, ''), COALESCE(parent_workflow_id, ''), recovery_attempts,
	COALESCE(workflow_timeout_ms, 0), COALESCE(workflow_deadline_epoch_ms, 0), created_at, updated_at
FROM {schema}.workflow_status WHERE workflow_uuid = $1`),
		pending: r.Replace(`SELECT workflow_uuid, name, COALESCE(inputs, ''), recovery_attempts
FROM {schema}.workflow_status WHERE status = 'PENDING' AND executor_id = $1 AND application_version = $2
ORDER BY created_at`),
		cancel: r.Replace(`WITH c AS (UPDATE {schema}.workflow_status SET status = 'CANCELLED', error = $2, updated_at = $3
	WHERE workflow_uuid = $1 AND status = 'PENDING' RETURNING workflow_uuid)
SELECT pg_notify('` + CancelChannel + `', workflow_uuid) FROM c`),
		cancelled: r.Replace(`SELECT workflow_uuid FROM {schema}.workflow_status WHERE workflow_uuid = ANY($1) AND status = 'CANCELLED'`),
	}}
}

// Pool is the underlying pool.
func (p *Postgres) Pool() *pgxpool.Pool { return p.pool }

// Close closes the pool.
func (p *Postgres) Close() { p.pool.Close() }

// Migrate applies systemMigrations under an advisory lock.
func (p *Postgres) Migrate(ctx context.Context) error {
	return migratePostgres(ctx, p.pool, p.rawSch, "dbos_migrations", systemMigrations)
}

// pgBeginner is what migrations need: a pool or a single connection.
type pgBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

func migratePostgres(ctx context.Context, db pgBeginner, schema, table string, ms []migration) error {
	sch := quoteIdent(schema)
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit this is a no-op
	// One lock for all migrators of this schema, so concurrent launches queue.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "dbosgen:"+schema+"."+table); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+sch); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+sch+`.`+quoteIdent(table)+` (version BIGINT NOT NULL)`); err != nil {
		return err
	}
	var current int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+sch+`.`+quoteIdent(table)).Scan(&current); err != nil {
		return err
	}
	latest := ms[len(ms)-1].version
	if current > latest {
		return fmt.Errorf("%w: %s.%s is at version %d, this release knows up to %d; upgrade dbosgen", ErrSchemaTooNew, schema, table, current, latest)
	}
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		if _, err := tx.Exec(ctx, strings.ReplaceAll(m.postgres, "{schema}", sch)); err != nil {
			return fmt.Errorf("migration %d: %w", m.version, err)
		}
	}
	if current < latest {
		if _, err := tx.Exec(ctx, `DELETE FROM `+sch+`.`+quoteIdent(table)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+sch+`.`+quoteIdent(table)+` (version) VALUES ($1)`, latest); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

func nowMS() int64 { return time.Now().UnixMilli() }

// InitWorkflow implements Store.
func (p *Postgres) InitWorkflow(ctx context.Context, ip InitParams) (InitResult, error) {
	r := ip.Row
	res := InitResult{Row: WorkflowRow{ID: r.ID}}
	w := &res.Row
	err := p.pool.QueryRow(ctx, p.q.init, r.ID, r.Name, r.ExecutorID, r.AppVersion, r.AppName, r.Inputs,
		r.ParentID, r.TimeoutMS, r.DeadlineMS, nowMS(), ip.MaxRecoveryAttempts, ip.DeadLetterError).
		Scan(&w.Name, &w.Status, &w.ExecutorID, &w.AppVersion, &w.AppName, &w.Inputs, &w.Output, &w.Error,
			&w.ParentID, &w.RecoveryAttempts, &w.TimeoutMS, &w.DeadlineMS, &w.CreatedMS, &w.UpdatedMS, &res.Inserted)
	return res, err
}

// Steps implements Store.
func (p *Postgres) Steps(ctx context.Context, workflowID string) ([]StepRow, error) {
	rows, err := p.pool.Query(ctx, p.q.steps, workflowID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StepRow
	for rows.Next() {
		s := StepRow{WorkflowID: workflowID}
		if err := rows.Scan(&s.StepID, &s.Name, &s.Output, &s.Error, &s.ChildID); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// RecordStep implements Store.
func (p *Postgres) RecordStep(ctx context.Context, s StepRow) (StepRow, bool, error) {
	tag, err := p.pool.Exec(ctx, p.q.record, s.WorkflowID, s.StepID, s.Name, s.Output, s.Error, s.ChildID, nowMS())
	if err != nil {
		return StepRow{}, false, err
	}
	if tag.RowsAffected() == 1 {
		return s, true, nil
	}
	// Another execution of this workflow recorded this step first: its
	// outcome is the one the workflow must see.
	got := StepRow{WorkflowID: s.WorkflowID, StepID: s.StepID}
	err = p.pool.QueryRow(ctx, p.q.recorded, s.WorkflowID, s.StepID).Scan(&got.Name, &got.Output, &got.Error, &got.ChildID)
	return got, false, err
}

// FinishWorkflow implements Store.
func (p *Postgres) FinishWorkflow(ctx context.Context, id, status, output, errJSON string) (bool, error) {
	tag, err := p.pool.Exec(ctx, p.q.finish, id, status, output, errJSON, nowMS())
	return tag.RowsAffected() == 1, err
}

// Workflow implements Store.
func (p *Postgres) Workflow(ctx context.Context, id string) (WorkflowRow, error) {
	w := WorkflowRow{ID: id}
	err := p.pool.QueryRow(ctx, p.q.workflow, id).Scan(&w.Name, &w.Status, &w.ExecutorID, &w.AppVersion, &w.AppName,
		&w.Inputs, &w.Output, &w.Error, &w.ParentID, &w.RecoveryAttempts, &w.TimeoutMS, &w.DeadlineMS, &w.CreatedMS, &w.UpdatedMS)
	if errors.Is(err, pgx.ErrNoRows) {
		return w, ErrNotFound
	}
	return w, err
}

// Pending implements Store.
func (p *Postgres) Pending(ctx context.Context, executorID, appVersion string) ([]WorkflowRow, error) {
	rows, err := p.pool.Query(ctx, p.q.pending, executorID, appVersion)
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

// Cancel implements Store.
func (p *Postgres) Cancel(ctx context.Context, id, errJSON string) (bool, error) {
	tag, err := p.pool.Exec(ctx, p.q.cancel, id, errJSON, nowMS())
	return tag.RowsAffected() == 1, err
}

// Cancelled implements Store.
func (p *Postgres) Cancelled(ctx context.Context, ids []string) ([]string, error) {
	rows, err := p.pool.Query(ctx, p.q.cancelled, ids)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// WatchCancellations LISTENs on a dedicated connection, reconnecting with
// backoff when the connection drops, until ctx ends.
func (p *Postgres) WatchCancellations(ctx context.Context, fn func(id string)) bool {
	go func() {
		delay := 100 * time.Millisecond
		for ctx.Err() == nil {
			began := time.Now()
			err := p.listen(ctx, fn)
			if ctx.Err() != nil {
				return
			}
			if time.Since(began) > 10*time.Second {
				delay = 100 * time.Millisecond // it was up for a while: reconnect promptly
			}
			_ = err // the runtime polls as a fallback; a dropped listener only delays delivery
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(delay*2, 5*time.Second)
		}
	}()
	return true
}

func (p *Postgres) listen(ctx context.Context, fn func(id string)) error {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection carries LISTEN state: never hand it back to the pool.
	raw := conn.Hijack()
	defer raw.Close(context.Background())
	if _, err := raw.Exec(ctx, "LISTEN "+CancelChannel); err != nil {
		return err
	}
	for {
		n, err := raw.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		fn(n.Payload)
	}
}

// IsTransient reports whether err is worth retrying once the database is back:
// a connection failure or a server shutting down, not a bad statement.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", "57", "53": // connection exception, operator intervention, insufficient resources
			return true
		}
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err) || isConnError(err)
}

func isConnError(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"connection refused", "broken pipe", "connection reset", "unexpected EOF", "conn closed"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// IsSerializationFailure reports whether a transaction lost a conflict and is
// worth running again: SQLSTATE 40001 (serialization failure) or 40P01
// (deadlock) on PostgreSQL.
func IsSerializationFailure(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	return false
}
