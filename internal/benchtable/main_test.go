package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/dbosgen/dbosgen/runtime/dbos
BenchmarkStep/postgres-2         	    3000	    250000 ns/op	    230000 raw-insert-ns/op	         1.087 x-raw-insert
BenchmarkStep/sqlite-2           	   10000	     30000 ns/op	     25000 raw-insert-ns/op	         1.200 x-raw-insert
BenchmarkThroughput16/postgres-2 	    5000	    400000 ns/op	      2500 workflows/s	      8000 raw-inserts/s	         3.200 x-raw-insert	         1.067 x-raw-per-stmt
BenchmarkStep/postgres-2         	    3000	    270000 ns/op	    250000 raw-insert-ns/op	         1.080 x-raw-insert
BenchmarkTransaction/postgres-2  	    5000	    340000 ns/op	        45.97 raw-tx-allocs/op	    297000 raw-tx-ns/op	         1.143 x-raw-tx	     32 allocs/op
PASS
ok  	github.com/dbosgen/dbosgen/runtime/dbos	12.3s
`

func TestTable(t *testing.T) {
	res, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 {
		t.Fatalf("got %d results, want 4", len(res))
	}
	if r := res[0]; r.name != "Step" || r.engine != "postgres" || r.runs != 2 || r.metrics["ns/op"] != 260000 {
		t.Fatalf("first result %+v: want Step/postgres averaged over 2 runs", r)
	}
	var b bytes.Buffer
	write(&b, res)
	out := b.String()
	for _, want := range []string{"step (one checkpoint)", "260.0 µs/op", "240.0 µs/op", "1.08×", "workflows, 16 concurrent", "2500 workflows/s", "8000 inserts/s", "3.20× (raw-per-stmt 1.07×)",
		"297.0 µs/op", "1.14× (raw 46 allocs/op)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
