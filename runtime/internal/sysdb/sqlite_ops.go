package sysdb

import (
	"context"

	"github.com/google/uuid"
)

// SQLite's paths for a workflow's start, its step checkpoints and its
// finish, on the write connection below database/sql (sqliteWriter). SQLite
// has no data-modifying CTE; each is a short transaction of plain statements
// (one statement for a step), and no round trip is saved by merging them.

// stepValues are the step statement's arguments (recordStep's parameters),
// in an array its caller keeps on its stack.
func (d *sqliteDriver) stepValues(s StepRow) [9]any {
	if s.CompletedMS == 0 {
		s.CompletedMS = nowMS()
	}
	return [9]any{s.WorkflowID, int64(s.StepID), s.Name, orNull(s.Output), orNull(s.Error), orNull(s.ChildID),
		s.StartedMS, s.CompletedMS, d.app}
}

// recordStep inserts one step checkpoint as its own (autocommit) statement.
// Not with the caller's context: a local write that busy_timeout bounds
// already; a cancelled workflow stops at its next step instead.
func (d *sqliteDriver) recordStep(_ context.Context, _ string, s StepRow, _ string) (bool, error) {
	var n int64
	err := d.wr.run(context.Background(), func(c wconn) (err error) {
		v := d.stepValues(s)
		n, err = c.exec(wStep, v[:]...)
		return err
	})
	return n == 1, err
}

// recordSteps inserts rows in one transaction: one commit (one fsync of the
// single writer) for all of them. It reports which rows it inserted; of two
// rows with one key, only the first can have been.
func (d *sqliteDriver) recordSteps(ctx context.Context, rows []StepRow) ([]bool, error) {
	inserted := make([]bool, len(rows))
	err := d.wr.inTx(ctx, func(c wconn) error {
		for i, r := range rows {
			v := d.stepValues(r)
			n, err := c.exec(wStep, v[:]...)
			if err != nil {
				return err
			}
			inserted[i] = n == 1
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return inserted, nil
}

// start is InitWorkflow: the status upsert, then the inputs of a workflow
// the upsert inserted. Only a start that inserted nothing reads the row back
// (a recovery, or a call with the ID of an existing workflow); a new one's
// row is what it wrote.
func (d *sqliteDriver) start(ctx context.Context, ip InitParams, appName string, now int64) (InitResult, error) {
	r := ip.Row
	res := InitResult{Row: WorkflowRow{ID: r.ID}}
	err := d.wr.inTx(ctx, func(c wconn) error {
		// No xmax on SQLite: the row is new when its creator is this call's
		// fresh ID (the conflict branch never writes creator_xid).
		xid, creator := uuid.NewString(), ""
		if err := c.queryRow(wInit, []any{r.ID, r.Name, r.ExecutorID, r.AppVersion, d.app, orNull(r.ParentID),
			r.TimeoutMS, r.DeadlineMS, now, xid, int64(ip.MaxRecoveryAttempts), orNull(r.Attributes),
			ip.Recovery}, &creator); err != nil {
			return err
		}
		if res.Inserted = creator == xid; res.Inserted {
			if _, err := c.exec(wInputs, r.ID, r.Inputs); err != nil {
				return err
			}
			r.AppName = appName
			res.Row = newRow(r, now)
			return nil
		}
		// Scanned apart from res: what scanning takes the address of goes
		// to the heap, and only this path should pay for it.
		w := new(WorkflowRow)
		w.ID = r.ID
		if err := scanWorkflow(wrow{c, wWorkflow, []any{r.ID}}, w); err != nil {
			return err
		}
		res.Row = *w
		if w.Status == StatusDeadLetter && w.Error == "" && ip.DeadLetterError != nil {
			w.Error = ip.DeadLetterError()
			res.Row.Error = w.Error
			if _, err := c.exec(wDeadLetter, r.ID, w.Error); err != nil {
				return err
			}
		}
		return nil
	})
	return res, err
}

// finish is FinishWorkflow: the status update and, if it applied, the
// outcome, in one transaction.
func (d *sqliteDriver) finish(ctx context.Context, p FinishParams, now int64) (bool, error) {
	var done bool
	err := d.wr.inTx(ctx, func(c wconn) (err error) {
		done, err = finishIn(c, p, now)
		return err
	})
	return done, err
}

// finishMany is finish for many workflows in one transaction: one commit
// (one fsync of the single writer) for all of them.
func (d *sqliteDriver) finishMany(ctx context.Context, ps []FinishParams, now int64) ([]bool, error) {
	took := make([]bool, len(ps))
	err := d.wr.inTx(ctx, func(c wconn) (err error) {
		for i, p := range ps {
			if took[i], err = finishIn(c, p, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return took, nil
}

// finishIn updates p's status row and, if it was PENDING, writes its
// outcome; it reports whether it was.
func finishIn(c wconn, p FinishParams, now int64) (bool, error) {
	n, err := c.exec(wFinish, p.ID, p.Status, now)
	if err != nil || n != 1 {
		return false, err
	}
	_, err = c.exec(wOutcome, p.ID, orNull(p.Output), orNull(p.Error))
	return err == nil, err
}

// wrow is one row of a writer's query, for scanWorkflow and scanStep.
type wrow struct {
	c    wconn
	st   writerStmt
	args []any
}

func (r wrow) Scan(dest ...any) error { return r.c.queryRow(r.st, r.args, dest...) }
