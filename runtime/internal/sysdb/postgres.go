package sysdb

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the Store on PostgreSQL through pgx.
type Postgres struct {
	*store
	pool   *pgxpool.Pool
	schema string // quoted
	rawSch string
}

// CancelChannel is the LISTEN/NOTIFY channel on which dbosgen announces the
// IDs of cancelled workflows. DBOS's channels are named dbos_*; this name
// cannot collide with them.
const CancelChannel = "dbosgen_workflow_cancel"

// NewPostgres wraps a pool; schema is the unquoted schema name and appName
// the application whose rows this store writes and recovers.
func NewPostgres(pool *pgxpool.Pool, schema, appName string) *Postgres {
	p := &Postgres{pool: pool, schema: quoteIdent(schema), rawSch: schema}
	d := pgDriver{pool: pool, q: pgQuerier{pool}}
	if t, ok := pool.Config().ConnConfig.Tracer.(tracesQueries); ok && t.TracesQueries() {
		d.tracer = pool.Config().ConnConfig.Tracer
	}
	p.store = newStore(d, pgDialect(schema), appName)
	p.hub = newNotifier(pool)
	return p
}

// pgDriver runs everything on one pool.
type pgDriver struct {
	pool *pgxpool.Pool
	q    querier // the pool as a querier, made once: per call it would be an allocation
	// tracer sees the statements sent below pgx (hotpath_pg.go), when it
	// asks to (the statement-count tests).
	tracer pgx.QueryTracer
}

func (d pgDriver) writer() querier { return d.q }
func (d pgDriver) reader() querier { return d.q }

func (d pgDriver) inTx(ctx context.Context, fn func(querier) error) error {
	return pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error { return fn(pgQuerier{tx}) })
}

// Pool is the underlying pool.
func (p *Postgres) Pool() *pgxpool.Pool { return p.pool }

// Schema is the unquoted schema name.
func (p *Postgres) Schema() string { return p.rawSch }

// Close closes the pool.
func (p *Postgres) Close() { p.pool.Close() }

func nowMS() int64 { return time.Now().UnixMilli() }

// WatchCancellations hands fn the payloads of CancelChannel from the
// store's one listening connection (see notifier), started here until ctx
// ends.
func (p *Postgres) WatchCancellations(ctx context.Context, fn func(id string)) bool {
	p.hub.handle(CancelChannel, fn)
	p.hub.start(ctx)
	return true
}

var _ Store = (*Postgres)(nil)
