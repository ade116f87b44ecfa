package sysdb

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The Store conformance suite: every test runs against every backend.

// target is one fresh system database of one engine.
type target struct {
	engine string
	// open returns a new, unmigrated Store on the target's database, closed
	// at the end of the test. Two stores play two processes.
	open func(t *testing.T) Store
	// exec runs raw SQL against the database's system schema.
	exec func(t *testing.T, q string)
	// sqlDB opens a database/sql handle on the application database.
	sqlDB func(t *testing.T) *sql.DB
}

type backend struct {
	name string
	new  func(t *testing.T) *target
}

var backends = []backend{
	{"postgres", newPostgresTarget},
	{"sqlite", newSQLiteTarget},
}

func forEachBackend(t *testing.T, f func(t *testing.T, tg *target)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, b.new(t))
		})
	}
}

func newPostgresTarget(t *testing.T) *target {
	t.Helper()
	ctx := context.Background()
	// First, so its cleanup (dropping the database) runs after every store
	// of the test is closed.
	url := dbtest.Postgres(t)
	pool := func(t *testing.T) *pgxpool.Pool {
		p, err := pgxpool.New(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	var rawOnce sync.Once
	var raw *pgxpool.Pool
	return &target{
		engine: "postgres",
		open: func(t *testing.T) Store {
			return NewPostgres(pool(t), "dbos", "app")
		},
		exec: func(t *testing.T, q string) {
			rawOnce.Do(func() { raw = pool(t) })
			if _, err := raw.Exec(ctx, strings.ReplaceAll(q, "{schema}", "dbos.")); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		},
		sqlDB: func(t *testing.T) *sql.DB {
			db, err := sql.Open("pgx", url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
	}
}

func newSQLiteTarget(t *testing.T) *target {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "dir", "sys.sqlite")
	open := func(t *testing.T) *SQLite {
		s, err := OpenSQLite(context.Background(), path, "app")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	var rawOnce sync.Once
	var raw *SQLite
	return &target{
		engine: "sqlite",
		open:   func(t *testing.T) Store { return open(t) },
		exec: func(t *testing.T, q string) {
			rawOnce.Do(func() { raw = open(t) })
			if _, err := raw.DB().Exec(strings.ReplaceAll(q, "{schema}", "")); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		},
		sqlDB: func(t *testing.T) *sql.DB {
			s := open(t)
			return s.DB()
		},
	}
}

// migrated opens a store and migrates it.
func (tg *target) migrated(t *testing.T) Store {
	t.Helper()
	s := tg.open(t)
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s
}

func initParams(id string) InitParams {
	return InitParams{
		Row: WorkflowRow{
			ID: id, Name: "pkg.Workflow", ExecutorID: "exec-a", AppVersion: "v1", AppName: "app",
			Inputs: `["in"]`,
		},
		MaxRecoveryAttempts: 100,
		DeadLetterError:     func() string { return `{"message":"dead"}` },
	}
}

func mustInit(t *testing.T, s Store, p InitParams) InitResult {
	t.Helper()
	r, err := s.InitWorkflow(context.Background(), p)
	if err != nil {
		t.Fatalf("InitWorkflow(%s): %v", p.Row.ID, err)
	}
	return r
}

func TestMigrate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)
		if _, err := s.Migrate(ctx); err != nil {
			t.Fatalf("second migrate: %v", err)
		}
		// Concurrently: several goroutines on one store, and several stores
		// (processes) on one database, all at once.
		stores := []Store{s, s, s}
		for range 5 {
			stores = append(stores, tg.open(t))
		}
		var wg sync.WaitGroup
		errs := make(chan error, len(stores))
		for _, st := range stores {
			wg.Go(func() { _, err := st.Migrate(ctx); errs <- err })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent migrate: %v", err)
			}
		}
		if r := mustInit(t, s, initParams("wf")); !r.Inserted {
			t.Fatal("schema not usable after migrations")
		}
	})
}

func TestMigrateConcurrentFresh(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		var stores []Store
		for range 6 {
			stores = append(stores, tg.open(t))
		}
		var wg sync.WaitGroup
		errs := make(chan error, len(stores))
		for _, st := range stores {
			wg.Go(func() { _, err := st.Migrate(ctx); errs <- err })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent first migrate: %v", err)
			}
		}
		if r := mustInit(t, stores[0], initParams("wf")); !r.Inserted {
			t.Fatal("not inserted")
		}
	})
}

func TestSchemaNewerAccepted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		tg.migrated(t)
		tg.exec(t, fmt.Sprintf(`UPDATE {schema}dbos_migrations SET version = %d`, SchemaVersion+7))
		s := tg.open(t)
		res, err := s.Migrate(context.Background())
		if err != nil || res.Created || !res.Newer() || res.Version != SchemaVersion+7 {
			t.Fatalf("Migrate = %+v, %v; want the newer version accepted", res, err)
		}
		if r := mustInit(t, s, initParams("wf")); !r.Inserted {
			t.Fatal("schema not usable")
		}
	})
}

func TestSchemaOlderRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		tg.migrated(t)
		tg.exec(t, `UPDATE {schema}dbos_migrations SET version = 100`)
		_, err := tg.open(t).Migrate(context.Background())
		if !errors.Is(err, ErrOldSchema) || !strings.Contains(err.Error(), "100") || !strings.Contains(err.Error(), "migrate") {
			t.Fatalf("Migrate = %v, want ErrOldSchema naming version 100 and how to migrate", err)
		}
	})
}

// TestSchemaOfEarlierDbosgenRefused: the first dbosgen build made its own
// tables under DBOS's names, with version 1 in dbos_migrations. Such a
// database is refused, untouched, with a message that says what it is.
func TestSchemaOfEarlierDbosgenRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		prefix := ""
		if tg.engine == "postgres" {
			tg.exec(t, `CREATE SCHEMA dbos`)
			prefix = "dbos."
		}
		tg.exec(t, `CREATE TABLE {schema}workflow_status (workflow_uuid TEXT PRIMARY KEY, status TEXT NOT NULL, name TEXT NOT NULL,
	executor_id TEXT NOT NULL, application_version TEXT NOT NULL, inputs TEXT, output TEXT, error TEXT, created_at BIGINT NOT NULL)`)
		tg.exec(t, `CREATE TABLE {schema}dbos_migrations (version BIGINT NOT NULL)`)
		tg.exec(t, `INSERT INTO {schema}dbos_migrations (version) VALUES (1)`)
		_, err := tg.open(t).Migrate(context.Background())
		if !errors.Is(err, ErrOldSchema) || !strings.Contains(err.Error(), "earlier dbosgen build") {
			t.Fatalf("Migrate = %v, want ErrOldSchema saying an earlier dbosgen build made it", err)
		}
		var n int
		err = tg.sqlDB(t).QueryRow(`SELECT COUNT(*) FROM ` + prefix + `dbos_migrations WHERE version = 1`).Scan(&n)
		if err != nil || n != 1 {
			t.Fatal("the refused database was modified")
		}
	})
}

func TestInitWorkflowInsert(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		s := tg.migrated(t)
		p := initParams("wf-1")
		p.Row.ParentID = "parent"
		p.Row.TimeoutMS = 1500
		p.Row.DeadlineMS = 1_900_000_000_000
		p.Row.Attributes = `{"k": "v"}` // as PostgreSQL prints JSONB
		p.Row.Status = StatusSuccess    // ignored
		before := time.Now().UnixMilli()
		r := mustInit(t, s, p)
		if !r.Inserted {
			t.Error("Inserted = false for a new workflow")
		}
		w := r.Row
		want := p.Row
		want.Status = StatusPending
		want.RecoveryAttempts = 1
		want.Serialization = FormatPortable
		want.CreatedMS, want.UpdatedMS = w.CreatedMS, w.UpdatedMS
		if w != want {
			t.Errorf("row = %+v\nwant  %+v", w, want)
		}
		if w.CreatedMS < before || w.UpdatedMS != w.CreatedMS {
			t.Errorf("timestamps created=%d updated=%d, started at %d", w.CreatedMS, w.UpdatedMS, before)
		}
		got, err := s.Workflow(context.Background(), "wf-1")
		if err != nil || got != w {
			t.Errorf("Workflow = %+v, %v\nwant %+v", got, err, w)
		}
		// Empty optional fields come back empty (stored as NULL).
		r = mustInit(t, s, initParams("wf-2"))
		if r.Row.ParentID != "" || r.Row.TimeoutMS != 0 || r.Row.DeadlineMS != 0 || r.Row.Output != "" || r.Row.Error != "" {
			t.Errorf("optional fields not empty: %+v", r.Row)
		}
		if _, err := s.Workflow(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Workflow(unknown) = %v, want ErrNotFound", err)
		}
	})
}

// A new workflow's start leaves started_at_epoch_ms NULL, as DBOS does (it
// is the time a queue dequeued the workflow), and takes the place of inputs
// a workflow deleted by hand left under its ID.
func TestInitWorkflowStrayInputs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		s := tg.migrated(t)
		tg.exec(t, `INSERT INTO {schema}workflow_input (workflow_uuid, inputs) VALUES ('stray', '["old"]')`)
		r := mustInit(t, s, initParams("stray"))
		if !r.Inserted || r.Row.Inputs != `["in"]` {
			t.Errorf("start over stray inputs: inserted=%v inputs=%s", r.Inserted, r.Row.Inputs)
		}
		w, err := s.Workflow(context.Background(), "stray")
		if err != nil || w.Inputs != `["in"]` || w.Status != StatusPending {
			t.Errorf("stored: %+v, %v", w, err)
		}
		var started sql.NullInt64
		q := `SELECT started_at_epoch_ms FROM workflow_status WHERE workflow_uuid = 'stray'`
		if tg.engine == "postgres" {
			q = strings.Replace(q, "workflow_status", "dbos.workflow_status", 1)
		}
		if err := tg.sqlDB(t).QueryRow(q).Scan(&started); err != nil || started.Valid {
			t.Errorf("started_at_epoch_ms = %v, %v; want NULL", started, err)
		}
	})
}

func TestInitWorkflowExisting(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)

		t.Run("pending", func(t *testing.T) {
			first := mustInit(t, s, initParams("p"))
			time.Sleep(3 * time.Millisecond)
			p := initParams("p")
			p.Row.ExecutorID = "exec-b"
			p.Row.Name = "other.Name" // the stored row wins
			p.Row.Inputs = `["other"]`
			r := mustInit(t, s, p)
			if r.Inserted {
				t.Error("Inserted = true for an existing workflow")
			}
			w := r.Row
			if w.Status != StatusPending || w.RecoveryAttempts != 2 || w.ExecutorID != "exec-b" {
				t.Errorf("status=%s attempts=%d executor=%s, want PENDING 2 exec-b", w.Status, w.RecoveryAttempts, w.ExecutorID)
			}
			if w.Name != "pkg.Workflow" || w.Inputs != `["in"]` || w.CreatedMS != first.Row.CreatedMS {
				t.Errorf("stored fields changed: %+v", w)
			}
			if w.UpdatedMS <= first.Row.UpdatedMS {
				t.Errorf("updated_at %d not advanced past %d", w.UpdatedMS, first.Row.UpdatedMS)
			}
		})

		for _, tc := range []struct{ status, output, errJSON string }{
			{StatusSuccess, `"ok"`, ""},
			{StatusError, "", `{"message":"boom"}`},
		} {
			t.Run(tc.status, func(t *testing.T) {
				id := "w-" + tc.status
				mustInit(t, s, initParams(id))
				if ok, err := s.FinishWorkflow(ctx, FinishParams{ID: id, Status: tc.status, Output: tc.output, Error: tc.errJSON}); err != nil || !ok {
					t.Fatalf("FinishWorkflow = %v, %v", ok, err)
				}
				before, _ := s.Workflow(ctx, id)
				p := initParams(id)
				p.Row.ExecutorID = "exec-b"
				p.MaxRecoveryAttempts = 0
				r := mustInit(t, s, p)
				if r.Inserted {
					t.Error("Inserted = true")
				}
				if r.Row != before {
					t.Errorf("finished row changed:\n got %+v\nwant %+v", r.Row, before)
				}
				if r.Row.Output != tc.output || r.Row.Error != tc.errJSON {
					t.Errorf("output/error = %q/%q", r.Row.Output, r.Row.Error)
				}
			})
		}

		t.Run("CANCELLED", func(t *testing.T) {
			mustInit(t, s, initParams("c"))
			if ok, err := s.Cancel(ctx, CancelParams{ID: "c"}); err != nil || !ok {
				t.Fatalf("Cancel = %v, %v", ok, err)
			}
			before, _ := s.Workflow(ctx, "c")
			r := mustInit(t, s, initParams("c"))
			if r.Inserted || r.Row != before || r.Row.Status != StatusCancelled {
				t.Errorf("Inserted=%v row=%+v, want unchanged %+v", r.Inserted, r.Row, before)
			}
		})
	})
}

func TestRecoveryAttemptsAndDeadLetter(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		s := tg.migrated(t)
		p := initParams("r")
		p.MaxRecoveryAttempts = 3
		// Attempts 1 (insert), 2, 3, 4 stay PENDING: the workflow is parked
		// only once it was started more than MaxRecoveryAttempts times
		// after the first.
		for want := 1; want <= 4; want++ {
			r := mustInit(t, s, p)
			if r.Row.Status != StatusPending || r.Row.RecoveryAttempts != want || r.Inserted != (want == 1) {
				t.Fatalf("start %d: status=%s attempts=%d inserted=%v", want, r.Row.Status, r.Row.RecoveryAttempts, r.Inserted)
			}
		}
		r := mustInit(t, s, p)
		if r.Inserted || r.Row.Status != StatusDeadLetter || r.Row.RecoveryAttempts != 5 || r.Row.Error != p.DeadLetterError() {
			t.Fatalf("dead-letter start: %+v inserted=%v", r.Row, r.Inserted)
		}
		// Parked: later starts change nothing, and recovery no longer sees it.
		again := mustInit(t, s, p)
		if again.Row != r.Row {
			t.Errorf("parked row changed: %+v", again.Row)
		}
		if ok, err := s.FinishWorkflow(context.Background(), FinishParams{ID: "r", Status: StatusSuccess, Output: `1`, Error: ""}); ok || err != nil {
			t.Errorf("FinishWorkflow on a parked workflow = %v, %v", ok, err)
		}
		pend, err := s.Pending(context.Background(), "exec-a", "v1")
		if err != nil || len(pend) != 0 {
			t.Errorf("Pending = %v, %v", pend, err)
		}
	})
}

func TestInitWorkflowConcurrentSameID(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		stores := []Store{tg.migrated(t), tg.open(t)}
		const n = 16
		var wg sync.WaitGroup
		res := make(chan InitResult, n)
		for i := range n {
			wg.Go(func() {
				r, err := stores[i%2].InitWorkflow(context.Background(), initParams("same"))
				if err != nil {
					t.Error(err)
				}
				res <- r
			})
		}
		wg.Wait()
		close(res)
		inserted, attempts := 0, []int{}
		for r := range res {
			if r.Inserted {
				inserted++
			}
			attempts = append(attempts, r.Row.RecoveryAttempts)
		}
		slices.Sort(attempts)
		if inserted != 1 {
			t.Errorf("%d calls report Inserted, want exactly 1", inserted)
		}
		for i, a := range attempts {
			if a != i+1 {
				t.Fatalf("attempt counts %v, want 1..%d", attempts, n)
			}
		}
	})
}

func TestRecordStepAndSteps(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)
		mustInit(t, s, initParams("wf"))
		rows := []StepRow{
			{WorkflowID: "wf", StepID: 2, Name: "b", Error: `{"message":"e"}`, StartedMS: 5, CompletedMS: 7},
			{WorkflowID: "wf", StepID: 0, Name: "a", Output: `1`, CompletedMS: 9},
			{WorkflowID: "wf", StepID: 1, Name: "child", Output: `"r"`, ChildID: "wf-1", CompletedMS: 10},
			{WorkflowID: "wf", StepID: 10, Name: "z", CompletedMS: 11}, // neither output nor error (a nil result)
		}
		for i := range rows {
			rows[i].Serialization = FormatPortable
		}
		for _, r := range rows {
			got, rec, err := s.RecordStep(ctx, r)
			if err != nil || !rec || got != r {
				t.Fatalf("RecordStep(%+v) = %+v, %v, %v", r, got, rec, err)
			}
		}
		// Conflict: the first outcome wins and is returned.
		got, rec, err := s.RecordStep(ctx, StepRow{WorkflowID: "wf", StepID: 2, Name: "other", Output: `"late"`})
		if err != nil || rec || got != rows[0] {
			t.Errorf("conflicting RecordStep = %+v, %v, %v; want %+v, false", got, rec, err, rows[0])
		}
		steps, err := s.Steps(ctx, "wf")
		if err != nil {
			t.Fatal(err)
		}
		want := []StepRow{rows[1], rows[2], rows[0], rows[3]}
		if !slices.Equal(steps, want) {
			t.Errorf("Steps =\n%+v\nwant\n%+v", steps, want)
		}
		if steps, err := s.Steps(ctx, "none"); err != nil || len(steps) != 0 {
			t.Errorf("Steps(unknown) = %v, %v", steps, err)
		}
	})
}

func TestFinishWorkflow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)
		mustInit(t, s, initParams("f"))
		ok, err := s.FinishWorkflow(ctx, FinishParams{ID: "f", Status: StatusSuccess, Output: `{"v":1}`, Error: ""})
		if err != nil || !ok {
			t.Fatalf("FinishWorkflow = %v, %v", ok, err)
		}
		ok, err = s.FinishWorkflow(ctx, FinishParams{ID: "f", Status: StatusError, Output: "", Error: `{"message":"x"}`})
		if err != nil || ok {
			t.Errorf("second FinishWorkflow = %v, %v; want false", ok, err)
		}
		w, err := s.Workflow(ctx, "f")
		if err != nil || w.Status != StatusSuccess || w.Output != `{"v":1}` || w.Error != "" {
			t.Errorf("row = %+v, %v", w, err)
		}
		if ok, err := s.FinishWorkflow(ctx, FinishParams{ID: "unknown", Status: StatusSuccess, Output: `1`, Error: ""}); ok || err != nil {
			t.Errorf("FinishWorkflow(unknown) = %v, %v", ok, err)
		}
	})
}

func TestPending(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)
		mk := func(id, exec, ver string) {
			p := initParams(id)
			p.Row.ExecutorID, p.Row.AppVersion = exec, ver
			mustInit(t, s, p)
			time.Sleep(2 * time.Millisecond) // distinct created_at: Pending orders by it
		}
		mk("a1", "exec-a", "v1")
		mk("b1", "exec-b", "v1")
		mk("a2", "exec-a", "v2")
		mk("a3", "exec-a", "v1")
		mk("done", "exec-a", "v1")
		if _, err := s.FinishWorkflow(ctx, FinishParams{ID: "done", Status: StatusSuccess, Output: `1`, Error: ""}); err != nil {
			t.Fatal(err)
		}
		mk("a4", "exec-a", "v1")
		mustInit(t, s, initParams("a3")) // a second attempt
		got, err := s.Pending(ctx, "exec-a", "v1")
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, w := range got {
			ids = append(ids, w.ID)
			if w.Status != StatusPending || w.ExecutorID != "exec-a" || w.AppVersion != "v1" || w.Name != "pkg.Workflow" || w.Inputs != `["in"]` {
				t.Errorf("row %+v", w)
			}
			if want := map[bool]int{true: 2, false: 1}[w.ID == "a3"]; w.RecoveryAttempts != want {
				t.Errorf("%s: attempts %d, want %d", w.ID, w.RecoveryAttempts, want)
			}
		}
		if want := []string{"a1", "a3", "a4"}; !slices.Equal(ids, want) {
			t.Errorf("Pending = %v, want %v", ids, want)
		}
		if got, err := s.Pending(ctx, "exec-c", "v1"); err != nil || len(got) != 0 {
			t.Errorf("Pending(other executor) = %v, %v", got, err)
		}
	})
}

func TestCancel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)
		for _, id := range []string{"c1", "c2", "run", "done"} {
			mustInit(t, s, initParams(id))
		}
		if _, err := s.FinishWorkflow(ctx, FinishParams{ID: "done", Status: StatusSuccess, Output: `1`, Error: ""}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			id   string
			want bool
		}{{"c1", true}, {"c2", true}, {"c1", false}, {"done", false}, {"unknown", false}} {
			if ok, err := s.Cancel(ctx, CancelParams{ID: tc.id}); err != nil || ok != tc.want {
				t.Errorf("Cancel(%s) = %v, %v; want %v", tc.id, ok, err, tc.want)
			}
		}
		w, _ := s.Workflow(ctx, "c1")
		if w.Status != StatusCancelled || w.Error != "" {
			t.Errorf("cancelled row %+v", w)
		}
		if ok, _ := s.FinishWorkflow(ctx, FinishParams{ID: "c1", Status: StatusSuccess, Output: `1`, Error: ""}); ok {
			t.Error("FinishWorkflow succeeded on a cancelled workflow")
		}
		got, err := s.Cancelled(ctx, []string{"c1", "run", "done", "c2", "unknown"})
		slices.Sort(got)
		if err != nil || !slices.Equal(got, []string{"c1", "c2"}) {
			t.Errorf("Cancelled = %v, %v", got, err)
		}
		if got, err := s.Cancelled(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("Cancelled(nil) = %v, %v", got, err)
		}
		// More IDs than one SQLite statement may bind.
		many := []string{"c2"}
		for i := range 2500 {
			many = append(many, fmt.Sprintf("x%d", i))
		}
		many = append(many, "c1")
		got, err = s.Cancelled(ctx, many)
		slices.Sort(got)
		if err != nil || !slices.Equal(got, []string{"c1", "c2"}) {
			t.Errorf("Cancelled(2502 ids) = %v, %v", got, err)
		}
	})
}

func TestWatchCancellations(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		s := tg.migrated(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		got := make(chan string, 100)
		delivers := s.WatchCancellations(ctx, func(id string) { got <- id })
		if tg.engine == "sqlite" {
			if delivers {
				t.Fatal("SQLite WatchCancellations reports delivery; it must report false (poll)")
			}
			return
		}
		if !delivers {
			t.Fatal("PostgreSQL WatchCancellations reports no delivery")
		}
		// The listener connects asynchronously: cancel fresh workflows until
		// one notification arrives, then check it names a cancelled one.
		cancelled := map[string]bool{}
		deadline := time.After(15 * time.Second)
		for i := 0; ; i++ {
			id := fmt.Sprintf("w%d", i)
			mustInit(t, s, initParams(id))
			if ok, err := s.Cancel(context.Background(), CancelParams{ID: id}); err != nil || !ok {
				t.Fatalf("Cancel = %v, %v", ok, err)
			}
			cancelled[id] = true
			select {
			case n := <-got:
				if !cancelled[n] {
					t.Fatalf("notification for %q, not a cancelled workflow", n)
				}
				return
			case <-time.After(100 * time.Millisecond):
			case <-deadline:
				t.Fatal("no cancellation notification within 15s")
			}
		}
	})
}

// TestConcurrentWorkload: 16 goroutines × 50 checkpoints, plus readers, on
// one store and, concurrently, on a second store (a second process) on the
// same database. No error of any kind may surface (on SQLite: no
// SQLITE_BUSY / "database is locked").
func TestConcurrentWorkload(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		a := tg.migrated(t)
		b := tg.migrated(t)
		const workers, steps = 16, 50
		var wg sync.WaitGroup
		for i := range workers {
			for si, s := range []Store{a, b} {
				wg.Go(func() {
					id := fmt.Sprintf("wf-%d-%d", si, i)
					p := initParams(id)
					if _, err := s.InitWorkflow(ctx, p); err != nil {
						t.Errorf("%s init: %v", id, err)
						return
					}
					for n := range steps {
						if _, rec, err := s.RecordStep(ctx, StepRow{WorkflowID: id, StepID: n, Name: "s", Output: strconv.Itoa(n)}); err != nil || !rec {
							t.Errorf("%s step %d: %v %v", id, n, rec, err)
							return
						}
						if n%10 == 0 {
							if _, err := s.Steps(ctx, id); err != nil {
								t.Errorf("%s steps: %v", id, err)
							}
							if _, err := s.Cancelled(ctx, []string{id}); err != nil {
								t.Errorf("%s cancelled: %v", id, err)
							}
						}
					}
					if ok, err := s.FinishWorkflow(ctx, FinishParams{ID: id, Status: StatusSuccess, Output: `"done"`, Error: ""}); err != nil || !ok {
						t.Errorf("%s finish: %v %v", id, ok, err)
					}
				})
			}
		}
		wg.Wait()
		for i := range workers {
			for si := range 2 {
				id := fmt.Sprintf("wf-%d-%d", si, i)
				st, err := a.Steps(ctx, id)
				if err != nil || len(st) != steps {
					t.Errorf("%s: %d steps, %v", id, len(st), err)
				}
				if w, err := b.Workflow(ctx, id); err != nil || w.Status != StatusSuccess {
					t.Errorf("%s: %s, %v", id, w.Status, err)
				}
			}
		}
	})
}

func TestAppMigrations(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		migrate := func(db *sql.DB) error {
			if tg.engine == "postgres" {
				return MigratePostgresApp(ctx, db, "app")
			}
			return MigrateSQLiteApp(ctx, db)
		}
		var dbs []*sql.DB
		for range 4 {
			dbs = append(dbs, tg.sqlDB(t))
		}
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				if err := migrate(dbs[i%len(dbs)]); err != nil {
					t.Errorf("concurrent app migrate: %v", err)
				}
			})
		}
		wg.Wait()
		if err := migrate(dbs[0]); err != nil {
			t.Fatalf("app migrate again: %v", err)
		}
		tbl, vt, ins := "dbosgen_transaction_outputs", "dbosgen_app_migrations", `INSERT INTO dbosgen_transaction_outputs (workflow_uuid, function_id, function_name, created_at) VALUES ('w', 0, 'f', 1)`
		if tg.engine == "postgres" {
			tbl, vt = "app."+tbl, "app."+vt
			ins = strings.Replace(ins, "dbosgen_transaction_outputs", tbl, 1)
		}
		if _, err := dbs[1].ExecContext(ctx, ins); err != nil {
			t.Fatalf("%s not usable: %v", tbl, err)
		}
		var n, v int
		if err := dbs[2].QueryRowContext(ctx, `SELECT COUNT(*), MAX(version) FROM `+vt).Scan(&n, &v); err != nil || n != 1 || v != appMigrations[len(appMigrations)-1].version {
			t.Fatalf("%s: %d rows, version %d, %v", vt, n, v, err)
		}
		if _, err := dbs[0].ExecContext(ctx, `UPDATE `+vt+` SET version = 77`); err != nil {
			t.Fatal(err)
		}
		err := migrate(dbs[3])
		if !errors.Is(err, ErrSchemaTooNew) || !strings.Contains(err.Error(), "77") {
			t.Fatalf("app migrate on a newer schema = %v", err)
		}
	})
}

// Cancelling a workflow cancels its PENDING descendants at any depth, in
// one statement, through finished ones, and nothing outside its tree.
func TestCancelCascades(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)
		for _, w := range []struct{ id, parent string }{
			{"root", ""}, {"child", "root"}, {"done-child", "root"}, {"grandchild", "done-child"},
			{"great", "grandchild"}, {"stranger", ""}, {"strangers-child", "stranger"},
		} {
			p := initParams(w.id)
			p.Row.ParentID = w.parent
			mustInit(t, s, p)
		}
		if _, err := s.FinishWorkflow(ctx, FinishParams{ID: "done-child", Status: StatusSuccess, Output: `1`, Error: ""}); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Cancel(ctx, CancelParams{ID: "root"}); err != nil || !ok {
			t.Fatalf("Cancel(root) = %v, %v", ok, err)
		}
		want := map[string]string{"root": StatusCancelled, "child": StatusCancelled, "done-child": StatusSuccess,
			"grandchild": StatusCancelled, "great": StatusCancelled, "stranger": StatusPending, "strangers-child": StatusPending}
		for id, st := range want {
			if w, err := s.Workflow(ctx, id); err != nil || w.Status != st {
				t.Errorf("%s: status %q, %v; want %s", id, w.Status, err, st)
			}
		}
		if ok, err := s.Cancel(ctx, CancelParams{ID: "root"}); err != nil || ok {
			t.Errorf("second Cancel(root) = %v, %v; want false", ok, err)
		}
	})
}

func TestPendingOtherVersions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)
		for _, w := range []struct{ id, exec, ver string }{
			{"a", "exec-a", "v1"}, {"b", "exec-a", "v0"}, {"c", "exec-a", "v0"}, {"d", "exec-a", "v2"},
			{"e", "exec-b", "v0"}, {"done", "exec-a", "v0"},
		} {
			p := initParams(w.id)
			p.Row.ExecutorID, p.Row.AppVersion = w.exec, w.ver
			mustInit(t, s, p)
		}
		if _, err := s.FinishWorkflow(ctx, FinishParams{ID: "done", Status: StatusSuccess, Output: `1`, Error: ""}); err != nil {
			t.Fatal(err)
		}
		got, err := s.PendingOtherVersions(ctx, "exec-a", "v1")
		if err != nil || !slices.Equal(got, []VersionCount{{"v0", 2}, {"v2", 1}}) {
			t.Errorf("PendingOtherVersions = %v, %v; want [{v0 2} {v2 1}]", got, err)
		}
	})
}

// The attributes column holds JSON text written by the start that inserts
// the row; later starts leave it, and every read returns it.
func TestWorkflowAttributes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)
		p := initParams("with-attrs")
		p.Row.Attributes = `{"dbosgen.trace_context": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}`
		first := mustInit(t, s, p)
		if !first.Inserted || !sameJSON(t, first.Row.Attributes, p.Row.Attributes) {
			t.Fatalf("first start: inserted %v, attributes %q", first.Inserted, first.Row.Attributes)
		}
		p.Row.Attributes = `{"other": 1}`
		again := mustInit(t, s, p)
		if again.Inserted || !sameJSON(t, again.Row.Attributes, first.Row.Attributes) {
			t.Fatalf("second start: inserted %v, attributes %q; want the first start's", again.Inserted, again.Row.Attributes)
		}
		w, err := s.Workflow(ctx, "with-attrs")
		if err != nil || !sameJSON(t, w.Attributes, first.Row.Attributes) {
			t.Fatalf("Workflow: %q, %v", w.Attributes, err)
		}
		pending, err := s.Pending(ctx, "exec-a", "v1")
		if err != nil || len(pending) != 1 || !sameJSON(t, pending[0].Attributes, first.Row.Attributes) {
			t.Fatalf("Pending: %+v, %v", pending, err)
		}
		// No attributes: NULL, read as "".
		none := mustInit(t, s, initParams("without-attrs"))
		if none.Row.Attributes != "" {
			t.Fatalf("attributes of a row started without: %q", none.Row.Attributes)
		}
	})
}

func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatalf("%q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

// Each engine's errors are classified by the engine that raised them.
func TestErrorClassification(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.sqlite")
	a, err := OpenSQLite(ctx, path, "app")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.WriteDB().Exec(`CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	// A second connection that may not wait: the first holds the write lock.
	b, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tx, err := a.WriteDB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	_, err = b.Exec(`INSERT INTO t VALUES (2)`)
	if err == nil || !IsTransient(err) || IsSerializationFailure(err) {
		t.Errorf("SQLITE_BUSY %v: transient %v, serialization failure %v; want transient only", err, IsTransient(err), IsSerializationFailure(err))
	}
	if err := errors.New("syntax error"); IsTransient(err) || IsSerializationFailure(err) {
		t.Error("a plain error classified as retryable")
	}
}

// A cancel deadlocked with another transaction that locks its tree's rows
// the other way round (as a batch of outcomes can) is aborted by the
// server, and runs again once the other has committed.
func TestCancelRunsAgainAfterADeadlock(t *testing.T) {
	tg := newPostgresTarget(t)
	s := tg.migrated(t)
	ctx := context.Background()
	mustInit(t, s, initParams("p"))
	for _, id := range []string{"c1", "c2"} {
		p := initParams(id)
		p.Row.ParentID = "p"
		mustInit(t, s, p)
	}
	db := tg.sqlDB(t)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	touch := `UPDATE dbos.workflow_status SET updated_at = updated_at WHERE workflow_uuid = $1`
	// The last child first: the cancel locks the parent before it waits.
	if _, err := tx.Exec(touch, "c2"); err != nil {
		t.Fatal(err)
	}
	type result struct {
		ok  bool
		err error
	}
	done := make(chan result, 1)
	go func() { ok, err := s.Cancel(ctx, CancelParams{ID: "p"}); done <- result{ok, err} }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var waiting bool
		if err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%CANCELLED%')`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cancel never waited for the locked child")
		}
	}
	// Waits for the cancel's lock on the parent: a cycle, which the server
	// breaks by aborting the cancel (it has waited longest).
	if _, err := tx.Exec(touch, "p"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if !r.ok || r.err != nil {
		t.Fatalf("Cancel = %v, %v; want it to run again after the deadlock", r.ok, r.err)
	}
	for _, id := range []string{"p", "c1", "c2"} {
		if w, err := s.Workflow(ctx, id); err != nil || w.Status != StatusCancelled {
			t.Errorf("%s: %s, %v; want CANCELLED", id, w.Status, err)
		}
	}
}
