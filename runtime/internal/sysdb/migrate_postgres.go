package sysdb

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Migrate implements Store: under an advisory lock (so that dbosgen
// processes launching together queue), it reads what the schema holds and
// either creates all of DBOS's schema in this one transaction or checks the
// version. A DBOS process creating the schema at the same moment makes one
// of the two fail on a duplicate object; the loser reads the state again.
func (p *Postgres) Migrate(ctx context.Context) (MigrateResult, error) {
	for attempt := 0; ; attempt++ {
		res, err := p.migrateOnce(ctx)
		var pgErr *pgconn.PgError
		if attempt < 3 && errors.As(err, &pgErr) && (pgErr.Code == "42P06" || pgErr.Code == "42P07" || pgErr.Code == "23505" || pgErr.Code == "42710") {
			continue // duplicate schema, table, key or object: someone else created it
		}
		if err == nil {
			err = p.migrateOwn(ctx) // dbosgen's own tables, once DBOS's are there
		}
		return res, err
	}
}

func (p *Postgres) migrateOnce(ctx context.Context) (MigrateResult, error) {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return MigrateResult{}, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit this is a no-op
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "dbosgen:migrate:"+p.rawSch); err != nil {
		return MigrateResult{}, err
	}
	st, err := pgSchemaState(ctx, tx, p.rawSch)
	if err != nil {
		return MigrateResult{}, err
	}
	create, err := st.plan("schema " + p.rawSch + " of database " + p.pool.Config().ConnConfig.Database)
	if err != nil || !create {
		return MigrateResult{Version: st.version}, err
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+p.schema); err != nil {
		return MigrateResult{}, err
	}
	if _, err := tx.Exec(ctx, strings.ReplaceAll(pgSchema, "{schema}", p.schema)); err != nil {
		return MigrateResult{}, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+p.schema+`.dbos_migrations (version) VALUES ($1)`, SchemaVersion); err != nil {
		return MigrateResult{}, err
	}
	return MigrateResult{Created: true, Version: SchemaVersion}, tx.Commit(ctx)
}

func pgSchemaState(ctx context.Context, tx pgx.Tx, schema string) (schemaState, error) {
	var st schemaState
	err := tx.QueryRow(ctx, `SELECT
	EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'dbos_migrations'),
	EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'workflow_status'),
	EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'workflow_status'
		AND column_name = 'authenticated_user')`, schema).Scan(&st.versionTable, &st.statusTable, &st.dbosColumns)
	if err != nil || !st.versionTable {
		return st, err
	}
	err = tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+quoteIdent(schema)+`.dbos_migrations`).Scan(&st.version)
	return st, err
}
