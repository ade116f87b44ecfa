// Package vet finds nondeterminism in workflow bodies: what dbosgen vet and
// the generator's warnings report.
//
// A workflow must take the same path every time it runs, because recovery
// runs it again and matches its step calls, in order, to the recorded
// outcomes. Steps and transactions are where nondeterminism belongs: their
// outcomes are recorded. Everything else a workflow reaches is checked, by
// following calls into functions of the same module, across packages:
//
//	clock        time.Now, Since, Until, Sleep, After, Tick, NewTimer, ...
//	random       math/rand, math/rand/v2 (seeded generators excepted), crypto/rand, uuid.New...
//	environment  os.Getenv, os.Getpid, os.Hostname, os.Args, os/exec, syscall, ...
//	file         os file functions, io/ioutil, filepath.Walk, ...
//	network      net, net/http clients and servers, net/smtp, net/rpc
//	database     database/sql, sqlx and pgx outside a //dbos:transaction function
//	goroutine    go statements
//	select       select statements
//	map-order    ranging over a map (or maps.Keys/Values/All) when the loop calls steps
//	package-var  writes of package-level variables; reads of the module's
//	             package-level variables that are assigned after initialization
//	sync         sync and sync/atomic
//	runtime      the runtime package (and runtime/debug, pprof, trace)
//	direct-call  calling a step or transaction function rather than its wrapper
//
// What is not followed: calls to generated wrappers (dbos_gen.go), to the
// runtime (github.com/dbosgen/dbosgen/runtime/...), which is safe by
// construction, and the bodies of steps and transactions. Calls through
// interfaces and function values are not followed either (their targets are
// not known statically); func literals are checked where they are written.
//
// A comment "//dbos:allow <reason>" on the line of a finding, or on the line
// above it, silences it; on the line of a call, it also stops the check from
// following that call. In the doc comment of a function it trusts the whole
// function: nothing in it, or reached from it, is reported. The reason is
// required.
//
// The check is a golang.org/x/tools/go/analysis Analyzer: each package
// exports, as facts, a summary of what its functions reach, so that a
// workflow's package sees through calls into the packages it imports. Check
// and Run are the driver: they load what the packages need (the module's
// packages from source, everything else from export data) and run the
// analyzer in dependency order.
package vet
