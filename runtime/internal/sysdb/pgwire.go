package sysdb

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// A transaction's two round trips (BEGIN with its first statement, the
// checkpoint with COMMIT) are written as protocol messages on the
// connection's own frontend and read back one message at a time. pgx's
// Pipeline, which did this before, keeps a queue of list elements per
// message and a context watcher per use: about sixteen allocations a round
// trip, more than the raw transaction spends on its three. Reading with
// context.Background arms no watcher; the caller bounds the wait itself
// (a cancellation hook, or a deadline on the connection).

// batchReplies is what the server answered to statements sent behind one
// Sync.
type batchReplies struct {
	done     int   // statements that completed
	rows     int64 // the rows the last one affected
	rollback bool  // the last one's tag is ROLLBACK: a COMMIT that could not commit
	err      error // the first statement error the server reported, a *pgconn.PgError
	errAt    int   // the statement it refused (the count completed before it)
}

// readBatch reads replies up to the batch's ReadyForQuery. An error is a
// failure to read: the connection is lost, or was interrupted (and is then
// the caller's to close).
func readBatch(pg *pgconn.PgConn) (batchReplies, error) {
	var r batchReplies
	for {
		msg, err := pg.ReceiveMessage(context.Background())
		if err != nil {
			return r, err
		}
		switch m := msg.(type) {
		case *pgproto3.CommandComplete:
			// The tag is read now: it lies in the connection's read buffer,
			// which the next message may overwrite.
			r.done++
			r.rows, r.rollback = rowsAffected(m.CommandTag), string(m.CommandTag) == "ROLLBACK"
		case *pgproto3.EmptyQueryResponse:
			r.done++
			r.rows, r.rollback = 0, false
		case *pgproto3.ErrorResponse:
			if r.err == nil {
				r.err, r.errAt = pgconn.ErrorResponseToPgError(m), r.done
			}
		case *pgproto3.ReadyForQuery:
			return r, nil
		}
	}
}

// rowsAffected reads a command tag's count as pgconn.CommandTag does,
// without making it a string.
func rowsAffected(tag []byte) int64 {
	i := len(tag)
	for i > 0 && tag[i-1] != ' ' {
		i--
	}
	if i == 0 {
		return 0
	}
	var n int64
	for _, b := range tag[i:] {
		if b < '0' || b > '9' {
			return 0
		}
		n = n*10 + int64(b-'0')
	}
	return n
}

// sendExec queues an unnamed statement without parameters.
func sendExec(fe *pgproto3.Frontend, sql string) {
	fe.SendParse(&pgproto3.Parse{Query: sql})
	fe.SendBind(&pgproto3.Bind{})
	fe.SendExecute(&pgproto3.Execute{})
}

// sendPrepared queues a prepared statement with its parameters.
func sendPrepared(fe *pgproto3.Frontend, sd *pgconn.StatementDescription, params [][]byte, formats, resultFormats []int16) {
	fe.SendBind(&pgproto3.Bind{PreparedStatement: sd.Name, ParameterFormatCodes: formats, Parameters: params, ResultFormatCodes: resultFormats})
	fe.SendExecute(&pgproto3.Execute{})
}

// flushBatch ends the queued statements with a Sync and writes them.
func flushBatch(fe *pgproto3.Frontend) error {
	fe.SendSync(&pgproto3.Sync{})
	return fe.Flush()
}

// abandon closes a connection whose state is unknown (a write failed, a
// read was cut off), asking the server to cancel what it runs: the pool
// drops a closed connection.
func abandon(pg *pgconn.PgConn) {
	if pg.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = pg.CancelRequest(ctx)
	_ = pg.Close(ctx)
}

// timedOut reports whether err is a read or write that ran past the
// connection's deadline.
func timedOut(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

// pastDeadline interrupts every read and write on a connection.
var pastDeadline = time.Unix(1, 0)
