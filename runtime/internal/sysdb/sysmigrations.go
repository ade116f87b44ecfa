package sysdb

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// dbosgen's own tables in the system database, beside DBOS's: named
// dbosgen_* so that no DBOS release can collide with them, created by a
// migration list of their own (tracked in sysVersionTable) that Migrate
// applies once DBOS's schema is in place. DBOS's tools ignore them.
const (
	executorsTable  = "dbosgen_executors"
	sysVersionTable = "dbosgen_sys_migrations"
)

// sysMigrations build dbosgen's tables in the system database. Released
// entries are never edited: a change is a new entry.
var sysMigrations = []migration{
	{
		// One row per executor ID: who holds its lease and until when (unix
		// ms on the database's clock, so that machines' clocks never
		// disagree about expiry). machine_id is the kernel's boot ID and PID
		// namespace where known: with the host and pid it proves a holder on
		// the same machine gone. An instance_id starting "adopting:" marks a
		// dead executor whose work a live one is taking over.
		version: 1,
		postgres: `
CREATE TABLE {schema}.` + executorsTable + ` (
	executor_id TEXT PRIMARY KEY,
	application_name TEXT NOT NULL,
	application_version TEXT NOT NULL,
	host TEXT NOT NULL,
	machine_id TEXT NOT NULL,
	pid BIGINT NOT NULL,
	instance_id TEXT NOT NULL,
	acquired_at BIGINT NOT NULL,
	lease_expires_at BIGINT NOT NULL
);
CREATE INDEX dbosgen_executors_expiry ON {schema}.` + executorsTable + ` (application_name, application_version, lease_expires_at);`,
		sqlite: `
CREATE TABLE ` + executorsTable + ` (
	executor_id TEXT PRIMARY KEY,
	application_name TEXT NOT NULL,
	application_version TEXT NOT NULL,
	host TEXT NOT NULL,
	machine_id TEXT NOT NULL,
	pid INTEGER NOT NULL,
	instance_id TEXT NOT NULL,
	acquired_at INTEGER NOT NULL,
	lease_expires_at INTEGER NOT NULL
);
CREATE INDEX dbosgen_executors_expiry ON ` + executorsTable + ` (application_name, application_version, lease_expires_at);`,
	},
}

// migrateOwn applies sysMigrations in one transaction under an
// advisory lock of its own, after DBOS's schema is known to be in place.
func (p *Postgres) migrateOwn(ctx context.Context) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "dbosgen:"+p.rawSch+"."+sysVersionTable); err != nil {
			return err
		}
		table := p.schema + "." + quoteIdent(sysVersionTable)
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (version BIGINT NOT NULL)`); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+table).Scan(&current); err != nil {
			return err
		}
		latest := sysMigrations[len(sysMigrations)-1].version
		if current > latest {
			return fmt.Errorf("%w: %s.%s is at version %d, this release knows up to %d; upgrade dbosgen",
				ErrSchemaTooNew, p.rawSch, sysVersionTable, current, latest)
		}
		if current == latest {
			return nil
		}
		for _, m := range sysMigrations {
			if m.version <= current {
				continue
			}
			if _, err := tx.Exec(ctx, strings.ReplaceAll(m.postgres, "{schema}", p.schema)); err != nil {
				return fmt.Errorf("dbosgen system migration %d: %w", m.version, err)
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+table); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO `+table+` (version) VALUES ($1)`, latest)
		return err
	})
}

// migrateOwn applies sysMigrations on SQLite (BEGIN IMMEDIATE on the write
// connection: concurrent processes queue on the file's lock).
func (s *SQLite) migrateOwn(ctx context.Context) error {
	return migrateSQLite(ctx, s.w, sysVersionTable, sysVersionTable, sysMigrations)
}
