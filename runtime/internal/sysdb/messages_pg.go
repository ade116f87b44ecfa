package sysdb

import (
	"context"
	"fmt"
)

// PostgreSQL runs each write of messages.go that records a step as one
// data-modifying CTE: one round trip instead of a transaction's four. Every
// write is gated on the step's INSERT (FROM rec), so an execution that finds
// the step recorded by another writes nothing, as the transaction's rollback
// does on SQLite.

// pgStepInsert is msgRecordStep's head, for INSERT ... SELECT.
const pgStepInsert = `INSERT INTO {schema}.operation_outputs (workflow_uuid, function_id, function_name, output, error,
	started_at_epoch_ms, completed_at_epoch_ms, serialization, application_name)`

// pgSendStep: the step and the message, only for an existing destination
// (so that a missing one records nothing, and the caller records the
// error). No row back: the step was recorded already, or the destination
// is missing.
const pgSendStep = `WITH rec AS (
	` + pgStepInsert + `
	SELECT $1, $2, $3, NULL, NULL, NULLIF($4::BIGINT, 0), $5, 'portable_json', NULLIF($6, '')
	WHERE EXISTS (SELECT 1 FROM {schema}.workflow_status WHERE workflow_uuid = $7)
	ON CONFLICT (workflow_uuid, function_id) DO NOTHING
	RETURNING 1
), msg AS (
	INSERT INTO {schema}.notifications (destination_uuid, topic, message, serialization, message_uuid, created_at_epoch_ms)
	SELECT $7, $8, $9, $10, $11, $5 FROM rec
	ON CONFLICT (message_uuid) DO NOTHING
)
SELECT 1 FROM rec`

// pgRecv: pick the oldest unconsumed message (locking it), record the step
// with it, or with no output (a timeout) when there is none and $9 allows
// it, and mark the message consumed only if the step was recorded by this
// statement. A racing execution of the same step either waits on the
// message's lock and then conflicts on the step, or conflicts on the step
// at once: it consumes nothing. The row back says whether a message was
// picked and, when the step was recorded here, its output.
const pgRecv = `WITH pick AS (
	SELECT message_uuid, message, serialization FROM {schema}.notifications
	WHERE destination_uuid = $7 AND topic = $8 AND consumed = false
	ORDER BY created_at_epoch_ms LIMIT 1
	FOR UPDATE
), rec AS (
	` + pgStepInsert + `
	SELECT $1, $2, $3, p.message, NULL, NULLIF($4::BIGINT, 0), $5,
		CASE WHEN p.message IS NULL THEN 'portable_json' ELSE COALESCE(NULLIF(p.serialization, ''), 'DBOS_JSON') END, NULLIF($6, '')
	FROM (SELECT 1) one LEFT JOIN pick p ON true
	WHERE p.message IS NOT NULL OR $9::BOOLEAN
	ON CONFLICT (workflow_uuid, function_id) DO NOTHING
	RETURNING COALESCE(output, '') AS output, serialization
), upd AS (
	UPDATE {schema}.notifications SET consumed = true, consumed_by_function_id = $2
	WHERE message_uuid = (SELECT message_uuid FROM pick) AND EXISTS (SELECT 1 FROM rec)
)
SELECT EXISTS (SELECT 1 FROM pick), EXISTS (SELECT 1 FROM rec), COALESCE((SELECT output FROM rec), ''), COALESCE((SELECT serialization FROM rec), '')`

// pgSetEvent: the step, the event upsert, its history row and the
// notification DBOS's GetEvent waits for.
const pgSetEvent = `WITH rec AS (
	` + pgStepInsert + `
	VALUES ($1, $2, $3, NULL, NULL, NULLIF($4::BIGINT, 0), $5, 'portable_json', NULLIF($6, ''))
	ON CONFLICT (workflow_uuid, function_id) DO NOTHING
	RETURNING 1
), ev AS (
	INSERT INTO {schema}.workflow_events (workflow_uuid, key, value, serialization) SELECT $1, $7, $8, $9 FROM rec
	ON CONFLICT (workflow_uuid, key) DO UPDATE SET value = EXCLUDED.value, serialization = EXCLUDED.serialization
), hist AS (
	INSERT INTO {schema}.workflow_events_history (workflow_uuid, function_id, key, value, serialization) SELECT $1, $2, $7, $8, $9 FROM rec
	ON CONFLICT (workflow_uuid, function_id, key) DO UPDATE SET value = EXCLUDED.value, serialization = EXCLUDED.serialization
)
SELECT pg_notify('` + EventsChannel + `', $1 || '::' || $7) FROM rec`

// pgWriteStream: the step and the value at the next offset, unless the
// stream is closed (then nothing: the caller tells a closed stream from a
// recorded step by reading the step).
const pgWriteStream = `WITH rec AS (
	` + pgStepInsert + `
	SELECT $1, $2, $3, NULL, NULL, NULLIF($4::BIGINT, 0), $5, 'portable_json', NULLIF($6, '')
	WHERE NOT EXISTS (SELECT 1 FROM {schema}.streams WHERE workflow_uuid = $1 AND key = $7 AND value = '` + StreamClosed + `')
	ON CONFLICT (workflow_uuid, function_id) DO NOTHING
	RETURNING 1
), val AS (
	INSERT INTO {schema}.streams (workflow_uuid, key, value, "offset", function_id, serialization)
	SELECT $1, $7, $8, COALESCE((SELECT MAX("offset") FROM {schema}.streams WHERE workflow_uuid = $1 AND key = $7), -1) + 1, $2, $9
	FROM rec
)
SELECT pg_notify('` + StreamsChannel + `', $1 || '::' || $7) FROM rec`

// pgStepArgs are $1..$6 of the statements above.
func pgStepArgs(s StepRow, appName string) []any {
	if s.CompletedMS == 0 {
		s.CompletedMS = nowMS()
	}
	return []any{s.WorkflowID, s.StepID, s.Name, s.StartedMS, s.CompletedMS, appName}
}

// pgStepWrite runs one of the statements above; recorded reports whether
// it recorded the step (a row came back).
func (s *store) pgStepWrite(ctx context.Context, q string, step StepRow, args ...any) (recorded bool, err error) {
	rs, err := s.d.writer().Query(ctx, s.dl.cached(q), append(pgStepArgs(step, s.appName), args...)...)
	if err != nil {
		return false, err
	}
	defer rs.Close()
	recorded = rs.Next()
	rs.Close()
	return recorded, rs.Err()
}

// recordedStepRow reads the step another execution recorded; ok is false when
// there is none.
func (s *store) recordedStepRow(ctx context.Context, step StepRow) (StepRow, bool, error) {
	got := StepRow{WorkflowID: step.WorkflowID}
	err := scanStep(s.d.writer().QueryRow(ctx, s.q.recordedStep, step.WorkflowID, step.StepID), &got)
	if isNoRows(err) {
		return got, false, nil
	}
	return got, err == nil, err
}

// pgWrite runs a step-gated write; when it wrote nothing, the step another
// execution recorded is returned, or, when there is none, unrecorded.
func (s *store) pgWrite(ctx context.Context, q string, step StepRow, unrecorded error, args ...any) (StepRow, bool, error) {
	fresh, err := s.pgStepWrite(ctx, q, step, args...)
	if err != nil || fresh {
		step.Serialization = FormatPortable
		return step, fresh, err
	}
	got, ok, err := s.recordedStepRow(ctx, step)
	if err == nil && !ok {
		if unrecorded == nil {
			unrecorded = fmt.Errorf("step %d of workflow %s neither written nor recorded", step.StepID, step.WorkflowID)
		}
		err = unrecorded
	}
	return got, false, err
}

// pgRecv consumes and records in one statement (see pgRecv's query).
func (s *store) pgRecv(ctx context.Context, destination, topic string, step StepRow, orTimeout bool) (RecvResult, error) {
	got := step
	var picked, recorded bool
	args := append(pgStepArgs(step, s.appName), destination, TopicOrNull(topic), orTimeout)
	if err := s.d.writer().QueryRow(ctx, s.dl.cached(pgRecv), args...).Scan(&picked, &recorded, &got.Output, &got.Serialization); err != nil {
		return RecvResult{}, err
	}
	if recorded {
		return RecvResult{Step: got, Recorded: true, Fresh: true}, nil
	}
	if !picked && !orTimeout {
		return RecvResult{}, nil // nothing yet
	}
	// A message or the timeout was there to record, and the step was not
	// recorded: another execution recorded it first.
	rec, ok, err := s.recordedStepRow(ctx, step)
	if err == nil && !ok {
		err = fmt.Errorf("receive at step %d of workflow %s neither recorded nor found recorded", step.StepID, step.WorkflowID)
	}
	return RecvResult{Step: rec, Recorded: ok}, err
}
