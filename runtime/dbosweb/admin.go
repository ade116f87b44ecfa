package dbosweb

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/dbosgen/dbosgen/runtime/dbos"
)

// DBOS's admin server endpoints, in the request and response shapes of DBOS
// Transact Python's dbos/_admin_server.py (the Go SDK v1 has none): a
// workflow is conductor_protocol.WorkflowsOutput (PascalCase keys, every
// value a string or null but WasForkedFrom), a step is WorkflowSteps
// (snake_case keys, timestamps as strings). Where DBOS answers a failure
// with an unhandled exception, these answer a status code and
// {"error": "..."}.

// workflowOutput is DBOS's WorkflowsOutput.
type workflowOutput struct {
	WorkflowUUID            string  `json:"WorkflowUUID"`
	Status                  *string `json:"Status"`
	WorkflowName            *string `json:"WorkflowName"`
	WorkflowClassName       *string `json:"WorkflowClassName"`
	WorkflowConfigName      *string `json:"WorkflowConfigName"`
	AuthenticatedUser       *string `json:"AuthenticatedUser"`
	AssumedRole             *string `json:"AssumedRole"`
	AuthenticatedRoles      *string `json:"AuthenticatedRoles"`
	Input                   *string `json:"Input"`
	Output                  *string `json:"Output"`
	Error                   *string `json:"Error"`
	CreatedAt               *string `json:"CreatedAt"`
	UpdatedAt               *string `json:"UpdatedAt"`
	QueueName               *string `json:"QueueName"`
	ApplicationVersion      *string `json:"ApplicationVersion"`
	ExecutorID              *string `json:"ExecutorID"`
	WorkflowTimeoutMS       *string `json:"WorkflowTimeoutMS"`
	WorkflowDeadlineEpochMS *string `json:"WorkflowDeadlineEpochMS"`
	DeduplicationID         *string `json:"DeduplicationID"`
	Priority                *string `json:"Priority"`
	QueuePartitionKey       *string `json:"QueuePartitionKey"`
	ForkedFrom              *string `json:"ForkedFrom"`
	WasForkedFrom           bool    `json:"WasForkedFrom"`
	ParentWorkflowID        *string `json:"ParentWorkflowID"`
	DequeuedAt              *string `json:"DequeuedAt"`
	DelayUntilEpochMS       *string `json:"DelayUntilEpochMS"`
	CompletedAt             *string `json:"CompletedAt"`
	Attributes              *string `json:"Attributes"`
	ScheduleName            *string `json:"ScheduleName"`
	ApplicationName         *string `json:"ApplicationName"`
}

func str(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func msStr(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	return str(strconv.FormatInt(t.UnixMilli(), 10))
}

func toOutput(w dbos.WorkflowInfo, withInput, withOutput bool) workflowOutput {
	o := workflowOutput{WorkflowUUID: w.ID, Status: str(w.Status), WorkflowName: str(w.Name),
		CreatedAt: msStr(w.CreatedAt), UpdatedAt: msStr(w.UpdatedAt), QueueName: str(w.QueueName),
		ApplicationVersion: str(w.ApplicationVersion), ExecutorID: str(w.ExecutorID),
		WorkflowDeadlineEpochMS: msStr(w.Deadline), ForkedFrom: str(w.ForkedFrom), WasForkedFrom: w.WasForkedFrom,
		ParentWorkflowID: str(w.ParentID), DequeuedAt: msStr(w.StartedAt), CompletedAt: msStr(w.CompletedAt),
		ApplicationName: str(w.ApplicationName)}
	priority := "0"
	o.Priority = &priority
	if withInput {
		o.Input = str(w.Input)
	}
	if withOutput {
		o.Output, o.Error = str(w.Output), str(w.Error)
	}
	return o
}

// stepOutput is DBOS's WorkflowSteps.
type stepOutput struct {
	FunctionID         int     `json:"function_id"`
	FunctionName       string  `json:"function_name"`
	Output             *string `json:"output"`
	Error              *string `json:"error"`
	ChildWorkflowID    *string `json:"child_workflow_id"`
	StartedAtEpochMS   *string `json:"started_at_epoch_ms"`
	CompletedAtEpochMS *string `json:"completed_at_epoch_ms"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers err with the status its sentinel calls for.
func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, statusOf(err), map[string]string{"error": err.Error()})
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, dbos.ErrWorkflowNotFound):
		return http.StatusNotFound
	case errors.Is(err, dbos.ErrInvalidArgument), errors.Is(err, dbos.ErrInvalidWorkflowID):
		return http.StatusBadRequest
	case errors.Is(err, dbos.ErrWorkflowConflict), errors.Is(err, dbos.ErrWorkflowActive), errors.Is(err, dbos.ErrWorkflowFinished):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, "healthy")
}

// stringList is a filter field DBOS takes as a string or a list of strings.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want a string or a list of strings, got %s", b)
	}
	*l = many
	return nil
}

// listRequest is the body of POST /workflows, as DBOS's admin server reads it.
type listRequest struct {
	WorkflowUUIDs      stringList `json:"workflow_uuids"`
	AuthenticatedUser  stringList `json:"authenticated_user"`
	StartTime          string     `json:"start_time"` // ISO 8601
	EndTime            string     `json:"end_time"`
	Status             stringList `json:"status"`
	ApplicationVersion stringList `json:"application_version"`
	ForkedFrom         stringList `json:"forked_from"`
	ParentWorkflowID   string     `json:"parent_workflow_id"`
	WorkflowName       stringList `json:"workflow_name"`
	Limit              *int       `json:"limit"`
	Offset             *int       `json:"offset"`
	SortDesc           bool       `json:"sort_desc"`
	WorkflowIDPrefix   stringList `json:"workflow_id_prefix"`
	LoadInput          bool       `json:"load_input"`
	LoadOutput         bool       `json:"load_output"`
	// Not DBOS's: dbosgen's own filters, in the same style.
	QueueName  stringList `json:"queue_name"`
	ExecutorID stringList `json:"executor_id"`
}

// parseTime reads DBOS's ISO 8601 times (Python's fromisoformat: with or
// without a zone, with or without seconds).
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: %s %q is not an ISO 8601 time (2006-01-02T15:04:05Z)", dbos.ErrInvalidArgument, field, s)
}

func (q listRequest) filter() (dbos.ListFilter, error) {
	f := dbos.ListFilter{IDs: q.WorkflowUUIDs, Status: q.Status, Name: q.WorkflowName, Queue: q.QueueName,
		ExecutorID: q.ExecutorID, ApplicationVersion: q.ApplicationVersion, ParentID: q.ParentWorkflowID,
		OldestFirst: !q.SortDesc}
	var err error
	if f.CreatedAfter, err = parseTime("start_time", q.StartTime); err != nil {
		return f, err
	}
	if f.CreatedBefore, err = parseTime("end_time", q.EndTime); err != nil {
		return f, err
	}
	if q.Limit != nil {
		if *q.Limit <= 0 {
			return f, fmt.Errorf("%w: limit must be positive, got %d", dbos.ErrInvalidArgument, *q.Limit)
		}
		f.Limit = *q.Limit
	}
	if q.Offset != nil {
		f.Offset = *q.Offset
	}
	switch len(q.WorkflowIDPrefix) {
	case 0:
	case 1:
		f.IDPrefix = q.WorkflowIDPrefix[0]
	default:
		return f, fmt.Errorf("%w: one workflow_id_prefix at a time", dbos.ErrInvalidArgument)
	}
	if len(q.AuthenticatedUser) > 0 || len(q.ForkedFrom) > 0 {
		return f, fmt.Errorf("%w: authenticated_user and forked_from filters are not supported by dbosgen", dbos.ErrInvalidArgument)
	}
	return f, nil
}

// maxBody bounds request bodies: filters and fork options are small.
const maxBody = 1 << 20

func (h *handler) apiList(w http.ResponseWriter, r *http.Request) {
	var q listRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err == nil && len(body) > 0 {
		err = json.Unmarshal(body, &q)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Invalid JSON input: " + err.Error()})
		return
	}
	f, err := q.filter()
	if err != nil {
		writeError(w, err)
		return
	}
	ws, err := h.op.ListWorkflows(r.Context(), f)
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]workflowOutput, len(ws))
	for i, wf := range ws {
		out[i] = toOutput(wf, q.LoadInput, q.LoadOutput)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) apiWorkflow(w http.ResponseWriter, r *http.Request) {
	wf, err := h.op.RetrieveWorkflow(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, toOutput(wf, true, true))
}

func (h *handler) apiSteps(w http.ResponseWriter, r *http.Request) {
	steps, err := h.op.WorkflowSteps(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]stepOutput, len(steps))
	for i, s := range steps {
		out[i] = stepOutput{FunctionID: s.StepID, FunctionName: s.Name, Output: str(s.Output), Error: str(s.Error),
			ChildWorkflowID: str(s.ChildID), StartedAtEpochMS: msStr(s.StartedAt), CompletedAtEpochMS: msStr(s.CompletedAt)}
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) readOnly(w http.ResponseWriter) bool {
	if h.opts.ReadOnly {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "this inspector is read-only"})
	}
	return h.opts.ReadOnly
}

func (h *handler) apiCancel(w http.ResponseWriter, r *http.Request) {
	if h.readOnly(w) {
		return
	}
	if err := h.op.CancelWorkflow(r.Context(), r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// apiResume answers 204 for a finished workflow too, as DBOS does (its
// resume leaves SUCCESS and ERROR rows alone without an error).
func (h *handler) apiResume(w http.ResponseWriter, r *http.Request) {
	if h.readOnly(w) {
		return
	}
	if err := h.op.ResumeWorkflow(r.Context(), r.PathValue("id")); err != nil && !errors.Is(err, dbos.ErrWorkflowFinished) {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// forkRequest is the body of POST /workflows/{id}/fork.
type forkRequest struct {
	StartStep          *int   `json:"start_step"` // default 1, as DBOS
	NewWorkflowID      string `json:"new_workflow_id"`
	ApplicationVersion string `json:"application_version"`
}

func (h *handler) apiFork(w http.ResponseWriter, r *http.Request) {
	if h.readOnly(w) {
		return
	}
	var q forkRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err == nil && len(body) > 0 {
		err = json.Unmarshal(body, &q)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Invalid JSON input: " + err.Error()})
		return
	}
	step := 1
	if q.StartStep != nil {
		step = *q.StartStep
	}
	id, err := h.op.ForkWorkflow(r.Context(), r.PathValue("id"), step,
		dbos.ForkOptions{NewID: q.NewWorkflowID, ApplicationVersion: q.ApplicationVersion})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"workflow_id": id})
}

func (h *handler) apiQueues(w http.ResponseWriter, r *http.Request) {
	out := append([]QueueMetadata{{Name: dbos.InternalQueueName}}, h.opts.Queues...)
	writeJSON(w, http.StatusOK, out)
}
