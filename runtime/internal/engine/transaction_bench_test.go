package engine_test

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
	"github.com/jmoiron/sqlx"
)

var txBenchRun atomic.Int64 // keys stay fresh across the runs of one benchmark

// BenchmarkTransaction: one workflow runs b.N transaction steps, each
// inserting one row; in chunks between them the body runs as many raw sqlx
// transactions (same isolation, same insert, same application database
// handle), so both see the same database state. x-raw-tx is the transaction
// step's cost over the raw transaction's (target: within 1.1); x-raw-tx-med
// is the median of that ratio over the chunks, which a burst of load from
// elsewhere on the machine moves less. raw-tx-allocs/op is what the raw
// transaction allocates (counted outside the timer, so not in allocs/op):
// the floor under the step's allocs/op, which dbosgen's own come on top of.
// Run with
//
//	go test -run '^$' -bench Transaction -benchtime 2000x -count 3 ./runtime/internal/engine/
func BenchmarkTransaction(b *testing.B) {
	for _, engine := range dbtest.Engines {
		b.Run(engine, func(b *testing.B) {
			url := dbtest.URL(b, engine)
			rt, ctx := launch(b, url)
			db := rt.AppDB()
			if _, err := db.Exec(`CREATE TABLE bench_tx (k TEXT NOT NULL, n INTEGER NOT NULL, note TEXT NOT NULL)`); err != nil {
				b.Fatal(err)
			}
			insert := db.Rebind(`INSERT INTO bench_tx (k, n, note) VALUES (?, ?, ?)`)
			txOpts := &sql.TxOptions{Isolation: sql.LevelSerializable}
			if engine == "sqlite" {
				txOpts = nil // as the runtime: SQLite is serializable
			}
			raw := func(ctx context.Context, key string, n int) error {
				tx, err := db.BeginTxx(ctx, txOpts)
				if err != nil {
					return err
				}
				defer tx.Rollback()
				if _, err := tx.ExecContext(ctx, insert, key, n, "hello"); err != nil {
					return err
				}
				return tx.Commit()
			}
			opts := &dbos.TransactionOptions{Name: "bench_insert"}
			step := func(ctx context.Context, key string, n int) error {
				_, err := dbos.RunTransaction(ctx, opts, func(ctx context.Context, tx *sqlx.Tx) (int, error) {
					_, err := tx.ExecContext(ctx, insert, key, n, "hello")
					return n, err
				})
				return err
			}
			var txNs, rawNs time.Duration
			var rawAllocs uint64
			var ms runtime.MemStats
			var chunkRatios []float64 // per chunk: robust to the bursts of a shared machine
			in := setBenchBody(b, func(ctx context.Context, in input) (string, error) {
				run := txBenchRun.Add(1)
				rawKey, txKey := fmt.Sprint("raw-", run), fmt.Sprint("tx-", run)
				const chunk = 50
				for done := 0; done < in.N; done += chunk {
					n := min(chunk, in.N-done)
					b.StopTimer()
					runtime.ReadMemStats(&ms)
					mallocs := ms.Mallocs
					t0 := time.Now()
					for i := range n {
						if err := raw(ctx, rawKey, done+i); err != nil {
							return "", err
						}
					}
					rawChunk := time.Since(t0)
					runtime.ReadMemStats(&ms)
					rawAllocs += ms.Mallocs - mallocs
					rawNs += rawChunk
					b.StartTimer()
					t0 = time.Now()
					for i := range n {
						if err := step(ctx, txKey, done+i); err != nil {
							return "", err
						}
					}
					txChunk := time.Since(t0)
					txNs += txChunk
					chunkRatios = append(chunkRatios, float64(txChunk)/float64(rawChunk))
				}
				return "", nil
			})
			warm := in
			warm.N = 20 // connections, prepared statements
			must(testWF.Run(ctx, warm))
			txNs, rawNs, rawAllocs, chunkRatios = 0, 0, 0, nil
			in.N = b.N
			b.ResetTimer()
			if _, err := testWF.Run(ctx, in); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(rawNs.Nanoseconds())/float64(b.N), "raw-tx-ns/op")
			b.ReportMetric(float64(rawAllocs)/float64(b.N), "raw-tx-allocs/op")
			b.ReportMetric(float64(txNs)/float64(rawNs), "x-raw-tx")
			slices.Sort(chunkRatios)
			b.ReportMetric(chunkRatios[len(chunkRatios)/2], "x-raw-tx-med")
		})
	}
}
