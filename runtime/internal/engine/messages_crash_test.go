package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// The messaging crash tests run their workflows in a child process (this
// test binary again, in TestMsgCrashChild), kill it with SIGKILL and launch
// it again; the parent, which survives, sends, reads and checks the
// database.

const msgCrashEnv = "DBOSGEN_MSG_CRASH_CHILD"

type msgCrashSpec struct {
	URL   string
	Start []string          // workflow IDs to start (idempotent); the others are recovered by Launch
	Sleep map[string]string // sleeper ID -> duration
	N     int               // messages, stream values
}

const (
	inboxID  = "inbox"
	senderID = "sender"
	sinkID   = "sink"
	writerID = "writer"
)

// slowStep is a step slow enough to be killed around.
func slowStep(ctx context.Context) error {
	_, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "slow"}, func(ctx context.Context) (int, error) {
		select {
		case <-time.After(time.Duration(20+rand.IntN(60)) * time.Millisecond):
			return 0, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	return err
}

func msgCrashBody(spec msgCrashSpec) body {
	return func(ctx context.Context, in input) (string, error) {
		id, _ := dbos.WorkflowID(ctx)
		switch {
		case spec.Sleep[id] != "" && strings.HasPrefix(id, "recv-"):
			// Recv's timeout is durable like a sleep.
			d, _ := time.ParseDuration(spec.Sleep[id])
			_, ok, err := dbos.Recv[int](ctx, "none", d)
			return fmt.Sprint("received ", ok), err
		case spec.Sleep[id] != "":
			d, _ := time.ParseDuration(spec.Sleep[id])
			return "slept", dbos.Sleep(ctx, d)
		case id == inboxID:
			var got []int
			for range spec.N {
				v, ok, err := dbos.Recv[int](ctx, "m", time.Minute)
				if err != nil || !ok {
					return "", fmt.Errorf("recv: ok=%v err=%w", ok, err)
				}
				got = append(got, v)
				if err := slowStep(ctx); err != nil {
					return "", err
				}
			}
			return fmt.Sprint(got), nil
		case id == senderID:
			for i := range spec.N {
				if err := dbos.Send(ctx, sinkID, "m", i); err != nil {
					return "", err
				}
				if err := slowStep(ctx); err != nil {
					return "", err
				}
			}
			return "sent", nil
		case id == writerID:
			for i := range spec.N {
				if err := dbos.WriteStream(ctx, "s", i); err != nil {
					return "", err
				}
				if err := dbos.SetEvent(ctx, "last", i); err != nil {
					return "", err
				}
				if err := slowStep(ctx); err != nil {
					return "", err
				}
			}
			return "written", dbos.CloseStream(ctx, "s")
		case id == sinkID:
			_, _, err := dbos.Recv[int](ctx, "never", time.Hour)
			return "", err
		}
		return "", fmt.Errorf("no body for %s", id)
	}
}

// TestMsgCrashChild is the child process of the messaging crash tests.
func TestMsgCrashChild(t *testing.T) {
	raw := os.Getenv(msgCrashEnv)
	if raw == "" {
		t.Skip("child process of the messaging crash tests")
	}
	defer fatalOnMust(t)
	var spec msgCrashSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	in := setBody(t, msgCrashBody(spec))
	rt, ctx := launch(t, spec.URL, withExecutor("msg-crasher"))
	for _, id := range spec.Start {
		must(testWF.Start(dbos.WithWorkflowID(ctx, id), in))
	}
	// Run until killed, or until every workflow of this executor finished.
	for {
		if scalar[int](t, rt, "SELECT count(*) FROM {dbos}workflow_status WHERE status = 'PENDING' AND executor_id = 'msg-crasher' AND workflow_uuid <> 'sink'") == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func startMsgChild(t *testing.T, spec msgCrashSpec) *child {
	t.Helper()
	raw, _ := json.Marshal(spec)
	c := &child{done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestMsgCrashChild$", "-test.v", "-test.count=1")
	c.cmd.Env = append(os.Environ(), msgCrashEnv+"="+string(raw))
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.kill() })
	return c
}

// column reads one column of a system-table query (see scalar).
func column[T any](t testing.TB, rt *dbos.Runtime, query string, args ...any) []T {
	t.Helper()
	if rt.AppDB().DriverName() == "pgx" {
		query = strings.ReplaceAll(query, "{dbos}", "dbos.")
	} else {
		query = strings.ReplaceAll(query, "{dbos}", "")
		query = rt.AppDB().Rebind(query)
	}
	var v []T
	if err := rt.AppDB().Select(&v, query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v
}

// Sleep across SIGKILL: a sleep interrupted and resumed before its wake-up
// time ends at the recorded time; one resumed after it returns at once; and
// so does a Recv's timeout.
func TestSleepAcrossKill(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			defer fatalOnMust(t)
			url := dbtest.URL(t, engine)
			obs, _ := launch(t, limitPool(url, 2), withExecutor("observer"))
			spec := msgCrashSpec{URL: limitPool(url, 4), Start: []string{"short", "long", "recv-short"},
				Sleep: map[string]string{"short": "3s", "long": "8s", "recv-short": "3s"}}
			c := startMsgChild(t, spec)
			wake := map[string]int64{}
			waitFor(t, "both sleeps recorded", func() bool {
				for _, id := range spec.Start {
					if s := scalar[string](t, obs, "SELECT COALESCE(MAX(output), '') FROM {dbos}operation_outputs WHERE workflow_uuid = $1 AND function_name = 'DBOS.sleep'", id); s != "" {
						var ms int64
						fmt.Sscan(s, &ms)
						wake[id] = ms
					}
				}
				return len(wake) == len(spec.Start)
			})
			time.Sleep(time.Second)
			c.kill()
			// Resume after the short sleep's wake-up, before the long one's.
			time.Sleep(time.Until(time.UnixMilli(wake["short"])) + 500*time.Millisecond)
			restart := time.Now()
			spec.Start = nil
			startMsgChild(t, spec).wait(t, time.Now().Add(30*time.Second))
			for id, d := range map[string]time.Duration{"short": 3 * time.Second, "long": 8 * time.Second, "recv-short": 3 * time.Second} {
				st := must(obs.WorkflowStatus(context.Background(), id))
				if st.Status != dbos.StatusSuccess {
					t.Fatalf("%s: %s %v", id, st.Status, st.Err)
				}
				if id == "recv-short" {
					wait, cancel := context.WithTimeout(dbos.WithRuntime(context.Background(), obs), 30*time.Second)
					out := must(must(dbos.RetrieveWorkflow[string](wait, id)).Result(wait))
					cancel()
					if out != "received false" {
						t.Errorf("%s: %q, want a timeout", id, out)
					}
				}
				done := scalar[int64](t, obs, "SELECT completed_at FROM {dbos}workflow_status WHERE workflow_uuid = $1", id)
				t.Logf("%s: recorded wake-up %s after the restart, finished %s after it", id,
					time.UnixMilli(wake[id]).Sub(restart).Round(time.Millisecond), time.UnixMilli(done).Sub(restart).Round(time.Millisecond))
				if done < wake[id] {
					t.Errorf("%s woke %dms before its recorded wake-up time", id, wake[id]-done)
				}
				if !time.UnixMilli(done).Before(restart.Add(d)) {
					t.Errorf("%s slept its whole %v again after the restart", id, d)
				}
			}
		})
	}
}

// Recv, Send, events and streams across SIGKILLs at random points: every
// message is consumed exactly once and received in order, a workflow's sends
// land exactly once, and a reader outside sees every stream value once, in
// order, across the writer's crashes.
func TestMessagesAcrossKills(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			defer fatalOnMust(t)
			seed := uint64(time.Now().UnixNano())
			t.Logf("random seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, seed))
			url := dbtest.URL(t, engine)
			obs, octx := launch(t, limitPool(url, 4), withExecutor("observer"))
			octx, stop := context.WithTimeout(octx, 2*time.Minute) // bounds the reader and the sender
			defer stop()
			const n = 30
			spec := msgCrashSpec{URL: limitPool(url, 6), Start: []string{sinkID, inboxID, senderID, writerID}, N: n}
			deadline := time.Now().Add(90 * time.Second)

			c := startMsgChild(t, spec)
			waitFor(t, "the workflows", func() bool {
				return scalar[int](t, obs, "SELECT count(*) FROM {dbos}workflow_status WHERE workflow_uuid IN ('inbox', 'writer')") == 2
			})
			// The reader lives here, across the writer's crashes.
			read := make(chan []int, 1)
			go func() {
				var got []int
				for v, err := range dbos.ReadStream[int](octx, writerID, "s") {
					if err != nil {
						t.Errorf("ReadStream: %v", err)
						break
					}
					got = append(got, v)
				}
				read <- got
			}()
			// Messages go out while the child is killed and relaunched.
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				for i := range n {
					if err := dbos.Send(octx, inboxID, "m", i); err != nil {
						t.Errorf("send %d: %v", i, err)
						return
					}
					time.Sleep(time.Duration(10+rand.IntN(30)) * time.Millisecond)
				}
			}()
			kills := 0
			var progress []int // steps recorded at each kill
			steps := func() int {
				return scalar[int](t, obs, "SELECT count(*) FROM {dbos}operation_outputs WHERE workflow_uuid IN ('inbox', 'sender', 'writer')")
			}
			for kills < 5 && time.Now().Before(deadline) {
				// Kill only a child that has made progress: one killed while
				// it starts up tests nothing.
				before := steps()
				for steps() == before && !c.exited() && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
				if c.exited() {
					break
				}
				c.kill()
				kills++
				progress = append(progress, steps())
				spec.Start = nil
				c = startMsgChild(t, spec)
			}
			select {
			case <-sent:
			case <-time.After(time.Until(deadline)):
				t.Fatal("the messages were not all sent before the deadline")
			}
			c.wait(t, deadline)
			t.Logf("%d kills; steps recorded at each: %v", kills, progress)
			if kills < 3 {
				t.Errorf("only %d kills before the workflows finished", kills)
			}

			want := make([]int, n)
			for i := range want {
				want[i] = i
			}
			ctx, cancel := context.WithTimeout(dbos.WithRuntime(context.Background(), obs), 60*time.Second)
			defer cancel()
			// Recv: each message once, in order, each consumed once by its own step.
			out := must(must(dbos.RetrieveWorkflow[string](ctx, inboxID)).Result(ctx))
			if out != fmt.Sprint(want) {
				t.Errorf("inbox received %s, want %v", out, want)
			}
			if c := scalar[int](t, obs, "SELECT count(*) FROM {dbos}notifications WHERE destination_uuid = 'inbox' AND consumed"); c != n {
				t.Errorf("%d messages consumed, want %d", c, n)
			}
			if c := scalar[int](t, obs, "SELECT count(DISTINCT consumed_by_function_id) FROM {dbos}notifications WHERE destination_uuid = 'inbox'"); c != n {
				t.Errorf("%d distinct consuming steps, want %d", c, n)
			}
			// Send: exactly once each.
			if out := must(must(dbos.RetrieveWorkflow[string](ctx, senderID)).Result(ctx)); out != "sent" {
				t.Errorf("sender: %q", out)
			}
			msgs := column[string](t, obs, "SELECT message FROM {dbos}notifications WHERE destination_uuid = 'sink' ORDER BY created_at_epoch_ms")
			if got := strings.Join(msgs, " "); got != strings.Trim(fmt.Sprint(want), "[]") {
				t.Errorf("sink holds %q, want each of 0..%d once", got, n-1)
			}
			// Streams and events.
			if out := must(must(dbos.RetrieveWorkflow[string](ctx, writerID)).Result(ctx)); out != "written" {
				t.Errorf("writer: %q", out)
			}
			select {
			case got := <-read:
				if !slices.Equal(got, want) {
					t.Errorf("the reader saw %v, want %v", got, want)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the stream reader did not end")
			}
			if v, ok, err := dbos.GetEvent[int](ctx, writerID, "last", 0); v != n-1 || !ok || err != nil {
				t.Errorf("GetEvent = %d, %v, %v", v, ok, err)
			}
			if c := scalar[int](t, obs, "SELECT count(*) FROM {dbos}workflow_events_history WHERE workflow_uuid = 'writer'"); c != n {
				t.Errorf("%d event history rows, want %d", c, n)
			}
		})
	}
}
