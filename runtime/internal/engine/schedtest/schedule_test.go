// Package schedtest tests scheduled workflows in a test binary of their own:
// a scheduled workflow ticks in every runtime launched, which would add rows
// to the engine package's other tests.
package schedtest

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	"github.com/dbosgen/dbosgen/runtime/internal/engine"
)

type tickArgs struct {
	Scheduled time.Time `json:"scheduled"`
	Actual    time.Time `json:"actual"`
}

var ticks struct {
	sync.Mutex
	runs map[string][]string // scheduled (RFC 3339) -> workflow IDs that ran it
}

// What dbosgen generates for //dbos:workflow schedule="* * * * * *".
var everySecond = engine.RegisterWorkflow(engine.WorkflowOptions{
	Name:         "schedtest.everySecond",
	Schedule:     "* * * * * *",
	ScheduleArgs: func(s, a time.Time) any { return tickArgs{Scheduled: s, Actual: a} },
}, func(ctx context.Context, a tickArgs) (struct{}, error) {
	id, _ := engine.WorkflowID(ctx)
	if a.Actual.Before(a.Scheduled) {
		panic("actual before scheduled")
	}
	ticks.Lock()
	defer ticks.Unlock()
	k := a.Scheduled.UTC().Format(time.RFC3339)
	ticks.runs[k] = append(ticks.runs[k], id)
	return struct{}{}, nil
})

// Each tick runs once, however many executors tick, under the ID DBOS gives
// it.
func TestScheduleEachTickOnce(t *testing.T) {
	for _, eng := range dbtest.Engines {
		t.Run(eng, func(t *testing.T) {
			ticks.Lock()
			ticks.runs = map[string][]string{}
			ticks.Unlock()
			url := dbtest.URL(t, eng)
			var rts []*engine.Runtime
			for _, ex := range []string{"exec-1", "exec-2"} {
				rt, err := engine.Launch(context.Background(), engine.Config{AppName: "sched", SystemDatabaseURL: url, ExecutorID: ex,
					ApplicationVersion: "v1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err != nil {
					t.Fatal(err)
				}
				rts = append(rts, rt)
			}
			time.Sleep(3500 * time.Millisecond)
			for _, rt := range rts {
				if err := rt.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			ticks.Lock()
			defer ticks.Unlock()
			if len(ticks.runs) < 2 {
				t.Fatalf("%d ticks ran in 3.5s of an every-second schedule", len(ticks.runs))
			}
			for k, ids := range ticks.runs {
				at, _ := time.Parse(time.RFC3339, k)
				if len(ids) != 1 || ids[0] != engine.ScheduledWorkflowID(everySecond.Name(), at) {
					t.Fatalf("tick %s ran as %v: want once, as %s", k, ids, engine.ScheduledWorkflowID(everySecond.Name(), at))
				}
			}
		})
	}
}
