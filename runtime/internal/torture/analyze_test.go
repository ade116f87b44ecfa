package torture

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

type wsRow struct {
	id, name, status, output, errJSON, parent, executor, queue string
	attempts                                                   int
}

type stepRow struct {
	wf      string
	fid     int
	name    string
	output  string
	errJSON string
	child   string
	created int64
}

type appRow struct {
	id            int64
	wf, key, exec string
	amount        int
}

type receipt struct {
	Sum   int      `json:"sum"`
	TxIDs []int64  `json:"tx_ids"`
	Child *receipt `json:"child"`
}

type stepOut struct {
	V    int    `json:"v"`
	Exec string `json:"exec"`
}

// analyze reads the database and the ledgers and fails the test on any
// violation, after printing the report.
func (d *driver) analyze() {
	t := d.t
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	workflows := map[string]wsRow{}
	rows, err := d.pool.Query(ctx, `SELECT s.workflow_uuid, s.name, s.status, COALESCE(o.output, ''), COALESCE(o.error, ''),
		COALESCE(s.parent_workflow_id, ''), s.executor_id, s.recovery_attempts, COALESCE(s.queue_name, '')
		FROM dbos.workflow_status s LEFT JOIN dbos.workflow_output o USING (workflow_uuid)`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r wsRow
		if err := rows.Scan(&r.id, &r.name, &r.status, &r.output, &r.errJSON, &r.parent, &r.executor, &r.attempts, &r.queue); err != nil {
			t.Fatal(err)
		}
		workflows[r.id] = r
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	var steps []stepRow
	rows, err = d.pool.Query(ctx, `SELECT workflow_uuid, function_id, function_name, COALESCE(output, ''), COALESCE(error, ''),
		COALESCE(child_workflow_id, ''), completed_at_epoch_ms FROM dbos.operation_outputs`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s stepRow
		if err := rows.Scan(&s.wf, &s.fid, &s.name, &s.output, &s.errJSON, &s.child, &s.created); err != nil {
			t.Fatal(err)
		}
		steps = append(steps, s)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	app := map[int64]appRow{}
	appBy := map[[2]string][]appRow{}
	rows, err = d.pool.Query(ctx, `SELECT id, workflow_id, key, amount, exec FROM torture_app`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a appRow
		if err := rows.Scan(&a.id, &a.wf, &a.key, &a.amount, &a.exec); err != nil {
			t.Fatal(err)
		}
		app[a.id] = a
		appBy[[2]string{a.wf, a.key}] = append(appBy[[2]string{a.wf, a.key}], a)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	ledger, err := readLedgers(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	queuedBodies, err := queuedConcurrency(d.dir)
	if err != nil {
		t.Fatal(err)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	bad := func(format string, args ...any) { d.violations = append(d.violations, fmt.Sprintf(format, args...)) }

	// Which job every workflow ID (parents and children) runs.
	jobs := map[string]job{}
	childOf := map[string]string{}
	for _, r := range workflows {
		if r.parent != "" {
			childOf[r.parent] = r.id
		}
	}
	var stats struct {
		submitted, acked, durable, success, correct, children, pending, stepsRecorded, txApplied, txAttempts int
		stepRuns, crashReruns, twinReruns, fencedReruns, pausedReruns, lateReruns                            int
		queued, queuedSuccess, queuedMost, queuedOverAdopted                                                 int
	}
	for _, id := range d.ids {
		w := d.wfs[id]
		stats.submitted++
		if w.queued {
			stats.queued++
		}
		if w.durable {
			stats.durable++
		}
		if w.acked {
			stats.acked++
		} else {
			bad("workflow %s: its start was never acknowledged (last error: %s)", id, w.lastNack)
		}
		jobs[id] = w.job
		r, ok := workflows[id]
		if !ok {
			bad("workflow %s: submitted but not in the database", id)
			continue
		}
		if r.status != "SUCCESS" {
			if r.status == "PENDING" {
				stats.pending++
			}
			bad("workflow %s: status %s, error %s", id, r.status, r.errJSON)
			continue
		}
		stats.success++
		if w.queued {
			stats.queuedSuccess++
			if r.queue != queueName {
				bad("workflow %s: enqueued on %s, but its row names queue %q", id, queueName, r.queue)
			}
		} else if r.queue != "" {
			bad("workflow %s: started directly, but its row names queue %q", id, r.queue)
		}
		var rc receipt
		if err := json.Unmarshal([]byte(r.output), &rc); err != nil {
			bad("workflow %s: output %q does not decode: %v", id, r.output, err)
			continue
		}
		ok = d.checkReceipt(id, w.job, rc, app, bad)
		if w.job.Child {
			cid := childOf[id]
			jobs[cid] = childJob(w.job)
			c, found := workflows[cid]
			switch {
			case cid == "" || !found:
				bad("workflow %s: no child workflow recorded", id)
				ok = false
			case c.status != "SUCCESS":
				bad("workflow %s: child %s is %s: %s", id, cid, c.status, c.errJSON)
				ok = false
			case rc.Child == nil:
				bad("workflow %s: result has no child receipt", id)
				ok = false
			default:
				stats.children++
				var crc receipt
				if err := json.Unmarshal([]byte(c.output), &crc); err != nil || crc.Sum != rc.Child.Sum {
					bad("workflow %s: child %s output %s does not match the parent's copy %+v", id, cid, c.output, *rc.Child)
					ok = false
				}
				ok = d.checkReceipt(cid, childJob(w.job), *rc.Child, app, bad) && ok
			}
		} else if rc.Child != nil {
			bad("workflow %s: has a child receipt but no child was asked for", id)
			ok = false
		}
		if ok {
			stats.correct++
		}
	}
	for id, r := range workflows {
		_, known := jobs[id]
		if _, parentKnown := d.wfs[r.parent]; !known && !parentKnown {
			bad("workflow %s (%s, parent %q) in the database was never submitted", id, r.name, r.parent)
		}
		if r.status == "PENDING" && r.parent != "" {
			stats.pending++
			bad("child workflow %s still PENDING", id)
		}
	}

	// Transactions: applied exactly once.
	for key, rs := range appBy {
		if _, known := jobs[key[0]]; !known {
			bad("transaction row for unknown workflow %s key %s", key[0], key[1])
		}
		if len(rs) > 1 {
			bad("transaction %s/%s applied %d times", key[0], key[1], len(rs))
		}
	}
	for id, j := range jobs {
		if workflows[id].status != "SUCCESS" {
			continue
		}
		for i := 0; i < j.Txs; i++ {
			if n := len(appBy[[2]string{id, fmt.Sprintf("t%d", i)}]); n != 1 {
				bad("workflow %s transaction t%d applied %d times", id, i, n)
			}
		}
	}
	stats.txApplied = len(app)
	txExec := map[string]bool{}
	for _, l := range ledger {
		if l.kind == "T" {
			stats.txAttempts++
			txExec[l.exec] = true
		}
	}
	for _, a := range app {
		if !txExec[a.exec] {
			bad("transaction row %d (%s/%s) has no ledger line for its execution %s", a.id, a.wf, a.key, a.exec)
		}
	}

	// Steps: every recorded output came from an execution in the ledger;
	// every other execution is explained by a crash or a twin.
	byExec := map[string]ledgerLine{}
	runs := map[[2]string][]ledgerLine{}
	for _, l := range ledger {
		if l.kind != "S" {
			continue
		}
		stats.stepRuns++
		byExec[l.exec] = l
		runs[[2]string{l.wf, l.key}] = append(runs[[2]string{l.wf, l.key}], l)
	}
	type winner struct {
		exec    string
		pid     int
		created time.Time
	}
	winners := map[[2]string]winner{}
	for _, s := range steps {
		if s.name != stepName {
			continue
		}
		stats.stepsRecorded++
		if s.errJSON != "" {
			bad("step %d of %s recorded an error: %s", s.fid, s.wf, s.errJSON)
			continue
		}
		var o stepOut
		if err := json.Unmarshal([]byte(s.output), &o); err != nil {
			bad("step %d of %s: output %q does not decode", s.fid, s.wf, s.output)
			continue
		}
		l, ok := byExec[o.Exec]
		if !ok || l.wf != s.wf {
			bad("step %d of %s: recorded output %s matches no execution in the ledger", s.fid, s.wf, s.output)
			continue
		}
		k := [2]string{l.wf, l.key}
		if _, dup := winners[k]; dup {
			bad("step %s of %s recorded under two step IDs", l.key, l.wf)
		}
		winners[k] = winner{exec: o.Exec, pid: l.pid, created: time.UnixMilli(s.created)}
	}
	procByPid := map[int]*proc{}
	for _, p := range d.procs {
		procByPid[p.pid] = p
	}
	twinPair := func(a, b int) bool {
		pa, pb := procByPid[a], procByPid[b]
		if pa == nil || pb == nil || pa == pb || pa.exec != pb.exec || !(pa.twin || pb.twin) {
			return false
		}
		return pa.spawned.Before(pb.exited) && pb.spawned.Before(pa.exited)
	}
	for id, j := range jobs {
		if workflows[id].status != "SUCCESS" {
			continue
		}
		for _, key := range j.stepKeys() {
			k := [2]string{id, key}
			w, ok := winners[k]
			if !ok {
				bad("step %s of %s: no recorded outcome", key, id)
				continue
			}
			for _, l := range runs[k] {
				if l.exec == w.exec {
					continue
				}
				twin := twinPair(l.pid, w.pid)
				switch {
				case d.pausedInFlight(procByPid[l.pid], l.at):
					// Begun before its worker's SIGSTOP, run after SIGCONT:
					// the step in flight, which fencing lets finish. Its
					// checkpoint lost to the adopter's (one was recorded).
					stats.pausedReruns++
				case !twin && l.at.After(w.created.Add(time.Millisecond)) && procByPid[l.pid] != procByPid[w.pid] &&
					d.lateCheckpoint(procByPid[w.pid], byExec[w.exec].at, w.created, l.at):
					stats.lateReruns++
				case !twin && l.at.After(w.created.Add(time.Millisecond)):
					bad("step %s of %s ran again at %s (pid %d) after its checkpoint committed at %s (pid %d)",
						key, id, l.at.Format("15:04:05.000"), l.pid, w.created.Format("15:04:05.000"), w.pid)
				case procByPid[l.pid] != nil && procByPid[l.pid].killed:
					stats.crashReruns++
				case twin:
					stats.twinReruns++
				case procByPid[l.pid] != nil && procByPid[l.pid].twin:
					// The twin's step was in flight when the driver shut it
					// down: Shutdown stops a workflow between steps without
					// its checkpoint, and whoever took the executor's work
					// over (its replacement, or with a short lease an
					// adopter) ran the step again.
					stats.twinReruns++
				case procByPid[l.pid] != nil && procByPid[l.pid].fenced():
					// Its executor lost its lease (an outage outlasted it):
					// the runtime stopped its workflows before their next
					// checkpoint, as a crash would, and resumed them once it
					// held the lease again.
					stats.fencedReruns++
				case procByPid[l.pid] != procByPid[w.pid] && d.lateCheckpoint(procByPid[w.pid], byExec[w.exec].at, w.created, l.at):
					stats.lateReruns++
				default:
					bad("step %s of %s ran twice (pids %d and %d) with no crash to explain it", key, id, l.pid, w.pid)
				}
			}
		}
	}

	// Goroutines.
	var gReports, gLeaks int
	for _, p := range d.procs {
		if !p.quitSent || p.killed || exitCode(p.exitErr) == 3 {
			continue
		}
		if !p.gReport {
			bad("worker %d (pid %d) shut down without a goroutine report", p.n, p.pid)
			continue
		}
		gReports++
		if p.gAfter > p.gBefore {
			gLeaks++
			bad("worker %d (pid %d): %d goroutines after Shutdown, %d before Launch (stacks in %s)", p.n, p.pid, p.gAfter, p.gBefore, p.logPath)
		}
	}
	for _, p := range d.procs {
		b, _ := os.ReadFile(p.logPath)
		s := string(b)
		if strings.Contains(s, "WARNING: DATA RACE") {
			bad("worker %d (pid %d): data race, see %s", p.n, p.pid, p.logPath)
		}
		if strings.Contains(s, "panic:") || strings.Contains(s, "fatal error:") {
			bad("worker %d (pid %d): panic, see %s\n%s", p.n, p.pid, p.logPath, tail(p.logPath, 20))
		}
	}

	adoptions := d.checkAdoptions(workflows, bad)
	for _, q := range queuedBodies {
		stats.queuedMost = max(stats.queuedMost, q.most)
		stats.queuedOverAdopted += q.overAdopted
		for _, running := range q.overOther {
			bad("%s: more queued workflows ran at once in one worker process than its worker concurrency %d, and no adoption explains it: %s",
				q.ledger, queueConcurrency, running)
		}
	}

	maxAttempts := 0
	for _, r := range workflows {
		maxAttempts = max(maxAttempts, r.attempts)
	}

	// Report.
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("==================== torture report ====================")
	line("duration (faults)        %v, total %v", *flagDuration, time.Since(d.began).Round(time.Second))
	line("worker processes         %d (executor IDs: %d; race detector in workers: %v)", len(d.procs), d.slots, raceEnabled)
	line("workflows submitted      %d (acknowledged %d, of which %d found in the database after their worker died unacknowledged; re-sent after a kill %d)",
		stats.submitted, stats.acked, stats.durable, d.resends)
	line("queued workflows         %d enqueued on %s (worker concurrency %d), %d SUCCESS; at most %d queued bodies ran at once in one process",
		stats.queued, queueName, queueConcurrency, stats.queuedSuccess, stats.queuedMost)
	if stats.queuedOverAdopted > 0 {
		line("note: %d times a worker ran more queued workflows than the worker concurrency, all made up by workflows it recovered: "+
			"the runtime resumes an adopted executor's dequeued workflows at once, beside its own (known issue, not counted as a violation)",
			stats.queuedOverAdopted)
	}
	line("workflows finished       %d SUCCESS, %d correct results; %d child workflows checked", stats.success, stats.correct, stats.children)
	line("workflows PENDING        %d at the end", stats.pending)
	line("most executions of one   %d (highest recovery_attempts)", maxAttempts)
	line("steps                    %d recorded, %d executions in the ledger: %d re-runs after a crash, %d by or after twin executors, %d after a lost lease, "+
		"%d in flight across a pause, %d by an adopter racing a fenced worker's late checkpoint",
		stats.stepsRecorded, stats.stepRuns, stats.crashReruns, stats.twinReruns, stats.fencedReruns, stats.pausedReruns, stats.lateReruns)
	line("transactions             %d applied (each exactly once checked), %d attempts in the ledger", stats.txApplied, stats.txAttempts)
	line("goroutine reports        %d graceful shutdowns, %d with leaks", gReports, gLeaks)
	line("launch failures          %d (database away at Launch: clear error, worker relaunched)", d.launchFail)
	adoptions.lines(line)
	line("faults injected:")
	kinds := make([]string, 0, len(d.faults))
	for k := range d.faults {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		line("  %-38s %d", k, d.faults[k])
	}
	line("  %-38s %d fired (%d on COMMIT) of %d armed", "lost acknowledgement (proxy)",
		d.proxy.AckLossFired.Load(), d.proxy.CommitAckLossFired.Load(), d.proxy.AckLossArmed.Load())
	for _, n := range d.notes {
		line("note: %s", n)
	}
	line("violations               %d", len(d.violations))
	for i, v := range d.violations {
		if i == 50 {
			line("  ... and %d more", len(d.violations)-50)
			break
		}
		line("  - %s", v)
	}
	t.Log("\n" + b.String())
	if len(d.violations) > 0 {
		t.Errorf("%d violations", len(d.violations))
	}
}

// checkReceipt checks a workflow's result against its job and the
// application table.
func (d *driver) checkReceipt(id string, j job, rc receipt, app map[int64]appRow, bad func(string, ...any)) bool {
	ok := true
	if rc.Sum != j.sum() {
		bad("workflow %s: sum %d, want %d", id, rc.Sum, j.sum())
		ok = false
	}
	if len(rc.TxIDs) != j.Txs {
		bad("workflow %s: %d transaction results, want %d", id, len(rc.TxIDs), j.Txs)
		return false
	}
	for i, txID := range rc.TxIDs {
		a, found := app[txID]
		if !found || a.wf != id || a.key != fmt.Sprintf("t%d", i) || a.amount != j.Seed+i {
			bad("workflow %s: transaction t%d returned row %d, which is %+v (found %v): the recorded outcome is not the committed one",
				id, i, txID, a, found)
			ok = false
		}
	}
	return ok
}
