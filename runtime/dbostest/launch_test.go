package dbostest

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/dbosgen/dbosgen/internal/dbtest"
)

// TestPostgresDatabaseDropped: a test's PostgreSQL database exists while it
// runs and is gone after it; SQLite is the default without the variable.
func TestPostgresDatabaseDropped(t *testing.T) {
	t.Setenv(EnvPostgresURL, "")
	var name string
	t.Run("inner", func(t *testing.T) {
		rt := Launch(t, WithPostgres(dbtest.AdminURL()))
		u, err := url.Parse(rt.cfg.SystemDatabaseURL)
		if err != nil || !strings.HasPrefix(u.Path, "/dbostest_testpostgresdatabasedropped_") {
			t.Fatalf("database URL %q", rt.cfg.SystemDatabaseURL)
		}
		name = strings.TrimPrefix(u.Path, "/")
		if !exists(t, name) {
			t.Fatalf("database %s does not exist while the test runs", name)
		}
		if rt.cfg.ApplicationDatabaseURL != rt.cfg.SystemDatabaseURL {
			t.Errorf("application database %q, want the test's own", rt.cfg.ApplicationDatabaseURL)
		}
	})
	if name == "" || exists(t, name) {
		t.Fatalf("database %q was not dropped after the test", name)
	}
	if rt := Launch(t); !strings.HasPrefix(rt.cfg.SystemDatabaseURL, "sqlite://") || !strings.Contains(rt.cfg.SystemDatabaseURL, t.Name()) {
		t.Errorf("default database %q, want SQLite in the test's directory", rt.cfg.SystemDatabaseURL)
	}
}

func exists(t *testing.T, name string) bool {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dbtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}
