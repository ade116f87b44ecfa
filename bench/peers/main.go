// Command peers is a side-by-side queue benchmark: dbosgen next to River
// and the DBOS Go SDK, on one PostgreSQL server, in one run.
//
// For each system and settings it creates fresh databases (and drops them):
//
//  1. a raw baseline: single-row INSERTs by -workers goroutines on a pgx
//     pool, the floor everything is compared to (rows/s);
//  2. a drain: -jobs jobs preloaded with no worker running (each does one
//     trivial step, checkpointed for dbosgen and DBOS), then -workers
//     workers start and the harness times until every job is complete;
//  3. latency: -producers producers each enqueue a job and wait for its
//     completion, round after round; median and 99th percentile.
//
// River and the DBOS SDK run at their defaults and at their fastest polling
// settings; dbosgen has no polling to tune and runs at its defaults.
//
//	cd bench/peers && go run .          # or make bench-peers at the root
//	go run . -quick                     # a smoke run with small sizes
//	go run . -only dbosgen -jobs 10000
//
// PostgreSQL: $DBOSGEN_TEST_POSTGRES_URL, default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable; the user
// must be allowed to create databases.
//
// It is a module of its own (bench/peers/go.mod) so the main module depends
// on neither River nor DBOS.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

const defaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// cases are every system's settings, in the order they run and print.
func cases(o *options) []peerCase {
	var all []peerCase
	all = append(all, riverCases(o)...)
	all = append(all, dbosCases(o)...)
	all = append(all, dbosgenCases(o)...)
	return all
}

func (o *options) logOutput() io.Writer {
	if o.Progress == nil {
		return io.Discard
	}
	return o.Progress
}

// quick shrinks o to a smoke run's sizes.
func (o *options) quick() {
	o.Jobs = min(o.Jobs, 48)
	o.Producers = min(o.Producers, 4)
	o.Rounds = min(o.Rounds, 3)
	o.Warmup = min(o.Warmup, 1)
}

func main() {
	o := &options{Progress: os.Stderr}
	flag.IntVar(&o.Jobs, "jobs", 3000, "jobs preloaded for the drain (and raw INSERTs of the baseline)")
	flag.IntVar(&o.Workers, "workers", 16, "workers draining the queue and running the latency jobs (and baseline goroutines)")
	flag.IntVar(&o.Producers, "producers", 16, "latency producers, each enqueuing a job and waiting for it, round after round")
	flag.IntVar(&o.Rounds, "rounds", 200, "latency rounds per producer")
	flag.IntVar(&o.Warmup, "warmup", 2, "unrecorded latency rounds per producer first")
	flag.DurationVar(&o.DrainLimit, "drain-limit", 30*time.Second, "stop waiting for a drain after this; its rate is over the jobs done by then")
	flag.DurationVar(&o.LatencyLimit, "latency-limit", 20*time.Second, "no latency round starts after this")
	flag.DurationVar(&o.DBOSFastPoll, "dbos-poll", time.Millisecond, "the DBOS SDK's fastest settings: its queue polling interval")
	flag.DurationVar(&o.DBOSFastWait, "dbos-result-poll", 5*time.Millisecond, "the DBOS SDK's fastest settings: its handles' GetResult polling interval\n(1ms makes 16 waiting producers 16,000 queries/s, slower on 2 cores)")
	flag.IntVar(&o.Retries, "retries", 2, "run a failed case again, on fresh databases, up to this many times (a shared server may restart)")
	only := flag.String("only", "", "run only these systems, comma-separated: river, dbos, dbosgen; river/fastest, dbos/defaults, ... for one setting")
	quick := flag.Bool("quick", false, "small sizes, for a smoke run")
	cpuprofile := flag.String("cpuprofile", "", "write the harness process's CPU profile (all systems' clients and workers) to this file")
	flag.Parse()
	o.URL = cmpOr(os.Getenv("DBOSGEN_TEST_POSTGRES_URL"), defaultURL)
	if *only != "" {
		for s := range strings.SplitSeq(strings.ToLower(*only), ",") {
			o.Only = append(o.Only, strings.TrimSpace(s))
		}
	}
	if *quick {
		o.quick()
	}
	if o.Jobs < 1 || o.Workers < 1 || o.Producers < 1 || o.Rounds < 1 || o.Warmup < 0 {
		fmt.Fprintln(os.Stderr, "peers: -jobs, -workers, -producers and -rounds must be at least 1")
		os.Exit(2)
	}

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "peers:", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fmt.Fprintf(os.Stderr, "peers: PostgreSQL at %s; %d jobs, %d workers, %d producers × %d rounds\n",
		redact(o.URL), o.Jobs, o.Workers, o.Producers, o.Rounds)
	results, err := run(ctx, o)
	if len(results) > 0 {
		fmt.Println()
		printTable(os.Stdout, o, results)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		exit(1)
	}
	for _, r := range results {
		if r.Err != nil {
			exit(1)
		}
	}
}

// exit stops the CPU profile (deferred calls do not run on os.Exit).
func exit(code int) {
	pprof.StopCPUProfile()
	os.Exit(code)
}

// printTable prints one row per case, after a row for the raw INSERT
// baseline (the median of the cases' baselines).
func printTable(w io.Writer, o *options, results []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "system\tsettings\tdrain jobs/s\t× raw\tdrained\tlatency p50\tp99\trounds\t")
	var rates []float64
	var rawLat []time.Duration
	for _, r := range results {
		if r.RawRate > 0 {
			rates = append(rates, r.RawRate)
			rawLat = append(rawLat, r.RawLat...)
		}
	}
	if len(rates) > 0 {
		slices.Sort(rates)
		slices.Sort(rawLat)
		fmt.Fprintf(tw, "pgx\traw INSERT, %d goroutines (median of %d runs)\t%s\t1.00\t\t%s\t%s\t(per INSERT)\t\n",
			o.Workers, len(rates), num(rates[len(rates)/2]), ms(pct(rawLat, 0.5)), ms(pct(rawLat, 0.99)))
	}
	for _, r := range results {
		rate, ratio := "-", "-"
		if r.DrainTime > 0 && r.RawRate > 0 {
			rate = num(r.DrainRate())
			ratio = fmt.Sprintf("%.2f", r.DrainRate()/r.RawRate)
		}
		drained := fmt.Sprintf("%d/%d", r.Drained, r.Jobs)
		if r.Drained < r.Jobs && r.DrainTime > 0 {
			drained += fmt.Sprintf(" in %.0fs", r.DrainTime.Seconds())
		}
		p50, p99 := "-", "-"
		if len(r.Lat) > 0 {
			p50, p99 = ms(pct(r.Lat, 0.5)), ms(pct(r.Lat, 0.99))
		}
		rounds := fmt.Sprintf("%d/%d", len(r.Lat), r.LatWanted)
		if r.Err != nil {
			rounds += " FAILED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.System, r.Settings, rate, ratio, drained, p50, p99, rounds)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nAt the end: %s.\n× raw: drain jobs/s ÷ raw INSERT rows/s measured on the same database just before. Drain: from the workers' start\n"+
		"to the last job complete (jobs preloaded before). Latency: enqueue to completion (River: its completion event;\n"+
		"DBOS, dbosgen: the handle's result), %d producers, no round starts after %s.\n", machine(), o.Producers, o.LatencyLimit)
	for _, r := range results {
		for _, err := range r.Retried {
			fmt.Fprintf(w, "run again: %s %s, after: %v\n", r.System, r.Settings, err)
		}
		if r.Err != nil {
			fmt.Fprintf(w, "FAILED %s %s: %v\n", r.System, r.Settings, r.Err)
		}
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
