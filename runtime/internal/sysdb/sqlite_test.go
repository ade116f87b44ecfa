package sysdb

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SQLite-specific tests: real processes on one file, SIGKILL durability, and
// the write-lock contract application transactions rely on.

const childEnv = "DBOSGEN_SYSDB_SQLITE_CHILD"

func openSQLiteT(t *testing.T, path string) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), path, "app")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestSQLiteChild is the body of the child processes below; it does nothing
// in a normal run. Modes: "work <path> <tag>": 8 goroutines × 50 steps, then
// exit; "crash <path>": record steps forever, printing each one once its
// RecordStep returned, until killed.
func TestSQLiteChild(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		t.Skip("helper process")
	}
	args := strings.Fields(spec)
	ctx := context.Background()
	s, err := OpenSQLite(ctx, args[1], "app")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if _, err := s.Migrate(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	switch args[0] {
	case "work":
		if err := workload(ctx, s, args[2], 8, 50); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "crash":
		if _, err := s.InitWorkflow(ctx, initParams("crash")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		w := bufio.NewWriter(os.Stdout)
		for n := 0; ; n++ {
			if _, _, err := s.RecordStep(ctx, StepRow{WorkflowID: "crash", StepID: n, Name: "s", Output: strconv.Itoa(n)}); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			fmt.Fprintln(w, n)
			w.Flush()
		}
	}
	os.Exit(3)
}

// workload runs goroutines workflows of steps checkpoints each.
func workload(ctx context.Context, s Store, tag string, goroutines, steps int) error {
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			id := fmt.Sprintf("%s-%d", tag, g)
			if _, err := s.InitWorkflow(ctx, initParams(id)); err != nil {
				errs <- err
				return
			}
			for n := range steps {
				if _, _, err := s.RecordStep(ctx, StepRow{WorkflowID: id, StepID: n, Name: "s", Output: "1"}); err != nil {
					errs <- fmt.Errorf("%s step %d: %w", id, n, err)
					return
				}
			}
			if _, err := s.FinishWorkflow(ctx, FinishParams{ID: id, Status: StatusSuccess, Output: `1`, Error: ""}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func childCmd(t *testing.T, spec string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestSQLiteChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+spec)
	return cmd
}

// TestSQLiteMultiProcess: three processes and this one migrate and write the
// same file at once; nobody sees SQLITE_BUSY.
func TestSQLiteMultiProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "multi.sqlite")
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for i := range 3 {
		cmd := childCmd(t, fmt.Sprintf("work %s p%d", path, i))
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	s := openSQLiteT(t, path)
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := workload(context.Background(), s, "parent", 8, 50); err != nil {
		t.Errorf("parent: %v", err)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("child %d: %v\n%s", i, err, outs[i])
		}
	}
	var wfs, steps int
	if err := s.ReadDB().QueryRow(`SELECT (SELECT COUNT(*) FROM workflow_status WHERE status = 'SUCCESS'), (SELECT COUNT(*) FROM operation_outputs)`).Scan(&wfs, &steps); err != nil {
		t.Fatal(err)
	}
	if wfs != 32 || steps != 32*50 {
		t.Errorf("%d finished workflows, %d steps; want 32, 1600", wfs, steps)
	}
}

// TestSQLiteSIGKILL: a process recording checkpoints is killed with SIGKILL;
// every checkpoint whose RecordStep had returned is in the file afterwards,
// and the file opens and takes writes again.
func TestSQLiteSIGKILL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crash.sqlite")
	for round := range 3 {
		cmd := childCmd(t, "crash "+path)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		last := -1
		for sc.Scan() {
			last, _ = strconv.Atoi(sc.Text())
			if last >= 200 {
				break
			}
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		if last < 200 {
			t.Fatalf("round %d: child stopped after step %d: %s", round, last, stderr.String())
		}
		s := openSQLiteT(t, path)
		st, err := s.Steps(context.Background(), "crash")
		if err != nil {
			t.Fatal(err)
		}
		if len(st) < last+1 {
			t.Fatalf("round %d: %d steps in the file, but step %d had been acknowledged", round, len(st), last)
		}
		for i, r := range st {
			if r.StepID != i {
				t.Fatalf("round %d: step %d at position %d", round, r.StepID, i)
			}
		}
		var ok string
		if err := s.ReadDB().QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
			t.Fatalf("integrity_check = %q, %v", ok, err)
		}
		// The next round's child continues where this one stopped (the
		// store reports already-recorded steps as not recorded, and the
		// child keeps going), so the file keeps growing across crashes.
		s.Close()
	}
}

// TestSQLiteTransactionContract: an application transaction on DB() holds the
// process's write lock (and the file's, BEGIN IMMEDIATE); checkpoints from
// other goroutines and from another process-like store wait for it instead of
// failing, reads proceed, and a write on the read pool fails loudly.
func TestSQLiteTransactionContract(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tx.sqlite")
	a := openSQLiteT(t, path)
	b := openSQLiteT(t, path)
	if _, err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := MigrateSQLiteApp(ctx, a.DB()); err != nil {
		t.Fatal(err)
	}
	mustInit(t, a, initParams("wf"))

	tx, err := a.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck
	// BEGIN IMMEDIATE: the file's write lock is held from the start, before
	// any write, so the other store cannot sneak in (the transaction writes
	// only after the check below).
	done := make(chan string, 2)
	go func() {
		_, _, err := a.RecordStep(ctx, StepRow{WorkflowID: "wf", StepID: 1, Name: "same-process"})
		done <- fmt.Sprint("a: ", err)
	}()
	go func() {
		_, _, err := b.RecordStep(ctx, StepRow{WorkflowID: "wf", StepID: 2, Name: "other-process"})
		done <- fmt.Sprint("b: ", err)
	}()
	select {
	case r := <-done:
		t.Fatalf("a write completed while the transaction held the lock: %s", r)
	case <-time.After(300 * time.Millisecond):
	}
	// Reads never wait for the writer.
	if st, err := a.Steps(ctx, "wf"); err != nil || len(st) != 0 {
		t.Fatalf("Steps during the transaction = %v, %v", st, err)
	}
	if _, err := a.ReadDB().ExecContext(ctx, `DELETE FROM operation_outputs`); err == nil {
		t.Fatal("a write on the read pool succeeded; it must fail")
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO dbosgen_transaction_outputs (workflow_uuid, function_id, function_name, output, created_at) VALUES ('wf', 0, 'tx', '1', 1)`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case r := <-done:
			if !strings.HasSuffix(r, "<nil>") {
				t.Errorf("checkpoint after the transaction: %s", r)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("checkpoints still blocked after commit")
		}
	}
	var n int
	if err := b.ReadDB().QueryRowContext(ctx, `SELECT COUNT(*) FROM dbosgen_transaction_outputs`).Scan(&n); err != nil || n != 1 {
		t.Errorf("dbosgen_transaction_outputs: %d, %v", n, err)
	}
}

// TestSQLiteOpen: settings as documented, and a path with URI metacharacters.
func TestSQLiteOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a dir?x=1#frag", "my%20db.sqlite")
	s := openSQLiteT(t, path)
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("file not at the literal path: %v", err)
	}
	for _, db := range []*sql.DB{s.DB(), s.ReadDB()} {
		var mode string
		var sync, busy int
		if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
			t.Errorf("journal_mode = %q, %v", mode, err)
		}
		if err := db.QueryRow(`PRAGMA synchronous`).Scan(&sync); err != nil || sync != 2 {
			t.Errorf("synchronous = %d, %v; want 2 (FULL)", sync, err)
		}
		if err := db.QueryRow(`PRAGMA busy_timeout`).Scan(&busy); err != nil || busy != int(busyTimeout.Milliseconds()) {
			t.Errorf("busy_timeout = %d, %v", busy, err)
		}
	}
	if _, err := OpenSQLite(context.Background(), "", "app"); err == nil {
		t.Error("OpenSQLite(\"\") succeeded")
	}
}

// BenchmarkSQLiteRecordStep compares a checkpoint with a raw single-row
// INSERT on the same file, in the same run.
func BenchmarkSQLiteRecordStep(b *testing.B) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(b.TempDir(), "bench.sqlite"), "app")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := s.DB().Exec(`CREATE TABLE raw (k TEXT NOT NULL, n INTEGER NOT NULL, v TEXT, PRIMARY KEY (k, n))`); err != nil {
		b.Fatal(err)
	}
	if _, err := s.InitWorkflow(ctx, initParams("bench")); err != nil {
		b.Fatal(err)
	}
	next := 0 // sub-benchmarks run several times: keys stay fresh
	b.Run("RecordStep", func(b *testing.B) {
		for range b.N {
			next++
			if _, rec, err := s.RecordStep(ctx, StepRow{WorkflowID: "bench", StepID: next, Name: "s", Output: `{"v":1}`}); err != nil || !rec {
				b.Fatal(rec, err)
			}
		}
	})
	b.Run("RawInsert", func(b *testing.B) {
		for range b.N {
			next++
			if _, err := s.DB().ExecContext(ctx, `INSERT INTO raw (k, n, v) VALUES (?, ?, ?)`, "bench", next, `{"v":1}`); err != nil {
				b.Fatal(err)
			}
		}
	})
}
