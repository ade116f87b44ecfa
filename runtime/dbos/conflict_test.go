package dbos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/dbosgen/dbosgen/runtime/dbos"
)

// Item 23: a call with the ID of an existing workflow of another name, or
// with other inputs, fails with ErrWorkflowConflict naming both, finished or
// running; it never returns the other workflow's result.
func TestWorkflowIDConflict(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		var c counter
		gate := make(chan struct{})
		// Distinctive numbers, to find in messages whatever the encoding.
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			c.inc("body")
			if in.N == 7777 {
				<-gate
			}
			return "result of " + in.Key, nil
		})
		in.N = 4242
		other := in
		other.N = 1717
		conflict := func(what string, err error, names ...string) {
			t.Helper()
			if !errors.Is(err, dbos.ErrWorkflowConflict) {
				t.Fatalf("%s: err = %v, want ErrWorkflowConflict", what, err)
			}
			for _, n := range names {
				if !strings.Contains(err.Error(), n) {
					t.Errorf("%s: %q does not name %s", what, err, n)
				}
			}
		}

		idA := dbos.WithWorkflowID(ctx, "A")
		want := must(testWF.Run(idA, in))
		_, err := otherWF.Run(idA, in)
		conflict("finished, another workflow", err, "test.wf", "test.other")
		_, err = testWF.Run(idA, other)
		conflict("finished, other inputs", err, "4242", "1717")
		if got := must(testWF.Run(idA, in)); got != want || c.get("body") != 1 {
			t.Fatalf("same workflow, same inputs: %q after %d runs; want %q after 1", got, c.get("body"), want)
		}
		// Inputs written with other spacing (by another tool) are the same
		// inputs.
		var spaced bytes.Buffer
		must(struct{}{}, json.Indent(&spaced, []byte(scalar[string](t, rt, "SELECT inputs FROM {dbos}workflow_input WHERE workflow_uuid = 'A'")), "", "  "))
		execSQL(t, rt, "UPDATE {dbos}workflow_input SET inputs = '"+strings.ReplaceAll(spaced.String(), "'", "''")+"' WHERE workflow_uuid = 'A'")
		if got := must(testWF.Run(idA, in)); got != want {
			t.Fatalf("respaced inputs: %q", got)
		}

		running := in
		running.N = 7777
		idB := dbos.WithWorkflowID(ctx, "B")
		h := must(testWF.Start(idB, running))
		_, err = testWF.Start(idB, other)
		conflict("running, other inputs", err, "7777", "1717")
		_, err = otherWF.Start(idB, running)
		conflict("running, another workflow", err, "test.wf", "test.other")
		close(gate)
		must(h.Result(ctx))
		if c.get("body") != 2 {
			t.Fatalf("%d body runs, want 2: a conflicting call ran a body", c.get("body"))
		}
	})
}
