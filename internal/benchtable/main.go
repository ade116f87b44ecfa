// Command benchtable turns `go test -bench` output (on stdin) into the table
// make bench prints: each dbosgen figure next to the raw pgx / database/sql
// baseline measured in the same run, and their ratio.
//
// It reads the metrics the runtime's benchmarks report: ns/op; a baseline
// whose unit starts with "raw-" (raw-insert-ns/op, raw-inserts/s, ...); a
// ratio whose unit starts with "x-" (x-raw-insert, ...); a throughput whose
// unit ends in "/s". Several lines for one benchmark (-count) are averaged.
// Lines that are not benchmark results are ignored.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

type result struct {
	name, engine string
	runs         int
	metrics      map[string]float64 // unit -> sum over runs
	units        []string           // in first-seen order
}

var procSuffix = regexp.MustCompile(`-\d+$`)

func main() {
	results, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	if len(results) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: no benchmark results on stdin")
		os.Exit(1)
	}
	write(os.Stdout, results)
}

func parse(r io.Reader) ([]*result, error) {
	byKey := map[string]*result{}
	var order []*result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		full := procSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
		res, ok := byKey[full]
		if !ok {
			res = &result{metrics: map[string]float64{}}
			parts := strings.Split(full, "/")
			for _, p := range parts {
				if p == "postgres" || p == "sqlite" {
					res.engine = p
				} else if res.name == "" {
					res.name = p
				} else {
					res.name += "/" + p
				}
			}
			byKey[full] = res
			order = append(order, res)
		}
		res.runs++
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			unit := f[i+1]
			if _, seen := res.metrics[unit]; !seen {
				res.units = append(res.units, unit)
			}
			res.metrics[unit] += v
		}
	}
	for _, r := range order {
		for u := range r.metrics {
			r.metrics[u] /= float64(r.runs)
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		if order[i].name != order[j].name {
			return rank(order[i].name) < rank(order[j].name)
		}
		return order[i].engine < order[j].engine
	})
	return order, sc.Err()
}

// Known benchmarks, in the order the table shows them, with a reader's name.
var known = []struct{ name, label string }{
	{"Step", "step (one checkpoint)"},
	{"Throughput1", "workflows, 1 at a time"},
	{"Throughput16", "workflows, 16 concurrent"},
	{"Transaction", "transaction (insert + checkpoint)"},
	{"Steps4", "steps, 4 workflows in flight"},
	{"Steps16", "steps, 16 workflows in flight"},
	{"Steps64", "steps, 64 workflows in flight"},
	{"QueueDrain/Unlimited", "queue drain, 3,000 one-step workflows"},
	{"QueueDrain/Worker16", "queue drain, 3,000, worker concurrency 16"},
	{"QueueLatency16", "enqueue to result, 16 producers (p50)"},
	{"SendRecv", "send → recv latency, two workflows"},
	{"SetEvent", "SetEvent (one workflow; baseline: upsert + NOTIFY)"},
}

func rank(name string) int {
	for i, k := range known {
		if k.name == name {
			return i
		}
	}
	return len(known)
}

func label(name string) string {
	for _, k := range known {
		if k.name == name {
			return k.label
		}
	}
	return name
}

func write(w io.Writer, results []*result) {
	// A Markdown table, aligned for the terminal too.
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| benchmark\t| engine\t| dbosgen\t| raw baseline\t| ratio\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|")
	for _, r := range results {
		ours, base, ratio := "", "", ""
		var extra, lat, baseLat []string
		for _, u := range r.units {
			v := r.metrics[u]
			switch {
			case strings.HasSuffix(u, "-us"): // latency percentiles: p50-us, raw-notify-p99-us
				name := u[strings.LastIndex(strings.TrimSuffix(u, "-us"), "-")+1 : len(u)-3]
				if strings.HasPrefix(u, "raw-") {
					baseLat = append(baseLat, fmt.Sprintf("%s %.0f µs", name, v))
				} else {
					lat = append(lat, fmt.Sprintf("%s %.0f µs", name, v))
				}
			case strings.HasPrefix(u, "raw-") && strings.HasSuffix(u, "allocs/op"):
				// The baseline's own allocations: beside the ratio, not the
				// baseline's time.
				extra = append(extra, fmt.Sprintf("raw %.0f allocs/op", v))
			case strings.HasPrefix(u, "raw-"):
				if base == "" {
					base = format(v, u)
				}
			case strings.HasPrefix(u, "x-"):
				s := fmt.Sprintf("%.2f×", v)
				if ratio == "" {
					ratio = s
				} else {
					extra = append(extra, strings.TrimPrefix(u, "x-")+" "+s)
				}
			case strings.HasSuffix(u, "/s"):
				ours = format(v, u) // throughput beats ns/op
			case u == "p50-ms":
				ours = format(v, u) // a latency's median beats ns/op
			case strings.HasSuffix(u, "-ms"):
				extra = append(extra, format(v, u))
			case u == "ns/op" && ours == "":
				ours = format(v, u)
			}
		}
		if len(extra) > 0 && ratio == "" {
			ratio = strings.Join(extra, ", ")
		} else if len(extra) > 0 {
			ratio += " (" + strings.Join(extra, ", ") + ")"
		}
		if len(lat) > 0 {
			ours = strings.Join(lat, ", ")
		}
		if len(baseLat) > 0 {
			base = strings.Join(baseLat, ", ") + " (INSERT + NOTIFY)"
		}
		engine := r.engine
		if engine == "" {
			engine = "-"
		}
		fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t| %s\t|\n", label(r.name), engine, ours, base, ratio)
	}
	tw.Flush()
	fmt.Fprintln(w, "ratio: dbosgen's cost over the baseline's (time per operation, or the inverse ratio of throughputs); 1.00× is free.")
}

// format prints a metric readably: durations in µs or ms, rates as /s.
func format(v float64, unit string) string {
	switch {
	case strings.HasSuffix(unit, "ns/op"):
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2f ms/op", v/1e6)
		case v >= 1e3:
			return fmt.Sprintf("%.1f µs/op", v/1e3)
		}
		return fmt.Sprintf("%.0f ns/op", v)
	case strings.HasSuffix(unit, "/s"):
		u := strings.TrimPrefix(unit, "raw-")
		return fmt.Sprintf("%.0f %s", v, u)
	case strings.HasSuffix(unit, "-ms"):
		// p50-ms, raw-insert-p50-ms: a percentile of a latency.
		return fmt.Sprintf("%.2f ms %s", v, strings.TrimSuffix(unit[strings.LastIndex(unit[:len(unit)-3], "-")+1:], "-ms"))
	}
	return fmt.Sprintf("%g %s", v, unit)
}
