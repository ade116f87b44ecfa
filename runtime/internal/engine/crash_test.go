package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// The crash tests run workflows in a child process (this test binary again,
// in TestCrashChild) and kill it with SIGKILL at random moments. Every step
// appends "<executor> <workflow>/<step>" to a ledger file, fsynced, before it
// returns, so the ledger is what really ran. Between kills, with the child
// dead, the parent reads which checkpoints committed: a committed step must
// never appear in the ledger again, and only a step that was running at a
// kill (in the ledger, not committed) may appear once more.

const (
	crashEnv   = "DBOSGEN_CRASH_CHILD" // JSON crashSpec: run as the child
	crashSteps = 20                    // per workflow: 4 × (2 sync + 3 async)
	crashAsync = 3                     // steps in flight at once, at most
)

type crashSpec struct {
	URL       string
	Ledger    string
	Executor  string
	Workflows []string
	// Start: start the workflows (idempotent by ID); otherwise only wait for
	// those Launch recovered.
	Start bool
}

// crashResult is what a crash workflow returns: its ID and the sum of its
// steps' outputs, step i returning 7i + len(ID).
func crashResult(id string) string {
	sum := 0
	for i := 1; i <= crashSteps; i++ {
		sum += 7*i + len(id)
	}
	return fmt.Sprintf("%s=%d", id, sum)
}

var crashChild struct {
	spec   crashSpec
	ledger *os.File
}

func crashStep(ctx context.Context) (int, error) {
	id, _ := dbos.WorkflowID(ctx)
	step, _ := dbos.StepID(ctx)
	d := time.Duration(60+step*37%80) * time.Millisecond
	sleep := func() error {
		select {
		case <-time.After(d / 2):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := sleep(); err != nil {
		return 0, err
	}
	// In the ledger before the checkpoint, with time to be killed between.
	line := fmt.Sprintf("%s %s/%d\n", crashChild.spec.Executor, id, step)
	if _, err := crashChild.ledger.WriteString(line); err != nil {
		return 0, err
	}
	if err := crashChild.ledger.Sync(); err != nil {
		return 0, err
	}
	if err := sleep(); err != nil {
		return 0, err
	}
	return 7*step + len(id), nil
}

func crashBody(ctx context.Context, in input) (string, error) {
	id, _ := dbos.WorkflowID(ctx)
	sum, step := 0, 0
	opts := func() *dbos.StepOptions { step++; return &dbos.StepOptions{Name: fmt.Sprint("step-", step)} }
	for range crashSteps / (2 + crashAsync) {
		for range 2 {
			v, err := dbos.RunStep(ctx, opts(), crashStep)
			if err != nil {
				return "", err
			}
			sum += v
		}
		var fs []*dbos.Future[int]
		for range crashAsync {
			fs = append(fs, dbos.RunStepAsync(ctx, opts(), crashStep))
		}
		for _, f := range fs {
			v, err := f.Get(ctx)
			if err != nil {
				return "", err
			}
			sum += v
		}
	}
	return fmt.Sprintf("%s=%d", id, sum), nil
}

// TestCrashChild is the child process of the crash tests; it does nothing
// unless DBOSGEN_CRASH_CHILD is set.
func TestCrashChild(t *testing.T) {
	raw := os.Getenv(crashEnv)
	if raw == "" {
		t.Skip("child process of the crash tests")
	}
	defer fatalOnMust(t)
	spec := &crashChild.spec
	if err := json.Unmarshal([]byte(raw), spec); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(spec.Ledger, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	crashChild.ledger = f
	// The body is registered before Launch, which recovers.
	in := setBody(t, crashBody)
	// A long lease: a killed child's workflows wait for its relaunch (which
	// takes its lease at once, its process being gone) rather than being
	// adopted by a live executor mid-test (see lease_test.go for adoption).
	_, ctx := launch(t, spec.URL, withExecutor(spec.Executor), func(c *dbos.Config) { c.ExecutorLease = 2 * time.Minute })
	var hs []*dbos.WorkflowHandle[string]
	for _, id := range spec.Workflows {
		if spec.Start {
			hs = append(hs, must(testWF.Start(dbos.WithWorkflowID(ctx, id), in)))
		} else {
			hs = append(hs, must(dbos.RetrieveWorkflow[string](ctx, id)))
		}
	}
	wait, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	for _, h := range hs {
		out, err := h.Result(wait)
		if err != nil {
			t.Fatalf("workflow %s: %v", h.ID(), err)
		}
		fmt.Printf("RESULT %s %s\n", h.ID(), out)
	}
}

// child is one run of TestCrashChild.
type child struct {
	cmd  *exec.Cmd
	out  bytes.Buffer // stdout and stderr
	done chan struct{}
	err  error
}

func startChild(t *testing.T, spec crashSpec) *child {
	t.Helper()
	raw, _ := json.Marshal(spec)
	c := &child{done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v", "-test.count=1")
	c.cmd.Env = append(os.Environ(), crashEnv+"="+string(raw))
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.kill() })
	return c
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// wait waits for the child to exit by itself, failing t with its output if
// it fails or outlives the deadline.
func (c *child) wait(t *testing.T, deadline time.Time) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(time.Until(deadline)):
		c.kill()
		t.Fatalf("child %s did not finish in time; its output:\n%s", c.cmd.Env[len(c.cmd.Env)-1], c.out.String())
	}
	if c.err != nil {
		t.Fatalf("child failed: %v; its output:\n%s", c.err, c.out.String())
	}
}

// ledgerEntry is one line of the ledger.
type ledgerEntry struct {
	executor, workflow string
	step               int
}

func (e ledgerEntry) key() string { return fmt.Sprintf("%s/%d", e.workflow, e.step) }

func readLedger(t *testing.T, path string) []ledgerEntry {
	t.Helper()
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []ledgerEntry
	for i, line := range strings.SplitAfter(string(raw), "\n") {
		if line == "" {
			continue
		}
		exe, rest, ok1 := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		wf, step, ok2 := strings.Cut(rest, "/")
		n, err := strconv.Atoi(step)
		if !ok1 || !ok2 || err != nil || !strings.HasSuffix(line, "\n") {
			t.Fatalf("ledger line %d is malformed: %q", i+1, line)
		}
		out = append(out, ledgerEntry{exe, wf, n})
	}
	return out
}

// killPoint is what stood at one kill: how much of the ledger was written
// and which checkpoints had committed.
type killPoint struct {
	lines     int
	committed map[string]bool
}

// committedSteps reads every recorded step through the observer runtime.
func committedSteps(t *testing.T, obs *dbos.Runtime) map[string]bool {
	t.Helper()
	table := "operation_outputs"
	if obs.AppDB().DriverName() == "pgx" {
		table = "dbos." + table
	}
	rows, err := obs.AppDB().Query("SELECT workflow_uuid, function_id FROM " + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var wf string
		var step int
		if err := rows.Scan(&wf, &step); err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf("%s/%d", wf, step)] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// snapshot records a kill point; the killed child must be gone. A commit
// the server was still processing may land just after: that only widens
// what counts as in flight, never hides a rerun of a committed step.
func snapshot(t *testing.T, obs *dbos.Runtime, ledger string) killPoint {
	time.Sleep(50 * time.Millisecond)
	return killPoint{lines: len(readLedger(t, ledger)), committed: committedSteps(t, obs)}
}

// checkExactlyOnce checks the ledger against the kill points: no step is
// missing; a step committed at a kill never ran again; a step appears once,
// plus once for each kill it was in flight at; and what was in flight at a
// kill was among the last lines of its workflow.
func checkExactlyOnce(t *testing.T, ledger []ledgerEntry, kills []killPoint, workflows []string) (duplicates int) {
	t.Helper()
	allowed := map[string]int{}
	for k, kp := range kills {
		before := ledger[:kp.lines]
		last := map[string][]string{} // workflow -> its last lines before the kill
		for _, e := range before {
			l := append(last[e.workflow], e.key())
			if len(l) > crashAsync {
				l = l[1:]
			}
			last[e.workflow] = l
		}
		inFlight := map[string]bool{}
		for _, e := range before {
			if !kp.committed[e.key()] && !inFlight[e.key()] {
				inFlight[e.key()] = true
				allowed[e.key()]++
				if !contains(last[e.workflow], e.key()) {
					t.Errorf("kill %d: step %s ran and was not committed, but its workflow ran later steps %v", k+1, e.key(), last[e.workflow])
				}
			}
		}
		reran := map[string]bool{}
		for _, e := range ledger[kp.lines:] {
			if kp.committed[e.key()] && !reran[e.key()] {
				reran[e.key()] = true
				t.Errorf("step %s ran again after kill %d although its checkpoint had committed", e.key(), k+1)
			}
		}
	}
	seen := map[string]int{}
	for _, e := range ledger {
		seen[e.key()]++
	}
	for _, wf := range workflows {
		for s := 1; s <= crashSteps; s++ {
			k := fmt.Sprintf("%s/%d", wf, s)
			switch n := seen[k]; {
			case n == 0:
				t.Errorf("step %s never ran", k)
			case n > 1+allowed[k]:
				t.Errorf("step %s ran %d times; it was in flight at %d kills", k, n, allowed[k])
			case n > 1:
				duplicates += n - 1
			}
			delete(seen, k)
		}
	}
	for k := range seen {
		t.Errorf("unexpected ledger entry %s", k)
	}
	return duplicates
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// checkResults checks every workflow finished with its result, run by its
// executor, every step recorded.
func checkResults(t *testing.T, obs *dbos.Runtime, executor string, workflows []string) {
	t.Helper()
	ctx := dbos.WithRuntime(context.Background(), obs)
	committed := committedSteps(t, obs)
	for _, id := range workflows {
		st := must(obs.WorkflowStatus(ctx, id))
		if st.Status != dbos.StatusSuccess || st.ExecutorID != executor {
			t.Errorf("workflow %s: status %s, executor %s, err %v; want SUCCESS by %s", id, st.Status, st.ExecutorID, st.Err, executor)
			continue
		}
		out, err := must(dbos.RetrieveWorkflow[string](ctx, id)).Result(ctx)
		if err != nil || out != crashResult(id) {
			t.Errorf("workflow %s returned %q, %v; want %q", id, out, err, crashResult(id))
		}
		for s := 1; s <= crashSteps; s++ {
			if !committed[fmt.Sprintf("%s/%d", id, s)] {
				t.Errorf("step %s/%d has no checkpoint", id, s)
			}
		}
	}
}

// waitLedger waits until the ledger holds more than n lines, or every child
// has exited; it reports whether the ledger grew.
func waitLedger(t *testing.T, path string, n int, deadline time.Time, cs ...*child) bool {
	t.Helper()
	for len(readLedger(t, path)) <= n {
		running := false
		for _, c := range cs {
			running = running || !c.exited()
		}
		if !running {
			return false
		}
		if time.Now().After(deadline) {
			for _, c := range cs {
				c.kill()
				t.Logf("child output:\n%s", c.out.String())
			}
			t.Fatal("no step ran before the deadline")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// Crash test: 8 workflows of 20 slow steps (some async) in a child process
// killed with SIGKILL at random moments five times, relaunched each time; the
// last run finishes. Every workflow succeeds with its result, and no step
// whose checkpoint committed runs again.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			defer fatalOnMust(t)
			seed := uint64(time.Now().UnixNano())
			t.Logf("random seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, seed))
			deadline := time.Now().Add(60 * time.Second)
			url := dbtest.URL(t, engine)
			obs, _ := launch(t, limitPool(url, 2), withExecutor("observer"), observerVersion)
			var ids []string
			for i := range 8 {
				ids = append(ids, fmt.Sprint("crash-", i))
			}
			spec := crashSpec{URL: limitPool(url, 8), Ledger: filepath.Join(t.TempDir(), "ledger"), Executor: "crasher", Workflows: ids, Start: true}

			var kills []killPoint
			for len(kills) < 5 {
				before := len(readLedger(t, spec.Ledger))
				c := startChild(t, spec)
				if !waitLedger(t, spec.Ledger, before, deadline, c) {
					c.wait(t, deadline) // finished before it could be killed
					break
				}
				time.Sleep(time.Duration(50+rng.IntN(400)) * time.Millisecond)
				if c.exited() {
					c.wait(t, deadline)
					break
				}
				c.kill()
				kills = append(kills, snapshot(t, obs, spec.Ledger))
			}
			if len(kills) < 3 {
				t.Fatalf("the workflows finished after %d kills; the test needs slower steps to kill them mid-run", len(kills))
			}
			startChild(t, spec).wait(t, deadline)

			ledger := readLedger(t, spec.Ledger)
			dups := checkExactlyOnce(t, ledger, kills, ids)
			checkResults(t, obs, "crasher", ids)
			var inFlight []int
			for _, kp := range kills {
				inFlight = append(inFlight, countInFlight(ledger[:kp.lines], kp.committed))
			}
			t.Logf("%d kills; steps in flight at each kill (ran, not committed): %v; %d ledger lines for %d steps (%d reruns of in-flight steps)",
				len(kills), inFlight, len(ledger), len(ids)*crashSteps, dups)
		})
	}
}

// observerVersion keeps a test's observing runtime from adopting the
// workflows of the children it watches: it is of another version.
func observerVersion(c *dbos.Config) { c.ApplicationVersion = "observer" }

// limitPool bounds a PostgreSQL runtime's pool, so that the processes of a
// crash test stay well inside the server's max_connections while other
// test packages run.
func limitPool(url string, n int) string {
	if strings.HasPrefix(url, "postgres") {
		return fmt.Sprintf("%s&pool_max_conns=%d", url, n)
	}
	return url
}

// countInFlight counts the steps that ran but had not committed.
func countInFlight(es []ledgerEntry, committed map[string]bool) int {
	seen := map[string]bool{}
	for _, e := range es {
		if !committed[e.key()] {
			seen[e.key()] = true
		}
	}
	return len(seen)
}

// Two executors on one database, each in its own process, both killed
// mid-workflow. Relaunched one at a time, each recovers its own workflows
// and nothing of the other's.
func TestCrashTwoExecutors(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			defer fatalOnMust(t)
			deadline := time.Now().Add(60 * time.Second)
			url := dbtest.URL(t, engine)
			obs, _ := launch(t, limitPool(url, 2), withExecutor("observer"), observerVersion)
			ledger := filepath.Join(t.TempDir(), "ledger")
			specs := map[string]crashSpec{}
			for _, exe := range []string{"exec-a", "exec-b"} {
				specs[exe] = crashSpec{URL: limitPool(url, 6), Ledger: ledger, Executor: exe, Start: true,
					Workflows: []string{exe + "-wf-0", exe + "-wf-1", exe + "-wf-2"}}
			}
			a, b := startChild(t, specs["exec-a"]), startChild(t, specs["exec-b"])
			// Both mid-workflow: each has run a few steps.
			for {
				n := map[string]int{}
				for _, e := range readLedger(t, ledger) {
					n[e.executor]++
				}
				if n["exec-a"] >= 4 && n["exec-b"] >= 4 {
					break
				}
				if a.exited() || b.exited() || time.Now().After(deadline) {
					a.kill()
					b.kill()
					t.Fatalf("children did not both run steps; outputs:\n%s\n%s", a.out.String(), b.out.String())
				}
				time.Sleep(5 * time.Millisecond)
			}
			a.kill()
			b.kill()
			kills := []killPoint{snapshot(t, obs, ledger)}
			ctx := dbos.WithRuntime(context.Background(), obs)
			attempts := map[string]int{}
			for exe, spec := range specs {
				for _, id := range spec.Workflows {
					st := must(obs.WorkflowStatus(ctx, id))
					if st.Status != dbos.StatusPending || st.ExecutorID != exe {
						t.Fatalf("after the kill %s: status %s executor %s; want PENDING by %s", id, st.Status, st.ExecutorID, exe)
					}
					attempts[id] = st.RecoveryAttempts
				}
			}

			// Relaunch A only, recovering (not starting) its workflows.
			ra := specs["exec-a"]
			ra.Start = false
			startChild(t, ra).wait(t, deadline)
			checkResults(t, obs, "exec-a", ra.Workflows)
			after := readLedger(t, ledger)[kills[0].lines:]
			for _, e := range after {
				if e.executor != "exec-a" || !strings.HasPrefix(e.workflow, "exec-a-") {
					t.Errorf("while only exec-a ran, %s ran step %s", e.executor, e.key())
				}
			}
			committed := committedSteps(t, obs)
			for _, id := range specs["exec-b"].Workflows {
				st := must(obs.WorkflowStatus(ctx, id))
				if st.Status != dbos.StatusPending || st.ExecutorID != "exec-b" || st.RecoveryAttempts != attempts[id] {
					t.Errorf("exec-a's recovery touched %s: status %s, executor %s, attempts %d (was %d)", id, st.Status, st.ExecutorID, st.RecoveryAttempts, attempts[id])
				}
				for s := 1; s <= crashSteps; s++ {
					k := fmt.Sprintf("%s/%d", id, s)
					if committed[k] != kills[0].committed[k] {
						t.Errorf("step %s of exec-b's workflow was recorded while exec-b was down", k)
					}
				}
			}
			if len(after) == 0 {
				t.Errorf("exec-a recovered nothing")
			}

			// Then B.
			mark := len(readLedger(t, ledger))
			rb := specs["exec-b"]
			rb.Start = false
			startChild(t, rb).wait(t, deadline)
			checkResults(t, obs, "exec-b", rb.Workflows)
			full := readLedger(t, ledger)
			for _, e := range full[mark:] {
				if e.executor != "exec-b" || !strings.HasPrefix(e.workflow, "exec-b-") {
					t.Errorf("while only exec-b ran, %s ran step %s", e.executor, e.key())
				}
			}
			all := append(append([]string(nil), specs["exec-a"].Workflows...), specs["exec-b"].Workflows...)
			sort.Strings(all)
			dups := checkExactlyOnce(t, full, kills, all)
			t.Logf("ledger: %d lines before the kill, %d by exec-a's recovery, %d by exec-b's; %d reruns of in-flight steps",
				kills[0].lines, mark-kills[0].lines, len(full)-mark, dups)
		})
	}
}
