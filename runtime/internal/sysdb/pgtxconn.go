package sysdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// The connections transactions run on (see pendingCommit) also defer BEGIN
// until the transaction's first statement and send it in the same round
// trip, as pgjdbc does: a transaction step costs two round trips where a
// hand-written one costs three. PostgreSQL takes a transaction's snapshot
// at its first statement, not at BEGIN, so nothing the function can observe
// changes. A first statement the server refuses to prepare (it is prepared
// before BEGIN runs) runs again the ordinary way, BEGIN first, so that its
// failure aborts the transaction as it would an ordinary one; arguments pgx
// cannot encode fail before anything is sent, which leaves an ordinary
// transaction unharmed too.

// openTxDB is database/sql over pool for transactions AppDB.Begin starts.
// Like stdlib.OpenDBFromPool it keeps no idle connections: the pool's cap
// and waits hold.
func openTxDB(pool *pgxpool.Pool) *sql.DB {
	db := sql.OpenDB(txConnector{stdlib.GetPoolConnector(pool)})
	db.SetMaxIdleConns(0)
	return db
}

type txConnector struct{ driver.Connector }

func (c txConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := dc.(*stdlib.Conn)
	if !ok {
		_ = dc.Close()
		return nil, fmt.Errorf("dbos: unexpected driver connection %T", dc)
	}
	s := scratchOf(sc.Conn().PgConn())
	// The pgx connection's previous txConn is free: database/sql closed it,
	// which is what released the connection to the pool.
	s.conn = txConn{Conn: sc, pgx: sc.Conn(), sc: s}
	return &s.conn, nil
}

// txConn is stdlib's connection, every optional driver interface included,
// with transactions begun by AppDB.Begin handled here.
type txConn struct {
	*stdlib.Conn
	pgx *pgx.Conn
	sc  *scratch
	tx  *pendingCommit // AppDB.Begin's transaction, until it ends
}

func (c *txConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	p, ok := ctx.Value(pendingKey{}).(*pendingCommit)
	if !ok {
		return c.Conn.BeginTx(ctx, opts)
	}
	if c.pgx.IsClosed() {
		return nil, driver.ErrBadConn
	}
	begin, err := beginSQL(opts)
	if err != nil {
		return nil, err
	}
	p.begin, p.begun, p.ctx, p.conn = begin, false, ctx, c
	c.tx = p
	return p, nil
}

// beginSQLs are pgx's BEGIN statements, by isolation level (as
// sql.IsolationLevel, up to LevelSerializable) and then read-only.
var beginSQLs = func() (b [7][2]string) {
	levels := [7]string{"", " isolation level read uncommitted", " isolation level read committed", "",
		" isolation level repeatable read", " isolation level repeatable read", " isolation level serializable"}
	for i, l := range levels {
		b[i] = [2]string{"begin" + l, "begin" + l + " read only"}
	}
	return b
}()

func beginSQL(opts driver.TxOptions) (string, error) {
	level := sql.IsolationLevel(opts.Isolation)
	if level < 0 || int(level) >= len(beginSQLs) || level == sql.LevelWriteCommitted {
		return "", fmt.Errorf("unsupported isolation: %v", opts.Isolation)
	}
	ro := 0
	if opts.ReadOnly {
		ro = 1
	}
	return beginSQLs[level][ro], nil
}

// pendingBegin is the BEGIN this connection's transaction has yet to send.
func (c *txConn) pendingBegin() string {
	if c.tx == nil || c.tx.begun {
		return ""
	}
	return c.tx.begin
}

// sentBegin notes whether the server is now inside the transaction.
func (c *txConn) sentBegin() {
	if c.tx != nil && !c.tx.begun {
		c.tx.begun = c.pgx.PgConn().TxStatus() != 'I'
	}
}

// ensureBegun sends a pending BEGIN on its own, before statements that
// cannot carry it.
func (c *txConn) ensureBegun(ctx context.Context) error {
	begin := c.pendingBegin()
	if begin == "" {
		return nil
	}
	_, err := c.pgx.Exec(ctx, begin)
	c.sentBegin()
	if err != nil && pgconn.SafeToRetry(err) {
		return driver.ErrBadConn
	}
	return err
}

func (c *txConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	// A statement without arguments goes by the simple protocol, which
	// would take BEGIN in its text, but would shift the positions in its
	// error messages: it goes the ordinary way.
	if begin := c.pendingBegin(); begin != "" && len(args) > 0 && !pgxOption(args[0].Value) && !c.pgx.IsClosed() {
		if res, err, done := c.execWithBegin(ctx, begin, query, args); done {
			return res, err
		}
	}
	if err := c.ensureBegun(ctx); err != nil {
		return nil, err
	}
	return c.Conn.ExecContext(ctx, query, args)
}

// scratchKey holds, in a pgx connection's custom data, its scratch.
const scratchKey = "dbosgen.scratch"

// scratch is what a connection keeps between the transactions it carries.
type scratch struct {
	prepared  map[string]struct{} // the statements execWithBegin prepared
	eqb       pgx.ExtendedQueryBuilder
	args      []any
	params    textArgs // the checkpoint's parameters (see pendingCommit)
	interrupt func()   // cuts the connection's reads short, when a caller's context ends
	conn      txConn   // the driver connection database/sql holds, reused
}

// scratchOf is pg's scratch, made the first time.
func scratchOf(pg *pgconn.PgConn) *scratch {
	data := pg.CustomData()
	sc, _ := data[scratchKey].(*scratch)
	if sc == nil {
		nc := pg.Conn()
		sc = &scratch{prepared: map[string]struct{}{}, interrupt: func() { _ = nc.SetDeadline(pastDeadline) }}
		data[scratchKey] = sc
	}
	return sc
}

// maxPrepared bounds scratch.prepared: pgx keeps a statement prepared with
// Conn.Prepare until the connection closes.
const maxPrepared = 128

// maxRidingArgs bounds the arguments that ride with BEGIN: a large write is
// left to pgx, which reads the server's replies while it writes.
const maxRidingArgs = 64 << 10

// execWithBegin runs query in one round trip with BEGIN; done is false
// when nothing was sent, and the statement should go the ordinary way.
func (c *txConn) execWithBegin(ctx context.Context, begin, query string, named []driver.NamedValue) (res driver.Result, err error, done bool) {
	sc := c.sc
	if _, ok := sc.prepared[query]; !ok {
		if len(sc.prepared) >= maxPrepared {
			return nil, nil, false
		}
		sc.prepared[query] = struct{}{}
	}
	// Described outside the transaction, the first time: if the server
	// refuses it, the ordinary way runs it again inside, and the refusal
	// aborts the transaction as it should.
	sd, err := c.pgx.Prepare(ctx, query, query)
	if err != nil {
		return nil, nil, false
	}
	for _, a := range named {
		sc.args = append(sc.args, a.Value)
	}
	err = sc.eqb.Build(c.pgx.TypeMap(), sd, sc.args)
	clear(sc.args) // the caller's values are not the connection's to keep
	sc.args = sc.args[:0]
	if err != nil {
		return nil, err, true // as pgx: nothing sent, the transaction unharmed
	}
	size := 0
	for _, v := range sc.eqb.ParamValues {
		size += len(v)
	}
	if size > maxRidingArgs || len(sc.eqb.ParamValues) > math.MaxUint16 {
		return nil, nil, false
	}
	if err := ctx.Err(); err != nil {
		return nil, err, true
	}
	pg := c.pgx.PgConn()
	// pgx would arm a context watcher for the round trip; a hook armed once
	// does the same for less: it cuts the read short, and the connection,
	// whose state is then unknown, is closed as pgx closes it.
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, sc.interrupt)
	}
	fe := pg.Frontend()
	sendExec(fe, begin)
	sendPrepared(fe, sd, sc.eqb.ParamValues, sc.eqb.ParamFormats, sc.eqb.ResultFormats)
	var r batchReplies
	if err = flushBatch(fe); err == nil {
		r, err = readBatch(pg)
	}
	if stop != nil && !stop() {
		abandon(pg)
		return nil, ctx.Err(), true
	}
	if err != nil {
		abandon(pg)
		// Nothing of the transaction committed, and its connection is gone.
		return nil, fmt.Errorf("%w: %w", driver.ErrBadConn, err), true
	}
	c.sentBegin()
	if r.err != nil {
		return nil, r.err, true
	}
	return driver.RowsAffected(r.rows), nil, true
}

// pgxOption reports whether v is one of the options pgx takes as a first
// argument, which its batches do not.
func pgxOption(v any) bool {
	switch v.(type) {
	case pgx.QueryExecMode, pgx.QueryResultFormats, pgx.QueryResultFormatsByOID, pgx.QueryRewriter:
		return true
	}
	return false
}

func (c *txConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if err := c.ensureBegun(ctx); err != nil {
		return nil, err
	}
	return c.Conn.QueryContext(ctx, query, args)
}

func (c *txConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	s, err := c.Conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return txStmt{s.(*stdlib.Stmt), c}, nil
}

func (c *txConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// txStmt runs stdlib's prepared statement inside the transaction: its own
// ExecContext would reach the connection past txConn.
type txStmt struct {
	*stdlib.Stmt
	c *txConn
}

func (s txStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if err := s.c.ensureBegun(ctx); err != nil {
		return nil, err
	}
	return s.Stmt.ExecContext(ctx, args)
}

func (s txStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	if err := s.c.ensureBegun(ctx); err != nil {
		return nil, err
	}
	return s.Stmt.QueryContext(ctx, args)
}
