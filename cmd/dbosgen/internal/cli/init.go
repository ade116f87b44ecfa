package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"github.com/dbosgen/dbosgen/gen"
	"github.com/dbosgen/dbosgen/templates"
)

func init() {
	commands = append(commands, command{
		name:    "init",
		usage:   "init [flags] [dir]",
		summary: "create a new module with a workflow, a step and a transaction (dbosgen init -h)",
		run:     runInit,
	})
}

const dbosgenModule = "github.com/dbosgen/dbosgen"

func runInit(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dbosgen init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	modPath := fs.String("module", "", "module path of the new module (default: the directory's name)")
	replace := fs.String("replace", "", "use the dbosgen clone in this directory (adds a replace directive to go.mod)")
	noGo := fs.Bool("no-go", false, "only write the files: skip go mod tidy and code generation")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: dbosgen init [flags] [dir]

init creates a new Go module in dir (default: the current directory, which
must be empty): main.go launching the dbos runtime, workflows.go with one
workflow, one step and one transaction, their generated dbos_gen.go, a
Makefile, and a GitHub Actions workflow running dbosgen -check. It then runs
go mod tidy and the generator, so that "go run ." works at once.

Flags:
`)
		fs.PrintDefaults()
		fmt.Fprint(stderr, `
Examples:
  dbosgen init -module example.com/hello hello
  cd hello && go run .

  From a clone of dbosgen (not yet published to the module proxy):
    go run ./cmd/dbosgen init -replace "$PWD" /tmp/hello
`)
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(stderr, "dbosgen init: at most one directory, got", strings.Join(fs.Args(), " "))
		return exitUsage
	}
	dir := "."
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	if err := initModule(dir, *modPath, *replace, !*noGo, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "dbosgen init:", err)
		return exitError
	}
	return exitOK
}

func initModule(dir, modPath, replace string, runGo bool, stdout, stderr io.Writer) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	switch entries, err := os.ReadDir(abs); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("%s is not empty; init writes only into a new or empty directory", dir)
	}
	if modPath == "" {
		modPath = filepath.Base(abs)
	}
	if err := checkModulePath(modPath); err != nil {
		return err
	}
	if replace != "" {
		if replace, err = filepath.Abs(replace); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(replace, "runtime", "dbos")); err != nil {
			return fmt.Errorf("-replace %s: not a clone of %s (no runtime/dbos in it)", replace, dbosgenModule)
		}
	}

	files, err := templates.Init(templates.InitData{
		Module:    modPath,
		AppName:   appName(modPath),
		GoVersion: goVersion(),
		Replace:   filepath.ToSlash(replace),
	})
	if err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(abs, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Content, 0o644); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "wrote", filepath.Join(dir, filepath.FromSlash(f.Path)))
	}
	if !runGo {
		fmt.Fprintf(stdout, "\nnext:\n  cd %s\n  go mod tidy\n  go generate ./...\n  go run .\n", dir)
		return nil
	}

	var steps [][]string
	if replace == "" {
		steps = append(steps, []string{"go", "get", dbosgenModule + "@" + requiredVersion()})
	}
	steps = append(steps, []string{"go", "mod", "tidy"})
	for _, s := range steps {
		fmt.Fprintln(stdout, "running", strings.Join(s, " "))
		cmd := exec.Command(s[0], s[1:]...)
		cmd.Dir = abs
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			stderr.Write(out.Bytes())
			hint := ""
			if replace == "" {
				hint = "\n(working from a clone of dbosgen? add -replace /path/to/the/clone)"
			}
			return fmt.Errorf("%s in %s: %v%s", strings.Join(s, " "), dir, err, hint)
		}
	}

	fmt.Fprintln(stdout, "generating dbos_gen.go")
	res, err := gen.Generate(gen.Options{Dir: abs})
	if err != nil {
		return fmt.Errorf("generating: %w", err)
	}
	for _, d := range res.Diagnostics {
		fmt.Fprintln(stderr, d.Format(abs))
	}
	if gen.HasErrors(res.Diagnostics) {
		return errors.New("generating: the scaffold does not generate cleanly (a bug in dbosgen init: please report it)")
	}
	if err := gen.Write(res.Files); err != nil {
		return err
	}
	for _, f := range res.Files {
		fmt.Fprintln(stdout, "wrote", filepath.Join(dir, relPath(abs, f.Path)))
	}
	fmt.Fprintf(stdout, "\nready:\n  cd %s\n  go run .            # runs the workflow; state in .dbos/%s.sqlite\n  go generate ./...   # after editing workflows.go\n  make check          # what CI runs: fails if dbos_gen.go is stale\n", dir, appName(modPath))
	return nil
}

// checkModulePath rejects what go mod would reject with a less clear message.
func checkModulePath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
		return fmt.Errorf("bad module path %q", p)
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~/", r)) {
			return fmt.Errorf("bad module path %q: %q is not allowed (use -module to choose one)", p, r)
		}
	}
	return nil
}

// appName is the module path's last element, the name of the SQLite file.
func appName(modPath string) string {
	return modPath[strings.LastIndex(modPath, "/")+1:]
}

// goVersion is the go directive for the new module: the running toolchain's
// language version (go mod tidy raises it if dbosgen needs more).
func goVersion() string {
	v := strings.TrimPrefix(goruntime.Version(), "go")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 || parts[0] == "" || strings.ContainsAny(parts[0]+parts[1], " -+") {
		return "1.24"
	}
	return parts[0] + "." + parts[1]
}

// requiredVersion is the dbosgen version a new module requires: this
// binary's own when it is a release, else the latest.
func requiredVersion() string {
	v := Version()
	if strings.HasPrefix(v, "v") && !strings.Contains(v, " ") {
		return v
	}
	return "latest"
}
