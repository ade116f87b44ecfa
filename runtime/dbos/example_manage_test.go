package dbos_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/dbosgen/dbosgen/runtime/dbos"
)

// An admin script: list the workflows that failed in the last day, show the
// failing step of each, and re-run each from that step on the fixed version.
func ExampleOpenClient() {
	ctx := context.Background()
	c, err := dbos.OpenClient(ctx, "postgres://postgres@localhost:5432/orders")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	failed, err := c.ListWorkflows(ctx, dbos.ListFilter{
		Status:       []string{dbos.StatusError},
		CreatedAfter: time.Now().Add(-24 * time.Hour),
		Limit:        50,
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, w := range failed {
		steps, err := c.WorkflowSteps(ctx, w.ID)
		if err != nil {
			log.Fatal(err)
		}
		for _, s := range steps {
			if s.Error == "" {
				continue
			}
			fmt.Printf("%s (%s) failed at step %d %s: %s\n", w.ID, w.Name, s.StepID, s.Name, s.Error)
			forked, err := c.ForkWorkflow(ctx, w.ID, s.StepID, dbos.ForkOptions{ApplicationVersion: "v2"})
			if err != nil {
				log.Fatal(err)
			}
			fmt.Println("re-running it as", forked)
		}
	}
}

// A runtime manages the workflows of its database too, and can delete old
// ones on a schedule.
func ExampleRuntime_ListWorkflows() {
	ctx := context.Background()
	rt, err := dbos.Launch(ctx, dbos.Config{
		AppName:      "orders",
		RetentionAge: 30 * 24 * time.Hour, // finished workflows are kept 30 days
	})
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Shutdown(ctx)
	pending, err := rt.ListWorkflows(ctx, dbos.ListFilter{Status: []string{dbos.StatusPending}, OldestFirst: true})
	if err != nil {
		log.Fatal(err)
	}
	for _, w := range pending {
		fmt.Println(w.ID, w.Name, "since", w.CreatedAt.Format(time.RFC3339))
	}
}
