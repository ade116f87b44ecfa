package sysdb

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
)

// How each engine's errors are classified: what the runtime may retry, and
// which transaction failures mean "run it again".

// SQLite result codes (sqlite3.h).
const (
	sqliteBusy         = 5
	sqliteLocked       = 6
	sqliteBusySnapshot = 5 | 2<<8
)

// sqliteCode is the extended result code of an SQLite error.
func sqliteCode(err error) (int, bool) {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code(), true
	}
	return 0, false
}

// IsTransient reports whether err is worth retrying once the database is back:
// a connection failure or a server shutting down, not a bad statement; on
// SQLite, a file still locked by another process past the busy timeout.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrSchemaBusy) {
		return true
	}
	if code, ok := sqliteCode(err); ok {
		primary := code & 0xff
		return (primary == sqliteBusy || primary == sqliteLocked) && code != sqliteBusySnapshot
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgErr.Code == "53300" {
			// too_many_connections: the slots are held by sessions that do
			// not end because we wait; the caller decides how long to try.
			return false
		}
		switch pgErr.Code[:2] {
		case "08", "57", "53": // connection exception, operator intervention, insufficient resources
			return true
		}
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err) || isConnError(err)
}

func isConnError(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"connection refused", "broken pipe", "connection reset", "unexpected EOF", "conn closed"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// IsSerializationFailure reports whether a transaction lost a conflict and is
// worth running again: SQLSTATE 40001 (serialization failure) or 40P01
// (deadlock) on PostgreSQL; SQLITE_BUSY_SNAPSHOT on SQLite (a read
// transaction whose snapshot another writer made stale cannot write).
func IsSerializationFailure(err error) bool {
	if code, ok := sqliteCode(err); ok {
		return code == sqliteBusySnapshot
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	return false
}

// isUniqueViolation reports a PostgreSQL unique_violation (23505). Its own
// function: errors.As's target escapes to the heap, and a statement that
// succeeded should not pay for it.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// isDeadlock reports PostgreSQL's deadlock_detected: the server aborted
// this statement to break a cycle of row locks, and running it again is
// safe.
func isDeadlock(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40P01"
}
