package dbosweb_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	"github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/dbosgen/dbosgen/runtime/dbosweb"
	"github.com/dbosgen/dbosgen/runtime/dbosweb/internal/fixture"
)

// env is an inspector on a client, over the fixture's database.
type env struct {
	t   *testing.T
	srv *httptest.Server
	c   *dbos.Client
}

func forEachEngine(t *testing.T, f func(t *testing.T, e *env)) {
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			url := dbtest.URL(t, engine)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rt, release, err := fixture.Populate(ctx, url)
			if release != nil {
				t.Cleanup(release)
			}
			if rt != nil {
				t.Cleanup(func() { _ = rt.Shutdown(context.Background()) })
			}
			if err != nil {
				t.Fatal(err)
			}
			c, err := dbos.OpenClient(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			srv := httptest.NewServer(dbosweb.New(c, dbosweb.Options{}))
			t.Cleanup(srv.Close)
			f(t, &env{t: t, srv: srv, c: c})
		})
	}
}

// do sends a request and returns the status and body; redirects are not
// followed.
func (e *env) do(method, path string, body string, hdr ...string) (int, string, http.Header) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (e *env) status(id string) string {
	e.t.Helper()
	w, err := e.c.RetrieveWorkflow(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return w.Status
}

const escaped = `&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;`

func noRawHostile(t *testing.T, page string) {
	t.Helper()
	if strings.Contains(page, "<script") || strings.Contains(page, "<img") || strings.Contains(page, "onerror=\"") {
		t.Errorf("page holds a hostile string unescaped:\n%s", page)
	}
}

func TestPages(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		code, page, hdr := e.do("GET", "/", "")
		if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
			t.Fatalf("list: %d %s", code, page)
		}
		for _, id := range []string{fixture.OK, fixture.Failed, fixture.Parent, fixture.Parent + "-child", fixture.Running} {
			if !strings.Contains(page, ">"+id+"<") {
				t.Errorf("list lacks %s", id)
			}
		}
		if !strings.Contains(page, `http-equiv="refresh"`) || strings.Index(page, fixture.Running) > strings.Index(page, fixture.OK) {
			t.Errorf("list not auto-refreshing or not newest first")
		}
		noRawHostile(t, page)

		_, page, _ = e.do("GET", "/?status=ERROR", "")
		if !strings.Contains(page, fixture.Failed) || strings.Contains(page, ">"+fixture.OK+"<") {
			t.Errorf("status filter: %s", page)
		}
		// Malformed filters: a clear error, not a crash.
		for _, q := range []string{"?offset=abc", "?after=yesterday", "?status=NOPE", "?offset=-1"} {
			code, page, _ := e.do("GET", "/"+q, "")
			if code != http.StatusBadRequest || !strings.Contains(page, `class="banner bad"`) {
				t.Errorf("%s: %d", q, code)
			}
		}

		code, page, _ = e.do("GET", "/ui/workflows/"+fixture.Failed, "")
		if code != 200 || !strings.Contains(page, "payment declined: card expired") || !strings.Contains(page, "shop.charge") ||
			!strings.Contains(page, escaped) {
			t.Errorf("failed workflow page: %d\n%s", code, page)
		}
		noRawHostile(t, page)
		_, page, _ = e.do("GET", "/ui/workflows/"+fixture.OK, "")
		if !strings.Contains(page, "receipt for "+fixture.OK) || !strings.Contains(page, "shop.reserve") {
			t.Errorf("ok page:\n%s", page)
		}
		noRawHostile(t, page)
		_, page, _ = e.do("GET", "/ui/workflows/"+fixture.Parent, "")
		if !strings.Contains(page, `href="/ui/workflows/`+fixture.Parent+`-child"`) {
			t.Errorf("parent page has no link to its child:\n%s", page)
		}
		// An ID with a slash and markup: linked escaped, and its page found.
		odd := `a/b <i>x</i>?&#`
		if _, err := e.c.ForkWorkflow(context.Background(), fixture.OK, 1, dbos.ForkOptions{NewID: odd}); err != nil {
			t.Fatal(err)
		}
		_, page, _ = e.do("GET", "/", "")
		link := "/ui/workflows/" + url.PathEscape(odd)
		if !strings.Contains(page, `href="`+strings.ReplaceAll(link, "&", "&amp;")+`"`) {
			t.Errorf("no escaped link %s in the list", link)
		}
		noRawHostile(t, page)
		if code, page, _ := e.do("GET", link, ""); code != 200 || !strings.Contains(page, `a/b &lt;i&gt;x&lt;/i&gt;?&amp;#`) {
			t.Errorf("page of %q: %d", odd, code)
		}
		if code, body, _ := e.do("GET", "/workflows/"+url.PathEscape(odd), ""); code != 200 || !strings.Contains(body, `"WorkflowUUID":"a/b \u003ci\u003ex\u003c/i\u003e?\u0026#"`) {
			t.Errorf("admin GET of %q: %d %s", odd, code, body)
		}
		if code, _, _ := e.do("GET", "/ui/workflows/nope", ""); code != 404 {
			t.Errorf("unknown workflow page: %d", code)
		}
	})
}

func TestActions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		form := "application/x-www-form-urlencoded"
		// Another site's page cannot cancel.
		code, _, _ := e.do("POST", "/ui/workflows/"+fixture.Running+"/cancel", "", "Sec-Fetch-Site", "cross-site")
		if code != http.StatusForbidden || e.status(fixture.Running) != dbos.StatusPending {
			t.Fatalf("cross-site cancel: %d, %s", code, e.status(fixture.Running))
		}
		code, _, _ = e.do("POST", "/ui/workflows/"+fixture.Running+"/cancel", "", "Origin", "http://evil.example")
		if code != http.StatusForbidden {
			t.Fatalf("cross-origin cancel: %d", code)
		}
		code, _, hdr := e.do("POST", "/ui/workflows/"+fixture.Running+"/cancel", "", "Sec-Fetch-Site", "same-origin")
		if code != http.StatusSeeOther || e.status(fixture.Running) != dbos.StatusCancelled {
			t.Fatalf("cancel: %d, %s", code, e.status(fixture.Running))
		}
		_, page, _ := e.do("GET", hdr.Get("Location"), "")
		if !strings.Contains(page, "Workflow cancelled.") || !strings.Contains(page, `id="resume"`) {
			t.Errorf("after cancel:\n%s", page)
		}
		code, _, _ = e.do("POST", "/ui/workflows/"+fixture.Running+"/resume", "")
		if code != http.StatusSeeOther || e.status(fixture.Running) != dbos.StatusEnqueued {
			t.Fatalf("resume: %d, %s", code, e.status(fixture.Running))
		}
		// Resuming a finished workflow: an error on its page, no change.
		_, _, hdr = e.do("POST", "/ui/workflows/"+fixture.OK+"/resume", "")
		if loc := hdr.Get("Location"); !strings.Contains(loc, "error=") || e.status(fixture.OK) != dbos.StatusSuccess {
			t.Errorf("resume of a finished workflow: %s", loc)
		}
		// Fork the failed workflow from its failing step.
		code, _, hdr = e.do("POST", "/ui/workflows/"+fixture.Failed+"/fork", "step=2&version=v2", "Content-Type", form)
		loc, _ := url.Parse(hdr.Get("Location"))
		fork := strings.TrimPrefix(loc.Path, "/ui/workflows/")
		if code != http.StatusSeeOther || fork == fixture.Failed {
			t.Fatalf("fork: %d %s", code, loc)
		}
		w, err := e.c.RetrieveWorkflow(context.Background(), fork)
		if err != nil || w.ForkedFrom != fixture.Failed || w.ApplicationVersion != "v2" || w.Status != dbos.StatusEnqueued {
			t.Errorf("fork = %+v, %v", w, err)
		}
		for _, body := range []string{"step=99", "step=x", "step=-1"} {
			_, _, hdr = e.do("POST", "/ui/workflows/"+fixture.Failed+"/fork", body, "Content-Type", form)
			if !strings.Contains(hdr.Get("Location"), "error=") {
				t.Errorf("fork %s: %s", body, hdr.Get("Location"))
			}
		}
		if code, _, _ := e.do("POST", "/ui/workflows/nope/cancel", ""); code != 404 {
			t.Errorf("cancel of unknown: %d", code)
		}
	})
}

func TestAdminEndpoints(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		if code, body, _ := e.do("GET", "/dbos-healthz", ""); code != 200 || body != "healthy" {
			t.Errorf("healthz: %d %q", code, body)
		}
		code, body, _ := e.do("POST", "/workflows", `{"status": "ERROR", "load_output": true, "sort_desc": true}`)
		var ws []map[string]any
		if err := json.Unmarshal([]byte(body), &ws); code != 200 || err != nil || len(ws) != 1 {
			t.Fatalf("POST /workflows: %d %s", code, body)
		}
		w := ws[0]
		if w["WorkflowUUID"] != fixture.Failed || w["Status"] != "ERROR" || w["WorkflowName"] != "shop.Checkout" ||
			!strings.Contains(w["Error"].(string), "payment declined") || w["Input"] != nil || w["ApplicationVersion"] != "v1" {
			t.Errorf("workflow = %v", w)
		}
		if _, err := time.Parse(time.RFC3339, w["CreatedAt"].(string)); err == nil {
			t.Errorf("CreatedAt %v is not epoch ms as DBOS writes it", w["CreatedAt"])
		}
		code, body, _ = e.do("POST", "/workflows", `{"workflow_name": ["shop.Batch"], "limit": 10, "load_input": true}`)
		if code != 200 || !strings.Contains(body, `"WorkflowUUID":"`+fixture.Parent+`"`) || !strings.Contains(body, `"Input":"[3]"`) {
			t.Errorf("by name: %d %s", code, body)
		}
		code, body, _ = e.do("POST", "/workflows", "")
		if code != 200 || strings.Count(body, "WorkflowUUID") != 5 {
			t.Errorf("empty body: %d %s", code, body)
		}
		for _, bad := range []string{`{`, `{"status": 3}`, `{"status": "NOPE"}`, `{"start_time": "yesterday"}`, `{"limit": -1}`} {
			if code, body, _ := e.do("POST", "/workflows", bad); code != 400 || !strings.Contains(body, `"error"`) {
				t.Errorf("POST /workflows %s: %d %s", bad, code, body)
			}
		}
		code, body, _ = e.do("GET", "/workflows/"+fixture.OK, "")
		if code != 200 || !strings.Contains(body, `"Output":"\"receipt for`) || !strings.Contains(body, `"WasForkedFrom":false`) {
			t.Errorf("GET workflow: %d %s", code, body)
		}
		if code, _, _ := e.do("GET", "/workflows/nope", ""); code != 404 {
			t.Errorf("GET unknown: %d", code)
		}
		code, body, _ = e.do("GET", "/workflows/"+fixture.Failed+"/steps", "")
		var steps []map[string]any
		if err := json.Unmarshal([]byte(body), &steps); code != 200 || err != nil || len(steps) != 2 {
			t.Fatalf("steps: %d %s", code, body)
		}
		if s := steps[1]; s["function_id"] != 2.0 || s["function_name"] != "shop.charge" || s["output"] != nil ||
			!strings.Contains(s["error"].(string), "payment declined") || s["completed_at_epoch_ms"] == nil {
			t.Errorf("step 2 = %v", s)
		}
		if code, _, _ := e.do("GET", "/workflows/nope/steps", ""); code != 404 {
			t.Errorf("steps of unknown: %d", code)
		}
		if code, _, _ := e.do("POST", "/workflows/"+fixture.Running+"/cancel", ""); code != 204 || e.status(fixture.Running) != dbos.StatusCancelled {
			t.Errorf("cancel: %d", code)
		}
		if code, _, _ := e.do("POST", "/workflows/"+fixture.Running+"/resume", ""); code != 204 || e.status(fixture.Running) != dbos.StatusEnqueued {
			t.Errorf("resume: %d", code)
		}
		if code, _, _ := e.do("POST", "/workflows/"+fixture.OK+"/resume", ""); code != 204 || e.status(fixture.OK) != dbos.StatusSuccess {
			t.Errorf("resume of finished: %d (DBOS answers 204 and changes nothing)", code)
		}
		if code, _, _ := e.do("POST", "/workflows/nope/resume", ""); code != 404 {
			t.Errorf("resume of unknown: %d", code)
		}
		code, body, _ = e.do("POST", "/workflows/"+fixture.Failed+"/fork", `{"start_step": 2, "new_workflow_id": "retry-1002"}`)
		if code != 200 || body != `{"workflow_id":"retry-1002"}`+"\n" || e.status("retry-1002") != dbos.StatusEnqueued {
			t.Errorf("fork: %d %s", code, body)
		}
		for bad, want := range map[string]int{`{"start_step": 9}`: 400, `{"start_step": "x"}`: 400, `{"new_workflow_id": "retry-1002"}`: 409} {
			if code, _, _ := e.do("POST", "/workflows/"+fixture.Failed+"/fork", bad); code != want {
				t.Errorf("fork %s: %d, want %d", bad, code, want)
			}
		}
		code, body, _ = e.do("GET", "/dbos-workflow-queues-metadata", "")
		if code != 200 || body != `[{"name":"_dbos_internal_queue"}]`+"\n" {
			t.Errorf("queues: %d %s", code, body)
		}
	})
}

// Mounted under a prefix, the page links under it; read-only, it offers no
// button and refuses every change.
func TestPrefixAndReadOnly(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		mux := http.NewServeMux()
		mux.Handle("/inspect/", http.StripPrefix("/inspect", dbosweb.New(e.c, dbosweb.Options{Prefix: "/inspect/", ReadOnly: true})))
		srv := httptest.NewServer(mux)
		defer srv.Close()
		e.srv = srv
		_, page, _ := e.do("GET", "/inspect/", "")
		if !strings.Contains(page, `href="/inspect/ui/workflows/`+fixture.Failed+`"`) || !strings.Contains(page, `href="/inspect/ui/style.css"`) {
			t.Errorf("links not under the prefix:\n%s", page)
		}
		_, page, _ = e.do("GET", "/inspect/ui/workflows/"+fixture.Running, "")
		if strings.Contains(page, `id="cancel"`) || strings.Contains(page, `id="fork"`) {
			t.Errorf("read-only page offers buttons")
		}
		e.do("POST", "/inspect/ui/workflows/"+fixture.Running+"/cancel", "")
		if code, _, _ := e.do("POST", "/inspect/workflows/"+fixture.Running+"/cancel", ""); code != http.StatusForbidden {
			t.Errorf("read-only admin cancel: %d", code)
		}
		if code, _, _ := e.do("POST", "/inspect/workflows/"+fixture.Failed+"/fork", "{}"); code != http.StatusForbidden {
			t.Errorf("read-only admin fork: %d", code)
		}
		if e.status(fixture.Running) != dbos.StatusPending {
			t.Errorf("read-only inspector changed a workflow")
		}
	})
}
