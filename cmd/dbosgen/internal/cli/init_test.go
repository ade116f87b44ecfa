package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// repoRoot is the dbosgen clone these tests run in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "runtime", "dbos")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	return root
}

// goCmd runs the go command (or another program) in dir with the runtime's
// database variables unset, so programs use their embedded SQLite default.
func goCmd(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DBOS_SYSTEM_DATABASE_URL=") && !strings.HasPrefix(kv, "APP_DATABASE_URL=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s (in %s): %v\n%s", name, strings.Join(args, " "), dir, err, out.String())
	}
	t.Logf("%s %s: %s", name, strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	return out.String()
}

// TestInitScaffoldBuildsGeneratesRuns runs dbosgen init as a user from a
// clone would, then builds, vets, runs, regenerates and checks the scaffold
// exactly as produced.
func TestInitScaffoldBuildsGeneratesRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	root := repoRoot(t)
	dir := filepath.Join(t.TempDir(), "hello")
	code, out, errs := run(t, "init", "-module", "example.com/hello", "-replace", root, dir)
	if code != exitOK {
		t.Fatalf("init: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	for _, f := range []string{"go.mod", "go.sum", "main.go", "workflows.go", "workflows_test.go", "dbos_gen.go", "Makefile", ".gitignore", ".github/workflows/dbosgen.yml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("scaffold lacks %s: %v", f, err)
		}
	}
	gomod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
	for _, want := range []string{"module example.com/hello", "replace github.com/dbosgen/dbosgen => " + filepath.ToSlash(root), "tool github.com/dbosgen/dbosgen/cmd/dbosgen"} {
		if !strings.Contains(string(gomod), want) {
			t.Errorf("go.mod lacks %q:\n%s", want, gomod)
		}
	}
	wf, _ := os.ReadFile(filepath.Join(dir, "workflows.go"))
	for _, want := range []string{"//go:generate go run github.com/dbosgen/dbosgen/cmd/dbosgen", "//dbos:workflow", "//dbos:step", "//dbos:transaction"} {
		if !strings.Contains(string(wf), want) {
			t.Errorf("workflows.go lacks %q", want)
		}
	}
	ci, _ := os.ReadFile(filepath.Join(dir, ".github", "workflows", "dbosgen.yml"))
	if !strings.Contains(string(ci), "dbosgen -check ./...") {
		t.Errorf("the CI workflow does not run dbosgen -check:\n%s", ci)
	}
	generated, _ := os.ReadFile(filepath.Join(dir, "dbos_gen.go"))

	goCmd(t, dir, nil, "go", "vet", "./...")
	// Its test crashes hello, recovers and replays it with runtime/dbostest.
	goCmd(t, dir, nil, "go", "test", "-count=1", "./...")
	got := goCmd(t, dir, nil, "go", "run", ".", "Ada")
	if !strings.Contains(got, "Hello, Ada! Ticket") || !strings.Contains(got, "(1 so far)") {
		t.Fatalf("go run . Ada printed:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(dir, ".dbos", "hello.sqlite")); err != nil {
		t.Errorf("the default SQLite file was not created: %v", err)
	}
	if got := goCmd(t, dir, nil, "go", "run", ".", "Ada"); !strings.Contains(got, "(2 so far)") {
		t.Fatalf("second go run . Ada printed:\n%s", got)
	}

	// The go:generate line works and reproduces what init wrote.
	goCmd(t, dir, nil, "go", "generate", "./...")
	if again, _ := os.ReadFile(filepath.Join(dir, "dbos_gen.go")); !bytes.Equal(again, generated) {
		t.Errorf("go generate changed the dbos_gen.go written by init")
	}
	goCmd(t, dir, nil, "go", "run", "github.com/dbosgen/dbosgen/cmd/dbosgen", "-check", "./...")
	// The scaffold's workflow is deterministic: dbosgen vet finds nothing
	// (make check below runs it too).
	goCmd(t, dir, nil, "go", "run", "github.com/dbosgen/dbosgen/cmd/dbosgen", "vet", "./...")
	if _, err := exec.LookPath("make"); err == nil {
		goCmd(t, dir, nil, "make", "check")
	}
}

func TestInitRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := run(t, "init", "-no-go", dir)
	if code != exitError || !strings.Contains(errs, "not empty") {
		t.Fatalf("init into a non-empty dir: exit %d, stderr %q", code, errs)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("init wrote into a non-empty dir: %v", entries)
	}
}

func TestInitFilesOnly(t *testing.T) {
	stubSource(t, source{version: "v1.2.3"}) // a release: no clone to replace with
	dir := filepath.Join(t.TempDir(), "My App")
	if code, _, errs := run(t, "init", "-no-go", dir); code != exitError || !strings.Contains(errs, "bad module path") {
		t.Fatalf("init with a directory name that is no module path: exit %d, stderr %q", code, errs)
	}
	code, out, errs := run(t, "init", "-no-go", "-module", "example.com/x/myapp", dir)
	if code != exitOK {
		t.Fatalf("init -no-go: exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "go mod tidy") {
		t.Errorf("init -no-go does not say what to run next:\n%s", out)
	}
	main, _ := os.ReadFile(filepath.Join(dir, "main.go"))
	if !strings.Contains(string(main), `AppName: "myapp"`) {
		t.Errorf("main.go does not name the app after the module:\n%s", main)
	}
	gomod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
	if strings.Contains(string(gomod), "replace") {
		t.Errorf("go.mod of a release's scaffold has a replace directive:\n%s", gomod)
	}
}

func TestInitUsage(t *testing.T) {
	if code, _, errs := run(t, "init", "-h"); code != exitOK || !strings.Contains(errs, "-replace") {
		t.Fatalf("init -h: exit %d:\n%s", code, errs)
	}
	if code, _, _ := run(t, "init", "a", "b"); code != exitUsage {
		t.Fatalf("init a b: exit %d, want %d", code, exitUsage)
	}
	if _, _, errs := run(t, "-h"); !strings.Contains(errs, "init [flags] [dir]") {
		t.Fatalf("dbosgen -h does not list init:\n%s", errs)
	}
}

// stubSource makes init believe it is the given dbosgen build.
func stubSource(t *testing.T, s source) {
	t.Helper()
	saved := selfSource
	selfSource = func() source { return s }
	t.Cleanup(func() { selfSource = saved })
}

// stubGo replaces the go command: fail says which invocation fails.
func stubGo(t *testing.T, fail func(args []string) bool) *[]string {
	t.Helper()
	var calls []string
	saved := goCommand
	goCommand = func(dir string, args ...string) ([]byte, error) {
		calls = append(calls, strings.Join(args, " "))
		if fail(args) {
			return []byte("go: simulated failure\n"), errors.New("exit status 1")
		}
		return nil, nil
	}
	t.Cleanup(func() { goCommand = saved })
	return &calls
}

// A development build of dbosgen (as these tests are, and as go run
// ./cmd/dbosgen in a clone is) makes the new module use its clone: no
// -replace needed.
func TestInitUsesTheCloneItRunsFrom(t *testing.T) {
	root := repoRoot(t)
	dir := filepath.Join(t.TempDir(), "hello")
	code, out, errs := run(t, "init", "-no-go", "-module", "example.com/hello", dir)
	if code != exitOK {
		t.Fatalf("init: exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "using the dbosgen clone at "+root) {
		t.Errorf("init does not say which clone it uses:\n%s", out)
	}
	gomod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
	if want := "replace github.com/dbosgen/dbosgen => " + filepath.ToSlash(root) + "\n"; !strings.Contains(string(gomod), want) {
		t.Errorf("go.mod does not replace dbosgen with the clone %s:\n%s", root, gomod)
	}
}

// A dbosgen that cannot be downloaded (not published yet) is found out
// before anything is written, so running init again, with -replace, works.
func TestInitUnavailableReleaseWritesNothing(t *testing.T) {
	stubSource(t, source{version: "latest"})
	calls := stubGo(t, func(args []string) bool { return args[0] == "mod" && args[1] == "download" })
	parent := t.TempDir()
	dir := filepath.Join(parent, "hello")
	code, out, errs := run(t, "init", "-module", "example.com/hello", dir)
	if code != exitError || !strings.Contains(errs, "cannot download github.com/dbosgen/dbosgen@latest, so nothing was written") ||
		!strings.Contains(errs, "-replace") {
		t.Fatalf("init with an unavailable release: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if strings.Contains(out, "wrote") {
		t.Errorf("init reports writing files:\n%s", out)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("init created %s before failing (stat: %v)", dir, err)
	}
	if got := strings.Join(*calls, "; "); got != "mod download -json github.com/dbosgen/dbosgen@latest" {
		t.Errorf("go commands run: %s", got)
	}
	if code, _, errs := run(t, "init", "-no-go", "-module", "example.com/hello", "-replace", repoRoot(t), dir); code != exitOK {
		t.Fatalf("init again with -replace: exit %d: %s", code, errs)
	}
}

// A go command failing after the files are written removes them, and the
// directories init created, so init can run again.
func TestInitFailureRemovesWhatItWrote(t *testing.T) {
	root := repoRoot(t)
	for _, existing := range []bool{false, true} {
		t.Run(fmt.Sprintf("dir existed %v", existing), func(t *testing.T) {
			stubGo(t, func(args []string) bool { return args[0] == "mod" && args[1] == "tidy" })
			parent := t.TempDir()
			dir := filepath.Join(parent, "new", "hello")
			if existing {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			code, out, errs := run(t, "init", "-module", "example.com/hello", "-replace", root, dir)
			if code != exitError || !strings.Contains(errs, "go mod tidy in "+dir) || !strings.Contains(errs, "simulated failure") ||
				!strings.Contains(errs, "init removed what it had written") {
				t.Fatalf("init with go mod tidy failing: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
			}
			if !strings.Contains(out, "wrote") {
				t.Fatalf("the failure came before any write; this test wants it after:\n%s", out)
			}
			if existing {
				if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
					t.Fatalf("%s after the failure: %v, %v; want it empty", dir, entries, err)
				}
			} else if entries, _ := os.ReadDir(parent); len(entries) != 0 {
				t.Fatalf("init left %v in %s; want nothing", entries, parent)
			}
			if code, _, errs := run(t, "init", "-no-go", "-module", "example.com/hello", "-replace", root, dir); code != exitOK {
				t.Fatalf("init again: exit %d: %s", code, errs)
			}
		})
	}
}

func TestInitDevelopmentBuildWithoutClone(t *testing.T) {
	stubSource(t, source{})
	dir := filepath.Join(t.TempDir(), "hello")
	code, _, errs := run(t, "init", "-no-go", "-module", "example.com/hello", dir)
	if code != exitError || !strings.Contains(errs, "development build") || !strings.Contains(errs, "-replace") {
		t.Fatalf("init from a development build without its clone: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("init created %s (stat: %v)", dir, err)
	}
	if code, _, errs := run(t, "init", "-no-go", "-replace", t.TempDir(), dir); code != exitError || !strings.Contains(errs, "not a clone") {
		t.Fatalf("-replace of a directory that is no clone: exit %d: %s", code, errs)
	}
}

func TestSourceFromBuild(t *testing.T) {
	const clone = "/src/dbosgen"
	find := func(devel bool) string { return clone }
	dep := func(v string, r *debug.Module) []*debug.Module {
		return []*debug.Module{{Path: "github.com/jmoiron/sqlx", Version: "v1.4.0"}, {Path: dbosgenModule, Version: v, Replace: r}}
	}
	for _, c := range []struct {
		what string
		info debug.BuildInfo
		want source
	}{
		{"go install @v1.2.3", debug.BuildInfo{Main: debug.Module{Path: dbosgenModule, Version: "v1.2.3"}}, source{version: "v1.2.3"}},
		{"go run ./cmd/dbosgen in a clone", debug.BuildInfo{Main: debug.Module{Path: dbosgenModule, Version: "(devel)"}}, source{clone: clone}},
		{"a dependency", debug.BuildInfo{Main: debug.Module{Path: "example.com/app", Version: "(devel)"}, Deps: dep("v0.3.0", nil)}, source{version: "v0.3.0"}},
		{"a dependency replaced by a clone", debug.BuildInfo{Main: debug.Module{Path: "example.com/app", Version: "(devel)"},
			Deps: dep("v0.0.0-00010101000000-000000000000", &debug.Module{Path: "../dbosgen"})}, source{clone: clone}},
		{"a dependency replaced by a fork", debug.BuildInfo{Main: debug.Module{Path: "example.com/app", Version: "(devel)"},
			Deps: dep("v0.3.0", &debug.Module{Path: "example.com/fork", Version: "v0.3.1"})}, source{version: "v0.3.0"}},
	} {
		if got := sourceFromBuild(&c.info, find); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.what, got, c.want)
		}
	}
	if got := sourceFromBuild(&debug.BuildInfo{Main: debug.Module{Path: dbosgenModule, Version: "(devel)"}}, func(bool) string { return "" }); got != (source{}) {
		t.Errorf("a development build without its clone: %+v, want neither version nor clone", got)
	}
}

func TestModulePath(t *testing.T) {
	for in, want := range map[string]string{
		"module github.com/dbosgen/dbosgen\n\ngo 1.26\n":   dbosgenModule,
		"// comment\nmodule \"example.com/q\" // quoted\n": "example.com/q",
		"modulex foo\n": "",
		"go 1.26\n":     "",
	} {
		if got := modulePath([]byte(in)); got != want {
			t.Errorf("modulePath(%q) = %q, want %q", in, got, want)
		}
	}
}
