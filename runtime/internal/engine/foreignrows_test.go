package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// Rows other programs wrote into the shared system database, with values
// DBOS allows or that no release writes: each is a clear error on its own
// workflow, and Launch recovers the rest.
func TestForeignRows(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		var c counter
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			c.inc("body")
			return "ok " + in.Key, nil
		})
		rt, ctx := launch(t, url, withExecutor("foreign"))
		must(testWF.Run(dbos.WithWorkflowID(ctx, "good-done"), in))
		version := rt.ApplicationVersion()
		app := "test" // launch's AppName
		insert := func(id, name, status, format, inputs string) {
			execSQL(t, rt, `INSERT INTO {dbos}workflow_status (workflow_uuid, status, name, executor_id, application_version,
				application_name, serialization, recovery_attempts, created_at, updated_at)
				VALUES ($1, NULLIF($2, ''), NULLIF($3, ''), 'foreign', $4, $5, NULLIF($6, ''), 0, 1, 1)`,
				id, status, name, version, app, format)
			if inputs != "" {
				execSQL(t, rt, `INSERT INTO {dbos}workflow_input (workflow_uuid, inputs) VALUES ($1, $2)`, id, inputs)
			}
		}
		insert("pickled", "test.wf", "PENDING", "py_pickle", "gASVAAAA")
		insert("no-name", "", "PENDING", "portable_json", `{"positionalArgs":[],"namedArgs":{}}`)
		insert("odd-status", "test.wf", "PAUSED_BY_SOMEONE", "portable_json", `{"positionalArgs":[],"namedArgs":{}}`)
		insert("null-status", "test.wf", "", "portable_json", "")
		insert("good-pending", "test.wf", "PENDING", "portable_json", `{"positionalArgs":["`+in.Key+`", 0],"namedArgs":{}}`)
		shutdown(t, rt)

		rt, ctx = launch(t, url, withExecutor("foreign"))
		problems := map[string]error{}
		for _, p := range rt.RecoveryProblems() {
			for _, id := range []string{"pickled", "no-name"} {
				if strings.Contains(p.Error(), id) {
					problems[id] = p
				}
			}
		}
		if !errors.Is(problems["pickled"], dbos.ErrUnsupportedFormat) || !strings.Contains(problems["pickled"].Error(), "py_pickle") {
			t.Errorf("pickled: problem %v, want ErrUnsupportedFormat naming py_pickle", problems["pickled"])
		}
		if problems["no-name"] == nil {
			t.Errorf("no-name: no recovery problem reported; problems: %v", rt.RecoveryProblems())
		}
		// The good one was recovered beside them.
		h, err := dbos.RetrieveWorkflow[string](ctx, "good-pending")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := h.Result(ctx); err != nil || got != "ok "+in.Key {
			t.Errorf("good-pending: %q, %v", got, err)
		}
		for _, id := range []string{"odd-status", "null-status"} {
			st, err := rt.WorkflowStatus(ctx, id)
			if err != nil || st.Err == nil {
				t.Errorf("%s: status %+v, %v; want a readable row with an error saying what is wrong", id, st, err)
			}
		}
		if n := scalar[int](t, rt, "SELECT count(*) FROM {dbos}workflow_status WHERE workflow_uuid = 'pickled' AND recovery_attempts = 0"); n != 1 {
			t.Error("recovery touched the unreadable workflow's row")
		}
		// Called by ID it counts as an attempt, and fails clearly.
		if _, err := testWF.Run(dbos.WithWorkflowID(ctx, "pickled"), in); !errors.Is(err, dbos.ErrUnsupportedFormat) {
			t.Errorf("calling pickled: %v, want ErrUnsupportedFormat", err)
		}
	})
}
