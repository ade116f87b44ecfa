package engine

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

const (
	writeStreamStepName = "DBOS.writeStream"
	closeStreamStepName = "DBOS.closeStream"
)

// ErrStreamClosed: a write to a stream its workflow has closed.
var ErrStreamClosed = errors.New("dbos: stream is closed")

func init() { registerError("dbos.stream_closed", ErrStreamClosed) }

// WriteStream appends value to the calling workflow's stream key, exactly
// once (the value and its checkpoint are one transaction). Workflows only:
// elsewhere it fails with ErrNotInWorkflow; after CloseStream with
// ErrStreamClosed.
func WriteStream(ctx context.Context, key string, value any) error {
	wf, err := workflowOnly(ctx, "WriteStream")
	if err != nil {
		return err
	}
	encoded, err := encodeValue(value)
	if err != nil {
		err = fmt.Errorf("dbos: WriteStream %q of workflow %s: the value cannot be stored as JSON: %w", key, wf.id, err)
	}
	return writeStream(wf, key, encoded, writeStreamStepName, err)
}

// CloseStream closes the calling workflow's stream key: readers end once
// they have read every value. Workflows only.
func CloseStream(ctx context.Context, key string) error {
	wf, err := workflowOnly(ctx, "CloseStream")
	if err != nil {
		return err
	}
	return writeStream(wf, key, sysdb.StreamClosed, closeStreamStepName, nil)
}

func writeStream(wf *workflowState, key, value, name string, failure error) error {
	id := wf.nextStepID()
	if rec, ok, err := recordedAt(wf, id, name); ok || err != nil {
		if err != nil {
			return err
		}
		return storedError(wf, rec)
	}
	started := time.Now().UnixMilli()
	if failure != nil {
		return recordFailure(wf, id, name, started, failure)
	}
	ev := sysdb.Event{WorkflowID: wf.id, Key: key, Value: value, Serialization: sysdb.FormatPortable}
	step := sysdb.StepRow{WorkflowID: wf.id, StepID: id, Name: name, StartedMS: started}
	stored, err := writeStep(wf, name, func(ctx context.Context) (sysdb.StepRow, bool, error) {
		return wf.rt.store.WriteStream(ctx, ev, step)
	})
	if errors.Is(err, sysdb.ErrStreamClosed) {
		return recordFailure(wf, id, name, started, fmt.Errorf("%w: stream %q of workflow %s", ErrStreamClosed, key, wf.id))
	}
	if err != nil {
		return wf.abort(dbErr(err, "dbos: %s %q of workflow %s", name, key, wf.id))
	}
	return storedError(wf, stored)
}

// ReadStream yields every value of workflowID's stream key once, in order,
// waiting for more until the stream is closed or the workflow has finished
// (values written before it finished are all yielded). It may be called
// from anywhere; it is not recorded. An error ends the sequence.
func ReadStream[T any](ctx context.Context, workflowID, key string) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		rt, err := findRuntime(ctx)
		if err == nil {
			err = rt.shutDownError()
		}
		if err != nil {
			yield(zero, err)
			return
		}
		var wf *workflowState
		if stepFrom(ctx) == nil {
			wf = workflowFrom(ctx) // a reading workflow stops when it is cancelled
		}
		w := rt.subscribe(sysdb.StreamsChannel, sysdb.Payload(workflowID, key))
		defer w.cancel()
		next := 0
		var batch []sysdb.StreamValue
		var closed, finished bool
		read := func(ctx context.Context) (bool, error) {
			if !finished {
				// Read the status first: values written before the
				// workflow finished are then all in the read below.
				row, err := rt.store.Workflow(ctx, workflowID)
				if errors.Is(err, sysdb.ErrNotFound) {
					return false, fmt.Errorf("%w: cannot read stream %q of workflow %s", ErrWorkflowNotFound, key, workflowID)
				}
				if err != nil {
					return false, err
				}
				finished = row.Status != sysdb.StatusPending && row.Status != sysdb.StatusEnqueued && row.Status != sysdb.StatusDelayed
			}
			var err error
			batch, closed, err = rt.store.ReadStream(ctx, workflowID, key, next)
			return len(batch) > 0 || closed || finished, err
		}
		for {
			ready, err := w.check(ctx, read)
			if err == nil && !ready {
				_, err = w.until(ctx, wf, time.Time{}, read)
			}
			if err != nil {
				yield(zero, err)
				return
			}
			for _, v := range batch {
				next = v.Offset + 1
				out, err := decodeValue[T](v.Value, v.Serialization)
				if err != nil {
					yield(zero, errorf(ErrCorruptRecord, err, "dbos: value %d of stream %q of workflow %s does not decode as %T", v.Offset, key, workflowID, zero))
					return
				}
				if !yield(out, nil) {
					return
				}
			}
			if closed || (finished && len(batch) == 0) {
				return
			}
		}
	}
}
