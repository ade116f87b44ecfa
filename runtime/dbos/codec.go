package dbos

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// Values are stored as plain JSON (format "json" on every row), so DBOS's own
// tools can read them. Errors are stored as a JSON object that keeps the
// message, the type name and which registered sentinels the error matched.

type errorRecord struct {
	Message     string   `json:"message"`
	Type        string   `json:"type,omitempty"`
	Is          []string `json:"is,omitempty"`
	Step        string   `json:"step,omitempty"`
	MaxAttempts int      `json:"max_attempts,omitempty"`
	Panic       bool     `json:"panic,omitempty"`
	// Nondeterministic keeps a NondeterministicError's fields, so that
	// errors.As finds one after the round trip too.
	Nondeterministic *ndRecord     `json:"nondeterministic,omitempty"`
	Causes           []errorRecord `json:"causes,omitempty"`
}

type ndRecord struct {
	WorkflowID string `json:"workflow_id"`
	StepID     int    `json:"step_id"`
	Recorded   string `json:"recorded"`
	Called     string `json:"called"`
}

var sentinels = struct {
	sync.RWMutex
	names  []string
	byName map[string]error
}{byName: map[string]error{}}

func init() {
	for _, s := range []struct {
		name string
		err  error
	}{
		{"dbos.max_step_retries_exceeded", ErrMaxStepRetriesExceeded},
		{"dbos.nondeterministic", ErrNondeterministic},
		{"dbos.workflow_in_step", ErrWorkflowInStep},
		{"dbos.transaction_in_step", ErrTransactionInStep},
		{"dbos.workflow_cancelled", ErrWorkflowCancelled},
		{"dbos.max_recovery_attempts_exceeded", ErrMaxRecoveryAttemptsExceeded},
		{"dbos.unknown_workflow", ErrUnknownWorkflow},
		{"dbos.workflow_not_found", ErrWorkflowNotFound},
		{"dbos.workflow_conflict", ErrWorkflowConflict},
		{"dbos.corrupt_record", ErrCorruptRecord},
		{"dbos.panic", ErrPanic},
		{"context.canceled", context.Canceled},
		{"context.deadline_exceeded", context.DeadlineExceeded},
		{"sql.no_rows", sql.ErrNoRows},
	} {
		registerError(s.name, s.err)
	}
}

// RegisterError makes errors.Is(replayed, err) hold for errors that matched
// err when they were recorded. Register your package's sentinel errors in an
// init function; the sentinel's message is its name in the database, so keep
// messages unique and stable.
func RegisterError(err error) {
	registerError("user:"+err.Error(), err)
}

func registerError(name string, err error) {
	sentinels.Lock()
	defer sentinels.Unlock()
	if _, ok := sentinels.byName[name]; !ok {
		sentinels.names = append(sentinels.names, name)
	}
	sentinels.byName[name] = err
}

func recordOf(err error) errorRecord {
	r := errorRecord{Message: err.Error(), Type: fmt.Sprintf("%T", err)}
	if rec, ok := err.(*RecordedError); ok {
		r.Type = rec.Type
	}
	sentinels.RLock()
	for _, name := range sentinels.names {
		if errors.Is(err, sentinels.byName[name]) {
			r.Is = append(r.Is, name)
		}
	}
	sentinels.RUnlock()
	switch e := err.(type) {
	case *MaxStepRetriesExceededError:
		r.Step, r.MaxAttempts = e.Step, e.MaxAttempts
		for _, c := range e.Errors {
			r.Causes = append(r.Causes, recordOf(c))
		}
	case *PanicError:
		r.Panic = true
		r.Message = e.Value
	case *NondeterministicError:
		r.Nondeterministic = &ndRecord{WorkflowID: e.WorkflowID, StepID: e.StepID, Recorded: e.Recorded, Called: e.Called}
	}
	return r
}

func encodeError(err error) string {
	if err == nil {
		return ""
	}
	b, _ := json.Marshal(recordOf(err)) // strings, ints and bools always marshal
	return string(b)
}

func (r errorRecord) toError() error {
	var causes []error
	for _, c := range r.Causes {
		causes = append(causes, c.toError())
	}
	switch {
	case r.Type == "*dbos.MaxStepRetriesExceededError":
		return &MaxStepRetriesExceededError{Step: r.Step, MaxAttempts: r.MaxAttempts, Errors: causes}
	case r.Panic:
		return &PanicError{Value: r.Message}
	case r.Nondeterministic != nil:
		nd := r.Nondeterministic
		return &NondeterministicError{WorkflowID: nd.WorkflowID, StepID: nd.StepID, Recorded: nd.Recorded, Called: nd.Called}
	}
	e := &RecordedError{Message: r.Message, Type: r.Type, causes: causes}
	sentinels.RLock()
	for _, name := range r.Is {
		if s, ok := sentinels.byName[name]; ok {
			e.is = append(e.is, s)
		}
	}
	sentinels.RUnlock()
	return e
}

func decodeError(s string) (error, error) {
	if s == "" {
		return nil, nil
	}
	var r errorRecord
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return nil, err
	}
	return r.toError(), nil
}

func encodeValue[T any](v T) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func decodeValue[T any](s string) (T, error) {
	var v T
	if s == "" {
		return v, nil
	}
	err := json.Unmarshal([]byte(s), &v)
	return v, err
}
