package engine_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
)

// Issue 12 with real processes on PostgreSQL: executors are children
// (lease_child_test.go) killed with SIGKILL or paused with SIGSTOP.

// leaseObserver launches the parent's runtime: another version, so it never
// adopts the children's workflows, and the table their transactions fill.
func leaseObserver(t *testing.T) (string, *dbos.Runtime) {
	return leaseObserverOn(t, "postgres")
}

func leaseObserverOn(t *testing.T, engine string) (string, *dbos.Runtime) {
	url := dbtest.URL(t, engine)
	obs, _ := launch(t, limitPool(url, 2), withExecutor("observer"), observerVersion)
	leaseSetup(t, obs)
	return limitPool(url, 6), obs
}

func countBy(es []ledgerEntry, pid string) int {
	n := 0
	for _, e := range es {
		if e.executor == pid {
			n++
		}
	}
	return n
}

func waitPidLedger(t *testing.T, path, pid string, n int, p *leaseProc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for countBy(readLedger(t, path), pid) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the child ran fewer than %d steps:\n%s", n, p.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two processes with one executor ID: the second never runs the first's
// running workflows. Without an ID it takes a distinct one; with the first's
// ID it fails with ErrExecutorInUse. Once the first is SIGKILLed, a process
// launched with its ID takes over at once (its pid is gone), long before the
// lease would expire.
// On SQLite too: several processes on one file is where one order's card
// was charged three times.
func TestLeaseOneExecutorIDTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) { oneExecutorIDTwoProcesses(t, engine) })
	}
}

func oneExecutorIDTwoProcesses(t *testing.T, engine string) {
	defer fatalOnMust(t)
	url, obs := leaseObserverOn(t, engine)
	ledger := ledgerPath(t)
	ids := []string{"one-0", "one-1"}
	const lease = 60_000 // ms: only a takeover of a gone process can be quick
	a := startLeaseChild(t, leaseSpec{URL: url, Ledger: ledger, LeaseMS: lease, StepMS: 250, Start: ids})
	idA, _ := a.executor(t)
	waitPidLedger(t, ledger, a.pid(), 2, a)

	b := startLeaseChild(t, leaseSpec{URL: url, Ledger: ledger, LeaseMS: lease, StepMS: 250})
	idB, errB := b.executor(t)
	if errB != "" || idB == idA || idB == "" {
		t.Fatalf("a second process without an executor ID: executor %q, launch error %q; want one distinct from %q", idB, errB, idA)
	}
	c := startLeaseChild(t, leaseSpec{URL: url, Ledger: ledger, Executor: idA, LeaseMS: lease, StepMS: 250})
	if _, errC := c.executor(t); !strings.HasPrefix(errC, "in-use=true") || !strings.Contains(errC, idA) {
		t.Fatalf("a second process with executor ID %s: launch error %q; want ErrExecutorInUse", idA, errC)
	}
	waitPidLedger(t, ledger, a.pid(), 4, a)
	a.kill()
	killedAt := time.Now()

	d := startLeaseChild(t, leaseSpec{URL: url, Ledger: ledger, Executor: idA, LeaseMS: lease, StepMS: 250})
	if id, err := d.executor(t); id != idA {
		t.Fatalf("relaunch with %s after its holder was killed: executor %q, error %q", idA, id, err)
	}
	waitDone(t, obs, ids, 30*time.Second, d)
	took := time.Since(killedAt)
	if took >= lease*time.Millisecond {
		t.Fatalf("the restarted executor waited for the old lease to expire (%v)", took)
	}
	for _, e := range readLedger(t, ledger) {
		if e.executor != a.pid() && e.executor != d.pid() {
			t.Errorf("step %s ran in process %s, neither the executor's first process nor its restart", e.key(), e.executor)
		}
	}
	checkLeaseOutcome(t, obs, ids)
	if !strings.Contains(d.output(), "taking over the lease of a process that no longer exists") {
		t.Errorf("the restart did not say it took over a gone process:\n%s", d.output())
	}
	t.Logf("executors %s and %s side by side; restart of %s after SIGKILL finished its workflows %v after the kill (lease %v)",
		idA, idB, idA, took.Round(time.Millisecond), lease*time.Millisecond)
}

// Three executors run workflows; one is SIGKILLed and never restarted. The
// two others adopt its workflows once its lease expires and finish them:
// each step checkpointed once, each transaction committed once, and only
// the steps in flight at the kill run twice. The adoption latency is printed.
func TestLeaseAdoptionAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	defer fatalOnMust(t)
	url, obs := leaseObserver(t)
	ledger := ledgerPath(t)
	const lease = 1500 * time.Millisecond
	var procs []*leaseProc
	var all []string
	for i := 1; i <= 3; i++ {
		var ids []string
		for w := 0; w < 3; w++ {
			ids = append(ids, fmt.Sprintf("exec-%d-wf-%d", i, w))
		}
		all = append(all, ids...)
		procs = append(procs, startLeaseChild(t, leaseSpec{URL: url, Ledger: ledger, Executor: fmt.Sprintf("exec-%d", i),
			LeaseMS: int(lease / time.Millisecond), StepMS: 150, Start: ids}))
	}
	for _, p := range procs {
		p.executor(t)
	}
	victim := procs[0]
	waitPidLedger(t, ledger, victim.pid(), 3, victim)
	victim.kill()
	killedAt := time.Now()
	at := snapshot(t, obs, ledger)

	ctx := dbos.WithRuntime(context.Background(), obs)
	victimWFs := all[:3]
	var adoptedAt time.Time
	for adoptedAt.IsZero() {
		moved := 0
		for _, id := range victimWFs {
			if st := must(obs.WorkflowStatus(ctx, id)); st.ExecutorID != "exec-1" {
				moved++
			}
		}
		if moved == len(victimWFs) {
			adoptedAt = time.Now()
		} else if time.Since(killedAt) > 30*time.Second {
			t.Fatalf("exec-1's workflows were not adopted:\n%s\n-----\n%s", procs[1].output(), procs[2].output())
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitDone(t, obs, all, 30*time.Second, procs[1:]...)
	latency := adoptedAt.Sub(killedAt)

	entries := readLedger(t, ledger)
	seen := map[string][]string{}
	for i, e := range entries {
		if e.executor == victim.pid() && i >= at.lines {
			t.Fatalf("the killed process ran step %s", e.key())
		}
		seen[e.key()] = append(seen[e.key()], e.executor)
	}
	reruns := 0
	for key, pids := range seen {
		switch {
		case len(pids) == 1:
		case len(pids) == 2 && pids[0] == victim.pid() && !at.committed[key]:
			reruns++ // in flight at the kill: run again by its adopter
		default:
			t.Errorf("step %s ran in processes %v", key, pids)
		}
	}
	checkLeaseOutcome(t, obs, all)
	for _, id := range victimWFs {
		if st := must(obs.WorkflowStatus(ctx, id)); st.ExecutorID != "exec-2" && st.ExecutorID != "exec-3" {
			t.Errorf("%s finished by %s", id, st.ExecutorID)
		}
	}
	bound := lease + lease/3
	t.Logf("adoption latency after SIGKILL: %v (lease %v + one poll %v = %v; within: %v); %d in-flight steps ran again",
		latency.Round(time.Millisecond), lease, lease/3, bound, latency <= bound+200*time.Millisecond, reruns)
}

// A paused executor (SIGSTOP past its lease) is adopted; after SIGCONT it
// stops each workflow at its next step: only the steps it was in the middle
// of finish, nothing is recorded twice, and transactions commit once.
func TestLeasePausedExecutorStops(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	defer fatalOnMust(t)
	url, obs := leaseObserver(t)
	ledger := ledgerPath(t)
	const lease = 1500 * time.Millisecond
	ids := []string{"paused-0", "paused-1", "paused-2"}
	p := startLeaseChild(t, leaseSpec{URL: url, Ledger: ledger, Executor: "exec-p", LeaseMS: int(lease / time.Millisecond), StepMS: 200, Start: ids})
	a := startLeaseChild(t, leaseSpec{URL: url, Ledger: ledger, Executor: "exec-a", LeaseMS: int(lease / time.Millisecond), StepMS: 200})
	p.executor(t)
	a.executor(t)
	waitPidLedger(t, ledger, p.pid(), 3, p)
	p.signal(t, syscall.SIGSTOP)
	stoppedAt := time.Now()
	at := snapshot(t, obs, ledger)
	waitDone(t, obs, ids, 30*time.Second, a)
	adoptedIn := time.Since(stoppedAt)
	p.signal(t, syscall.SIGCONT)
	time.Sleep(lease) // what the paused executor does once it runs again
	entries := readLedger(t, ledger)
	var late []string
	for _, e := range entries[at.lines:] {
		if e.executor == p.pid() {
			late = append(late, e.key())
			if at.committed[e.key()] {
				t.Errorf("the resumed executor ran step %s, checkpointed before its pause", e.key())
			}
		}
	}
	sort.Strings(late)
	perWF := map[string]int{}
	for _, k := range late {
		wf, _, _ := strings.Cut(k, "/")
		if perWF[wf]++; perWF[wf] == 2 {
			t.Errorf("the resumed executor ran more than the step in flight of %s: %v", wf, late)
		}
	}
	checkLeaseOutcome(t, obs, ids)
	ctx := dbos.WithRuntime(context.Background(), obs)
	for _, id := range ids {
		if st := must(obs.WorkflowStatus(ctx, id)); st.ExecutorID != "exec-a" {
			t.Errorf("%s finished by %s, want the adopter exec-a", id, st.ExecutorID)
		}
	}
	if !strings.Contains(p.output(), "executor lease lost") {
		t.Errorf("the resumed executor did not report its lost lease:\n%s", p.output())
	}
	t.Logf("paused executor's workflows finished by its adopter %v after SIGSTOP; after SIGCONT it finished only its in-flight steps %v",
		adoptedIn.Round(time.Millisecond), late)
}

// A rolling deploy: version A's executor runs, version B's starts, A's
// stops gracefully. B never runs A's workflows (it cannot replay them); a
// newly launched B reports them; a drain process of version A, with an
// executor ID of its own, adopts and finishes them. Nothing is lost.
func TestLeaseRollingDeploy(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	defer fatalOnMust(t)
	url, obs := leaseObserver(t)
	ledger := ledgerPath(t)
	const lease = 1500
	aIDs, bIDs := []string{"roll-a-0", "roll-a-1", "roll-a-2"}, []string{"roll-b-0", "roll-b-1"}
	a := startLeaseChild(t, leaseSpec{URL: url, Ledger: ledger, Executor: "exec-a1", Version: "va", LeaseMS: lease, StepMS: 200, Start: aIDs})
	a.executor(t)
	waitPidLedger(t, ledger, a.pid(), 2, a)
	b := startLeaseChild(t, leaseSpec{URL: url, Ledger: ledger, Executor: "exec-b1", Version: "vb", LeaseMS: lease, StepMS: 200, Start: bIDs})
	b.executor(t)
	a.signal(t, syscall.SIGTERM)
	<-a.done
	if !strings.Contains(a.output(), "SHUT-DOWN") {
		t.Fatalf("version A's executor did not shut down gracefully:\n%s", a.output())
	}
	waitDone(t, obs, bIDs, 30*time.Second, b)
	time.Sleep(2 * lease * time.Millisecond) // A's lease expired, and B polled since
	ctx := dbos.WithRuntime(context.Background(), obs)
	for _, id := range aIDs {
		if st := must(obs.WorkflowStatus(ctx, id)); st.Status != dbos.StatusPending || st.ExecutorID != "exec-a1" {
			t.Fatalf("%s: %s by %s; want PENDING by exec-a1 (B cannot run A's workflows)", id, st.Status, st.ExecutorID)
		}
	}
	b2 := startLeaseChild(t, leaseSpec{URL: url, Ledger: ledger, Executor: "exec-b2", Version: "vb", LeaseMS: lease, StepMS: 200})
	b2.executor(t)
	waitFor(t, "B's report of A's stranded workflows", func() bool {
		out := b2.output()
		return strings.Contains(out, "another application version") && strings.Contains(out, "app_version=va count=3")
	})
	drain := startLeaseChild(t, leaseSpec{URL: url, Ledger: ledger, Executor: "exec-a-drain", Version: "va", LeaseMS: lease, StepMS: 200})
	drain.executor(t)
	waitDone(t, obs, aIDs, 30*time.Second, drain)
	checkLeaseOutcome(t, obs, append(append([]string(nil), aIDs...), bIDs...))
	for _, e := range readLedger(t, ledger) {
		if strings.HasPrefix(e.workflow, "roll-a-") && e.executor != a.pid() && e.executor != drain.pid() {
			t.Errorf("A's step %s ran in process %s, of version B", e.key(), e.executor)
		}
	}
	for _, id := range aIDs {
		if st := must(obs.WorkflowStatus(ctx, id)); st.ExecutorID != "exec-a-drain" {
			t.Errorf("%s finished by %s, want exec-a-drain", id, st.ExecutorID)
		}
	}
}
