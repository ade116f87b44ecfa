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
	p.store = newStore(pgDriver{pool}, pgDialect(schema), appName)
	p.hub = newNotifier(pool)
	return p
}

// pgDriver runs everything on one pool.
type pgDriver struct{ pool *pgxpool.Pool }

func (d pgDriver) writer() querier { return pgQuerier{d.pool} }
func (d pgDriver) reader() querier { return pgQuerier{d.pool} }

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
