package dbos

import (
	"context"
	"iter"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// ErrStreamClosed: WriteStream after CloseStream of the same key.
var ErrStreamClosed = engine.ErrStreamClosed

// SendOption configures Send.
type SendOption = engine.SendOption

// WithIdempotencyKey makes a Send from outside a workflow deliver one
// message per key and destination however often it is retried.
func WithIdempotencyKey(key string) SendOption { return engine.WithIdempotencyKey(key) }

// Send sends msg to the workflow destinationID on topic. From a workflow it
// is exactly once. A missing destination is an error matching
// ErrWorkflowNotFound.
func Send(ctx context.Context, destinationID, topic string, msg any, opts ...SendOption) error {
	return engine.Send(ctx, destinationID, topic, msg, opts...)
}

// Recv consumes the oldest message on topic sent to the calling workflow,
// waiting up to timeout; ok is false when none came. Exactly once across
// crashes; a recovered workflow receives what it received before.
// Workflows only.
func Recv[T any](ctx context.Context, topic string, timeout time.Duration) (T, bool, error) {
	return engine.Recv[T](ctx, topic, timeout)
}

// SetEvent sets the calling workflow's event key (last write wins).
// Workflows only.
func SetEvent(ctx context.Context, key string, value any) error {
	return engine.SetEvent(ctx, key, value)
}

// GetEvent waits up to timeout for workflowID's event key; ok is false when
// it was not set in time. From a workflow it is recorded.
func GetEvent[T any](ctx context.Context, workflowID, key string, timeout time.Duration) (T, bool, error) {
	return engine.GetEvent[T](ctx, workflowID, key, timeout)
}

// WriteStream appends value to the calling workflow's stream key, exactly
// once. Workflows only.
func WriteStream(ctx context.Context, key string, value any) error {
	return engine.WriteStream(ctx, key, value)
}

// CloseStream closes the calling workflow's stream key. Workflows only.
func CloseStream(ctx context.Context, key string) error { return engine.CloseStream(ctx, key) }

// ReadStream yields every value of workflowID's stream key once, in order,
// until the stream is closed or the workflow has finished.
func ReadStream[T any](ctx context.Context, workflowID, key string) iter.Seq2[T, error] {
	return engine.ReadStream[T](ctx, workflowID, key)
}
