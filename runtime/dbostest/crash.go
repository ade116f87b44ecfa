package dbostest

import (
	"context"

	"github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// ErrCrashed is the error a workflow started with CrashAfter returns once
// it has "died" (errors.Is), from the wrapper that hit the crash point and
// from its handle.
var ErrCrashed = engine.ErrCrashed

// CrashAfter returns a context with which the workflow started directly
// stops as if its process died once it has taken n step IDs: its step,
// transaction or child workflow n+1 does not run, and its outcome is not
// recorded, so it stays PENDING. A workflow with n steps or fewer dies
// after its last one, before its outcome is recorded: looping n from 0 to
// the number of steps tries every crash point. Recover it as production would: with
// Runtime.Restart, whose Launch resumes it, or by calling the workflow again
// with its ID (dbos.WithWorkflowID). The steps up to n then return their
// recorded outcomes without running; the rest run.
//
// Only the workflow started with the context crashes, not the children it
// starts. Code of the body between step n and the crash point runs, as it
// may have before a real crash.
func CrashAfter(ctx context.Context, n int) context.Context {
	return engine.WithCrashAfter(ctx, n)
}
