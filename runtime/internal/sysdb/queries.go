package sysdb

import (
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// The canonical queries, written once in PostgreSQL's syntax with {schema}.
// before each table; render adapts them to an engine. Statements that
// PostgreSQL runs as one data-modifying CTE and SQLite as a short transaction
// on its single write connection are spelled out per engine in postgres.go
// and sqlite.go.

// wfColumns reads a WorkflowRow from workflow_status s, workflow_input i and
// workflow_output o (DBOS keeps inputs and outcomes apart since v1.x; rows of
// older DBOS releases still hold them in workflow_status).
const wfColumns = `COALESCE(s.name, ''), COALESCE(s.status, ''), COALESCE(s.executor_id, ''),
	COALESCE(s.application_version, ''), COALESCE(s.application_name, ''), COALESCE(s.queue_name, ''),
	COALESCE(s.serialization, ''), COALESCE(i.inputs, s.inputs, ''), COALESCE(o.output, s.output, ''),
	COALESCE(o.error, s.error, ''), COALESCE(s.parent_workflow_id, ''), COALESCE(s.recovery_attempts, 0),
	COALESCE(s.workflow_timeout_ms, 0), COALESCE(s.workflow_deadline_epoch_ms, 0), s.created_at, s.updated_at,
	COALESCE(s.attributes::TEXT, '')`

const wfFrom = `{schema}.workflow_status s
	LEFT JOIN {schema}.workflow_input i ON i.workflow_uuid = s.workflow_uuid
	LEFT JOIN {schema}.workflow_output o ON o.workflow_uuid = s.workflow_uuid`

// scanner is a pgx.Row, a pgx.Rows, a *sql.Row or a *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanWorkflow reads wfColumns (after any leading columns in lead).
func scanWorkflow(r scanner, w *WorkflowRow, lead ...any) error {
	return r.Scan(append(lead, &w.Name, &w.Status, &w.ExecutorID, &w.AppVersion, &w.AppName, &w.QueueName,
		&w.Serialization, &w.Inputs, &w.Output, &w.Error, &w.ParentID, &w.RecoveryAttempts,
		&w.TimeoutMS, &w.DeadlineMS, &w.CreatedMS, &w.UpdatedMS, &w.Attributes)...)
}

const stepColumns = `function_id, function_name, COALESCE(output, ''), COALESCE(error, ''), COALESCE(child_workflow_id, ''),
	COALESCE(serialization, ''), COALESCE(started_at_epoch_ms, 0), COALESCE(completed_at_epoch_ms, 0)`

func scanStep(r scanner, s *StepRow) error {
	return r.Scan(&s.StepID, &s.Name, &s.Output, &s.Error, &s.ChildID, &s.Serialization, &s.StartedMS, &s.CompletedMS)
}

// queries are the statements both engines run as they are, rendered once.
type queries struct {
	workflow, pending, otherVersions, steps, recordStep, recordedStep string
	// init, finish and cancel differ by engine: PostgreSQL runs each as one
	// data-modifying CTE; SQLite runs init and finish as a transaction of
	// plain statements, the others below.
	init, finish, cancel  string
	insert                string // PostgreSQL only: a new workflow (pgInsert)
	recordSteps           string // PostgreSQL only: a batch of steps
	finishMany            string // PostgreSQL only: a batch of outcomes
	insertMany            string // PostgreSQL only: a batch of new workflows
	insertInputs, outcome string // SQLite only
	deadLetter            string // the error of a workflow a start parked
}

func buildQueries(d dialect) queries {
	q := queries{
		workflow: d.render(`SELECT ` + wfColumns + ` FROM ` + wfFrom + ` WHERE s.workflow_uuid = $1`),
		pending: d.render(`SELECT s.workflow_uuid, ` + wfColumns + ` FROM ` + wfFrom + `
WHERE s.status = 'PENDING' AND s.executor_id = $1 AND s.application_version = $2
	AND (s.application_name = $3 OR s.application_name IS NULL)
ORDER BY s.created_at`),
		otherVersions: d.render(`SELECT s.application_version, count(*) FROM {schema}.workflow_status s
WHERE s.status = 'PENDING' AND s.executor_id = $1 AND s.application_version <> $2
	AND (s.application_name = $3 OR s.application_name IS NULL)
GROUP BY s.application_version ORDER BY s.application_version`),
		steps: d.render(`SELECT ` + stepColumns + ` FROM {schema}.operation_outputs WHERE workflow_uuid = $1 ORDER BY function_id`),
		recordStep: d.render(`INSERT INTO {schema}.operation_outputs (workflow_uuid, function_id, function_name, output, error,
	child_workflow_id, started_at_epoch_ms, completed_at_epoch_ms, serialization, application_name)
VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), NULLIF($6, ''), NULLIF($7::BIGINT, 0), $8, 'portable_json', NULLIF($9, ''))
` + onConflictNothing),
		recordedStep: d.render(`SELECT ` + stepColumns + ` FROM {schema}.operation_outputs WHERE workflow_uuid = $1 AND function_id = $2`),
	}
	q.deadLetter = d.render(`INSERT INTO {schema}.workflow_output (workflow_uuid, error) VALUES ($1, $2) ON CONFLICT (workflow_uuid) DO NOTHING`)
	if d.cte {
		q.init, q.finish, q.recordSteps = d.render(pgInit), d.render(pgFinish), d.render(recordSteps)
		q.finishMany, q.insertMany = d.render(pgFinishMany), d.render(pgInsertMany)
		q.insert = d.render(pgInsert)
		q.cancel = d.render(pgCancel)
		return q
	}
	q.init = d.render(sqliteInitStatus)
	q.finish = d.render(`UPDATE {schema}.workflow_status SET status = $2, updated_at = $3, completed_at = $3,
	deduplication_id = NULL, owner_xid = NULL
WHERE workflow_uuid = $1 AND status = 'PENDING'`)
	q.outcome = d.render(`INSERT INTO {schema}.workflow_output (workflow_uuid, output, error) VALUES ($1, NULLIF($2, ''), NULLIF($3, ''))
ON CONFLICT (workflow_uuid) DO UPDATE SET output = excluded.output, error = excluded.error`)
	// Run only for a status row just inserted: inputs found under its ID
	// were left by a workflow deleted by hand, and are not its own.
	q.insertInputs = d.render(`INSERT INTO {schema}.workflow_input (workflow_uuid, inputs) VALUES ($1, $2)
ON CONFLICT (workflow_uuid) DO UPDATE SET inputs = excluded.inputs`)
	// SQLite has no data-modifying CTE but takes a WITH inside the subquery.
	q.cancel = d.render(strings.Replace(cancelSet, "(SELECT id FROM tree)", "("+cancelTree+" SELECT id FROM tree)", 1))
	return q
}

// onConflictNothing ends a step insert: the first recorded outcome wins.
const onConflictNothing = `
ON CONFLICT (workflow_uuid, function_id) DO NOTHING`

// stepArgs are recordStep's arguments.
func stepArgs(s StepRow, appName string) []any {
	if s.CompletedMS == 0 {
		s.CompletedMS = nowMS()
	}
	return []any{s.WorkflowID, s.StepID, s.Name, s.Output, s.Error, s.ChildID, s.StartedMS, s.CompletedMS, appName}
}

// dialect renders canonical queries for one engine.
type dialect struct {
	sqlite bool
	cte    bool   // data-modifying CTEs (PostgreSQL)
	schema string // quoted; PostgreSQL only
}

func pgDialect(schema string) dialect { return dialect{cte: true, schema: quoteIdent(schema)} }

var sqliteDialect = dialect{sqlite: true}

// param is the i-th bind parameter (from 1).
func (d dialect) param(i int) string {
	if d.sqlite {
		return "?" + strconv.Itoa(i)
	}
	return "$" + strconv.Itoa(i)
}

var (
	pgParam = regexp.MustCompile(`\$(\d+)`)
	pgCast  = regexp.MustCompile(`::(BIGINT|TEXT|INTEGER)\b`)
)

func (d dialect) render(q string) string {
	if !d.sqlite {
		return strings.NewReplacer("{schema}", d.schema, "{now}", pgNowMS).Replace(q)
	}
	q = strings.NewReplacer("{schema}.", "", "{now}", sqliteNowMS).Replace(q)
	q = pgCast.ReplaceAllString(q, "")
	return pgParam.ReplaceAllString(q, "?$1")
}

// rendered caches statements rendered for a dialect.
var rendered sync.Map // dialect + query -> string

// cached is render, once per dialect and statement: for the statements
// sent again and again, written as constants.
func (d dialect) cached(q string) string {
	key := d.schema + "\x00" + q
	if d.sqlite {
		key = "sqlite\x00" + q
	}
	if r, ok := rendered.Load(key); ok {
		return r.(string)
	}
	r := d.render(q)
	rendered.Store(key, r)
	return r
}

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// pgInsert starts a new workflow in one statement: its status row and its
// inputs, or nothing when the ID exists. It names no other table, so that a
// start costs about what a raw insert of the two rows does (every relation a
// statement names costs a lock and an executor node per execution, read or
// not); an existing ID, rare next to new ones, then goes through pgInit.
// started_at_epoch_ms stays NULL, as DBOS leaves it: it is the time a queue
// dequeued the workflow.
const pgInsert = `WITH ins AS (
	INSERT INTO {schema}.workflow_status (workflow_uuid, status, name, executor_id, application_version,
		application_name, parent_workflow_id, recovery_attempts, workflow_timeout_ms, workflow_deadline_epoch_ms,
		created_at, updated_at, serialization, owner_xid, creator_xid, attributes)
	VALUES ($1, 'PENDING', $2, $3, $4, NULLIF($5, ''), NULLIF($6, ''), 1, NULLIF($7::BIGINT, 0), NULLIF($8::BIGINT, 0),
		$9, $9, 'portable_json', $10, $10, NULLIF($12::TEXT, '')::JSONB)
	ON CONFLICT (workflow_uuid) DO NOTHING
	RETURNING workflow_uuid
)
INSERT INTO {schema}.workflow_input (workflow_uuid, inputs) SELECT workflow_uuid, $11 FROM ins`

// pgInsertMany is pgInsert for many new workflows in one statement (their
// rows come as arrays); it returns the IDs it inserted. An ID twice in one
// batch fails the statement (its inputs would be inserted twice), and the
// batcher then sends each alone.
const pgInsertMany = `WITH v AS (
	SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::BIGINT[], $8::BIGINT[],
		$9::BIGINT[], $10::TEXT[], $11::TEXT[], $12::TEXT[])
		AS v(id, name, executor, version, app, parent, timeout, deadline, now, xid, inputs, attributes)
), ins AS (
	INSERT INTO {schema}.workflow_status (workflow_uuid, status, name, executor_id, application_version,
		application_name, parent_workflow_id, recovery_attempts, workflow_timeout_ms, workflow_deadline_epoch_ms,
		created_at, updated_at, serialization, owner_xid, creator_xid, attributes)
	SELECT id, 'PENDING', name, executor, version, NULLIF(app, ''), NULLIF(parent, ''), 1, NULLIF(timeout, 0), NULLIF(deadline, 0),
		now, now, 'portable_json', xid, xid, NULLIF(attributes, '')::JSONB FROM v
	ON CONFLICT (workflow_uuid) DO NOTHING
	RETURNING workflow_uuid
), inp AS (
	INSERT INTO {schema}.workflow_input (workflow_uuid, inputs) SELECT v.id, v.inputs FROM ins JOIN v ON v.id = ins.workflow_uuid
)
SELECT workflow_uuid FROM ins`

// pgInit starts or restarts a workflow in one statement: the status upsert,
// the inputs of a new workflow, and the row as it stands, with its inputs
// and outcome. Whether the start takes a PENDING row over (see takes) is
// decided once per row, in the sub-select.
const pgInit = `WITH ins AS (
	INSERT INTO {schema}.workflow_status AS w (workflow_uuid, status, name, executor_id, application_version,
		application_name, parent_workflow_id, recovery_attempts, workflow_timeout_ms, workflow_deadline_epoch_ms,
		created_at, updated_at, serialization, owner_xid, creator_xid, attributes)
	VALUES ($1, 'PENDING', $2, $3, $4, NULLIF($5, ''), NULLIF($6, ''), 1, NULLIF($7::BIGINT, 0), NULLIF($8::BIGINT, 0),
		$9, $9, 'portable_json', $10, $10, NULLIF($13::TEXT, '')::JSONB)
	ON CONFLICT (workflow_uuid) DO UPDATE SET (recovery_attempts, status, executor_id, updated_at) = (
		SELECT w.recovery_attempts + CASE WHEN t THEN 1 ELSE 0 END,
			CASE WHEN t AND w.recovery_attempts > $11 THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE w.status END,
			CASE WHEN t THEN EXCLUDED.executor_id ELSE w.executor_id END,
			CASE WHEN t THEN EXCLUDED.updated_at ELSE w.updated_at END
		FROM (SELECT ` + pgTakes + ` AS t) x)
	RETURNING w.*, (xmax = 0) AS inserted
), inp AS (
	INSERT INTO {schema}.workflow_input (workflow_uuid, inputs) SELECT $1, $12 FROM ins WHERE ins.inserted
	ON CONFLICT (workflow_uuid) DO UPDATE SET inputs = EXCLUDED.inputs
)
SELECT s.inserted, COALESCE(s.name, ''), COALESCE(s.status, ''), COALESCE(s.executor_id, ''),
	COALESCE(s.application_version, ''), COALESCE(s.application_name, ''), COALESCE(s.queue_name, ''),
	COALESCE(s.serialization, ''), CASE WHEN s.inserted THEN $12 ELSE COALESCE(i.inputs, s.inputs, '') END,
	COALESCE(o.output, s.output, ''),
	COALESCE(o.error, s.error, ''),
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

// pgFinishMany is pgFinish for many workflows in one statement (their
// outcomes come as arrays, so one statement text serves every batch size);
// it returns the IDs whose rows were PENDING and took their outcome. An ID
// twice in one batch fails the statement (the output upsert would touch its
// row twice), and the batcher then sends each alone.
const pgFinishMany = `WITH v AS (
	SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[]) AS v(id, status, output, error)
), u AS (
	UPDATE {schema}.workflow_status s SET status = v.status, updated_at = $5, completed_at = $5, deduplication_id = NULL, owner_xid = NULL
	FROM v WHERE s.workflow_uuid = v.id AND s.status = 'PENDING' RETURNING s.workflow_uuid
), o AS (
	INSERT INTO {schema}.workflow_output (workflow_uuid, output, error)
	SELECT v.id, NULLIF(v.output, ''), NULLIF(v.error, '') FROM v JOIN u ON u.workflow_uuid = v.id
	ON CONFLICT (workflow_uuid) DO UPDATE SET output = EXCLUDED.output, error = EXCLUDED.error
)
SELECT workflow_uuid FROM u`

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

// pgCancel cancels the tree and tells listeners (see CancelChannel).
const pgCancel = cancelTree + `, c AS (` + cancelSet + `)
SELECT workflow_uuid FROM c, pg_notify('` + CancelChannel + `', workflow_uuid)`

// sqliteInitStatus is pgInit's upsert alone.
// A start takes a PENDING row over (counts an execution, makes it this
// executor's) when it is a recovery or an adoption, or the row is this
// executor's already (its lease makes this process the only live holder),
// or no live executor holds a lease on it. A new call with the ID of a
// workflow another live executor owns takes nothing: that executor runs it
// (or, should it die, an adopter), and the caller waits for its outcome, as
// DBOS's callers do.
const (
	takesOwner = ` OR NOT EXISTS (SELECT 1 FROM {schema}.` + executorsTable + ` e
		WHERE e.executor_id = w.executor_id AND e.lease_expires_at > {now})))`
	pgTakes     = `(w.status = 'PENDING' AND ($14::BOOLEAN OR w.executor_id = EXCLUDED.executor_id` + takesOwner
	sqliteTakes = `(w.status = 'PENDING' AND ($13 OR w.executor_id = excluded.executor_id` + takesOwner
)

const sqliteInitStatus = `INSERT INTO workflow_status AS w (workflow_uuid, status, name, executor_id,
	application_version, application_name, parent_workflow_id, recovery_attempts, workflow_timeout_ms,
	workflow_deadline_epoch_ms, created_at, updated_at, serialization, owner_xid, creator_xid, attributes)
VALUES ($1, 'PENDING', $2, $3, $4, NULLIF($5, ''), NULLIF($6, ''), 1, NULLIF($7, 0), NULLIF($8, 0), $9, $9, 'portable_json', $10, $10, NULLIF($12, ''))
ON CONFLICT (workflow_uuid) DO UPDATE SET
	recovery_attempts = w.recovery_attempts + CASE WHEN ` + sqliteTakes + ` THEN 1 ELSE 0 END,
	status = CASE WHEN ` + sqliteTakes + ` AND w.recovery_attempts > $11 THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE w.status END,
	executor_id = CASE WHEN ` + sqliteTakes + ` THEN excluded.executor_id ELSE w.executor_id END,
	updated_at = CASE WHEN ` + sqliteTakes + ` THEN excluded.updated_at ELSE w.updated_at END
RETURNING COALESCE(creator_xid, '')`

// recordSteps is recordStep for many rows in one statement (PostgreSQL):
// the rows come as arrays, so one statement text serves every batch size and
// is prepared once. It inserts every row or none: a key recorded already
// fails the statement, and the batcher then sends each row alone.
const recordSteps = `INSERT INTO {schema}.operation_outputs (workflow_uuid, function_id, function_name, output, error,
	child_workflow_id, started_at_epoch_ms, completed_at_epoch_ms, serialization, application_name)
SELECT u.wf, u.fid, u.name, NULLIF(u.out, ''), NULLIF(u.err, ''), NULLIF(u.child, ''), NULLIF(u.started, 0), u.completed,
	'portable_json', NULLIF($9, '')
FROM unnest($1::TEXT[], $2::INTEGER[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::BIGINT[], $8::BIGINT[])
	AS u(wf, fid, name, out, err, child, started, completed)`
