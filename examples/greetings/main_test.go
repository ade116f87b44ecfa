package main

import (
	"testing"

	"github.com/dbosgen/dbosgen/examples/internal/extest"
)

// TestGreetings runs the example as a user would, on the embedded SQLite
// default and on PostgreSQL.
func TestGreetings(t *testing.T) {
	bin := extest.Build(t)
	for engine, env := range extest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			e := env(t)
			r := extest.Run(t, e, bin, "-name", "Ada", "-id", "greet-ada")
			if r.ExitCode != 0 {
				t.Fatalf("exit %d", r.ExitCode)
			}
			extest.Contains(t, r.Output,
				"workflow greet-ada: greet(\"Ada\")",
				"attempt 1 of 5: GET /greeting -> 503",
				"retry_in=200ms",
				"attempt 2 of 5: GET /greeting -> 503",
				"retry_in=400ms",
				"attempt 3 of 5: GET /greeting -> 200 OK \"Hello, Ada!",
				"step 2, insertGreeting",
				"step 3, selectGreeting",
				"the first greeting stored for Ada is \"Hello, Ada!",
				"workflow greet-ada finished")

			// Same ID: the recorded result, nothing runs.
			r = extest.Run(t, e, bin, "-name", "Ada", "-id", "greet-ada")
			extest.Contains(t, r.Output, "workflow greet-ada finished", "\"Hello, Ada!", "had finished before")
			extest.Lacks(t, r.Output, "attempt 1 of 5", "step 2")

			// An API that never recovers: the step gives up after 5 attempts
			// and the workflow fails with ErrMaxStepRetriesExceeded.
			r = extest.Run(t, e, bin, "-name", "Bob", "-failures", "100")
			if r.ExitCode != 1 {
				t.Fatalf("exit %d, want 1", r.ExitCode)
			}
			extest.Contains(t, r.Output, "attempt 5 of 5: GET /greeting -> 503", "failed all 5 attempts")
		})
	}
}
