package dbos

import (
	"context"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// ErrNotInWorkflow: Sleep, Recv, SetEvent, WriteStream or CloseStream
// called outside a workflow body, or inside a step or transaction.
var ErrNotInWorkflow = engine.ErrNotInWorkflow

// Sleep pauses the workflow for d, durably: the wake-up time is recorded on
// first execution, so a workflow recovered after a crash sleeps only what
// remains. Cancellation of the workflow ends it with ErrWorkflowCancelled.
func Sleep(ctx context.Context, d time.Duration) error { return engine.Sleep(ctx, d) }
