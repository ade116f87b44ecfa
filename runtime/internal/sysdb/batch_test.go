package sysdb

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The batcher's rules, with statements simulated: one in flight goes alone
// and at once; arrivals while every flight is busy share the next statement;
// a failed batch falls back to single rows, so each error reaches its own
// caller.
func TestStepBatcherRules(t *testing.T) {
	release := make(chan struct{})
	var ones, manys atomic.Int32
	var sizes sync.Map
	b := &batcher[StepRow]{maxRows: 100,
		one: func(ctx context.Context, r StepRow) (bool, error) {
			if ones.Add(1) == 1 {
				<-release // hold the only flight until the others queue
			}
			if r.Name == "bad" {
				return false, errors.New("bad row")
			}
			return true, nil
		},
		many: func(ctx context.Context, rows []StepRow) ([]bool, error) {
			manys.Add(1)
			sizes.Store(len(rows), true)
			for _, r := range rows {
				if r.Name == "bad" {
					return nil, errors.New("batch failed")
				}
			}
			out := make([]bool, len(rows))
			for i := range out {
				out[i] = true
			}
			return out, nil
		}}
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { _, err := b.record(ctx, StepRow{Name: "first"}); first <- err }()
	for ones.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range 10 {
		wg.Go(func() {
			name := fmt.Sprint("row", i)
			if i == 3 {
				name = "bad"
			}
			_, errs[i] = b.record(ctx, StepRow{Name: name, StepID: i})
		})
	}
	for {
		b.mu.Lock()
		n := len(b.queue)
		b.mu.Unlock()
		if n == 10 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if manys.Load() != 1 {
		t.Errorf("%d batch statements, want 1 for the 10 queued rows", manys.Load())
	}
	if _, ok := sizes.Load(10); !ok {
		t.Error("the queued rows were not sent together")
	}
	for i, err := range errs {
		if (err != nil) != (i == 3) {
			t.Errorf("row %d: err %v; only row 3 should fail", i, err)
		}
	}
}

// A write whose caller gives up while it waits for the flight leaves the
// queue: it is never written, and its caller gets the context's error.
func TestBatcherCancelledWhileQueued(t *testing.T) {
	release := make(chan struct{})
	var written sync.Map
	write := func(r StepRow) { written.Store(r.Name, true) }
	b := &batcher[StepRow]{maxRows: 100,
		one: func(ctx context.Context, r StepRow) (bool, error) {
			if r.Name == "first" {
				<-release // hold the flight
			}
			write(r)
			return true, nil
		},
		many: func(ctx context.Context, rs []StepRow) ([]bool, error) {
			for _, r := range rs {
				write(r)
			}
			return make([]bool, len(rs)), nil
		}}
	// waitFor polls cond under the batcher's lock, failing after a while.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			b.mu.Lock()
			ok := cond()
			b.mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	first := make(chan error, 1)
	go func() { _, err := b.record(context.Background(), StepRow{Name: "first"}); first <- err }()
	waitFor("the first write's flight", func() bool { return b.flying })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.record(ctx, StepRow{Name: "gave-up"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("record = %v, want the context's deadline", err)
	}
	kept := make(chan error, 1)
	go func() { _, err := b.record(context.Background(), StepRow{Name: "kept"}); kept <- err }()
	waitFor("the queue to hold only the kept write", func() bool { return len(b.queue) == 1 })
	close(release)
	if err := errors.Join(<-first, <-kept); err != nil {
		t.Fatal(err)
	}
	if _, ok := written.Load("gave-up"); ok {
		t.Error("a write abandoned while queued was written")
	}
	if _, ok := written.Load("kept"); !ok {
		t.Error("the write queued after it was not written")
	}
}

// Callers a batch has just answered, whose next checkpoints follow at once,
// ride the next flight together instead of splitting into two cohorts that
// take turns: eight callers in a loop fill batches of about eight rows,
// where without the yield they alternate between seven and one.
func TestStepBatcherGathersAnsweredCallers(t *testing.T) {
	// One P makes the order deterministic: the yield lets every runnable
	// caller queue before the flight departs.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var rows, batches atomic.Int64 // statements, single-row ones included
	b := &batcher[StepRow]{maxRows: 100,
		one: func(ctx context.Context, r StepRow) (bool, error) {
			time.Sleep(200 * time.Microsecond) // a round trip
			rows.Add(1)
			batches.Add(1)
			return true, nil
		},
		many: func(ctx context.Context, rs []StepRow) ([]bool, error) {
			time.Sleep(200 * time.Microsecond)
			rows.Add(int64(len(rs)))
			batches.Add(1)
			return make([]bool, len(rs)), nil
		}}
	const callers, each = 8, 30
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for i := range each {
				if _, err := b.record(context.Background(), StepRow{StepID: i}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if batches.Load() == 0 {
		t.Fatal("no statement was sent")
	}
	if mean := float64(rows.Load()) / float64(batches.Load()); mean < 6 {
		t.Errorf("%d rows in %d statements, %.1f a statement; want the eight callers together (at least 6 on average)",
			rows.Load(), batches.Load(), mean)
	}
}

// On the real engines: many concurrent checkpoints, some for the same key,
// each get their own row's outcome, and exactly one of each key inserts.
func TestRecordStepConcurrentBatches(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t)
		mustInit(t, s, initParams("wf"))
		const n = 300
		var wg sync.WaitGroup
		var insertedByKey [n / 2]atomic.Int32
		got := make([]StepRow, n)
		for i := range n {
			wg.Go(func() {
				key := i / 2 // two writers per key
				row := StepRow{WorkflowID: "wf", StepID: key + 1, Name: "s", Output: fmt.Sprintf(`%d`, i)}
				st, fresh, err := s.RecordStep(ctx, row)
				if err != nil {
					t.Error(err)
					return
				}
				if fresh {
					insertedByKey[key].Add(1)
				}
				got[i] = st
			})
		}
		wg.Wait()
		for k := range insertedByKey {
			if c := insertedByKey[k].Load(); c != 1 {
				t.Fatalf("key %d inserted %d times, want once", k, c)
			}
			if got[2*k].Output != got[2*k+1].Output {
				t.Errorf("key %d: writers saw %s and %s; both must see the recorded one", k, got[2*k].Output, got[2*k+1].Output)
			}
		}
		if b := storeOf(s).batch; b == nil || b.batches.Load() == 0 {
			t.Error("300 concurrent checkpoints never shared a statement")
		} else {
			t.Logf("%d rows in %d shared statements", b.batchedRows.Load(), b.batches.Load())
		}
		steps, err := s.Steps(ctx, "wf")
		if err != nil || len(steps) != n/2 {
			t.Fatalf("%d steps recorded, %v; want %d", len(steps), err, n/2)
		}
	})
}

// storeOf is the operations under either engine's Store.
func storeOf(s Store) *store {
	switch s := s.(type) {
	case *Postgres:
		return s.store
	case *SQLite:
		return s.store
	}
	return nil
}

// A batch sends its rows as text arrays: quotes, backslashes, braces,
// commas, NULL-looking words and empty strings come back as they went.
func TestRecordStepsBatchTextRoundTrip(t *testing.T) {
	tg := newPostgresTarget(t)
	s := tg.migrated(t).(*Postgres)
	ctx := context.Background()
	mustInit(t, s, initParams(`wf "quoted" \ back`))
	values := []string{`"a\"b"`, `\\`, `{1,2}`, `NULL`, ``, `x, y`, `{"k":["v\n",null]}`, "ünï €"}
	var rows []StepRow
	for i, v := range values {
		rows = append(rows, StepRow{WorkflowID: `wf "quoted" \ back`, StepID: i + 1, Name: v + "-name", Output: v, Error: v, ChildID: v,
			StartedMS: int64(i), CompletedMS: int64(1000 + i)})
	}
	ins, err := s.recordStepsPG(ctx, rows)
	if err != nil || len(ins) != len(rows) {
		t.Fatalf("recordStepsPG = %v, %v", ins, err)
	}
	got, err := s.Steps(ctx, `wf "quoted" \ back`)
	if err != nil || len(got) != len(rows) {
		t.Fatalf("Steps = %d rows, %v", len(got), err)
	}
	for i, g := range got {
		w := rows[i]
		w.Serialization = FormatPortable
		if g != w {
			t.Errorf("row %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	// One key recorded already: the whole batch fails, so that the batcher
	// sends each row alone and each learns its own outcome.
	if _, err := s.recordStepsPG(ctx, []StepRow{{WorkflowID: rows[0].WorkflowID, StepID: 100, Name: "n"}, rows[0]}); err == nil {
		t.Fatal("a batch with a recorded key succeeded")
	}
}

// Concurrent finishes share statements (PostgreSQL) or transactions
// (SQLite): each caller learns whether its own workflow took the outcome,
// every outcome is stored as sent, and a second round of finishes for the
// same workflows takes none.
func TestFinishWorkflowConcurrentBatches(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) { testFinishConcurrentBatches(t, tg.migrated(t)) })
}

func testFinishConcurrentBatches(t *testing.T, s Store) {
	ctx := context.Background()
	const n = 200
	for i := range n {
		mustInit(t, s, initParams(fmt.Sprint("wf-", i)))
	}
	outcome := func(i, round int) FinishParams {
		id := fmt.Sprint("wf-", i)
		if i%3 == 1 {
			return FinishParams{ID: id, Status: StatusError, Error: fmt.Sprintf(`{"message":"failed %d/%d"}`, i, round)}
		}
		return FinishParams{ID: id, Status: StatusSuccess, Output: fmt.Sprintf(`"out %d/%d \" {x}"`, i, round)}
	}
	for round := range 2 {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				took, err := s.FinishWorkflow(ctx, outcome(i, round))
				if err != nil {
					t.Error(err)
				} else if took != (round == 0) {
					t.Errorf("round %d: wf-%d took its outcome: %v", round, i, took)
				}
			})
		}
		wg.Wait()
	}
	for i := range n {
		w, err := s.Workflow(ctx, fmt.Sprint("wf-", i))
		want := outcome(i, 0)
		if err != nil || w.Status != want.Status || w.Output != want.Output || w.Error != want.Error {
			t.Errorf("wf-%d: %s %q %q, %v; want the first round's %+v", i, w.Status, w.Output, w.Error, err, want)
		}
	}
	if b := storeOf(s).finishes; b == nil || b.batches.Load() == 0 {
		t.Error("400 concurrent finishes never shared a statement")
	} else {
		t.Logf("%d outcomes in %d shared statements", b.batchedRows.Load(), b.batches.Load())
	}
}

// A batch of outcomes reports, row by row, which workflows took theirs: a
// workflow that finished already, or that does not exist, takes nothing,
// and gets no outcome row. An ID twice in one batch fails the statement, so
// that the batcher sends each alone.
func TestFinishManyPG(t *testing.T) {
	tg := newPostgresTarget(t)
	s := tg.migrated(t).(*Postgres)
	ctx := context.Background()
	for _, id := range []string{"a", "b", "done"} {
		mustInit(t, s, initParams(id))
	}
	if ok, err := s.finishOne(ctx, FinishParams{ID: "done", Status: StatusSuccess, Output: `1`}); !ok || err != nil {
		t.Fatalf("finishOne = %v, %v", ok, err)
	}
	batch := []FinishParams{
		{ID: "a", Status: StatusSuccess, Output: `"a"`},
		{ID: "done", Status: StatusError, Error: `"late"`},
		{ID: "missing", Status: StatusSuccess, Output: `"m"`},
		{ID: "b", Status: StatusError, Error: `"b failed"`},
	}
	took, err := s.finishManyPG(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, false, false, true}; !slices.Equal(took, want) {
		t.Errorf("took = %v, want %v", took, want)
	}
	for _, c := range []struct{ id, status, output, error string }{
		{"a", StatusSuccess, `"a"`, ""}, {"b", StatusError, "", `"b failed"`}, {"done", StatusSuccess, `1`, ""},
	} {
		w, err := s.Workflow(ctx, c.id)
		if err != nil || w.Status != c.status || w.Output != c.output || w.Error != c.error {
			t.Errorf("%s: %s %q %q, %v; want %s %q %q", c.id, w.Status, w.Output, w.Error, err, c.status, c.output, c.error)
		}
	}
	if _, err := s.Workflow(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing: %v, want ErrNotFound", err)
	}
	mustInit(t, s, initParams("twice"))
	if _, err := s.finishManyPG(ctx, []FinishParams{{ID: "twice", Status: StatusSuccess}, {ID: "twice", Status: StatusError}}); err == nil {
		t.Error("a batch with one ID twice succeeded")
	}
}

// A batch of new workflows on PostgreSQL stores each row as the lean start
// does, and reports which it inserted: not an existing ID's. An ID twice in
// one batch, or inputs left under one of its IDs, fail the statement, so
// that the batcher sends each row alone.
func TestInsertManyPG(t *testing.T) {
	tg := newPostgresTarget(t)
	s := tg.migrated(t).(*Postgres)
	ctx := context.Background()
	mustInit(t, s, initParams("old"))
	row := func(id string, mod func(*WorkflowRow)) newWorkflow {
		r := initParams(id).Row
		r.AppName = s.appName
		if mod != nil {
			mod(&r)
		}
		return newWorkflow{Row: r, Now: 1_700_000_000_000, XID: "xid-" + id}
	}
	batch := []newWorkflow{
		row("n1", func(r *WorkflowRow) {
			r.Inputs, r.ParentID, r.TimeoutMS, r.DeadlineMS = `["a,\"b\"}"]`, "parent", 5000, 1_700_000_005_000
		}),
		row("old", nil),
		row("n2", func(r *WorkflowRow) { r.Attributes = `{"k": "v"}` }),
	}
	took, err := s.insertManyPG(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, false, true}; !slices.Equal(took, want) {
		t.Fatalf("took = %v, want %v", took, want)
	}
	for _, i := range []int{0, 2} {
		w, err := s.Workflow(ctx, batch[i].Row.ID)
		if err != nil {
			t.Fatal(err)
		}
		if want := newRow(batch[i].Row, batch[i].Now); w != want {
			t.Errorf("stored %s:\n got %+v\nwant %+v", want.ID, w, want)
		}
	}
	if w, err := s.Workflow(ctx, "old"); err != nil || w.Inputs != `["in"]` || w.RecoveryAttempts != 1 {
		t.Errorf("the existing workflow changed: %+v, %v", w, err)
	}
	if _, err := s.insertManyPG(ctx, []newWorkflow{row("twice", nil), row("twice", nil)}); err == nil {
		t.Error("a batch with one ID twice succeeded")
	}
	tg.exec(t, `INSERT INTO {schema}workflow_input (workflow_uuid, inputs) VALUES ('stray', '["old"]')`)
	if _, err := s.insertManyPG(ctx, []newWorkflow{row("n3", nil), row("stray", nil)}); !isUniqueViolation(err) {
		t.Errorf("a batch over stray inputs: %v, want a unique violation", err)
	}
	if _, err := s.Workflow(ctx, "n3"); !errors.Is(err, ErrNotFound) {
		t.Errorf("n3 was written by a failed batch: %v", err)
	}
}

// Concurrent starts on PostgreSQL share statements: each new workflow is
// inserted once, with its own row, and a second round of starts with the
// same IDs inserts none and finds each workflow.
func TestInitWorkflowConcurrentBatches(t *testing.T) {
	tg := newPostgresTarget(t)
	s := tg.migrated(t).(*Postgres)
	const n = 300
	for round := range 2 {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				p := initParams(fmt.Sprint("wf-", i))
				p.Row.Inputs = fmt.Sprintf(`[%d]`, i)
				if round == 1 {
					p.Row.Inputs = `["again"]`
				}
				r, err := s.InitWorkflow(context.Background(), p)
				if err != nil {
					t.Error(err)
					return
				}
				if r.Inserted != (round == 0) || r.Row.Status != StatusPending || r.Row.Inputs != fmt.Sprintf(`[%d]`, i) {
					t.Errorf("round %d, wf-%d: inserted %v, %+v", round, i, r.Inserted, r.Row)
				}
			})
		}
		wg.Wait()
	}
	if b := s.inserts; b == nil || b.batches.Load() == 0 {
		t.Error("600 concurrent starts never shared a statement")
	} else {
		t.Logf("%d starts in %d shared statements", b.batchedRows.Load(), b.batches.Load())
	}
}
