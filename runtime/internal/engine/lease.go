package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
	"github.com/google/uuid"
)

// Executor leases (issue 12). A runtime holds a lease on its executor ID in
// the system database and renews it every third of ExecutorLease with one
// statement. While its lease is live no other runtime runs that executor's
// workflows; once it expires, a live runtime of the same application name and
// version adopts them. A runtime that cannot tell its lease is live (a long
// pause, a partition) is fenced: its workflows stop at their next step, by an
// in-memory check that costs no statement.

const (
	defaultExecutorLease = 15 * time.Second
	minExecutorLease     = 300 * time.Millisecond
)

// monoStart anchors lease deadlines on the monotonic clock, which a wall
// clock change cannot move.
var monoStart = time.Now()

func mono() time.Duration { return time.Since(monoStart) }

// liveInstances are the lease instance IDs of this process's runtimes: a
// lease row naming this pid is stale unless its instance is here.
var liveInstances sync.Map

type leaseState struct {
	store  sysdb.Leases
	holder sysdb.Holder
	ttl    time.Duration
	// validUntil (mono) is the last moment this runtime may start a step:
	// the start of its last successful renewal plus the lease, less a tenth
	// for clocks that run at different rates. The database's expiry is
	// later, so an adopter cannot start before this runtime stops.
	validUntil atomic.Int64
	lost       atomic.Pointer[error] // set while fenced
	done       chan struct{}         // closed when the renewer returns
	adopting   atomic.Bool           // an adoption pass is running
	work       sync.WaitGroup        // adoption passes
}

// leaseLost is nil while this runtime may start steps, and otherwise why
// not (wrapping ErrLeaseLost). It reads memory only.
func (rt *Runtime) leaseLost() error {
	l := rt.lease
	if l == nil {
		return nil
	}
	if p := l.lost.Load(); p != nil {
		return *p
	}
	if mono() <= time.Duration(l.validUntil.Load()) {
		return nil
	}
	return rt.fence(fmt.Errorf("%w: executor %s could not renew its lease in time; its workflows stop at their next step",
		ErrLeaseLost, rt.cfg.ExecutorID))
}

// refusal is why a new workflow may not start (nil when it may): like
// leaseLost, but without fencing, for callers holding rt.mu.
func (l *leaseState) refusal(executorID string) error {
	if l == nil {
		return nil
	}
	if p := l.lost.Load(); p != nil {
		return *p
	}
	if mono() > time.Duration(l.validUntil.Load()) {
		return fmt.Errorf("%w: executor %s could not renew its lease in time", ErrLeaseLost, executorID)
	}
	return nil
}

// fence marks the lease lost (once) and interrupts every running workflow,
// so bodies waiting on their context return too.
func (rt *Runtime) fence(why error) error {
	l := rt.lease
	if !l.lost.CompareAndSwap(nil, &why) {
		return *l.lost.Load()
	}
	rt.log.Error("executor lease lost: stopping this executor's workflows at their next step", "executor_id", rt.cfg.ExecutorID, "error", why)
	rt.mu.Lock()
	var cancels []context.CancelCauseFunc
	for _, ex := range rt.executions {
		if ex.cancel != nil {
			cancels = append(cancels, ex.cancel)
		}
	}
	rt.mu.Unlock()
	for _, c := range cancels {
		c(why)
	}
	return why
}

// acquireLease takes this runtime's executor lease at Launch: the configured
// ID or ErrExecutorInUse, or, with no ID configured, the first free slot of
// the host's default (see Config.ExecutorID).
func (rt *Runtime) acquireLease(ctx context.Context) error {
	store, ok := rt.store.(sysdb.Leases)
	if !ok {
		return nil
	}
	host, _ := os.Hostname()
	l := &leaseState{store: store, ttl: rt.cfg.ExecutorLease, done: make(chan struct{}), holder: sysdb.Holder{
		AppVersion: rt.cfg.ApplicationVersion, Host: host, MachineID: machine(), PID: int64(os.Getpid()), InstanceID: uuid.NewString(),
	}}
	base := rt.cfg.ExecutorID
	slots := 1
	if rt.cfg.defaultExecutor {
		slots = maxDefaultSlots
	}
	var held sysdb.LeaseRow
	for i := 0; i < slots; i++ {
		l.holder.ExecutorID = defaultExecutorSlot(base, i)
		sent := mono()
		got, row, err := rt.tryAcquire(ctx, l)
		if err != nil {
			return errorf(ErrDatabase, err, "dbos: acquiring the lease of executor %s", l.holder.ExecutorID)
		}
		if got {
			l.validUntil.Store(int64(sent + l.ttl - l.ttl/10))
			rt.cfg.ExecutorID = l.holder.ExecutorID
			rt.lease = l
			liveInstances.Store(l.holder.InstanceID, true)
			return nil
		}
		held = row
	}
	return fmt.Errorf("%w: executor %s is held by process %d on host %s (instance %s) for %v more; "+
		"give this process another executor ID, or leave Config.ExecutorID and $DBOS__VMID unset to get a free one",
		ErrExecutorInUse, held.ExecutorID, held.PID, held.Host, held.InstanceID, time.Duration(held.RemainingMS)*time.Millisecond)
}

// tryAcquire takes l.holder.ExecutorID if it is free, expired or held by a
// process proved gone; it waits out an adoption of that executor in
// progress. Otherwise it returns the live holder.
func (rt *Runtime) tryAcquire(ctx context.Context, l *leaseState) (bool, sysdb.LeaseRow, error) {
	replace := ""
	for {
		var got bool
		var row sysdb.LeaseRow
		err := rt.retryDB(ctx, func(ctx context.Context) (err error) {
			if got, err = l.store.AcquireLease(ctx, l.holder, l.ttl, replace); err != nil || got {
				return err
			}
			row, err = l.store.Lease(ctx, l.holder.ExecutorID)
			return err
		})
		switch {
		case got:
			return true, row, nil
		case errors.Is(err, sysdb.ErrNotFound):
			continue // released between the two statements
		case err != nil:
			return false, row, err
		case row.RemainingMS <= 0:
			continue // expired between the two statements
		case strings.HasPrefix(row.InstanceID, sysdb.AdoptingPrefix):
			// A live executor is adopting this one's workflows: after it,
			// the executor starts with whatever the adopter left.
			rt.log.Info("waiting for the adoption of this executor's workflows to finish", "executor_id", row.ExecutorID)
			select {
			case <-ctx.Done():
				return false, row, ctx.Err()
			case <-time.After(min(100*time.Millisecond, time.Duration(row.RemainingMS+1)*time.Millisecond)):
			}
			continue
		case replace == "" && holderGone(l.holder, row):
			rt.log.Info("taking over the lease of a process that no longer exists", "executor_id", row.ExecutorID, "pid", row.PID)
			replace = row.InstanceID
			continue
		}
		return false, row, nil
	}
}

// holderGone reports whether the holder of a live lease is provably gone:
// it ran on this machine (same host, kernel boot and PID namespace) and its
// process no longer exists, or it had this process's pid (a restarted
// container's pid 1) and is none of this process's runtimes.
func holderGone(me sysdb.Holder, row sysdb.LeaseRow) bool {
	if me.MachineID == "" || row.MachineID != me.MachineID || row.Host != me.Host {
		return false
	}
	if row.PID == me.PID {
		_, live := liveInstances.Load(row.InstanceID)
		return !live
	}
	return processGone(row.PID)
}

// keepLease renews the lease every third of its length and looks for
// executors to adopt on the same tick, until the runtime shuts down.
func (rt *Runtime) keepLease() {
	l := rt.lease
	go func() {
		defer close(l.done)
		rt.reportStranded(rt.ctx)
		t := time.NewTicker(l.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-rt.ctx.Done():
				return
			case <-t.C:
			}
			if rt.renewLease() && l.adopting.CompareAndSwap(false, true) {
				// Apart from the renewals: resuming a large backlog must not
				// delay the next renewal.
				l.work.Add(1)
				go func() {
					defer l.work.Done()
					defer l.adopting.Store(false)
					rt.adoptExpired(rt.ctx)
				}()
			}
		}
	}()
}

// renewLease renews the lease, or, while fenced and once every workflow has
// stopped, takes it again and resumes what is still this executor's. It
// reports whether the lease is held and live.
func (rt *Runtime) renewLease() bool {
	l := rt.lease
	sent := mono()
	ctx, cancel := context.WithTimeout(rt.ctx, l.ttl/3)
	defer cancel()
	if l.lost.Load() != nil {
		if rt.runningCount() > 0 {
			return false
		}
		got, err := l.store.AcquireLease(ctx, l.holder, l.ttl, "")
		if err != nil || !got {
			return false
		}
		l.validUntil.Store(int64(sent + l.ttl - l.ttl/10))
		l.lost.Store(nil)
		rt.log.Warn("executor lease held again: resuming this executor's remaining workflows", "executor_id", rt.cfg.ExecutorID)
		if err := rt.recoverPending(rt.ctx); err != nil {
			rt.log.Error("resuming after the lease was held again", "executor_id", rt.cfg.ExecutorID, "error", err)
		}
		return true
	}
	ok, err := l.store.RenewLease(ctx, l.holder.ExecutorID, l.holder.InstanceID, l.ttl)
	switch {
	case err != nil:
		if rt.ctx.Err() == nil {
			rt.log.Warn("executor lease not renewed; retrying", "executor_id", rt.cfg.ExecutorID, "error", err)
		}
		return rt.leaseLost() == nil
	case !ok:
		rt.fence(fmt.Errorf("%w: executor %s's lease was taken over (its workflows adopted, or the ID launched elsewhere)",
			ErrLeaseLost, rt.cfg.ExecutorID))
		return false
	}
	l.validUntil.Store(int64(sent + l.ttl - l.ttl/10))
	return true
}

// releaseLease ends the lease at Shutdown, so a restart takes it at once and,
// if none comes, a live executor adopts the workflows Shutdown interrupted.
func (rt *Runtime) releaseLease() {
	l := rt.lease
	if l == nil {
		return
	}
	<-l.done
	l.work.Wait()
	liveInstances.Delete(l.holder.InstanceID)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.store.ReleaseLease(ctx, l.holder.ExecutorID, l.holder.InstanceID); err != nil {
		rt.log.Warn("executor lease not released; it expires on its own", "executor_id", rt.cfg.ExecutorID, "error", err)
	}
}

// reportStranded logs, at launch, the PENDING workflows of other application
// versions whose executors are gone: no executor of this version adopts them;
// one of their version (a drain process with any executor ID) does.
func (rt *Runtime) reportStranded(ctx context.Context) {
	vs, err := rt.lease.store.StrandedVersions(ctx, rt.cfg.ApplicationVersion)
	if err != nil {
		return
	}
	for _, v := range vs {
		rt.log.Warn("PENDING workflows of another application version whose executors are gone: "+
			"launch a process of that version to finish them", "app_version", v.Version, "count", v.Count)
	}
}
