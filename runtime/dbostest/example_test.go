package dbostest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/dbosgen/dbosgen/runtime/dbostest"
	"github.com/dbosgen/dbosgen/runtime/dbostest/internal/shop"
)

// In a test, t is its *testing.T. Examples have none, so these use
// exampleT, which does what the test would: cleanups at the end, failures
// printed.

// Launch gives a test its own runtime and database, shut down and removed
// when the test ends.
func ExampleLaunch() {
	t := newExampleT("ExampleLaunch")
	defer t.end()

	rt := dbostest.Launch(t, dbostest.WithConfig(dbos.Config{Setup: shop.CreateTables}))
	ctx := dbos.WithWorkflowID(rt.Context(), "order-1")
	r, err := shop.CheckoutWorkflow(ctx, shop.Order{ID: "order-1", SKU: "widget", Qty: 2})
	fmt.Println(r.Charge, r.Left, err)
	// Output:
	// ch-order-1-3998 98 <nil>
}

// CrashAfter stops a workflow as if its process died after its second step;
// Restart is the next process, whose Launch recovers it: the two recorded
// steps are not run again.
func ExampleCrashAfter() {
	t := newExampleT("ExampleCrashAfter")
	defer t.end()

	rt := dbostest.Launch(t, dbostest.WithConfig(dbos.Config{Setup: shop.CreateTables}))
	ctx := dbos.WithWorkflowID(rt.Context(), "order-2")
	_, err := shop.CheckoutWorkflow(dbostest.CrashAfter(ctx, 2), shop.Order{ID: "order-2", SKU: "widget", Qty: 1})
	fmt.Println("crashed:", errors.Is(err, dbostest.ErrCrashed))
	st, _ := rt.WorkflowStatus(ctx, "order-2")
	fmt.Println("status:", st.Status)

	rt = rt.Restart()
	h, _ := dbos.RetrieveWorkflow[shop.Receipt](rt.Context(), "order-2")
	r, err := h.Result(rt.Context())
	fmt.Println("recovered:", r.Label, r.Notified, err)
	fmt.Println("reserve ran", shop.Ran("reserve", "order-2"), "time; charge", shop.Ran("charge", "order-2"), "time")
	// Output:
	// crashed: true
	// status: PENDING
	// recovered: lbl-order-2 notified order-2 <nil>
	// reserve ran 1 time; charge 1 time
}

// Replay runs a finished workflow again against its history. Quote reads a
// discount it was not given: once it changes, its replay returns another
// result, and Replay fails the test.
func ExampleReplay() {
	t := newExampleT("ExampleReplay")
	defer t.end()

	rt := dbostest.Launch(t)
	p, err := shop.QuoteWorkflow(dbos.WithWorkflowID(rt.Context(), "quote-1"), "widget")
	fmt.Println("quoted", p, err)
	dbostest.Replay(t, rt, "quote-1") // same path, same result: passes

	shop.Pricing.Discount = 10
	defer func() { shop.Pricing.Discount = 0 }()
	dbostest.Replay(t, rt, "quote-1")
	// Output:
	// quoted 100 <nil>
	// FAIL: dbostest.Replay: dbos: workflow is not deterministic: replay of workflow quote-1 (github.com/dbosgen/dbosgen/runtime/dbostest/internal/shop.Quote): it returned 90, the recorded execution 100
}

// exampleT is the part of a *testing.T the examples need.
type exampleT struct {
	testing.TB // nil: only the methods below are called
	name       string
	ctx        context.Context
	cancel     context.CancelFunc
	cleanups   []func()
}

func newExampleT(name string) *exampleT {
	ctx, cancel := context.WithCancel(context.Background())
	return &exampleT{name: name, ctx: ctx, cancel: cancel}
}

func (t *exampleT) Helper()                  {}
func (t *exampleT) Name() string             { return t.name }
func (t *exampleT) Context() context.Context { return t.ctx }
func (t *exampleT) Cleanup(f func())         { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Log(...any)               {}
func (t *exampleT) Logf(string, ...any)      {}

func (t *exampleT) Errorf(format string, args ...any) { fmt.Printf("FAIL: "+format+"\n", args...) }

func (t *exampleT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

func (t *exampleT) TempDir() string {
	dir, err := os.MkdirTemp("", t.name)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// end does what the end of a test does: its context ends, then its
// cleanups run, last registered first.
func (t *exampleT) end() {
	t.cancel()
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
