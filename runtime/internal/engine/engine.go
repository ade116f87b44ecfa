// Package engine is dbosgen's runtime: workflows, steps, transactions,
// recovery and the system database's use. Nothing imports it directly but
// two facades: runtime/dbos, what users call, and runtime/dbosimpl, what
// only generated code calls. Keeping the implementation here lets both
// facades share unexported state without either exposing the other's API.
package engine
