// Command orders is a checkout workflow that survives crashes: it reserves
// stock (a transaction), charges a flaky payment API (a step that retries
// with exponential backoff), then sends a confirmation e-mail (an async step)
// while it records the order (a transaction).
//
// Run it with -crash-after 2 and the process kills itself with SIGKILL right
// after the second step; run the same command again without the flag and it
// resumes from the last completed step: the stock is not reserved twice and
// the card is not charged twice. Run it a third time and the recorded receipt
// comes back without anything running. From the repository root:
//
//	go run ./examples/orders -crash-after 2
//	go run ./examples/orders
//	go run ./examples/orders
//
// Every order is a workflow whose ID is derived from -order, so the same
// order is never placed twice. With no configuration the runtime keeps its
// state in the SQLite file .dbos/orders.sqlite; set
// DBOS_SYSTEM_DATABASE_URL=postgres://... to use PostgreSQL.
package main

//go:generate go run github.com/dbosgen/dbosgen/cmd/dbosgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbosgen/dbosgen/examples/internal/show"
	"github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/dbosgen/dbosgen/runtime/dbosweb"
	"github.com/jmoiron/sqlx"
)

// Order is the workflow's input, stored with it so recovery can replay it.
type Order struct {
	ID    string `json:"id"`
	SKU   string `json:"sku"`
	Qty   int    `json:"qty"`
	Cents int64  `json:"cents"`
	Email string `json:"email"`
}

// Receipt is the workflow's result.
type Receipt struct {
	OrderID        string `json:"order_id"`
	ChargeID       string `json:"charge_id"`
	StockLeft      int    `json:"stock_left"`
	ConfirmationID string `json:"confirmation_id"`
}

// errOutOfStock is registered with the runtime so that, after the error was
// recorded and replayed, errors.Is still recognises it.
var errOutOfStock = errors.New("out of stock")

func init() { dbos.RegisterError(errOutOfStock) }

// Process configuration, set by main before dbos.Launch (which may resume a
// workflow at once). The payment API's URL is not a workflow input: a
// workflow resumed by a later process must call the API that process knows.
var (
	paymentAPI string
	crashAfter int
)

// reserveStock takes qty units of sku off the shelf and returns how many are
// left. It runs in one serializable transaction that also records its
// outcome: however often the workflow is replayed, the stock is decremented
// once.
//
//dbos:transaction
func reserveStock(ctx context.Context, tx *sqlx.Tx, sku string, qty int) (int, error) {
	markRan(ctx, "reserveStock")
	res, err := tx.ExecContext(ctx, tx.Rebind("UPDATE stock SET qty = qty - ? WHERE sku = ? AND qty >= ?"), qty, sku, qty)
	if err != nil {
		return 0, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return 0, err
	} else if n == 0 {
		return 0, fmt.Errorf("%w: cannot reserve %d × %s", errOutOfStock, qty, sku)
	}
	var left int
	err = tx.GetContext(ctx, &left, tx.Rebind("SELECT qty FROM stock WHERE sku = ?"), sku)
	return left, err
}

// chargeCard charges the customer through the payment API. The API is flaky,
// so the step retries: up to 6 attempts, waiting 250ms, 500ms, 1s, 2s, 2s
// (interval × backoff_rate^attempt, capped at max_interval). The order ID is
// the payment API's idempotency key: should the process die after the API
// charged but before the step's checkpoint committed, the step runs again on
// recovery and the API answers with the same charge.
//
//dbos:step retries_allowed max_attempts=6 interval=250ms backoff_rate=2 max_interval=2s
func chargeCard(ctx context.Context, orderID string, cents int64) (string, error) {
	markRan(ctx, "chargeCard")
	info, _ := dbos.CurrentStep(ctx)
	body, _ := json.Marshal(map[string]any{"order": orderID, "cents": cents})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, paymentAPI+"/charges", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Idempotency-Key", orderID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Printf("    attempt %d of %d: POST /charges -> %s\n", info.Attempt+1, info.MaxAttempts, resp.Status)
		return "", fmt.Errorf("payment API: %s", resp.Status)
	}
	var charge struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&charge); err != nil {
		return "", fmt.Errorf("payment API: %w", err)
	}
	fmt.Printf("    attempt %d of %d: POST /charges -> %s, charge %s\n", info.Attempt+1, info.MaxAttempts, resp.Status, charge.ID)
	return charge.ID, nil
}

// sendConfirmation e-mails the customer. The workflow runs it as an async
// step, concurrently with recordOrder.
//
//dbos:step retries_allowed max_attempts=3 interval=100ms
func sendConfirmation(ctx context.Context, email, orderID, chargeID string) (string, error) {
	markRan(ctx, "sendConfirmation")
	fmt.Printf("    sending the confirmation of order %s (charge %s) to %s\n", orderID, chargeID, email)
	select {
	case <-time.After(300 * time.Millisecond): // a slow mail server
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return "msg-" + orderID, nil
}

// recordOrder writes the order row, exactly once.
//
//dbos:transaction
func recordOrder(ctx context.Context, tx *sqlx.Tx, o Order, chargeID string) error {
	markRan(ctx, "recordOrder")
	_, err := tx.ExecContext(ctx, tx.Rebind("INSERT INTO orders (order_id, sku, qty, cents, charge_id) VALUES (?, ?, ?, ?, ?)"),
		o.ID, o.SKU, o.Qty, o.Cents, chargeID)
	return err
}

// checkout is the workflow. Each wrapper call (xTx, xStep, xStepAsync) is
// checkpointed; after a crash the next dbos.Launch runs checkout again, and
// the calls that completed before return their recorded outcomes instead of
// running.
//
//dbos:workflow max_recovery_attempts=10
func checkout(ctx context.Context, o Order) (Receipt, error) {
	id, _ := dbos.WorkflowID(ctx)
	fmt.Printf("workflow %s: checkout of %d × %s for %s\n", id, o.Qty, o.SKU, money(o.Cents))

	left, err := reserveStockTx(ctx, o.SKU, o.Qty)
	if err != nil {
		return Receipt{}, err
	}
	report(ctx, "step 1", "reserveStock (transaction)", fmt.Sprintf("reserved %d × %s, %d left", o.Qty, o.SKU, left))

	chargeID, err := chargeCardStep(ctx, o.ID, o.Cents)
	if err != nil {
		return Receipt{}, err
	}
	report(ctx, "step 2", "chargeCard (step with retries)", "charged "+money(o.Cents)+", charge "+chargeID)

	// The confirmation goes out in the background while the order is
	// recorded. Its step ID is taken here, at the call, so a replay matches
	// it to its checkpoint whichever of the two finishes first.
	confirmation := sendConfirmationStepAsync(ctx, o.Email, o.ID, chargeID)
	fmt.Println("  step 3 sendConfirmation (async step): started in the background")

	if err := recordOrderTx(ctx, o, chargeID); err != nil {
		return Receipt{}, err
	}
	report(ctx, "step 4", "recordOrder (transaction)", "order row written")

	msgID, err := confirmation.Get(ctx)
	if err != nil {
		return Receipt{}, err
	}
	report(ctx, "step 3", "sendConfirmation (async step)", "confirmation "+msgID+" sent")

	return Receipt{OrderID: o.ID, ChargeID: chargeID, StockLeft: left, ConfirmationID: msgID}, nil
}

// ran holds "workflowID/step" for every step body that ran in this process,
// so the example can tell a step that ran from one replayed from its
// checkpoint. A real application does not need this.
var (
	ran      sync.Map
	executed atomic.Int32
)

func markRan(ctx context.Context, step string) {
	id, _ := dbos.WorkflowID(ctx)
	ran.Store(id+"/"+step, true)
}

// report prints how a step's outcome was obtained and, with -crash-after,
// kills the process once that many steps have run here. It reads state the
// steps share and may end the process: nondeterministic on purpose, and
// harmless, as it never changes which steps the workflow calls. The allow
// directive tells dbosgen vet so.
//
//dbos:allow demo instrumentation: prints and crashes on request, never changes which steps run
func report(ctx context.Context, label, step, detail string) {
	id, _ := dbos.WorkflowID(ctx)
	name := step
	if i := bytes.IndexByte([]byte(step), ' '); i > 0 {
		name = step[:i]
	}
	if _, ok := ran.Load(id + "/" + name); !ok {
		fmt.Printf("  %s %s: replayed from its checkpoint (did not run again): %s\n", label, step, detail)
		return
	}
	fmt.Printf("  %s %s: done, checkpointed: %s\n", label, step, detail)
	if n := int(executed.Add(1)); n == crashAfter {
		fmt.Printf("\n*** -crash-after %d: killing this process with SIGKILL now. ***\n", n)
		fmt.Println("*** Run the same command again without -crash-after: the workflow resumes after the last completed step. ***")
		die()
	}
}

func money(cents int64) string { return fmt.Sprintf("$%d.%02d", cents/100, cents%100) }

// flakyPaymentServer answers POST /charges with a charge ID, after failing
// the first failures requests with 503. Requests with an Idempotency-Key seen
// before get the same charge back, as with real payment APIs.
func flakyPaymentServer(failures int64) *httptest.Server {
	var (
		calls   atomic.Int64
		mu      sync.Mutex
		charges = map[string]string{}
	)
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/charges" {
			http.NotFound(w, r)
			return
		}
		if calls.Add(1) <= failures {
			http.Error(w, "payment processor busy", http.StatusServiceUnavailable)
			return
		}
		key := r.Header.Get("Idempotency-Key")
		mu.Lock()
		id, ok := charges[key]
		if !ok {
			id = fmt.Sprintf("ch_%d", time.Now().UnixNano()%1_000_000_000)
			charges[key] = id
		}
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]string{"id": id})
	}))
}

// inspectAddr is where -inspect serves the workflow inspector.
var inspectAddr string

func main() {
	order := flag.String("order", "1001", "order number; the workflow ID is order-<number>, so re-running with the same number resumes or returns that order")
	sku := flag.String("sku", "widget", "what to buy")
	qty := flag.Int("qty", 2, "how many")
	email := flag.String("email", "ada@example.com", "where the confirmation goes")
	failures := flag.Int64("failures", 2, "how many requests the payment API fails before it answers")
	flag.IntVar(&crashAfter, "crash-after", 0, "kill the process with SIGKILL after this many steps have run (0: never)")
	flag.StringVar(&inspectAddr, "inspect", "", "serve the workflow inspector on this address (e.g. :8080) and keep running until Ctrl-C")
	flag.Parse()
	o := Order{ID: *order, SKU: *sku, Qty: *qty, Cents: int64(*qty) * 1999, Email: *email}
	if *awaitPaymentFlag {
		err := runAwaitPayment(o)
		if err != nil {
			fmt.Fprintln(os.Stderr, "orders:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o, *failures); err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(1)
	}
}

func run(o Order, failures int64) error {
	ctx := context.Background()
	api := flakyPaymentServer(failures)
	defer api.Close()
	paymentAPI = api.URL
	fmt.Printf("payment API (local, fails its first %d requests): %s\n", failures, api.URL)

	// Launch creates the tables (Setup), then resumes every unfinished
	// workflow of this executor, here and now, from its last completed step.
	fmt.Println("launching the dbos runtime on", show.Database("orders"))
	rt, err := dbos.Launch(ctx, dbos.Config{AppName: "orders", Logger: show.Logger(), Setup: createTables})
	if err != nil {
		return err
	}
	defer rt.Shutdown(context.Background())
	if inspectAddr != "" { // the workflow inspector, on this runtime: two lines
		go func() { fmt.Fprintln(os.Stderr, http.ListenAndServe(inspectAddr, dbosweb.New(rt, dbosweb.Options{}))) }()
		defer show.UntilInterrupted(inspectAddr)
	}

	id := "order-" + o.ID
	switch st, err := rt.WorkflowStatus(ctx, id); {
	case errors.Is(err, dbos.ErrWorkflowNotFound):
		fmt.Printf("placing order %s as workflow %s\n", o.ID, id)
	case err != nil:
		return err
	case st.Status == dbos.StatusPending:
		fmt.Printf("workflow %s was left unfinished by an earlier process: dbos.Launch resumed it; waiting for it\n", id)
	default:
		fmt.Printf("workflow %s already finished (%s): asking for it again returns its recorded outcome, nothing runs\n", id, st.Status)
	}

	h, err := startCheckoutWorkflow(dbos.WithWorkflowID(ctx, id), o)
	if err != nil {
		return err
	}
	r, err := h.Result(ctx)
	if errors.Is(err, errOutOfStock) {
		return fmt.Errorf("workflow %s: %w (try another -order with a smaller -qty)", id, err)
	}
	if err != nil {
		return fmt.Errorf("workflow %s: %w", id, err)
	}
	fmt.Printf("receipt: order %s, charge %s, confirmation %s, %d left in stock\n", r.OrderID, r.ChargeID, r.ConfirmationID, r.StockLeft)

	var rows, stock int
	if err := rt.AppDB().GetContext(ctx, &rows, rt.AppDB().Rebind("SELECT COUNT(*) FROM orders WHERE order_id = ?"), o.ID); err != nil {
		return err
	}
	if err := rt.AppDB().GetContext(ctx, &stock, rt.AppDB().Rebind("SELECT qty FROM stock WHERE sku = ?"), o.SKU); err != nil {
		return err
	}
	fmt.Printf("database: %d row for order %s in table orders; %d × %s in stock\n", rows, o.ID, stock, o.SKU)
	return nil
}

// createTables creates the application's tables, through the application
// database (the system database unless APP_DATABASE_URL says otherwise). The
// SQL is valid on both PostgreSQL and SQLite.
func createTables(ctx context.Context, db *sqlx.DB) error {
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, qty INTEGER NOT NULL)`,
		`INSERT INTO stock (sku, qty) VALUES ('widget', 1000), ('gadget', 10) ON CONFLICT (sku) DO NOTHING`,
		`CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY, sku TEXT NOT NULL, qty INTEGER NOT NULL,
			cents BIGINT NOT NULL, charge_id TEXT NOT NULL)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("creating tables: %w", err)
		}
	}
	return nil
}
