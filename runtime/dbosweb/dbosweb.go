// Package dbosweb serves the workflow inspector: an http.Handler with a
// server-rendered page listing a system database's workflows and showing
// each one (inputs, result or error, steps, children), with cancel, resume
// and fork buttons; and the JSON endpoints of DBOS's admin server
// (/dbos-healthz, /workflows, /workflows/{id}, /workflows/{id}/steps,
// /workflows/{id}/cancel|resume|fork, /dbos-workflow-queues-metadata) in the
// shapes DBOS Transact Python's admin server uses.
//
// Mounting it takes two lines, on a client (or a *dbos.Runtime):
//
//	c, err := dbos.OpenClient(ctx, "postgres://…/orders")
//	go http.ListenAndServe(":8080", dbosweb.New(c, dbosweb.Options{}))
//
// The inspector can cancel, resume and fork workflows: serve it only where
// operators may do so (behind your authentication, or on localhost).
package dbosweb

import (
	"context"
	"net/http"
	"strings"

	"github.com/dbosgen/dbosgen/runtime/dbos"
)

// Operator is what the inspector needs: *dbos.Client and *dbos.Runtime both
// implement it.
type Operator interface {
	ListWorkflows(ctx context.Context, f dbos.ListFilter) ([]dbos.WorkflowInfo, error)
	RetrieveWorkflow(ctx context.Context, id string) (dbos.WorkflowInfo, error)
	WorkflowSteps(ctx context.Context, id string) ([]dbos.StepDetail, error)
	CancelWorkflow(ctx context.Context, id string) error
	ResumeWorkflow(ctx context.Context, id string) error
	ForkWorkflow(ctx context.Context, id string, fromStep int, o dbos.ForkOptions) (string, error)
}

var (
	_ Operator = (*dbos.Client)(nil)
	_ Operator = (*dbos.Runtime)(nil)
)

// QueueMetadata is one entry of /dbos-workflow-queues-metadata, as DBOS
// reports a queue (fields left out when unset).
type QueueMetadata struct {
	Name              string `json:"name"`
	Concurrency       *int   `json:"concurrency,omitempty"`
	WorkerConcurrency *int   `json:"workerConcurrency,omitempty"`
	RateLimit         any    `json:"rateLimit,omitempty"`
}

// Options tune the handler. The zero value is fine.
type Options struct {
	// Prefix is the path the handler is mounted under (with
	// http.StripPrefix), for the page's links: "/inspect", say. Default:
	// the root.
	Prefix string
	// ReadOnly hides and refuses cancel, resume and fork.
	ReadOnly bool
	// PageSize is the number of workflows per page. Default: 50.
	PageSize int
	// RefreshSeconds is the list page's auto-refresh period. Default: 5;
	// negative: never.
	RefreshSeconds int
	// Queues are reported by /dbos-workflow-queues-metadata, after DBOS's
	// internal queue.
	Queues []QueueMetadata
}

type handler struct {
	op   Operator
	opts Options
	mux  *http.ServeMux
}

// New returns the inspector's handler over op.
//
// Requests that change state (POST) are refused when a browser says they
// come from another origin (http.CrossOriginProtection: Sec-Fetch-Site and
// Origin), so another site's page cannot make an operator's browser cancel
// or fork workflows; tools that send neither header (curl, DBOS's tools)
// are served.
func New(op Operator, opts Options) http.Handler {
	opts.Prefix = strings.TrimSuffix(opts.Prefix, "/")
	if opts.PageSize <= 0 {
		opts.PageSize = 50
	}
	if opts.RefreshSeconds == 0 {
		opts.RefreshSeconds = 5
	}
	h := &handler{op: op, opts: opts, mux: http.NewServeMux()}
	// The page.
	h.mux.HandleFunc("GET /{$}", h.listPage)
	h.mux.HandleFunc("GET /ui/workflows/{id}", h.workflowPage)
	h.mux.HandleFunc("POST /ui/workflows/{id}/{action}", h.actionForm)
	h.mux.HandleFunc("GET /ui/style.css", serveCSS)
	// DBOS's admin server.
	h.mux.HandleFunc("GET /dbos-healthz", h.healthz)
	h.mux.HandleFunc("POST /workflows", h.apiList)
	h.mux.HandleFunc("GET /workflows/{id}", h.apiWorkflow)
	h.mux.HandleFunc("GET /workflows/{id}/steps", h.apiSteps)
	h.mux.HandleFunc("POST /workflows/{id}/cancel", h.apiCancel)
	h.mux.HandleFunc("POST /workflows/{id}/resume", h.apiResume)
	h.mux.HandleFunc("POST /workflows/{id}/fork", h.apiFork)
	h.mux.HandleFunc("GET /dbos-workflow-queues-metadata", h.apiQueues)
	return http.NewCrossOriginProtection().Handler(h.mux)
}
