package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

// The seam of runtime/dbostest, and nothing else: a crash simulated after a
// workflow's n-th step, and the replay of a finished workflow against its
// recorded outcomes. The rest of the engine knows of it through
// workflowState.kit (nil unless a test asked) and four calls: kitStart when
// an execution starts, kitCheck once a step, transaction or child has its
// step ID, kitChild before a child is started, kitConclude before an outcome
// is recorded.

// ErrCrashed is returned by the wrappers of a workflow started with
// WithCrashAfter once it passes its crash point, and by its handle.
var ErrCrashed = errors.New("dbos: simulated crash")

type crashKey struct{}

// WithCrashAfter makes the workflow started directly with the returned
// context stop as if its process died once it has taken n step IDs: its
// step, transaction or child workflow n+1 does not run (with n steps or
// fewer, the process dies after the last), and its outcome is not
// recorded, so it stays PENDING until a later execution (a Launch, or a
// call with its ID) recovers it. Children it starts are not affected.
func WithCrashAfter(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, crashKey{}, max(n, 0))
}

// kit is an execution's test state.
type kit struct {
	crashAfter int // crash at step ID crashAfter+1; -1: never
	crashed    atomic.Bool
	crashedAt  atomic.Int32
	replaying  bool
	unrecorded atomic.Pointer[string] // the first step a replay called that was not recorded
}

// kitStart returns the test state of an execution started with p, nil for
// an ordinary one.
func kitStart(p startParams) *kit {
	n, ok := p.ctx.Value(crashKey{}).(int)
	if !ok || p.parentID != "" {
		return nil
	}
	return &kit{crashAfter: n}
}

// kitCheck says whether the step, transaction or child with step ID id may
// run: not past a crash point, and, in a replay, only if recorded.
func (w *workflowState) kitCheck(id int) error {
	k := w.kit
	switch {
	case k == nil:
		return nil
	case k.crashAfter >= 0 && id > k.crashAfter:
		if k.crashed.CompareAndSwap(false, true) {
			k.crashedAt.Store(int32(id))
		}
		return w.crashError()
	case k.replaying:
		if _, ok := w.recorded[id]; !ok {
			p := fmt.Sprintf("step %d was not recorded: the recorded execution stopped at step %d", id, maxStep(w.recorded))
			k.unrecorded.CompareAndSwap(nil, &p)
			return fmt.Errorf("%w: replay of workflow %s: %s", ErrNondeterministic, w.id, p)
		}
	}
	return nil
}

func (w *workflowState) crashError() error {
	at := fmt.Sprintf("before its step %d", w.kit.crashedAt.Load())
	if w.kit.crashedAt.Load() == 0 {
		at = "before its outcome was recorded"
	}
	return fmt.Errorf("%w of workflow %s %s (dbostest.CrashAfter(ctx, %d)): it stays PENDING until it is recovered",
		ErrCrashed, w.id, at, w.kit.crashAfter)
}

// kitChild returns, in a replay, a handle on the recorded child id instead
// of starting it: a replay writes nothing.
func kitChild[R any](w *workflowState, id string) (*WorkflowHandle[R], bool) {
	if w.kit == nil || !w.kit.replaying {
		return nil, false
	}
	return &WorkflowHandle[R]{rt: w.rt, id: id}, true
}

// kitConclude stops an execution started with WithCrashAfter before it
// records an outcome: it crashed at its step n+1, or, with n steps or
// fewer, dies now, after its last one.
func (w *workflowState) kitConclude() error {
	if w.kit == nil || w.kit.crashAfter < 0 {
		return nil
	}
	w.kit.crashed.Store(true)
	return w.crashError()
}

// ReplayWorkflow runs the finished workflow id again, in this runtime,
// against its recorded outcomes: every step, transaction and child returns
// what the recorded execution saw, nothing runs for real and nothing is
// written. It returns an error matching ErrNondeterministic when the body
// calls something under another name or in another order than recorded,
// calls more or fewer steps, or returns another result or error than the
// recorded one.
func ReplayWorkflow(ctx context.Context, rt *Runtime, id string) error {
	if err := rt.shutDownError(); err != nil {
		return err
	}
	row, err := rt.store.Workflow(ctx, id)
	if errors.Is(err, sysdb.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrWorkflowNotFound, id)
	}
	if err != nil {
		return errorf(ErrDatabase, err, "dbos: reading workflow %s", id)
	}
	if row.Status != sysdb.StatusSuccess && row.Status != sysdb.StatusError {
		return fmt.Errorf("dbos: workflow %s is %s: only a finished workflow (%s or %s) can be replayed", id, row.Status, sysdb.StatusSuccess, sysdb.StatusError)
	}
	w, ok := lookupWorkflow(row.Name)
	if !ok {
		return fmt.Errorf("%w: cannot replay workflow %s: no workflow named %q in this binary", ErrUnknownWorkflow, id, row.Name)
	}
	steps, err := rt.recordedSteps(ctx, id)
	if err != nil {
		return err
	}
	return w.replay(ctx, rt, row, steps)
}

// replay implements recoverable.
func (w *Workflow[A, R]) replay(ctx context.Context, rt *Runtime, row sysdb.WorkflowRow, steps map[int]sysdb.StepRow) error {
	a, err := decodeArgs[A](row.Inputs, row.Serialization)
	if err != nil {
		return errorf(ErrCorruptRecord, err, "dbos: recorded inputs of workflow %s (%s)", row.ID, row.Name)
	}
	wf := &workflowState{rt: rt, id: row.ID, name: row.Name, recorded: steps, format: row.Serialization,
		kit: &kit{crashAfter: -1, replaying: true}}
	body := context.WithValue(context.WithoutCancel(ctx), workflowIDKey, nil)
	body = context.WithValue(body, stepKey, nil)
	body, cancel := context.WithCancel(body)
	defer cancel()
	wf.ctx = body
	body = context.WithValue(body, workflowKey, wf)
	v, err := callSafely(body, func(ctx context.Context) (R, error) { return w.fn(ctx, a) })
	wf.async.wait()

	var problems []string
	var nd *NondeterministicError
	if p := wf.kit.unrecorded.Load(); p != nil {
		problems = append(problems, *p)
	} else if abort := wf.aborted(); errors.As(abort, &nd) {
		problems = append(problems, fmt.Sprintf("step %d was recorded as %q, the replay called %q", nd.StepID, nd.Recorded, nd.Called))
	} else if abort != nil {
		problems = append(problems, abort.Error())
	}
	if called, last := int(wf.lastStep.Load()), maxStep(steps); len(problems) == 0 && called < last {
		problems = append(problems, fmt.Sprintf("the replay called %d steps, the recorded execution %d: step %d (%s) was not called",
			called, last, called+1, steps[called+1].Name))
	}
	if len(problems) == 0 {
		if p := compareOutcome(row, v, err); p != "" {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: replay of workflow %s (%s): %s", ErrNondeterministic, row.ID, row.Name, strings.Join(problems, "; "))
	}
	return nil
}

// compareOutcome describes how a replay's outcome differs from the recorded
// one; "" when it does not. Values compare as JSON, errors by message.
func compareOutcome(row sysdb.WorkflowRow, v any, err error) string {
	if row.Status == sysdb.StatusError {
		recErr, derr := decodeError(row.Error, row.Serialization)
		switch {
		case derr != nil:
			return fmt.Sprintf("its recorded error does not decode: %v", derr)
		case err == nil:
			return fmt.Sprintf("it returned a result where the recorded execution failed with %q", recErr)
		case recErr == nil || err.Error() != recErr.Error():
			return fmt.Sprintf("it failed with %q, the recorded execution with %q", err, recErr)
		}
		return ""
	}
	if err != nil {
		return fmt.Sprintf("it failed with %q where the recorded execution returned %s", err, clip(row.Output))
	}
	out, eerr := encodeValueAs(v, row.Serialization)
	if eerr != nil {
		return fmt.Sprintf("its result does not encode: %v", eerr)
	}
	var got, want any
	if json.Unmarshal([]byte(out), &got) != nil || json.Unmarshal([]byte(row.Output), &want) != nil {
		if out != row.Output {
			return fmt.Sprintf("it returned %s, the recorded execution %s", clip(out), clip(row.Output))
		}
		return ""
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("it returned %s, the recorded execution %s", clip(out), clip(row.Output))
	}
	return ""
}

func maxStep(steps map[int]sysdb.StepRow) int {
	ids := make([]int, 0, len(steps))
	for id := range steps {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	if len(ids) == 0 {
		return 0
	}
	return ids[len(ids)-1]
}
