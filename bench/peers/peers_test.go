package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestQuick runs the harness as -quick does, for every system and setting,
// and checks that every preloaded job drained, every step was checkpointed
// (dbosgen, DBOS) and every latency round completed: the harness cannot rot
// silently when River, DBOS or dbosgen change. It needs PostgreSQL at
// $DBOSGEN_TEST_POSTGRES_URL (default: local, trust authentication).
func TestQuick(t *testing.T) {
	o := &options{
		URL:          cmpOr(os.Getenv("DBOSGEN_TEST_POSTGRES_URL"), defaultURL),
		Jobs:         3000,
		Workers:      16,
		Producers:    16,
		Rounds:       200,
		Warmup:       2,
		DrainLimit:   60 * time.Second, // the quick sizes need well under these
		LatencyLimit: 30 * time.Second,
		DBOSFastPoll: time.Millisecond,
		DBOSFastWait: 5 * time.Millisecond,
		Retries:      2, // the shared server may be restarted by other tests meanwhile
		Progress:     t.Output(),
	}
	o.quick()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	results, err := run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	printTable(&table, o, results)
	t.Logf("\n%s", table.String())

	want := map[string]int{"River": 2, "DBOS SDK": 2, "dbosgen": 2}
	got := map[string]int{}
	for _, r := range results {
		got[r.System]++
		if !r.Complete() {
			t.Errorf("%s %s: drained %d/%d jobs, %d checkpoints, %d/%d latency rounds, error %v; want every job and round complete",
				r.System, r.Settings, r.Drained, r.Jobs, r.Checkpoints, len(r.Lat), r.LatWanted, r.Err)
		}
		if r.RawRate <= 0 || r.DrainRate() <= 0 {
			t.Errorf("%s %s: raw %f rows/s, drain %f jobs/s; want both measured", r.System, r.Settings, r.RawRate, r.DrainRate())
		}
	}
	for sys, n := range want {
		if got[sys] != n {
			t.Errorf("%d results for %s, want %d", got[sys], sys, n)
		}
	}
	if !strings.Contains(table.String(), "raw INSERT") {
		t.Errorf("the table has no raw baseline row:\n%s", table.String())
	}
}
