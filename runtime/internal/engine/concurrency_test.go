package engine_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// 16 concurrent workflows of 50 steps each on one database: all succeed,
// every step recorded once. On SQLite this is one file, so "database is
// locked" must never reach a workflow.
func TestConcurrentWorkflows(t *testing.T) {
	const workflows, steps = 16, 50
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		in := setBody(t, func(ctx context.Context, in input) (string, error) {
			sum := 0
			for i := range steps {
				v, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "add"}, func(ctx context.Context) (int, error) { return i, nil })
				if err != nil {
					return "", err
				}
				sum += v
			}
			return fmt.Sprint(sum), nil
		})
		var wg sync.WaitGroup
		errs := make(chan error, workflows)
		for w := range workflows {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := testWF.Run(dbos.WithWorkflowID(ctx, fmt.Sprint("conc-", w)), in)
				if err == nil && out != fmt.Sprint(steps*(steps-1)/2) {
					err = fmt.Errorf("workflow %d returned %s", w, out)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := countRows(t, rt, "operation_outputs"); n != workflows*steps {
			t.Fatalf("%d step rows, want %d", n, workflows*steps)
		}
	})
}
