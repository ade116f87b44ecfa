package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/dbosgen/dbosgen/gen/vet"
)

func init() {
	commands = append(commands, command{
		name:    "vet",
		usage:   "vet [flags] [packages]",
		summary: "report nondeterminism in workflows, outside steps and transactions (dbosgen vet -h)",
		run:     runVet,
	})
}

func runVet(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dbosgen vet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tags := fs.String("tags", "", "comma-separated build tags, as for go build")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: dbosgen vet [flags] [packages]

vet reports what can make a workflow take another path when it runs again
(recovery replays its steps' recorded outcomes, in call order): everything a
//dbos:workflow body reaches outside steps and transactions, following calls
into the module's functions, across packages. Each finding is printed as
file:line:col with the chain of calls from the workflow, and what to do
instead:

  clock         time.Now, Since, Until, Sleep, After, Tick, NewTimer, ...
  random        math/rand, math/rand/v2, crypto/rand, uuid.New
  environment   os.Getenv, os.Getpid, os.Hostname, os.Args, os/exec, syscall
  file          os file functions, io/ioutil, filepath.Walk, ...
  network       net, net/http, net/smtp, net/rpc
  database      database/sql, sqlx, pgx outside a //dbos:transaction
  goroutine     go statements (use async steps)
  select        select statements (use async steps and their Futures)
  map-order     a range over a map whose body calls steps
  package-var   writes of package-level variables, and reads of those
                assigned after initialization
  sync          sync and sync/atomic
  runtime       the runtime package
  direct-call   a step or transaction function called without its wrapper

A comment //dbos:allow <reason> on the line of a finding, or on the line
above, silences it (and stops vet from following a call on that line); in a
function's doc comment it trusts the whole function. The reason is required.

With no packages, vet checks the package in the current directory. It exits
1 when it reports anything. go generate (dbosgen) prints the same findings
as warnings.

Flags:
`)
		fs.PrintDefaults()
		fmt.Fprint(stderr, `
Examples:
  dbosgen vet ./...
  go run github.com/dbosgen/dbosgen/cmd/dbosgen vet ./...
`)
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	cwd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(stderr, "dbosgen vet:", err)
		return exitError
	}
	cfg := vet.Config{Dir: cwd}
	if *tags != "" {
		cfg.BuildFlags = []string{"-tags=" + *tags}
	}
	findings, err := vet.Run(cfg, fs.Args()...)
	var le *vet.LoadError
	switch {
	case errors.As(err, &le):
		for _, e := range le.Errors {
			fmt.Fprintln(stderr, e)
		}
		fmt.Fprintln(stderr, "dbosgen vet: the packages do not type-check (if the errors name wrappers, run go generate first)")
		return exitError
	case err != nil:
		msg := err.Error()
		if i := strings.LastIndex(msg, "stderr: "); i >= 0 {
			msg = strings.TrimSpace(msg[i+len("stderr: "):])
		}
		fmt.Fprintln(stderr, "dbosgen vet:", msg)
		return exitError
	}
	for _, f := range findings {
		fmt.Fprintln(stderr, f.Format(cwd))
	}
	if n := len(findings); n > 0 {
		fmt.Fprintf(stderr, "dbosgen vet: %d %s\n", n, plural(n, "finding", "findings"))
		return exitError
	}
	return exitOK
}
