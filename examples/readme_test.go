package examples

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/examples/internal/extest"
	"github.com/dbosgen/dbosgen/internal/dbtest"
)

// shBlocks returns the ```sh code blocks of README section "## title".
func shBlocks(t *testing.T, readme, title string) [][]string {
	t.Helper()
	var blocks [][]string
	in, inBlock := false, false
	sc := bufio.NewScanner(strings.NewReader(readme))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case inBlock && line == "```":
			inBlock = false
		case inBlock:
			if l := strings.TrimSpace(line); l != "" {
				blocks[len(blocks)-1] = append(blocks[len(blocks)-1], l)
			}
		case strings.HasPrefix(line, "## "):
			in = line == "## "+title
		case in && line == "```sh":
			inBlock = true
			blocks = append(blocks, nil)
		}
	}
	if len(blocks) == 0 {
		t.Fatalf("README has no sh blocks in section %q", title)
	}
	return blocks
}

// shell runs a README block with bash -e in dir, as pasted into a terminal,
// with the runtime's database variables unset.
func shell(t *testing.T, dir string, timeout time.Duration, lines []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Every command must succeed, except those told to crash: they must die.
	script := "set -e\n"
	for _, l := range lines {
		if strings.Contains(l, "-crash-after") {
			l = "if " + l + "; then echo 'expected the process to crash' >&2; exit 1; fi"
		}
		script += l + "\n"
	}
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DBOS_SYSTEM_DATABASE_URL=") && !strings.HasPrefix(kv, "APP_DATABASE_URL=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("$ %s   (%s)\n%s", strings.Join(lines, "\n$ "), time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("README commands failed (%v):\n%s\n%s", err, script, out.String())
	}
	return out.String()
}

// TestReadmeQuickstart clones the repository, so only committed files count,
// and runs the README's commands there as a newcomer would: the quickstart
// demo (not make test, which runs this test), the examples, and dbosgen init.
func TestReadmeQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("clones the repository and builds the examples")
	}
	for _, tool := range []string{"git", "make", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	clone := filepath.Join(work, "dbosgen")
	if out, err := exec.Command("git", "clone", "-q", root, clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	readmeBytes, err := os.ReadFile(filepath.Join(clone, "README.md"))
	if err != nil {
		t.Fatalf("the committed tree has no README.md: %v", err)
	}
	readme := string(readmeBytes)

	quick := shBlocks(t, readme, "Quickstart")
	if got := strings.Join(quick[0], "; "); got != "make demo; make test" {
		t.Fatalf("the quickstart's first block is %q, want make demo then make test", got)
	}

	t.Run("make demo", func(t *testing.T) {
		out := shell(t, clone, 5*time.Minute, quick[0][:1])
		extest.Contains(t, out,
			"1/3", "step 2 chargeCard (step with retries): done, checkpointed", "-crash-after 2: killing this process",
			"2/3", "recovering workflow", "step 1 reserveStock (transaction): replayed from its checkpoint",
			"step 2 chargeCard (step with retries): replayed from its checkpoint", "step 4 recordOrder (transaction): done",
			"receipt: order demo-",
			"3/3", "already finished (SUCCESS)", "receipt: order demo-")
	})

	t.Run("more to try", func(t *testing.T) {
		if len(quick) < 2 {
			t.Fatal("the quickstart lost its examples block")
		}
		out := shell(t, clone, 5*time.Minute, quick[1])
		extest.Contains(t, out,
			"attempt 3 of 5: GET /greeting -> 200 OK", "workflow greet-ada finished", "had finished before",
			"-crash-after 1: killing this process", "replayed from its checkpoint", "receipt: order 2001")
		// Printed by main after Launch, while the resumed workflow runs: its
		// place among the workflow's lines varies.
		extest.Contains(t, out, "-crash-after 1: killing this process", "was left unfinished", "receipt: order 2001")
	})

	t.Run("postgres", func(t *testing.T) {
		if len(quick) < 3 {
			t.Fatal("the quickstart lost its PostgreSQL block")
		}
		const readmeURL = "postgres://postgres@127.0.0.1:5432/postgres"
		lines := quick[2]
		if !strings.Contains(strings.Join(lines, "\n"), readmeURL) {
			t.Fatalf("the PostgreSQL block does not use %s: %q", readmeURL, lines)
		}
		// The command as written, on a fresh database of the test server
		// rather than in the server's postgres database.
		url := dbtest.Postgres(t)
		for i, l := range lines {
			lines[i] = strings.ReplaceAll(l, readmeURL+" ", url+" ")
		}
		out := shell(t, clone, 3*time.Minute, lines)
		extest.Contains(t, out, "launching the dbos runtime on postgres://", "receipt: order 3001")
	})

	t.Run("dbosgen init", func(t *testing.T) {
		blocks := shBlocks(t, readme, "Your own module: annotate, generate, run")
		out := shell(t, clone, 5*time.Minute, blocks[0])
		extest.Contains(t, out, "generating dbos_gen.go", "Hello, Ada! Ticket")
		if _, err := os.Stat(filepath.Join(work, "hello", "dbos_gen.go")); err != nil {
			t.Fatalf("init did not generate ../hello/dbos_gen.go: %v", err)
		}
	})
}
