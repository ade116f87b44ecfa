package engine

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
	"github.com/robfig/cron/v3"
)

// Scheduled workflows (//dbos:workflow schedule="..."): every executor runs
// a timer per scheduled workflow, and at each tick enqueues the workflow on
// DBOS's internal queue under the ID sched-<name>-<tick, RFC 3339>, as DBOS
// names it. The enqueue inserts nothing when the ID exists, so however many
// executors tick, one row is written and one executor runs it: each tick
// runs once. Ticks missed while no executor ran are not run afterwards
// (DBOS does the same): the schedule resumes at the first tick after
// Launch; the workflow's scheduled time says which tick it is.

// cronParser reads schedule= as the generator does: five fields, an
// optional leading seconds field, or a descriptor (@hourly, @every 1m).
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// scheduledWorkflow is a registered workflow with a schedule.
type scheduledWorkflow interface {
	workflowName() string
	scheduleSpec() string
	enqueueTick(ctx context.Context, rt *Runtime, tick time.Time) error
}

func (w *Workflow[A, R]) scheduleSpec() string { return w.opts.Schedule }

// ScheduledWorkflowID is the ID of a scheduled workflow's run for a tick.
func ScheduledWorkflowID(name string, tick time.Time) string {
	return fmt.Sprintf("sched-%s-%s", name, tick.UTC().Format(time.RFC3339))
}

func (w *Workflow[A, R]) enqueueTick(ctx context.Context, rt *Runtime, tick time.Time) error {
	a, ok := w.opts.ScheduleArgs(tick, time.Now()).(A)
	if !ok {
		return fmt.Errorf("%w: scheduled workflow %s: ScheduleArgs does not make its inputs", ErrConfig, w.opts.Name)
	}
	inputs, err := encodeArgs(a)
	if err != nil {
		return err
	}
	qr, ok := rt.store.(sysdb.Queuer)
	if !ok {
		return nil
	}
	row := sysdb.WorkflowRow{ID: ScheduledWorkflowID(w.opts.Name, tick), Name: w.opts.Name, QueueName: InternalQueueName,
		ExecutorID: rt.cfg.ExecutorID, AppVersion: rt.cfg.ApplicationVersion, Inputs: inputs, TimeoutMS: w.opts.Timeout.Milliseconds()}
	err = rt.retryDB(ctx, func(ctx context.Context) error {
		_, err := qr.Enqueue(ctx, sysdb.EnqueueParams{Row: row})
		return err
	})
	if err == nil {
		rt.wakeQueue(InternalQueueName) // every executor serves it: run it here
	}
	return err
}

// startSchedules starts a timer per scheduled workflow of the binary.
func (rt *Runtime) startSchedules() error {
	registry.RLock()
	var ws []scheduledWorkflow
	for _, w := range registry.workflows {
		if s, ok := w.(scheduledWorkflow); ok && s.scheduleSpec() != "" {
			ws = append(ws, s)
		}
	}
	registry.RUnlock()
	sort.Slice(ws, func(i, j int) bool { return ws[i].workflowName() < ws[j].workflowName() })
	for _, w := range ws {
		sched, err := cronParser.Parse(w.scheduleSpec())
		if err != nil {
			return fmt.Errorf("%w: workflow %s: schedule %q: %v", ErrConfig, w.workflowName(), w.scheduleSpec(), err)
		}
		rt.wg.Add(1)
		go func() {
			defer rt.wg.Done()
			rt.runSchedule(w, sched)
		}()
	}
	return nil
}

func (rt *Runtime) runSchedule(w scheduledWorkflow, sched cron.Schedule) {
	next := sched.Next(time.Now())
	for {
		timer := time.NewTimer(time.Until(next))
		select {
		case <-rt.ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		if err := w.enqueueTick(rt.ctx, rt, next); err != nil && rt.ctx.Err() == nil {
			rt.log.Error("dbos: scheduled workflow tick not enqueued", "workflow", w.workflowName(), "tick", next, "error", err)
		}
		next = sched.Next(next)
		if now := time.Now(); next.Before(now) {
			// Ticks passed while this one was enqueued (a long outage): skip
			// to the next one ahead, as after a restart.
			next = sched.Next(now)
		}
	}
}
