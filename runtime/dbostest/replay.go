package dbostest

import (
	"testing"

	"github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// Replay runs the finished workflow id again, on rt, against its recorded
// outcomes: its steps, transactions and children return what the recorded
// execution saw, nothing runs for real and nothing is written. It fails t
// when the body is not deterministic: it calls a step under another name or
// in another order, more steps or fewer, or returns another result or error
// than the recorded one. Call it after a workflow has finished, in the tests
// that run one: recovery in production depends on exactly this.
func Replay(t testing.TB, rt *Runtime, id string) {
	t.Helper()
	if err := engine.ReplayWorkflow(rt.Context(), rt.Runtime, id); err != nil {
		t.Errorf("dbostest.Replay: %v", err)
	}
}
