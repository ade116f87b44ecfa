// Package interop is dbosgen's proof from outside: its tests run the
// generated workflows of ./app with dbosgen, then read and operate them with
// DBOS Transact's own Go SDK (github.com/dbos-inc/dbos-transact-golang
// v1.8.0) as a client, with DBOS's CLI, and next to a DBOS executor on the
// same system database.
//
// It is a module of its own so that the main module never depends on DBOS.
// Run it with `make interop` from the repository root, or
// `cd interop && go test -count=1 ./...`. It needs PostgreSQL, as the main
// suite does (DBOSGEN_TEST_POSTGRES_URL); every test creates and drops its
// own database.
package interop
