package torture

import (
	"fmt"
	"slices"
	"time"
)

// Analysis of the executors the driver took away (faults_test.go): what
// their workflows became, how soon they were adopted, and which step
// executions a pause explains.

// inFlightGrace bounds how long after SIGCONT a continued worker may still
// begin a step body: only a step that passed its lease check before the
// SIGSTOP can (a check after it finds the lease expired), and its goroutine
// runs as soon as the process is scheduled again. Generous for -race on a
// loaded machine; a step started by a worker that failed to fence itself
// would come later, after the step before it recorded.
const inFlightGrace = time.Second

// pausedInFlight reports whether an execution that began at `at` in process
// pid is the rest of a step in flight when that process was stopped: it
// began within inFlightGrace of a SIGCONT.
func (d *driver) pausedInFlight(p *proc, at time.Time) bool {
	if p == nil {
		return false
	}
	for _, s := range p.pauses {
		if !at.Before(s.cont) && at.Before(s.cont.Add(inFlightGrace)) {
			return true
		}
	}
	return false
}

// lateCheckpoint reports whether an execution that began at `at` in
// another process is explained by the recorded execution's worker having
// lost its lease (paused past it, or cut off by an outage) with that step
// in flight: the step's checkpoint, written late, landed while an adopter
// was resuming the workflow from the steps recorded before it, so the
// adopter ran the step too, just before or just after the late checkpoint,
// and its own checkpoint lost (one was recorded).
func (d *driver) lateCheckpoint(winner *proc, began, recorded, at time.Time) bool {
	if winner == nil || at.After(recorded.Add(inFlightGrace)) {
		return false
	}
	for _, s := range winner.pauses {
		if (began.Before(s.stop) || d.pausedInFlight(winner, began)) && !recorded.Before(s.cont.Add(-time.Millisecond)) {
			return true
		}
	}
	return winner.fenced()
}

type adoptionReport struct {
	deaths, pauses, fenced, killed, deathPending, deathAdopted, pausePending int
	latencies, clean                                                         []time.Duration
	byKind                                                                   map[string][]time.Duration
}

// checkAdoptions checks that the workflows PENDING on an executor that died
// for good were finished, by another executor, and gathers the figures of
// the report. Called with d.mu held.
func (d *driver) checkAdoptions(workflows map[string]wsRow, bad func(string, ...any)) adoptionReport {
	r := adoptionReport{byKind: map[string][]time.Duration{}}
	for _, a := range d.adoptions {
		switch a.kind {
		case "death":
			r.deaths++
			r.deathPending += len(a.pending)
			for _, id := range a.pending {
				w, ok := workflows[id]
				switch {
				case !ok:
					bad("workflow %s, PENDING on %s when it died, is gone", id, a.exec)
				case w.status != "SUCCESS":
					bad("workflow %s, PENDING on %s when it died, ended %s: %s", id, a.exec, w.status, w.errJSON)
				case w.executor != a.exec:
					r.deathAdopted++
				}
				// Else its finish was on its way to the server at the kill
				// and committed after the listing: nothing to adopt.
			}
		case "pause":
			r.pauses++
			r.pausePending += len(a.pending)
			if a.fenced {
				r.fenced++
			}
			if a.killed {
				r.killed++
			}
		}
		if !a.held || a.adopted.IsZero() {
			continue
		}
		lat := a.adopted.Sub(a.at)
		r.latencies = append(r.latencies, lat)
		r.byKind[a.kind] = append(r.byKind[a.kind], lat)
		if !a.disrupted {
			r.clean = append(r.clean, lat)
		}
	}
	return r
}

// lines is the report's part on adoptions.
func (r adoptionReport) lines(line func(string, ...any)) {
	lease := *flagLease
	line("executor deaths          %d SIGKILLs never restarted; %d workflows PENDING on them, all SUCCESS: %d finished by adopters, "+
		"%d by their finish already sent at the kill", r.deaths, r.deathPending, r.deathAdopted, r.deathPending-r.deathAdopted)
	line("pauses past the lease    %d SIGSTOPs; %d workflows PENDING on them adopted; %d continued workers fenced themselves, "+
		"%d were SIGKILLed first", r.pauses, r.pausePending, r.fenced, r.killed)
	line("adoption latency: %s (fault to the adopter owning the executor's workflows; lease %v)", latencySummary(r.latencies, lease), lease)
	line("  deaths: %s; pauses: %s; without an outage or restart in between: %s",
		latencySummary(r.byKind["death"], lease), latencySummary(r.byKind["pause"], lease), latencySummary(r.clean, lease))
}

func latencySummary(ds []time.Duration, lease time.Duration) string {
	if len(ds) == 0 {
		return "n=0"
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	med := ds[len(ds)/2]
	if len(ds)%2 == 0 {
		med = (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
	}
	mx := ds[len(ds)-1]
	return fmt.Sprintf("n=%d, median %v, max %v (%.2f and %.2f leases)", len(ds), med.Round(time.Millisecond), mx.Round(time.Millisecond),
		float64(med)/float64(lease), float64(mx)/float64(lease))
}
