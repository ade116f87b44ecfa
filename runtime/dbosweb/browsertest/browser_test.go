// Package browsertest drives the inspector in a real browser: headless
// Chromium through chromedp. It is a module of its own so that the main
// module does not depend on chromedp. `make test` runs it (make browser).
package browsertest

import (
	"context"
	"flag"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/dbosgen/dbosgen/runtime/dbosweb"
	"github.com/dbosgen/dbosgen/runtime/dbosweb/internal/fixture"
)

var (
	screenshot     = flag.String("screenshot", "", "save a screenshot of the failed workflow's page here (make screenshot writes docs/inspector.png)")
	listScreenshot = flag.String("list-screenshot", "", "save a screenshot of the workflow list here")
)

// chromium finds the browser: $CHROMIUM, else Debian's chromium.
func chromium(t *testing.T) string {
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium: install it (Debian/Ubuntu: apt-get install chromium; make test does this when run as root) or set $CHROMIUM")
	return ""
}

// waitBanner waits for the page that says what the last button did: the
// page it replaces may show a banner too.
func waitBanner(text string) chromedp.Action {
	return chromedp.WaitVisible(`//div[contains(@class, "banner ok") and contains(., "`+text+`")]`, chromedp.BySearch)
}

func TestInspectorInBrowser(t *testing.T) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := "sqlite://" + filepath.Join(t.TempDir(), "shop.sqlite")
	rt, release, err := fixture.Populate(ctx, url)
	if release != nil {
		defer release()
	}
	if rt != nil {
		defer func() { _ = rt.Shutdown(context.Background()) }()
	}
	if err != nil {
		t.Fatal(err)
	}
	client, err := dbos.OpenClient(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	srv := httptest.NewServer(dbosweb.New(client, dbosweb.Options{RefreshSeconds: -1}))
	defer srv.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium(t)), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1360, 1000))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer bcancel()
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	status := func(id string) string {
		w, err := client.RetrieveWorkflow(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return w.Status
	}

	// The list shows the failed workflow, in ERROR.
	var row, title string
	failedRow := `//table[@id="workflows"]//tr[td/a[text()="` + fixture.Failed + `"]]`
	run("list", chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(`#workflows`),
		chromedp.Text(failedRow, &row, chromedp.BySearch), chromedp.Title(&title))
	if !strings.Contains(row, "ERROR") || !strings.Contains(row, "shop.Checkout") {
		t.Errorf("the failed workflow's row reads %q", row)
	}
	if *listScreenshot != "" {
		var png []byte
		run("list screenshot", chromedp.FullScreenshot(&png, 100))
		if err := os.WriteFile(*listScreenshot, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Its page shows the failing step's error; the hostile strings in it are
	// shown, not run.
	var stepErr, pageText string
	run("open the failed workflow", chromedp.Click(failedRow+`//a`, chromedp.BySearch), chromedp.WaitVisible(`#steps`),
		chromedp.Text(`#steps tr.step-error`, &stepErr), chromedp.Text(`body`, &pageText), chromedp.Title(&title))
	if !strings.Contains(stepErr, "shop.charge") || !strings.Contains(stepErr, "payment declined: card expired "+fixture.Hostile) {
		t.Errorf("failing step reads %q", stepErr)
	}
	if strings.Contains(title, "pwned") {
		t.Errorf("a hostile string ran: the title is %q", title)
	}
	if *screenshot != "" {
		var png []byte
		run("screenshot", chromedp.FullScreenshot(&png, 100))
		if err := os.WriteFile(*screenshot, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Cancel the running workflow with its button, confirming.
	var banner string
	run("cancel", chromedp.Navigate(srv.URL+"/ui/workflows/"+fixture.Running), chromedp.Click(`#cancel`),
		chromedp.Click(`#confirm-cancel`), waitBanner("cancelled"), chromedp.Text(`.banner.ok`, &banner))
	if got := status(fixture.Running); got != dbos.StatusCancelled || !strings.Contains(banner, "cancelled") {
		t.Fatalf("after cancel: %s, banner %q", got, banner)
	}
	// Resume it with its button: back on DBOS's internal queue.
	run("resume", chromedp.Click(`#resume`), chromedp.Click(`#confirm-resume`),
		waitBanner("resumed"), chromedp.Text(`.banner.ok`, &banner))
	// An executor serving the internal queue may already have picked it up.
	if got := status(fixture.Running); got == dbos.StatusCancelled || !strings.Contains(banner, "resumed") {
		t.Fatalf("after resume: %s, banner %q", got, banner)
	}
	// Fork the failed workflow from its failing step (the form's default).
	var loc string
	run("fork", chromedp.Navigate(srv.URL+"/ui/workflows/"+fixture.Failed), chromedp.Click(`#fork`),
		chromedp.Click(`#confirm-fork`), waitBanner("Forked from"), chromedp.Location(&loc))
	fork := loc[strings.LastIndex(loc, "/")+1:]
	if i := strings.IndexByte(fork, '?'); i >= 0 {
		fork = fork[:i]
	}
	w, err := client.RetrieveWorkflow(ctx, fork)
	if err != nil || w.ForkedFrom != fixture.Failed || w.QueueName != dbos.InternalQueueName {
		t.Fatalf("fork %s: %+v, %v", fork, w, err)
	}
	// Step 1 is the original's, copied; the fork may have run step 2 again
	// already (an executor serves the internal queue).
	orig, _ := client.WorkflowSteps(ctx, fixture.Failed)
	if steps, _ := client.WorkflowSteps(ctx, fork); len(steps) == 0 || len(orig) == 0 || steps[0].Output != orig[0].Output {
		t.Errorf("the fork from step 2 has steps %+v; want step 1 copied from %+v", steps, orig)
	}
	t.Logf("browser test ran in %s", time.Since(start).Round(time.Millisecond))
}
