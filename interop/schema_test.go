package interop

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	sdk "github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/jackc/pgx/v5"
)

// TestSchemaMatchesDBOS compares, object by object, the system schema
// dbosgen's Launch creates with the one DBOS's own migrations create (SDK
// v1.8.0, dbos.Migrate): tables, columns (type, nullability, default),
// constraints, indexes, functions (signature and result), triggers, and the
// schema version. Tables of dbosgen's own are allowed if their names say so
// ("dbosgen" in them), so that no DBOS release can collide with them.
// Function bodies are compared with whitespace collapsed, and only reported:
// dbosgen writes its own DDL.
func TestSchemaMatchesDBOS(t *testing.T) {
	dbosURL := newDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := sdk.Migrate(ctx, dbosURL, sdk.WithMigrateLogger(testLogger(t, "dbos.Migrate"))); err != nil {
		t.Fatalf("DBOS SDK dbos.Migrate on a fresh database: %v", err)
	}
	genURL := newDB(t)
	shutdownGen(t, launchGen(t, genURL))

	want := dumpSchema(t, dbosURL, "dbos")
	got := dumpSchema(t, genURL, "dbos")
	var missing, differ, extra, bodies []string
	for _, k := range sortedKeys(want) {
		g, ok := got[k]
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("%s: %s", k, want[k]))
		case g != want[k] && strings.HasPrefix(k, "function body "):
			bodies = append(bodies, fmt.Sprintf("%s:\n      DBOS:    %s\n      dbosgen: %s", k, want[k], g))
		case g != want[k]:
			differ = append(differ, fmt.Sprintf("%s:\n      DBOS:    %s\n      dbosgen: %s", k, want[k], g))
		}
	}
	for _, k := range sortedKeys(got) {
		if _, ok := want[k]; !ok && !strings.Contains(k, "dbosgen") {
			extra = append(extra, fmt.Sprintf("%s: %s", k, got[k]))
		}
	}
	report := func(title string, items []string) string {
		if len(items) == 0 {
			return ""
		}
		return fmt.Sprintf("\n  %s (%d):\n    %s", title, len(items), strings.Join(items, "\n    "))
	}
	if msg := report("in DBOS's schema, missing from dbosgen's", missing) +
		report("different in dbosgen's schema", differ) +
		report("in dbosgen's schema only, not named as dbosgen's own", extra); msg != "" {
		t.Errorf("dbosgen's system schema is not DBOS v1.8.0's (after migration 125):%s", msg)
	}
	if len(bodies) > 0 {
		t.Logf("function bodies that differ in text (not a failure; check their behaviour):%s", report("bodies", bodies))
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var spaces = regexp.MustCompile(`\s+`)

// dumpSchema describes every object of schema on url, keyed by kind and name.
func dumpSchema(t *testing.T, url, schema string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	defer conn.Close(context.Background())
	out := map[string]string{}
	collect := func(what, sql string) {
		rows, err := conn.Query(ctx, sql, schema)
		if err != nil {
			t.Fatalf("reading the %s of schema %s: %v", what, schema, err)
		}
		defer rows.Close()
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				t.Fatalf("reading the %s of schema %s: %v", what, schema, err)
			}
			out[k] = spaces.ReplaceAllString(strings.TrimSpace(v), " ")
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("reading the %s of schema %s: %v", what, schema, err)
		}
	}
	collect("tables", `
		SELECT 'table ' || c.relname, c.relkind::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm')`)
	collect("columns", `
		SELECT 'column ' || c.relname || '.' || a.attname,
		       format_type(a.atttypid, a.atttypmod)
		       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE ' NULL' END
		       || COALESCE(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
		FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped`)
	collect("constraints", `
		SELECT 'constraint ' || c.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
		FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1`)
	collect("indexes", `
		SELECT 'index ' || indexname, indexdef FROM pg_indexes WHERE schemaname = $1`)
	collect("functions", `
		SELECT 'function ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
		       'RETURNS ' || pg_get_function_result(p.oid) || ' LANGUAGE ' || l.lanname
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
		WHERE n.nspname = $1`)
	collect("function bodies", `
		SELECT 'function body ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', p.prosrc
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = $1`)
	collect("triggers", `
		SELECT 'trigger ' || c.relname || '.' || tg.tgname, pg_get_triggerdef(tg.oid)
		FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND NOT tg.tgisinternal`)
	// The schema version: what DBOS's migrator and its clients read.
	var version string
	err = conn.QueryRow(ctx, `SELECT COALESCE(string_agg(version::text, ','), '<no row>') FROM `+
		pgx.Identifier{schema, "dbos_migrations"}.Sanitize()).Scan(&version)
	if err != nil {
		version = "<unreadable: " + err.Error() + ">"
	}
	out["row dbos_migrations.version"] = version
	return out
}
