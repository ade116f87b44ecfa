package dbostest_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	"github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/dbosgen/dbosgen/runtime/dbostest"
	"github.com/dbosgen/dbosgen/runtime/dbostest/internal/shop"
)

// engines runs f on SQLite and on a PostgreSQL database of its own.
func engines(t *testing.T, f func(t *testing.T, db dbostest.Option)) {
	t.Run("sqlite", func(t *testing.T) { f(t, dbostest.WithSQLite()) })
	t.Run("postgres", func(t *testing.T) { f(t, dbostest.WithPostgres(dbtest.AdminURL())) })
}

func withTables() dbostest.Option { return dbostest.WithConfig(dbos.Config{Setup: shop.CreateTables}) }

func want(t *testing.T, id string) shop.Receipt {
	return shop.Receipt{OrderID: id, Left: 97, Charge: fmt.Sprintf("ch-%s-5997", id), Label: "lbl-" + id, Notified: "notified " + id}
}

// TestCrashAtEveryPoint crashes a checkout at each of its points (before
// each of its five step IDs, and after the last), recovers it with a
// restart, and checks the receipt, that each step ran exactly once across
// the crash (the ones before it replayed from their checkpoints), that the
// stock was reserved once, and that the recovered workflow replays cleanly.
func TestCrashAtEveryPoint(t *testing.T) {
	engines(t, func(t *testing.T, db dbostest.Option) {
		for n := 0; n <= 5; n++ {
			t.Run(fmt.Sprint("after_", n), func(t *testing.T) {
				id := fmt.Sprintf("crash-%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), n)
				rt := dbostest.Launch(t, db, withTables())
				ctx := dbos.WithWorkflowID(rt.Context(), id)
				_, err := shop.CheckoutWorkflow(dbostest.CrashAfter(ctx, n), shop.Order{ID: id, SKU: "widget", Qty: 3})
				if !errors.Is(err, dbostest.ErrCrashed) {
					t.Fatalf("crash after %d: %v, want ErrCrashed", n, err)
				}
				st, err := rt.WorkflowStatus(ctx, id)
				if err != nil || st.Status != dbos.StatusPending {
					t.Fatalf("status after the crash: %+v, %v; want PENDING", st, err)
				}

				rt = rt.Restart()
				h, err := dbos.RetrieveWorkflow[shop.Receipt](rt.Context(), id)
				if err != nil {
					t.Fatal(err)
				}
				got, err := h.Result(rt.Context())
				if err != nil || got != want(t, id) {
					t.Fatalf("recovered: %+v, %v; want %+v", got, err, want(t, id))
				}
				for _, step := range []string{"reserve", "charge", "label"} {
					if c := shop.Ran(step, id); c != 1 {
						t.Errorf("step %s ran %d times, want once", step, c)
					}
				}
				var left int
				if err := rt.AppDB().GetContext(rt.Context(), &left, "SELECT qty FROM stock WHERE sku = 'widget'"); err != nil || left != 97 {
					t.Errorf("stock left: %d, %v; want 97 (reserved once)", left, err)
				}
				dbostest.Replay(t, rt, id)
			})
		}
	})
}

// TestCrashThenCallAgain recovers in the same runtime: calling the workflow
// again with its ID resumes it.
func TestCrashThenCallAgain(t *testing.T) {
	rt := dbostest.Launch(t, withTables())
	id := "again-1"
	ctx := dbos.WithWorkflowID(rt.Context(), id)
	o := shop.Order{ID: id, SKU: "widget", Qty: 3}
	if _, err := shop.CheckoutWorkflow(dbostest.CrashAfter(ctx, 1), o); !errors.Is(err, dbostest.ErrCrashed) {
		t.Fatalf("got %v, want ErrCrashed", err)
	}
	got, err := shop.CheckoutWorkflow(ctx, o)
	if err != nil || got != want(t, id) {
		t.Fatalf("called again: %+v, %v", got, err)
	}
	if c := shop.Ran("reserve", id); c != 1 {
		t.Errorf("reserve ran %d times, want once", c)
	}
}

// recorder is a testing.TB that keeps the failures Replay reports.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func replayFailures(t *testing.T, rt *dbostest.Runtime, id string) string {
	t.Helper()
	r := &recorder{TB: t}
	dbostest.Replay(r, rt, id)
	return strings.Join(r.errs, "\n")
}

// TestReplay runs Quote, then replays it with the state its body reads
// changed in each way that matters, and once unchanged.
func TestReplay(t *testing.T) {
	engines(t, func(t *testing.T, db dbostest.Option) {
		rt := dbostest.Launch(t, db)
		defer func() { shop.Pricing.Discount, shop.Pricing.Express, shop.Pricing.Gift = 0, false, false }()
		run := func(id string) {
			t.Helper()
			if _, err := shop.QuoteWorkflow(dbos.WithWorkflowID(rt.Context(), id), "widget"); err != nil {
				t.Fatal(err)
			}
		}
		shop.Pricing.Express = true
		run("express") // price, expedite: 120
		shop.Pricing.Express = false
		run("plain") // price: 100

		for _, c := range []struct {
			name, id string
			set      func()
			want     string // in the failure; "" for none
		}{
			{"unchanged", "plain", func() {}, ""},
			{"unchanged with two steps", "express", func() { shop.Pricing.Express = true }, ""},
			{"changed result", "plain", func() { shop.Pricing.Discount = 10 }, "it returned 90, the recorded execution 100"},
			{"extra step", "plain", func() { shop.Pricing.Express = true }, "step 2 was not recorded: the recorded execution stopped at step 1"},
			{"missing step", "express", func() {}, "the replay called 1 steps, the recorded execution 2: step 2 (" + expediteName + ") was not called"},
			{"other step", "express", func() { shop.Pricing.Gift = true }, `step 2 was recorded as "` + expediteName + `", the replay called "` + wrapName + `"`},
		} {
			t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
				shop.Pricing.Discount, shop.Pricing.Express, shop.Pricing.Gift = 0, false, false
				c.set()
				got := replayFailures(t, rt, c.id)
				switch {
				case c.want == "" && got != "":
					t.Errorf("Replay failed the test: %s", got)
				case c.want != "" && !strings.Contains(got, c.want):
					t.Errorf("Replay reported %q, want it to say %q", got, c.want)
				case c.want != "" && !strings.Contains(got, dbos.ErrNondeterministic.Error()):
					t.Errorf("Replay reported %q, not ErrNondeterministic", got)
				}
			})
		}
	})
}

const (
	expediteName = "github.com/dbosgen/dbosgen/runtime/dbostest/internal/shop.expedite"
	wrapName     = "github.com/dbosgen/dbosgen/runtime/dbostest/internal/shop.wrap"
)

// TestReplayRunsAndWritesNothing replays a checkout: no step body runs, the
// workflow's row is untouched, the stock too.
func TestReplayRunsAndWritesNothing(t *testing.T) {
	rt := dbostest.Launch(t, withTables())
	id := "replay-nothing"
	ctx := dbos.WithWorkflowID(rt.Context(), id)
	if _, err := shop.CheckoutWorkflow(ctx, shop.Order{ID: id, SKU: "widget", Qty: 3}); err != nil {
		t.Fatal(err)
	}
	before, err := rt.WorkflowStatus(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		dbostest.Replay(t, rt, id)
	}
	after, err := rt.WorkflowStatus(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if after.UpdatedAt != before.UpdatedAt || after.RecoveryAttempts != before.RecoveryAttempts || after.Status != before.Status {
		t.Errorf("the workflow's row changed: %+v, was %+v", after, before)
	}
	for _, step := range []string{"reserve", "charge", "label"} {
		if c := shop.Ran(step, id); c != 1 {
			t.Errorf("step %s ran %d times, want once (replays run nothing)", step, c)
		}
	}
	var left int
	if err := rt.AppDB().GetContext(ctx, &left, "SELECT qty FROM stock WHERE sku = 'widget'"); err != nil || left != 97 {
		t.Errorf("stock left: %d, %v; want 97", left, err)
	}
}

// TestReplayRefusesUnfinished: a PENDING workflow has no outcome to compare.
func TestReplayRefusesUnfinished(t *testing.T) {
	rt := dbostest.Launch(t, withTables())
	ctx := dbos.WithWorkflowID(rt.Context(), "unfinished")
	if _, err := shop.CheckoutWorkflow(dbostest.CrashAfter(ctx, 2), shop.Order{ID: "unfinished", SKU: "widget", Qty: 1}); !errors.Is(err, dbostest.ErrCrashed) {
		t.Fatal(err)
	}
	if got := replayFailures(t, rt, "unfinished"); !strings.Contains(got, "is PENDING: only a finished workflow") {
		t.Errorf("Replay of a PENDING workflow reported %q", got)
	}
	if got := replayFailures(t, rt, "nobody"); !strings.Contains(got, dbos.ErrWorkflowNotFound.Error()) {
		t.Errorf("Replay of an unknown ID reported %q", got)
	}
}

// TestLaunchIsolates gives each runtime its own database: parallel tests
// with the same workflow IDs do not meet.
func TestLaunchIsolates(t *testing.T) {
	for i := range 3 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			rt := dbostest.Launch(t)
			ctx := dbos.WithWorkflowID(rt.Context(), "same-id")
			if _, err := shop.QuoteWorkflow(ctx, "widget"); err != nil {
				t.Fatal(err)
			}
			st, err := rt.WorkflowStatus(ctx, "same-id")
			if err != nil || st.RecoveryAttempts != 1 {
				t.Errorf("status %+v, %v: want a workflow started once, here", st, err)
			}
		})
	}
}
