package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/interop/app"
	dbosgen "github.com/dbosgen/dbosgen/runtime/dbos"
	"github.com/jackc/pgx/v5"
)

// TestCLIResumeFork resumes and forks dbosgen workflows with DBOS's CLI
// (`dbos workflow resume|fork`), and checks that dbosgen's own ResumeWorkflow
// and ForkWorkflow leave the rows exactly as DBOS's do: the same columns set
// and cleared, the same steps copied, so that any DBOS or dbosgen executor
// takes them from DBOS's internal queue alike.
func TestCLIResumeFork(t *testing.T) {
	cliBinary(t)
	url := newDB(t)
	rt := launchGen(t, url)
	runGen(t, rt)
	ctx := on(rt)
	gen, err := dbosgen.OpenClient(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()

	t.Run("resume", func(t *testing.T) {
		// Two cancelled workflows: DBOS's CLI resumes one, dbosgen the other.
		for _, id := range []string{"resume-cli", "resume-gen"} {
			h, err := app.StartBlockWorkflow(dbosgen.WithWorkflowID(ctx, id), id)
			if err != nil {
				t.Fatal(err)
			}
			waitClosed(t, app.Entered(id), 15*time.Second, "workflow "+id+" to reach its waiting step")
			if err := gen.CancelWorkflow(ctx, id); err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			_, _ = h.Result(rctx)
			cancel()
		}
		out, err := runCLI(t, "workflow", "resume", "resume-cli", "--db-url", url)
		if err != nil {
			t.Fatal(err)
		}
		var w map[string]any
		if err := json.Unmarshal([]byte(out), &w); err != nil {
			t.Fatalf("dbos workflow resume printed: %v\n%s", err, out)
		}
		checkField(t, "dbos workflow resume", w, "status", "ENQUEUED")
		if err := gen.ResumeWorkflow(ctx, "resume-gen"); err != nil {
			t.Fatal(err)
		}
		cli, ours := managedRow(t, url, "resume-cli"), managedRow(t, url, "resume-gen")
		t.Logf("after DBOS's resume: %s", cli)
		if cli.Status != "ENQUEUED" || cli.Queue != "_dbos_internal_queue" || cli.Attempts != 0 {
			t.Errorf("DBOS's resume left %s", cli)
		}
		// Their inputs and creation times differ, as their IDs do.
		cli.Created, ours.Created = 0, 0
		ours.Inputs = strings.ReplaceAll(ours.Inputs, "resume-gen", "resume-cli")
		if cli != ours {
			t.Errorf("dbosgen's resume left\n%s\nDBOS's left\n%s", ours, cli)
		}
		// dbosgen reads DBOS's resumed row.
		if got, err := gen.RetrieveWorkflow(ctx, "resume-cli"); err != nil || got.Status != dbosgen.StatusEnqueued || got.QueueName != dbosgen.InternalQueueName {
			t.Errorf("dbosgen reads DBOS's resumed workflow as %+v, %v", got, err)
		}
		// DBOS's CLI on a finished workflow changes nothing, and so does dbosgen
		// (which says why).
		before := managedRow(t, url, "order-1")
		_, _ = runCLI(t, "workflow", "resume", "order-1", "--db-url", url)
		if err := gen.ResumeWorkflow(ctx, "order-1"); err == nil {
			t.Errorf("dbosgen resumed a finished workflow")
		}
		if after := managedRow(t, url, "order-1"); after != before {
			t.Errorf("resuming a finished workflow changed it:\n%s\n%s", before, after)
		}
	})

	t.Run("fork", func(t *testing.T) {
		out, err := runCLI(t, "workflow", "fork", "order-1", "--step", "3", "--forked-workflow-id", "fork-cli",
			"--application-version", "v-next", "--db-url", url)
		if err != nil {
			t.Fatal(err)
		}
		var w map[string]any
		if err := json.Unmarshal([]byte(out), &w); err != nil {
			t.Fatalf("dbos workflow fork printed: %v\n%s", err, out)
		}
		checkField(t, "dbos workflow fork", w, "workflow_uuid", "fork-cli")
		if _, err := gen.ForkWorkflow(ctx, "order-1", 3, dbosgen.ForkOptions{NewID: "fork-gen", ApplicationVersion: "v-next"}); err != nil {
			t.Fatal(err)
		}
		cli, ours := managedRow(t, url, "fork-cli"), managedRow(t, url, "fork-gen")
		t.Logf("DBOS's fork: %s", cli)
		if cli.Status != "ENQUEUED" || cli.ForkedFrom != "order-1" || cli.Version != "v-next" {
			t.Errorf("DBOS's fork is %s", cli)
		}
		cli.Created, ours.Created = 0, 0
		if cli != ours {
			t.Errorf("dbosgen's fork is\n%s\nDBOS's is\n%s", ours, cli)
		}
		cs, gs := stepRows(t, url, "fork-cli"), stepRows(t, url, "fork-gen")
		if len(cs) != 2 || !slices.Equal(cs, gs) {
			t.Errorf("steps copied by DBOS's fork from step 3:\n%v\nby dbosgen's:\n%v", cs, gs)
		}
		// Each reads the other's fork.
		if got, err := gen.RetrieveWorkflow(ctx, "fork-cli"); err != nil || got.ForkedFrom != "order-1" || got.Input == "" {
			t.Errorf("dbosgen reads DBOS's fork as %+v, %v", got, err)
		}
		out, err = runCLI(t, "workflow", "get", "fork-gen", "--db-url", url)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(out), &w); err != nil {
			t.Fatalf("dbos workflow get fork-gen: %v\n%s", err, out)
		}
		checkField(t, "dbos workflow get fork-gen", w, "status", "ENQUEUED")
		checkField(t, "dbos workflow get fork-gen", w, "forked_from", "order-1")
		out, err = runCLI(t, "workflow", "steps", "fork-gen", "--db-url", url)
		if err != nil {
			t.Fatal(err)
		}
		var steps []map[string]any
		if err := json.Unmarshal([]byte(out), &steps); err != nil || len(steps) != 2 {
			t.Errorf("dbos workflow steps fork-gen: %v\n%s", err, out)
		}
	})
}

// managedRow is what resume and fork write in a workflow_status row (and
// its inputs), read without any SDK.
type managed struct {
	Status, Name, AppName, Executor, Version, Queue, ForkedFrom, Serialization, Inputs string
	Attempts                                                                           int64
	Created                                                                            int64
	StartedNull, DeadlineNull, CompletedNull, OwnerNull, DedupNull, WasForked          bool
}

func (m managed) String() string {
	type plain managed // without this method
	return fmt.Sprintf("%+v", plain(m))
}

func managedRow(t *testing.T, url, id string) managed {
	t.Helper()
	var m managed
	query(t, url, `SELECT s.status, s.name, COALESCE(s.application_name, '<NULL>'), COALESCE(s.executor_id, '<NULL>'),
		COALESCE(s.application_version, ''), COALESCE(s.queue_name, ''), COALESCE(s.forked_from, ''), COALESCE(s.serialization, ''),
		COALESCE(i.inputs, s.inputs, ''), s.recovery_attempts, s.created_at, s.started_at_epoch_ms IS NULL,
		s.workflow_deadline_epoch_ms IS NULL, s.completed_at IS NULL, s.owner_xid IS NULL, s.deduplication_id IS NULL, s.was_forked_from
		FROM dbos.workflow_status s LEFT JOIN dbos.workflow_input i USING (workflow_uuid) WHERE s.workflow_uuid = $1`,
		[]any{id}, &m.Status, &m.Name, &m.AppName, &m.Executor, &m.Version, &m.Queue, &m.ForkedFrom, &m.Serialization,
		&m.Inputs, &m.Attempts, &m.Created, &m.StartedNull, &m.DeadlineNull, &m.CompletedNull, &m.OwnerNull, &m.DedupNull, &m.WasForked)
	return m
}

// stepRows are a workflow's operation_outputs rows, as text.
func stepRows(t *testing.T, url, id string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT function_id, function_name, COALESCE(output, ''), COALESCE(error, ''),
		COALESCE(child_workflow_id, ''), COALESCE(serialization, ''), COALESCE(application_name, '<NULL>'),
		COALESCE(started_at_epoch_ms, 0), COALESCE(completed_at_epoch_ms, 0)
		FROM dbos.operation_outputs WHERE workflow_uuid = $1 ORDER BY function_id`, id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint(vals...))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
