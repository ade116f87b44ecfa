package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/dbosgen/dbosgen/examples/internal/show"
	"github.com/dbosgen/dbosgen/runtime/dbos"
)

// The payment-confirmation flow: with -await-payment, the order waits for a
// message from the payment provider (a webhook would send it; here the
// process sends it itself after -confirm-after) and gives up after
// -payment-timeout. The wait is durable: the timeout's end is recorded, so
// a process that dies and comes back waits only what remains, and the
// confirmation is received exactly once.
var (
	awaitPaymentFlag = flag.Bool("await-payment", false, "wait for a payment confirmation message instead of charging a card")
	paymentTimeout   = flag.Duration("payment-timeout", 10*time.Second, "how long -await-payment waits for the confirmation")
	confirmAfter     = flag.Duration("confirm-after", 0, "send the payment confirmation after this long (0: never)")
)

// PaymentConfirmation is the message the payment provider sends.
type PaymentConfirmation struct {
	ChargeID string `json:"charge_id"`
	Cents    int64  `json:"cents"`
}

// awaitPayment publishes its status as the event "status" and waits for a
// PaymentConfirmation on the topic "payment".
//
//dbos:workflow
func awaitPayment(ctx context.Context, orderID string, timeoutMS int64) (string, error) {
	if err := dbos.SetEvent(ctx, "status", "awaiting payment"); err != nil {
		return "", err
	}
	p, ok, err := dbos.Recv[PaymentConfirmation](ctx, "payment", time.Duration(timeoutMS)*time.Millisecond)
	if err != nil {
		return "", err
	}
	if !ok {
		return fmt.Sprintf("order %s expired: no payment confirmation within %v", orderID, time.Duration(timeoutMS)*time.Millisecond),
			dbos.SetEvent(ctx, "status", "expired")
	}
	return fmt.Sprintf("order %s paid: charge %s, %s", orderID, p.ChargeID, money(p.Cents)), dbos.SetEvent(ctx, "status", "paid")
}

func runAwaitPayment(o Order) error {
	ctx := context.Background()
	fmt.Println("launching the dbos runtime on", show.Database("orders"))
	rt, err := dbos.Launch(ctx, dbos.Config{AppName: "orders", Logger: show.Logger(), Setup: createTables})
	if err != nil {
		return err
	}
	defer rt.Shutdown(context.Background())

	id := "payment-" + o.ID
	h, err := startAwaitPaymentWorkflow(dbos.WithWorkflowID(ctx, id), o.ID, paymentTimeout.Milliseconds())
	if err != nil {
		return err
	}
	// Anyone can read the workflow's status event, here or in another process.
	status, ok, err := dbos.GetEvent[string](ctx, id, "status", 10*time.Second)
	if err != nil || !ok {
		return errors.Join(errors.New("no status event"), err)
	}
	fmt.Printf("workflow %s: %s (for up to %v)\n", id, status, *paymentTimeout)
	if *confirmAfter > 0 {
		go func() {
			time.Sleep(*confirmAfter)
			// The webhook's delivery ID is the idempotency key: a webhook
			// delivered twice sends one message.
			c := PaymentConfirmation{ChargeID: "ch_" + o.ID, Cents: o.Cents}
			for range 2 {
				if err := dbos.Send(ctx, id, "payment", c, dbos.WithIdempotencyKey("webhook-"+o.ID)); err != nil {
					fmt.Println("sending the confirmation:", err)
				}
			}
			fmt.Printf("payment provider: confirmation for order %s sent (twice, delivered once)\n", o.ID)
		}()
	}
	out, err := h.Result(ctx)
	if err != nil {
		return fmt.Errorf("workflow %s: %w", id, err)
	}
	status, _, _ = dbos.GetEvent[string](ctx, id, "status", 0)
	fmt.Printf("%s (status event: %s)\n", out, status)
	return nil
}
