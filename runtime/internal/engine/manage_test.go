package engine_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

const hostile = `<script>alert("x")</script>'; DROP TABLE workflow_status; --`

// twoSteps is a workflow body: step one returns 1, step two fails when
// x.N == 1 with a hostile message, or waits for gate when x.N == 2.
func twoSteps(gate chan struct{}) body {
	return func(ctx context.Context, x input) (string, error) {
		if _, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "one"}, func(ctx context.Context) (int, error) { return 1, nil }); err != nil {
			return "", err
		}
		if x.N == 2 {
			<-gate
		}
		_, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "two"}, func(ctx context.Context) (string, error) {
			if x.N == 1 {
				return "", errors.New("card declined " + hostile)
			}
			return "two", nil
		})
		if err != nil {
			return "", err
		}
		return "done " + hostile, nil
	}
}

func openClient(t *testing.T, url string) *dbos.Client {
	t.Helper()
	c, err := dbos.OpenClient(context.Background(), url)
	if err != nil {
		t.Fatalf("OpenClient: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestManagementClient(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		gate := make(chan struct{})
		in := setBody(t, twoSteps(gate))
		must(testWF.Run(dbos.WithWorkflowID(ctx, "ok"), in))
		bad := in
		bad.N = 1
		if _, err := testWF.Run(dbos.WithWorkflowID(ctx, "bad"), bad); err == nil {
			t.Fatal("bad succeeded")
		}
		c := openClient(t, url)

		ws := must(c.ListWorkflows(ctx, dbos.ListFilter{}))
		if len(ws) != 2 || ws[0].ID != "bad" || ws[1].ID != "ok" {
			t.Fatalf("ListWorkflows = %+v, want bad then ok", ws)
		}
		ok, fail := ws[1], ws[0]
		if ok.Status != dbos.StatusSuccess || ok.Output != `"done `+jsonEsc(hostile)+`"` || ok.Name != "test.wf" ||
			ok.Input != `["`+t.Name()+`",0]` || ok.ExecutorID != "exec-1" || ok.ApplicationVersion != "v1" {
			t.Errorf("ok = %+v", ok)
		}
		if fail.Status != dbos.StatusError || !strings.Contains(fail.Error, "card declined "+hostile) || fail.Err == nil {
			t.Errorf("bad = %+v", fail)
		}
		if got := must(c.ListWorkflows(ctx, dbos.ListFilter{Status: []string{"ERROR"}})); len(got) != 1 || got[0].ID != "bad" {
			t.Errorf("status filter: %+v", got)
		}
		if got := must(c.ListWorkflows(ctx, dbos.ListFilter{Limit: 1, Offset: 1})); len(got) != 1 || got[0].ID != "ok" {
			t.Errorf("paging: %+v", got)
		}

		steps := must(c.WorkflowSteps(ctx, "bad"))
		if len(steps) != 2 || steps[0].Name != "one" || steps[0].Output != "1" || steps[1].Name != "two" ||
			!strings.Contains(steps[1].Error, "card declined "+hostile) || steps[1].CompletedAt.IsZero() {
			t.Errorf("steps = %+v", steps)
		}

		// Bad input.
		for _, f := range []dbos.ListFilter{{Status: []string{"NOPE"}}, {Limit: -1}, {Offset: -2},
			{CreatedAfter: time.Now(), CreatedBefore: time.Now().Add(-time.Hour)}} {
			if _, err := c.ListWorkflows(ctx, f); !errors.Is(err, dbos.ErrInvalidArgument) {
				t.Errorf("ListWorkflows(%+v) = %v, want ErrInvalidArgument", f, err)
			}
		}
		for name, err := range map[string]error{
			"retrieve": second(c.RetrieveWorkflow(ctx, "nope")),
			"steps":    second(c.WorkflowSteps(ctx, "nope")),
			"cancel":   c.CancelWorkflow(ctx, "nope"),
			"resume":   c.ResumeWorkflow(ctx, "nope"),
			"fork":     second(c.ForkWorkflow(ctx, "nope", 1, dbos.ForkOptions{})),
		} {
			if !errors.Is(err, dbos.ErrWorkflowNotFound) {
				t.Errorf("%s of an unknown workflow: %v", name, err)
			}
		}
		if err := c.ResumeWorkflow(ctx, "ok"); !errors.Is(err, dbos.ErrWorkflowFinished) {
			t.Errorf("resume of a finished workflow: %v", err)
		}
		if _, err := c.ForkWorkflow(ctx, "bad", 4, dbos.ForkOptions{}); !errors.Is(err, dbos.ErrInvalidArgument) {
			t.Errorf("fork past the end: %v", err)
		}
		if _, err := c.ForkWorkflow(ctx, "bad", 1, dbos.ForkOptions{NewID: "ok"}); !errors.Is(err, dbos.ErrWorkflowConflict) {
			t.Errorf("fork onto an existing ID: %v", err)
		}

		// Fork the failed workflow from its failing step, onto a new version.
		id := must(c.ForkWorkflow(ctx, "bad", 2, dbos.ForkOptions{ApplicationVersion: "v2"}))
		f := must(c.RetrieveWorkflow(ctx, id))
		if f.Status != dbos.StatusEnqueued || f.QueueName != dbos.InternalQueueName || f.ForkedFrom != "bad" ||
			f.ApplicationVersion != "v2" || f.Input != fail.Input {
			t.Errorf("fork = %+v", f)
		}
		if st := must(c.WorkflowSteps(ctx, id)); len(st) != 1 || st[0].Name != "one" {
			t.Errorf("fork's steps = %+v", st)
		}
		if o := must(c.RetrieveWorkflow(ctx, "bad")); !o.WasForkedFrom {
			t.Errorf("original not marked forked")
		}

		// A running workflow: not deletable; cancelled, then resumed.
		run := in
		run.N = 2
		h := must(testWF.Start(dbos.WithWorkflowID(ctx, "running"), run))
		if _, err := c.DeleteWorkflows(ctx, []string{"running"}, false); !errors.Is(err, dbos.ErrWorkflowActive) {
			t.Errorf("delete of a running workflow: %v", err)
		}
		if err := c.CancelWorkflow(ctx, "running"); err != nil {
			t.Fatal(err)
		}
		close(gate)
		if _, err := h.Result(ctx); !errors.Is(err, dbos.ErrWorkflowCancelled) {
			t.Errorf("cancelled workflow returned %v", err)
		}
		if err := c.ResumeWorkflow(ctx, "running"); err != nil {
			t.Fatalf("resume of a cancelled workflow: %v", err)
		}
		if r := must(c.RetrieveWorkflow(ctx, "running")); r.Status != dbos.StatusEnqueued || r.QueueName != dbos.InternalQueueName || r.RecoveryAttempts != 0 {
			t.Errorf("resumed = %+v", r)
		}

		// Delete.
		if got := must(c.DeleteWorkflows(ctx, []string{"ok", "nope"}, false)); len(got) != 1 || got[0] != "ok" {
			t.Errorf("deleted %v", got)
		}
		if _, err := c.RetrieveWorkflow(ctx, "ok"); !errors.Is(err, dbos.ErrWorkflowNotFound) {
			t.Errorf("deleted workflow still there: %v", err)
		}
		c.Close()
		if _, err := c.ListWorkflows(ctx, dbos.ListFilter{}); !errors.Is(err, dbos.ErrShutdown) {
			t.Errorf("closed client: %v", err)
		}
	})
}

func second[T any](_ T, err error) error { return err }

// jsonEsc is s as encoding/json writes it inside a string.
func jsonEsc(s string) string {
	r := strings.NewReplacer(`"`, `\"`, `<`, `\u003c`, `>`, `\u003e`, `&`, `\u0026`)
	return r.Replace(s)
}

// The Runtime's own API, and retention.
func TestManagementRuntimeAndRetention(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		in := setBody(t, twoSteps(nil))
		for _, id := range []string{"a", "b", "c", "fresh"} {
			must(testWF.Run(dbos.WithWorkflowID(ctx, id), in))
		}
		if got := must(rt.ListWorkflows(ctx, dbos.ListFilter{IDPrefix: "fr"})); len(got) != 1 || got[0].ID != "fresh" {
			t.Fatalf("prefix: %+v", got)
		}
		if s := must(rt.WorkflowSteps(ctx, "a")); len(s) != 2 {
			t.Errorf("steps %+v", s)
		}
		old := time.Now().Add(-48 * time.Hour).UnixMilli()
		execSQL(t, rt, `UPDATE {dbos}workflow_status SET created_at = $1 WHERE workflow_uuid IN ('a', 'b', 'c')`, old)
		if n := must(rt.PruneWorkflows(ctx, 24*time.Hour)); n != 3 {
			t.Errorf("pruned %d, want 3", n)
		}
		if got := must(rt.ListWorkflows(ctx, dbos.ListFilter{})); len(got) != 1 || got[0].ID != "fresh" {
			t.Errorf("left %+v", got)
		}
		if n := countRows(t, rt, "operation_outputs"); n != 2 {
			t.Errorf("%d step rows left, want fresh's 2", n)
		}
	})
}

// Config.RetentionAge prunes on a schedule, in batches.
func TestRetentionSchedule(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt0, ctx := launch(t, url, withExecutor("writer"))
		in := setBody(t, twoSteps(nil))
		for _, id := range []string{"a", "b", "c", "fresh"} {
			must(testWF.Run(dbos.WithWorkflowID(ctx, id), in))
		}
		execSQL(t, rt0, `UPDATE {dbos}workflow_status SET created_at = $1 WHERE workflow_uuid <> 'fresh'`, time.Now().Add(-2*time.Hour).UnixMilli())
		rt, _ := launch(t, url, withExecutor("pruner"), func(c *dbos.Config) {
			c.RetentionAge, c.RetentionInterval, c.RetentionBatchSize = time.Hour, 50*time.Millisecond, 1
		})
		waitFor(t, "retention", func() bool {
			return len(must(rt.ListWorkflows(context.Background(), dbos.ListFilter{}))) == 1
		})
		if w := must(rt.RetrieveWorkflow(ctx, "fresh")); w.Status != dbos.StatusSuccess {
			t.Errorf("fresh = %+v", w)
		}
	})
}

// A shut-down runtime and a closed client refuse management calls; a client
// on a URL it cannot use fails to open.
func TestManagementClosed(t *testing.T) {
	url := dbtest.URL(t, "sqlite")
	rt, ctx := launch(t, url)
	shutdown(t, rt)
	for name, err := range map[string]error{
		"list":   second(rt.ListWorkflows(ctx, dbos.ListFilter{})),
		"steps":  second(rt.WorkflowSteps(ctx, "x")),
		"resume": rt.ResumeWorkflow(ctx, "x"),
		"fork":   second(rt.ForkWorkflow(ctx, "x", 1, dbos.ForkOptions{})),
		"delete": second(rt.DeleteWorkflows(ctx, []string{"x"}, false)),
		"prune":  second(rt.PruneWorkflows(ctx, time.Hour)),
	} {
		if !errors.Is(err, dbos.ErrShutdown) {
			t.Errorf("%s after Shutdown: %v", name, err)
		}
	}
	if _, err := dbos.OpenClient(context.Background(), "mysql://nope"); !errors.Is(err, dbos.ErrConfig) {
		t.Errorf("OpenClient on an unknown engine: %v", err)
	}
}

// Rows written by DBOS's Go SDK (DBOS_JSON: base64 of JSON) are shown
// decoded; a format dbosgen cannot read is shown as stored, saying so.
func TestManagementDisplaysForeignFormats(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
		execSQL(t, rt, `INSERT INTO {dbos}workflow_status (workflow_uuid, status, name, created_at, updated_at, serialization, application_name)
			VALUES ('go-sdk', 'SUCCESS', 'main.Work', 1, 2, 'DBOS_JSON', 'test'), ('py', 'ERROR', 'py.work', 1, 2, 'py_pickle', 'test')`)
		execSQL(t, rt, `INSERT INTO {dbos}workflow_input (workflow_uuid, inputs) VALUES ('go-sdk', $1), ('py', 'gASVBQ==')`, b64(`{"a":1}`))
		execSQL(t, rt, `INSERT INTO {dbos}workflow_output (workflow_uuid, output, error) VALUES ('go-sdk', $1, NULL), ('py', NULL, 'gASVBQ==')`, b64(`"ok"`))
		execSQL(t, rt, `INSERT INTO {dbos}operation_outputs (workflow_uuid, function_id, function_name, output, error, serialization)
			VALUES ('go-sdk', 0, 'main.step', $1, NULL, 'DBOS_JSON'), ('go-sdk', 1, 'main.fail', NULL, 'gob-encoded error text', 'DBOS_JSON')`, b64(`[1,2]`))
		w := must(rt.RetrieveWorkflow(ctx, "go-sdk"))
		if w.Input != `{"a":1}` || w.Output != `"ok"` {
			t.Errorf("DBOS_JSON workflow shown as input %q, output %q", w.Input, w.Output)
		}
		steps := must(rt.WorkflowSteps(ctx, "go-sdk"))
		if len(steps) != 2 || steps[0].Output != `[1,2]` || steps[1].Error != "gob-encoded error text" {
			t.Errorf("DBOS_JSON steps shown as %+v", steps)
		}
		p := must(rt.RetrieveWorkflow(ctx, "py"))
		if !strings.HasPrefix(p.Input, "(cannot be decoded: ") || !strings.HasSuffix(p.Input, "gASVBQ==") || p.Error == "" {
			t.Errorf("py_pickle workflow shown as input %q, error %q", p.Input, p.Error)
		}
		if got := must(rt.ListWorkflows(ctx, dbos.ListFilter{Name: []string{"py.work"}})); len(got) != 1 {
			t.Errorf("listing a py_pickle row: %+v", got)
		}
	})
}
