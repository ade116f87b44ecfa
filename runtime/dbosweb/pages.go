package dbosweb

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dbosgen/dbosgen/runtime/dbos"
)

// The page: html/template escapes every value (names, IDs, inputs, outputs
// and errors are whatever workflows recorded, and may be hostile).

//go:embed templates/*.html templates/style.css
var files embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"when":     when,
	"ago":      ago,
	"duration": duration,
	"pretty":   pretty,
	"path":     url.PathEscape,
	"lower":    strings.ToLower,
	"page":     page,
}).ParseFS(files, "templates/*.html"))

func serveCSS(w http.ResponseWriter, r *http.Request) {
	b, _ := files.ReadFile("templates/style.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=300")
	_, _ = w.Write(b)
}

func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
}

func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func duration(from, to time.Time) string {
	if from.IsZero() || to.IsZero() {
		return ""
	}
	d := to.Sub(from)
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return d.Round(time.Millisecond).String()
}

// pretty indents JSON (keeping its key order), with the \u003c-style
// escapes encoding/json writes for <, > and & turned back into the
// characters: html/template escapes them for the page. Other text is shown
// as it is.
func pretty(s string) string {
	var b bytes.Buffer
	if json.Indent(&b, []byte(s), "", "  ") != nil {
		return s
	}
	in := b.Bytes()
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); i++ {
		c := in[i]
		if c != '\\' || i+1 >= len(in) {
			out = append(out, c)
			continue
		}
		if in[i+1] == 'u' && i+6 <= len(in) {
			switch string(in[i+2 : i+6]) {
			case "003c", "003C":
				out, i = append(out, '<'), i+5
				continue
			case "003e", "003E":
				out, i = append(out, '>'), i+5
				continue
			case "0026":
				out, i = append(out, '&'), i+5
				continue
			}
		}
		out, i = append(out, c, in[i+1]), i+1 // any other escape, \\ included, stays
	}
	return string(out)
}

// common is what every page template reads.
type common struct {
	Prefix   string
	ReadOnly bool
	Error    string // shown in a banner
	Notice   string
}

func (c common) base() common { return c }

// headData is what the "head" template reads.
type headData struct {
	common
	Title   string
	Refresh int
}

func page(d interface{ base() common }, title string, refresh int) headData {
	return headData{common: d.base(), Title: title, Refresh: refresh}
}

type listData struct {
	common
	Workflows          []dbos.WorkflowInfo
	Form               url.Values
	Statuses           []string
	Refresh            int
	PrevURL, NextURL   string
	FirstRow, LastRow  int
	Refreshing, Paused bool
	ToggleRefreshURL   string
}

var allStatuses = []string{dbos.StatusPending, dbos.StatusEnqueued, dbos.StatusSuccess, dbos.StatusError,
	dbos.StatusCancelled, dbos.StatusMaxRecoveryAttemptsExceeded}

// listFilter reads the list page's query; a malformed one is an error shown
// above an empty list.
func (h *handler) listFilter(q url.Values) (dbos.ListFilter, error) {
	f := dbos.ListFilter{Limit: h.opts.PageSize}
	one := func(k string) []string {
		if v := strings.TrimSpace(q.Get(k)); v != "" {
			return []string{v}
		}
		return nil
	}
	f.Status, f.Name, f.Queue = one("status"), one("name"), one("queue")
	f.ExecutorID, f.ApplicationVersion = one("executor"), one("version")
	f.IDPrefix = strings.TrimSpace(q.Get("prefix"))
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return f, fmt.Errorf("%w: offset %q is not a non-negative number", dbos.ErrInvalidArgument, v)
		}
		f.Offset = n
	}
	for k, dst := range map[string]*time.Time{"after": &f.CreatedAfter, "before": &f.CreatedBefore} {
		t, err := parseTime(k, strings.TrimSpace(q.Get(k)))
		if err != nil {
			return f, err
		}
		*dst = t
	}
	return f, nil
}

func (h *handler) render(w http.ResponseWriter, status int, name string, data any) {
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, name, data); err != nil {
		http.Error(w, "template: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'none'; form-action 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func (h *handler) listPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := listData{common: common{Prefix: h.opts.Prefix, ReadOnly: h.opts.ReadOnly}, Form: q, Statuses: allStatuses}
	d.Paused = q.Get("refresh") == "off" || h.opts.RefreshSeconds < 0
	if !d.Paused {
		d.Refresh = h.opts.RefreshSeconds
	}
	toggle := cloneValues(q)
	if d.Paused {
		toggle.Del("refresh")
	} else {
		toggle.Set("refresh", "off")
	}
	d.ToggleRefreshURL = h.opts.Prefix + "/?" + toggle.Encode()
	status := http.StatusOK
	f, err := h.listFilter(q)
	if err == nil {
		d.Workflows, err = h.op.ListWorkflows(r.Context(), f)
	}
	if err != nil {
		d.Error, status = err.Error(), statusOf(err)
		d.Refresh = 0
	}
	d.FirstRow, d.LastRow = f.Offset+1, f.Offset+len(d.Workflows)
	if f.Offset > 0 {
		p := cloneValues(q)
		p.Set("offset", strconv.Itoa(max(0, f.Offset-f.Limit)))
		d.PrevURL = h.opts.Prefix + "/?" + p.Encode()
	}
	if len(d.Workflows) == f.Limit {
		n := cloneValues(q)
		n.Set("offset", strconv.Itoa(f.Offset+f.Limit))
		d.NextURL = h.opts.Prefix + "/?" + n.Encode()
	}
	h.render(w, status, "list.html", d)
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

type workflowData struct {
	common
	W          dbos.WorkflowInfo
	Steps      []dbos.StepDetail
	Children   []dbos.WorkflowInfo
	CanCancel  bool
	CanResume  bool
	NextStep   int // the step after the last recorded one: fork's upper bound
	FailedStep int // the first step that recorded an error, 0: none
}

func (h *handler) workflowPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d := workflowData{common: common{Prefix: h.opts.Prefix, ReadOnly: h.opts.ReadOnly, Notice: r.URL.Query().Get("notice"),
		Error: r.URL.Query().Get("error")}}
	var err error
	if d.W, err = h.op.RetrieveWorkflow(r.Context(), id); err == nil {
		d.Steps, err = h.op.WorkflowSteps(r.Context(), id)
	}
	if err == nil {
		d.Children, err = h.op.ListWorkflows(r.Context(), dbos.ListFilter{ParentID: id, OldestFirst: true, Limit: 200})
	}
	if err != nil {
		d.Error = err.Error()
		h.render(w, statusOf(err), "error.html", d)
		return
	}
	switch d.W.Status {
	case dbos.StatusPending, dbos.StatusEnqueued, dbos.StatusDelayed:
		d.CanCancel = true
	case dbos.StatusCancelled, dbos.StatusMaxRecoveryAttemptsExceeded:
		d.CanResume = true
	}
	d.NextStep = 1
	for _, s := range d.Steps {
		d.NextStep = max(d.NextStep, s.StepID+1)
		if s.Error != "" && d.FailedStep == 0 {
			d.FailedStep = s.StepID
		}
	}
	h.render(w, http.StatusOK, "workflow.html", d)
}

// actionForm runs the page's cancel, resume and fork buttons, then sends the
// browser back to the workflow (or to its fork) with what happened.
func (h *handler) actionForm(w http.ResponseWriter, r *http.Request) {
	id, action := r.PathValue("id"), r.PathValue("action")
	back := func(target, key, msg string) {
		http.Redirect(w, r, h.opts.Prefix+"/ui/workflows/"+url.PathEscape(target)+"?"+url.Values{key: {msg}}.Encode(), http.StatusSeeOther)
	}
	if h.opts.ReadOnly {
		back(id, "error", "this inspector is read-only")
		return
	}
	ctx := r.Context()
	var err error
	switch action {
	case "cancel":
		if err = h.op.CancelWorkflow(ctx, id); err == nil {
			back(id, "notice", "Workflow cancelled.")
			return
		}
	case "resume":
		if err = h.op.ResumeWorkflow(ctx, id); err == nil {
			back(id, "notice", "Workflow resumed: enqueued on "+dbos.InternalQueueName+"; an executor of its version runs it from its last recorded step.")
			return
		}
	case "fork":
		var step int
		if step, err = strconv.Atoi(strings.TrimSpace(r.FormValue("step"))); err != nil {
			err = fmt.Errorf("%w: fork: step %q is not a number", dbos.ErrInvalidArgument, r.FormValue("step"))
			break
		}
		var fork string
		fork, err = h.op.ForkWorkflow(ctx, id, step, dbos.ForkOptions{ApplicationVersion: strings.TrimSpace(r.FormValue("version"))})
		if err == nil {
			back(fork, "notice", fmt.Sprintf("Forked from %s at step %d: enqueued on %s.", id, step, dbos.InternalQueueName))
			return
		}
	default:
		http.NotFound(w, r)
		return
	}
	if errors.Is(err, dbos.ErrWorkflowNotFound) {
		h.render(w, http.StatusNotFound, "error.html", workflowData{common: common{Prefix: h.opts.Prefix, Error: err.Error()}})
		return
	}
	back(id, "error", err.Error())
}
