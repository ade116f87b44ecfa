// Package cli is the dbosgen command line: flag parsing, subcommand
// dispatch, and printing. The generator itself is package gen.
package cli

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/dbosgen/dbosgen/gen"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // errors in the user's code, or -check found drift
	exitUsage = 2
)

// command is a subcommand, run as "dbosgen <name> args...". The generator is
// the default command, run when the first argument names no subcommand.
type command struct {
	name    string
	usage   string // one line, after "dbosgen "
	summary string
	run     func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// commands lists the subcommands. To add one (dbosgen init [dir] is
// planned), write it in a file of this package and append it here from that
// file's init function; usage and dispatch pick it up.
var commands []command

// Run runs dbosgen with args (without the program name) and returns the
// exit status.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		for _, c := range commands {
			if args[0] == c.name {
				return c.run(args[1:], stdin, stdout, stderr)
			}
		}
	}
	return generate(args, stdout, stderr)
}

func generate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dbosgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	check := fs.Bool("check", false, "write nothing; print a unified diff of every file that would change and exit 1 if any would")
	tags := fs.String("tags", "", "comma-separated build tags, as for go build")
	verbose := fs.Bool("v", false, "print the files written or removed")
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() { usage(fs, stderr) }
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	if *version {
		fmt.Fprintln(stdout, "dbosgen", Version())
		return exitOK
	}

	cwd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(stderr, "dbosgen:", err)
		return exitError
	}
	opts := gen.Options{Dir: cwd, Patterns: fs.Args()}
	if *tags != "" {
		opts.Tags = strings.Split(*tags, ",")
	}
	res, err := gen.Generate(opts)
	if err != nil {
		// go/packages wraps the go command's complaint ("go.mod file not
		// found") in "err: exit status 1: stderr: ..."; show the complaint.
		msg := err.Error()
		if i := strings.LastIndex(msg, "stderr: "); i >= 0 {
			msg = strings.TrimSpace(msg[i+len("stderr: "):])
		}
		fmt.Fprintln(stderr, "dbosgen:", msg)
		return exitError
	}
	nerr := 0
	for _, d := range res.Diagnostics {
		fmt.Fprintln(stderr, d.Format(cwd))
		if d.Severity == gen.SeverityError {
			nerr++
		}
	}
	if nerr > 0 {
		fmt.Fprintf(stderr, "dbosgen: %d %s; nothing written\n", nerr, plural(nerr, "error", "errors"))
		return exitError
	}

	if *check {
		drift := 0
		for _, f := range res.Files {
			if d := gen.Diff(f, cwd); d != "" {
				fmt.Fprint(stdout, d)
				drift++
			}
		}
		if drift > 0 {
			fmt.Fprintf(stderr, "dbosgen: %d %s out of date; run go generate (or dbosgen) to update\n", drift, plural(drift, "file", "files"))
			return exitError
		}
		return exitOK
	}

	if err := gen.Write(res.Files); err != nil {
		fmt.Fprintln(stderr, "dbosgen:", err)
		return exitError
	}
	if *verbose {
		for _, f := range res.Files {
			switch {
			case !f.Changed():
			case f.Content == nil:
				fmt.Fprintln(stdout, "removed", rel(cwd, f.Path))
			default:
				fmt.Fprintln(stdout, "wrote", rel(cwd, f.Path))
			}
		}
	}
	return exitOK
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprint(w, `dbosgen generates typed durable wrappers (dbos_gen.go) for Go functions
annotated with //dbos:workflow, //dbos:step and //dbos:transaction.

Usage:
  dbosgen [flags] [packages]
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  dbosgen %-20s %s\n", c.usage, c.summary)
	}
	fmt.Fprint(w, `
With no packages, dbosgen generates for the package in the current directory,
which is where go generate runs it.

Flags:
`)
	fs.PrintDefaults()
	fmt.Fprint(w, `
Examples:
  In a package, then run go generate ./...:
    //go:generate go run github.com/dbosgen/dbosgen/cmd/dbosgen

  Generate for every package of a module:
    dbosgen ./...

  Fail CI when a dbos_gen.go is out of date, showing the diff:
    dbosgen -check ./...

  Include files behind build tags:
    dbosgen -tags integration ./...

Directives (one per function, in its doc comment, no space after //):
  //dbos:workflow    name= max_recovery_attempts=100 timeout=<duration>
  //dbos:step        name= retries_allowed max_attempts=3 interval_seconds=1 | interval=1s
                     backoff_rate=2 max_interval=1h should_retry=<func(error) bool>
  //dbos:transaction name= isolation=serializable|repeatable_read|read_committed read_only

Errors are printed as file:line:col: message, all of them; on any error
dbosgen writes nothing and exits 1.
`)
}

func rel(dir, path string) string { return relPath(dir, path) }
