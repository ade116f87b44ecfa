package engine

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

type ctxKey int

const (
	runtimeKey ctxKey = iota
	workflowKey
	stepKey
	workflowIDKey
)

// workflowState is one execution of one workflow, carried by its context.
type workflowState struct {
	rt       *Runtime
	id       string
	name     string
	lastStep atomic.Int32
	// recorded holds the outcomes a previous execution recorded, loaded once
	// when the execution starts; read-only afterwards.
	recorded map[int]sysdb.StepRow
	abortErr atomic.Pointer[error]
	// ctx is the body's own context (see workflowContext): whatever context
	// the body hands a wrapper, this one says whether the workflow may go on.
	ctx context.Context
	// format is the workflow row's serialization: its output is written in
	// it, so that the DBOS client that started a DBOS_JSON workflow reads
	// the result it expects.
	format string
	// deadlineMS is the recorded deadline (unix ms; 0: none), handed down
	// to children.
	deadlineMS int64
	// async counts the async steps still running: the workflow finishes
	// only after they are recorded.
	async asyncSteps
	// kit is runtime/dbostest's state (testkit.go); nil normally.
	kit *kit
}

// nextStepID hands out step IDs in call order, starting at 1.
func (w *workflowState) nextStepID() int { return int(w.lastStep.Add(1)) }

// stepState marks a context as inside a step or transaction.
type stepState struct {
	info StepInfo
	tx   bool
}

// StepInfo describes the step a context is running in.
type StepInfo struct {
	WorkflowID  string // empty outside a workflow
	StepID      int    // 0 outside a workflow
	Name        string
	Attempt     int // from 0
	MaxAttempts int
}

// WithRuntime returns a context whose workflow and step calls use rt. Without
// it they use the first runtime launched in the process that is still running.
func WithRuntime(ctx context.Context, rt *Runtime) context.Context {
	return context.WithValue(ctx, runtimeKey, rt)
}

// WithWorkflowID makes the next workflow started with ctx use id. Starting a
// workflow with the ID of a finished one returns its recorded result; with the
// ID of an unfinished one, resumes it. Either way the ID must belong to the
// same workflow called with the same arguments: otherwise the call fails
// with ErrWorkflowConflict.
func WithWorkflowID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, workflowIDKey, id)
}

// WorkflowID returns the ID of the workflow ctx runs in.
func WorkflowID(ctx context.Context) (string, bool) {
	if w := workflowFrom(ctx); w != nil {
		return w.id, true
	}
	return "", false
}

// StepID returns the step ID of the step ctx runs in, inside a workflow.
func StepID(ctx context.Context) (int, bool) {
	s, ok := ctx.Value(stepKey).(*stepState)
	if !ok || s == nil || s.info.StepID == 0 {
		return 0, false
	}
	return s.info.StepID, true
}

// CurrentStep describes the step or transaction ctx runs in, including the
// current attempt and the maximum number of attempts.
func CurrentStep(ctx context.Context) (StepInfo, bool) {
	s, ok := ctx.Value(stepKey).(*stepState)
	if !ok || s == nil {
		return StepInfo{}, false
	}
	return s.info, true
}

func workflowFrom(ctx context.Context) *workflowState {
	w, _ := ctx.Value(workflowKey).(*workflowState)
	return w
}

func stepFrom(ctx context.Context) *stepState {
	s, _ := ctx.Value(stepKey).(*stepState)
	return s
}

// runtimeFrom finds the runtime for ctx: the workflow's, the attached one, or
// the process default. A runtime that was shut down, or none left running
// after one was, is ErrShutdown rather than ErrNoRuntime: the caller needs to
// hear that the runtime ended, not to be told to launch one.
func runtimeFrom(ctx context.Context) (*Runtime, error) {
	if w := workflowFrom(ctx); w != nil {
		return w.rt, nil // inside a workflow, halted decides what may start
	}
	rt, err := findRuntime(ctx)
	if err != nil {
		return nil, err
	}
	if err := rt.shutDownError(); err != nil {
		return nil, err
	}
	return rt, nil
}

// findRuntime is runtimeFrom without the check that the runtime still runs.
func findRuntime(ctx context.Context) (*Runtime, error) {
	if w := workflowFrom(ctx); w != nil {
		return w.rt, nil
	}
	if rt, ok := ctx.Value(runtimeKey).(*Runtime); ok && rt != nil {
		return rt, nil
	}
	if rt := defaultRuntime(); rt != nil {
		return rt, nil
	}
	if everShutDown() {
		return nil, fmt.Errorf("%w: every runtime launched in this process was shut down", ErrShutdown)
	}
	return nil, ErrNoRuntime
}
