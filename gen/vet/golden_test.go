package vet_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/tools/txtar"

	"github.com/dbosgen/dbosgen/gen"
	"github.com/dbosgen/dbosgen/gen/vet"
	"github.com/dbosgen/dbosgen/internal/testmod"
)

var update = flag.Bool("update", false, "rewrite the findings.golden sections of testdata/*.txtar")

// The corpus lives in testdata/NAME.txtar. Every file of an archive is an
// input under example.com/NAME (files in subdirectories are further
// packages) except findings.golden, the expected output of dbosgen vet
// ./NAME/..., one finding per line with paths relative to NAME; it is absent
// when vet must find nothing. The cases are generated (go generate) and
// vetted together, in one module, as a user's would be.
//
// An archive holding a go.mod is a module of its own, vetted alone and not
// generated: that is how a case stands in for the runtime (to give it an API
// it does not have yet, say).
//
// go test ./gen/vet -run TestGolden -update rewrites the expectations.
const goldenFindings = "findings.golden"

type goldenCase struct {
	name, path string
	ar         *txtar.Archive
	dir        string // where its inputs were written
}

func TestGolden(t *testing.T) {
	archives, err := filepath.Glob(filepath.Join("testdata", "*.txtar"))
	if err != nil || len(archives) == 0 {
		t.Fatalf("no cases in testdata: %v", err)
	}
	root := testmod.New(t)
	var shared, alone []*goldenCase
	for _, path := range archives {
		ar, err := txtar.ParseFile(path)
		if err != nil {
			t.Fatal(err)
		}
		c := &goldenCase{name: strings.TrimSuffix(filepath.Base(path), ".txtar"), path: path, ar: ar}
		if testmod.Section(ar, "go.mod") != nil {
			c.dir = filepath.Join(t.TempDir(), c.name)
			alone = append(alone, c)
		} else {
			c.dir = filepath.Join(root, c.name)
			shared = append(shared, c)
		}
		writeInputs(t, c)
	}

	// Generate every shared case's wrappers at once, as go generate ./...
	// would; generation must succeed.
	start := time.Now()
	res, err := gen.Generate(gen.Options{Dir: root, Patterns: []string{"./..."}})
	t.Logf("generating %d cases: %s", len(shared), time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	for _, d := range res.Diagnostics {
		if d.Severity == gen.SeverityError {
			t.Errorf("generating the corpus: %s", d.Format(root))
		}
	}
	if t.Failed() {
		return
	}
	if err := gen.Write(res.Files); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	findings, err := vet.Run(vet.Config{Dir: root}, "./...")
	if err != nil {
		t.Fatalf("vet: %v", err)
	}
	t.Logf("vetting them: %s", time.Since(start).Round(time.Millisecond))
	for _, c := range shared {
		t.Run(c.name, func(t *testing.T) { compare(t, c, findings) })
	}
	// The module's packages a workflow reaches are loaded for it when the
	// patterns leave them out (go generate runs on one package at a time).
	t.Run("unlisted_dependencies", func(t *testing.T) {
		alone, err := vet.Run(vet.Config{Dir: root}, "./chain_cross_package")
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(root, "chain_cross_package") + string(filepath.Separator)
		var want []vet.Finding
		for _, f := range findings {
			if strings.HasPrefix(f.Pos.Filename, dir) {
				want = append(want, f)
			}
		}
		if len(alone) != len(want) || len(want) == 0 {
			t.Fatalf("vet ./chain_cross_package found\n%v\nvet ./... found there\n%v", alone, want)
		}
		for i := range want {
			if alone[i].String() != want[i].String() {
				t.Errorf("finding %d: %s, want %s", i, alone[i], want[i])
			}
		}
	})
	for _, c := range alone {
		t.Run(c.name, func(t *testing.T) {
			findings, err := vet.Run(vet.Config{Dir: c.dir}, "./...")
			if err != nil {
				t.Fatalf("vet: %v", err)
			}
			compare(t, c, findings)
		})
	}
}

func writeInputs(t *testing.T, c *goldenCase) {
	for _, f := range c.ar.Files {
		if f.Name == goldenFindings {
			continue
		}
		p := filepath.Join(c.dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// compare checks (or, with -update, rewrites) a case's findings: those in
// its directory, paths relative to it.
func compare(t *testing.T, c *goldenCase, all []vet.Finding) {
	var got strings.Builder
	prefix := c.dir + string(filepath.Separator)
	for _, f := range all {
		if strings.HasPrefix(f.Pos.Filename, prefix) {
			got.WriteString(filepath.ToSlash(f.Format(c.dir)) + "\n")
		}
	}
	if *update {
		var files []txtar.File
		for _, f := range c.ar.Files {
			if f.Name != goldenFindings {
				files = append(files, f)
			}
		}
		if got.Len() > 0 {
			files = append(files, txtar.File{Name: goldenFindings, Data: []byte(got.String())})
		}
		c.ar.Files = files
		if err := os.WriteFile(c.path, txtar.Format(c.ar), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if want := string(testmod.Section(c.ar, goldenFindings)); got.String() != want {
		t.Errorf("findings differ (go test ./gen/vet -run TestGolden -update to accept)\n--- got\n%s--- want\n%s", got.String(), want)
	}
}
