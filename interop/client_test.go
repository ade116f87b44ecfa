package interop

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	sdk "github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/dbosgen/dbosgen/interop/app"
	dbosgen "github.com/dbosgen/dbosgen/runtime/dbos"
)

// genRun is what ranGen leaves on a database: finished dbosgen workflows
// and what dbosgen returned for them.
type genRun struct {
	receipt app.Receipt
	failErr error
}

var order1 = app.Order{ID: "order-1", SKU: "widget", Qty: 2, Email: "ada@example.com"}

const failReason = "too big"

// runGen runs one of each finished dbosgen workflow: order-1 (ProcessOrder),
// fail-1 (Fail), greet-1 (Greet "Ada"), add-1 (Add 2 3).
func runGen(t *testing.T, rt *dbosgen.Runtime) genRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(on(rt), 30*time.Second)
	defer cancel()
	var r genRun
	var err error
	if r.receipt, err = app.ProcessOrderWorkflow(dbosgen.WithWorkflowID(ctx, "order-1"), order1); err != nil {
		t.Fatalf("dbosgen ProcessOrder: %v", err)
	}
	if _, r.failErr = app.FailWorkflow(dbosgen.WithWorkflowID(ctx, "fail-1"), failReason); !errors.Is(r.failErr, app.ErrRejected) {
		t.Fatalf("dbosgen Fail returned %v, want an error matching app.ErrRejected", r.failErr)
	}
	if got, err := app.GreetWorkflow(dbosgen.WithWorkflowID(ctx, "greet-1"), "Ada"); err != nil || got != "Hello, Ada!" {
		t.Fatalf("dbosgen Greet: %q, %v", got, err)
	}
	if got, err := app.AddWorkflow(dbosgen.WithWorkflowID(ctx, "add-1"), 2, 3); err != nil || got != 5 {
		t.Fatalf("dbosgen Add: %d, %v", got, err)
	}
	return r
}

func receiptJSON(r app.Receipt) string {
	return fmt.Sprintf(`{"order_id":%q,"total":%d,"charge_id":%q,"row":%d,"notified":%t}`,
		r.OrderID, r.Total, r.ChargeID, r.Row, r.Notified)
}

// TestClient runs dbosgen workflows, then reads and operates them with the
// DBOS Go SDK v1.8.0's client.
func TestClient(t *testing.T) {
	url := newDB(t)
	rt := launchGen(t, url)
	run := runGen(t, rt)
	c := newClient(t, url, genApp)

	t.Run("ListWorkflows", func(t *testing.T) {
		want := []struct {
			id, name, status, input, output string
		}{
			{"order-1", appPkg + ".ProcessOrder", "SUCCESS",
				`{"positionalArgs":[{"id":"order-1","sku":"widget","qty":2,"email":"ada@example.com"}],"namedArgs":{}}`,
				receiptJSON(run.receipt)},
			{"fail-1", appPkg + ".Fail", "ERROR", `{"positionalArgs":["too big"],"namedArgs":{}}`, ``},
			{"greet-1", appPkg + ".Greet", "SUCCESS", `{"positionalArgs":["Ada"],"namedArgs":{}}`, `"Hello, Ada!"`},
			{"add-1", appPkg + ".Add", "SUCCESS", `{"positionalArgs":[2,3],"namedArgs":{}}`, `5`},
		}
		all, err := sdk.ListWorkflows(c, sdk.WithFilterLoadInput(true), sdk.WithFilterLoadOutput(true))
		if err != nil {
			t.Fatalf("DBOS client ListWorkflows: %v", err)
		}
		byID := map[string]sdk.WorkflowStatus{}
		for _, w := range all {
			byID[w.ID] = w
		}
		if len(all) != len(want) {
			t.Errorf("DBOS client ListWorkflows returned %d workflows, want %d: %v", len(all), len(want), ids(all))
		}
		for _, w := range want {
			got, ok := byID[w.id]
			if !ok {
				t.Errorf("%s: not listed by the DBOS client", w.id)
				continue
			}
			if string(got.Status) != w.status {
				t.Errorf("%s: status %q, want %q", w.id, got.Status, w.status)
			}
			if got.Name != w.name {
				t.Errorf("%s: name %q, want %q", w.id, got.Name, w.name)
			}
			if got.ApplicationName != genApp {
				t.Errorf("%s: application_name %q, want %q (Config.AppName)", w.id, got.ApplicationName, genApp)
			}
			if got.ExecutorID != executorID || got.ApplicationVersion != appVersion {
				t.Errorf("%s: executor_id %q, application_version %q; want %q, %q", w.id, got.ExecutorID, got.ApplicationVersion, executorID, appVersion)
			}
			if got.Serialization != sdk.PortableSerializerName {
				t.Errorf("%s: serialization %q, want %q", w.id, got.Serialization, sdk.PortableSerializerName)
			}
			if got.CreatedAt.IsZero() || got.UpdatedAt.IsZero() {
				t.Errorf("%s: created_at %v, updated_at %v: want both set", w.id, got.CreatedAt, got.UpdatedAt)
			}
			if got.CompletedAt.IsZero() {
				t.Errorf("%s: completed_at not set on a %s workflow (DBOS sets it on SUCCESS, ERROR and CANCELLED)", w.id, got.Status)
			}
			checkJSON(t, w.id+": input as decoded by the DBOS client", got.Input, w.input)
			if w.output != "" {
				checkJSON(t, w.id+": output as decoded by the DBOS client", got.Output, w.output)
				if got.Error != nil {
					t.Errorf("%s: error %s, want none", w.id, describeErr(got.Error))
				}
			} else {
				if got.Output != nil {
					t.Errorf("%s: output %v, want none", w.id, got.Output)
				}
				pe, ok := portable(got.Error)
				switch {
				case !ok:
					t.Errorf("%s: error %s, want DBOS's portable error {name, message, ...}", w.id, describeErr(got.Error))
				case !strings.Contains(pe.Message, "order rejected: "+failReason) || pe.Name == "":
					t.Errorf("%s: error %s, want a name and the message %q", w.id, describeErr(got.Error), run.failErr.Error())
				default:
					t.Logf("%s: error as DBOS reads it: %s", w.id, describeErr(got.Error))
				}
			}
			t.Logf("%s: status %s, attempts %d, serialization %s", w.id, got.Status, got.Attempts, got.Serialization)
		}

		// Filters DBOS applies in SQL, on its columns.
		if ws, err := sdk.ListWorkflows(c, sdk.WithFilterStatus(sdk.WorkflowStatusError)); err != nil || len(ws) != 1 || ws[0].ID != "fail-1" {
			t.Errorf("DBOS ListWorkflows(WithFilterStatus(ERROR)) = %v, %v; want fail-1 alone", ids(ws), err)
		}
		if ws, err := sdk.ListWorkflows(c, sdk.WithFilterName(appPkg+".Greet")); err != nil || len(ws) != 1 || ws[0].ID != "greet-1" {
			t.Errorf("DBOS ListWorkflows(WithFilterName(%s.Greet)) = %v, %v; want greet-1 alone", appPkg, ids(ws), err)
		}
		if ws, err := sdk.ListWorkflows(c, sdk.WithFilterWorkflowIDPrefix("order-")); err != nil || len(ws) != 1 || ws[0].ID != "order-1" {
			t.Errorf("DBOS ListWorkflows(WithFilterWorkflowIDPrefix(order-)) = %v, %v; want order-1 alone", ids(ws), err)
		}
		if ws, err := sdk.ListWorkflows(c, sdk.WithFilterExecutorIDs(executorID), sdk.WithFilterAppVersion(appVersion)); err != nil || len(ws) != 4 {
			t.Errorf("DBOS ListWorkflows(WithFilterExecutorIDs(%s), WithFilterAppVersion(%s)) = %v, %v; want all 4", executorID, appVersion, ids(ws), err)
		}
	})

	t.Run("GetWorkflowSteps", func(t *testing.T) {
		type step struct {
			name, output, errContains string
		}
		want := map[string][]step{
			"order-1": {
				{name: appPkg + ".priceOf", output: `250`},
				{name: appPkg + ".charge", output: `{"id":"ch-order-1","cents":500}`},
				{name: appPkg + ".recordOrder", output: fmt.Sprint(run.receipt.Row)},
				{name: appPkg + ".notify", output: `null`},
			},
			"fail-1": {
				{name: appPkg + ".audit", output: `"audited too big"`},
				{name: appPkg + ".validate", errContains: "order rejected: too big"},
			},
			"greet-1": {{name: appPkg + ".greeting", output: `"Hello, Ada!"`}},
			"add-1":   {{name: appPkg + ".sum", output: `5`}},
		}
		var noStart []string
		defer func() {
			if len(noStart) > 0 {
				t.Errorf("the DBOS client sees no started_at for %s: dbosgen leaves operation_outputs.started_at_epoch_ms NULL, "+
					"where DBOS records when every step started (GetWorkflowSteps StartedAt, the CLI's started_at, step durations in GetStepAggregates)",
					strings.Join(noStart, ", "))
			}
		}()
		for _, id := range []string{"order-1", "fail-1", "greet-1", "add-1"} {
			got := steps(t, c, id)
			if len(got) != len(want[id]) {
				t.Errorf("%s: the DBOS client sees %d steps %v, want %d", id, len(got), stepNames(got), len(want[id]))
			}
			for i, w := range want[id] {
				if i >= len(got) {
					break
				}
				g := got[i]
				if g.StepID != i+1 {
					t.Errorf("%s: step %d has step ID (function_id) %d, want %d: step IDs count from 1", id, i+1, g.StepID, i+1)
				}
				if g.StepName != w.name {
					t.Errorf("%s: step %d is named %q, want %q", id, i+1, g.StepName, w.name)
				}
				if w.errContains != "" {
					if g.Error == nil || !strings.Contains(g.Error.Error(), w.errContains) {
						t.Errorf("%s: step %d error %s, want one containing %q", id, i+1, describeErr(g.Error), w.errContains)
					}
					if g.Output != nil {
						t.Errorf("%s: step %d output %v alongside its error, want none", id, i+1, g.Output)
					}
				} else {
					if g.Error != nil {
						t.Errorf("%s: step %d error %s, want none", id, i+1, describeErr(g.Error))
					}
					checkJSON(t, fmt.Sprintf("%s: step %d (%s) output as decoded by the DBOS client", id, i+1, w.name), g.Output, w.output)
				}
				switch {
				case g.StartedAt.IsZero():
					noStart = append(noStart, fmt.Sprintf("%s step %d", id, g.StepID))
				case g.CompletedAt.IsZero() || g.CompletedAt.Before(g.StartedAt):
					t.Errorf("%s: step %d started_at %v, completed_at %v: want both set, in order", id, i+1, g.StartedAt, g.CompletedAt)
				}
				if g.CompletedAt.IsZero() {
					t.Errorf("%s: step %d has no completed_at (operation_outputs.completed_at_epoch_ms is NULL)", id, i+1)
				}
			}
		}
	})

	t.Run("RetrieveWorkflow", func(t *testing.T) {
		h, err := sdk.RetrieveWorkflow[app.Receipt](c, "order-1")
		if err != nil {
			t.Fatalf("DBOS client RetrieveWorkflow(order-1): %v", err)
		}
		got, err := h.GetResult(sdk.WithHandleTimeout(10 * time.Second))
		if err != nil || got != run.receipt {
			t.Errorf("DBOS RetrieveWorkflow[app.Receipt](order-1).GetResult() = %+v, %v; want %+v (what dbosgen returned)", got, err, run.receipt)
		}
		if st, err := h.GetStatus(); err != nil || st.Status != sdk.WorkflowStatusSuccess {
			t.Errorf("DBOS handle GetStatus(order-1) = %v, %v; want SUCCESS", st.Status, err)
		}

		hs, err := sdk.RetrieveWorkflow[string](c, "greet-1")
		if err != nil {
			t.Fatalf("DBOS client RetrieveWorkflow(greet-1): %v", err)
		}
		if s, err := hs.GetResult(sdk.WithHandleTimeout(10 * time.Second)); err != nil || s != "Hello, Ada!" {
			t.Errorf("DBOS RetrieveWorkflow[string](greet-1).GetResult() = %q, %v; want %q", s, err, "Hello, Ada!")
		}

		hi, err := sdk.RetrieveWorkflow[int](c, "add-1")
		if err != nil {
			t.Fatalf("DBOS client RetrieveWorkflow(add-1): %v", err)
		}
		if n, err := hi.GetResult(sdk.WithHandleTimeout(10 * time.Second)); err != nil || n != 5 {
			t.Errorf("DBOS RetrieveWorkflow[int](add-1).GetResult() = %d, %v; want 5", n, err)
		}

		hf, err := sdk.RetrieveWorkflow[string](c, "fail-1")
		if err != nil {
			t.Fatalf("DBOS client RetrieveWorkflow(fail-1): %v", err)
		}
		_, ferr := hf.GetResult(sdk.WithHandleTimeout(10 * time.Second))
		if pe, ok := portable(ferr); !ok || !strings.Contains(pe.Message, "order rejected: "+failReason) {
			t.Errorf("DBOS RetrieveWorkflow(fail-1).GetResult() error %s; want DBOS's portable error with message %q", describeErr(ferr), run.failErr.Error())
		}
	})

	t.Run("Ownership", func(t *testing.T) {
		// application_name is Config.AppName on every row dbosgen wrote.
		for _, table := range []string{"workflow_status", "operation_outputs"} {
			var bad, total int
			query(t, url, `SELECT count(*) FILTER (WHERE application_name IS DISTINCT FROM $1), count(*) FROM dbos.`+table,
				[]any{genApp}, &bad, &total)
			if bad > 0 || total == 0 {
				t.Errorf("dbos.%s: %d of %d rows have an application_name other than %q", table, bad, total, genApp)
			}
		}
		// A client of another application sees none of them; a nameless one
		// (as the DBOS CLI is) sees them all.
		other := newClient(t, url, sdkApp)
		if ws, err := sdk.ListWorkflows(other); err != nil || len(ws) != 0 {
			t.Errorf("a DBOS client of application %q lists %v (err %v), want none of %q's workflows", sdkApp, ids(ws), err, genApp)
		}
		nameless := newClient(t, url, "")
		if ws, err := sdk.ListWorkflows(nameless); err != nil || len(ws) != 4 {
			t.Errorf("a nameless DBOS client lists %v (err %v), want the 4 workflows", ids(ws), err)
		}
	})

	t.Run("CancelWorkflow", func(t *testing.T) {
		const id = "block-cancel"
		h, err := app.StartBlockWorkflow(dbosgen.WithWorkflowID(on(rt), id), id)
		if err != nil {
			t.Fatalf("dbosgen StartBlock: %v", err)
		}
		waitClosed(t, app.Entered(id), 15*time.Second, "dbosgen workflow "+id+" to reach its waiting step")
		if w, ok := listOne(t, c, id); !ok || w.Status != sdk.WorkflowStatusPending {
			t.Errorf("before cancelling, the DBOS client lists %s as %v (listed: %t), want PENDING", id, w.Status, ok)
		}

		start := time.Now()
		if err := sdk.CancelWorkflow(c, id); err != nil {
			t.Fatalf("DBOS client CancelWorkflow(%s): %v", id, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), cancelWithin+5*time.Second)
		defer cancel()
		_, rerr := h.Result(ctx)
		took := time.Since(start)
		t.Logf("dbosgen's handle returned %v after %v", rerr, took.Round(time.Millisecond))
		if !errors.Is(rerr, dbosgen.ErrWorkflowCancelled) {
			t.Errorf("after DBOS CancelWorkflow, dbosgen's Result returned %v; want an error matching dbos.ErrWorkflowCancelled", rerr)
		} else if took > cancelWithin {
			t.Errorf("dbosgen took %v to stop the workflow a DBOS client cancelled; want at most %v", took, cancelWithin)
		}
		done, cause := app.Cancelled(id)
		select {
		case <-done:
			t.Logf("the waiting step's context ended with cause: %v", cause())
		case <-time.After(2 * time.Second):
			t.Errorf("the waiting step's context was not cancelled")
		}
		if w, ok := listOne(t, c, id); !ok || w.Status != sdk.WorkflowStatusCancelled {
			t.Errorf("after cancelling, the DBOS client lists %s as %v (listed: %t), want CANCELLED", id, w.Status, ok)
		}
		// The interrupted step is not recorded; the one before it is.
		if got := steps(t, c, id); len(got) != 1 || got[0].StepName != appPkg+".prepare" {
			t.Errorf("after cancelling, the DBOS client sees steps %v; want only %s.prepare (an interrupted step is not recorded)", stepNames(got), appPkg)
		}
	})

	t.Run("DeleteWorkflows", func(t *testing.T) {
		const id = "greet-1"
		if err := sdk.DeleteWorkflows(c, []string{id}); err != nil {
			t.Fatalf("DBOS client DeleteWorkflows(%s): %v", id, err)
		}
		if w, ok := listOne(t, c, id); ok {
			t.Errorf("after DeleteWorkflows, the DBOS client still lists %s (%s)", id, w.Status)
		}
		if got := steps(t, c, id); len(got) != 0 {
			t.Errorf("after DeleteWorkflows, the DBOS client still sees steps %v of %s", stepNames(got), id)
		}
		for _, table := range []string{"workflow_status", "workflow_input", "workflow_output", "operation_outputs"} {
			var n int
			query(t, url, `SELECT count(*) FROM dbos.`+table+` WHERE workflow_uuid = $1`, []any{id}, &n)
			if n != 0 {
				t.Errorf("after DeleteWorkflows, dbos.%s still has %d rows of %s", table, n, id)
			}
		}
		if _, err := dbosgen.RetrieveWorkflow[string](on(rt), id); !errors.Is(err, dbosgen.ErrWorkflowNotFound) {
			t.Errorf("after DeleteWorkflows, dbosgen's RetrieveWorkflow(%s) returned %v; want dbos.ErrWorkflowNotFound", id, err)
		}
		if _, ok := listOne(t, c, "order-1"); !ok {
			t.Errorf("DeleteWorkflows(%s) removed order-1 too", id)
		}
		// The ID is free again: dbosgen runs the workflow afresh.
		before := app.Calls("greeting:Ada")
		if got, err := app.GreetWorkflow(dbosgen.WithWorkflowID(on(rt), id), "Ada"); err != nil || got != "Hello, Ada!" {
			t.Errorf("dbosgen Greet with the deleted workflow's ID: %q, %v", got, err)
		}
		if app.Calls("greeting:Ada") != before+1 {
			t.Errorf("dbosgen Greet with the deleted workflow's ID did not run its step again")
		}
	})
}

func ids(ws []sdk.WorkflowStatus) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.ID+"/"+string(w.Status))
	}
	return out
}

func stepNames(st []sdk.StepInfo) []string {
	var out []string
	for _, s := range st {
		out = append(out, fmt.Sprintf("%d:%s", s.StepID, s.StepName))
	}
	return out
}
