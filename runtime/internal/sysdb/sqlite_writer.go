package sysdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"time"
)

// sqliteWriter runs the store's hottest writes (a workflow's start, its step
// checkpoints and its finish) on SQLite's single write connection, below
// database/sql: with statements prepared once on the driver's connection and
// arguments bound from a reused slice. Through database/sql every call would
// box its arguments into a fresh []any, convert them into a fresh
// []driver.NamedValue, wrap the result, and (in a transaction) begin through
// a context watcher; modernc.org/sqlite would moreover compile each
// unprepared statement again. Those allocations were most of a step's.
//
// The statements use anonymous parameters (?): for a numbered one (?3) the
// driver copies the parameter's name out of SQLite at every bind.
//
// Everything below the write connection is used only by whoever holds that
// connection (inside sql.Conn.Raw), and database/sql hands it to one caller at
// a time: that is the lock of the fields marked so.
//
// The statements live as long as the connection, which the pool settings
// OpenSQLite makes (no lifetime, no idle timeout) keep for the store's life.
// Should the pool replace it (a connection the driver reports unusable, or
// settings an application changed), the old statements cannot be finalized
// (the closed connection's driver state is gone) and SQLite keeps that
// connection's memory for them: changing the write pool's settings is not
// supported.
type sqliteWriter struct {
	db    *sql.DB
	stmts [nWriterStmts]positional

	// Held with the write connection.
	dc       driver.Conn               // the connection prepared belongs to
	prepared [nWriterStmts]driver.Stmt // on dc, each prepared on first use
	args     []driver.NamedValue       // the bound arguments, reused
	row      []driver.Value            // a result row, reused
}

// writerStmt names a statement of the writer.
type writerStmt int

const (
	wStep writerStmt = iota
	wInit
	wInputs
	wWorkflow
	wDeadLetter
	wFinish
	wOutcome
	nWriterStmts
)

// positional is a statement with anonymous parameters: order[k] is the
// number (from 1) of the canonical parameter bound at position k.
type positional struct {
	sql   string
	order []int
}

var sqliteParam = regexp.MustCompile(`\?(\d+)`)

// toPositional turns a statement rendered for SQLite (?N parameters) into
// one with anonymous parameters, remembering which argument each takes.
func toPositional(q string) positional {
	var p positional
	p.sql = sqliteParam.ReplaceAllStringFunc(q, func(m string) string {
		n, _ := strconv.Atoi(m[1:]) // digits: the pattern says so
		p.order = append(p.order, n)
		return "?"
	})
	return p
}

func newSQLiteWriter(db *sql.DB, q queries) *sqliteWriter {
	w := &sqliteWriter{db: db}
	for st, text := range map[writerStmt]string{
		wStep: q.recordStep, wInit: q.init, wInputs: q.insertInputs, wWorkflow: q.workflow,
		wDeadLetter: q.deadLetter, wFinish: q.finish, wOutcome: q.outcome,
	} {
		w.stmts[st] = toPositional(text)
	}
	return w
}

// wconn is the write connection while one caller holds it.
type wconn struct {
	w  *sqliteWriter
	dc driver.Conn
}

// run holds the write connection (waiting for it as long as ctx allows) and
// calls fn with it.
func (w *sqliteWriter) run(ctx context.Context, fn func(c wconn) error) error {
	conn, err := w.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		c, ok := dc.(driver.Conn)
		if !ok {
			return fmt.Errorf("sqlite: write connection is a %T", dc)
		}
		if c != w.dc {
			// A new connection: the old one is closed, and with it the
			// driver's state its statements would need to be finalized;
			// they are dropped. database/sql replaces the write connection
			// only when the driver reports it unusable.
			w.dc, w.prepared = c, [nWriterStmts]driver.Stmt{}
		}
		return fn(wconn{w, c})
	})
}

// inTx runs fn in one transaction on the write connection (BEGIN IMMEDIATE:
// the pool's DSN sets the lock mode). ctx bounds the wait for the connection
// and is checked again before the commit; the statements themselves run to
// their end, as recordStep's do, bounded by busy_timeout.
func (w *sqliteWriter) inTx(ctx context.Context, fn func(c wconn) error) error {
	return w.run(ctx, func(c wconn) error {
		b, ok := c.dc.(driver.ConnBeginTx)
		if !ok {
			return fmt.Errorf("sqlite: write connection %T cannot begin a transaction", c.dc)
		}
		tx, err := b.BeginTx(context.Background(), driver.TxOptions{})
		if err != nil {
			return err
		}
		if err := fn(c); err != nil {
			_ = tx.Rollback()
			return err
		}
		if err := ctx.Err(); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	})
}

// stmt is st prepared on this connection.
func (c wconn) stmt(st writerStmt) (driver.Stmt, error) {
	if s := c.w.prepared[st]; s != nil {
		return s, nil
	}
	p, ok := c.dc.(driver.ConnPrepareContext)
	if !ok {
		return nil, fmt.Errorf("sqlite: write connection %T cannot prepare", c.dc)
	}
	s, err := p.PrepareContext(context.Background(), c.w.stmts[st].sql)
	if err != nil {
		return nil, fmt.Errorf("sqlite: preparing %.40q: %w", c.w.stmts[st].sql, err)
	}
	c.w.prepared[st] = s
	return s, nil
}

// bind fills the reused argument slice for st from args, the canonical
// parameters in order ($1 is args[0]). Each value must be one the driver
// binds as it is: int64, float64, bool, string, []byte or nil.
func (c wconn) bind(st writerStmt, args []any) []driver.NamedValue {
	order := c.w.stmts[st].order
	nv := c.w.args[:0]
	for k, n := range order {
		nv = append(nv, driver.NamedValue{Ordinal: k + 1, Value: args[n-1]})
	}
	c.w.args = nv
	return nv
}

// exec runs st with args and returns the number of rows it changed.
func (c wconn) exec(st writerStmt, args ...any) (int64, error) {
	s, err := c.stmt(st)
	if err != nil {
		return 0, err
	}
	res, err := s.(driver.StmtExecContext).ExecContext(context.Background(), c.bind(st, args))
	clear(c.w.args) // let the arguments go
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// queryRow runs st with args and scans its first row into dest, which it
// fills with string, int and int64 pointers; sql.ErrNoRows if it has none.
func (c wconn) queryRow(st writerStmt, args []any, dest ...any) (err error) {
	s, err := c.stmt(st)
	if err != nil {
		return err
	}
	rs, err := s.(driver.StmtQueryContext).QueryContext(context.Background(), c.bind(st, args))
	clear(c.w.args)
	if err != nil {
		return err
	}
	defer func() {
		if e := rs.Close(); err == nil {
			err = e
		}
	}()
	if len(rs.Columns()) != len(dest) {
		return fmt.Errorf("sqlite: %d columns into %d values", len(rs.Columns()), len(dest))
	}
	row := c.w.row[:0]
	for range dest {
		row = append(row, nil)
	}
	c.w.row = row
	defer clear(row)
	if err := rs.Next(row); err != nil {
		if err == io.EOF {
			return sql.ErrNoRows
		}
		return err
	}
	for i, v := range row {
		if err := assign(dest[i], v); err != nil {
			return fmt.Errorf("sqlite: column %d: %w", i, err)
		}
	}
	return nil
}

// assign stores a driver value in dest, for the types the store's queries
// read; like database/sql, it refuses NULL into a string or a number.
func assign(dest any, v driver.Value) error {
	switch d := dest.(type) {
	case *string:
		switch v := v.(type) {
		case string:
			*d = v
			return nil
		case []byte:
			*d = string(v)
			return nil
		}
	case *int64:
		if v, ok := v.(int64); ok {
			*d = v
			return nil
		}
	case *int:
		if v, ok := v.(int64); ok {
			*d = int(v)
			return nil
		}
	}
	return fmt.Errorf("cannot store %T in %T", v, dest)
}

// close finalizes the prepared statements, before the pool closes the
// connection they belong to (a connection closed with statements left is
// kept in memory for them). A connection an application still holds is not
// waited for long: its statements are then left to the process.
func (w *sqliteWriter) close() {
	ctx, cancel := context.WithTimeout(context.Background(), closeWait)
	defer cancel()
	_ = w.run(ctx, func(c wconn) error {
		for i, s := range w.prepared {
			if s != nil {
				_ = s.Close()
				w.prepared[i] = nil
			}
		}
		return nil
	})
}

const closeWait = 5 * time.Second

// orNull binds "" as NULL, for parameters the statement turns from the
// empty string into NULL anyway (NULLIF): a NULL binds without the copy of
// the text the driver makes for every string.
func orNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}
