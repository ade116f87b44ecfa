package gen_test

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/tools/txtar"

	"github.com/dbosgen/dbosgen/gen"
)

var update = flag.Bool("update", false, "rewrite the golden sections of ../testdata/*.txtar")

// Golden cases live in ../testdata/NAME.txtar. Every file of an archive is
// an input of package example.com/NAME (a previous dbos_gen.go included)
// except two expectations:
//
//	dbos_gen.go.golden  the generated file; "(removed)" when the generator
//	                    must delete a stale one; absent when it writes nothing
//	stderr.golden       the diagnostics, one per line; absent when none
//
// go test ./gen -update rewrites the expectations from the current output.
const (
	goldenOut    = "dbos_gen.go.golden"
	goldenStderr = "stderr.golden"
	removed      = "(removed)\n"
)

func TestGolden(t *testing.T) {
	archives, err := filepath.Glob(filepath.Join("..", "testdata", "*.txtar"))
	if err != nil || len(archives) == 0 {
		t.Fatalf("no golden cases in ../testdata: %v", err)
	}
	root := newModule(t)

	var (
		mu       sync.Mutex
		compiles []string // cases whose output must build
	)
	t.Run("cases", func(t *testing.T) {
		for _, path := range archives {
			name := strings.TrimSuffix(filepath.Base(path), ".txtar")
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				if runCase(t, root, name, path) {
					mu.Lock()
					compiles = append(compiles, "./"+name)
					mu.Unlock()
				}
			})
		}
	})
	if t.Failed() || len(compiles) == 0 {
		return
	}
	// Every generated file must compile against the real runtime, with the
	// inputs it was generated from; go vet also runs the usual checks. One
	// invocation for all cases keeps this fast.
	t.Run("compile", func(t *testing.T) {
		cmd := exec.Command("go", append([]string{"vet"}, compiles...)...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go vet of the generated golden outputs failed: %v\n%s", err, out)
		}
	})
}

// runCase generates for one archive and compares or updates its goldens. It
// reports whether the case produced a file that should compile.
func runCase(t *testing.T, root, name, path string) bool {
	ar, err := txtar.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, name)
	var inputs []txtar.File
	for _, f := range ar.Files {
		if f.Name == goldenOut || f.Name == goldenStderr {
			continue
		}
		inputs = append(inputs, f)
		p := filepath.Join(dir, f.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	res, err := gen.Generate(gen.Options{Dir: root, Patterns: []string{"./" + name}})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	var stderr strings.Builder
	for _, d := range res.Diagnostics {
		line := d.Format(dir)
		line = strings.ReplaceAll(line, dir+string(filepath.Separator), "")
		line = strings.ReplaceAll(line, root, "$WORK")
		stderr.WriteString(line + "\n")
	}
	var out []byte
	compiles := false
	for _, f := range res.Files {
		if f.Path != filepath.Join(dir, gen.OutputName) {
			t.Errorf("unexpected output file %s", f.Path)
			continue
		}
		if f.Content == nil {
			out = []byte(removed)
		} else {
			out = f.Content
			compiles = true
		}
	}

	if *update {
		ar.Files = inputs
		if out != nil {
			ar.Files = append(ar.Files, txtar.File{Name: goldenOut, Data: out})
		}
		if stderr.Len() > 0 {
			ar.Files = append(ar.Files, txtar.File{Name: goldenStderr, Data: []byte(stderr.String())})
		}
		if err := os.WriteFile(path, txtar.Format(ar), 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		want := section(ar, goldenStderr)
		if stderr.String() != string(want) {
			t.Errorf("diagnostics differ\n--- got\n%s--- want\n%s", stderr.String(), want)
		}
		want = section(ar, goldenOut)
		if !bytes.Equal(out, want) {
			t.Errorf("%s differs (go test ./gen -run TestGolden -update to accept)\n%s", gen.OutputName,
				gen.Diff(gen.File{Path: gen.OutputName, Old: want, Content: out}, ""))
		}
	}
	if compiles {
		// Place the output next to its inputs for the compile step.
		if err := os.WriteFile(filepath.Join(dir, gen.OutputName), out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return compiles
}

func section(ar *txtar.Archive, name string) []byte {
	for _, f := range ar.Files {
		if f.Name == name {
			return f.Data
		}
	}
	return nil
}

// newModule creates a module "example.com" in a temporary directory that
// requires this repository (through a replace directive) and the same
// versions of its dependencies, so that test packages can import the runtime
// and sqlx without network access.
func newModule(t testing.TB) string {
	t.Helper()
	repo := repoRoot(t)
	root := t.TempDir()
	mod, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(mod), "module github.com/dbosgen/dbosgen", "module example.com", 1)
	text += "\nrequire github.com/dbosgen/dbosgen v0.0.0\n\nreplace github.com/dbosgen/dbosgen => " + repo + "\n"
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(repo, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func repoRoot(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the repository")
	}
	return filepath.Dir(filepath.Dir(file))
}
