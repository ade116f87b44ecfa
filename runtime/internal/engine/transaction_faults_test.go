package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
	"github.com/jmoiron/sqlx"
)

// commitCutter is a TCP proxy in front of PostgreSQL that, once armed, cuts
// the connection carrying the next COMMIT: before forwarding it (the commit
// never lands) or after (it lands, its acknowledgement is lost).
type commitCutter struct {
	ln     net.Listener
	target string
	armed  atomic.Int32 // 0, cutBefore or cutAfter
	cuts   atomic.Int32
	wg     sync.WaitGroup
}

// commitMsg is pgx's COMMIT: a simple-protocol Query message. A checkpoint
// pipelined with its COMMIT sends pipelinedCommit instead, in the Parse
// message of the pipeline's first run.
var (
	commitMsg       = []byte("Q\x00\x00\x00\x0bcommit\x00")
	pipelinedCommit = []byte("COMMIT\x00")
)

const (
	cutBefore = 1
	cutAfter  = 2
)

func newCommitCutter(t *testing.T, target string) *commitCutter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &commitCutter{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

// via rewrites a PostgreSQL URL to go through the proxy.
func (p *commitCutter) via(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *commitCutter) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		var mute atomic.Bool // drop what the server says from now on
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 && !mute.Load() {
					if _, werr := c.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			c.Close()
		}()
		go func() {
			defer s.Close()
			defer c.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					chunk := buf[:n]
					if mode := p.armed.Load(); mode != 0 && (bytes.Contains(chunk, commitMsg) || bytes.Contains(chunk, pipelinedCommit)) && p.armed.CompareAndSwap(mode, 0) {
						p.cuts.Add(1)
						mute.Store(true)
						if mode == cutAfter {
							_, _ = s.Write(chunk)
							time.Sleep(200 * time.Millisecond) // the server commits and answers into the void
						}
						return
					}
					if _, werr := s.Write(chunk); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

func pgHostPort(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// TestTransactionLostCommit (PostgreSQL): the connection dies at COMMIT.
// If the commit did not land, the function runs again in a fresh
// transaction; if it landed and only the acknowledgement was lost, the
// record in the database says so (record-then-verify) and the function does
// not run again. Either way: one row, one checkpoint, the workflow
// succeeds. With the application database being the system database and
// with a separate one.
func TestTransactionLostCommit(t *testing.T) {
	for _, layout := range []string{"same", "separate"} {
		for _, mode := range []int{cutBefore, cutAfter} {
			name := layout + "/" + map[int]string{cutBefore: "not landed", cutAfter: "landed"}[mode]
			t.Run(name, func(t *testing.T) {
				defer fatalOnMust(t)
				direct := dbtest.Postgres(t)
				proxy := newCommitCutter(t, pgHostPort(t, direct))
				sysURL, appURL := proxy.via(t, direct), proxy.via(t, direct)
				if layout == "separate" {
					sysURL, appURL = dbtest.Postgres(t), proxy.via(t, direct)
				}
				rt, ctx := launch(t, sysURL, withAppDB(appURL))
				appExec(t, rt.AppDB(), greetingsDDL)
				var c counter
				in := setBody(t, func(ctx context.Context, in input) (string, error) {
					return dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "insert"}, func(ctx context.Context, tx *sqlx.Tx) (string, error) {
						n := c.inc("insert")
						if _, err := tx.ExecContext(ctx, `INSERT INTO greetings (name, note) VALUES ('ivy', 'hi')`); err != nil {
							return "", err
						}
						if n == 1 {
							proxy.armed.Store(int32(mode))
						}
						return fmt.Sprint("run ", n), nil
					})
				})
				retries := rt.TransactionRetries()
				out, err := testWF.Run(dbos.WithWorkflowID(ctx, "lost-ack"), in)
				if proxy.cuts.Load() != 1 {
					t.Fatalf("the proxy cut %d commits; want 1", proxy.cuts.Load())
				}
				wantRuns, wantOut := 2, "run 2"
				if mode == cutAfter {
					wantRuns, wantOut = 1, "run 1"
				}
				if err != nil || out != wantOut || c.get("insert") != wantRuns {
					t.Fatalf("got %q, %v after %d runs; want %q after %d", out, err, c.get("insert"), wantOut, wantRuns)
				}
				if mode == cutBefore && rt.TransactionRetries() == retries {
					t.Fatal("the retry after the lost commit is not counted")
				}
				app := openByURL(t, direct)
				if n := appCount(t, app, `SELECT count(*) FROM greetings`); n != 1 {
					t.Fatalf("%d rows; want 1", n)
				}
				sys := openByURL(t, sysURL)
				var output string
				must(0, sys.Get(&output, `SELECT output FROM dbos.operation_outputs WHERE workflow_uuid = 'lost-ack' AND function_id = 1`))
				if output != `"`+wantOut+`"` {
					t.Fatalf("checkpoint %s; want %q", output, wantOut)
				}
			})
		}
	}
}

// TestTransactionConnectionLostInFunction (PostgreSQL): the function's
// connection dies under it (here it terminates its own backend). The error
// it returns is not its outcome: the transaction runs again on a fresh
// connection, once, and the workflow succeeds.
func TestTransactionConnectionLostInFunction(t *testing.T) {
	defer fatalOnMust(t)
	rt, ctx := launch(t, dbtest.Postgres(t))
	appExec(t, rt.AppDB(), greetingsDDL)
	var c counter
	in := setBody(t, func(ctx context.Context, in input) (string, error) {
		return dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "insert"}, func(ctx context.Context, tx *sqlx.Tx) (string, error) {
			n := c.inc("insert")
			if _, err := tx.ExecContext(ctx, `INSERT INTO greetings (name, note) VALUES ('jo', 'hi')`); err != nil {
				return "", err
			}
			if n == 1 {
				if _, err := tx.ExecContext(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`); err != nil {
					return "", fmt.Errorf("inserting: %w", err)
				}
			}
			return fmt.Sprint("run ", n), nil
		})
	})
	retries := rt.TransactionRetries()
	if out := must(testWF.Run(ctx, in)); out != "run 2" {
		t.Fatalf("out = %q; want run 2", out)
	}
	if n := appCount(t, rt.AppDB(), `SELECT count(*) FROM greetings`); n != 1 {
		t.Fatalf("%d rows; want 1", n)
	}
	if rt.TransactionRetries() != retries+1 {
		t.Fatalf("%d retries; want 1", rt.TransactionRetries()-retries)
	}
}

// TestTransactionCommitRefused (PostgreSQL): a commit the server refuses (a
// deferred constraint) rolls everything back; that error is the
// transaction's outcome, recorded and replayed without running again.
func TestTransactionCommitRefused(t *testing.T) {
	defer fatalOnMust(t)
	rt, ctx := launch(t, dbtest.Postgres(t))
	appExec(t, rt.AppDB(), `CREATE TABLE tickets (id INT, CONSTRAINT one_each UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)`)
	var c counter
	in := setBody(t, func(ctx context.Context, in input) (string, error) {
		_, err := dbos.RunTransaction(ctx, &dbos.TransactionOptions{Name: "sell"}, func(ctx context.Context, tx *sqlx.Tx) (int, error) {
			c.inc("sell")
			_, err := tx.ExecContext(ctx, `INSERT INTO tickets VALUES (1), (1)`) // checked at COMMIT
			return 1, err
		})
		return "", err
	})
	_, err := testWF.Run(dbos.WithWorkflowID(ctx, "refused"), in)
	if err == nil || !strings.Contains(err.Error(), "one_each") {
		t.Fatalf("err = %v; want the deferred constraint's violation", err)
	}
	if n := appCount(t, rt.AppDB(), `SELECT count(*) FROM tickets`); n != 0 {
		t.Fatalf("%d tickets; want none", n)
	}
	execSQL(t, rt, "UPDATE {dbos}workflow_status SET status = 'PENDING', error = NULL")
	_, err2 := testWF.Run(dbos.WithWorkflowID(ctx, "refused"), in)
	if err2 == nil || err2.Error() != err.Error() || c.get("sell") != 1 {
		t.Fatalf("replay: %v after %d runs; want the recorded error, 1 run", err2, c.get("sell"))
	}
	if errors.Is(err, dbos.ErrDatabase) {
		t.Fatalf("a refused commit is the function's outcome, not a database failure: %v", err)
	}
}
