package engine_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// A workflow's sleeps, sends, receives and event reads show to the
// observer as steps spanning their waits, once: not on replay.
func TestObserverSeesMessagingSteps(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		o := &obsRecorder{name: "o"}
		_, ctx := launch(t, url, func(c *dbos.Config) { c.Observer = o })
		h := startWF(t, ctx, "observed", func(ctx context.Context, in input) (string, error) {
			if err := dbos.Sleep(ctx, time.Millisecond); err != nil {
				return "", err
			}
			if err := dbos.Send(ctx, "observed", "t", 1); err != nil {
				return "", err
			}
			if _, _, err := dbos.Recv[int](ctx, "t", time.Second); err != nil {
				return "", err
			}
			_, _, err := dbos.GetEvent[int](ctx, "observed", "none", time.Millisecond)
			return "", err
		})
		must(result(t, h))
		want := []string{
			"step-start observed/1 DBOS.sleep #0/1", "step-end observed/1 DBOS.sleep #0 success mark=step:DBOS.sleep#0",
			"step-start observed/2 DBOS.send #0/1", "step-end observed/2 DBOS.send #0 success mark=step:DBOS.send#0",
			"step-start observed/3 DBOS.recv #0/1", "step-end observed/3 DBOS.recv #0 success mark=step:DBOS.recv#0",
			"step-start observed/5 DBOS.getEvent #0/1", "step-end observed/5 DBOS.getEvent #0 success mark=step:DBOS.getEvent#0",
		}
		if got := o.lines("step-"); !slices.Equal(got, want) {
			t.Fatalf("saw\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
	})
}
