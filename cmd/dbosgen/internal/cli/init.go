package cli

import (
	"bytes"
	"encoding/json"
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
	replace := fs.String("replace", "", "use the dbosgen clone in this directory (adds a replace directive to go.mod); a development build of dbosgen uses the clone it was built from")
	noGo := fs.Bool("no-go", false, "only write the files: skip go mod tidy and code generation")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: dbosgen init [flags] [dir]

init creates a new Go module in dir (default: the current directory, which
must be empty): main.go launching the dbos runtime, workflows.go with one
workflow, one step and one transaction, their generated dbos_gen.go, a
Makefile, and a GitHub Actions workflow running dbosgen -check. It then runs
go mod tidy and the generator, so that "go run ." works at once.

A released dbosgen makes the module require its own version. A development
build (go run ./cmd/dbosgen in a clone) makes it use that clone through a
replace directive. Everything that can be checked (the directory, the
module path, the clone, whether dbosgen can be downloaded) is checked before
anything is written, and a later failure removes what init wrote.

Flags:
`)
		fs.PrintDefaults()
		fmt.Fprint(stderr, `
Examples:
  dbosgen init -module example.com/hello hello
  cd hello && go run .

  From a clone of dbosgen (not yet published to the module proxy), which the
  new module then uses:
    go run ./cmd/dbosgen init -module example.com/hello /tmp/hello
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

func initModule(dir, modPath, replace string, runGo bool, stdout, stderr io.Writer) (err error) {
	// Everything that can be checked is checked before the first file is
	// written; what can fail later (the go commands, generation) undoes the
	// writes, so that init can simply be run again.
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
	src := source{clone: replace}
	if replace != "" {
		if src.clone, err = filepath.Abs(replace); err != nil {
			return err
		}
		if !isClone(src.clone) {
			return fmt.Errorf("-replace %s: not a clone of %s (no go.mod of that module with runtime/dbos beside it)", replace, dbosgenModule)
		}
	} else {
		src = selfSource()
		switch {
		case src.clone != "":
			fmt.Fprintf(stdout, "using the dbosgen clone at %s (this dbosgen is a development build; -replace picks another clone)\n", src.clone)
		case src.version == "":
			return fmt.Errorf("this dbosgen is a development build, and the clone it was built from was not found; "+
				"run init with -replace /path/to/a/clone of %s, or run a released dbosgen", dbosgenModule)
		}
	}
	if runGo {
		if _, err := exec.LookPath("go"); err != nil {
			return errors.New("the go command is not on PATH (init runs go mod tidy and generates code); install Go, or pass -no-go to write the files only")
		}
		if src.clone == "" {
			if err := checkDownload(src.version, stdout); err != nil {
				return err
			}
		}
	}

	files, err := templates.Init(templates.InitData{
		Module:    modPath,
		AppName:   appName(modPath),
		GoVersion: goVersion(),
		Replace:   filepath.ToSlash(src.clone),
	})
	if err != nil {
		return err
	}

	undo, err := prepareDir(abs)
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			return
		}
		if uerr := undo(); uerr != nil {
			err = fmt.Errorf("%w\n(init could not remove what it wrote: %v)", err, uerr)
			return
		}
		err = fmt.Errorf("%w\n(init removed what it had written in %s: fix the problem and run it again)", err, dir)
	}()
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
	if src.clone == "" {
		steps = append(steps, []string{"get", dbosgenModule + "@" + src.version})
	}
	steps = append(steps, []string{"mod", "tidy"})
	for _, s := range steps {
		fmt.Fprintln(stdout, "running go", strings.Join(s, " "))
		if out, err := goCommand(abs, s...); err != nil {
			stderr.Write(out)
			return fmt.Errorf("go %s in %s: %v", strings.Join(s, " "), dir, err)
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

// goCommand runs the go command in dir and returns its combined output.
// Tests replace it.
var goCommand = func(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// checkDownload makes sure dbosgen at version can be fetched before init
// writes anything: go mod download outside any module fills the module
// cache, so the go get that follows costs nothing more.
func checkDownload(version string, stdout io.Writer) error {
	tmp, err := os.MkdirTemp("", "dbosgen-init-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	mod := dbosgenModule + "@" + version
	fmt.Fprintln(stdout, "checking that", mod, "can be downloaded")
	out, err := goCommand(tmp, "mod", "download", "-json", mod)
	if err == nil {
		return nil
	}
	why := strings.TrimSpace(string(out))
	var res struct{ Error string }
	if json.Unmarshal(out, &res) == nil && res.Error != "" {
		why = res.Error
	}
	return fmt.Errorf("cannot download %s, so nothing was written: %s\n"+
		"(dbosgen is not published on the Go module proxy yet: run init from a clone with go run ./cmd/dbosgen init, "+
		"which uses that clone, or pass -replace /path/to/a/clone)", mod, why)
}

// prepareDir creates dir (and missing parents) and returns a function that
// empties it again and removes what it created: dir was empty or absent when
// init began, so everything in it is init's.
func prepareDir(dir string) (undo func() error, err error) {
	var created []string // deepest first
	for d := dir; ; {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		created = append(created, d)
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return func() error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
		for _, d := range created {
			if err := os.Remove(d); err != nil {
				return err
			}
		}
		return nil
	}, nil
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
