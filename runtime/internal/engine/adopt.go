package engine

import (
	"context"
	"slices"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

// adoptExpired takes over the PENDING workflows of every executor of this
// application name and version whose lease expired, and runs them from
// their last checkpoint as recovery does. Claiming the dead executor's lease
// row first makes one adopter win it (and makes a restart of that executor
// wait rather than race); moving each workflow is one conditional UPDATE, so
// no workflow is moved twice whatever else runs. Workflows of other
// application versions are reported, not adopted: this binary cannot replay
// them.
func (rt *Runtime) adoptExpired(ctx context.Context) {
	l := rt.lease
	dead, err := l.store.ExpiredExecutors(ctx, rt.cfg.ApplicationVersion, rt.cfg.ExecutorID)
	if err != nil {
		return // the next tick looks again
	}
	for _, d := range dead {
		if rt.leaseLost() != nil {
			return // a fenced executor adopts nothing: it could not run it
		}
		rt.adopt(ctx, d)
	}
}

func (rt *Runtime) adopt(ctx context.Context, dead string) {
	l := rt.lease
	me := rt.cfg.ExecutorID
	marker := sysdb.AdoptingPrefix + l.holder.InstanceID
	won, err := l.store.ClaimExecutor(ctx, dead, marker, rt.cfg.ApplicationVersion, l.ttl)
	if err != nil || !won {
		return // another executor adopts it, or the next tick tries again
	}
	ids, err := l.store.AdoptWorkflows(ctx, dead, marker, me, rt.cfg.ApplicationVersion)
	if err != nil {
		// The claim expires after a lease and the executor is adopted then.
		rt.log.Warn("adopting an expired executor's workflows failed; retrying after its lease", "from_executor", dead, "error", err)
		return
	}
	if others, err := rt.store.PendingOtherVersions(ctx, dead, rt.cfg.ApplicationVersion); err == nil {
		for _, v := range others {
			rt.log.Warn("an expired executor has PENDING workflows of another application version: not adopted",
				"from_executor", dead, "app_version", v.Version, "count", v.Count)
		}
	}
	if err := l.store.DropLease(ctx, dead, marker); err != nil {
		rt.log.Warn("adopted executor's lease row not dropped; it expires", "from_executor", dead, "error", err)
	}
	if len(ids) == 0 {
		return
	}
	rt.log.Info("adopting the PENDING workflows of an executor whose lease expired", "from_executor", dead, "executor_id", me, "count", len(ids))
	// Its queued workflows went back to their queues (see AdoptWorkflows):
	// this executor looks for them now, the others at their next poll.
	if r := rt.queueRunner.Load(); r != nil {
		for name := range r.queues {
			r.signal(name)
		}
	}
	var rows []sysdb.WorkflowRow
	err = rt.retryDB(ctx, func(ctx context.Context) (err error) {
		rows, err = rt.store.Pending(ctx, me, rt.cfg.ApplicationVersion)
		return err
	})
	if err != nil {
		// They are this executor's now: the next Launch with its ID, or an
		// adopter once its lease expires, resumes them.
		rt.log.Error("listing adopted workflows failed", "executor_id", me, "error", err)
		return
	}
	// Only the PENDING ones: the queued are ENQUEUED again.
	rows = slices.DeleteFunc(rows, func(r sysdb.WorkflowRow) bool { return !slices.Contains(ids, r.ID) })
	rt.resumeRows(ctx, rows)
}

// legacyExecutor is the executor ID every process had by default before
// executor leases; its workflows have no lease row to expire.
const legacyExecutor = "local"

// adoptLegacy moves to this runtime, at Launch, the PENDING workflows of
// this version left under the old default executor ID "local" by a release
// before leases, when no live runtime holds that ID's lease: taking the
// lease as an adoption claim first makes one launching process win them.
// Only a runtime with a default executor ID does: one given an ID is told
// which workflows are its own.
func (rt *Runtime) adoptLegacy(ctx context.Context) {
	l := rt.lease
	if l == nil || !rt.cfg.defaultExecutor || rt.cfg.ExecutorID == legacyExecutor {
		return
	}
	claim := l.holder
	claim.ExecutorID, claim.InstanceID = legacyExecutor, sysdb.AdoptingPrefix+l.holder.InstanceID
	got, err := l.store.AcquireLease(ctx, claim, l.ttl, "")
	if err != nil || !got {
		return
	}
	ids, err := l.store.AdoptWorkflows(ctx, legacyExecutor, claim.InstanceID, rt.cfg.ExecutorID, rt.cfg.ApplicationVersion)
	if err == nil && len(ids) > 0 {
		rt.log.Info("adopting the PENDING workflows of the former default executor ID", "from_executor", legacyExecutor,
			"executor_id", rt.cfg.ExecutorID, "count", len(ids))
	}
	_ = l.store.DropLease(ctx, legacyExecutor, claim.InstanceID)
}
