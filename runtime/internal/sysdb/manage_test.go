package sysdb

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// Conformance cases of the management operations, on both engines.

func mgr(t *testing.T, s Store) Manager {
	t.Helper()
	m, ok := s.(Manager)
	if !ok {
		t.Fatalf("%T does not implement Manager", s)
	}
	return m
}

func listIDs(t *testing.T, m Manager, f ListFilter) []string {
	t.Helper()
	ws, err := m.ListWorkflows(context.Background(), f)
	if err != nil {
		t.Fatalf("ListWorkflows(%+v): %v", f, err)
	}
	var ids []string
	for _, w := range ws {
		ids = append(ids, w.ID)
	}
	return ids
}

// seed creates workflows a..e with created_at 1000..5000, in several
// statuses, names, executors and versions.
func seed(t *testing.T, tg *target, s Store) {
	t.Helper()
	for _, id := range []string{"wf-a", "wf-b", "wf-c", "wf-d", "other-e"} {
		mustInit(t, s, initParams(id))
	}
	tg.exec(t, `UPDATE {schema}workflow_status SET created_at = 1000, status = 'SUCCESS' WHERE workflow_uuid = 'wf-a'`)
	tg.exec(t, `UPDATE {schema}workflow_status SET created_at = 2000, status = 'ERROR', name = 'pkg.Other' WHERE workflow_uuid = 'wf-b'`)
	tg.exec(t, `UPDATE {schema}workflow_status SET created_at = 3000, executor_id = 'exec-b', queue_name = 'q' WHERE workflow_uuid = 'wf-c'`)
	tg.exec(t, `UPDATE {schema}workflow_status SET created_at = 4000, application_version = 'v2' WHERE workflow_uuid = 'wf-d'`)
	tg.exec(t, `UPDATE {schema}workflow_status SET created_at = 5000, status = 'CANCELLED' WHERE workflow_uuid = 'other-e'`)
}

func TestListWorkflowsFilters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		s := tg.migrated(t)
		m := mgr(t, s)
		seed(t, tg, s)
		// Another application's row is not listed; an unclaimed one is.
		tg.exec(t, `INSERT INTO {schema}workflow_status (workflow_uuid, status, name, created_at, updated_at, application_name)
			VALUES ('foreign', 'SUCCESS', 'x', 6000, 6000, 'someone-else'), ('unclaimed', 'SUCCESS', 'x', 500, 500, NULL)`)
		cases := []struct {
			name string
			f    ListFilter
			want []string
		}{
			{"all newest first", ListFilter{}, []string{"other-e", "wf-d", "wf-c", "wf-b", "wf-a", "unclaimed"}},
			{"ascending", ListFilter{Ascending: true, Limit: 2}, []string{"unclaimed", "wf-a"}},
			{"limit offset", ListFilter{Limit: 2, Offset: 1}, []string{"wf-d", "wf-c"}},
			{"offset only", ListFilter{Offset: 4}, []string{"wf-a", "unclaimed"}},
			{"status", ListFilter{Statuses: []string{"ERROR", "CANCELLED"}}, []string{"other-e", "wf-b"}},
			{"name", ListFilter{Names: []string{"pkg.Other"}}, []string{"wf-b"}},
			{"queue", ListFilter{Queues: []string{"q"}}, []string{"wf-c"}},
			{"executor", ListFilter{ExecutorIDs: []string{"exec-b"}}, []string{"wf-c"}},
			{"version", ListFilter{AppVersions: []string{"v2"}}, []string{"wf-d"}},
			{"prefix", ListFilter{IDPrefix: "wf-"}, []string{"wf-d", "wf-c", "wf-b", "wf-a"}},
			{"prefix is literal and case-sensitive", ListFilter{IDPrefix: "WF_"}, nil},
			{"time range", ListFilter{CreatedAfterMS: 2000, CreatedBeforeMS: 4000}, []string{"wf-d", "wf-c", "wf-b"}},
			{"by ID sees other applications", ListFilter{IDs: []string{"foreign", "wf-a"}}, []string{"foreign", "wf-a"}},
			{"hostile name", ListFilter{Names: []string{"'; DROP TABLE workflow_status; --"}}, nil},
		}
		for _, c := range cases {
			if got := listIDs(t, m, c.f); !slices.Equal(got, c.want) {
				t.Errorf("%s: %v, want %v", c.name, got, c.want)
			}
		}
		ws, err := m.ListWorkflows(context.Background(), ListFilter{IDs: []string{"wf-a"}})
		if err != nil || len(ws) != 1 || ws[0].Inputs != `["in"]` || ws[0].Status != StatusSuccess || ws[0].CreatedMS != 1000 {
			t.Errorf("listed row = %+v, %v", ws, err)
		}
	})
}

func TestDeleteWorkflows(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)
		m := mgr(t, s)
		for _, id := range []string{"p", "p-1", "p-1-1", "keep"} {
			mustInit(t, s, initParams(id))
		}
		tg.exec(t, `UPDATE {schema}workflow_status SET parent_workflow_id = 'p' WHERE workflow_uuid = 'p-1'`)
		tg.exec(t, `UPDATE {schema}workflow_status SET parent_workflow_id = 'p-1' WHERE workflow_uuid = 'p-1-1'`)
		for _, id := range []string{"p", "p-1", "p-1-1", "keep"} {
			if _, _, err := s.RecordStep(ctx, StepRow{WorkflowID: id, StepID: 1, Name: "s", Output: "1"}); err != nil {
				t.Fatal(err)
			}
		}
		// Running workflows are refused, and nothing is deleted.
		if _, err := m.DeleteWorkflows(ctx, []string{"p"}, true); !errors.Is(err, ErrActive) {
			t.Fatalf("delete of a PENDING tree: %v, want ErrActive", err)
		}
		tg.exec(t, `UPDATE {schema}workflow_status SET status = 'ERROR'`)
		tg.exec(t, `INSERT INTO {schema}workflow_events (workflow_uuid, key, value) VALUES ('p-1', 'k', 'v')`)
		got, err := m.DeleteWorkflows(ctx, []string{"p", "unknown"}, true)
		slices.Sort(got)
		if err != nil || !slices.Equal(got, []string{"p", "p-1", "p-1-1"}) {
			t.Fatalf("DeleteWorkflows = %v, %v", got, err)
		}
		for _, id := range []string{"p", "p-1", "p-1-1"} {
			if _, err := s.Workflow(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s still there: %v", id, err)
			}
			if steps, _ := s.Steps(ctx, id); len(steps) != 0 {
				t.Errorf("%s's steps still there", id)
			}
		}
		if steps, _ := s.Steps(ctx, "keep"); len(steps) != 1 {
			t.Errorf("keep lost its steps")
		}
		// Without children, a child stays.
		mustInit(t, s, initParams("q"))
		mustInit(t, s, initParams("q-1"))
		tg.exec(t, `UPDATE {schema}workflow_status SET status = 'SUCCESS', parent_workflow_id = CASE WHEN workflow_uuid = 'q-1' THEN 'q' END WHERE workflow_uuid IN ('q', 'q-1')`)
		if got, err := m.DeleteWorkflows(ctx, []string{"q"}, false); err != nil || !slices.Equal(got, []string{"q"}) {
			t.Fatalf("DeleteWorkflows(q) = %v, %v", got, err)
		}
		if _, err := s.Workflow(ctx, "q-1"); err != nil {
			t.Errorf("child deleted without children: %v", err)
		}
	})
}

func TestResumeWorkflow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)
		m := mgr(t, s)
		mustInit(t, s, initParams("c"))
		if _, err := s.Cancel(ctx, CancelParams{ID: "c"}); err != nil {
			t.Fatal(err)
		}
		tg.exec(t, `UPDATE {schema}workflow_status SET recovery_attempts = 7, workflow_deadline_epoch_ms = 99 WHERE workflow_uuid = 'c'`)
		if err := m.ResumeWorkflow(ctx, "c"); err != nil {
			t.Fatalf("ResumeWorkflow: %v", err)
		}
		ws, err := m.ListWorkflows(ctx, ListFilter{IDs: []string{"c"}})
		if err != nil || len(ws) != 1 {
			t.Fatal(ws, err)
		}
		w := ws[0]
		if w.Status != StatusEnqueued || w.QueueName != InternalQueue || w.RecoveryAttempts != 0 || w.DeadlineMS != 0 || w.CompletedMS != 0 {
			t.Errorf("resumed row = %+v", w)
		}
		mustInit(t, s, initParams("dead"))
		tg.exec(t, `UPDATE {schema}workflow_status SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' WHERE workflow_uuid = 'dead'`)
		if err := m.ResumeWorkflow(ctx, "dead"); err != nil {
			t.Errorf("resume of a dead-lettered workflow: %v", err)
		}
		for _, st := range []string{StatusSuccess, StatusError} {
			mustInit(t, s, initParams(st))
			tg.exec(t, `UPDATE {schema}workflow_status SET status = '`+st+`' WHERE workflow_uuid = '`+st+`'`)
			if err := m.ResumeWorkflow(ctx, st); !errors.Is(err, ErrFinished) {
				t.Errorf("resume of %s: %v, want ErrFinished", st, err)
			}
			if w, _ := s.Workflow(ctx, st); w.Status != st {
				t.Errorf("resume changed a %s row to %s", st, w.Status)
			}
		}
		if err := m.ResumeWorkflow(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("resume of an unknown workflow: %v", err)
		}
	})
}

func TestForkWorkflow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)
		m := mgr(t, s)
		mustInit(t, s, initParams("orig"))
		for i := 1; i <= 3; i++ {
			if _, _, err := s.RecordStep(ctx, StepRow{WorkflowID: "orig", StepID: i, Name: "s", Output: "1", ChildID: map[bool]string{true: "kid"}[i == 2]}); err != nil {
				t.Fatal(err)
			}
		}
		tg.exec(t, `INSERT INTO {schema}workflow_events_history (workflow_uuid, function_id, key, value) VALUES ('orig', 1, 'k', 'v1'), ('orig', 2, 'k', 'v2'), ('orig', 3, 'k', 'v3')`)
		tg.exec(t, `UPDATE {schema}workflow_status SET status = 'ERROR' WHERE workflow_uuid = 'orig'`)

		if err := m.ForkWorkflow(ctx, ForkParams{OriginalID: "orig", NewID: "fork", StartStep: 3, AppVersion: "v9"}); err != nil {
			t.Fatalf("ForkWorkflow: %v", err)
		}
		ws, err := m.ListWorkflows(ctx, ListFilter{IDs: []string{"fork", "orig"}, Ascending: true})
		if err != nil || len(ws) != 2 {
			t.Fatal(ws, err)
		}
		var f, o ListedWorkflow
		for _, w := range ws {
			if w.ID == "fork" {
				f = w
			} else {
				o = w
			}
		}
		if f.Status != StatusEnqueued || f.QueueName != InternalQueue || f.ForkedFrom != "orig" || f.AppVersion != "v9" ||
			f.Name != "pkg.Workflow" || f.Inputs != `["in"]` || f.AppName != "app" || f.RecoveryAttempts != 0 {
			t.Errorf("fork row = %+v", f)
		}
		if !o.WasForkedFrom {
			t.Errorf("original not marked was_forked_from: %+v", o)
		}
		steps, _ := s.Steps(ctx, "fork")
		if len(steps) != 2 || steps[0].StepID != 1 || steps[1].ChildID != "kid" {
			t.Errorf("fork's steps = %+v, want steps 1 and 2", steps)
		}
		// Fork from 0 copies nothing; keeps the original's version.
		if err := m.ForkWorkflow(ctx, ForkParams{OriginalID: "orig", NewID: "fork0", StartStep: 0}); err != nil {
			t.Fatal(err)
		}
		if steps, _ := s.Steps(ctx, "fork0"); len(steps) != 0 {
			t.Errorf("fork from 0 copied %d steps", len(steps))
		}
		if w, _ := s.Workflow(ctx, "fork0"); w.AppVersion != "v1" {
			t.Errorf("fork0 version %q", w.AppVersion)
		}
		// Bad input.
		if err := m.ForkWorkflow(ctx, ForkParams{OriginalID: "orig", NewID: "x", StartStep: 5}); !errors.Is(err, ErrBadStep) {
			t.Errorf("fork past the end: %v", err)
		}
		if err := m.ForkWorkflow(ctx, ForkParams{OriginalID: "orig", NewID: "x", StartStep: 4}); err != nil {
			t.Errorf("fork from last+1: %v", err)
		}
		if err := m.ForkWorkflow(ctx, ForkParams{OriginalID: "orig", NewID: "y", StartStep: -1}); !errors.Is(err, ErrBadStep) {
			t.Errorf("fork from -1: %v", err)
		}
		if err := m.ForkWorkflow(ctx, ForkParams{OriginalID: "nope", NewID: "z", StartStep: 0}); !errors.Is(err, ErrNotFound) {
			t.Errorf("fork of unknown: %v", err)
		}
		if err := m.ForkWorkflow(ctx, ForkParams{OriginalID: "orig", NewID: "fork", StartStep: 0}); err == nil {
			t.Errorf("fork onto an existing ID succeeded")
		}
	})
}

func TestDeleteFinishedBefore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)
		m := mgr(t, s)
		for _, id := range []string{"old1", "old2", "old3", "oldrunning", "new"} {
			mustInit(t, s, initParams(id))
		}
		tg.exec(t, `UPDATE {schema}workflow_status SET created_at = 100, status = 'SUCCESS' WHERE workflow_uuid LIKE 'old_'`)
		tg.exec(t, `UPDATE {schema}workflow_status SET created_at = 100 WHERE workflow_uuid = 'oldrunning'`)
		tg.exec(t, `UPDATE {schema}workflow_status SET created_at = 9000, status = 'ERROR' WHERE workflow_uuid = 'new'`)
		n, err := m.DeleteFinishedBefore(ctx, 1000, 2)
		if err != nil || n != 2 {
			t.Fatalf("first batch: %d, %v", n, err)
		}
		n, err = m.DeleteFinishedBefore(ctx, 1000, 2)
		if err != nil || n != 1 {
			t.Fatalf("second batch: %d, %v", n, err)
		}
		if n, err = m.DeleteFinishedBefore(ctx, 1000, 2); err != nil || n != 0 {
			t.Fatalf("third batch: %d, %v", n, err)
		}
		if got := listIDs(t, m, ListFilter{}); !slices.Equal(got, []string{"new", "oldrunning"}) {
			t.Errorf("left %v", got)
		}
	})
}
