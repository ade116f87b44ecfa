package engine_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Benchmarks of the per-step cost and of 16-concurrent-workflow throughput,
// each next to a raw single-row INSERT measured in the same run on the same
// database: pgx on PostgreSQL, database/sql (the runtime's own write pool) on
// SQLite. The raw table is a copy of DBOS's operation_outputs, with its
// indexes, so the baseline pays for the same schema. Run with
//
//	go test -run '^$' -bench . ./runtime/internal/engine/
//
// x-raw-insert is the runtime's cost over the raw INSERT's: per step for
// BenchmarkStep; per workflow (three statements: start, one step, finish)
// for BenchmarkThroughput16, where x-raw-per-stmt divides it by three.

// rawTable copies operation_outputs: its columns, defaults and indexes.
const (
	pgRawTable     = `CREATE TABLE bench_raw (LIKE dbos.operation_outputs INCLUDING ALL)`
	sqliteRawTable = `CREATE TABLE bench_raw (
	workflow_uuid TEXT NOT NULL, function_id INTEGER NOT NULL, function_name TEXT NOT NULL DEFAULT '',
	output TEXT, error TEXT, child_workflow_id TEXT, started_at_epoch_ms INTEGER, completed_at_epoch_ms INTEGER,
	serialization TEXT, application_name TEXT DEFAULT NULL,
	retention_timestamp INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
	PRIMARY KEY (workflow_uuid, function_id));
CREATE INDEX bench_raw_retention ON bench_raw (retention_timestamp);
CREATE INDEX bench_raw_completed ON bench_raw (completed_at_epoch_ms, function_name, application_name)`
)

// rawInserter inserts one row per call, as a step checkpoint would.
type rawInserter func(ctx context.Context, key string, n int) error

func newRawInserter(b *testing.B, engine, url string, rt *dbos.Runtime) rawInserter {
	b.Helper()
	ctx := context.Background()
	if engine == "sqlite" {
		db := rt.AppDB().DB // the store's single write connection, same pragmas
		if _, err := db.ExecContext(ctx, sqliteRawTable); err != nil {
			b.Fatal(err)
		}
		const q = `INSERT INTO bench_raw (workflow_uuid, function_id, function_name, output, completed_at_epoch_ms, serialization, application_name)
VALUES (?, ?, ?, ?, ?, 'portable_json', 'bench')`
		return func(ctx context.Context, key string, n int) error {
			_, err := db.ExecContext(ctx, q, key, n, "raw", "42", time.Now().UnixMilli())
			return err
		}
	}
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	pc.MaxConns = 20 // as the runtime's default pool (Config.SystemPoolSize)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, pgRawTable); err != nil {
		b.Fatal(err)
	}
	const q = `INSERT INTO bench_raw (workflow_uuid, function_id, function_name, output, completed_at_epoch_ms, serialization, application_name)
VALUES ($1, $2, $3, $4, $5, 'portable_json', 'bench')`
	return func(ctx context.Context, key string, n int) error {
		_, err := pool.Exec(ctx, q, key, n, "raw", "42", time.Now().UnixMilli())
		return err
	}
}

func setBenchBody(b *testing.B, f body) input {
	bodies.Store(b.Name(), f)
	b.Cleanup(func() { bodies.Delete(b.Name()) })
	return input{Key: b.Name()}
}

var benchRun atomic.Int64 // keys stay fresh across the runs of one benchmark

// BenchmarkStep: one workflow runs b.N steps; in chunks between them, the
// body runs as many raw INSERTs, so both see the same database state.
func BenchmarkStep(b *testing.B) {
	for _, engine := range dbtest.Engines {
		b.Run(engine, func(b *testing.B) {
			url := dbtest.URL(b, engine)
			rt, ctx := launch(b, url)
			raw := newRawInserter(b, engine, url, rt)
			opts := &dbos.StepOptions{Name: "bench"}
			step := func(ctx context.Context) (int, error) { return 42, nil }
			var stepNs, rawNs time.Duration
			in := setBenchBody(b, func(ctx context.Context, in input) (string, error) {
				key := fmt.Sprint("raw-", benchRun.Add(1))
				const chunk = 100
				for done := 0; done < in.N; done += chunk {
					n := min(chunk, in.N-done)
					b.StopTimer()
					t0 := time.Now()
					for i := range n {
						if err := raw(ctx, key, done+i); err != nil {
							return "", err
						}
					}
					rawNs += time.Since(t0)
					b.StartTimer()
					t0 = time.Now()
					for range n {
						if _, err := dbos.RunStep(ctx, opts, step); err != nil {
							return "", err
						}
					}
					stepNs += time.Since(t0)
				}
				return "", nil
			})
			in.N = b.N
			// Warm both paths (connections, prepared statements).
			warm := in
			warm.N = 20
			must(testWF.Run(ctx, warm))
			stepNs, rawNs = 0, 0
			b.ResetTimer()
			if _, err := testWF.Run(ctx, in); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(rawNs.Nanoseconds())/float64(b.N), "raw-insert-ns/op")
			b.ReportMetric(float64(stepNs)/float64(rawNs), "x-raw-insert")
		})
	}
}

// BenchmarkThroughput1 and BenchmarkThroughput16: b.N one-step workflows
// run by 1 or 16 goroutines, next to b.N raw INSERTs by as many goroutines;
// halves of each alternate.
func BenchmarkThroughput1(b *testing.B)  { benchThroughput(b, 1) }
func BenchmarkThroughput16(b *testing.B) { benchThroughput(b, 16) }

func benchThroughput(b *testing.B, workers int) {
	for _, engine := range dbtest.Engines {
		b.Run(engine, func(b *testing.B) {
			url := dbtest.URL(b, engine)
			rt, ctx := launch(b, url)
			raw := newRawInserter(b, engine, url, rt)
			opts := &dbos.StepOptions{Name: "bench"}
			in := setBenchBody(b, func(ctx context.Context, in input) (string, error) {
				v, err := dbos.RunStep(ctx, opts, func(ctx context.Context) (int, error) { return 42, nil })
				return fmt.Sprint(v), err
			})
			run := func(n int, op func(i int) error) time.Duration {
				var next atomic.Int64
				var wg sync.WaitGroup
				errs := make(chan error, workers)
				t0 := time.Now()
				for range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := int(next.Add(1)) - 1
							if i >= n {
								return
							}
							if err := op(i); err != nil {
								errs <- err
								return
							}
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				return time.Since(t0)
			}
			key := fmt.Sprint("raw-", benchRun.Add(1))
			var seq atomic.Int64
			rawInsert := func(int) error { return raw(ctx, key, int(seq.Add(1))) }
			workflow := func(int) error {
				_, err := testWF.Run(ctx, in)
				return err
			}
			// Warm up.
			run(workers*4, rawInsert)
			run(workers*4, workflow)
			b.ResetTimer()
			var wfTime, rawTime time.Duration
			half := (b.N + 1) / 2
			for _, n := range []int{half, b.N - half} {
				b.StopTimer()
				rawTime += run(n, rawInsert)
				b.StartTimer()
				wfTime += run(n, workflow)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/wfTime.Seconds(), "workflows/s")
			b.ReportMetric(float64(b.N)/rawTime.Seconds(), "raw-inserts/s")
			ratio := float64(wfTime) / float64(rawTime)
			b.ReportMetric(ratio, "x-raw-insert")
			b.ReportMetric(ratio/3, "x-raw-per-stmt")
		})
	}
}

// BenchmarkSteps4 is the low end of sharing: four workflows in flight, whose
// checkpoints a batcher splitting them into cohorts would leave below the
// raw rate.
func BenchmarkSteps4(b *testing.B)  { benchSteps(b, 4) }
func BenchmarkSteps16(b *testing.B) { benchSteps(b, 16) }
func BenchmarkSteps64(b *testing.B) { benchSteps(b, 64) }

// benchSteps: inFlight workflows at once, each running steps until b.N steps
// ran in all, next to inFlight goroutines of raw INSERTs (on a pool of as
// many connections as the runtime's) in the same run, in alternating chunks.
// x-raw-insert below 1 means checkpoints beat single-row INSERTs: they share
// round trips; x-raw-insert-med is the median of the chunks' ratios.
func benchSteps(b *testing.B, inFlight int) {
	for _, engine := range dbtest.Engines {
		b.Run(engine, func(b *testing.B) {
			url := dbtest.URL(b, engine)
			rt, ctx := launch(b, url)
			raw := newRawInserter(b, engine, url, rt)
			opts := &dbos.StepOptions{Name: "bench"}
			var left atomic.Int64
			in := setBenchBody(b, func(ctx context.Context, in input) (string, error) {
				for left.Add(-1) >= 0 {
					if _, err := dbos.RunStep(ctx, opts, func(ctx context.Context) (int, error) { return 42, nil }); err != nil {
						return "", err
					}
				}
				return "", nil
			})
			parallel := func(f func() error) time.Duration {
				var wg sync.WaitGroup
				errs := make(chan error, inFlight)
				t0 := time.Now()
				for range inFlight {
					wg.Go(func() {
						if err := f(); err != nil {
							errs <- err
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				return time.Since(t0)
			}
			steps := func(n int) time.Duration {
				left.Store(int64(n))
				return parallel(func() error { _, err := testWF.Run(ctx, in); return err })
			}
			key := fmt.Sprint("raw-", benchRun.Add(1))
			var seq atomic.Int64
			inserts := func(n int) time.Duration {
				var done atomic.Int64
				return parallel(func() error {
					for done.Add(1) <= int64(n) {
						if err := raw(ctx, key, int(seq.Add(1))); err != nil {
							return err
						}
					}
					return nil
				})
			}
			steps(inFlight * 4) // warm up
			inserts(inFlight * 4)
			b.ResetTimer()
			// Chunks alternate, each long enough that a workflow's start and
			// finish weigh little next to its steps; the median of their
			// ratios is what a burst of load from elsewhere on a shared
			// machine moves least.
			chunk := max(inFlight*125, 2000)
			var stepTime, rawTime time.Duration
			var ratios []float64
			for done := 0; done < b.N; done += chunk {
				n := min(chunk, b.N-done)
				b.StopTimer()
				r := inserts(n)
				b.StartTimer()
				st := steps(n)
				rawTime, stepTime = rawTime+r, stepTime+st
				ratios = append(ratios, float64(st)/float64(r))
			}
			b.StopTimer()
			slices.Sort(ratios)
			b.ReportMetric(float64(b.N)/stepTime.Seconds(), "steps/s")
			b.ReportMetric(float64(b.N)/rawTime.Seconds(), "raw-inserts/s")
			b.ReportMetric(float64(stepTime)/float64(rawTime), "x-raw-insert")
			b.ReportMetric(ratios[len(ratios)/2], "x-raw-insert-med")
		})
	}
}
