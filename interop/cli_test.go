package interop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/interop/app"
	dbosgen "github.com/dbosgen/dbosgen/runtime/dbos"
)

// TestCLI runs dbosgen workflows, then prints them with DBOS's own CLI
// (cmd/dbos of the SDK v1.8.0: `dbos workflow list|get|steps --db-url URL`).
// The CLI uses a nameless client, so it sees every application's workflows;
// it prints JSON.
func TestCLI(t *testing.T) {
	cliBinary(t) // build it first, so its build time is not charged to a command
	url := newDB(t)
	rt := launchGen(t, url)
	run := runGen(t, rt)

	t.Run("list", func(t *testing.T) {
		out, err := runCLI(t, "workflow", "list", "--db-url", url, "--limit", "100")
		if err != nil {
			t.Fatal(err)
		}
		var got []map[string]any
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("dbos workflow list printed something that is not a JSON array: %v\n%s", err, out)
		}
		byID := map[string]map[string]any{}
		for _, w := range got {
			byID[fmt.Sprint(w["workflow_uuid"])] = w
		}
		for id, want := range map[string][2]string{
			"order-1": {"SUCCESS", appPkg + ".ProcessOrder"},
			"fail-1":  {"ERROR", appPkg + ".Fail"},
			"greet-1": {"SUCCESS", appPkg + ".Greet"},
			"add-1":   {"SUCCESS", appPkg + ".Add"},
		} {
			w, ok := byID[id]
			if !ok {
				t.Errorf("dbos workflow list does not print %s; it printed:\n%s", id, out)
				continue
			}
			checkField(t, "dbos workflow list: "+id, w, "status", want[0])
			checkField(t, "dbos workflow list: "+id, w, "name", want[1])
			checkField(t, "dbos workflow list: "+id, w, "application_name", genApp)
			checkField(t, "dbos workflow list: "+id, w, "executor_id", executorID)
			checkField(t, "dbos workflow list: "+id, w, "application_version", appVersion)
		}
		if len(got) != 4 {
			t.Errorf("dbos workflow list printed %d workflows, want 4:\n%s", len(got), out)
		}

		out, err = runCLI(t, "workflow", "list", "--db-url", url, "--status", "ERROR")
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0]["workflow_uuid"] != "fail-1" {
			t.Errorf("dbos workflow list --status ERROR printed (err %v):\n%s\nwant fail-1 alone", err, out)
		}

		out, err = runCLI(t, "workflow", "list", "--db-url", url, "--name", appPkg+".Greet")
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0]["workflow_uuid"] != "greet-1" {
			t.Errorf("dbos workflow list --name %s.Greet printed (err %v):\n%s\nwant greet-1 alone", appPkg, err, out)
		}
	})

	t.Run("get", func(t *testing.T) {
		out, err := runCLI(t, "workflow", "get", "order-1", "--db-url", url)
		if err != nil {
			t.Fatal(err)
		}
		var w map[string]any
		if err := json.Unmarshal([]byte(out), &w); err != nil {
			t.Fatalf("dbos workflow get printed something that is not a JSON object: %v\n%s", err, out)
		}
		checkField(t, "dbos workflow get order-1", w, "workflow_uuid", "order-1")
		checkField(t, "dbos workflow get order-1", w, "status", "SUCCESS")
		checkField(t, "dbos workflow get order-1", w, "name", appPkg+".ProcessOrder")
		checkField(t, "dbos workflow get order-1", w, "application_name", genApp)
		checkField(t, "dbos workflow get order-1", w, "serialization", "portable_json")
		if _, ok := w["created_at"]; !ok {
			t.Errorf("dbos workflow get order-1 prints no created_at:\n%s", out)
		}

		if _, err := runCLI(t, "workflow", "get", "no-such-workflow", "--db-url", url); err == nil ||
			!strings.Contains(err.Error(), "workflow not found") {
			t.Errorf("dbos workflow get no-such-workflow: %v; want a 'workflow not found' failure", err)
		}
	})

	t.Run("steps", func(t *testing.T) {
		for id, want := range map[string][]string{
			"order-1": {"priceOf", "charge", "recordOrder", "notify"},
			"fail-1":  {"audit", "validate"},
		} {
			out, err := runCLI(t, "workflow", "steps", id, "--db-url", url)
			if err != nil {
				t.Fatal(err)
			}
			var got []map[string]any
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("dbos workflow steps %s printed something that is not a JSON array: %v\n%s", id, err, out)
			}
			if len(got) != len(want) {
				t.Errorf("dbos workflow steps %s printed %d steps, want %d:\n%s", id, len(got), len(want), out)
				continue
			}
			for i, name := range want {
				what := fmt.Sprintf("dbos workflow steps %s: step %d", id, i+1)
				checkField(t, what, got[i], "function_id", i+1)
				checkField(t, what, got[i], "function_name", appPkg+"."+name)
			}
			if id == "fail-1" {
				e, _ := got[1]["error"].(map[string]any)
				if msg, _ := e["message"].(string); !strings.Contains(msg, "order rejected: "+failReason) {
					t.Errorf("dbos workflow steps fail-1: step 2's error is printed as %v; want an object whose message is %q",
						got[1]["error"], run.failErr.Error())
				}
			}
		}
	})
}

// TestCLIOperates cancels and deletes dbosgen workflows with DBOS's CLI
// (`dbos workflow cancel|delete ID --db-url URL`).
func TestCLIOperates(t *testing.T) {
	cliBinary(t)
	url := newDB(t)
	rt := launchGen(t, url)
	runGen(t, rt)

	t.Run("cancel", func(t *testing.T) {
		const id = "cli-cancel"
		h, err := app.StartBlockWorkflow(dbosgen.WithWorkflowID(on(rt), id), id)
		if err != nil {
			t.Fatalf("dbosgen StartBlock: %v", err)
		}
		waitClosed(t, app.Entered(id), 15*time.Second, "dbosgen workflow "+id+" to reach its waiting step")
		start := time.Now()
		if _, err := runCLI(t, "workflow", "cancel", id, "--db-url", url); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), cancelWithin+5*time.Second)
		defer cancel()
		_, rerr := h.Result(ctx)
		took := time.Since(start)
		t.Logf("dbosgen's handle returned %v %v after the CLI started", rerr, took.Round(time.Millisecond))
		if !errors.Is(rerr, dbosgen.ErrWorkflowCancelled) {
			t.Errorf("after dbos workflow cancel, dbosgen's Result returned %v; want an error matching dbos.ErrWorkflowCancelled", rerr)
		} else if took > cancelWithin {
			t.Errorf("dbosgen took %v to stop the workflow the CLI cancelled; want at most %v", took, cancelWithin)
		}
		out, err := runCLI(t, "workflow", "get", id, "--db-url", url)
		if err != nil {
			t.Fatal(err)
		}
		var w map[string]any
		if err := json.Unmarshal([]byte(out), &w); err != nil {
			t.Fatalf("dbos workflow get: %v\n%s", err, out)
		}
		checkField(t, "dbos workflow get "+id+" after cancel", w, "status", "CANCELLED")
	})

	t.Run("delete", func(t *testing.T) {
		if _, err := runCLI(t, "workflow", "delete", "add-1", "--db-url", url); err != nil {
			t.Fatal(err)
		}
		if _, err := runCLI(t, "workflow", "get", "add-1", "--db-url", url); err == nil || !strings.Contains(err.Error(), "workflow not found") {
			t.Errorf("dbos workflow get add-1 after dbos workflow delete add-1: %v; want 'workflow not found'", err)
		}
		if _, err := dbosgen.RetrieveWorkflow[int](on(rt), "add-1"); !errors.Is(err, dbosgen.ErrWorkflowNotFound) {
			t.Errorf("after dbos workflow delete add-1, dbosgen's RetrieveWorkflow returned %v; want dbos.ErrWorkflowNotFound", err)
		}
		var n int
		query(t, url, `SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'add-1'`, nil, &n)
		if n != 0 {
			t.Errorf("after dbos workflow delete add-1, %d of its steps remain in dbos.operation_outputs", n)
		}
	})
}

// checkField compares a field of a JSON object printed by the CLI.
func checkField(t *testing.T, what string, obj map[string]any, key string, want any) {
	t.Helper()
	got, ok := obj[key]
	if !ok {
		t.Errorf("%s: no %q field in %v", what, key, obj)
		return
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: %s = %v, want %v", what, key, got, want)
	}
}
