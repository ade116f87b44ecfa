// Package app is a small dbosgen application that the interoperability suite
// runs and then inspects and operates with DBOS Transact's own Go SDK and CLI.
//
// Its workflows cover the shapes a DBOS client has to read: a struct input
// with several steps and a transaction returning values of different types
// (ProcessOrder), a recorded failure (Fail), a workflow that runs until it is
// cancelled or released (Block), a single-parameter workflow whose stored
// input is what a DBOS client's single Enqueue input looks like (Greet), and
// a two-parameter one (Add).
//
// The counters and gates below are test instrumentation: they live inside
// steps, so they do not make the workflows nondeterministic.
package app

//go:generate go run github.com/dbosgen/dbosgen/cmd/dbosgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
)

// Order is ProcessOrder's input.
type Order struct {
	ID    string `json:"id"`
	SKU   string `json:"sku"`
	Qty   int    `json:"qty"`
	Email string `json:"email"`
}

// Charge is what the charge step returns.
type Charge struct {
	ID    string `json:"id"`
	Cents int64  `json:"cents"`
}

// Receipt is ProcessOrder's result.
type Receipt struct {
	OrderID  string `json:"order_id"`
	Total    int64  `json:"total"`
	ChargeID string `json:"charge_id"`
	Row      int64  `json:"row"`
	Notified bool   `json:"notified"`
}

// UnitPrice is the price priceOf returns for every SKU, in cents.
const UnitPrice = 250

// Setup creates the application table recordOrder writes; pass it as
// dbos.Config.Setup.
func Setup(ctx context.Context, db *sqlx.DB) error {
	_, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS interop_orders (
		id BIGSERIAL PRIMARY KEY, order_id TEXT NOT NULL UNIQUE, total BIGINT NOT NULL)`)
	return err
}

//dbos:step
func priceOf(ctx context.Context, sku string) (int64, error) {
	calls.add("priceOf:" + sku)
	return UnitPrice, nil
}

//dbos:step
func charge(ctx context.Context, orderID string, cents int64) (Charge, error) {
	calls.add("charge:" + orderID)
	return Charge{ID: "ch-" + orderID, Cents: cents}, nil
}

//dbos:transaction
func recordOrder(ctx context.Context, tx *sqlx.Tx, orderID string, total int64) (int64, error) {
	var id int64
	err := tx.QueryRowxContext(ctx,
		`INSERT INTO interop_orders (order_id, total) VALUES ($1, $2) RETURNING id`, orderID, total).Scan(&id)
	return id, err
}

//dbos:step
func notify(ctx context.Context, email string) error {
	calls.add("notify:" + email)
	return nil
}

// ProcessOrder prices, charges, records and confirms an order: three steps
// (int64, struct and error-only outputs) and a transaction.
//
//dbos:workflow
func ProcessOrder(ctx context.Context, o Order) (Receipt, error) {
	price, err := priceOfStep(ctx, o.SKU)
	if err != nil {
		return Receipt{}, err
	}
	total := price * int64(o.Qty)
	ch, err := chargeStep(ctx, o.ID, total)
	if err != nil {
		return Receipt{}, err
	}
	row, err := recordOrderTx(ctx, o.ID, total)
	if err != nil {
		return Receipt{}, err
	}
	if err := notifyStep(ctx, o.Email); err != nil {
		return Receipt{}, err
	}
	return Receipt{OrderID: o.ID, Total: total, ChargeID: ch.ID, Row: row, Notified: true}, nil
}

// ErrRejected is the error Fail's validate step returns.
var ErrRejected = errors.New("order rejected")

//dbos:step
func validate(ctx context.Context, reason string) (string, error) {
	calls.add("validate:" + reason)
	if reason == "" {
		return "ok", nil
	}
	return "", fmt.Errorf("%w: %s", ErrRejected, reason)
}

//dbos:step
func audit(ctx context.Context, reason string) (string, error) {
	return "audited " + reason, nil
}

// Fail records one successful step, then a failing one, and returns the
// failure.
//
//dbos:workflow
func Fail(ctx context.Context, reason string) (string, error) {
	if _, err := auditStep(ctx, reason); err != nil {
		return "", err
	}
	return validateStep(ctx, reason)
}

//dbos:step
func prepare(ctx context.Context, key string) (string, error) {
	calls.add("prepare:" + key)
	return "prepared " + key, nil
}

//dbos:step
func waitForRelease(ctx context.Context, key string) (string, error) {
	g := gate(key)
	g.enter()
	for {
		select {
		case <-ctx.Done():
			g.cancelled(context.Cause(ctx))
			return "", ctx.Err()
		case <-g.release:
			return "released " + key, nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Block records a step, then waits in a second step, watching its context,
// until it is cancelled or Release(key) is called.
//
//dbos:workflow
func Block(ctx context.Context, key string) (string, error) {
	p, err := prepareStep(ctx, key)
	if err != nil {
		return "", err
	}
	r, err := waitForReleaseStep(ctx, key)
	if err != nil {
		return "", err
	}
	return p + ", " + r, nil
}

//dbos:step
func greeting(ctx context.Context, name string) (string, error) {
	calls.add("greeting:" + name)
	return "Hello, " + name + "!", nil
}

// Greet has a single parameter: its stored input is the one-element
// positional envelope a DBOS client's Enqueue writes for a single input.
//
//dbos:workflow
func Greet(ctx context.Context, name string) (string, error) {
	return greetingStep(ctx, name)
}

//dbos:step
func sum(ctx context.Context, a, b int) (int, error) {
	return a + b, nil
}

// Add has two parameters: its stored input has two positional arguments.
//
//dbos:workflow
func Add(ctx context.Context, a, b int) (int, error) {
	return sumStep(ctx, a, b)
}

// Calls reports how many times a step body ran for the given label, e.g.
// "prepare:k1" or "charge:o-1": a replayed step does not count.
func Calls(label string) int { return calls.get(label) }

// Entered returns a channel closed once Block(key)'s waiting step is running.
func Entered(key string) <-chan struct{} { return gate(key).entered }

// Release lets Block(key) finish, now or whenever it next waits.
func Release(key string) { gate(key).open() }

// Cancelled returns a channel closed when Block(key)'s waiting step saw its
// context end, and that context's cause.
func Cancelled(key string) (<-chan struct{}, func() error) {
	g := gate(key)
	return g.done, func() error {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.cause
	}
}

type counter struct {
	mu sync.Mutex
	n  map[string]int
}

var calls = &counter{n: map[string]int{}}

func (c *counter) add(label string) {
	c.mu.Lock()
	c.n[label]++
	c.mu.Unlock()
}

func (c *counter) get(label string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[label]
}

type gateState struct {
	mu          sync.Mutex
	entered     chan struct{}
	enterOnce   sync.Once
	release     chan struct{}
	releaseOnce sync.Once
	done        chan struct{}
	doneOnce    sync.Once
	cause       error
}

var gates sync.Map // key -> *gateState

func gate(key string) *gateState {
	g, _ := gates.LoadOrStore(key, &gateState{
		entered: make(chan struct{}),
		release: make(chan struct{}),
		done:    make(chan struct{}),
	})
	return g.(*gateState)
}

func (g *gateState) enter() { g.enterOnce.Do(func() { close(g.entered) }) }
func (g *gateState) open()  { g.releaseOnce.Do(func() { close(g.release) }) }

func (g *gateState) cancelled(cause error) {
	g.doneOnce.Do(func() {
		g.mu.Lock()
		g.cause = cause
		g.mu.Unlock()
		close(g.done)
	})
}
