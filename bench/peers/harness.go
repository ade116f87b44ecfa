package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// options are the harness's parameters (the command's flags).
type options struct {
	URL          string        // the server: fresh databases are created there
	Jobs         int           // jobs preloaded for the drain, and raw INSERTs of the baseline
	Workers      int           // workers draining (and running the latency jobs), and baseline goroutines
	Producers    int           // latency producers
	Rounds       int           // enqueue-then-wait rounds per latency producer
	Warmup       int           // unrecorded rounds per producer before the latency is measured
	DrainLimit   time.Duration // a drain stops being waited for after this
	LatencyLimit time.Duration // producers start no round after this
	Only         []string      // systems to run (lower case); empty: all
	Retries      int           // a failed case runs again, on fresh databases, up to this many times
	DBOSFastPoll time.Duration // the DBOS SDK's fastest setting: queue polling interval
	DBOSFastWait time.Duration // and the handle's GetResult polling interval
	Progress     io.Writer     // progress lines; nil: none
}

// peerCase is one system at one group of settings.
type peerCase struct {
	System   string // River, DBOS SDK, dbosgen
	Key      string // what -only matches: river, dbos, dbosgen
	Settings string // described in the table
	// CountDone counts finished jobs in the drain's database.
	CountDone string
	// CountCheckpoints counts the jobs' step checkpoints; "" when the system
	// does not checkpoint steps (River).
	CountCheckpoints string
	// StartDrain preloads o.Jobs jobs with no worker running, then starts
	// o.Workers workers and returns as they start: the drain is timed from
	// its return. stop shuts the workers down.
	StartDrain func(ctx context.Context, dbURL string, o *options, log logf) (stop func() error, err error)
	// StartLatency starts o.Workers workers and returns op: enqueue job n
	// and wait until it has completed.
	StartLatency func(ctx context.Context, dbURL string, o *options, log logf) (op func(ctx context.Context, n int) error, stop func() error, err error)
}

// result is what one case measured.
type result struct {
	System, Settings string

	RawRate float64         // rows/s of the raw INSERT baseline run just before the drain
	RawLat  []time.Duration // each baseline INSERT's latency, sorted

	Jobs      int           // preloaded
	Drained   int           // completed when the drain was last counted
	DrainTime time.Duration // from the workers' start to the last count
	// Checkpoints counted after the drain (-1: the system keeps none).
	Checkpoints int

	Lat       []time.Duration // enqueue-to-completion latencies, sorted
	LatWanted int             // rounds asked for

	Err     error
	Retried []error // the failures of earlier attempts at this case
}

// DrainRate is the drain's throughput in jobs/s.
func (r result) DrainRate() float64 {
	if r.DrainTime <= 0 {
		return 0
	}
	return float64(r.Drained) / r.DrainTime.Seconds()
}

// Complete reports whether every preloaded job drained and every latency
// round completed.
func (r result) Complete() bool {
	return r.Err == nil && r.Drained == r.Jobs && len(r.Lat) == r.LatWanted &&
		(r.Checkpoints < 0 || r.Checkpoints == r.Jobs)
}

type logf func(format string, args ...any)

// run runs every selected case, one after the other, each on fresh
// databases it creates and drops, and returns their results in order.
func run(ctx context.Context, o *options) ([]result, error) {
	admin, err := pgx.Connect(ctx, o.URL)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL at %s (set DBOSGEN_TEST_POSTGRES_URL): %w", redact(o.URL), err)
	}
	defer admin.Close(context.Background()) // only for the server's settings: createDB connects anew

	var version, fsync, syncCommit string
	if err := admin.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('fsync'), current_setting('synchronous_commit')`).Scan(&version, &fsync, &syncCommit); err == nil && o.Progress != nil {
		fmt.Fprintf(o.Progress, "PostgreSQL %s (fsync %s, synchronous_commit %s); %s\n", version, fsync, syncCommit, machine())
	}
	start := time.Now()
	var results []result
	for _, c := range cases(o) {
		setting := strings.TrimRight(strings.Fields(c.Settings)[0], ",")
		if len(o.Only) > 0 && !slices.Contains(o.Only, c.Key) && !slices.Contains(o.Only, c.Key+"/"+setting) {
			continue
		}
		name := c.System + " " + setting
		log := func(format string, args ...any) {
			if o.Progress != nil {
				fmt.Fprintf(o.Progress, "[%6.1fs] %s: %s\n", time.Since(start).Seconds(), name, fmt.Sprintf(format, args...))
			}
		}
		var (
			r       result
			retried []error
		)
		for attempt := 0; ; attempt++ {
			r = runCase(ctx, o, c, log)
			if r.Err == nil || attempt >= o.Retries || ctx.Err() != nil {
				break
			}
			log("FAILED: %v", r.Err)
			log("waiting for the server, then running this case again on fresh databases (%d of -retries %d)", attempt+1, o.Retries)
			waitForServer(ctx, o.URL)
			retried = append(retried, r.Err)
		}
		r.Retried = retried
		if r.Err != nil {
			log("FAILED: %v", r.Err)
		}
		results = append(results, r)
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
	}
	if len(results) == 0 {
		return nil, fmt.Errorf("-only %s matches no system (river, dbos, dbosgen, or one of them /defaults or /fastest)", strings.Join(o.Only, ","))
	}
	return results, nil
}

// waitForServer waits (up to a minute) until the server accepts a
// connection: a shared server may be restarted by other tests.
func waitForServer(ctx context.Context, serverURL string) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(time.Second)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := pgx.Connect(cctx, serverURL)
		if err == nil {
			err = conn.Ping(cctx)
			conn.Close(context.Background())
		}
		cancel()
		if err == nil {
			return
		}
	}
}

func runCase(ctx context.Context, o *options, c peerCase, log logf) result {
	r := result{System: c.System, Settings: c.Settings, Jobs: o.Jobs, Checkpoints: -1,
		LatWanted: o.Producers * o.Rounds}
	log("%s", machine())
	started, _ := serverStart(ctx, o.URL)
	r.Err = func() error {
		if err := drainPhase(ctx, o, c, log, &r); err != nil {
			return fmt.Errorf("drain: %w", err)
		}
		if err := latencyPhase(ctx, o, c, log, &r); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		// A restart stalls every system for a while: the figures would not
		// be its own.
		if now, err := serverStart(ctx, o.URL); err == nil && !now.Equal(started) {
			return fmt.Errorf("PostgreSQL restarted during the case (at %s)", now.UTC().Format("15:04:05"))
		}
		return nil
	}()
	return r
}

// serverStart is when the server at serverURL started.
func serverStart(ctx context.Context, serverURL string) (time.Time, error) {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close(context.Background())
	var t time.Time
	err = conn.QueryRow(ctx, `SELECT pg_postmaster_start_time()`).Scan(&t)
	return t, err
}

func drainPhase(ctx context.Context, o *options, c peerCase, log logf, r *result) (err error) {
	dbURL, drop, err := createDB(ctx, o.URL, c.Key+"_drain")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, drop()) }()
	mon, err := pool(ctx, dbURL, 2)
	if err != nil {
		return err
	}
	defer mon.Close()

	r.RawRate, r.RawLat, err = rawBaseline(ctx, dbURL, o.Jobs, o.Workers)
	if err != nil {
		return fmt.Errorf("raw INSERT baseline: %w", err)
	}
	log("raw baseline: %d single-row INSERTs by %d goroutines: %s rows/s", o.Jobs, o.Workers, num(r.RawRate))

	t0 := time.Now()
	stop, err := c.StartDrain(ctx, dbURL, o, log)
	if err != nil {
		return err
	}
	started := time.Now()
	log("%d jobs preloaded; %d workers started (%.1fs); draining", o.Jobs, o.Workers, started.Sub(t0).Seconds())
	deadline := started.Add(o.DrainLimit)
	nextLog := started.Add(time.Second)
	for {
		var n int
		if err := mon.QueryRow(ctx, c.CountDone).Scan(&n); err != nil {
			return errors.Join(fmt.Errorf("counting finished jobs: %w", err), stop())
		}
		now := time.Now()
		r.Drained, r.DrainTime = n, now.Sub(started)
		if n >= o.Jobs {
			break
		}
		if now.After(deadline) {
			log("drain limit %s reached: %d of %d jobs done", o.DrainLimit, n, o.Jobs)
			break
		}
		if now.After(nextLog) {
			log("%d/%d done after %.1fs", n, o.Jobs, now.Sub(started).Seconds())
			nextLog = now.Add(time.Second)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r.Drained >= o.Jobs {
		log("drained %d jobs in %.3fs: %s jobs/s (%.2f× raw)", r.Drained, r.DrainTime.Seconds(), num(r.DrainRate()), r.DrainRate()/r.RawRate)
	}
	if err := stop(); err != nil {
		return fmt.Errorf("stopping the workers: %w", err)
	}
	if c.CountCheckpoints != "" && r.Drained >= o.Jobs {
		if err := mon.QueryRow(ctx, c.CountCheckpoints).Scan(&r.Checkpoints); err != nil {
			return fmt.Errorf("counting checkpoints: %w", err)
		}
		if r.Checkpoints != o.Jobs {
			return fmt.Errorf("%d step checkpoints for %d drained jobs", r.Checkpoints, o.Jobs)
		}
	}
	return nil
}

func latencyPhase(ctx context.Context, o *options, c peerCase, log logf, r *result) (err error) {
	dbURL, drop, err := createDB(ctx, o.URL, c.Key+"_latency")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, drop()) }()
	op, stop, err := c.StartLatency(ctx, dbURL, o, log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stop()) }()
	log("latency: %d producers × %d rounds (after %d warm-up rounds each), limit %s", o.Producers, o.Rounds, o.Warmup, o.LatencyLimit)
	r.Lat, err = measureLatency(ctx, o, op, log)
	if err != nil {
		return err
	}
	if len(r.Lat) > 0 {
		log("%d/%d rounds: p50 %s, p99 %s", len(r.Lat), r.LatWanted, ms(pct(r.Lat, 0.50)), ms(pct(r.Lat, 0.99)))
	}
	return nil
}

// measureLatency runs o.Producers producers, each doing o.Warmup unrecorded
// rounds and then up to o.Rounds recorded ones; no round starts after
// o.LatencyLimit, and one still running 30s after that is abandoned.
func measureLatency(ctx context.Context, o *options, op func(context.Context, int) error, log logf) ([]time.Duration, error) {
	limit := time.Now().Add(o.LatencyLimit)
	ctx, cancel := context.WithDeadline(ctx, limit.Add(30*time.Second))
	defer cancel()
	var (
		mu       sync.Mutex
		lat      []time.Duration
		firstErr error
		seq      atomic.Int64
		wg       sync.WaitGroup
	)
	for range o.Producers {
		wg.Go(func() {
			for i := range o.Warmup + o.Rounds {
				if time.Now().After(limit) || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				err := op(ctx, int(seq.Add(1)))
				d := time.Since(t0)
				mu.Lock()
				switch {
				case err != nil && (ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded)):
					// Abandoned at the hard deadline: not counted.
				case err != nil:
					if firstErr == nil {
						firstErr = err
						cancel()
					}
				case i >= o.Warmup:
					lat = append(lat, d)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-tick.C:
			mu.Lock()
			n := len(lat)
			mu.Unlock()
			log("latency: %d/%d rounds recorded", n, o.Producers*o.Rounds)
		}
	}
	if time.Now().After(limit) && len(lat) < o.Producers*o.Rounds {
		log("latency limit %s reached: %d of %d rounds recorded", o.LatencyLimit, len(lat), o.Producers*o.Rounds)
	}
	slices.Sort(lat)
	return lat, firstErr
}

// rawBaseline inserts n rows, one statement each, from workers goroutines
// sharing a pgx pool of that many connections: the floor the queues'
// throughput is compared to.
func rawBaseline(ctx context.Context, dbURL string, n, workers int) (float64, []time.Duration, error) {
	p, err := pool(ctx, dbURL, workers)
	if err != nil {
		return 0, nil, err
	}
	defer p.Close()
	if _, err := p.Exec(ctx, `CREATE TABLE peers_raw (
		id BIGSERIAL PRIMARY KEY, n INTEGER NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		return 0, nil, err
	}
	// Open every connection before the clock starts.
	var warm sync.WaitGroup
	for range workers {
		warm.Go(func() { _, _ = p.Exec(ctx, `SELECT 1`) })
	}
	warm.Wait()

	var (
		seq      atomic.Int64
		mu       sync.Mutex
		lat      = make([]time.Duration, 0, n)
		firstErr error
		wg       sync.WaitGroup
	)
	t0 := time.Now()
	for range workers {
		wg.Go(func() {
			for i := seq.Add(1); i <= int64(n); i = seq.Add(1) {
				s := time.Now()
				_, err := p.Exec(ctx, `INSERT INTO peers_raw (n) VALUES ($1)`, i)
				d := time.Since(s)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				lat = append(lat, d)
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	slices.Sort(lat)
	return float64(n) / elapsed.Seconds(), lat, firstErr
}

// machine describes the cores and load average (Linux) for the record: the
// figures depend on what else runs.
func machine() string {
	s := fmt.Sprintf("%d cores", runtime.NumCPU())
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			s += fmt.Sprintf(", load average %s %s %s", f[0], f[1], f[2])
		}
	}
	return s
}

var dbSeq atomic.Int64

// createDB creates a fresh database on the server at serverURL and returns
// its URL and a function dropping it. Each connects anew: a connection held
// across a whole run is one more for other tests on a shared server to
// terminate.
func createDB(ctx context.Context, serverURL, what string) (string, func() error, error) {
	name := fmt.Sprintf("peers_%d_%d_%s", os.Getpid(), dbSeq.Add(1), what)
	admin := func(ctx context.Context, sql string) error {
		conn, err := pgx.Connect(ctx, serverURL)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := admin(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("creating database %s: %w", name, err)
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	// Dropping is retried for a minute, through a server restart.
	drop := func() error {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for {
			err := admin(dctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			if err == nil {
				return nil
			}
			select {
			case <-dctx.Done():
				return fmt.Errorf("dropping database %s: %w", name, err)
			case <-time.After(time.Second):
			}
		}
	}
	return u.String(), drop, nil
}

// withParam returns dbURL with query parameter key set to value.
func withParam(dbURL, key, value string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return dbURL
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// pool opens a pgx pool of at most size connections on dbURL.
func pool(ctx context.Context, dbURL string, size int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(size)
	return pgxpool.NewWithConfig(ctx, cfg)
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}

// pct is the p-quantile of sorted durations.
func pct(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	return l[min(len(l)-1, int(float64(len(l))*p))]
}

// ms formats a duration in milliseconds with three significant-ish digits.
func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f ms", f)
	case f >= 10:
		return fmt.Sprintf("%.1f ms", f)
	default:
		return fmt.Sprintf("%.2f ms", f)
	}
}

// num formats a rate with thousands separators and no decimals.
func num(f float64) string {
	s := fmt.Sprintf("%.0f", f)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
