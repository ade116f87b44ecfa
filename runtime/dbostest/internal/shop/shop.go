// Package shop is the application dbostest's examples and tests run: a
// checkout workflow (a transaction, a step, an async step and a child
// workflow), and a quote workflow that reads state it should have been
// given, so that Replay has something to catch.
package shop

//go:generate go run github.com/dbosgen/dbosgen/cmd/dbosgen

import (
	"context"
	"fmt"
	"sync"

	"github.com/jmoiron/sqlx"
)

// Order is a checkout's input.
type Order struct {
	ID  string `json:"id"`
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// Receipt is a checkout's result.
type Receipt struct {
	OrderID  string `json:"order_id"`
	Left     int    `json:"left"`
	Charge   string `json:"charge"`
	Label    string `json:"label"`
	Notified string `json:"notified"`
}

// CreateTables creates the stock table with 100 widgets (dbos.Config.Setup).
func CreateTables(ctx context.Context, db *sqlx.DB) error {
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, qty INTEGER NOT NULL)`,
		`INSERT INTO stock (sku, qty) VALUES ('widget', 100) ON CONFLICT (sku) DO NOTHING`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// ran counts, per order, how many times each step body ran in this process.
var ran struct {
	sync.Mutex
	n map[string]int
}

func count(step, orderID string) {
	ran.Lock()
	defer ran.Unlock()
	if ran.n == nil {
		ran.n = map[string]int{}
	}
	ran.n[step+"/"+orderID]++
}

// Ran reports how many times the body of step ran for the order in this
// process: a step replayed from its checkpoint does not count.
func Ran(step, orderID string) int {
	ran.Lock()
	defer ran.Unlock()
	return ran.n[step+"/"+orderID]
}

//dbos:transaction
func reserve(ctx context.Context, tx *sqlx.Tx, orderID, sku string, qty int) (int, error) {
	count("reserve", orderID)
	if _, err := tx.ExecContext(ctx, tx.Rebind("UPDATE stock SET qty = qty - ? WHERE sku = ?"), qty, sku); err != nil {
		return 0, err
	}
	var left int
	err := tx.GetContext(ctx, &left, tx.Rebind("SELECT qty FROM stock WHERE sku = ?"), sku)
	return left, err
}

//dbos:step
func charge(ctx context.Context, orderID string, qty int) (string, error) {
	count("charge", orderID)
	return fmt.Sprintf("ch-%s-%d", orderID, qty*1999), nil
}

//dbos:step
func label(ctx context.Context, orderID string) (string, error) {
	count("label", orderID)
	return "lbl-" + orderID, nil
}

//dbos:workflow
func notify(ctx context.Context, orderID string) (string, error) {
	return "notified " + orderID, nil
}

// Checkout reserves stock, charges, prints a label in the background and
// notifies in a child workflow: five step IDs.
//
//dbos:workflow
func Checkout(ctx context.Context, o Order) (Receipt, error) {
	left, err := reserveTx(ctx, o.ID, o.SKU, o.Qty) // step 1
	if err != nil {
		return Receipt{}, err
	}
	ch, err := chargeStep(ctx, o.ID, o.Qty) // step 2
	if err != nil {
		return Receipt{}, err
	}
	lbl := labelStepAsync(ctx, o.ID)         // step 3
	h, err := startNotifyWorkflow(ctx, o.ID) // step 4
	if err != nil {
		return Receipt{}, err
	}
	l, err := lbl.Get(ctx)
	if err != nil {
		return Receipt{}, err
	}
	n, err := h.Result(ctx)
	if err != nil {
		return Receipt{}, err
	}
	return Receipt{OrderID: o.ID, Left: left, Charge: ch, Label: l, Notified: n}, nil
}

// Pricing is read by Quote's body instead of being passed to it: what a
// configuration change between a run and its recovery looks like. dbosgen
// vet reports such reads; these are allowed here on purpose.
var Pricing struct {
	Discount int  // taken off the price
	Express  bool // adds an expedite step
	Gift     bool // adds a wrap step (instead of expedite when both are set)
}

//dbos:step
func price(ctx context.Context, sku string) (int, error) { return 100, nil }

//dbos:step
func expedite(ctx context.Context, sku string) (int, error) { return 20, nil }

//dbos:step
func wrap(ctx context.Context, sku string) (int, error) { return 5, nil }

//dbos:workflow
func Quote(ctx context.Context, sku string) (int, error) {
	p, err := priceStep(ctx, sku)
	if err != nil {
		return 0, err
	}
	var extra int
	switch {
	case Pricing.Gift: //dbos:allow on purpose: dbostest.Replay's examples catch it
		extra, err = wrapStep(ctx, sku)
	case Pricing.Express: //dbos:allow on purpose, as above
		extra, err = expediteStep(ctx, sku)
	}
	if err != nil {
		return 0, err
	}
	return p + extra - Pricing.Discount, nil //dbos:allow on purpose, as above
}
