// Command worker is the program the torture test runs in many processes and
// kills at random. It runs generated durable workflows whose steps append to
// a ledger file outside the database, so the driver can tell which side
// effects ran how often, and whose transactions insert into an application
// table, so the driver can tell which committed how often.
//
// The driver talks to it over stdin/stdout, one command per line:
//
//	start <id> <steps> <async> <txs> <child:0|1> <seed>   ->  ack <id> | nack <id> <error>
//	enqueue <id> <steps> <async> <txs> <child:0|1> <seed> ->  ack <id> | nack <id> <error>
//	quit                                                  ->  goroutines <before> <after>, bye
//
// enqueue puts the order on the queue "torture", which every worker serves;
// whichever dequeues it runs it. On startup it prints "ready <pid>" once
// dbos.Launch has returned.
package main

//go:generate go run github.com/dbosgen/dbosgen/cmd/dbosgen

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/jmoiron/sqlx"
)

// Job says what one workflow does; the driver computes its expected result
// from the same numbers (see Expected).
type Job struct {
	Steps int  `json:"steps"`
	Async int  `json:"async"`
	Txs   int  `json:"txs"`
	Child bool `json:"child"`
	Seed  int  `json:"seed"`
	// Queued marks an order that came through the queue: its body's
	// executions are bracketed in the ledger, so the driver can count how
	// many ran at once in one process against the worker concurrency.
	Queued bool `json:"queued,omitempty"`
}

// QueueConcurrency is the worker concurrency of the queue "torture": low,
// so that queued orders do wait for a slot under the driver's load.
const QueueConcurrency = 2

var workQueue = dbos.NewQueue("torture", dbos.QueueOptions{WorkerConcurrency: QueueConcurrency})

// Receipt is a workflow's result.
type Receipt struct {
	Sum   int      `json:"sum"`
	TxIDs []int64  `json:"tx_ids"`
	Child *Receipt `json:"child,omitempty"`
}

// Out is a step's output: a value that depends only on the input, and the
// execution that produced it, so the driver can match the recorded output to
// a ledger line.
type Out struct {
	V    int    `json:"v"`
	Exec string `json:"exec"`
}

// F is the value a step computes from its input.
func F(v int) int { return v * v % 997 }

// ChildJob is the job of the child workflow an order starts.
func ChildJob(j Job) Job { return Job{Steps: 2, Async: 1, Txs: 1, Seed: j.Seed + 1000} }

var (
	ledgerFile *os.File
	ledgerMu   sync.Mutex
	execSeq    atomic.Int64
	pid        = os.Getpid()
)

// note appends one line to the ledger in a single write; the file is opened
// O_APPEND, so lines from one process never interleave and survive SIGKILL.
func note(kind, wf, key string) string {
	exec := fmt.Sprintf("%d.%d", pid, execSeq.Add(1))
	line := fmt.Sprintf("%s %s %s %s %d\n", kind, wf, key, exec, time.Now().UnixNano())
	ledgerMu.Lock()
	defer ledgerMu.Unlock()
	if _, err := ledgerFile.WriteString(line); err != nil {
		fmt.Fprintln(os.Stderr, "ledger:", err)
		os.Exit(2)
	}
	return exec
}

// pause sleeps up to max, or until ctx ends.
func pause(ctx context.Context, max time.Duration) error {
	t := time.NewTimer(rand.N(max) + time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

//dbos:step
func effect(ctx context.Context, key string, v int) (Out, error) {
	wf, _ := dbos.WorkflowID(ctx)
	exec := note("S", wf, key)
	if err := pause(ctx, 40*time.Millisecond); err != nil {
		return Out{}, err
	}
	return Out{V: F(v), Exec: exec}, nil
}

//dbos:transaction
func deposit(ctx context.Context, tx *sqlx.Tx, key string, amount int) (int64, error) {
	wf, _ := dbos.WorkflowID(ctx)
	exec := note("T", wf, key)
	var id int64
	err := tx.GetContext(ctx, &id, `INSERT INTO torture_app (workflow_id, key, amount, exec) VALUES ($1, $2, $3, $4) RETURNING id`,
		wf, key, amount, exec)
	if err != nil {
		return 0, err
	}
	// Stay in the transaction a little, so kills and cuts land inside it.
	if err := pause(ctx, 10*time.Millisecond); err != nil {
		return 0, err
	}
	return id, nil
}

func body(ctx context.Context, job Job) (Receipt, error) {
	var r Receipt
	for i := 0; i < job.Steps; i++ {
		o, err := effectStep(ctx, fmt.Sprintf("s%d", i), job.Seed+i)
		if err != nil {
			return r, err
		}
		r.Sum += o.V
	}
	futures := make([]*dbos.Future[Out], job.Async)
	for i := range futures {
		futures[i] = effectStepAsync(ctx, fmt.Sprintf("a%d", i), job.Seed+100+i)
	}
	for _, f := range futures {
		o, err := f.Get(ctx)
		if err != nil {
			return r, err
		}
		r.Sum += o.V
	}
	for i := 0; i < job.Txs; i++ {
		id, err := depositTx(ctx, fmt.Sprintf("t%d", i), job.Seed+i)
		if err != nil {
			return r, err
		}
		r.TxIDs = append(r.TxIDs, id)
	}
	return r, nil
}

//dbos:workflow
func order(ctx context.Context, job Job) (Receipt, error) {
	if job.Queued {
		// Bracketing the whole execution, fenced and failed ones included:
		// a queue slot is held until the body returns.
		wf, _ := dbos.WorkflowID(ctx)
		note("QB", wf, "body")
		defer note("QE", wf, "body")
	}
	r, err := body(ctx, job)
	if err != nil || !job.Child {
		return r, err
	}
	c, err := childWorkflow(ctx, ChildJob(job))
	if err != nil {
		return r, err
	}
	r.Child = &c
	return r, nil
}

//dbos:workflow
func child(ctx context.Context, job Job) (Receipt, error) {
	return body(ctx, job)
}

var out struct {
	sync.Mutex
	w *bufio.Writer
}

func say(format string, args ...any) {
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(out.w, format+"\n", args...)
	out.w.Flush()
}

func main() {
	url := flag.String("db", "", "system database URL")
	executor := flag.String("executor", "", "executor ID")
	ledger := flag.String("ledger", "", "ledger file")
	lease := flag.Duration("lease", 0, "executor lease (0: the runtime's default)")
	flag.Parse()
	out.w = bufio.NewWriter(os.Stdout)

	var err error
	ledgerFile, err = os.OpenFile(*ledger, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ledger:", err)
		os.Exit(2)
	}

	cmds := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
		close(cmds)
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	before := runtime.NumGoroutine()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx := context.Background()
	rt, err := dbos.Launch(ctx, dbos.Config{AppName: "torture", SystemDatabaseURL: *url, ExecutorID: *executor,
		ApplicationVersion: "torture-v1", ExecutorLease: *lease, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "launch:", err)
		os.Exit(3)
	}
	// The PostgreSQL server is shared: keep each worker's connections few.
	rt.AppDB().SetMaxOpenConns(6)
	for _, p := range rt.RecoveryProblems() {
		fmt.Fprintln(os.Stderr, "recovery problem:", p)
	}
	say("ready %d", pid)

	var starts sync.WaitGroup
	wctx := dbos.WithRuntime(ctx, rt)
	// The driver may send a start again while the first is still retrying
	// (see below). Only one goroutine per workflow ID: a second one, refused
	// while the lease lapsed, would start the ID once the lease is back,
	// after an adopter took the workflow over, and starting a PENDING
	// workflow by its ID makes the caller its owner: two processes would
	// run it.
	var inFlight sync.Map
loop:
	for {
		var line string
		var ok bool
		select {
		case line, ok = <-cmds:
			if !ok {
				break loop
			}
		case <-sigs:
			break loop
		}
		f := strings.Fields(line)
		switch {
		case len(f) == 1 && f[0] == "quit":
			break loop
		case len(f) == 7 && (f[0] == "start" || f[0] == "enqueue"):
			var n [5]int
			for i := range n {
				n[i], _ = strconv.Atoi(f[2+i])
			}
			id, job := f[1], Job{Steps: n[0], Async: n[1], Txs: n[2], Child: n[3] == 1, Seed: n[4], Queued: f[0] == "enqueue"}
			run := func() error {
				_, err := startOrderWorkflow(dbos.WithWorkflowID(wctx, id), job)
				return err
			}
			if job.Queued {
				run = func() error {
					_, err := enqueueOrderWorkflow(dbos.WithWorkflowID(wctx, id), workQueue, job)
					return err
				}
			}
			if _, dup := inFlight.LoadOrStore(id, true); dup {
				continue // the first one acknowledges
			}
			starts.Add(1)
			go func() {
				defer starts.Done()
				defer inFlight.Delete(id)
				err := run()
				// A runtime whose lease lapsed (an outage outlasted it)
				// refuses new work until it holds its lease again: an
				// application retries, as it does after an outage.
				for errors.Is(err, dbos.ErrLeaseLost) && wctx.Err() == nil {
					time.Sleep(200 * time.Millisecond)
					err = run()
				}
				if err != nil {
					say("nack %s %s", id, strings.ReplaceAll(err.Error(), "\n", " "))
					return
				}
				say("ack %s", id)
			}()
		default:
			fmt.Fprintf(os.Stderr, "bad command %q\n", line)
		}
	}

	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := rt.Shutdown(sctx); err != nil {
		fmt.Fprintln(os.Stderr, "shutdown:", err)
	}
	starts.Wait()
	// Goroutines end asynchronously after Close; give them a moment.
	after := runtime.NumGoroutine()
	for deadline := time.Now().Add(5 * time.Second); after > before && time.Now().Before(deadline); after = runtime.NumGoroutine() {
		time.Sleep(20 * time.Millisecond)
	}
	if after > before {
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
	}
	say("goroutines %d %d", before, after)
	say("bye")
}
