package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	// defaultPoolSize is DBOS's own default for its pools: enough that
	// concurrent workflows' checkpoints rarely queue, few enough that a
	// handful of processes fit in PostgreSQL's default max_connections.
	defaultPoolSize = 20
	// defaultConnectionWait is how long a statement waits for a free pooled
	// connection before failing (SQLAlchemy's pool_timeout, which DBOS
	// Python inherits, is the same).
	defaultConnectionWait = 30 * time.Second
	// listenerConns are the system database connections held outside the
	// pool: sysdb.Postgres.WatchCancellations takes one from the pool and
	// hijacks it for LISTEN, after which the pool may open another.
	listenerConns = 1
)

// pgPool is an open PostgreSQL pool and how its size was chosen, for the
// connection budget and for messages.
type pgPool struct {
	*pgxpool.Pool
	role   string // "system" or "application"
	field  string // the Config field that sizes it
	target dbTarget
	cfg    *pgxpool.Config
	size   int
	sizeBy string // where size came from, for messages
	extra  int    // connections held outside the pool (the listener)
	tracer *poolTracer
}

// openPool opens the system or the application pool, creates its database
// if it does not exist, and checks that it answers.
func openPool(ctx context.Context, rc resolved, role string) (*pgPool, error) {
	p := &pgPool{role: role, target: rc.system, field: "SystemPoolSize", extra: listenerConns}
	size, next := rc.SystemPoolSize, rc.tracer
	if role == "application" {
		p.target, p.field, p.extra = rc.app, "ApplicationPoolSize", 0
		size, next = rc.ApplicationPoolSize, nil
	}
	pc, err := pgxpool.ParseConfig(p.target.url)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot parse %s: %v", ErrConfig, p.target, redactURL(err.Error()))
	}
	switch {
	case urlSetsPoolMax(p.target.url):
		p.sizeBy = fmt.Sprintf("pool_max_conns=%d in the URL", pc.MaxConns)
		if size > 0 && size != int(pc.MaxConns) {
			rc.Logger.Info("pool_max_conns in the database URL overrides Config."+p.field,
				"pool", role, "pool_max_conns", pc.MaxConns, p.field, size)
		}
	case size > 0:
		pc.MaxConns = int32(min(size, 1<<30))
		p.sizeBy = fmt.Sprintf("Config.%s=%d", p.field, size)
	default:
		pc.MaxConns = defaultPoolSize
		p.sizeBy = fmt.Sprintf("the default %d", defaultPoolSize)
	}
	p.size = int(pc.MaxConns)
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	p.tracer = &poolTracer{next: next, name: role, wait: rc.ConnectionWaitTimeout, log: rc.Logger}
	pc.ConnConfig.Tracer = p.tracer
	p.cfg = pc
	if p.Pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		return nil, errorf(ErrDatabase, err, "dbos: connecting to %s", p.target)
	}
	err = p.ping(ctx)
	if pgCode(err) == "3D000" {
		// As DBOS does: a missing database is created, so a fresh server
		// needs no setup step.
		if err = createDatabase(ctx, p, rc.Logger); err != nil {
			p.Close()
			return nil, err
		}
		err = p.ping(ctx)
	}
	if err != nil {
		p.Close()
		if tooManyConnections(err) {
			return nil, errorf(ErrConfig, err, "dbos: %s refused a connection: too many connections. This runtime opens up to %s to it; "+
				"close other sessions of the role, raise the role's or database's CONNECTION LIMIT or the server's max_connections, or lower the pool size (pool_max_conns in the URL, or Config.%s)",
				p.target, p.describeNeed(), p.field)
		}
		return nil, errorf(ErrDatabase, err, "dbos: cannot reach %s (is PostgreSQL running and the URL right?)", p.target)
	}
	return p, nil
}

func (p *pgPool) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ConnConfig.ConnectTimeout+time.Second)
	defer cancel()
	return p.Ping(ctx)
}

// need is how many connections the pool may hold at once, listener included.
func (p *pgPool) need() int { return p.size + p.extra }

// describeNeed spells need out, for messages.
func (p *pgPool) describeNeed() string {
	s := fmt.Sprintf("%d connections for the %s pool (%s)", p.size, p.role, p.sizeBy)
	if p.extra > 0 {
		s += fmt.Sprintf(" + %d listening for cancellations", p.extra)
	}
	return s
}

// urlSetsPoolMax reports whether a URL or key=value string sets pool_max_conns.
func urlSetsPoolMax(s string) bool {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		return u.Query().Has("pool_max_conns")
	}
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "pool_max_conns=") {
			return true
		}
	}
	return false
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// tooManyConnections: the server, the role or the database has no
// connection slot left (SQLSTATE 53300). Retrying does not help unless
// someone else lets go, so it is a configuration problem, not an outage.
func tooManyConnections(err error) bool { return pgCode(err) == "53300" }

// poolTracer bounds every wait for a pooled connection and reports long
// ones with the pool's state; statements go on to the test tracer, if any.
// It is a pgxpool.AcquireTracer: the context it returns is the one the
// pool acquires with, and only that.
type poolTracer struct {
	next     pgx.QueryTracer
	name     string
	wait     time.Duration
	log      *slog.Logger
	waiting  atomic.Int32
	lastWarn atomic.Int64               // unix nanoseconds of the last slow-wait warning
	running  atomic.Pointer[func() int] // workflows running in the runtime, once there is one
}

var errConnectionWait = errors.New("no pooled connection free in time")

type acquireWait struct {
	cancel context.CancelFunc
	slow   *time.Timer
}

type acquireKey struct{}

func (t *poolTracer) TraceAcquireStart(ctx context.Context, p *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	t.waiting.Add(1)
	if p.Stat().IdleConns() > 0 {
		// The common case: a connection is free and the acquire will not
		// wait, so it needs no timer (each would cost a statement's worth of
		// allocations). If another caller takes that connection first, this
		// one waits for the next release, bounded only by its own context;
		// a pool that stays full is still reported by the waits that started
		// when it was full.
		return ctx
	}
	ctx, cancel := context.WithTimeoutCause(ctx, t.wait, errConnectionWait)
	w := &acquireWait{cancel: cancel, slow: time.AfterFunc(t.wait/3, func() { t.warnSlow(p) })}
	return context.WithValue(ctx, acquireKey{}, w)
}

func (t *poolTracer) TraceAcquireEnd(ctx context.Context, p *pgxpool.Pool, d pgxpool.TraceAcquireEndData) {
	defer t.waiting.Add(-1)
	w, _ := ctx.Value(acquireKey{}).(*acquireWait)
	if w == nil {
		return
	}
	w.slow.Stop()
	if d.Err != nil && context.Cause(ctx) == errConnectionWait {
		t.log.Error(fmt.Sprintf("no database connection free after %v: the statement fails", t.wait), t.attrs(p)...)
	}
	w.cancel()
}

// warnSlow logs a wait that has lasted a third of the bound, at most once a
// second per pool: a saturated pool has many waiters, one line says it.
func (t *poolTracer) warnSlow(p *pgxpool.Pool) {
	now := time.Now().UnixNano()
	last := t.lastWarn.Load()
	if now-last < int64(time.Second) || !t.lastWarn.CompareAndSwap(last, now) {
		return
	}
	t.log.Warn(fmt.Sprintf("waiting more than %v for a database connection", (t.wait/3).Round(time.Millisecond)), t.attrs(p)...)
}

// attrs describes the pool's state for logs; none for no pool (SQLite).
func (p *pgPool) attrs() []any {
	if p == nil {
		return nil
	}
	return p.tracer.attrs(p.Pool)
}

// describeAttrs renders log attributes as text, for an error message.
func describeAttrs(a []any) string {
	var parts []string
	for i := 0; i < len(a); i++ {
		if at, ok := a[i].(slog.Attr); ok {
			parts = append(parts, at.String())
		} else if i+1 < len(a) {
			parts = append(parts, fmt.Sprintf("%v=%v", a[i], a[i+1]))
			i++
		}
	}
	return strings.Join(parts, " ")
}

// attrs describes who holds the pool's connections.
func (t *poolTracer) attrs(p *pgxpool.Pool) []any {
	s := p.Stat()
	a := []any{"pool", t.name, "max", s.MaxConns(), "in_use", s.AcquiredConns(), "idle", s.IdleConns(),
		"connecting", s.ConstructingConns(), "waiting", t.waiting.Load()}
	if t.name == "system" {
		a = append(a, "listening", listenerConns)
	}
	if f := t.running.Load(); f != nil {
		a = append(a, "workflows_running", (*f)())
	}
	return a
}

// TracesQueries tells the store to report statements it sends below pgx
// (the step checkpoint): only when a test's tracer listens.
func (t *poolTracer) TracesQueries() bool { return t.next != nil }

func (t *poolTracer) TraceQueryStart(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if t.next != nil {
		return t.next.TraceQueryStart(ctx, c, d)
	}
	return ctx
}

func (t *poolTracer) TraceQueryEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryEndData) {
	if t.next != nil {
		t.next.TraceQueryEnd(ctx, c, d)
	}
}
