package dbos

import "github.com/dbosgen/dbosgen/runtime/internal/engine"

// Errors the runtime returns, to test with errors.Is. They survive the
// database: a recorded error matches the sentinels it matched when recorded.
var (
	ErrMaxStepRetriesExceeded      = engine.ErrMaxStepRetriesExceeded      // a step exhausted its retries
	ErrNondeterministic            = engine.ErrNondeterministic            // a replay called something else at a step ID
	ErrWorkflowInStep              = engine.ErrWorkflowInStep              // a workflow called, started or enqueued from a step
	ErrTransactionInStep           = engine.ErrTransactionInStep           // a transaction inside a step or transaction
	ErrNoRuntime                   = engine.ErrNoRuntime                   // no runtime launched or attached
	ErrShutdown                    = engine.ErrShutdown                    // the runtime was shut down
	ErrWorkflowCancelled           = engine.ErrWorkflowCancelled           // cancelled, or past its deadline
	ErrMaxRecoveryAttemptsExceeded = engine.ErrMaxRecoveryAttemptsExceeded // parked after too many recoveries
	ErrUnknownWorkflow             = engine.ErrUnknownWorkflow             // a recorded name this binary does not register
	ErrWorkflowNotFound            = engine.ErrWorkflowNotFound            // no workflow with that ID
	ErrWorkflowConflict            = engine.ErrWorkflowConflict            // an ID reused by another workflow or other inputs
	ErrInvalidWorkflowID           = engine.ErrInvalidWorkflowID           // an empty, oversized or non-text ID
	ErrCorruptRecord               = engine.ErrCorruptRecord               // a recorded value that cannot be decoded
	ErrUnsupportedFormat           = engine.ErrUnsupportedFormat           // a serialization format dbosgen cannot read
	ErrPanic                       = engine.ErrPanic                       // a step, transaction or workflow panicked
	ErrSchemaTooNew                = engine.ErrSchemaTooNew                // kept for compatibility; a newer DBOS schema is used
	ErrConfig                      = engine.ErrConfig                      // bad configuration
	ErrDatabase                    = engine.ErrDatabase                    // the database failed
	ErrExecutorInUse               = engine.ErrExecutorInUse               // Launch: the executor ID's lease is held by a live process
	ErrLeaseLost                   = engine.ErrLeaseLost                   // this runtime lost its executor lease; its workflows stopped
)

// Error types, to inspect with errors.As.
type (
	// MaxStepRetriesExceededError carries the step's name, its max attempts
	// and every attempt's error (Unwrap() []error).
	MaxStepRetriesExceededError = engine.MaxStepRetriesExceededError
	// NondeterministicError names the step ID and both step names.
	NondeterministicError = engine.NondeterministicError
	// PanicError carries a recovered panic's value and stack.
	PanicError = engine.PanicError
	// RecordedError is an error read back from the database.
	RecordedError = engine.RecordedError
)

// Workflow statuses, as DBOS spells them.
const (
	StatusPending                     = engine.StatusPending
	StatusSuccess                     = engine.StatusSuccess
	StatusError                       = engine.StatusError
	StatusCancelled                   = engine.StatusCancelled
	StatusMaxRecoveryAttemptsExceeded = engine.StatusMaxRecoveryAttemptsExceeded
)

// Environment variables read when the matching Config field is empty.
const (
	EnvSystemDatabaseURL = engine.EnvSystemDatabaseURL
	EnvAppDatabaseURL    = engine.EnvAppDatabaseURL
	EnvAppVersion        = engine.EnvAppVersion
	EnvExecutorID        = engine.EnvExecutorID
)

// MaxWorkflowIDLength bounds workflow IDs.
const MaxWorkflowIDLength = engine.MaxWorkflowIDLength
