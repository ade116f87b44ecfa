package interop

import (
	"context"
	"fmt"
	"testing"
	"time"

	sdk "github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/dbosgen/dbosgen/interop/app"
	dbosgen "github.com/dbosgen/dbosgen/runtime/dbos"
)

// A DBOS client's Send, in DBOS's default format and in portable_json,
// reaches a dbosgen workflow waiting in Recv.
func TestClientSendToRecv(t *testing.T) {
	url := newDB(t)
	rt := launchGen(t, url)
	c := newClient(t, url, genApp)
	ctx, cancel := context.WithTimeout(on(rt), 60*time.Second)
	defer cancel()
	for _, portable := range []bool{false, true} {
		id := fmt.Sprint("pay-portable-", portable)
		h, err := app.StartAwaitPaymentWorkflow(dbosgen.WithWorkflowID(ctx, id), 30_000)
		if err != nil {
			t.Fatal(err)
		}
		var opts []sdk.SendOption
		if portable {
			opts = append(opts, sdk.WithPortableSend())
		}
		want := app.Payment{OrderID: id, Cents: 1234}
		if err := sdk.Send(c, id, want, "payment", opts...); err != nil {
			t.Fatalf("DBOS client Send: %v", err)
		}
		got, err := h.Result(ctx)
		if err != nil || got != want {
			t.Errorf("portable=%v: the dbosgen workflow received %+v, %v; want %+v", portable, got, err, want)
		}
	}
}

// A dbosgen SetEvent is read by a DBOS client's GetEvent, one waiting
// before it is set included (woken by dbosgen's notification), and a
// dbosgen stream by the client's ReadStream.
func TestClientReadsEventsAndStreams(t *testing.T) {
	url := newDB(t)
	rt := launchGen(t, url)
	c := newClient(t, url, genApp)
	ctx, cancel := context.WithTimeout(on(rt), 60*time.Second)
	defer cancel()

	// DBOS re-checks a waiting GetEvent only every 60s, and once more at
	// its timeout: returning well before the timeout needs the
	// notification dbosgen sends.
	const timeout = 20 * time.Second
	waiting := make(chan string, 1)
	began := time.Now()
	go func() {
		v, err := sdk.GetEvent[string](c, "pub-1", "status", timeout)
		waiting <- fmt.Sprint(v, err)
	}()
	time.Sleep(500 * time.Millisecond) // let the client wait first
	if n, err := app.PublishWorkflow(dbosgen.WithWorkflowID(ctx, "pub-1"), 3); err != nil || n != 3 {
		t.Fatalf("dbosgen Publish: %d, %v", n, err)
	}
	if got := <-waiting; got != "published<nil>" {
		t.Errorf("a waiting DBOS client GetEvent got %q", got)
	}
	if waited := time.Since(began); waited > timeout/2 {
		t.Errorf("a waiting DBOS client GetEvent returned after %v: woken by its timeout, not by a notification", waited)
	}
	if v, err := sdk.GetEvent[string](c, "pub-1", "status", time.Second); v != "published" || err != nil {
		t.Errorf("DBOS client GetEvent: %q, %v", v, err)
	}
	vals, closed, err := sdk.ReadStream[int](c, "pub-1", "numbers")
	if err != nil || !closed || fmt.Sprint(vals) != "[0 1 2]" {
		t.Errorf("DBOS client ReadStream: %v closed=%v err=%v; want [0 1 2] closed", vals, closed, err)
	}
}
