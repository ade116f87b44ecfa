package engine

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

// Values are stored in DBOS's cross-language format, portable_json: plain
// JSON; a workflow's inputs in DBOS's positional-arguments envelope; errors
// in DBOS's portable error shape ({"name", "message", "data"}), whose data
// carries dbosgen's own record of the error (errorRecord) under "dbosgen",
// so that sentinels and dbosgen's error types survive the round trip while
// DBOS's tools in any language still read the name and message.

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
	// This package's types are recorded under their public names (package
	// dbos aliases them), which stay stable whatever the package layout.
	r := errorRecord{Message: err.Error(), Type: typeName(err)}
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

// portableError is DBOS's portable error shape.
type portableError struct {
	Name    string `json:"name"`
	Message string `json:"message"`
	Code    any    `json:"code,omitempty"`
	Data    any    `json:"data,omitempty"`
}

// portableData is what dbosgen keeps in a portable error's data.
type portableData struct {
	Dbosgen *errorRecord `json:"dbosgen,omitempty"`
}

// typeName is err's type as %T spells it, but with this package's types
// under their public names: package dbos aliases them, and recorded names
// must not change with the package layout.
func typeName(err error) string {
	t := reflect.TypeOf(err)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.PkgPath() == enginePath {
		return strings.Replace(fmt.Sprintf("%T", err), "engine.", "dbos.", 1)
	}
	return fmt.Sprintf("%T", err)
}

var enginePath = reflect.TypeFor[RecordedError]().PkgPath()

func encodeError(err error) string {
	if err == nil {
		return ""
	}
	r := recordOf(err)
	name := strings.TrimPrefix(r.Type, "*")
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	if name == "" || name == "errorString" || name == "wrapError" || name == "wrapErrors" {
		name = "Error"
	}
	b, _ := json.Marshal(portableError{Name: name, Message: err.Error(), Data: portableData{Dbosgen: &r}}) // strings, ints and bools always marshal
	return string(b)
}

// decodeError reads an error recorded in format. An error dbosgen did not
// write comes back as a *RecordedError with its name and message; one that
// is not JSON (the DBOS Go SDK's gob-encoded errors) keeps its text.
func decodeError(s, format string) (error, error) {
	if s == "" {
		return nil, nil
	}
	var p struct {
		Name    string          `json:"name"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(s), &p); err != nil || (p.Name == "" && p.Message == "") {
		if format == sysdb.FormatPortable {
			return nil, fmt.Errorf("not a portable_json error: %.80q", s)
		}
		return &RecordedError{Message: s}, nil
	}
	var d portableData
	if len(p.Data) > 0 && json.Unmarshal(p.Data, &d) == nil && d.Dbosgen != nil {
		return d.Dbosgen.toError(), nil
	}
	return &RecordedError{Message: p.Message, Type: p.Name}, nil
}

// nullJSON is how portable_json stores nil and a result-less function's
// struct{} output.
const nullJSON = "null"

func encodeValue[T any](v T) (string, error) {
	if _, empty := any(v).(struct{}); empty {
		return nullJSON, nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// encodeValueAs encodes v in format: DBOS_JSON (and a row with no format,
// which DBOS reads as DBOS_JSON) as base64 of JSON, anything else as
// portable_json.
func encodeValueAs(v any, format string) (string, error) {
	if format != sysdb.FormatDBOSJSON && format != "" {
		return encodeValue(v)
	}
	if v == nil {
		return dbosNil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// dbosNil is the DBOS Go SDK's DBOS_JSON marker for a nil value.
const dbosNil = "__DBOS_NIL"

// decodeValue reads a value recorded in format: portable_json as it is,
// DBOS_JSON (and rows with no format, which DBOS reads as DBOS_JSON) as
// base64 of JSON.
func decodeValue[T any](s, format string) (T, error) {
	var v T
	b, err := jsonBytes(s, format)
	if err != nil || b == nil {
		return v, err
	}
	err = json.Unmarshal(b, &v)
	return v, err
}

func jsonBytes(s, format string) ([]byte, error) {
	switch format {
	case sysdb.FormatPortable:
		if s == "" {
			return nil, nil
		}
		return []byte(s), nil
	case sysdb.FormatDBOSJSON, "":
		if s == "" || s == dbosNil {
			return nil, nil
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("DBOS_JSON value is not base64: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: values in serialization format %q cannot be read by dbosgen (it reads portable_json and DBOS_JSON)",
		ErrUnsupportedFormat, format)
}

// portableArgs is DBOS's envelope for a workflow's inputs.
type portableArgs struct {
	PositionalArgs []json.RawMessage `json:"positionalArgs"`
	NamedArgs      map[string]any    `json:"namedArgs"`
}

// encodeArgs stores a workflow's arguments (the generated struct with one
// field per parameter, in order) as positional arguments, so that DBOS's
// tools show them as the call's arguments and DBOS clients can enqueue them.
func encodeArgs[A any](a A) (string, error) {
	env := portableArgs{PositionalArgs: []json.RawMessage{}, NamedArgs: map[string]any{}}
	rv := reflect.ValueOf(a)
	if rv.Kind() != reflect.Struct {
		b, err := json.Marshal(a)
		if err != nil {
			return "", err
		}
		env.PositionalArgs = append(env.PositionalArgs, b)
	} else {
		for i := range rv.NumField() {
			if !rv.Type().Field(i).IsExported() {
				continue
			}
			b, err := json.Marshal(rv.Field(i).Interface())
			if err != nil {
				return "", fmt.Errorf("argument %d (%s): %w", i+1, rv.Type().Field(i).Name, err)
			}
			env.PositionalArgs = append(env.PositionalArgs, b)
		}
	}
	b, err := json.Marshal(env)
	return string(b), err
}

// decodeArgs reads a workflow's recorded inputs. portable_json holds the
// positional envelope; DBOS_JSON holds what a DBOS Go client passed as the
// workflow's one input, taken as the first parameter (or as the whole
// argument struct when the workflow has several).
func decodeArgs[A any](s, format string) (A, error) {
	var a A
	b, err := jsonBytes(s, format)
	if err != nil || b == nil {
		return a, err
	}
	rv := reflect.ValueOf(&a).Elem()
	fields := exportedFields(rv)
	if format != sysdb.FormatPortable {
		if len(fields) == 1 {
			return a, json.Unmarshal(b, rv.Field(fields[0]).Addr().Interface())
		}
		return a, json.Unmarshal(b, &a)
	}
	var env portableArgs
	if err := json.Unmarshal(b, &env); err != nil {
		return a, fmt.Errorf("inputs are not DBOS's positional-arguments envelope: %w", err)
	}
	if rv.Kind() != reflect.Struct {
		if len(env.PositionalArgs) != 1 {
			return a, fmt.Errorf("%d positional arguments, want 1", len(env.PositionalArgs))
		}
		return a, json.Unmarshal(env.PositionalArgs[0], &a)
	}
	if len(env.PositionalArgs) > len(fields) {
		return a, fmt.Errorf("%d positional arguments, the workflow takes %d", len(env.PositionalArgs), len(fields))
	}
	if len(env.NamedArgs) > 0 {
		return a, fmt.Errorf("named arguments %v: dbosgen workflows take positional arguments only", keys(env.NamedArgs))
	}
	for i, raw := range env.PositionalArgs {
		if err := json.Unmarshal(raw, rv.Field(fields[i]).Addr().Interface()); err != nil {
			return a, fmt.Errorf("argument %d (%s): %w", i+1, rv.Type().Field(fields[i]).Name, err)
		}
	}
	return a, nil
}

func exportedFields(rv reflect.Value) []int {
	if rv.Kind() != reflect.Struct {
		return nil
	}
	var out []int
	for i := range rv.NumField() {
		if rv.Type().Field(i).IsExported() {
			out = append(out, i)
		}
	}
	return out
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
