package sysdb

import (
	"regexp"
	"strings"
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
}

func buildQueries(d dialect) queries {
	return queries{
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
ON CONFLICT (workflow_uuid, function_id) DO NOTHING`),
		recordedStep: d.render(`SELECT ` + stepColumns + ` FROM {schema}.operation_outputs WHERE workflow_uuid = $1 AND function_id = $2`),
	}
}

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
	schema string // quoted; PostgreSQL only
}

var (
	pgParam = regexp.MustCompile(`\$(\d+)`)
	pgCast  = regexp.MustCompile(`::(BIGINT|TEXT|INTEGER)\b`)
)

func (d dialect) render(q string) string {
	if !d.sqlite {
		return strings.ReplaceAll(q, "{schema}", d.schema)
	}
	q = strings.ReplaceAll(q, "{schema}.", "")
	q = pgCast.ReplaceAllString(q, "")
	return pgParam.ReplaceAllString(q, "?$1")
}

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// scanVersionCounts reads otherVersions' rows.
func scanVersionCounts(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
}) ([]VersionCount, error) {
	var out []VersionCount
	for rows.Next() {
		var v VersionCount
		if err := rows.Scan(&v.Version, &v.Count); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
