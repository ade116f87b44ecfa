package interop

import (
	"context"
	"testing"
	"time"

	sdk "github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/dbosgen/dbosgen/interop/app"
	dbosgen "github.com/dbosgen/dbosgen/runtime/dbos"
)

// TestSharedDatabase runs a DBOS executor and a dbosgen executor on one
// system database. Both use executor ID "local" and application version
// "interop-v1", so only application_name separates them. Each leaves a
// PENDING workflow behind (dbosgen by rt.Shutdown mid-step, DBOS by a
// SIGKILLed child process); each Launch must recover its own and leave the
// other's alone. Then both run side by side, dbosgen launches cleanly again,
// and dbosgen's own basic checks still pass on that database.
func TestSharedDatabase(t *testing.T) {
	url := newDB(t)
	const (
		genPending = "gen-pending"
		sdkPending = "sdk-pending"
	)

	// 1. dbosgen makes the schema, and leaves a workflow PENDING with one
	//    step recorded.
	rt1 := launchGen(t, url)
	if _, err := app.StartBlockWorkflow(dbosgen.WithWorkflowID(on(rt1), genPending), genPending); err != nil {
		t.Fatalf("dbosgen StartBlock: %v", err)
	}
	waitClosed(t, app.Entered(genPending), 15*time.Second, "dbosgen workflow "+genPending+" to reach its waiting step")
	shutdownGen(t, rt1)
	genBefore := readRow(t, url, genPending)
	if genBefore.Status != "PENDING" || genBefore.AppName != genApp {
		t.Fatalf("after rt.Shutdown mid-workflow, %s is %s; want PENDING, application_name %s", genPending, genBefore, genApp)
	}

	// 2. A DBOS executor launches on that database (its Launch recovers its
	//    executor's PENDING workflows of its version), runs a workflow of its
	//    own and dies with SIGKILL in the middle of it.
	crashSDKChild(t, url, sdkPending)
	sdkBefore := readRow(t, url, sdkPending)
	if sdkBefore.Status != "PENDING" || sdkBefore.AppName != sdkApp {
		t.Fatalf("after the DBOS executor's SIGKILL, %s is %s; want PENDING, application_name %s", sdkPending, sdkBefore, sdkApp)
	}
	if got := readRow(t, url, genPending); got != genBefore {
		t.Errorf("the DBOS executor's Launch touched dbosgen's PENDING workflow %s:\n  before %s\n  after  %s", genPending, genBefore, got)
	}

	// 3. dbosgen launches again: it resumes its own workflow after its
	//    recorded step and leaves DBOS's alone.
	app.Release(genPending)
	rt2 := launchGen(t, url)
	if p := rt2.RecoveryProblems(); len(p) != 0 {
		t.Errorf("dbosgen's Launch reported recovery problems (it looked at workflows that are not its own?): %v", p)
	}
	h, err := dbosgen.RetrieveWorkflow[string](on(rt2), genPending)
	if err != nil {
		t.Fatalf("dbosgen RetrieveWorkflow(%s): %v", genPending, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if got, err := h.Result(ctx); err != nil || got != "prepared gen-pending, released gen-pending" {
		t.Errorf("dbosgen's recovered %s returned %q, %v", genPending, got, err)
	}
	if n := app.Calls("prepare:" + genPending); n != 1 {
		t.Errorf("dbosgen's recovery ran the recorded prepare step again (%d runs, want 1)", n)
	}
	if got := readRow(t, url, sdkPending); got != sdkBefore {
		t.Errorf("dbosgen's Launch touched the DBOS executor's PENDING workflow %s:\n  before %s\n  after  %s", sdkPending, sdkBefore, got)
	}

	// 4. A DBOS executor launches while dbosgen runs: it resumes its own
	//    workflow after its recorded step (which ran in the killed child).
	sdkRelease(sdkPending)
	dctx := newSDKExecutor(t, url)
	sh, err := sdk.RetrieveWorkflow[string](dctx, sdkPending)
	if err != nil {
		t.Fatalf("DBOS RetrieveWorkflow(%s): %v", sdkPending, err)
	}
	if got, err := sh.GetResult(sdk.WithHandleTimeout(30 * time.Second)); err != nil || got != "sdk prepared sdk-pending, sdk released sdk-pending" {
		t.Errorf("the DBOS executor's recovered %s returned %q, %v", sdkPending, got, err)
	}
	if n := sdkCallCount("prepare:" + sdkPending); n != 0 {
		t.Errorf("the DBOS executor's recovery ran the recorded step again in this process (%d runs, want 0)", n)
	}

	// 5. Both run new workflows at once on the shared database.
	sdkRelease("sdk-live")
	sdkH, err := sdk.RunWorkflow(dctx, sdkBlock, "sdk-live", sdk.WithWorkflowID("sdk-live"))
	if err != nil {
		t.Fatalf("DBOS RunWorkflow(sdk-live): %v", err)
	}
	order := app.Order{ID: "order-live", SKU: "gizmo", Qty: 3, Email: "grace@example.com"}
	rcpt, err := app.ProcessOrderWorkflow(dbosgen.WithWorkflowID(on(rt2), "order-live"), order)
	if err != nil || rcpt.Total != 3*app.UnitPrice {
		t.Errorf("dbosgen ProcessOrder next to a DBOS executor: %+v, %v", rcpt, err)
	}
	if got, err := sdkH.GetResult(sdk.WithHandleTimeout(30 * time.Second)); err != nil || got != "sdk prepared sdk-live, sdk released sdk-live" {
		t.Errorf("DBOS sdkBlock next to dbosgen: %q, %v", got, err)
	}

	// Every row belongs to the application that wrote it.
	for id, owner := range map[string]string{genPending: genApp, "order-live": genApp, sdkPending: sdkApp, "sdk-live": sdkApp} {
		if r := readRow(t, url, id); r.AppName != owner || r.Status != "SUCCESS" {
			t.Errorf("%s: %s; want SUCCESS, application_name %s", id, r, owner)
		}
	}
	nameless := newClient(t, url, "")
	all, err := sdk.ListWorkflows(nameless)
	if err != nil || len(all) != 4 {
		t.Errorf("a nameless DBOS client lists %v (err %v); want the 4 workflows of both applications", ids(all), err)
	}

	shutdownSDK(t, dctx)
	shutdownGen(t, rt2)

	// 6. dbosgen still launches cleanly on the shared database, and its own
	//    basic checks pass there.
	rt3 := launchGen(t, url)
	if p := rt3.RecoveryProblems(); len(p) != 0 {
		t.Errorf("dbosgen's Launch on the shared database reported recovery problems: %v", p)
	}
	conformance(t, url, rt3)
}

// TestDBOSMadeDatabase is the other way round: the DBOS SDK creates the
// system database (all its migrations) and runs a workflow; dbosgen then
// launches on it, runs its workflows, and a DBOS client reads them.
func TestDBOSMadeDatabase(t *testing.T) {
	url := newDB(t)
	dctx := newSDKExecutor(t, url)
	sdkRelease("sdk-first")
	h, err := sdk.RunWorkflow(dctx, sdkBlock, "sdk-first", sdk.WithWorkflowID("sdk-first"))
	if err != nil {
		t.Fatalf("DBOS RunWorkflow: %v", err)
	}
	if _, err := h.GetResult(sdk.WithHandleTimeout(30 * time.Second)); err != nil {
		t.Fatalf("DBOS sdkBlock: %v", err)
	}
	shutdownSDK(t, dctx)

	rt := launchGen(t, url)
	if p := rt.RecoveryProblems(); len(p) != 0 {
		t.Errorf("dbosgen's Launch on a DBOS-made database reported recovery problems: %v", p)
	}
	run := runGen(t, rt)
	c := newClient(t, url, genApp)
	hr, err := sdk.RetrieveWorkflow[app.Receipt](c, "order-1")
	if err != nil {
		t.Fatalf("DBOS client RetrieveWorkflow(order-1): %v", err)
	}
	if got, err := hr.GetResult(sdk.WithHandleTimeout(10 * time.Second)); err != nil || got != run.receipt {
		t.Errorf("DBOS RetrieveWorkflow[app.Receipt](order-1).GetResult() = %+v, %v; want %+v", got, err, run.receipt)
	}
	if st := steps(t, c, "order-1"); len(st) != 4 {
		t.Errorf("the DBOS client sees steps %v of order-1, want 4", stepNames(st))
	}
	if r := readRow(t, url, "sdk-first"); r.Status != "SUCCESS" || r.AppName != sdkApp {
		t.Errorf("sdk-first after dbosgen launched: %s", r)
	}
	conformance(t, url, rt)
}

// conformance is a small set of dbosgen's own checks, run on a database that
// DBOS tools have used: a workflow runs; a finished workflow called again with
// its ID returns its recorded result without running; an interrupted workflow
// resumes with its recorded step replayed, not re-run. It shuts rt down.
func conformance(t *testing.T, url string, rt *dbosgen.Runtime) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The app's counters and gates are per process: keys are per test.
	key := "conf-replay-" + t.Name()
	o := app.Order{ID: "conf-order", SKU: "sprocket", Qty: 4, Email: "conf@example.com"}
	first, err := app.ProcessOrderWorkflow(dbosgen.WithWorkflowID(dbosgen.WithRuntime(ctx, rt), "conf-order"), o)
	if err != nil || first.Total != 4*app.UnitPrice || first.ChargeID != "ch-conf-order" {
		t.Fatalf("conformance: dbosgen ProcessOrder: %+v, %v", first, err)
	}
	charges := app.Calls("charge:conf-order")
	again, err := app.ProcessOrderWorkflow(dbosgen.WithWorkflowID(dbosgen.WithRuntime(ctx, rt), "conf-order"), o)
	if err != nil || again != first {
		t.Errorf("conformance: ProcessOrder again with its ID returned %+v, %v; want the recorded %+v", again, err, first)
	}
	if app.Calls("charge:conf-order") != charges {
		t.Errorf("conformance: ProcessOrder again with a finished workflow's ID ran its steps again")
	}

	if _, err := app.StartBlockWorkflow(dbosgen.WithWorkflowID(dbosgen.WithRuntime(ctx, rt), key), key); err != nil {
		t.Fatalf("conformance: StartBlock: %v", err)
	}
	waitClosed(t, app.Entered(key), 15*time.Second, "conformance: Block to reach its waiting step")
	shutdownGen(t, rt)
	if r := readRow(t, url, key); r.Status != "PENDING" {
		t.Fatalf("conformance: after rt.Shutdown mid-workflow, %s is %s; want PENDING", key, r)
	}
	app.Release(key)
	rt2 := launchGen(t, url)
	got, err := app.BlockWorkflow(dbosgen.WithWorkflowID(dbosgen.WithRuntime(ctx, rt2), key), key)
	if err != nil || got != "prepared "+key+", released "+key {
		t.Errorf("conformance: the resumed Block returned %q, %v", got, err)
	}
	if n := app.Calls("prepare:" + key); n != 1 {
		t.Errorf("conformance: the resumed Block ran its recorded prepare step again (%d runs, want 1)", n)
	}
	c := newClient(t, url, genApp)
	if st := steps(t, c, key); len(st) != 2 {
		t.Errorf("conformance: the DBOS client sees steps %v of %s, want prepare and waitForRelease", stepNames(st), key)
	}
}

// TestRecoversDBOSWrittenWorkflow: a DBOS executor of dbosgen's application
// starts app.Greet by name with a single input, in the Go SDK's default
// DBOS_JSON and in portable_json, and dies before any step; dbosgen's Launch
// recovers each from the row and input DBOS wrote (the single input as is),
// and a DBOS client then reads the result dbosgen recorded.
func TestRecoversDBOSWrittenWorkflow(t *testing.T) {
	url := newDB(t)
	crashChild(t, "sdk-as-gen", url, "dbos-written")
	for _, format := range []string{"DBOS_JSON", "portable_json"} {
		id := "dbos-written-" + format
		var ser, input string
		query(t, url, `SELECT COALESCE(s.serialization, '<NULL>'), COALESCE(i.inputs, '<NULL>')
			FROM dbos.workflow_status s LEFT JOIN dbos.workflow_input i USING (workflow_uuid)
			WHERE s.workflow_uuid = $1`, []any{id}, &ser, &input)
		t.Logf("%s: DBOS wrote serialization %s, inputs %s; row %s", id, ser, input, readRow(t, url, id))
		if ser != format {
			t.Fatalf("%s: the DBOS child wrote serialization %q, want %q", id, ser, format)
		}
	}

	before := app.Calls("greeting:Grace")
	rt := launchGen(t, url)
	if p := rt.RecoveryProblems(); len(p) != 0 {
		t.Errorf("dbosgen could not recover workflows DBOS started: %v", p)
	}
	c := newClient(t, url, genApp)
	for _, format := range []string{"DBOS_JSON", "portable_json"} {
		id := "dbos-written-" + format
		h, err := dbosgen.RetrieveWorkflow[string](on(rt), id)
		if err != nil {
			t.Errorf("%s: dbosgen RetrieveWorkflow: %v", id, err)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		got, err := h.Result(ctx)
		cancel()
		if err != nil || got != "Hello, Grace!" {
			t.Errorf("%s: dbosgen's recovery of a workflow DBOS started with input \"Grace\" in %s returned %q, %v; want \"Hello, Grace!\"", id, format, got, err)
		}
		// Called again with its ID, the finished workflow returns the
		// output dbosgen recorded, read back from the row DBOS made.
		if got, err := app.GreetWorkflow(dbosgen.WithWorkflowID(on(rt), id), "Grace"); err != nil || got != "Hello, Grace!" {
			t.Errorf("%s: dbosgen Greet called again with the ID of the finished workflow (row serialization %s) returned %q, %v; want its recorded \"Hello, Grace!\"", id, format, got, err)
		}
		sh, err := sdk.RetrieveWorkflow[string](c, id)
		if err != nil {
			t.Errorf("%s: DBOS client RetrieveWorkflow: %v", id, err)
			continue
		}
		if got, err := sh.GetResult(sdk.WithHandleTimeout(10 * time.Second)); err != nil || got != "Hello, Grace!" {
			t.Errorf("%s: the DBOS client reads the result dbosgen recorded (row serialization %s) as %q, %v", id, format, got, err)
		}
		if st := steps(t, c, id); len(st) != 1 || st[0].StepName != appPkg+".greeting" {
			t.Errorf("%s: the DBOS client sees steps %v; want one, %s.greeting", id, stepNames(st), appPkg)
		}
	}
	if n := app.Calls("greeting:Grace") - before; n != 2 {
		t.Errorf("dbosgen ran Greet's step %d times for the two recovered workflows, want 2", n)
	}
}
