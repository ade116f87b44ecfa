// Command greetings is the DBOS "Steps" and "Transactions" tutorial in Go: a
// workflow that fetches a greeting from an HTTP API in a step that retries,
// stores it with one transaction and reads it back with another.
//
// The HTTP API is a local httptest server started by the program; it fails the
// first two requests so the step's retries show. Run it from the repository
// root:
//
//	go run ./examples/greetings
//	go run ./examples/greetings -name Ada -id greet-ada   # run twice: the second prints the recorded result
//
// With no configuration the runtime keeps its state in the SQLite file
// .dbos/greetings.sqlite; set DBOS_SYSTEM_DATABASE_URL=postgres://... to use
// PostgreSQL instead.
package main

//go:generate go run github.com/dbosgen/dbosgen/cmd/dbosgen

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/dbosgen/dbosgen/examples/internal/show"
	"github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/jmoiron/sqlx"
)

// greetingAPI is the base URL of the greeting service. It is process
// configuration, not a workflow input: a workflow recovered by a later
// process must reach the service that process knows about.
var greetingAPI string

// bodyRan tells main whether the workflow body ran in this process.
var bodyRan atomic.Bool

// Greeting is a row of the greetings table.
type Greeting struct {
	Name string `db:"name" json:"name"`
	Note string `db:"note" json:"note"`
}

// fetchGreeting asks the greeting API for a greeting. The API is flaky, so
// the step retries: up to 5 attempts, waiting 200ms, 400ms, 800ms, ...
// between them (interval × backoff_rate^attempt).
//
//dbos:step retries_allowed max_attempts=5 interval=200ms backoff_rate=2
func fetchGreeting(ctx context.Context, name string) (string, error) {
	info, _ := dbos.CurrentStep(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, greetingAPI+"/greeting?name="+url.QueryEscape(name), nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Printf("    attempt %d of %d: GET /greeting -> %s\n", info.Attempt+1, info.MaxAttempts, resp.Status)
		return "", fmt.Errorf("greeting API: %s", resp.Status)
	}
	fmt.Printf("    attempt %d of %d: GET /greeting -> %s %q\n", info.Attempt+1, info.MaxAttempts, resp.Status, body)
	return string(body), nil
}

// insertGreeting stores a greeting. It runs in one database transaction that
// also records its outcome, so the row is inserted exactly once however often
// the workflow is replayed.
//
//dbos:transaction
func insertGreeting(ctx context.Context, tx *sqlx.Tx, g Greeting) error {
	_, err := tx.NamedExecContext(ctx, "INSERT INTO greetings (name, note) VALUES (:name, :note)", g)
	return err
}

// selectGreeting returns the first greeting stored for name, or "".
//
//dbos:transaction read_only
func selectGreeting(ctx context.Context, tx *sqlx.Tx, name string) (string, error) {
	var note string
	err := tx.GetContext(ctx, &note, tx.Rebind("SELECT note FROM greetings WHERE name = ? LIMIT 1"), name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return note, err
}

// greet is the workflow: each call below is checkpointed, so if the process
// dies the next dbos.Launch resumes greet after its last completed call.
//
//dbos:workflow
func greet(ctx context.Context, name string) (string, error) {
	bodyRan.Store(true) //dbos:allow demo output for main; the workflow never reads it
	id, _ := dbos.WorkflowID(ctx)
	fmt.Printf("workflow %s: greet(%q)\n", id, name)

	fmt.Println("  step 1, fetchGreeting: calling the greeting API (a step with retries)")
	note, err := fetchGreetingStep(ctx, name)
	if err != nil {
		return "", err
	}

	fmt.Println("  step 2, insertGreeting: INSERT INTO greetings (a transaction)")
	if err := insertGreetingTx(ctx, Greeting{Name: name, Note: note}); err != nil {
		return "", err
	}

	fmt.Println("  step 3, selectGreeting: SELECT note FROM greetings (a read-only transaction)")
	first, err := selectGreetingTx(ctx, name)
	if err != nil {
		return "", err
	}
	fmt.Printf("  the first greeting stored for %s is %q\n", name, first)
	return first, nil
}

// flakyGreetingServer answers GET /greeting?name=x with a greeting, after
// failing the first failures requests with 503.
func flakyGreetingServer(failures int64) *httptest.Server {
	var calls atomic.Int64
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= failures {
			http.Error(w, "try again later", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "Hello, %s! (greeted at %s)", r.URL.Query().Get("name"), time.Now().Format(time.Kitchen))
	}))
}

func main() {
	name := flag.String("name", "dbos", "who to greet")
	id := flag.String("id", "", "workflow ID (default: a random one); run twice with the same ID to see the recorded result come back")
	failures := flag.Int64("failures", 2, "how many requests the greeting API fails before it answers")
	flag.Parse()
	if err := run(*name, *id, *failures); err != nil {
		fmt.Fprintln(os.Stderr, "greetings:", err)
		os.Exit(1)
	}
}

func run(name, id string, failures int64) error {
	ctx := context.Background()
	api := flakyGreetingServer(failures)
	defer api.Close()
	greetingAPI = api.URL
	fmt.Printf("greeting API (local, fails its first %d requests): %s\n", failures, api.URL)

	fmt.Println("launching the dbos runtime on", show.Database("greetings"))
	rt, err := dbos.Launch(ctx, dbos.Config{AppName: "greetings", Logger: show.Logger(), Setup: createTable})
	if err != nil {
		return err
	}
	defer rt.Shutdown(context.Background())

	if id != "" {
		ctx = dbos.WithWorkflowID(ctx, id)
	}
	start := time.Now()
	h, err := startGreetWorkflow(ctx, name)
	if err != nil {
		return err
	}
	note, err := h.Result(ctx)
	if err != nil {
		return fmt.Errorf("workflow %s: %w", h.ID(), err)
	}
	fmt.Printf("workflow %s finished in %s: %q\n", h.ID(), time.Since(start).Round(time.Millisecond), note)
	switch {
	case !bodyRan.Load():
		fmt.Printf("workflow %s had finished before: that is its recorded result; the body did not run again.\n", id)
	case id != "":
		fmt.Printf("run it again with -id %s: the recorded result comes back and no step runs.\n", id)
	}
	return nil
}

// createTable creates the application's own table in the application database
// (the system database unless APP_DATABASE_URL says otherwise). Launch runs it
// before resuming any workflow, so a recovered workflow finds the table.
func createTable(ctx context.Context, db *sqlx.DB) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS greetings (name TEXT NOT NULL, note TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("creating table greetings: %w", err)
	}
	return nil
}
