package sysdb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The statements every workflow sends (a step's checkpoint, the finish) go
// below pgx's general path on PostgreSQL. That path boxes each argument,
// encodes it through a reflection plan and, for a cancellable context,
// arms a context watcher per call: most of a checkpoint's allocations and a
// good part of its CPU, on a machine whose CPU the database needs. Here the
// parameters are written as text into a reused buffer and sent as a
// statement prepared once per connection, with the round trip bounded by a
// deadline on the connection.
//
// The statement is not interrupted by its caller's cancellation: it takes
// a round trip, and cutting it off would only leave its outcome unknown (a
// cancelled workflow stops at its next step). The caller's deadline, if
// any, and hotTimeout still bound it; the caller's context bounds the wait
// for a connection.

// hotTimeout bounds a hot statement on a silent network.
const hotTimeout = time.Minute

// textArgs is a reusable text encoding of a statement's parameters.
type textArgs struct {
	buf  []byte
	ends []int
	vals [][]byte
}

var textArgsPool = sync.Pool{New: func() any { return new(textArgs) }}

func (a *textArgs) str(v string) *textArgs {
	a.buf = append(a.buf, v...)
	a.ends = append(a.ends, len(a.buf))
	return a
}

func (a *textArgs) num(v int64) *textArgs {
	a.buf = strconv.AppendInt(a.buf, v, 10)
	a.ends = append(a.ends, len(a.buf))
	return a
}

// values slices the buffer into the parameters, once it no longer grows.
func (a *textArgs) values() [][]byte {
	a.vals = a.vals[:0]
	from := 0
	for _, end := range a.ends {
		a.vals = append(a.vals, a.buf[from:end:end])
		from = end
	}
	return a.vals
}

func (a *textArgs) reset() { a.buf, a.ends = a.buf[:0], a.ends[:0] }

func (a *textArgs) release() {
	a.reset()
	textArgsPool.Put(a)
}

// tracesQueries is implemented by a pgx tracer that wants to see every
// statement, even those sent below pgx (the statement-count tests).
type tracesQueries interface{ TracesQueries() bool }

// hot runs the statement sql, prepared on each connection as name, with
// args, and hands its result to read; traceArgs gives the arguments as
// values, for a tracer that asks for them.
func (d pgDriver) hot(ctx context.Context, name, sql string, args *textArgs, traceArgs func() []any,
	read func(*pgconn.ResultReader) error) (err error) {
	c, err := d.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	conn := c.Conn()
	if tr := d.tracer; tr != nil {
		ctx = tr.TraceQueryStart(ctx, conn, pgx.TraceQueryStartData{SQL: sql, Args: traceArgs()})
		defer func() { tr.TraceQueryEnd(ctx, conn, pgx.TraceQueryEndData{Err: err}) }()
	}
	sd, err := conn.Prepare(ctx, name, sql) // a map lookup after the first time
	if err != nil {
		return err
	}
	deadline := time.Now().Add(hotTimeout)
	dl, callers := ctx.Deadline()
	if callers && dl.Before(deadline) {
		deadline = dl
	} else {
		callers = false
	}
	nc := conn.PgConn().Conn()
	if err := nc.SetDeadline(deadline); err != nil {
		return err
	}
	err = read(conn.PgConn().ExecStatement(context.Background(), sd, args.values(), nil, nil))
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		// pgconn keeps a connection whose read timed out (its own cancel
		// path recovers it); this one has a reply still on its way, so the
		// server is asked to cancel the statement and the connection is
		// closed (the pool drops it). Whether the statement took effect is
		// unknown, as after any lost reply: a later execution finds out.
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.PgConn().CancelRequest(cctx)
		_ = conn.Close(cctx)
		cancel()
		if callers {
			return fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
		}
		return err
	}
	if !conn.IsClosed() {
		_ = nc.SetDeadline(time.Time{})
	}
	return err
}

// hotExec is hot for a statement without rows: it returns the rows it
// affected.
func (d pgDriver) hotExec(ctx context.Context, name, sql string, args *textArgs, traceArgs func() []any) (int64, error) {
	var n int64
	err := d.hot(ctx, name, sql, args, traceArgs, func(rr *pgconn.ResultReader) error {
		tag, err := rr.Close()
		n = tag.RowsAffected()
		return err
	})
	return n, err
}

// recordStep inserts one step checkpoint (recordStep's statement).
func (d pgDriver) recordStep(ctx context.Context, sql string, s StepRow, appName string) (bool, error) {
	if s.CompletedMS == 0 {
		s.CompletedMS = nowMS()
	}
	a := textArgsPool.Get().(*textArgs)
	defer a.release()
	a.str(s.WorkflowID).num(int64(s.StepID)).str(s.Name).str(s.Output).str(s.Error).str(s.ChildID).
		num(s.StartedMS).num(s.CompletedMS).str(appName)
	n, err := d.hotExec(ctx, "dbosgen_step", sql, a, func() []any { return stepArgs(s, appName) })
	return n == 1, err
}

// finish records a workflow's outcome (pgFinish).
func (d pgDriver) finish(ctx context.Context, sql string, p FinishParams, now int64) (bool, error) {
	a := textArgsPool.Get().(*textArgs)
	defer a.release()
	a.str(p.ID).str(p.Status).str(p.Output).str(p.Error).num(now)
	n, err := d.hotExec(ctx, "dbosgen_finish", sql, a, func() []any { return []any{p.ID, p.Status, p.Output, p.Error, now} })
	return n == 1, err
}

// insert starts a new workflow (pgInsert); false: the ID exists.
func (d pgDriver) insert(ctx context.Context, sql string, r WorkflowRow, now int64, xid string) (bool, error) {
	a := textArgsPool.Get().(*textArgs)
	defer a.release()
	a.str(r.ID).str(r.Name).str(r.ExecutorID).str(r.AppVersion).str(r.AppName).str(r.ParentID).
		num(r.TimeoutMS).num(r.DeadlineMS).num(now).str(xid).str(r.Inputs).str(r.Attributes)
	n, err := d.hotExec(ctx, "dbosgen_insert", sql, a, func() []any {
		return []any{r.ID, r.Name, r.ExecutorID, r.AppVersion, r.AppName, r.ParentID, r.TimeoutMS, r.DeadlineMS,
			now, xid, r.Inputs, r.Attributes}
	})
	return n == 1, err
}

// start starts or restarts a workflow (pgInit) and reads the row back.
func (d pgDriver) start(ctx context.Context, sql string, r WorkflowRow, now int64, xid string, maxAttempts int,
	recovery bool, res *InitResult) error {
	a := textArgsPool.Get().(*textArgs)
	defer a.release()
	a.str(r.ID).str(r.Name).str(r.ExecutorID).str(r.AppVersion).str(r.AppName).str(r.ParentID).
		num(r.TimeoutMS).num(r.DeadlineMS).num(now).str(xid).num(int64(maxAttempts)).str(r.Inputs).str(r.Attributes)
	if recovery {
		a.str("t")
	} else {
		a.str("f")
	}
	trace := func() []any {
		return []any{r.ID, r.Name, r.ExecutorID, r.AppVersion, r.AppName, r.ParentID, r.TimeoutMS, r.DeadlineMS,
			now, xid, maxAttempts, r.Inputs, r.Attributes, recovery}
	}
	return d.hot(ctx, "dbosgen_start", sql, a, trace, func(rr *pgconn.ResultReader) error {
		rows := 0
		var scanErr error
		for rr.NextRow() {
			rows++
			scanErr = scanStarted(rr.Values(), res)
		}
		if _, err := rr.Close(); err != nil {
			return err
		}
		if rows != 1 {
			return fmt.Errorf("starting workflow %s: %d rows", r.ID, rows)
		}
		return scanErr
	})
}

// scanStarted reads pgInit's row from its text values: inserted, then the
// columns scanWorkflow reads.
func scanStarted(v [][]byte, res *InitResult) error {
	if len(v) != 18 {
		return fmt.Errorf("starting a workflow: %d columns, want 18", len(v))
	}
	w := &res.Row
	res.Inserted = len(v[0]) == 1 && v[0][0] == 't'
	for i, p := range []*string{&w.Name, &w.Status, &w.ExecutorID, &w.AppVersion, &w.AppName, &w.QueueName,
		&w.Serialization, &w.Inputs, &w.Output, &w.Error, &w.ParentID} {
		*p = string(v[1+i])
	}
	var err error
	num := func(b []byte) int64 {
		n, e := parseInt(b)
		if e != nil && err == nil {
			err = e
		}
		return n
	}
	w.RecoveryAttempts = int(num(v[12]))
	w.TimeoutMS, w.DeadlineMS, w.CreatedMS, w.UpdatedMS = num(v[13]), num(v[14]), num(v[15]), num(v[16])
	w.Attributes = string(v[17])
	return err
}

// parseInt reads a text integer (NULL, nil, is 0) without a string copy.
func parseInt(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' || n > (1<<63-1)/10 {
			return 0, fmt.Errorf("not an integer: %q", b)
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

// strArray appends a text array of one string field of rows.
func strArray[T any](a *textArgs, rows []T, f func(*T) string) {
	a.buf = append(a.buf, '{')
	for i := range rows {
		if i > 0 {
			a.buf = append(a.buf, ',')
		}
		a.buf = append(a.buf, '"')
		s := f(&rows[i])
		for j := 0; j < len(s); j++ {
			if c := s[j]; c == '"' || c == '\\' {
				a.buf = append(a.buf, '\\')
			}
			a.buf = append(a.buf, s[j])
		}
		a.buf = append(a.buf, '"')
	}
	a.buf = append(a.buf, '}')
	a.ends = append(a.ends, len(a.buf))
}

// numArray appends a text array of one integer field of rows.
func numArray[T any](a *textArgs, rows []T, f func(*T) int64) {
	a.buf = append(a.buf, '{')
	for i := range rows {
		if i > 0 {
			a.buf = append(a.buf, ',')
		}
		a.buf = strconv.AppendInt(a.buf, f(&rows[i]), 10)
	}
	a.buf = append(a.buf, '}')
	a.ends = append(a.ends, len(a.buf))
}

// recordSteps inserts a batch of step checkpoints in one statement
// (recordSteps): all of them, or none when one was recorded already.
func (d pgDriver) recordSteps(ctx context.Context, sql string, rows []StepRow, appName string) error {
	now := nowMS()
	for i := range rows {
		if rows[i].CompletedMS == 0 {
			rows[i].CompletedMS = now
		}
	}
	a := textArgsPool.Get().(*textArgs)
	defer a.release()
	strArray(a, rows, func(r *StepRow) string { return r.WorkflowID })
	numArray(a, rows, func(r *StepRow) int64 { return int64(r.StepID) })
	strArray(a, rows, func(r *StepRow) string { return r.Name })
	strArray(a, rows, func(r *StepRow) string { return r.Output })
	strArray(a, rows, func(r *StepRow) string { return r.Error })
	strArray(a, rows, func(r *StepRow) string { return r.ChildID })
	numArray(a, rows, func(r *StepRow) int64 { return r.StartedMS })
	numArray(a, rows, func(r *StepRow) int64 { return r.CompletedMS })
	a.str(appName)
	trace := func() []any {
		wf := make([]string, len(rows))
		for i, r := range rows {
			wf[i] = r.WorkflowID
		}
		return []any{wf}
	}
	n, err := d.hotExec(ctx, "dbosgen_steps", sql, a, trace)
	if err == nil && n != int64(len(rows)) {
		err = fmt.Errorf("a batch of %d step checkpoints inserted %d rows", len(rows), n)
	}
	return err
}

// finishMany records the outcomes of workflows in one statement
// (pgFinishMany); it reports, for each, whether its row was PENDING and
// took the outcome, as finish does.
func (d pgDriver) finishMany(ctx context.Context, sql string, ps []FinishParams, now int64) ([]bool, error) {
	a := textArgsPool.Get().(*textArgs)
	defer a.release()
	strArray(a, ps, func(p *FinishParams) string { return p.ID })
	strArray(a, ps, func(p *FinishParams) string { return p.Status })
	strArray(a, ps, func(p *FinishParams) string { return p.Output })
	strArray(a, ps, func(p *FinishParams) string { return p.Error })
	a.num(now)
	return d.hotReturningIDs(ctx, "dbosgen_finishes", sql, a, len(ps), func(i int) string { return ps[i].ID })
}

// insertMany starts new workflows in one statement (pgInsertMany); it
// reports, for each, whether it inserted the row (false: the ID exists).
func (d pgDriver) insertMany(ctx context.Context, sql string, ws []newWorkflow) ([]bool, error) {
	a := textArgsPool.Get().(*textArgs)
	defer a.release()
	strArray(a, ws, func(w *newWorkflow) string { return w.Row.ID })
	strArray(a, ws, func(w *newWorkflow) string { return w.Row.Name })
	strArray(a, ws, func(w *newWorkflow) string { return w.Row.ExecutorID })
	strArray(a, ws, func(w *newWorkflow) string { return w.Row.AppVersion })
	strArray(a, ws, func(w *newWorkflow) string { return w.Row.AppName })
	strArray(a, ws, func(w *newWorkflow) string { return w.Row.ParentID })
	numArray(a, ws, func(w *newWorkflow) int64 { return w.Row.TimeoutMS })
	numArray(a, ws, func(w *newWorkflow) int64 { return w.Row.DeadlineMS })
	numArray(a, ws, func(w *newWorkflow) int64 { return w.Now })
	strArray(a, ws, func(w *newWorkflow) string { return w.XID })
	strArray(a, ws, func(w *newWorkflow) string { return w.Row.Inputs })
	strArray(a, ws, func(w *newWorkflow) string { return w.Row.Attributes })
	return d.hotReturningIDs(ctx, "dbosgen_inserts", sql, a, len(ws), func(i int) string { return ws[i].Row.ID })
}

// hotReturningIDs runs a batch statement that returns the IDs of the rows
// it applied to, and reports, for each of the n rows (id(i) its ID),
// whether it did. A tracer sees the IDs as the first argument, so that a
// statement count counts each row.
func (d pgDriver) hotReturningIDs(ctx context.Context, name, sql string, args *textArgs, n int,
	id func(int) string) ([]bool, error) {
	traceArgs := func() []any {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = id(i)
		}
		return []any{ids}
	}
	at := make(map[string]int, n)
	for i := range n {
		at[id(i)] = i
	}
	applied := make([]bool, n)
	err := d.hot(ctx, name, sql, args, traceArgs, func(rr *pgconn.ResultReader) error {
		for rr.NextRow() {
			if i, ok := at[string(rr.Values()[0])]; ok {
				applied[i] = true
			}
		}
		_, err := rr.Close()
		return err
	})
	return applied, err
}
