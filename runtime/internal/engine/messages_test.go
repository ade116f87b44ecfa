package engine_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

func TestWorkflowOnlyCalls(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		calls := func(ctx context.Context) map[string]error {
			_, _, recvErr := dbos.Recv[string](ctx, "t", time.Millisecond)
			return map[string]error{
				"Sleep":       dbos.Sleep(ctx, time.Millisecond),
				"Recv":        recvErr,
				"SetEvent":    dbos.SetEvent(ctx, "k", 1),
				"WriteStream": dbos.WriteStream(ctx, "k", 1),
				"CloseStream": dbos.CloseStream(ctx, "k"),
			}
		}
		check := func(where string, errs map[string]error) {
			for what, err := range errs {
				if !errors.Is(err, dbos.ErrNotInWorkflow) {
					t.Errorf("%s %s: err = %v, want ErrNotInWorkflow", what, where, err)
				}
			}
		}
		check("outside a workflow", calls(ctx))
		h := startWF(t, ctx, "in-step", func(ctx context.Context, in input) (string, error) {
			return dbos.RunStep(ctx, &dbos.StepOptions{Name: "s"}, func(ctx context.Context) (string, error) {
				check("inside a step", calls(ctx))
				return "ok", nil
			})
		})
		must(result(t, h))
	})
}

func TestSendRecv(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		type msg struct{ N int }
		h := startWF(t, ctx, "receiver", func(ctx context.Context, in input) (string, error) {
			var got []int
			for range 3 {
				m, ok, err := dbos.Recv[msg](ctx, "topic", 20*time.Second)
				if err != nil || !ok {
					return "", fmt.Errorf("recv: ok=%v err=%v", ok, err)
				}
				got = append(got, m.N)
			}
			// Nothing on another topic: a timeout, not an error.
			if _, ok, err := dbos.Recv[msg](ctx, "other", 50*time.Millisecond); ok || err != nil {
				return "", fmt.Errorf("recv on an empty topic: ok=%v err=%v", ok, err)
			}
			return fmt.Sprint(got), nil
		})
		must(0, dbos.Send(ctx, "receiver", "topic", msg{1}))
		time.Sleep(50 * time.Millisecond) // the receiver waits now: a notification wakes it
		must(0, dbos.Send(ctx, "receiver", "topic", msg{2}, dbos.WithIdempotencyKey("k")))
		must(0, dbos.Send(ctx, "receiver", "topic", msg{2}, dbos.WithIdempotencyKey("k"))) // a retry: not sent again
		must(0, dbos.Send(ctx, "receiver", "topic", msg{3}))
		if out, err := result(t, h); err != nil || out != "[1 2 3]" {
			t.Fatalf("result = %q, %v", out, err)
		}
		if n := scalar[int](t, rt, "SELECT count(*) FROM {dbos}notifications WHERE destination_uuid = 'receiver' AND consumed"); n != 3 {
			t.Errorf("%d consumed messages, want 3", n)
		}
		if n := scalar[int](t, rt, "SELECT count(*) FROM {dbos}notifications WHERE destination_uuid = 'receiver' AND consumed_by_function_id IS NULL"); n != 0 {
			t.Errorf("%d messages without consumed_by_function_id", n)
		}
		if n := scalar[int](t, rt, "SELECT count(*) FROM {dbos}operation_outputs WHERE workflow_uuid = 'receiver' AND function_name = 'DBOS.recv' AND output IS NULL"); n != 1 {
			t.Errorf("%d recorded timeouts, want 1", n)
		}
		// The empty topic is stored as DBOS stores it.
		h2 := startWF(t, ctx, "null-topic", func(ctx context.Context, in input) (string, error) {
			s, ok, err := dbos.Recv[string](ctx, "", 20*time.Second)
			return fmt.Sprint(s, ok), err
		})
		must(0, dbos.Send(ctx, "null-topic", "", "hi"))
		if out, err := result(t, h2); err != nil || out != "hitrue" {
			t.Fatalf("null topic: %q, %v", out, err)
		}
		if n := scalar[int](t, rt, "SELECT count(*) FROM {dbos}notifications WHERE destination_uuid = 'null-topic' AND topic = '__null__topic__'"); n != 1 {
			t.Errorf("the empty topic is not stored as __null__topic__")
		}
	})
}

func TestSendToMissingWorkflow(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		if err := dbos.Send(ctx, "nobody", "t", 1); !errors.Is(err, dbos.ErrWorkflowNotFound) {
			t.Errorf("outside a workflow: err = %v, want ErrWorkflowNotFound", err)
		}
		h := startWF(t, ctx, "sender-missing", func(ctx context.Context, in input) (string, error) {
			return "", dbos.Send(ctx, "nobody", "t", 1)
		})
		if _, err := result(t, h); !errors.Is(err, dbos.ErrWorkflowNotFound) {
			t.Errorf("from a workflow: err = %v, want ErrWorkflowNotFound", err)
		}
		if n := scalar[int](t, rt, "SELECT count(*) FROM {dbos}operation_outputs WHERE workflow_uuid = 'sender-missing' AND function_name = 'DBOS.send' AND error IS NOT NULL"); n != 1 {
			t.Errorf("the failed send is not recorded")
		}
	})
}

func TestRecvEndsOnCancel(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		h := startWF(t, ctx, "cancel-recv", func(ctx context.Context, in input) (string, error) {
			_, _, err := dbos.Recv[int](ctx, "t", time.Hour)
			return "", err
		})
		time.Sleep(100 * time.Millisecond)
		must(0, dbos.CancelWorkflow(ctx, "cancel-recv"))
		if _, err := result(t, h); !errors.Is(err, dbos.ErrWorkflowCancelled) {
			t.Fatalf("err = %v, want ErrWorkflowCancelled", err)
		}
	})
}

func TestEvents(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		rt, ctx := launch(t, url)
		// A reader that starts before the event is set waits for it.
		got := make(chan string, 1)
		go func() {
			v, ok, err := dbos.GetEvent[string](ctx, "eventer", "status", 20*time.Second)
			got <- fmt.Sprint(v, ok, err)
		}()
		gate := make(chan struct{})
		h := startWF(t, ctx, "eventer", func(ctx context.Context, in input) (string, error) {
			if err := dbos.SetEvent(ctx, "status", "first"); err != nil {
				return "", err
			}
			<-gate
			return "", dbos.SetEvent(ctx, "status", "second")
		})
		if g := <-got; g != "firsttrue <nil>" {
			t.Errorf("waiting reader got %q", g)
		}
		close(gate)
		must(result(t, h))
		v, ok, err := dbos.GetEvent[string](ctx, "eventer", "status", 0)
		if v != "second" || !ok || err != nil {
			t.Errorf("GetEvent = %q, %v, %v; want the last write", v, ok, err)
		}
		if n := scalar[int](t, rt, "SELECT count(*) FROM {dbos}workflow_events_history WHERE workflow_uuid = 'eventer'"); n != 2 {
			t.Errorf("%d history rows, want 2", n)
		}
		if _, ok, err := dbos.GetEvent[string](ctx, "eventer", "unset", 50*time.Millisecond); ok || err != nil {
			t.Errorf("unset event: ok=%v err=%v", ok, err)
		}
		// From a workflow, GetEvent is recorded; the replay reads the record.
		h2 := startWF(t, ctx, "event-reader", func(ctx context.Context, in input) (string, error) {
			v, ok, err := dbos.GetEvent[string](ctx, "eventer", "status", time.Second)
			return fmt.Sprint(v, ok), err
		})
		if out, err := result(t, h2); out != "secondtrue" || err != nil {
			t.Errorf("GetEvent in a workflow = %q, %v", out, err)
		}
		if n := scalar[int](t, rt, "SELECT count(*) FROM {dbos}operation_outputs WHERE workflow_uuid = 'event-reader' AND function_name = 'DBOS.getEvent'"); n != 1 {
			t.Errorf("GetEvent in a workflow is not recorded")
		}
	})
}

func TestStreams(t *testing.T) {
	forEachEngine(t, func(t *testing.T, url string) {
		_, ctx := launch(t, url)
		gate := make(chan struct{})
		h := startWF(t, ctx, "streamer", func(ctx context.Context, in input) (string, error) {
			for i := range 5 {
				if i == 2 {
					<-gate // the reader waits here for values not yet written
				}
				if err := dbos.WriteStream(ctx, "s", i); err != nil {
					return "", err
				}
			}
			if err := dbos.CloseStream(ctx, "s"); err != nil {
				return "", err
			}
			if err := dbos.WriteStream(ctx, "s", 99); !errors.Is(err, dbos.ErrStreamClosed) {
				return "", fmt.Errorf("write after close: %v", err)
			}
			if err := dbos.WriteStream(ctx, "open", 7); err != nil {
				return "", err
			}
			return "ok", nil
		})
		var got []int
		for v, err := range dbos.ReadStream[int](ctx, "streamer", "s") {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
			if len(got) == 2 {
				close(gate)
			}
		}
		if fmt.Sprint(got) != "[0 1 2 3 4]" {
			t.Errorf("read %v", got)
		}
		must(result(t, h))
		// A stream never closed ends when its workflow has finished.
		got = nil
		for v, err := range dbos.ReadStream[int](ctx, "streamer", "open") {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		}
		if fmt.Sprint(got) != "[7]" {
			t.Errorf("read %v from the unclosed stream", got)
		}
	})
}
