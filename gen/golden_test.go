package gen_test

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/tools/txtar"

	"github.com/dbosgen/dbosgen/gen"
	"github.com/dbosgen/dbosgen/internal/testmod"
)

var update = flag.Bool("update", false, "rewrite the golden sections of ../testdata/*.txtar")

// Golden cases live in ../testdata/NAME.txtar. Every file of an archive is
// an input under example.com/NAME (a previous dbos_gen.go included; files in
// subdirectories are further packages, generated for together with ./NAME/...)
// except the expectations:
//
//	[dir/]dbos_gen.go.golden  a generated file; "(removed)" when the generator
//	                          must delete a stale one; absent when it writes nothing
//	stderr.golden             the diagnostics, one per line; absent when none
//
// go test ./gen -update rewrites the expectations from the current output.
const (
	goldenSuffix = ".golden"
	goldenStderr = "stderr.golden"
	removed      = "(removed)\n"
)

func TestGolden(t *testing.T) {
	archives, err := filepath.Glob(filepath.Join("..", "testdata", "*.txtar"))
	if err != nil || len(archives) == 0 {
		t.Fatalf("no golden cases in ../testdata: %v", err)
	}
	root := testmod.New(t)

	var (
		mu       sync.Mutex
		compiles []string // packages whose output must build
	)
	t.Run("cases", func(t *testing.T) {
		for _, path := range archives {
			name := strings.TrimSuffix(filepath.Base(path), ".txtar")
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				pkgs := runCase(t, root, name, path)
				mu.Lock()
				compiles = append(compiles, pkgs...)
				mu.Unlock()
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
// returns the packages (as ./relative patterns) that got a generated file,
// which must compile.
func runCase(t *testing.T, root, name, path string) []string {
	ar, err := txtar.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, name)
	var inputs []txtar.File
	for _, f := range ar.Files {
		if strings.HasSuffix(f.Name, goldenSuffix) {
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

	res, err := gen.Generate(gen.Options{Dir: root, Patterns: []string{"./" + name + "/..."}})
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
	var outs []txtar.File // generated files, by golden name
	var compiles []string
	for _, f := range res.Files {
		rel, err := filepath.Rel(dir, f.Path)
		if err != nil || strings.HasPrefix(rel, "..") || filepath.Base(rel) != gen.OutputName {
			t.Errorf("unexpected output file %s", f.Path)
			continue
		}
		data := []byte(removed)
		if f.Content != nil {
			data = f.Content
			// Place the output next to its inputs for the compile step.
			if err := os.WriteFile(f.Path, f.Content, 0o644); err != nil {
				t.Fatal(err)
			}
			compiles = append(compiles, "./"+filepath.ToSlash(filepath.Join(name, filepath.Dir(rel))))
		}
		outs = append(outs, txtar.File{Name: filepath.ToSlash(rel) + goldenSuffix, Data: data})
	}

	if *update {
		ar.Files = append(inputs, outs...)
		if stderr.Len() > 0 {
			ar.Files = append(ar.Files, txtar.File{Name: goldenStderr, Data: []byte(stderr.String())})
		}
		if err := os.WriteFile(path, txtar.Format(ar), 0o644); err != nil {
			t.Fatal(err)
		}
		return compiles
	}
	if want := testmod.Section(ar, goldenStderr); stderr.String() != string(want) {
		t.Errorf("diagnostics differ\n--- got\n%s--- want\n%s", stderr.String(), want)
	}
	got := map[string][]byte{}
	for _, f := range outs {
		got[f.Name] = f.Data
	}
	for _, f := range ar.Files {
		if !strings.HasSuffix(f.Name, goldenSuffix) || f.Name == goldenStderr {
			continue
		}
		if _, ok := got[f.Name]; !ok {
			t.Errorf("%s expected but not generated", strings.TrimSuffix(f.Name, goldenSuffix))
		}
	}
	for name, data := range got {
		want := testmod.Section(ar, name)
		if want == nil {
			t.Errorf("unexpected output %s:\n%s", strings.TrimSuffix(name, goldenSuffix), data)
		} else if !bytes.Equal(data, want) {
			t.Errorf("%s differs (go test ./gen -run TestGolden -update to accept)\n%s", strings.TrimSuffix(name, goldenSuffix),
				gen.Diff(gen.File{Path: name, Old: want, Content: data}, ""))
		}
	}
	return compiles
}
