package torture

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"syscall"
	"time"
)

// Faults that leave an executor's work to the others: a worker SIGKILLed
// and never restarted (its executor ID dies with it), and a worker
// SIGSTOPped past its lease, then continued. Either way a live worker must
// adopt the executor's PENDING workflows once its lease expires; the
// continued worker must find its lease lost and stop its workflows at their
// next step. The driver watches each adoption to time it.

// pauseSpan is one SIGSTOP of a worker and its SIGCONT.
type pauseSpan struct{ stop, cont time.Time }

// adoption is an executor the driver took away and what became of its work.
type adoption struct {
	kind string // "death" or "pause"
	exec string
	proc *proc
	at   time.Time // the SIGKILL or SIGSTOP
	// held: its lease row existed just before the fault, so there was a
	// lease to expire and an adoption to time.
	held bool
	// pending are its PENDING workflows just after the fault.
	pending []string
	// adopted is when its lease row was gone: an adopter drops it only
	// after moving the executor's workflows to itself. Zero: not seen.
	adopted time.Time
	// disrupted: a proxy outage or a server restart fell between the fault
	// and the adoption, so the latency includes it.
	disrupted bool
	// fenced (pauses): the continued worker logged its lost lease; killed:
	// a SIGKILL ended it before it could.
	fenced, killed bool
}

// Wait at most this long for an adoption; past it, something is wrong.
const adoptionTimeout = 60 * time.Second

// liveSlots are the slots not retired, their workers up or restarting.
func (d *driver) liveSlots() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	var s []int
	for slot := 0; slot < d.slots; slot++ {
		if !d.retired[slot] {
			s = append(s, slot)
		}
	}
	return s
}

// disruptions counts the faults that cut every worker off the database.
func (d *driver) disruptions() int64 {
	d.mu.Lock()
	n := int64(d.faults["PostgreSQL restart"])
	d.mu.Unlock()
	return n + d.proxy.Outages.Load()
}

// victim picks a ready worker for a fault that takes it out of the load for
// a while or for good, or nil when fewer than three are ready: at least two
// stay up. The caller checks it again under d.mu before marking it.
func (d *driver) victim() (int, *proc) {
	s := d.readySlots()
	if len(s) < 3 {
		return -1, nil
	}
	slot := s[rand.N(len(s))]
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := d.current[slot]; p != nil && !p.killed && !p.paused {
		return slot, p
	}
	return -1, nil
}

// executorDeath SIGKILLs a worker and retires its slot: its executor ID is
// never launched again, so only adoption finishes its workflows. A worker
// with a new executor ID takes its place in the load. At least two workers
// stay up: with fewer ready it does nothing and reports false.
func (d *driver) executorDeath() bool {
	slot, p := d.victim()
	if p == nil {
		return false
	}
	// An executor fenced after an outage whose lease an adopter already
	// dropped may still own a row: a start that passed its lease check
	// before the outage and inserted the row while it lasted. With no lease
	// row to expire, nobody adopts it if the executor dies now, before it
	// holds its lease again (a known limit). Kill one that holds its lease.
	if !d.leaseHeld(p.exec) {
		return false
	}
	d.mu.Lock()
	if p.killed || p.paused {
		d.mu.Unlock()
		return false
	}
	d.retired[slot] = true
	p.killed = true
	d.mu.Unlock()
	a := &adoption{kind: "death", exec: p.exec, proc: p, held: true}
	base := d.disruptions()
	a.at = time.Now()
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	<-p.done
	a.pending = d.pendingOf(p.exec)
	d.fault("executor SIGKILLed, never restarted", 1)
	n := d.addSlot()
	d.event("executor %s (worker %d, pid %d) killed for good with %d PENDING workflows; %s takes its place in the load",
		p.exec, p.n, p.pid, len(a.pending), execID(n))
	d.mu.Lock()
	d.adoptions = append(d.adoptions, a)
	d.mu.Unlock()
	d.faultWork.Add(1)
	go func() {
		defer d.faultWork.Done()
		d.awaitAdoption(a, base)
		d.reassign(slot)
	}()
	return true
}

// reassign gives the unacknowledged workflows of a retired slot to live
// slots, whose workers start them again unless their row exists (see
// resubmit). Called once the adoption is seen: any start the dead worker
// had in flight at the server has long committed by then.
func (d *driver) reassign(dead int) {
	live := d.liveSlots()
	if len(live) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range d.ids {
		if w := d.wfs[id]; w.slot == dead && !w.acked {
			w.slot = live[rand.N(len(live))]
		}
	}
}

// pauseWorker SIGSTOPs a worker until a live worker adopts its executor's
// workflows (its lease expired meanwhile), then SIGCONTs it; the continued
// worker must fence itself. It runs in the background: the other faults go
// on during the pause. At least two workers stay up: with fewer ready it
// does nothing and reports false.
func (d *driver) pauseWorker() bool {
	_, p := d.victim()
	if p == nil {
		return false
	}
	d.mu.Lock()
	if p.killed || p.paused {
		d.mu.Unlock()
		return false
	}
	p.paused = true
	d.mu.Unlock()
	a := &adoption{kind: "pause", exec: p.exec, proc: p, held: d.leaseHeld(p.exec)}
	fencesBefore := fenceCount(p.logPath)
	// A worker whose renewal failed just before the pause (an outage) has
	// fenced itself already: it reports nothing new when it continues.
	fencedAtPause := fencesBefore > logCount(p.logPath, "executor lease held again")
	base := d.disruptions()
	a.at = time.Now()
	_ = syscall.Kill(p.pid, syscall.SIGSTOP)
	a.pending = d.pendingOf(p.exec)
	d.fault("SIGSTOP past the lease, then SIGCONT", 1)
	d.event("worker %d (pid %d, %s) stopped with %d PENDING workflows", p.n, p.pid, p.exec, len(a.pending))
	d.mu.Lock()
	d.adoptions = append(d.adoptions, a)
	d.mu.Unlock()
	d.faultWork.Add(1)
	go func() {
		defer d.faultWork.Done()
		d.awaitAdoption(a, base)
		// Past the lease whatever happened, and with the adopter running
		// the paused worker's workflows when it continues: their steps in
		// flight overlap.
		time.Sleep(max(time.Until(a.at.Add(*flagLease*5/4)), 0) + rand.N(*flagLease/2))
		cont := time.Now()
		_ = syscall.Kill(p.pid, syscall.SIGCONT)
		d.mu.Lock()
		p.paused = false
		p.pauses = append(p.pauses, pauseSpan{stop: a.at, cont: cont})
		d.mu.Unlock()
		d.event("worker %d (pid %d, %s) continued after %v", p.n, p.pid, p.exec, cont.Sub(a.at).Round(time.Millisecond))
		if !a.held || a.adopted.IsZero() || fencedAtPause {
			// Not adopted, its lease perhaps still its own; or its lease
			// was gone or lost before the pause (after an outage) and it
			// had reported it already.
			return
		}
		// It finds its lease gone at its next renewal (a third of the
		// lease) or at its next step, whichever comes first.
		for deadline := time.Now().Add(3**flagLease + 5*time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if fenceCount(p.logPath) > fencesBefore {
				a.fenced = true
				return
			}
			select {
			case <-p.done:
				a.killed = true // meanwhile: nothing left to fence
				return
			default:
			}
		}
		d.violation("worker %d (pid %d, %s) continued after its executor's workflows were adopted, and did not report its lease lost\n%s",
			p.n, p.pid, p.exec, tail(p.logPath, 20))
	}()
	return true
}

// fenceCount counts the times a worker's runtime reported its lease lost.
func fenceCount(logPath string) int { return logCount(logPath, "executor lease lost: stopping") }

// logCount counts the lines of a worker's log that hold msg.
func logCount(logPath, msg string) int {
	b, _ := os.ReadFile(logPath)
	return bytes.Count(b, []byte(msg))
}

// leaseHeld reports whether executor's lease row exists.
func (d *driver) leaseHeld(executor string) bool {
	held, err := d.leaseRow(executor)
	return err == nil && held
}

// leaseGone reports whether executor's lease row is known to be absent.
func (d *driver) leaseGone(executor string) bool {
	held, err := d.leaseRow(executor)
	return err == nil && !held
}

func (d *driver) leaseRow(executor string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var held bool
	err := d.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM dbos.dbosgen_executors WHERE executor_id = $1)`, executor).Scan(&held)
	return held, err
}

// pendingOf lists executor's PENDING workflows.
func (d *driver) pendingOf(executor string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := d.pool.Query(ctx, `SELECT workflow_uuid FROM dbos.workflow_status WHERE executor_id = $1 AND status = 'PENDING'`, executor)
	if err != nil {
		return nil
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if rows.Scan(&id) == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// awaitAdoption polls until a's executor's lease row is gone: an adopter
// drops it in the step after moving the executor's PENDING workflows, and
// nobody else can take it back meanwhile (the executor is dead or stopped).
func (d *driver) awaitAdoption(a *adoption, disruptionsBefore int64) {
	for deadline := a.at.Add(adoptionTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if !d.leaseGone(a.exec) {
			continue
		}
		a.adopted = time.Now()
		a.disrupted = d.disruptions() != disruptionsBefore
		// Without a lease row before the fault the executor was fenced
		// already: rows its queue runner claimed meanwhile wait for it to
		// hold its lease again.
		if left := d.pendingOf(a.exec); a.held && len(left) > 0 {
			d.violation("executor %s (%s): its lease was dropped but %d workflows are still PENDING on it: %v", a.exec, a.kind, len(left), left)
		}
		d.event("executor %s (%s) adopted %v after the fault", a.exec, a.kind, a.adopted.Sub(a.at).Round(time.Millisecond))
		return
	}
	if a.held {
		d.violation("executor %s (%s at %s): its lease was not taken over within %v", a.exec, a.kind, a.at.Format("15:04:05.000"), adoptionTimeout)
	}
}
