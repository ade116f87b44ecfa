package sysdb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func recvStep(wf string, id int) StepRow {
	return StepRow{WorkflowID: wf, StepID: id, Name: "DBOS.recv"}
}

// Two executions of one workflow race to receive at the same step, in two
// stores (two processes): one consumes, the other gets its recorded
// outcome; the second message stays for the next step.
func TestRecvExactlyOnceUnderRace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		a, b := tg.migrated(t), tg.open(t)
		mustInit(t, a, initParams("dest"))
		for i := range 2 {
			if _, _, err := a.Send(ctx, Message{Destination: "dest", Topic: "t", Value: fmt.Sprint(i), Serialization: FormatPortable}, nil); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond) // distinct created_at_epoch_ms: a defined order
		}
		for round := range 20 {
			step := 100 + round
			var wg sync.WaitGroup
			got := make([]StepRow, 2)
			fresh := make([]bool, 2)
			for i, s := range []Store{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := s.Recv(ctx, "dest", "t", recvStep("dest", step), true)
					if err != nil || !r.Recorded {
						t.Error(r, err)
					}
					got[i], fresh[i] = r.Step, r.Fresh
				}()
			}
			wg.Wait()
			if fresh[0] == fresh[1] {
				t.Fatalf("round %d: fresh = %v: exactly one execution must record the step", round, fresh)
			}
			if got[0].Output != got[1].Output {
				t.Fatalf("round %d: the executions saw %q and %q", round, got[0].Output, got[1].Output)
			}
			want := ""
			if round < 2 {
				want = fmt.Sprint(round)
			}
			if got[0].Output != want {
				t.Fatalf("round %d: received %q, want %q (oldest first, each once)", round, got[0].Output, want)
			}
		}
		if ok, err := a.HasMessage(ctx, "dest", "t"); ok || err != nil {
			t.Errorf("HasMessage after both consumed = %v, %v", ok, err)
		}
	})
}

func TestSendErrorsAndIdempotency(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)
		if _, _, err := s.Send(ctx, Message{Destination: "nobody", Value: "1"}, nil); !errors.Is(err, ErrNoDestination) {
			t.Errorf("send to a missing workflow: %v, want ErrNoDestination", err)
		}
		mustInit(t, s, initParams("dest"))
		m := Message{Destination: "dest", Value: "1", Serialization: FormatPortable, MessageUUID: "key::dest"}
		for range 3 {
			if _, _, err := s.Send(ctx, m, nil); err != nil {
				t.Fatal(err)
			}
		}
		// From a workflow: the step goes with the message; a second
		// execution of the step sends nothing and gets the record.
		mustInit(t, s, initParams("src"))
		step := StepRow{WorkflowID: "src", StepID: 1, Name: "DBOS.send"}
		m.MessageUUID = ""
		if _, fresh, err := s.Send(ctx, m, &step); !fresh || err != nil {
			t.Fatalf("first send: fresh=%v err=%v", fresh, err)
		}
		if got, fresh, err := s.Send(ctx, m, &step); fresh || err != nil || got.Name != "DBOS.send" {
			t.Fatalf("replayed send: %+v fresh=%v err=%v", got, fresh, err)
		}
		var n int
		for {
			r, err := s.Recv(ctx, "dest", "", recvStep("dest", 10+n), false)
			if err != nil {
				t.Fatal(err)
			}
			if !r.Recorded {
				break // no message, and no timeout recorded
			}
			n++
		}
		if n != 2 {
			t.Errorf("%d messages delivered, want 2 (one per idempotency key, one per step)", n)
		}
	})
}

func TestEventsAndStreamsStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)
		mustInit(t, s, initParams("wf"))
		if _, ok, err := s.GetEvent(ctx, "wf", "k"); ok || err != nil {
			t.Fatalf("unset event: %v, %v", ok, err)
		}
		wake, stop := s.Subscribe(EventsChannel, Payload("wf", "k"))
		defer stop()
		listen, stopListening := context.WithCancel(ctx)
		defer stopListening()
		s.WatchCancellations(listen, func(string) {}) // starts the listener on PostgreSQL
		for i, v := range []string{`"a"`, `"b"`} {
			if _, fresh, err := s.SetEvent(ctx, Event{WorkflowID: "wf", Key: "k", Value: v, Serialization: FormatPortable},
				StepRow{WorkflowID: "wf", StepID: i + 1, Name: "DBOS.setEvent"}); !fresh || err != nil {
				t.Fatal(fresh, err)
			}
		}
		select {
		case <-wake:
		case <-time.After(10 * time.Second):
			t.Fatal("no wake-up for the event")
		}
		if ev, ok, err := s.GetEvent(ctx, "wf", "k"); !ok || err != nil || ev.Value != `"b"` {
			t.Fatalf("event %+v %v %v, want the last write", ev, ok, err)
		}
		for i := range 3 {
			if _, _, err := s.WriteStream(ctx, Event{WorkflowID: "wf", Key: "s", Value: fmt.Sprint(i), Serialization: FormatPortable},
				StepRow{WorkflowID: "wf", StepID: 10 + i, Name: "DBOS.writeStream"}); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := s.WriteStream(ctx, Event{WorkflowID: "wf", Key: "s", Value: StreamClosed}, StepRow{WorkflowID: "wf", StepID: 20, Name: "DBOS.closeStream"}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.WriteStream(ctx, Event{WorkflowID: "wf", Key: "s", Value: "9"}, StepRow{WorkflowID: "wf", StepID: 21, Name: "DBOS.writeStream"}); !errors.Is(err, ErrStreamClosed) {
			t.Fatalf("write after close: %v", err)
		}
		vals, closed, err := s.ReadStream(ctx, "wf", "s", 1)
		if err != nil || !closed || len(vals) != 2 || vals[0].Value != "1" || vals[1].Offset != 2 {
			t.Fatalf("ReadStream from 1: %+v closed=%v err=%v", vals, closed, err)
		}
	})
}
