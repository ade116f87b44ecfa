package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// On PostgreSQL, Send, SetEvent and WriteStream from a workflow are one
// statement each (the write and its checkpoint), and so is a Recv whose
// message is already there (the consume with its checkpoint).
func TestMessagingStatementCount(t *testing.T) {
	defer fatalOnMust(t)
	_, ctx, tr := launchTraced(t, dbtest.URL(t, "postgres"))
	in := setBody(t, func(ctx context.Context, in input) (string, error) {
		id, _ := dbos.WorkflowID(ctx)
		if err := dbos.Send(ctx, id, "t", 1); err != nil {
			return "", err
		}
		if err := dbos.SetEvent(ctx, "k", 1); err != nil {
			return "", err
		}
		if err := dbos.WriteStream(ctx, "s", 1); err != nil {
			return "", err
		}
		_, _, err := dbos.Recv[int](ctx, "t", time.Second)
		return "", err
	})
	tr.start()
	must(testWF.Run(dbos.WithWorkflowID(ctx, "counted"), in))
	sent := tr.stop()
	var got []string
	for _, s := range sent {
		got = append(got, s.kind)
	}
	// start, send, set event, write stream, recv (one look: the consume), finish.
	if len(sent) != 6 {
		t.Errorf("%d statements, want 6:\n%s", len(sent), strings.Join(got, "\n"))
	}
}
