package sysdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx" for MigratePostgresApp callers
)

// This file runs dbosgen's own migration list (migrations.go) through
// database/sql, on application databases of either engine.

// sqlRunner is what a migration needs from a *sql.Tx or a *sql.Conn.
type sqlRunner interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// migrationDialect is what differs between engines once the lock is held.
type migrationDialect struct {
	table   string // qualified, quoted version table
	display string // for messages: schema.table or file table
	ddl     func(migration) string
	param   string // first bind parameter: $1 or ?
}

// applyMigrations brings the version table up to the last migration of ms.
// The caller holds the engine's migration lock and commits.
func applyMigrations(ctx context.Context, tx sqlRunner, d migrationDialect, ms []migration) error {
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+d.table+` (version BIGINT NOT NULL)`); err != nil {
		return err
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+d.table).Scan(&current); err != nil {
		return err
	}
	latest := ms[len(ms)-1].version
	if current > latest {
		return fmt.Errorf("%w: %s is at version %d, this release knows up to %d; upgrade dbosgen", ErrSchemaTooNew, d.display, current, latest)
	}
	if current == latest {
		return nil
	}
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		if _, err := tx.ExecContext(ctx, d.ddl(m)); err != nil {
			return fmt.Errorf("migration %d: %w", m.version, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+d.table); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO `+d.table+` (version) VALUES (`+d.param+`)`, latest)
	return err
}

// MigrateSQLiteApp creates or upgrades dbosgen's table (appTable) in an
// application database on SQLite, tracked in appVersionTable. Safe when
// several goroutines or processes migrate at once.
func MigrateSQLiteApp(ctx context.Context, db *sql.DB) error {
	return migrateSQLite(ctx, db, appVersionTable, appVersionTable, appMigrations)
}

// migrateSQLite applies ms in one BEGIN IMMEDIATE transaction on one
// connection of db, whatever db's own _txlock: the write lock is taken before
// the version is read, so concurrent migrators run one after the other and the
// later ones find nothing to do.
func migrateSQLite(ctx context.Context, db *sql.DB, table, display string, ms []migration) (err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	// A pool opened elsewhere may lack a busy timeout; without one, a
	// concurrent migrator fails at once with SQLITE_BUSY instead of queueing.
	var bt int64
	if err := conn.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&bt); err != nil {
		return err
	}
	if bt == 0 {
		if _, err := conn.ExecContext(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, busyTimeout.Milliseconds())); err != nil {
			return err
		}
	}
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return err
	}
	defer func() {
		if err == nil {
			_, err = conn.ExecContext(ctx, `COMMIT`)
			if err == nil {
				return
			}
		}
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`); rerr != nil {
			// Never hand a connection stuck in a transaction back to the pool.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return applyMigrations(ctx, conn, migrationDialect{
		table:   quoteIdent(table),
		display: display,
		ddl:     func(m migration) string { return m.sqlite },
		param:   "?",
	}, ms)
}

// MigratePostgresApp creates or upgrades dbosgen's tables in a PostgreSQL
// application database reached through database/sql (driver "pgx"), in
// schema (created if missing), tracked in schema.appVersionTable, in one
// transaction under an advisory lock, so concurrent launches queue and the
// later ones find nothing to do.
func MigratePostgresApp(ctx context.Context, db *sql.DB, schema string) (err error) {
	if schema == "" {
		return errors.New("postgres app migration: empty schema name")
	}
	const table = appVersionTable
	sch := quoteIdent(schema)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
			return
		}
		err = tx.Commit()
	}()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "dbosgen:"+schema+"."+table); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+sch); err != nil {
		return err
	}
	return applyMigrations(ctx, tx, migrationDialect{
		table:   sch + "." + quoteIdent(table),
		display: schema + "." + table,
		ddl:     func(m migration) string { return strings.ReplaceAll(m.postgres, "{schema}", sch) },
		param:   "$1",
	}, appMigrations)
}
