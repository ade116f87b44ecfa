package engine_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// The queue crash test serves a queue from a child process (this test
// binary again) and SIGKILLs it mid-queue: workflows it had dequeued are
// PENDING on its executor, the rest ENQUEUED. The restarted executor must
// finish every one of them, each workflow's step committed once.

const queueCrashEnv = "DBOSGEN_QUEUE_CRASH_CHILD" // "url|ledger": run as the child

const queueCrashKey = "queue-crash"

func queueCrashBody(ledger string) body {
	return func(ctx context.Context, in input) (string, error) {
		v, err := dbos.RunStep(ctx, &dbos.StepOptions{Name: "work"}, func(ctx context.Context) (int, error) {
			id, _ := dbos.WorkflowID(ctx)
			f, err := os.OpenFile(ledger, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
			if err != nil {
				return 0, err
			}
			_, err = f.WriteString(id + "\n")
			if err == nil {
				err = f.Sync()
			}
			f.Close()
			if err != nil {
				return 0, err
			}
			select { // time to be killed between the ledger and the checkpoint
			case <-time.After(40 * time.Millisecond):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			return in.N * 10, nil
		})
		return fmt.Sprint(v), err
	}
}

// TestQueueCrashChild is the child process; it does nothing unless
// DBOSGEN_QUEUE_CRASH_CHILD is set.
func TestQueueCrashChild(t *testing.T) {
	spec := os.Getenv(queueCrashEnv)
	if spec == "" {
		t.Skip("child process of TestQueueSIGKILL")
	}
	url, ledger, _ := strings.Cut(spec, "|")
	bodies.Store(queueCrashKey, queueCrashBody(ledger))
	launch(t, url, withExecutor("queue-child"), func(c *dbos.Config) { c.ListenQueues = []string{qWorker.Name()} })
	time.Sleep(60 * time.Second) // until killed
}

func TestQueueSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	url := dbtest.URL(t, "postgres")
	ledger := filepath.Join(t.TempDir(), "ledger")
	// The parent only enqueues: it serves another queue.
	rt, ctx := launch(t, url, withExecutor("parent"), func(c *dbos.Config) { c.ListenQueues = []string{qBasic.Name()} })
	const n = 24
	var hs []*dbos.WorkflowHandle[string]
	for i := range n {
		hs = append(hs, must(testWF.Enqueue(ctx, qWorker, input{Key: queueCrashKey, N: i})))
	}
	child := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestQueueCrashChild$")
		cmd.Env = append(os.Environ(), queueCrashEnv+"="+url+"|"+ledger)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	done := func() int {
		var k int
		if err := rt.AppDB().Get(&k, "SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'"); err != nil {
			t.Fatal(err)
		}
		return k
	}
	cmd := child()
	waitFor(t, "some queued workflows to finish", func() bool { return done() >= 6 })
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	var pending, enqueued int
	must(0, rt.AppDB().Get(&pending, "SELECT count(*) FROM dbos.workflow_status WHERE status = 'PENDING'"))
	must(0, rt.AppDB().Get(&enqueued, "SELECT count(*) FROM dbos.workflow_status WHERE status = 'ENQUEUED'"))
	t.Logf("after SIGKILL: %d done, %d dequeued and interrupted, %d still queued", done(), pending, enqueued)
	if pending > 3 {
		t.Fatalf("%d PENDING on a queue with worker concurrency 3", pending)
	}
	if enqueued == 0 {
		t.Fatal("the kill came after the queue drained: the test proves nothing")
	}

	cmd = child() // same executor ID: recovers its PENDING rows, serves the rest
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for i, h := range hs {
		if got := must(h.Result(ctx)); got != fmt.Sprint(i*10) {
			t.Fatalf("workflow %d returned %q", i, got)
		}
	}
	// Each workflow's step ran once, or twice if the kill caught it between
	// its ledger line and its checkpoint.
	raw, err := os.ReadFile(ledger)
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]int{}
	for _, id := range strings.Fields(string(raw)) {
		runs[id]++
	}
	again := 0
	for _, h := range hs {
		switch runs[h.ID()] {
		case 1:
		case 2:
			again++
		default:
			t.Fatalf("workflow %s's step ran %d times", h.ID(), runs[h.ID()])
		}
	}
	if again > pending {
		t.Fatalf("%d steps ran twice, but only %d workflows were interrupted", again, pending)
	}
}
