package engine_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	dbos "github.com/dbosgen/dbosgen/runtime/internal/engine"
	"github.com/jackc/pgx/v5/pgxpool"
)

// BenchmarkSendRecv: send-to-recv latency between two workflows playing
// ping-pong (one message in flight), median and p99, next to a raw INSERT +
// NOTIFY ping-pong between two goroutines on LISTEN connections of their
// own, in the same run on the same database. PostgreSQL only: the baseline
// is LISTEN/NOTIFY.
func BenchmarkSendRecv(b *testing.B) { b.Run("postgres", benchSendRecv) }

func benchSendRecv(b *testing.B) {
	url := dbtest.URL(b, "postgres")
	_, ctx := launch(b, url)
	n := b.N
	run := fmt.Sprint("sr-", benchRun.Add(1))
	var lat []time.Duration
	set := func(role string, f body) input {
		key := b.Name() + "/" + role
		bodies.Store(key, f)
		b.Cleanup(func() { bodies.Delete(key) })
		return input{Key: key}
	}
	pongIn := set("pong", func(ctx context.Context, in input) (string, error) {
		for range n {
			sent, ok, err := dbos.Recv[int64](ctx, "ping", time.Minute)
			if err != nil || !ok {
				return "", fmt.Errorf("pong: recv ok=%v: %w", ok, err)
			}
			lat = append(lat, time.Since(time.Unix(0, sent)))
			if err := dbos.Send(ctx, run+"-ping", "pong", 0); err != nil {
				return "", err
			}
		}
		return "", nil
	})
	pingIn := set("ping", func(ctx context.Context, in input) (string, error) {
		for range n {
			if err := dbos.Send(ctx, run+"-pong", "ping", time.Now().UnixNano()); err != nil {
				return "", err
			}
			if _, ok, err := dbos.Recv[int](ctx, "pong", time.Minute); err != nil || !ok {
				return "", fmt.Errorf("ping: recv ok=%v: %w", ok, err)
			}
		}
		return "", nil
	})
	raw := rawPingPong(b, url, n)
	b.ResetTimer()
	hPong := must(testWF.Start(dbos.WithWorkflowID(ctx, run+"-pong"), pongIn))
	hPing := must(testWF.Start(dbos.WithWorkflowID(ctx, run+"-ping"), pingIn))
	if _, err := hPing.Result(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := hPong.Result(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	p50, p99 := percentiles(lat)
	r50, r99 := percentiles(raw)
	b.ReportMetric(float64(p50.Microseconds()), "p50-us")
	b.ReportMetric(float64(p99.Microseconds()), "p99-us")
	b.ReportMetric(float64(r50.Microseconds()), "raw-notify-p50-us")
	b.ReportMetric(float64(r99.Microseconds()), "raw-notify-p99-us")
	b.ReportMetric(float64(p50)/float64(r50), "x-raw-notify-p50")
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}

const rawMsgTable = `CREATE TABLE IF NOT EXISTS bench_msg (id BIGSERIAL PRIMARY KEY, dest TEXT NOT NULL, message TEXT NOT NULL)`

// rawPingPong measures n one-way latencies of an INSERT + NOTIFY (one
// statement) until the receiver's WaitForNotification returns, ping-pong
// between two goroutines as the workflows do.
func rawPingPong(b *testing.B, url string, n int) []time.Duration {
	b.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, rawMsgTable); err != nil {
		b.Fatal(err)
	}
	listen := func(channel string) *pgxpool.Conn {
		c, err := pool.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Exec(ctx, "LISTEN "+channel); err != nil {
			b.Fatal(err)
		}
		return c
	}
	pingConn, pongConn := listen("bench_ping"), listen("bench_pong")
	defer pingConn.Release()
	defer pongConn.Release()
	const send = `WITH i AS (INSERT INTO bench_msg (dest, message) VALUES ($1, $2) RETURNING id)
SELECT pg_notify($1, $2) FROM i`
	var lat []time.Duration
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(1)
	go func() { // pong
		defer wg.Done()
		for range n {
			note, err := pingConn.Conn().WaitForNotification(ctx)
			if err != nil {
				errs <- err
				return
			}
			var sent int64
			fmt.Sscan(note.Payload, &sent)
			lat = append(lat, time.Since(time.Unix(0, sent)))
			if _, err := pool.Exec(ctx, send, "bench_pong", "0"); err != nil {
				errs <- err
				return
			}
		}
	}()
	for range n {
		if _, err := pool.Exec(ctx, send, "bench_ping", fmt.Sprint(time.Now().UnixNano())); err != nil {
			b.Fatal(err)
		}
		if _, err := pongConn.Conn().WaitForNotification(ctx); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return lat
}

// BenchmarkSetEvent: events/s of workflows calling SetEvent, next to raw
// INSERT ... ON CONFLICT UPDATE + NOTIFY statements/s, halves of each
// alternating in the same run, after a warm-up of both.
func BenchmarkSetEvent(b *testing.B) { b.Run("postgres", benchSetEvent) }

func benchSetEvent(b *testing.B) {
	url := dbtest.URL(b, "postgres")
	_, ctx := launch(b, url)
	in := setBenchBody(b, func(ctx context.Context, in input) (string, error) {
		for i := range in.N {
			if err := dbos.SetEvent(ctx, "k", i); err != nil {
				return "", err
			}
		}
		return "", nil
	})
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_event (k TEXT PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	raw := func(n int) time.Duration {
		t0 := time.Now()
		for i := range n {
			if _, err := pool.Exec(ctx, `WITH u AS (INSERT INTO bench_event VALUES ('k', $1) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v RETURNING k)
SELECT pg_notify('bench_event', k) FROM u`, fmt.Sprint(i)); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0)
	}
	events := func(n int) time.Duration {
		in := in
		in.N = n
		t0 := time.Now()
		if _, err := testWF.Run(dbos.WithWorkflowID(ctx, fmt.Sprint("ev-", benchRun.Add(1))), in); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	raw(20)
	events(20)
	b.ResetTimer()
	var wfTime, rawTime time.Duration
	half := (b.N + 1) / 2
	for _, n := range []int{half, b.N - half} {
		b.StopTimer()
		rawTime += raw(n)
		b.StartTimer()
		wfTime += events(n)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/wfTime.Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/rawTime.Seconds(), "raw-notify/s")
	b.ReportMetric(float64(wfTime)/float64(rawTime), "x-raw-notify")
}
