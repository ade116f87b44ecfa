package interop

import (
	"context"
	"testing"
	"time"

	sdk "github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/dbosgen/dbosgen/interop/app"
	dbosgen "github.com/dbosgen/dbosgen/runtime/dbos"
)

// interopQueue is served by every dbosgen runtime of these tests (the
// default Config.ListenQueues is every declared queue).
var interopQueue = dbosgen.NewQueue("interop-queue", dbosgen.QueueOptions{WorkerConcurrency: 2})

// TestClientEnqueue: a DBOS client enqueues dbosgen workflows by name, in
// portable JSON and in the Go SDK's own DBOS_JSON; a dbosgen executor runs
// them, and the client reads their results. A dbosgen enqueue is read by
// the client the same way.
func TestClientEnqueue(t *testing.T) {
	url := newDB(t)
	rt := launchGen(t, url)
	c := newClient(t, url, genApp)

	cases := []struct {
		id   string
		opts []sdk.EnqueueOption
	}{
		{"client-portable", []sdk.EnqueueOption{sdk.WithEnqueuePortableWorkflow()}},
		{"client-dbos-json", nil},
	}
	for _, tc := range cases {
		t.Run(tc.id, func(t *testing.T) {
			opts := append([]sdk.EnqueueOption{sdk.WithEnqueueWorkflowID(tc.id)}, tc.opts...)
			h, err := sdk.Enqueue[string](c, interopQueue.Name(), appPkg+".Greet", "Grace", opts...)
			if err != nil {
				t.Fatalf("DBOS client Enqueue(%s, Greet): %v", interopQueue.Name(), err)
			}
			got, err := h.GetResult(sdk.WithHandleTimeout(30 * time.Second))
			if err != nil || got != "Hello, Grace!" {
				t.Fatalf("DBOS client GetResult of a dbosgen-run queued workflow: %q, %v; want \"Hello, Grace!\"", got, err)
			}
			st, ok := listOne(t, c, tc.id)
			if !ok || st.QueueName != interopQueue.Name() || st.ExecutorID != executorID || string(st.Status) != "SUCCESS" {
				t.Fatalf("as DBOS lists it: %+v", st)
			}
		})
	}

	t.Run("dbosgen-enqueue", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(on(rt), 30*time.Second)
		defer cancel()
		h, err := app.EnqueueAddWorkflow(ctx, interopQueue.With(dbosgen.EnqueueOptions{WorkflowID: "gen-enqueued"}), 40, 2)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := h.Result(ctx); err != nil || v != 42 {
			t.Fatalf("dbosgen result %d, %v", v, err)
		}
		ch, err := sdk.RetrieveWorkflow[int](c, "gen-enqueued")
		if err != nil {
			t.Fatal(err)
		}
		if v, err := ch.GetResult(sdk.WithHandleTimeout(10 * time.Second)); err != nil || v != 42 {
			t.Fatalf("DBOS client reads %d, %v", v, err)
		}
	})
}
