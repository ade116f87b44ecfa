package sysdb

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the Store on PostgreSQL through pgx.
type Postgres struct {
	pool    *pgxpool.Pool
	schema  string // quoted
	rawSch  string
	appName string
	q       queries
	// PostgreSQL-only statements: one data-modifying CTE each.
	init, finish, cancel, cancelled string
}

// CancelChannel is the LISTEN/NOTIFY channel on which dbosgen announces the
// IDs of cancelled workflows. DBOS's channels are named dbos_*; this name
// cannot collide with them.
const CancelChannel = "dbosgen_workflow_cancel"

// NewPostgres wraps a pool; schema is the unquoted schema name and appName
// the application whose rows this store writes and recovers.
func NewPostgres(pool *pgxpool.Pool, schema, appName string) *Postgres {
	d := dialect{schema: quoteIdent(schema)}
	return &Postgres{pool: pool, schema: d.schema, rawSch: schema, appName: appName, q: buildQueries(d),
		init:      d.render(pgInit),
		finish:    d.render(pgFinish),
		cancel:    d.render(pgCancel),
		cancelled: d.render(`SELECT workflow_uuid FROM {schema}.workflow_status WHERE workflow_uuid = ANY($1) AND status = 'CANCELLED'`),
	}
}

// pgInit starts or restarts a workflow in one statement: the status upsert,
// the inputs of a new workflow, the error of one it dead-letters, and the row
// as it stands, with its inputs and outcome.
const pgInit = `WITH ins AS (
	INSERT INTO {schema}.workflow_status AS w (workflow_uuid, status, name, executor_id, application_version,
		application_name, parent_workflow_id, recovery_attempts, workflow_timeout_ms, workflow_deadline_epoch_ms,
		created_at, updated_at, started_at_epoch_ms, serialization, owner_xid, creator_xid, attributes)
	VALUES ($1, 'PENDING', $2, $3, $4, NULLIF($5, ''), NULLIF($6, ''), 1, NULLIF($7::BIGINT, 0), NULLIF($8::BIGINT, 0),
		$9, $9, $9, 'portable_json', $10, $10, NULLIF($14::TEXT, '')::JSONB)
	ON CONFLICT (workflow_uuid) DO UPDATE SET
		recovery_attempts = w.recovery_attempts + CASE WHEN w.status = 'PENDING' THEN 1 ELSE 0 END,
		status = CASE WHEN w.status = 'PENDING' AND w.recovery_attempts > $11 THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE w.status END,
		executor_id = CASE WHEN w.status = 'PENDING' THEN EXCLUDED.executor_id ELSE w.executor_id END,
		updated_at = CASE WHEN w.status = 'PENDING' THEN EXCLUDED.updated_at ELSE w.updated_at END
	RETURNING w.*, (xmax = 0) AS inserted
), inp AS (
	INSERT INTO {schema}.workflow_input (workflow_uuid, inputs) SELECT $1, $12 FROM ins WHERE ins.inserted
	ON CONFLICT (workflow_uuid) DO NOTHING
), dead AS (
	INSERT INTO {schema}.workflow_output (workflow_uuid, error) SELECT $1, $13 FROM ins WHERE ins.status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED'
	ON CONFLICT (workflow_uuid) DO NOTHING
)
SELECT s.inserted, COALESCE(s.name, ''), COALESCE(s.status, ''), COALESCE(s.executor_id, ''),
	COALESCE(s.application_version, ''), COALESCE(s.application_name, ''), COALESCE(s.queue_name, ''),
	COALESCE(s.serialization, ''), CASE WHEN s.inserted THEN $12 ELSE COALESCE(i.inputs, s.inputs, '') END,
	COALESCE(o.output, s.output, ''),
	COALESCE(o.error, s.error, CASE WHEN s.status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' THEN $13 END, ''),
	COALESCE(s.parent_workflow_id, ''), COALESCE(s.recovery_attempts, 0),
	COALESCE(s.workflow_timeout_ms, 0), COALESCE(s.workflow_deadline_epoch_ms, 0), s.created_at, s.updated_at,
	COALESCE(s.attributes::TEXT, '')
FROM ins s
	LEFT JOIN {schema}.workflow_input i ON i.workflow_uuid = s.workflow_uuid
	LEFT JOIN {schema}.workflow_output o ON o.workflow_uuid = s.workflow_uuid`

// pgFinish records a workflow's outcome in one statement, only if it is
// still PENDING (not cancelled, not finished by another execution).
const pgFinish = `WITH u AS (
	UPDATE {schema}.workflow_status SET status = $2, updated_at = $5, completed_at = $5, deduplication_id = NULL, owner_xid = NULL
	WHERE workflow_uuid = $1 AND status = 'PENDING' RETURNING workflow_uuid
)
INSERT INTO {schema}.workflow_output (workflow_uuid, output, error)
SELECT workflow_uuid, NULLIF($3, ''), NULLIF($4, '') FROM u
ON CONFLICT (workflow_uuid) DO UPDATE SET output = EXCLUDED.output, error = EXCLUDED.error`

// cancelTree names a workflow and all its descendants; the cancel statements
// of both engines update those that have not finished, as DBOS's cancel does.
const cancelTree = `WITH RECURSIVE tree(id) AS (
	SELECT $1::TEXT
	UNION SELECT c.workflow_uuid FROM {schema}.workflow_status c JOIN tree ON c.parent_workflow_id = tree.id
)`

const cancelSet = `UPDATE {schema}.workflow_status SET status = 'CANCELLED', updated_at = $2, completed_at = $2,
	started_at_epoch_ms = NULL, queue_name = NULL, deduplication_id = NULL, owner_xid = NULL
WHERE workflow_uuid IN (SELECT id FROM tree) AND status NOT IN ('SUCCESS', 'ERROR', 'CANCELLED')
RETURNING workflow_uuid`

const pgCancel = cancelTree + `, c AS (` + cancelSet + `)
SELECT workflow_uuid FROM c, pg_notify('` + CancelChannel + `', workflow_uuid)`

// Pool is the underlying pool.
func (p *Postgres) Pool() *pgxpool.Pool { return p.pool }

// Schema is the unquoted schema name.
func (p *Postgres) Schema() string { return p.rawSch }

// Close closes the pool.
func (p *Postgres) Close() { p.pool.Close() }

func nowMS() int64 { return time.Now().UnixMilli() }

// InitWorkflow implements Store.
func (p *Postgres) InitWorkflow(ctx context.Context, ip InitParams) (InitResult, error) {
	r := ip.Row
	res := InitResult{Row: WorkflowRow{ID: r.ID}}
	row := p.pool.QueryRow(ctx, p.init, r.ID, r.Name, r.ExecutorID, r.AppVersion, p.appName, r.ParentID,
		r.TimeoutMS, r.DeadlineMS, nowMS(), uuid.NewString(), ip.MaxRecoveryAttempts, r.Inputs, ip.DeadLetterError, r.Attributes)
	if err := scanWorkflow(row, &res.Row, &res.Inserted); err != nil || res.Inserted || res.Row.Inputs != "" {
		return res, err
	}
	// The row was inserted by a transaction that committed while this
	// statement ran: the upsert saw it, but the statement's snapshot does not
	// show its inputs. Read the row again (only in that race).
	// Only what the snapshot hid is taken from it: the status and attempt
	// count the upsert returned are the latest, the re-read's may be later.
	w, err := p.Workflow(ctx, r.ID)
	if err == nil {
		res.Row.Inputs = w.Inputs
		if res.Row.Status != StatusPending {
			res.Row.Output, res.Row.Error = w.Output, w.Error
		}
	}
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
		if err := scanStep(rows, &s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// RecordStep implements Store.
func (p *Postgres) RecordStep(ctx context.Context, s StepRow) (StepRow, bool, error) {
	tag, err := p.pool.Exec(ctx, p.q.recordStep, stepArgs(s, p.appName)...)
	if err != nil {
		return StepRow{}, false, err
	}
	if tag.RowsAffected() == 1 {
		s.Serialization = FormatPortable
		return s, true, nil
	}
	// Another execution of this workflow recorded this step first: its
	// outcome is the one the workflow must see.
	got := StepRow{WorkflowID: s.WorkflowID}
	err = scanStep(p.pool.QueryRow(ctx, p.q.recordedStep, s.WorkflowID, s.StepID), &got)
	return got, false, err
}

// FinishWorkflow implements Store.
func (p *Postgres) FinishWorkflow(ctx context.Context, id, status, output, errText string) (bool, error) {
	tag, err := p.pool.Exec(ctx, p.finish, id, status, output, errText, nowMS())
	return tag.RowsAffected() == 1, err
}

// Workflow implements Store.
func (p *Postgres) Workflow(ctx context.Context, id string) (WorkflowRow, error) {
	w := WorkflowRow{ID: id}
	err := scanWorkflow(p.pool.QueryRow(ctx, p.q.workflow, id), &w)
	if errors.Is(err, pgx.ErrNoRows) {
		return w, ErrNotFound
	}
	return w, err
}

// Pending implements Store.
func (p *Postgres) Pending(ctx context.Context, executorID, appVersion string) ([]WorkflowRow, error) {
	rows, err := p.pool.Query(ctx, p.q.pending, executorID, appVersion, p.appName)
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

// PendingOtherVersions implements Store.
func (p *Postgres) PendingOtherVersions(ctx context.Context, executorID, appVersion string) ([]VersionCount, error) {
	rows, err := p.pool.Query(ctx, p.q.otherVersions, executorID, appVersion, p.appName)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanVersionCounts(rows)
}

// Cancel implements Store.
func (p *Postgres) Cancel(ctx context.Context, id string) (bool, error) {
	rows, err := p.pool.Query(ctx, p.cancel, id, nowMS())
	if err != nil {
		return false, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return slices.Contains(ids, id), err
}

// Cancelled implements Store.
func (p *Postgres) Cancelled(ctx context.Context, ids []string) ([]string, error) {
	rows, err := p.pool.Query(ctx, p.cancelled, ids)
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
	if errors.Is(err, ErrSchemaBusy) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgErr.Code == "53300" {
			// too_many_connections: the slots are held by sessions that do
			// not end because we wait; the caller decides how long to try.
			return false
		}
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
