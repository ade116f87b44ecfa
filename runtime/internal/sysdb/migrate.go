package sysdb

import (
	"errors"
	"fmt"
)

// SchemaVersion is the DBOS system-database schema version dbosgen writes:
// the last migration of the DBOS Go SDK v1.8.0. dbos_migrations holds it in
// one row, with DBOS's meaning, so DBOS's own tools find nothing to migrate.
const SchemaVersion = 125

// ErrOldSchema is returned by Migrate for a system database dbosgen cannot
// use: one made by an earlier dbosgen build, or by a DBOS release older than
// SchemaVersion. Nothing is rebuilt or downgraded.
var ErrOldSchema = errors.New("system database schema is not DBOS's schema version 125 or later")

// ErrSchemaBusy is returned by Migrate while another program is creating the
// schema; IsTransient reports it, so Launch waits and reads it again.
var ErrSchemaBusy = errors.New("system database schema is being created by another program")

// ErrSchemaTooNew is kept for callers that test for it; a newer DBOS schema
// is accepted (DBOS migrations only add), so Migrate no longer returns it.
var ErrSchemaTooNew = errors.New("system database schema is newer than this dbosgen release")

// MigrateResult says what Migrate found and did.
type MigrateResult struct {
	Created bool  // the schema was created by this call
	Version int64 // the version in dbos_migrations afterwards
}

// Newer reports whether a newer DBOS release migrated the database.
func (r MigrateResult) Newer() bool { return r.Version > SchemaVersion }

// schemaState is what a migrator learns of a database, under its lock,
// before touching it.
type schemaState struct {
	versionTable bool  // dbos_migrations exists
	version      int64 // its row; 0 when it has none
	statusTable  bool  // workflow_status exists
	dbosColumns  bool  // workflow_status has DBOS's columns (authenticated_user)
}

// plan decides, the same way on every engine, whether to create the schema
// (create) or use it as it is, or why the database cannot be used.
func (s schemaState) plan(where string) (create bool, err error) {
	switch {
	case s.statusTable && !s.dbosColumns:
		return false, fmt.Errorf("%w: %s was made by an earlier dbosgen build, before dbosgen adopted DBOS's schema "+
			"(no release was published with it); its workflows cannot be read: move it aside "+
			"(DROP SCHEMA ... CASCADE on PostgreSQL, delete the file on SQLite) or point the runtime at a new database",
			ErrOldSchema, where)
	case s.versionTable && s.version >= SchemaVersion:
		return false, nil
	case s.versionTable && s.version > 0:
		return false, fmt.Errorf("%w: %s is at DBOS schema version %d, dbosgen needs %d: upgrade it with DBOS's CLI "+
			"(go run github.com/dbos-inc/dbos-transact-golang/cmd/dbos@v1.8.0 migrate --db-url <url>) and launch again",
			ErrOldSchema, where, s.version, SchemaVersion)
	case s.statusTable || s.versionTable:
		// Another program is creating the schema right now (DBOS creates the
		// version table first, then the tables, in separate transactions).
		return false, fmt.Errorf("%w: %s has tables but no version in dbos_migrations yet", ErrSchemaBusy, where)
	}
	return true, nil
}
