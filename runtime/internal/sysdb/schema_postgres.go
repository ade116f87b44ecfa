package sysdb

// pgSchema is DBOS Transact's system database as the DBOS Go SDK v1.8.0
// leaves it after its migration 125, written as one script so that a fresh
// database is created in one transaction. {schema} is the quoted schema.
// Every table, column, default, index, function and trigger here is DBOS's:
// DBOS's CLI, clients and executors read and write these rows too, so a
// change here is a change to a format other programs rely on.
const pgSchema = `
CREATE TABLE {schema}.dbos_migrations (version BIGINT NOT NULL PRIMARY KEY);

CREATE TABLE {schema}.workflow_status (
	workflow_uuid TEXT PRIMARY KEY,
	status TEXT,
	name TEXT,
	authenticated_user TEXT,
	assumed_role TEXT,
	authenticated_roles TEXT,
	request TEXT,
	output TEXT,
	error TEXT,
	executor_id TEXT,
	created_at BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000)::BIGINT,
	updated_at BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000)::BIGINT,
	application_version TEXT,
	application_id TEXT,
	class_name VARCHAR(255) DEFAULT NULL,
	config_name VARCHAR(255) DEFAULT NULL,
	recovery_attempts BIGINT DEFAULT 0,
	queue_name TEXT,
	workflow_timeout_ms BIGINT,
	workflow_deadline_epoch_ms BIGINT,
	inputs TEXT,
	started_at_epoch_ms BIGINT,
	deduplication_id TEXT,
	priority INTEGER NOT NULL DEFAULT 0,
	queue_partition_key TEXT,
	forked_from TEXT,
	owner_xid TEXT,
	parent_workflow_id TEXT,
	serialization TEXT,
	delay_until_epoch_ms BIGINT,
	was_forked_from BOOLEAN NOT NULL DEFAULT FALSE,
	rate_limited BOOLEAN NOT NULL DEFAULT FALSE,
	completed_at BIGINT,
	attributes JSONB,
	schedule_name TEXT,
	debounce_deadline_epoch_ms BIGINT,
	is_debounced BOOLEAN NOT NULL DEFAULT FALSE,
	application_name TEXT,
	creator_xid TEXT
);
CREATE INDEX workflow_status_created_at_index ON {schema}.workflow_status (created_at);
CREATE INDEX idx_workflow_status_attributes ON {schema}.workflow_status USING gin (attributes) WHERE attributes IS NOT NULL;
CREATE INDEX idx_workflow_status_completed_at ON {schema}.workflow_status (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX idx_workflow_status_deadline ON {schema}.workflow_status (workflow_deadline_epoch_ms)
	WHERE status IN ('ENQUEUED', 'PENDING', 'DELAYED') AND workflow_deadline_epoch_ms IS NOT NULL;
CREATE INDEX idx_workflow_status_delayed ON {schema}.workflow_status (delay_until_epoch_ms) WHERE status = 'DELAYED';
CREATE INDEX idx_workflow_status_failed ON {schema}.workflow_status (status, created_at)
	WHERE status IN ('ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED');
CREATE INDEX idx_workflow_status_forked_from ON {schema}.workflow_status (forked_from) WHERE forked_from IS NOT NULL;
CREATE INDEX idx_workflow_status_in_flight_v2 ON {schema}.workflow_status (queue_name, status, priority, created_at)
	INCLUDE (application_name) WHERE status IN ('ENQUEUED', 'PENDING');
CREATE INDEX idx_workflow_status_parent_workflow_id ON {schema}.workflow_status (parent_workflow_id) WHERE parent_workflow_id IS NOT NULL;
CREATE INDEX idx_workflow_status_partition_dequeue_v3 ON {schema}.workflow_status
	(queue_name, status, queue_partition_key, priority, created_at, workflow_uuid) INCLUDE (application_name)
	WHERE status IN ('ENQUEUED', 'PENDING') AND queue_partition_key IS NOT NULL;
CREATE INDEX idx_workflow_status_pending ON {schema}.workflow_status (created_at) WHERE status = 'PENDING';
CREATE INDEX idx_workflow_status_rate_limited ON {schema}.workflow_status (queue_name, started_at_epoch_ms) WHERE rate_limited = TRUE;
CREATE INDEX idx_workflow_status_schedule_name ON {schema}.workflow_status (schedule_name) WHERE schedule_name IS NOT NULL;
CREATE INDEX idx_workflow_status_started_at ON {schema}.workflow_status (started_at_epoch_ms) WHERE started_at_epoch_ms IS NOT NULL;
CREATE UNIQUE INDEX uq_workflow_status_dedup_id ON {schema}.workflow_status (queue_name, deduplication_id) WHERE deduplication_id IS NOT NULL;

CREATE TABLE {schema}.workflow_input (
	workflow_uuid TEXT PRIMARY KEY,
	inputs TEXT,
	retention_timestamp BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000.0)::BIGINT
);
CREATE INDEX idx_workflow_input_retention ON {schema}.workflow_input (retention_timestamp);

CREATE TABLE {schema}.workflow_output (
	workflow_uuid TEXT PRIMARY KEY,
	output TEXT,
	error TEXT,
	retention_timestamp BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000.0)::BIGINT
);
CREATE INDEX idx_workflow_output_retention ON {schema}.workflow_output (retention_timestamp);

CREATE TABLE {schema}.operation_outputs (
	workflow_uuid TEXT NOT NULL,
	function_id INTEGER NOT NULL,
	function_name TEXT NOT NULL DEFAULT '',
	output TEXT,
	error TEXT,
	child_workflow_id TEXT,
	started_at_epoch_ms BIGINT,
	completed_at_epoch_ms BIGINT,
	serialization TEXT,
	application_name TEXT,
	retention_timestamp BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000.0)::BIGINT,
	PRIMARY KEY (workflow_uuid, function_id)
);
CREATE INDEX idx_operation_outputs_completed_at_function_name_v2 ON {schema}.operation_outputs
	(completed_at_epoch_ms, function_name) INCLUDE (application_name);
CREATE INDEX idx_operation_outputs_retention ON {schema}.operation_outputs (retention_timestamp);

CREATE TABLE {schema}.notifications (
	destination_uuid TEXT NOT NULL REFERENCES {schema}.workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
	topic TEXT,
	message TEXT NOT NULL,
	created_at_epoch_ms BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000)::BIGINT,
	message_uuid TEXT PRIMARY KEY DEFAULT gen_random_uuid(),
	serialization TEXT,
	consumed BOOLEAN NOT NULL DEFAULT FALSE,
	consumed_by_function_id INTEGER
);
CREATE INDEX idx_workflow_topic ON {schema}.notifications (destination_uuid, topic);

CREATE TABLE {schema}.workflow_events (
	workflow_uuid TEXT NOT NULL REFERENCES {schema}.workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
	key TEXT NOT NULL,
	value TEXT NOT NULL,
	serialization TEXT,
	PRIMARY KEY (workflow_uuid, key)
);

CREATE TABLE {schema}.workflow_events_history (
	workflow_uuid TEXT NOT NULL REFERENCES {schema}.workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
	function_id INTEGER NOT NULL,
	key TEXT NOT NULL,
	value TEXT NOT NULL,
	serialization TEXT,
	PRIMARY KEY (workflow_uuid, function_id, key)
);

CREATE TABLE {schema}.streams (
	workflow_uuid TEXT NOT NULL REFERENCES {schema}.workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
	key TEXT NOT NULL,
	value TEXT NOT NULL,
	"offset" INTEGER NOT NULL,
	function_id INTEGER NOT NULL DEFAULT 0,
	serialization TEXT,
	PRIMARY KEY (workflow_uuid, key, "offset")
);

CREATE TABLE {schema}.event_dispatch_kv (
	service_name TEXT NOT NULL,
	workflow_fn_name TEXT NOT NULL,
	key TEXT NOT NULL,
	value TEXT,
	update_seq NUMERIC(38,0),
	update_time NUMERIC(38,15),
	PRIMARY KEY (service_name, workflow_fn_name, key)
);

CREATE TABLE {schema}.workflow_schedules (
	schedule_id TEXT PRIMARY KEY,
	schedule_name TEXT NOT NULL UNIQUE,
	workflow_name TEXT NOT NULL,
	workflow_class_name TEXT,
	schedule TEXT NOT NULL,
	status TEXT NOT NULL DEFAULT 'ACTIVE',
	context TEXT NOT NULL,
	last_fired_at TEXT,
	automatic_backfill BOOLEAN NOT NULL DEFAULT FALSE,
	cron_timezone TEXT,
	queue_name TEXT,
	application_name TEXT
);

CREATE TABLE {schema}.application_versions (
	version_id TEXT PRIMARY KEY,
	version_name TEXT NOT NULL UNIQUE,
	version_timestamp BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000)::BIGINT,
	created_at BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000)::BIGINT,
	application_name TEXT
);
CREATE INDEX idx_application_versions_owner_timestamp ON {schema}.application_versions (application_name, version_timestamp DESC);
CREATE INDEX idx_application_versions_timestamp ON {schema}.application_versions (version_timestamp DESC);
CREATE UNIQUE INDEX uq_application_versions_owner_version ON {schema}.application_versions (application_name, version_name)
	WHERE application_name IS NOT NULL;
CREATE UNIQUE INDEX uq_application_versions_unclaimed_version ON {schema}.application_versions (version_name)
	WHERE application_name IS NULL;

CREATE TABLE {schema}.queues (
	queue_id TEXT PRIMARY KEY DEFAULT gen_random_uuid()::TEXT,
	name TEXT NOT NULL UNIQUE,
	concurrency INTEGER,
	worker_concurrency INTEGER,
	rate_limit_max INTEGER,
	rate_limit_period_sec DOUBLE PRECISION,
	priority_enabled BOOLEAN NOT NULL DEFAULT FALSE,
	partition_queue BOOLEAN NOT NULL DEFAULT FALSE,
	polling_interval_sec DOUBLE PRECISION NOT NULL DEFAULT 1.0,
	created_at BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000.0)::BIGINT,
	updated_at BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000.0)::BIGINT,
	application_name TEXT,
	partition_concurrency INTEGER,
	partition_worker_concurrency INTEGER,
	partition_rate_limit_max INTEGER,
	partition_rate_limit_period_sec DOUBLE PRECISION
);

-- A message insert wakes its receiver: the payload is "destination::topic".
CREATE FUNCTION {schema}.notifications_function() RETURNS TRIGGER
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
	PERFORM pg_notify('dbos_notifications_channel', NEW.destination_uuid || '::' || NEW.topic);
	RETURN NEW;
END;
$fn$;
CREATE TRIGGER dbos_notifications_trigger AFTER INSERT ON {schema}.notifications
	FOR EACH ROW EXECUTE FUNCTION {schema}.notifications_function();

-- send_message lets any SQL client message a workflow (DBOS's SQL client API).
CREATE FUNCTION {schema}.send_message(destination_id TEXT, message JSON, topic TEXT DEFAULT NULL, message_id TEXT DEFAULT NULL)
RETURNS VOID LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
	INSERT INTO {schema}.notifications (destination_uuid, topic, message, message_uuid, serialization)
	VALUES (destination_id, COALESCE(topic, '__null__topic__'), message, COALESCE(message_id, gen_random_uuid()::TEXT), 'portable_json')
	ON CONFLICT (message_uuid) DO NOTHING;
EXCEPTION WHEN foreign_key_violation THEN
	RAISE EXCEPTION 'DBOS non-existent workflow'
		USING DETAIL = format('Destination workflow %s does not exist', destination_id), ERRCODE = 'foreign_key_violation';
END;
$fn$;

-- enqueue_workflow lets any SQL client enqueue a workflow by name, with
-- portable_json inputs (DBOS's SQL client API).
CREATE FUNCTION {schema}.enqueue_workflow(
	workflow_name TEXT, queue_name TEXT, positional_args JSON[] DEFAULT ARRAY[]::JSON[], named_args JSON DEFAULT '{}'::JSON,
	class_name TEXT DEFAULT NULL, config_name TEXT DEFAULT NULL, workflow_id TEXT DEFAULT NULL, app_version TEXT DEFAULT NULL,
	timeout_ms BIGINT DEFAULT NULL, deadline_epoch_ms BIGINT DEFAULT NULL, deduplication_id TEXT DEFAULT NULL,
	priority INTEGER DEFAULT NULL, queue_partition_key TEXT DEFAULT NULL, authenticated_user TEXT DEFAULT NULL,
	authenticated_roles TEXT DEFAULT NULL, delay_until_epoch_ms BIGINT DEFAULT NULL, application_name TEXT DEFAULT NULL)
RETURNS TEXT LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	v_id TEXT := COALESCE(workflow_id, gen_random_uuid()::TEXT);
	v_now BIGINT := EXTRACT(epoch FROM now()) * 1000;
BEGIN
	IF workflow_name IS NULL OR workflow_name = '' THEN
		RAISE EXCEPTION 'Workflow name cannot be null or empty';
	END IF;
	IF queue_name IS NULL OR queue_name = '' THEN
		RAISE EXCEPTION 'Queue name cannot be null or empty';
	END IF;
	IF named_args IS NOT NULL AND jsonb_typeof(named_args::JSONB) != 'object' THEN
		RAISE EXCEPTION 'Named args must be a JSON object';
	END IF;
	IF workflow_id IS NOT NULL AND workflow_id = '' THEN
		RAISE EXCEPTION 'Workflow ID cannot be an empty string if provided.';
	END IF;
	IF delay_until_epoch_ms IS NOT NULL AND delay_until_epoch_ms < 0 THEN
		RAISE EXCEPTION 'delay_until_epoch_ms must be >= 0';
	END IF;
	INSERT INTO {schema}.workflow_status (workflow_uuid, status, name, class_name, config_name, queue_name,
		deduplication_id, priority, queue_partition_key, application_version, created_at, updated_at,
		recovery_attempts, workflow_timeout_ms, workflow_deadline_epoch_ms, parent_workflow_id, owner_xid,
		serialization, authenticated_user, authenticated_roles, delay_until_epoch_ms, application_name)
	VALUES (v_id, CASE WHEN delay_until_epoch_ms IS NULL THEN 'ENQUEUED' ELSE 'DELAYED' END, workflow_name,
		class_name, config_name, queue_name, deduplication_id, COALESCE(priority, 0), queue_partition_key,
		app_version, v_now, v_now, 0, timeout_ms, deadline_epoch_ms, NULL, gen_random_uuid()::TEXT,
		'portable_json', authenticated_user, authenticated_roles, delay_until_epoch_ms, application_name)
	ON CONFLICT (workflow_uuid) DO UPDATE SET updated_at = EXCLUDED.updated_at;
	INSERT INTO {schema}.workflow_input (workflow_uuid, inputs, retention_timestamp)
	VALUES (v_id, json_build_object('positionalArgs', positional_args, 'namedArgs', named_args)::TEXT, v_now)
	ON CONFLICT (workflow_uuid) DO NOTHING;
	RETURN v_id;
EXCEPTION WHEN unique_violation THEN
	RAISE EXCEPTION 'DBOS queue duplicated'
		USING DETAIL = format('Workflow %s with queue %s and deduplication ID %s already exists', v_id, queue_name, deduplication_id),
			ERRCODE = 'unique_violation';
END;
$fn$;
`
