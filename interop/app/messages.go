package app

import (
	"context"
	"time"

	"github.com/dbosgen/dbosgen/runtime/dbos"
)

// Payment is the message AwaitPayment receives.
type Payment struct {
	OrderID string `json:"order_id"`
	Cents   int64  `json:"cents"`
}

// AwaitPayment waits up to timeoutMS for a Payment on topic "payment" and
// returns it; a zero Payment when none came.
//
//dbos:workflow
func AwaitPayment(ctx context.Context, timeoutMS int) (Payment, error) {
	p, _, err := dbos.Recv[Payment](ctx, "payment", time.Duration(timeoutMS)*time.Millisecond)
	return p, err
}

// Publish sets the event "status" to "published" and writes 0..n-1 to the
// stream "numbers", then closes it.
//
//dbos:workflow
func Publish(ctx context.Context, n int) (int, error) {
	if err := dbos.SetEvent(ctx, "status", "published"); err != nil {
		return 0, err
	}
	for i := range n {
		if err := dbos.WriteStream(ctx, "numbers", i); err != nil {
			return 0, err
		}
	}
	return n, dbos.CloseStream(ctx, "numbers")
}
