package dbos_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/dbosgen/dbosgen/runtime/dbos/internal/exampleapp"
)

// launchExample launches a runtime on a fresh SQLite file, as a program
// with no system database configured does.
func launchExample() (*dbos.Runtime, func()) {
	dir, err := os.MkdirTemp("", "dbos-example")
	if err != nil {
		panic(err)
	}
	rt, err := dbos.Launch(context.Background(), dbos.Config{
		AppName:           "example",
		SystemDatabaseURL: "sqlite://" + filepath.Join(dir, "example.sqlite"),
	})
	if err != nil {
		panic(err)
	}
	return rt, func() {
		_ = rt.Shutdown(context.Background())
		_ = os.RemoveAll(dir)
	}
}

// A workflow called with an ID runs once: a second call with the same ID
// returns the recorded result without running a step.
func ExampleWithWorkflowID() {
	rt, done := launchExample()
	defer done()
	ctx := dbos.WithRuntime(context.Background(), rt)

	exampleapp.Calls = 0
	for range 2 {
		g, err := exampleapp.GreetingWorkflow(dbos.WithWorkflowID(ctx, "greet-ada"), "Ada")
		fmt.Println(g, err)
	}
	fmt.Println("steps run:", exampleapp.Calls)
	// Output:
	// Hello, Ada! <nil>
	// Hello, Ada! <nil>
	// steps run: 1
}

// A workflow started elsewhere is reached by its ID; its status and result
// come from the database.
func ExampleRetrieveWorkflow() {
	rt, done := launchExample()
	defer done()
	ctx := dbos.WithRuntime(context.Background(), rt)

	h, err := exampleapp.StartGreetingWorkflow(dbos.WithWorkflowID(ctx, "greet-grace"), "Grace")
	if err != nil {
		panic(err)
	}
	if _, err := h.Result(ctx); err != nil {
		panic(err)
	}
	same, err := dbos.RetrieveWorkflow[string](ctx, "greet-grace")
	if err != nil {
		panic(err)
	}
	st, _ := same.Status(ctx)
	g, _ := same.Result(ctx)
	fmt.Println(st.Status, g)
	// Output: SUCCESS Hello, Grace!
}

// Errors keep their identity through the database: a registered sentinel
// still matches with errors.Is when the recorded error is read back.
func ExampleRegisterError() {
	rt, done := launchExample()
	defer done()
	ctx := dbos.WithRuntime(context.Background(), rt)

	_, err := exampleapp.GreetingWorkflow(dbos.WithWorkflowID(ctx, "greet-nobody"), " ")
	fmt.Println(errors.Is(err, exampleapp.ErrEmpty))
	h, _ := dbos.RetrieveWorkflow[string](ctx, "greet-nobody")
	_, err = h.Result(ctx)
	fmt.Println(errors.Is(err, exampleapp.ErrEmpty), err)
	// Output:
	// true
	// true greeting " ": exampleapp: empty name
}
