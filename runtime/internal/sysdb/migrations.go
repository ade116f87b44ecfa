package sysdb

// A migration is one schema version of dbosgen's own tables, written once per
// engine here, in one list, so both engines are upgraded from the same source
// of truth. Released migrations are never edited: a change is a new entry.
// (The system database's schema is DBOS's: see schema_postgres.go.)
type migration struct {
	version  int
	postgres string // {schema} is replaced by the quoted schema name
	sqlite   string
}

// appTable is where a transaction's outcome is recorded in an application
// database that is not the system database; appVersionTable tracks its
// migrations. DBOS has no table of these names (its own is
// transaction_completion), and DBOS names nothing dbosgen_*.
const (
	appTable        = "dbosgen_transaction_outputs"
	appVersionTable = "dbosgen_app_migrations"
)

// appMigrations build the tables dbosgen keeps in the application database,
// where transactions record their outcome in the user's own transaction.
var appMigrations = []migration{
	{
		version: 1,
		postgres: `
CREATE TABLE {schema}.` + appTable + ` (
	workflow_uuid TEXT NOT NULL,
	function_id INTEGER NOT NULL,
	function_name TEXT NOT NULL,
	output TEXT,
	error TEXT,
	serialization TEXT NOT NULL DEFAULT 'portable_json',
	created_at BIGINT NOT NULL,
	PRIMARY KEY (workflow_uuid, function_id)
);`,
		sqlite: `
CREATE TABLE ` + appTable + ` (
	workflow_uuid TEXT NOT NULL,
	function_id INTEGER NOT NULL,
	function_name TEXT NOT NULL,
	output TEXT,
	error TEXT,
	serialization TEXT NOT NULL DEFAULT 'portable_json',
	created_at INTEGER NOT NULL,
	PRIMARY KEY (workflow_uuid, function_id)
);`,
	},
}
