// Package dbos is dbosgen's runtime: durable workflows, steps and
// transactions for Go, with DBOS Transact's semantics and on DBOS's own
// system database.
//
// Users rarely call most of this package directly. They annotate functions
// with //dbos:workflow, //dbos:step and //dbos:transaction, run
// `go generate`, and call the generated wrappers (xWorkflow, startXWorkflow,
// xStep, xStepAsync, xTx). What users call themselves is small:
//
//   - Launch and (*Runtime).Shutdown: connect to the system database, create
//     DBOS's schema if it is new, and resume this executor's unfinished
//     workflows from their last completed step.
//   - WithWorkflowID: names the next workflow started with a context (its
//     idempotency key).
//   - RetrieveWorkflow, CancelWorkflow and (*Runtime).WorkflowStatus: look at
//     and stop workflows, in this process or another.
//   - StepID and CurrentStep inside a step; RegisterError for your sentinels.
//   - Config.Observer: an Observer sees every workflow execution, step and
//     transaction attempt as it happens; package runtime/dbosotel makes one
//     that produces OpenTelemetry spans and metrics.
//   - The sentinel errors (ErrWorkflowCancelled, ErrMaxStepRetriesExceeded,
//     ErrNondeterministic, ErrWorkflowConflict, ErrShutdown, ...), to test
//     with errors.Is.
//
// # The system database
//
// The system database is DBOS Transact's (schema version 125, as the DBOS Go
// SDK v1.8.0 leaves it) on PostgreSQL or SQLite, and values are written in
// DBOS's cross-language portable_json format. DBOS's CLI and clients in any
// language list, inspect, cancel and delete dbosgen workflows; a DBOS
// executor and a dbosgen executor can share one database, each recovering
// only its own application's workflows (Config.AppName is written as
// application_name on every row).
//
// # Semantics
//
// Inside a workflow every step, transaction and child workflow takes the
// next step ID (from 1, in call order) and its outcome is recorded under it;
// when the workflow runs again a recorded outcome is returned without running
// the function. A step costs one SQL statement on the system database; a
// transaction records its outcome in its own database transaction, so its
// effects happen exactly once. See the README for the full list.
package dbos
