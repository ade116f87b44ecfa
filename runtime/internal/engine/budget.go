package engine

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The connection budget. On PostgreSQL a runtime holds at most the system
// pool's size, plus one connection LISTENing for cancellations, plus the
// application pool's size when the application database is a separate one
// (when it is the system database, transactions share the system pool).
// Launch compares that with the limits the server enforces, so that a pool
// too big for them fails at once with a message, instead of waiting for a
// connection slot that never frees.

// limitsQuery reads what bounds the connections of the pool's role: the
// role's CONNECTION LIMIT, the database's CONNECTION LIMIT, and the
// server's max_connections less the slots reserved for superusers and, on
// PostgreSQL 16 and later, for pg_use_reserved_connections. Superusers are
// bound by none but max_connections.
const limitsQuery = `SELECT current_user::text, r.rolsuper, r.rolconnlimit, current_database()::text, d.datconnlimit,
	current_setting('max_connections')::int,
	current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int
	- CASE WHEN EXISTS (SELECT 1 FROM pg_roles u WHERE u.rolname = 'pg_use_reserved_connections'
		AND pg_has_role(current_user, u.oid, 'MEMBER'))
	THEN 0 ELSE COALESCE(current_setting('reserved_connections', true)::int, 0) END
FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()`

type connLimits struct {
	user, db           string
	super              bool
	roleLimit, dbLimit int // -1: none
	maxConns, forUser  int // max_connections; what a non-superuser may use of it
}

// budgetUse is one pool's share, keyed by what the server counts it against.
type budgetUse struct {
	pool   *pgPool
	limits connLimits
	server string // host:port
}

// checkBudget refuses pools that cannot fit the server's limits together.
func checkBudget(ctx context.Context, log *slog.Logger, pools ...*pgPool) error {
	var uses []budgetUse
	for _, p := range pools {
		if p == nil {
			continue
		}
		var l connLimits
		err := p.QueryRow(ctx, limitsQuery).Scan(&l.user, &l.super, &l.roleLimit, &l.db, &l.dbLimit, &l.maxConns, &l.forUser)
		if err != nil {
			// A server that speaks PostgreSQL's protocol without its catalogs
			// (or settings) still runs workflows: the check is a courtesy.
			log.Warn("cannot read the connection limits; the pool sizes are not checked against them",
				"database", p.target.String(), "error", err)
			return nil
		}
		cc := p.cfg.ConnConfig
		uses = append(uses, budgetUse{pool: p, limits: l, server: fmt.Sprintf("%s:%d", cc.Host, cc.Port)})
	}
	for _, u := range uses {
		l := u.limits
		// The pools counted against each limit of u's connection: those on
		// the same server as the same role, or in the same database.
		sameRole := func(v budgetUse) bool { return v.server == u.server && v.limits.user == l.user }
		sameDB := func(v budgetUse) bool { return v.server == u.server && v.limits.db == l.db }
		sameServer := func(v budgetUse) bool { return v.server == u.server }
		switch {
		case !l.super && l.roleLimit >= 0 && total(uses, sameRole) > l.roleLimit:
			return overBudget(uses, sameRole, l.roleLimit, fmt.Sprintf("role %q may hold %d connections (CONNECTION LIMIT %d)", l.user, l.roleLimit, l.roleLimit),
				fmt.Sprintf("ALTER ROLE %s CONNECTION LIMIT %d", pgx.Identifier{l.user}.Sanitize(), total(uses, sameRole)))
		case !l.super && l.dbLimit >= 0 && total(uses, sameDB) > l.dbLimit:
			return overBudget(uses, sameDB, l.dbLimit, fmt.Sprintf("database %q accepts %d connections (CONNECTION LIMIT %d)", l.db, l.dbLimit, l.dbLimit),
				fmt.Sprintf("ALTER DATABASE %s CONNECTION LIMIT %d", pgx.Identifier{l.db}.Sanitize(), total(uses, sameDB)))
		case l.super && total(uses, sameServer) > l.maxConns:
			return overBudget(uses, sameServer, l.maxConns, fmt.Sprintf("server %s accepts %d connections (max_connections)", u.server, l.maxConns),
				"raise max_connections in postgresql.conf")
		case !l.super && total(uses, sameServer) > l.forUser:
			return overBudget(uses, sameServer, l.forUser, fmt.Sprintf("server %s accepts %d connections from role %q (max_connections %d, less those reserved for superusers)",
				u.server, l.forUser, l.user, l.maxConns), "raise max_connections in postgresql.conf")
		}
	}
	return nil
}

func total(uses []budgetUse, in func(budgetUse) bool) int {
	n := 0
	for _, u := range uses {
		if in(u) {
			n += u.pool.need()
		}
	}
	return n
}

// overBudget says what does not fit and both ways out: smaller pools, or a
// higher limit.
func overBudget(uses []budgetUse, in func(budgetUse) bool, limit int, what, raise string) error {
	var parts, fixes []string
	fixed := 0 // connections no pool size controls
	for _, u := range uses {
		if in(u) {
			parts = append(parts, u.pool.describeNeed())
			fixed += u.pool.extra + 1 // every pool needs one connection
		}
	}
	spare := limit - fixed // what can be shared out beyond the minimum
	for _, u := range uses {
		if in(u) && spare >= 0 {
			// Offer the whole spare to each pool in turn: the simplest fix
			// that fits when only one pool is too big.
			n := 1 + spare
			for _, v := range uses {
				if in(v) && v.pool != u.pool {
					n -= v.pool.size - 1
				}
			}
			if n >= 1 && n < u.pool.size {
				fixes = append(fixes, fmt.Sprintf("pool_max_conns=%d in the %s database URL (or Config.%s=%d)", n, u.pool.role, u.pool.field, n))
			}
		}
	}
	msg := fmt.Sprintf("%s, but this runtime may open %d: %s", what, total(uses, in), strings.Join(parts, "; "))
	switch {
	case spare < 0:
		msg += fmt.Sprintf(". A runtime needs at least %d here, with pools of one connection; %s", fixed, raise)
	case len(fixes) > 0:
		msg += ". Lower the pool size with " + strings.Join(fixes, ", or ") + ", or " + raise
	default:
		msg += ". Lower the pool sizes, or " + raise
	}
	return fmt.Errorf("%w: %s (the limit counts every process connected this way, so leave room for the others)", ErrConfig, msg)
}
