package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
	"github.com/jmoiron/sqlx"
)

// The lease tests (lease_process_test.go) run executors as child processes:
// this test binary again, in TestLeaseChild, which launches with the spec in
// leaseEnv, starts its workflows, prints its executor ID and runs until it
// is killed. Every step appends "<pid> <workflow>/<step>" to a ledger file,
// fsynced, before it returns: the ledger is what really ran, and where.

const (
	leaseEnv   = "DBOSGEN_LEASE_CHILD"
	leaseKey   = "lease-body"
	leaseSteps = 8 // per workflow, step 4 a transaction
	leaseTxAt  = 4
	leaseTable = "lease_tx" // one row per committed transaction
)

type leaseSpec struct {
	URL      string
	Ledger   string
	Executor string // "": the default
	LeaseMS  int
	StepMS   int
	Start    []string // workflow IDs to start
	Version  string   // "": v1
}

var leaseChild struct {
	spec   leaseSpec
	ledger *os.File
}

func leaseBody(ctx context.Context, _ input) (string, error) {
	id, _ := dbos.WorkflowID(ctx)
	for i := 1; i <= leaseSteps; i++ {
		var err error
		if i == leaseTxAt {
			_, err = dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "lease.tx"}, func(ctx context.Context, tx *sqlx.Tx) (int, error) {
				_, err := tx.ExecContext(ctx, tx.Rebind("INSERT INTO "+leaseTable+" (wf) VALUES (?)"), id)
				return 0, err
			})
		} else {
			_, err = dbos.RunStep(ctx, &dbos.StepOptions{Name: "lease.step"}, leaseStep)
		}
		if err != nil {
			return "", err
		}
	}
	return "done " + id, nil
}

func leaseStep(ctx context.Context) (int, error) {
	select {
	case <-time.After(time.Duration(leaseChild.spec.StepMS) * time.Millisecond):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	id, _ := dbos.WorkflowID(ctx)
	step, _ := dbos.StepID(ctx)
	if _, err := fmt.Fprintf(leaseChild.ledger, "%d %s/%d\n", os.Getpid(), id, step); err != nil {
		return 0, err
	}
	return step, leaseChild.ledger.Sync()
}

func TestLeaseChild(t *testing.T) {
	raw := os.Getenv(leaseEnv)
	if raw == "" {
		t.Skip("run by the lease tests")
	}
	spec := &leaseChild.spec
	if err := json.Unmarshal([]byte(raw), spec); err != nil {
		t.Fatal(err)
	}
	var err error
	if leaseChild.ledger, err = os.OpenFile(spec.Ledger, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err != nil {
		t.Fatal(err)
	}
	bodies.Store(leaseKey, body(leaseBody))
	if spec.Version == "" {
		spec.Version = "v1"
	}
	cfg := dbos.Config{AppName: "test", SystemDatabaseURL: spec.URL, ExecutorID: spec.Executor, ApplicationVersion: spec.Version,
		ExecutorLease: time.Duration(spec.LeaseMS) * time.Millisecond,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := dbos.Launch(ctx, cfg)
	if err != nil {
		fmt.Printf("LAUNCH-ERROR in-use=%v %v\n", errors.Is(err, dbos.ErrExecutorInUse), err)
		os.Exit(3)
	}
	fmt.Printf("EXECUTOR %s\n", rt.ExecutorID())
	wctx := dbos.WithRuntime(context.Background(), rt)
	for _, id := range spec.Start {
		if _, err := testWF.Start(dbos.WithWorkflowID(wctx, id), input{Key: leaseKey}); err != nil {
			fmt.Printf("START-ERROR %s %v\n", id, err)
		}
	}
	// SIGTERM: a graceful stop, as a deploy does it.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	select {
	case <-term:
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rt.Shutdown(sctx); err != nil {
			t.Fatal(err)
		}
		fmt.Println("SHUT-DOWN")
		os.Exit(0)
	case <-time.After(2 * time.Minute):
		t.Fatal("the child was not stopped")
	}
}

// leaseProc is a running TestLeaseChild; its output goes to a file, read
// while it runs.
type leaseProc struct {
	cmd  *exec.Cmd
	out  string
	done chan struct{}
	err  error
}

func startLeaseChild(t *testing.T, spec leaseSpec) *leaseProc {
	t.Helper()
	raw, _ := json.Marshal(spec)
	f, err := os.CreateTemp(t.TempDir(), "child-*.out")
	if err != nil {
		t.Fatal(err)
	}
	p := &leaseProc{out: f.Name(), done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^TestLeaseChild$", "-test.v", "-test.count=1")
	p.cmd.Env = append(os.Environ(), leaseEnv+"="+string(raw))
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	return p
}

func (p *leaseProc) output() string {
	b, _ := os.ReadFile(p.out)
	return string(b)
}

func (p *leaseProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a stopped process is killed too, but reaped only once running
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *leaseProc) signal(t *testing.T, s syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		t.Fatal(err)
	}
}

func (p *leaseProc) pid() string { return strconv.Itoa(p.cmd.Process.Pid) }

// executor waits for the child to print its executor ID, or its launch error.
func (p *leaseProc) executor(t *testing.T) (id string, launchErr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := p.output()
		for _, line := range strings.Split(out, "\n") {
			if s, ok := strings.CutPrefix(line, "EXECUTOR "); ok {
				return s, ""
			}
			if s, ok := strings.CutPrefix(line, "LAUNCH-ERROR "); ok {
				return "", s
			}
		}
		select {
		case <-p.done:
			t.Fatalf("the child exited without launching:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child did not launch in time:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func leaseSetup(t *testing.T, obs *dbos.Runtime) {
	t.Helper()
	appExec(t, obs.AppDB(), "CREATE TABLE "+leaseTable+" (wf TEXT NOT NULL)")
}

// checkLeaseOutcome checks that every workflow finished with its result,
// that each of its steps is checkpointed once, and that its transaction
// committed exactly once.
func checkLeaseOutcome(t *testing.T, obs *dbos.Runtime, ids []string) {
	t.Helper()
	ctx := dbos.WithRuntime(context.Background(), obs)
	committed := committedSteps(t, obs)
	for _, id := range ids {
		out, err := must(dbos.RetrieveWorkflow[string](ctx, id)).Result(ctx)
		if err != nil || out != "done "+id {
			t.Errorf("%s: result %q, %v", id, out, err)
		}
		for s := 1; s <= leaseSteps; s++ {
			if !committed[fmt.Sprintf("%s/%d", id, s)] && s != leaseTxAt {
				t.Errorf("%s: step %d has no checkpoint", id, s)
			}
		}
		if n := appCount(t, obs.AppDB(), "SELECT count(*) FROM "+leaseTable+" WHERE wf = ?", id); n != 1 {
			t.Errorf("%s: its transaction committed %d times, want once", id, n)
		}
	}
}

// waitDone waits until every workflow in ids has left PENDING.
func waitDone(t *testing.T, obs *dbos.Runtime, ids []string, within time.Duration, procs ...*leaseProc) {
	t.Helper()
	ctx := dbos.WithRuntime(context.Background(), obs)
	deadline := time.Now().Add(within)
	for {
		pending := 0
		for _, id := range ids {
			if st := must(obs.WorkflowStatus(ctx, id)); st.Status == dbos.StatusPending {
				pending++
			}
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			var outs []string
			for _, p := range procs {
				outs = append(outs, p.output())
			}
			t.Fatalf("%d workflows still PENDING; children's output:\n%s", pending, strings.Join(outs, "\n-----\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ledgerPath(t *testing.T) string { return filepath.Join(t.TempDir(), "ledger") }
