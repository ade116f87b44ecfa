package sysdb

// The canonical statements of messages.go (PostgreSQL syntax, rendered per
// engine by dialect.render).

// msgRecordStep records a step with its serialization: a received message
// keeps the sender's format (DBOS_JSON from DBOS's Go client).
const msgRecordStep = `INSERT INTO {schema}.operation_outputs (workflow_uuid, function_id, function_name, output, error,
	started_at_epoch_ms, completed_at_epoch_ms, serialization, application_name)
VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), NULLIF($6::BIGINT, 0), $7, $8, NULLIF($9, ''))
ON CONFLICT (workflow_uuid, function_id) DO NOTHING`

func stepRowArgs(s StepRow, appName string) []any {
	if s.CompletedMS == 0 {
		s.CompletedMS = nowMS()
	}
	if s.Serialization == "" {
		s.Serialization = FormatPortable
	}
	return []any{s.WorkflowID, s.StepID, s.Name, s.Output, s.Error, s.StartedMS, s.CompletedMS, s.Serialization, appName}
}

// msgSend inserts a message only for an existing destination; DBOS's
// trigger on notifications sends "destination::topic" on PostgreSQL.
const msgSend = `INSERT INTO {schema}.notifications (destination_uuid, topic, message, serialization, message_uuid, created_at_epoch_ms)
SELECT workflow_uuid, $2, $3, $4, $5, $6 FROM {schema}.workflow_status WHERE workflow_uuid = $1
ON CONFLICT (message_uuid) DO NOTHING`

const msgWorkflowExists = `SELECT EXISTS (SELECT 1 FROM {schema}.workflow_status WHERE workflow_uuid = $1)`

const msgPending = `SELECT EXISTS (SELECT 1 FROM {schema}.notifications WHERE destination_uuid = $1 AND topic = $2 AND consumed = false)`

// msgConsume marks the oldest unconsumed message of a topic consumed by a
// step, as DBOS does; "AND consumed = false" again in the UPDATE so that a
// concurrent consumer that got the row first leaves this one empty-handed.
const msgConsume = `UPDATE {schema}.notifications SET consumed = true, consumed_by_function_id = $3
WHERE message_uuid = (
	SELECT message_uuid FROM {schema}.notifications
	WHERE destination_uuid = $1 AND topic = $2 AND consumed = false
	ORDER BY created_at_epoch_ms LIMIT 1
) AND consumed = false
RETURNING message, serialization`

const msgSetEvent = `INSERT INTO {schema}.workflow_events (workflow_uuid, key, value, serialization) VALUES ($1, $2, $3, $4)
ON CONFLICT (workflow_uuid, key) DO UPDATE SET value = EXCLUDED.value, serialization = EXCLUDED.serialization`

const msgEventHistory = `INSERT INTO {schema}.workflow_events_history (workflow_uuid, function_id, key, value, serialization)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (workflow_uuid, function_id, key) DO UPDATE SET value = EXCLUDED.value, serialization = EXCLUDED.serialization`

const msgGetEvent = `SELECT value, serialization FROM {schema}.workflow_events WHERE workflow_uuid = $1 AND key = $2`

const msgStreamClosed = `SELECT EXISTS (SELECT 1 FROM {schema}.streams WHERE workflow_uuid = $1 AND key = $2 AND value = $3)`

const msgStreamWrite = `INSERT INTO {schema}.streams (workflow_uuid, key, value, "offset", function_id, serialization)
SELECT $1, $2, $3, COALESCE((SELECT MAX("offset") FROM {schema}.streams WHERE workflow_uuid = $1 AND key = $2), -1) + 1, $4, $5`

const msgStreamRead = `SELECT value, "offset", serialization FROM {schema}.streams
WHERE workflow_uuid = $1 AND key = $2 AND "offset" >= $3 ORDER BY "offset"`
