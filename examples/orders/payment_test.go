package main

import (
	"testing"

	"github.com/dbosgen/dbosgen/examples/internal/extest"
)

// TestAwaitPayment: an order waiting for its payment confirmation receives
// it (sent twice with one idempotency key, received once); another gives up
// at its timeout; asking again returns the recorded outcomes.
func TestAwaitPayment(t *testing.T) {
	bin := extest.Build(t)
	for engine, env := range extest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			e := env(t)
			r := extest.Run(t, e, bin, "-order", "2001", "-await-payment", "-confirm-after", "300ms")
			extest.Contains(t, r.Output,
				"workflow payment-2001: awaiting payment",
				"payment provider: confirmation for order 2001 sent",
				"order 2001 paid: charge ch_2001, $39.98 (status event: paid)")
			r = extest.Run(t, e, bin, "-order", "2002", "-await-payment", "-payment-timeout", "500ms")
			extest.Contains(t, r.Output, "order 2002 expired: no payment confirmation within 500ms (status event: expired)")
			r = extest.Run(t, e, bin, "-order", "2001", "-await-payment")
			extest.Contains(t, r.Output, "order 2001 paid: charge ch_2001, $39.98 (status event: paid)")
		})
	}
}
