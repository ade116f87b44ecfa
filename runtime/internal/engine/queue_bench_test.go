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
)

// Queue drain: 3,000 queued one-step workflows, preloaded, drained by one
// executor with dbosgen's default settings, next to 3,000 raw INSERTs by 16
// goroutines in the same run on the same database. Unlimited is a queue
// without limits; Worker16 bounds the executor to 16 at once (River's
// anchor: 16 workers). The drain is timed from the consumer's Launch
// returning to the last SUCCESS row.
var (
	qBenchUnlimited = dbos.NewQueue("bench-drain", dbos.QueueOptions{})
	qBenchWorker16  = dbos.NewQueue("bench-drain-16", dbos.QueueOptions{WorkerConcurrency: 16})
)

const drainJobs = 3000

func BenchmarkQueueDrain(b *testing.B) {
	for _, engine := range dbtest.Engines {
		for _, q := range []*dbos.Queue{qBenchUnlimited, qBenchWorker16} {
			name := "Unlimited"
			if q == qBenchWorker16 {
				name = "Worker16"
			}
			b.Run(engine+"/"+name, func(b *testing.B) { benchDrain(b, engine, q) })
		}
	}
}

func benchDrain(b *testing.B, engine string, q *dbos.Queue) {
	url := dbtest.URL(b, engine)
	// The producer serves none of the bench queues.
	prt, pctx := launch(b, url, withExecutor("producer"), func(c *dbos.Config) { c.ListenQueues = []string{qBasic.Name()} })
	raw := newRawInserter(b, engine, url, prt)
	opts := &dbos.StepOptions{Name: "bench"}
	in := setBenchBody(b, func(ctx context.Context, in input) (string, error) {
		v, err := dbos.RunStep(ctx, opts, func(ctx context.Context) (int, error) { return 42, nil })
		return fmt.Sprint(v), err
	})
	countDone := `SELECT count(*) FROM workflow_status WHERE status = 'SUCCESS' AND queue_name = ?`
	if engine == "postgres" {
		countDone = `SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS' AND queue_name = $1`
	}
	var drainTime, rawTime time.Duration
	done := 0
	for i := range b.N {
		b.StopTimer()
		// The baseline: as many raw INSERTs by 16 goroutines.
		key := fmt.Sprint("raw-", benchRun.Add(1))
		var seq atomic.Int64
		var wg sync.WaitGroup
		t0 := time.Now()
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := seq.Add(1); n <= drainJobs; n = seq.Add(1) {
					if err := raw(pctx, key, int(n)); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		rawTime += time.Since(t0)
		for j := range drainJobs {
			in.N = j
			must(testWF.Enqueue(pctx, q, in))
		}
		// The consumer's runner starts as Launch returns: the drain is timed
		// from there.
		consumer, _ := launch(b, url, withExecutor(fmt.Sprint("consumer-", i)), func(c *dbos.Config) { c.ListenQueues = []string{q.Name()} })
		b.StartTimer()
		t0 = time.Now()
		for {
			var n int
			if err := prt.AppDB().Get(&n, countDone, q.Name()); err != nil {
				b.Fatal(err)
			}
			if n == done+drainJobs {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		drainTime += time.Since(t0)
		done += drainJobs
		// Each consumer holds a pool of its own: shut down now, not at the
		// benchmark's end, so that b.N consumers never add up past the
		// server's max_connections.
		b.StopTimer()
		shutdown(b, consumer)
	}
	b.StopTimer()
	b.ReportMetric(float64(done)/drainTime.Seconds(), "workflows/s")
	b.ReportMetric(float64(done)/rawTime.Seconds(), "raw-inserts/s")
	b.ReportMetric(float64(drainTime)/float64(rawTime), "x-raw-insert")
}

var latencyProducers = 16

var qBenchLatency = dbos.NewQueue("bench-latency", dbos.QueueOptions{})

// BenchmarkQueueLatency16: 16 producers each enqueue a one-step workflow
// and wait for its result, again and again, on one runtime that serves the
// queue; the median and 99th percentile of enqueue-to-result, next to a
// raw INSERT's median latency under the same 16-way load.
func BenchmarkQueueLatency16(b *testing.B) {
	for _, engine := range dbtest.Engines {
		b.Run(engine, func(b *testing.B) {
			url := dbtest.URL(b, engine)
			rt, ctx := launch(b, url, func(c *dbos.Config) { c.ListenQueues = []string{qBenchLatency.Name()} })
			raw := newRawInserter(b, engine, url, rt)
			opts := &dbos.StepOptions{Name: "bench"}
			in := setBenchBody(b, func(ctx context.Context, in input) (string, error) {
				v, err := dbos.RunStep(ctx, opts, func(ctx context.Context) (int, error) { return 42, nil })
				return fmt.Sprint(v), err
			})
			measure := func(n int, op func() error) []time.Duration {
				var mu sync.Mutex
				var lat []time.Duration
				var next atomic.Int64
				var wg sync.WaitGroup
				for range latencyProducers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(n) {
							t0 := time.Now()
							if err := op(); err != nil {
								b.Error(err)
								return
							}
							d := time.Since(t0)
							mu.Lock()
							lat = append(lat, d)
							mu.Unlock()
						}
					}()
				}
				wg.Wait()
				slices.Sort(lat)
				return lat
			}
			key := fmt.Sprint("raw-", benchRun.Add(1))
			var seq atomic.Int64
			rawOp := func() error { return raw(ctx, key, int(seq.Add(1))) }
			wfOp := func() error {
				h, err := testWF.Enqueue(ctx, qBenchLatency, in)
				if err == nil {
					_, err = h.Result(ctx)
				}
				return err
			}
			measure(64, wfOp) // warm up
			b.ResetTimer()
			lat := measure(b.N, wfOp)
			b.StopTimer()
			rawLat := measure(b.N, rawOp)
			if len(lat) == 0 || len(rawLat) == 0 {
				return
			}
			pct := func(l []time.Duration, p float64) float64 {
				return float64(l[min(len(l)-1, int(float64(len(l))*p))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(lat, 0.5), "p50-ms")
			b.ReportMetric(pct(lat, 0.99), "p99-ms")
			b.ReportMetric(pct(rawLat, 0.5), "raw-insert-p50-ms")
		})
	}
}
