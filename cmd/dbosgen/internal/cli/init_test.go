package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
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
	for _, f := range []string{"go.mod", "go.sum", "main.go", "workflows.go", "dbos_gen.go", "Makefile", ".gitignore", ".github/workflows/dbosgen.yml"} {
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
		t.Errorf("go.mod has a replace directive without -replace:\n%s", gomod)
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
