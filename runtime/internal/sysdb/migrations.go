package sysdb

import "strings"

// A migration is one schema version, written once per engine here, in one
// list, so both engines are upgraded from the same source of truth. Released
// migrations are never edited: a schema change is a new entry.
type migration struct {
	version  int
	postgres string // {schema} is replaced by the quoted schema name
	sqlite   string
}

// systemMigrations build the system database.
var systemMigrations = []migration{
	{
		version: 1,
		postgres: `
CREATE TABLE {schema}.workflow_status (
	workflow_uuid TEXT PRIMARY KEY,
	status TEXT NOT NULL,
	name TEXT NOT NULL,
	executor_id TEXT NOT NULL,
	application_version TEXT NOT NULL,
	application_id TEXT NOT NULL DEFAULT '',
	inputs TEXT,
	output TEXT,
	error TEXT,
	serialization TEXT NOT NULL DEFAULT 'json',
	parent_workflow_id TEXT,
	recovery_attempts BIGINT NOT NULL DEFAULT 0,
	workflow_timeout_ms BIGINT,
	workflow_deadline_epoch_ms BIGINT,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);
CREATE INDEX workflow_status_pending ON {schema}.workflow_status (executor_id, application_version) WHERE status = 'PENDING';
CREATE TABLE {schema}.operation_outputs (
	workflow_uuid TEXT NOT NULL,
	function_id INTEGER NOT NULL,
	function_name TEXT NOT NULL,
	output TEXT,
	error TEXT,
	child_workflow_id TEXT,
	serialization TEXT NOT NULL DEFAULT 'json',
	created_at BIGINT NOT NULL,
	PRIMARY KEY (workflow_uuid, function_id)
);`,
		sqlite: `
CREATE TABLE workflow_status (
	workflow_uuid TEXT PRIMARY KEY,
	status TEXT NOT NULL,
	name TEXT NOT NULL,
	executor_id TEXT NOT NULL,
	application_version TEXT NOT NULL,
	application_id TEXT NOT NULL DEFAULT '',
	inputs TEXT,
	output TEXT,
	error TEXT,
	serialization TEXT NOT NULL DEFAULT 'json',
	parent_workflow_id TEXT,
	recovery_attempts INTEGER NOT NULL DEFAULT 0,
	workflow_timeout_ms INTEGER,
	workflow_deadline_epoch_ms INTEGER,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);
CREATE INDEX workflow_status_pending ON workflow_status (executor_id, application_version) WHERE status = 'PENDING';
CREATE TABLE operation_outputs (
	workflow_uuid TEXT NOT NULL,
	function_id INTEGER NOT NULL,
	function_name TEXT NOT NULL,
	output TEXT,
	error TEXT,
	child_workflow_id TEXT,
	serialization TEXT NOT NULL DEFAULT 'json',
	created_at INTEGER NOT NULL,
	PRIMARY KEY (workflow_uuid, function_id)
);`,
	},
}

// appMigrations build the tables dbosgen keeps in the application database,
// where transactions record their outcome in the user's own transaction.
var appMigrations = []migration{
	{
		version: 1,
		postgres: `
CREATE TABLE {schema}.transaction_outputs (
	workflow_uuid TEXT NOT NULL,
	function_id INTEGER NOT NULL,
	function_name TEXT NOT NULL,
	output TEXT,
	error TEXT,
	serialization TEXT NOT NULL DEFAULT 'json',
	created_at BIGINT NOT NULL,
	PRIMARY KEY (workflow_uuid, function_id)
);`,
		sqlite: `
CREATE TABLE transaction_outputs (
	workflow_uuid TEXT NOT NULL,
	function_id INTEGER NOT NULL,
	function_name TEXT NOT NULL,
	output TEXT,
	error TEXT,
	serialization TEXT NOT NULL DEFAULT 'json',
	created_at INTEGER NOT NULL,
	PRIMARY KEY (workflow_uuid, function_id)
);`,
	},
}

// LatestSystemVersion is the schema version this release writes.
func LatestSystemVersion() int { return systemMigrations[len(systemMigrations)-1].version }

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
