package sysdb

import (
	"context"
	"database/sql"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The seam between the operations (ops_*.go, written once) and the two
// engines: a querier runs rendered statements on a pool, a connection or a
// transaction; a driver says which querier reads, which writes, and how to
// run several statements in one transaction.

// rows is a result set of either engine.
type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// querier runs statements already rendered for its engine.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (int64, error)
	QueryRow(ctx context.Context, sql string, args ...any) scanner
	Query(ctx context.Context, sql string, args ...any) (rows, error)
}

// engineDriver is what differs between engines below the operations.
type engineDriver interface {
	// writer runs writes, and reads that must see them; reader runs the
	// other reads (SQLite's read pool never waits for the writer).
	writer() querier
	reader() querier
	// inTx runs fn in one transaction on the writer: the seam for
	// operations of several statements.
	inTx(ctx context.Context, fn func(querier) error) error
	// recordStep inserts one step checkpoint, the hottest statement, by a
	// path of the engine's own (hotpath_pg.go, sqlite.go); it reports
	// whether this call inserted it.
	recordStep(ctx context.Context, sql string, s StepRow, appName string) (bool, error)
}

// workflowWriter is the PostgreSQL driver's path for a workflow's start and
// finish, each one data-modifying CTE (hotpath_pg.go).
type workflowWriter interface {
	insert(ctx context.Context, sql string, r WorkflowRow, now int64, xid string) (bool, error)
	start(ctx context.Context, sql string, r WorkflowRow, now int64, xid string, maxAttempts int, recovery bool, res *InitResult) error
	finish(ctx context.Context, sql string, p FinishParams, now int64) (bool, error)
}

// isNoRows reports a QueryRow that found nothing, on either engine.
func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) || errors.Is(err, sql.ErrNoRows) }

// pgQuerier adapts a pgx pool, connection or transaction.
type pgQuerier struct {
	q interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	}
}

func (p pgQuerier) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	tag, err := p.q.Exec(ctx, sql, args...)
	return tag.RowsAffected(), err
}

func (p pgQuerier) QueryRow(ctx context.Context, sql string, args ...any) scanner {
	return p.q.QueryRow(ctx, sql, args...)
}

func (p pgQuerier) Query(ctx context.Context, sql string, args ...any) (rows, error) {
	r, err := p.q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// sqlQuerier adapts a database/sql pool, connection or transaction.
type sqlQuerier struct {
	q interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	}
}

func (s sqlQuerier) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := s.q.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s sqlQuerier) QueryRow(ctx context.Context, q string, args ...any) scanner {
	return s.q.QueryRowContext(ctx, q, args...)
}

func (s sqlQuerier) Query(ctx context.Context, q string, args ...any) (rows, error) {
	r, err := s.q.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{r}, nil
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

// collect scans every row with scan and closes them.
func collect[T any](rs rows, err error, scan func(rows, *T) error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []T
	for rs.Next() {
		var v T
		if err := scan(rs, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rs.Err()
}
