// Command dbosgen generates typed durable wrappers for functions annotated
// with //dbos:workflow, //dbos:step and //dbos:transaction.
//
// Run it from go generate:
//
//	//go:generate go run github.com/dbosgen/dbosgen/cmd/dbosgen
//
// or over packages: dbosgen ./... (dbosgen -h for more).
package main

import (
	"os"

	"github.com/dbosgen/dbosgen/cmd/dbosgen/internal/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
