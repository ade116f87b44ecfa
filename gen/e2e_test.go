package gen_test

import (
	"bytes"
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
	"github.com/dbosgen/dbosgen/internal/testmod"
	"github.com/jackc/pgx/v5"
)

// The program under test: a workflow of slow steps, each logging its start
// to a file so the test can tell which steps ran in which process.
const e2eMain = `package main

//go:generate go run github.com/dbosgen/dbosgen/cmd/dbosgen

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/dbosgen/dbosgen/runtime/dbos"
)

type Job struct {
	Steps int    ` + "`json:\"steps\"`" + `
	Log   string ` + "`json:\"log\"`" + `
}

//dbos:step
func square(ctx context.Context, log string, i int) (int, error) {
	f, err := os.OpenFile(log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(f, "start %d pid %d\n", i, os.Getpid())
	f.Close()
	time.Sleep(400 * time.Millisecond)
	return i * i, nil
}

//dbos:workflow
func sumSquares(ctx context.Context, job Job) (int, error) {
	sum := 0
	for i := 0; i < job.Steps; i++ {
		v, err := squareStep(ctx, job.Log, i)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

func main() {
	url, id, log := os.Args[1], os.Args[2], os.Args[3]
	steps, _ := strconv.Atoi(os.Args[4])
	ctx := context.Background()
	rt, err := dbos.Launch(ctx, dbos.Config{SystemDatabaseURL: url, ExecutorID: "e2e", AppName: "e2e"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "launch:", err)
		os.Exit(1)
	}
	// On relaunch the workflow is already being recovered; starting it again
	// with its ID attaches to it (the body runs once).
	h, err := startSumSquaresWorkflow(dbos.WithWorkflowID(ctx, id), Job{Steps: steps, Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		os.Exit(1)
	}
	res, err := h.Result(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "result:", err)
		os.Exit(1)
	}
	fmt.Println("result", res)
	_ = rt.Shutdown(ctx)
}
`

// TestE2ERecovery generates code for a small program, runs a workflow of
// slow steps in a child process, kills it with SIGKILL mid-workflow,
// relaunches it, and checks that the workflow completes with the right
// result and that steps recorded before the kill did not run again.
func TestE2ERecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL; skipped with -short")
	}
	ctx := context.Background()
	dbURL := dbtest.Postgres(t)

	root := testmod.New(t)
	app := filepath.Join(root, "app")
	if err := os.MkdirAll(app, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "main.go"), []byte(e2eMain), 0o644); err != nil {
		t.Fatal(err)
	}
	// The user's path: go generate runs dbosgen through go run.
	goCmd(t, root, "generate", "./...")
	if _, err := os.Stat(filepath.Join(app, "dbos_gen.go")); err != nil {
		t.Fatalf("go generate did not write dbos_gen.go: %v", err)
	}
	bin := filepath.Join(root, "app.bin")
	goCmd(t, root, "build", "-o", bin, "./app")

	const steps = 6 // sum of squares 0..5 = 55
	logFile := filepath.Join(root, "steps.log")
	id := fmt.Sprintf("e2e-%d", time.Now().UnixNano())
	args := []string{dbURL, id, logFile, fmt.Sprint(steps)}

	// First process: kill it once a few steps have started.
	var out1 bytes.Buffer
	first := exec.Command(bin, args...)
	first.Stdout, first.Stderr = &out1, &out1
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for countStarts(logFile) < 3 {
		if time.Now().After(deadline) {
			first.Process.Kill()
			first.Wait()
			t.Fatalf("the workflow did not get to its third step in 30s; output:\n%s", out1.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()

	recorded, status := inspect(t, ctx, dbURL, id)
	if status != "PENDING" {
		t.Fatalf("after the kill the workflow is %s, want PENDING", status)
	}
	if len(recorded) == 0 || len(recorded) >= steps {
		t.Fatalf("after the kill %d steps are recorded; the kill should land mid-workflow", len(recorded))
	}
	startsBefore := starts(logFile)

	// Second process: recovery finishes the workflow.
	second := exec.CommandContext(ctx, bin, args...)
	second.WaitDelay = time.Second
	done := make(chan struct{})
	var out2 []byte
	var err2 error
	go func() { out2, err2 = second.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		second.Process.Kill()
		<-done
		t.Fatalf("relaunched process did not finish in 60s; output:\n%s", out2)
	}
	if err2 != nil || !strings.Contains(string(out2), "result 55") {
		t.Fatalf("relaunched process: %v, want result 55; output:\n%s", err2, out2)
	}
	if _, status := inspect(t, ctx, dbURL, id); status != "SUCCESS" {
		t.Fatalf("workflow status %s, want SUCCESS", status)
	}

	all := starts(logFile)
	for i := 0; i < steps; i++ {
		if all[i] == 0 {
			t.Errorf("step %d never ran", i)
		}
	}
	for _, i := range recorded {
		if all[i] != startsBefore[i] {
			t.Errorf("step %d was recorded before the kill but ran again after it (%d starts before, %d in all)", i, startsBefore[i], all[i])
		}
	}
	t.Logf("recorded before kill: %v; starts before: %v; starts in all: %v", recorded, startsBefore, all)
}

// inspect reads the step IDs recorded for a workflow and its status.
func inspect(t *testing.T, ctx context.Context, url, id string) (recorded []int, status string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = $1", id).Scan(&status); err != nil {
		t.Fatalf("reading the workflow status: %v", err)
	}
	rows, err := conn.Query(ctx, "SELECT function_id FROM dbos.operation_outputs WHERE workflow_uuid = $1 ORDER BY function_id", id)
	if err != nil {
		t.Fatal(err)
	}
	// Step IDs count from the runtime's first ID; the test only needs which
	// loop iterations they are, in order.
	var ids []int
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for i := range ids {
		recorded = append(recorded, i)
	}
	return recorded, status
}

func countStarts(path string) int {
	n := 0
	for _, c := range starts(path) {
		n += c
	}
	return n
}

// starts counts the "start i" lines of the step log per step.
func starts(path string) map[int]int {
	b, _ := os.ReadFile(path)
	m := map[int]int{}
	for _, line := range strings.Split(string(b), "\n") {
		var i, pid int
		if _, err := fmt.Sscanf(line, "start %d pid %d", &i, &pid); err == nil {
			m[i]++
		}
	}
	return m
}

func goCmd(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
