package sysdb

import (
	"context"
	"strings"
)

// Migrate implements Store in one BEGIN IMMEDIATE transaction on the write
// connection: concurrent migrators (goroutines or processes) queue on the
// file's write lock, and the later ones find the schema made.
func (s *SQLite) Migrate(ctx context.Context) (MigrateResult, error) {
	var res MigrateResult
	err := s.d.inTx(ctx, func(tx querier) error {
		st, err := sqliteSchemaState(ctx, tx)
		if err != nil {
			return err
		}
		res.Version = st.version
		create, err := st.plan(s.path)
		if err != nil || !create {
			return err
		}
		if _, err := tx.Exec(ctx, strings.ReplaceAll(sqliteSchema, "{now}", sqliteNowMS)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO dbos_migrations (version) VALUES (?)`, SchemaVersion); err != nil {
			return err
		}
		res = MigrateResult{Created: true, Version: SchemaVersion}
		return nil
	})
	if err == nil {
		err = s.migrateOwn(ctx) // dbosgen's own tables, once DBOS's are there
	}
	return res, err
}

func sqliteSchemaState(ctx context.Context, tx querier) (schemaState, error) {
	var st schemaState
	err := tx.QueryRow(ctx, `SELECT
	EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dbos_migrations'),
	EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'workflow_status'),
	EXISTS (SELECT 1 FROM pragma_table_info('workflow_status') WHERE name = 'authenticated_user')`).
		Scan(&st.versionTable, &st.statusTable, &st.dbosColumns)
	if err != nil || !st.versionTable {
		return st, err
	}
	err = tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM dbos_migrations`).Scan(&st.version)
	return st, err
}
