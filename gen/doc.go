// Package gen is the dbosgen generator as a library.
//
// It turns //dbos:workflow, //dbos:step and //dbos:transaction directives in
// ordinary Go functions into a dbos_gen.go file per package, holding typed
// durable wrappers that call the runtime package
// github.com/dbosgen/dbosgen/runtime/dbos.
//
// The pipeline has four stages, each in its own file:
//
//	load      load.go       go/packages, tolerant of the not-yet-generated wrappers
//	directive directive.go  parse one //dbos: comment line (pure, fuzzed)
//	model     collect.go    directives + go/types → []*Func, with every error positioned
//	emit      emit.go       model → source text with jennifer
//
// Generate runs them and returns the files in memory; Write and Check (in
// output.go) are separate steps, so that -check and tests never touch disk
// and nothing is written when any package has an error.
package gen
