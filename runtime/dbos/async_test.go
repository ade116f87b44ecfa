package dbos_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/runtime/dbos"
)

// Item 22: a workflow does not finish while async steps it started still
// run; their outcomes are recorded before its own, awaited or not.
func TestAsyncStepsFinishBeforeWorkflow(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		var c counter
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			dbos.RunStepAsync(ctx, &dbos.StepOptions{Name: "slow"}, func(ctx context.Context) (int, error) {
				time.Sleep(300 * time.Millisecond)
				return c.inc("slow"), nil
			})
			dbos.RunStepAsync(ctx, &dbos.StepOptions{Name: "failing"}, func(ctx context.Context) (int, error) {
				time.Sleep(200 * time.Millisecond)
				c.inc("failing")
				return 0, errors.New("boom")
			})
			return "returned at once", nil
		})
		out := must(testWF.Run(dbos.WithWorkflowID(ctx, "unawaited"), in))
		if out != "returned at once" || c.get("slow") != 1 || c.get("failing") != 1 {
			t.Fatalf("workflow returned %q with slow=%d failing=%d runs: it finished before its async steps",
				out, c.get("slow"), c.get("failing"))
		}
		// Run returns once the outcome is recorded: the steps' are by then.
		if n := scalar[int](t, rt, "SELECT count(*) FROM {dbos}operation_outputs WHERE workflow_uuid = 'unawaited'"); n != 2 {
			t.Fatalf("%d step rows when the workflow finished, want 2", n)
		}
	})
}
