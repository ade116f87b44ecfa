package vet_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/tools/go/packages"

	"github.com/dbosgen/dbosgen/gen"
	"github.com/dbosgen/dbosgen/gen/vet"
	"github.com/dbosgen/dbosgen/internal/testmod"
)

// BenchmarkVet500 vets a generated package of 500 functions: 50 workflows,
// 150 steps and 300 helpers. Each workflow calls steps and a chain of
// helpers ten deep; every tenth helper reads the clock, so each workflow
// reaches findings through long chains. The package is generated once;
// each iteration is dbosgen vet on it (load and analysis; the go command's
// build cache is warm after the first), and, apart, the analysis alone.
//
//	go test ./gen/vet -run '^$' -bench Vet500
func BenchmarkVet500(b *testing.B) {
	root := testmod.New(b)
	dir := filepath.Join(root, "big")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "big.go"), []byte(bigPackage(50, 150, 300)), 0o644); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	res, err := gen.Generate(gen.Options{Dir: root, Patterns: []string{"./big"}})
	if err != nil || gen.HasErrors(res.Diagnostics) {
		b.Fatalf("Generate: %v %v", err, res.Diagnostics)
	}
	b.Logf("generation (with its vet warnings): %s, %d diagnostics", time.Since(start).Round(time.Millisecond), len(res.Diagnostics))
	if err := gen.Write(res.Files); err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	findings, err := vet.Run(vet.Config{Dir: root}, "./big")
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("first vet (the go command compiles the package): %s, %d findings", time.Since(start).Round(time.Millisecond), len(findings))
	b.Run("run", func(b *testing.B) {
		for b.Loop() {
			if _, err := vet.Run(vet.Config{Dir: root}, "./big"); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(findings)), "findings")
	})
	// The analysis alone, on packages already loaded (as generation does).
	b.Run("check", func(b *testing.B) {
		pkgs, err := packages.Load(&packages.Config{Mode: vet.LoadMode, Dir: root}, "./big")
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := vet.Check(vet.Config{Dir: root}, pkgs); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// bigPackage writes a package with the given numbers of workflows, steps
// and helpers.
func bigPackage(workflows, steps, helpers int) string {
	var s strings.Builder
	s.WriteString("package big\n\nimport (\n\t\"context\"\n\t\"time\"\n)\n\n")
	for i := 0; i < steps; i++ {
		fmt.Fprintf(&s, "//dbos:step\nfunc s%d(ctx context.Context, n int) (int, error) { return n + %d, nil }\n\n", i, i)
	}
	for i := 0; i < helpers; i++ {
		body := "return n + 1"
		if i%10 == 9 {
			body = "return n + int(time.Now().Unix()%2)"
		}
		if i+1 < helpers && i%10 != 9 {
			body = fmt.Sprintf("return h%d(ctx, n+1)", i+1)
		}
		fmt.Fprintf(&s, "func h%d(ctx context.Context, n int) int {\n\tif n < 0 {\n\t\tm := map[int]int{n: n}\n\t\tfor k := range m {\n\t\t\tn += k\n\t\t}\n\t}\n\t%s\n}\n\n", i, body)
	}
	for i := 0; i < workflows; i++ {
		fmt.Fprintf(&s, "//dbos:workflow\nfunc w%d(ctx context.Context, n int) (int, error) {\n", i)
		for j := 0; j < 3; j++ {
			fmt.Fprintf(&s, "\tif v, err := s%dStep(ctx, n); err != nil {\n\t\treturn 0, err\n\t} else {\n\t\tn += v\n\t}\n", (i*3+j)%steps)
		}
		fmt.Fprintf(&s, "\treturn h%d(ctx, n), nil\n}\n\n", (i*6)%helpers)
	}
	return s.String()
}
