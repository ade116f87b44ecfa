package engine

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

// Sentinel errors. Every error the runtime returns wraps one of them, and
// they still match with errors.Is after the error was recorded and replayed.
var (
	// ErrMaxStepRetriesExceeded: a step with retries allowed failed every attempt.
	ErrMaxStepRetriesExceeded = errors.New("dbos: step exhausted its retries")
	// ErrNondeterministic: on replay, a step ID was recorded under another name.
	ErrNondeterministic = errors.New("dbos: workflow is not deterministic")
	// ErrWorkflowInStep: workflows cannot be called, started or enqueued from a step.
	ErrWorkflowInStep = errors.New("dbos: workflows cannot be called or started from within a step or transaction")
	// ErrTransactionInStep: a transaction called from a step or another transaction.
	ErrTransactionInStep = errors.New("dbos: a transaction cannot run inside a step or another transaction")
	// ErrNoRuntime: no runtime in the context and none launched in the process.
	ErrNoRuntime = errors.New("dbos: no runtime: call dbos.Launch first, or pass a context made with dbos.WithRuntime")
	// ErrShutdown: the runtime was shut down.
	ErrShutdown = errors.New("dbos: runtime shut down")
	// ErrWorkflowCancelled: the workflow was cancelled or ran past its timeout.
	ErrWorkflowCancelled = errors.New("dbos: workflow cancelled")
	// ErrMaxRecoveryAttemptsExceeded: the workflow was parked (dead-lettered).
	ErrMaxRecoveryAttemptsExceeded = errors.New("dbos: workflow exceeded its max recovery attempts")
	// ErrUnknownWorkflow: a workflow name with no registered function.
	ErrUnknownWorkflow = errors.New("dbos: workflow is not registered in this binary")
	// ErrWorkflowNotFound: no workflow with that ID.
	ErrWorkflowNotFound = errors.New("dbos: workflow not found")
	// ErrWorkflowConflict: the workflow ID belongs to a workflow of another
	// name, or was started with other inputs.
	ErrWorkflowConflict = errors.New("dbos: workflow ID already used by a different workflow")
	// ErrInvalidWorkflowID: an empty or oversized workflow ID.
	ErrInvalidWorkflowID = errors.New("dbos: invalid workflow ID")
	// ErrCorruptRecord: a recorded input, output or error cannot be decoded.
	ErrCorruptRecord = errors.New("dbos: recorded value cannot be decoded")
	// ErrUnsupportedFormat: a recorded value is in a serialization format
	// dbosgen cannot read (DBOS Python's py_pickle, say); the error names the
	// workflow, and no other workflow is affected.
	ErrUnsupportedFormat = errors.New("dbos: unsupported serialization format")
	// ErrPanic: a step, transaction or workflow panicked.
	ErrPanic = errors.New("dbos: panic")
	// ErrSchemaTooNew: the system database was upgraded by a newer release.
	ErrSchemaTooNew = sysdb.ErrSchemaTooNew
	// ErrConfig: the configuration cannot be used.
	ErrConfig = errors.New("dbos: bad configuration")
	// ErrDatabase: the system or application database failed.
	ErrDatabase = errors.New("dbos: database error")
	// ErrExecutorInUse: Launch was given an executor ID whose lease another
	// live process (or runtime) holds.
	ErrExecutorInUse = errors.New("dbos: executor ID in use by a live process")
	// ErrLeaseLost: this runtime lost its executor's lease (a long pause, a
	// partition): its workflows stop at their next step, to be finished by
	// the executor that adopts them or by this one once it holds the lease
	// again.
	ErrLeaseLost = errors.New("dbos: executor lease lost")
)

// MaxStepRetriesExceededError is returned when a step fails every attempt.
// It matches ErrMaxStepRetriesExceeded and unwraps to every attempt's error.
type MaxStepRetriesExceededError struct {
	Step        string
	MaxAttempts int
	Errors      []error
}

func (e *MaxStepRetriesExceededError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dbos: step %s failed all %d attempts", e.Step, e.MaxAttempts)
	if n := len(e.Errors); n > 0 {
		fmt.Fprintf(&b, "; last error: %v", e.Errors[n-1])
	}
	return b.String()
}

// Is makes errors.Is(err, ErrMaxStepRetriesExceeded) true.
func (e *MaxStepRetriesExceededError) Is(target error) bool {
	return target == ErrMaxStepRetriesExceeded
}

// Unwrap returns every attempt's error, first attempt first.
func (e *MaxStepRetriesExceededError) Unwrap() []error { return e.Errors }

// NondeterministicError says which step ID was recorded under which name.
type NondeterministicError struct {
	WorkflowID string
	StepID     int
	Recorded   string
	Called     string
}

func (e *NondeterministicError) Error() string {
	return fmt.Sprintf("dbos: workflow %s is not deterministic: step %d was recorded as %q but this execution called %q",
		e.WorkflowID, e.StepID, e.Recorded, e.Called)
}

// Is makes errors.Is(err, ErrNondeterministic) true.
func (e *NondeterministicError) Is(target error) bool { return target == ErrNondeterministic }

// PanicError is a recovered panic. Stack is empty after a replay.
type PanicError struct {
	Value string
	Stack string
}

func (e *PanicError) Error() string { return "dbos: panic: " + e.Value }

// Is makes errors.Is(err, ErrPanic) true.
func (e *PanicError) Is(target error) bool { return target == ErrPanic }

// RecordedError is an error read back from the system database. It keeps the
// original message and type name, matches with errors.Is every registered
// sentinel the original matched (see RegisterError), and unwraps to the
// recorded causes it had.
type RecordedError struct {
	Message string
	Type    string
	is      []error
	causes  []error
}

func (e *RecordedError) Error() string { return e.Message }

// Is matches the sentinels the original error matched when it was recorded.
func (e *RecordedError) Is(target error) bool {
	for _, s := range e.is {
		if s == target {
			return true
		}
	}
	return false
}

// Unwrap returns the recorded causes.
func (e *RecordedError) Unwrap() []error { return e.causes }

// runErr is an error about a workflow or step, wrapping a sentinel and a cause.
type runErr struct {
	msg   string
	kind  error
	cause error
}

func (e *runErr) Error() string {
	if e.cause != nil {
		return e.msg + ": " + e.cause.Error()
	}
	return e.msg
}
func (e *runErr) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

func errorf(kind, cause error, format string, args ...any) error {
	return &runErr{msg: fmt.Sprintf(format, args...), kind: kind, cause: cause}
}
