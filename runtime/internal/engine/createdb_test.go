package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
	"github.com/jackc/pgx/v5"
	"github.com/jmoiron/sqlx"
)

// missingDatabase names a database that does not exist, and drops it when t
// ends should the test create it.
func missingDatabase(t *testing.T, suffix string) string {
	t.Helper()
	name := fmt.Sprintf("dbosgen_missing_%d_%d_%s", os.Getpid(), roleSeq.Add(1), suffix)
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), dbtest.AdminURL())
		if err != nil {
			t.Errorf("dropping %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping %s: %v", name, err)
		}
	})
	return withDatabase(t, dbtest.AdminURL(), name)
}

// Issue 10: `database "x" does not exist` got the hint "is PostgreSQL
// running?". As DBOS does, Launch creates a missing system or application
// database.
func TestLaunchCreatesMissingDatabase(t *testing.T) {
	defer fatalOnMust(t)
	var logs logBuffer
	sys, app := missingDatabase(t, "sys"), missingDatabase(t, "app")
	_, ctx := launch(t, sys, func(c *dbos.Config) {
		c.ApplicationDatabaseURL = app
		c.Logger = logs.logger()
	})
	in := setBody(t, func(ctx context.Context, in input) (string, error) {
		return dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "tx"}, func(ctx context.Context, tx *sqlx.Tx) (string, error) {
			var db string
			err := tx.GetContext(ctx, &db, "SELECT current_database()")
			return db, err
		})
	})
	if out := must(testWF.Run(ctx, in)); out != dbName(t, app) {
		t.Fatalf("the transaction ran in %q, want %q", out, dbName(t, app))
	}
	for _, want := range []string{"created the system database", "created the application database"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

// A role that may not create the missing database gets an error saying it
// is missing and how to create it, not a hint that the server is down.
func TestLaunchMissingDatabaseNotCreatable(t *testing.T) {
	role := testRole(t, "NOCREATEDB")
	url := asRole(t, missingDatabase(t, "nocreate"), role)
	_, err := launchErr(dbos.Config{SystemDatabaseURL: url, Logger: testLogger(t)})
	if !errors.Is(err, dbos.ErrConfig) || strings.Contains(err.Error(), "is PostgreSQL running") {
		t.Fatalf("err = %v; want ErrConfig, without the server-down hint", err)
	}
	for _, want := range []string{"does not exist", "may not create it", "createdb -h ", "CREATE DATABASE "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
