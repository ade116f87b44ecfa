package engine_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// Global concurrency across two processes: this one and a child (this test
// binary again) serve qGlobal (2 per executor, 3 in all). Every body
// appends its start and end times to one ledger file; the body runs inside
// its PENDING interval, so its overlap never exceeds the rows'.

const queueGlobalEnv = "DBOSGEN_QUEUE_GLOBAL_CHILD" // "url|ledger"

const queueGlobalKey = "queue-global"

func queueGlobalBody(ledger string) body {
	note := func(what string) error {
		f, err := os.OpenFile(ledger, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = fmt.Fprintf(f, "%s %d\n", what, time.Now().UnixNano())
		return err
	}
	return func(ctx context.Context, in input) (string, error) {
		if err := note("start"); err != nil {
			return "", err
		}
		time.Sleep(40 * time.Millisecond)
		if err := note("end"); err != nil {
			return "", err
		}
		return "", nil
	}
}

func TestQueueGlobalChild(t *testing.T) {
	spec := os.Getenv(queueGlobalEnv)
	if spec == "" {
		t.Skip("child process of TestQueueGlobalConcurrencyTwoProcesses")
	}
	url, ledger, _ := strings.Cut(spec, "|")
	bodies.Store(queueGlobalKey, queueGlobalBody(ledger))
	launch(t, url, withExecutor("proc-2"), func(c *dbos.Config) { c.ListenQueues = []string{qGlobal.Name()} })
	time.Sleep(60 * time.Second) // until killed
}

func TestQueueGlobalConcurrencyTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	url := dbtest.URL(t, "postgres")
	ledger := filepath.Join(t.TempDir(), "ledger")
	bodies.Store(queueGlobalKey, queueGlobalBody(ledger))
	t.Cleanup(func() { bodies.Delete(queueGlobalKey) })
	cmd := exec.Command(os.Args[0], "-test.run=^TestQueueGlobalChild$")
	cmd.Env = append(os.Environ(), queueGlobalEnv+"="+url+"|"+ledger)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	_, ctx := launch(t, url, withExecutor("proc-1"), func(c *dbos.Config) { c.ListenQueues = []string{qGlobal.Name()} })
	var hs []*dbos.WorkflowHandle[string]
	for i := range 40 {
		hs = append(hs, must(testWF.Enqueue(ctx, qGlobal, input{Key: queueGlobalKey, N: i})))
	}
	execs := map[string]int{}
	for _, h := range hs {
		must(h.Result(ctx))
		execs[must(h.Status(ctx)).ExecutorID]++
	}
	if len(execs) != 2 {
		t.Fatalf("workflows ran on %v: want both processes", execs)
	}
	raw, err := os.ReadFile(ledger)
	if err != nil {
		t.Fatal(err)
	}
	type ev struct {
		at    int64
		delta int
	}
	var evs []ev
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		what, at, _ := strings.Cut(line, " ")
		n, err := strconv.ParseInt(at, 10, 64)
		if err != nil {
			t.Fatalf("ledger line %q", line)
		}
		d := 1
		if what == "end" {
			d = -1
		}
		evs = append(evs, ev{n, d})
	}
	// Ends before starts at the same instant: touching intervals do not overlap.
	sort.Slice(evs, func(i, j int) bool {
		return evs[i].at < evs[j].at || evs[i].at == evs[j].at && evs[i].delta < evs[j].delta
	})
	running, peak := 0, 0
	for _, e := range evs {
		running += e.delta
		peak = max(peak, running)
	}
	t.Logf("per executor %v, peak %d across both processes", execs, peak)
	if len(evs) != 80 || peak > 3 {
		t.Fatalf("%d events, peak %d: want 80 events and at most 3 at once (global concurrency)", len(evs), peak)
	}
}
