package main

import (
	"strings"
	"testing"

	"github.com/dbosgen/dbosgen/examples/internal/extest"
)

// TestOrdersCrashAndResume kills the example with -crash-after 2, runs it
// again to watch it resume after step 2, then a third time to get the
// recorded receipt; on the embedded SQLite default and on PostgreSQL.
func TestOrdersCrashAndResume(t *testing.T) {
	bin := extest.Build(t)
	for engine, env := range extest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			e := env(t)
			r := extest.Run(t, e, bin, "-crash-after", "2")
			if !r.Killed {
				t.Fatalf("-crash-after 2 did not end with SIGKILL (exit %d)", r.ExitCode)
			}
			extest.Contains(t, r.Output,
				"placing order 1001 as workflow order-1001",
				"step 1 reserveStock (transaction): done, checkpointed: reserved 2 × widget, 998 left",
				"attempt 1 of 6: POST /charges -> 503",
				"retry_in=250ms",
				"attempt 2 of 6: POST /charges -> 503",
				"retry_in=500ms",
				"attempt 3 of 6: POST /charges -> 200 OK",
				"step 2 chargeCard (step with retries): done, checkpointed",
				"-crash-after 2: killing this process")
			extest.Lacks(t, r.Output, "step 3", "receipt:")
			charge := between(r.Output, "charged $39.98, charge ", "\n")

			r = extest.Run(t, e, bin)
			if r.ExitCode != 0 {
				t.Fatalf("resume: exit %d", r.ExitCode)
			}
			extest.Contains(t, r.Output, "recovering workflow", "workflow_id=order-1001")
			extest.Contains(t, r.Output,
				"step 1 reserveStock (transaction): replayed from its checkpoint",
				"step 2 chargeCard (step with retries): replayed from its checkpoint (did not run again): charged $39.98, charge "+charge,
				"step 4 recordOrder (transaction): done, checkpointed")
			extest.Contains(t, r.Output,
				"step 3 sendConfirmation (async step): done, checkpointed: confirmation msg-1001 sent",
				"receipt: order 1001, charge "+charge+", confirmation msg-1001, 998 left in stock",
				"database: 1 row for order 1001 in table orders; 998 × widget in stock")
			extest.Lacks(t, r.Output, "POST /charges", "reserved 2 × widget, 996")

			r = extest.Run(t, e, bin)
			extest.Contains(t, r.Output,
				"workflow order-1001 already finished (SUCCESS)",
				"receipt: order 1001, charge "+charge,
				"database: 1 row for order 1001 in table orders; 998 × widget in stock")
			extest.Lacks(t, r.Output, "step 1", "POST /charges")

			// Another order runs straight through; one that cannot be
			// served fails with the recorded out-of-stock error.
			r = extest.Run(t, e, bin, "-order", "1002", "-failures", "0")
			extest.Contains(t, r.Output, "attempt 1 of 6: POST /charges -> 200 OK", "996 × widget in stock")
			r = extest.Run(t, e, bin, "-order", "1003", "-sku", "gadget", "-qty", "11")
			if r.ExitCode != 1 {
				t.Fatalf("out of stock: exit %d, want 1", r.ExitCode)
			}
			extest.Contains(t, r.Output, "out of stock: cannot reserve 11 × gadget")
			r = extest.Run(t, e, bin, "-order", "1003", "-sku", "gadget", "-qty", "11")
			extest.Contains(t, r.Output, "already finished (ERROR)", "out of stock: cannot reserve 11 × gadget", "try another -order")
		})
	}
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i+len(from):]
	if j := strings.Index(s, to); j >= 0 {
		return s[:j]
	}
	return s
}
