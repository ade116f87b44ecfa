// Package dbtest gives tests fresh databases: a PostgreSQL database created
// for one test and dropped after it, or a SQLite file in a temp directory.
package dbtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvAdminURL overrides the PostgreSQL server tests use; the URL must name a
// database the user may connect to and a role that may create databases.
const EnvAdminURL = "DBOSGEN_TEST_POSTGRES_URL"

// AdminURL is the PostgreSQL server tests create their databases on.
func AdminURL() string {
	if u := os.Getenv(EnvAdminURL); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

var seq atomic.Int64

// Postgres creates an empty database for t and returns its URL. The database
// is dropped when t ends. It fails t, saying how to start the server, when
// PostgreSQL cannot be reached.
func Postgres(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		t.Fatalf("PostgreSQL is required for this test and is not reachable at %s: %v\n"+
			"start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n"+
			"or point %s at a server where the user may create databases", AdminURL(), err, EnvAdminURL)
	}
	defer admin.Close(context.Background())
	name := fmt.Sprintf("dbosgen_%s_%d_%d", sanitize(t.Name()), os.Getpid(), seq.Add(1))
	if len(name) > 63 {
		name = fmt.Sprintf("dbosgen_%s_%d_%d", sanitize(t.Name())[:30], os.Getpid(), seq.Load())
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("creating test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
		}
	})
	// The admin URL with the database swapped, so its user, password and
	// options (README: DBOSGEN_TEST_POSTGRES_URL) carry over.
	u, err := url.Parse(AdminURL())
	if err != nil || u.Scheme == "" {
		cfg := admin.Config()
		return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", url.PathEscape(cfg.User), net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)), name)
	}
	u.Path = "/" + name
	return u.String()
}

// SQLite returns the URL of a fresh SQLite file in t's temp directory.
func SQLite(t testing.TB) string {
	return "sqlite://" + filepath.Join(t.TempDir(), "dbos.sqlite")
}

// Engines names the engines a conformance suite runs against.
var Engines = []string{"postgres", "sqlite"}

// URL returns a fresh database of the engine for t.
func URL(t testing.TB, engine string) string {
	if engine == "sqlite" {
		return SQLite(t)
	}
	return Postgres(t)
}

func sanitize(s string) string {
	s = strings.ToLower(s)
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}
