// Package dbosimpl is for generated code only: the wrappers dbosgen writes in
// dbos_gen.go call it. Its API may change in any release without notice; do
// not call it from hand-written code (use the generated wrappers and package
// runtime/dbos). It is the seam, as protobuf's protoimpl is, that lets the
// generator and the runtime change together.
package dbosimpl

import (
	"context"

	"github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/dbosgen/dbosgen/runtime/internal/engine"
	"github.com/jmoiron/sqlx"
)

// StepOptions, TransactionOptions and WorkflowOptions come from directives.
type (
	StepOptions        = engine.StepOptions
	TransactionOptions = engine.TransactionOptions
	WorkflowOptions    = engine.WorkflowOptions
	Isolation          = engine.Isolation
)

// Transaction isolation levels.
const (
	Serializable   = engine.Serializable
	RepeatableRead = engine.RepeatableRead
	ReadCommitted  = engine.ReadCommitted
)

// Workflow is a registered workflow with typed arguments A (a generated
// struct, one field per parameter) and result R.
type Workflow[A, R any] = engine.Workflow[A, R]

// RegisterWorkflow registers fn for recovery under opts.Name.
func RegisterWorkflow[A, R any](opts WorkflowOptions, fn func(context.Context, A) (R, error)) *Workflow[A, R] {
	return engine.RegisterWorkflow(opts, fn)
}

// RegisterVersion records the hash of a package's annotated code.
func RegisterVersion(pkgPath, hash string) { engine.RegisterVersion(pkgPath, hash) }

// RunStep runs fn as a durable step.
func RunStep[R any](ctx context.Context, opts *StepOptions, fn func(context.Context) (R, error)) (R, error) {
	return engine.RunStep(ctx, opts, fn)
}

// RunStepAsync runs fn as a durable step in a new goroutine.
func RunStepAsync[R any](ctx context.Context, opts *StepOptions, fn func(context.Context) (R, error)) *dbos.Future[R] {
	return engine.RunStepAsync(ctx, opts, fn)
}

// RunTransaction runs fn in a database transaction that records its outcome.
func RunTransaction[R any](ctx context.Context, opts *TransactionOptions, fn func(context.Context, *sqlx.Tx) (R, error)) (R, error) {
	return engine.RunTransaction(ctx, opts, fn)
}
