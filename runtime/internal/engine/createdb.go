package engine

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
)

// createDatabase creates the database p's URL names, which does not exist
// (SQLSTATE 3D000), as DBOS does at launch: from a connection to the
// "postgres" maintenance database, as the URL's user. When that is not
// possible the error says how to create it by hand.
func createDatabase(ctx context.Context, p *pgPool, log *slog.Logger) error {
	cc := p.cfg.ConnConfig.Copy()
	name, user := cc.Database, cc.User
	howTo := fmt.Sprintf("(create it as a role that may: `createdb -h %s -p %d %s`, or in psql CREATE DATABASE %s OWNER %s)",
		cc.Host, cc.Port, name, pgx.Identifier{name}.Sanitize(), pgx.Identifier{user}.Sanitize())
	cc.Database, cc.Tracer = "postgres", nil
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return errorf(ErrConfig, err, "dbos: the %s database %q does not exist on %s:%d, and connecting to the \"postgres\" database to create it failed %s",
			p.role, name, cc.Host, cc.Port, howTo)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	switch {
	case err == nil:
		log.Info("created the "+p.role+" database, which did not exist", "database", name, "server", fmt.Sprintf("%s:%d", cc.Host, cc.Port))
	case pgCode(err) == "42P04":
		// Another process launching at the same time created it.
	case pgCode(err) == "42501":
		return errorf(ErrConfig, err, "dbos: the %s database %q does not exist on %s:%d, and role %q may not create it %s",
			p.role, name, cc.Host, cc.Port, user, howTo)
	default:
		return errorf(ErrDatabase, err, "dbos: the %s database %q does not exist on %s:%d, and creating it failed %s",
			p.role, name, cc.Host, cc.Port, howTo)
	}
	return nil
}
