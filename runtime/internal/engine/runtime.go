package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbosgen/dbosgen/runtime/internal/sysdb"
)

// Runtime runs workflows against one system database. Launch makes one;
// several may run in one process (each playing its own executor).
type Runtime struct {
	cfg   resolved
	log   *slog.Logger
	obs   Observer // the logs, then Config.Observer
	store sysdb.Store
	app   *appDB
	// sysPool is the PostgreSQL system pool (nil on SQLite), for its state
	// in logs.
	sysPool *pgPool

	// ctx ends workflows (Shutdown); dbCtx ends database retries, later, so
	// outcomes known at shutdown are still recorded.
	ctx, dbCtx       context.Context
	stop, stopDB     context.CancelFunc
	mu               sync.Mutex
	executions       map[string]*execution
	closed           bool
	wg               sync.WaitGroup
	recoveryProblems []error
	txRetries        atomic.Int64
}

var launched struct {
	sync.Mutex
	list     []*Runtime
	shutDown bool // some runtime was shut down: see findRuntime
}

func everShutDown() bool {
	launched.Lock()
	defer launched.Unlock()
	return launched.shutDown
}

func (rt *Runtime) isClosed() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.closed
}

// shutDownError is ErrShutdown, explained, once rt was shut down; its
// databases are closed then, and their errors would say less.
func (rt *Runtime) shutDownError() error {
	if rt.isClosed() {
		return fmt.Errorf("%w: the runtime of executor %s was shut down", ErrShutdown, rt.cfg.ExecutorID)
	}
	return nil
}

func defaultRuntime() *Runtime {
	launched.Lock()
	defer launched.Unlock()
	if len(launched.list) == 0 {
		return nil
	}
	return launched.list[0]
}

// Launch connects to the system database, creates or upgrades its schema,
// and recovers this executor's PENDING workflows of the current application
// version, each from its last completed step.
//
// On PostgreSQL it creates a database that does not exist yet, and refuses
// with ErrConfig pool sizes that cannot fit the role's, the database's or
// the server's connection limit (see Config.ConnectionWaitTimeout for the
// budget).
func Launch(ctx context.Context, cfg Config) (*Runtime, error) {
	if err := registryError(); err != nil {
		return nil, err
	}
	rc, err := resolveConfig(cfg)
	if err != nil {
		return nil, err
	}
	store, sysPool, err := openStore(ctx, rc)
	if err != nil {
		return nil, err
	}
	rt := &Runtime{cfg: rc, log: rc.Logger, obs: Observers(logObserver{log: rc.Logger}, rc.Observer), store: store,
		sysPool: sysPool, executions: map[string]*execution{}}
	rt.ctx, rt.stop = context.WithCancel(context.Background())
	rt.dbCtx, rt.stopDB = context.WithCancel(context.Background())
	if rt.app, err = openApp(ctx, rc, store, sysPool); err != nil {
		store.Close()
		return nil, err
	}
	if err := checkBudget(ctx, rc.Logger, sysPool, rt.app.pool); err != nil {
		rt.app.close()
		store.Close()
		return nil, err
	}
	running := rt.runningCount
	for _, p := range []*pgPool{sysPool, rt.app.pool} {
		if p != nil {
			p.tracer.running.Store(&running)
		}
	}
	if rc.Setup != nil {
		if err := rc.Setup(ctx, rt.app.db); err != nil {
			rt.app.close()
			store.Close()
			return nil, fmt.Errorf("dbos: Config.Setup: %w", err)
		}
	}
	rt.watchCancellations()
	launched.Lock()
	launched.list = append(launched.list, rt)
	launched.Unlock()
	rt.obs.Launched(ctx, rt.event())
	if err := rt.recoverPending(ctx); err != nil {
		_ = rt.Shutdown(context.Background())
		return nil, err
	}
	rt.log.Info("dbos runtime launched", "executor_id", rc.ExecutorID, "app_version", rc.ApplicationVersion,
		"system_database", rc.system.String())
	return rt, nil
}

// openStore opens the system database; on PostgreSQL it returns its pool too.
func openStore(ctx context.Context, rc resolved) (sysdb.Store, *pgPool, error) {
	var store sysdb.Store
	var pool *pgPool
	switch rc.system.engine {
	case enginePostgres:
		var err error
		if pool, err = openPool(ctx, rc, "system"); err != nil {
			return nil, nil, fmt.Errorf("system database: %w", err)
		}
		store = sysdb.NewPostgres(pool.Pool, rc.Schema, rc.AppName)
	case engineSQLite:
		s, err := sysdb.OpenSQLite(ctx, rc.system.path, rc.AppName)
		if err != nil {
			return nil, nil, errorf(ErrDatabase, err, "dbos: system database %s", rc.system)
		}
		store = s
	}
	// Connected: from here a database that drops away briefly (a restart, a
	// cut connection) is waited for, within ctx, rather than failing Launch.
	var mr sysdb.MigrateResult
	err := retryTransient(ctx, rc.Logger, rc.ConnectionWaitTimeout, pool.attrs, func(ctx context.Context) (err error) {
		mr, err = store.Migrate(ctx)
		return err
	})
	if err != nil {
		store.Close()
		if errors.Is(err, sysdb.ErrOldSchema) {
			return nil, nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		return nil, nil, errorf(ErrDatabase, err, "dbos: preparing system database %s", rc.system)
	}
	if mr.Newer() {
		rc.Logger.Info("dbos: the system database was migrated by a newer DBOS release; using it (DBOS migrations only add)",
			"schema_version", mr.Version, "dbosgen_schema_version", sysdb.SchemaVersion, "system_database", rc.system.String())
	}
	return store, pool, nil
}

// Shutdown stops the runtime: running workflows are interrupted (they stay
// PENDING and resume on the next Launch), then the databases are closed.
// It waits for workflows to return until ctx ends.
func (rt *Runtime) Shutdown(ctx context.Context) error {
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		return nil
	}
	rt.closed = true
	rt.mu.Unlock()
	launched.Lock()
	launched.shutDown = true
	for i, r := range launched.list {
		if r == rt {
			launched.list = append(launched.list[:i], launched.list[i+1:]...)
			break
		}
	}
	launched.Unlock()

	rt.stop()
	done := make(chan struct{})
	go func() { rt.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("dbos: shutdown: workflows still running: %w", ctx.Err())
	}
	rt.obs.ShutDown(ctx, rt.event())
	rt.stopDB()
	rt.app.close()
	rt.store.Close()
	return err
}

// event describes the runtime to observers.
func (rt *Runtime) event() RuntimeEvent {
	return RuntimeEvent{Runtime: rt, AppName: rt.cfg.AppName, ExecutorID: rt.cfg.ExecutorID, AppVersion: rt.cfg.ApplicationVersion}
}

// ExecutorID is this runtime's executor ID.
func (rt *Runtime) ExecutorID() string { return rt.cfg.ExecutorID }

// ApplicationVersion is the version this runtime starts and recovers.
func (rt *Runtime) ApplicationVersion() string { return rt.cfg.ApplicationVersion }

// TransactionRetries counts transactions run again after a serialization
// failure or deadlock since Launch.
func (rt *Runtime) TransactionRetries() int64 { return rt.txRetries.Load() }

// RecoveryProblems lists the PENDING workflows Launch could not resume (an
// unregistered name, corrupt inputs); they are left untouched.
func (rt *Runtime) RecoveryProblems() []error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return append([]error(nil), rt.recoveryProblems...)
}

func (rt *Runtime) recoverPending(ctx context.Context) error {
	var rows []sysdb.WorkflowRow
	err := rt.retryDB(ctx, func(ctx context.Context) (err error) {
		rows, err = rt.store.Pending(ctx, rt.cfg.ExecutorID, rt.cfg.ApplicationVersion)
		return err
	})
	if err != nil {
		return errorf(ErrDatabase, err, "dbos: listing pending workflows")
	}
	rt.reportOtherVersions(ctx)
	for _, row := range rows {
		var err error
		if w, ok := lookupWorkflow(row.Name); !ok {
			err = fmt.Errorf("%w: cannot recover workflow %s: no workflow named %q in this binary (left PENDING)", ErrUnknownWorkflow, row.ID, row.Name)
		} else {
			// Logged before it starts, so the line precedes whatever the
			// workflow itself prints.
			rt.log.Info("recovering workflow", "workflow_id", row.ID, "workflow", row.Name, "attempt", row.RecoveryAttempts+1)
			err = w.resume(ctx, rt, row)
		}
		if err != nil {
			rt.obs.LeftAlone(ctx, LeftAlone{ExecutorID: rt.cfg.ExecutorID, AppVersion: rt.cfg.ApplicationVersion,
				WorkflowID: row.ID, WorkflowName: row.Name, Err: err})
			rt.mu.Lock()
			rt.recoveryProblems = append(rt.recoveryProblems, err)
			rt.mu.Unlock()
		}
	}
	return nil
}

// claim reserves id for an execution in this runtime, or returns the one
// already running.
func (rt *Runtime) claim(id, name, inputs, format string) (*execution, bool, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closed {
		return nil, false, fmt.Errorf("%w: cannot start workflow %s (%s): the runtime of executor %s was shut down",
			ErrShutdown, id, name, rt.cfg.ExecutorID)
	}
	if ex, ok := rt.executions[id]; ok {
		return ex, true, nil
	}
	ex := &execution{name: name, inputs: inputs, format: format, recorded: make(chan struct{}), done: make(chan struct{})}
	rt.executions[id] = ex
	rt.wg.Add(1)
	return ex, false, nil
}

// release ends a claimed execution with its outcome.
func (rt *Runtime) release(id string, ex *execution, v any, err error) {
	rt.mu.Lock()
	if rt.executions[id] == ex {
		delete(rt.executions, id)
	}
	rt.mu.Unlock()
	ex.finish(v, err)
	rt.wg.Done()
}

func (rt *Runtime) running(id string) *execution {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.executions[id]
}

func (rt *Runtime) setCancel(ex *execution, cancel context.CancelCauseFunc) {
	rt.mu.Lock()
	ex.cancel = cancel
	rt.mu.Unlock()
}

func (rt *Runtime) cancelLocal(id string, cause error) {
	var cancel context.CancelCauseFunc
	rt.mu.Lock()
	if ex := rt.executions[id]; ex != nil {
		cancel = ex.cancel
	}
	rt.mu.Unlock()
	if cancel != nil {
		cancel(cause)
	}
}

// watchCancellations delivers CancelWorkflow from other processes: by
// notification where the engine has it, and by polling the running
// workflows' status as well (the only way on SQLite, a safety net on
// PostgreSQL should a notification be lost while the listener reconnects).
func (rt *Runtime) watchCancellations() {
	rt.store.WatchCancellations(rt.ctx, func(id string) {
		rt.cancelLocal(id, fmt.Errorf("%w: workflow %s was cancelled", ErrWorkflowCancelled, id))
	})
	// Notifications carry dbosgen's own cancellations at once; DBOS's CLI
	// and clients cancel with a bare UPDATE, seen only by polling, so the
	// poll runs every second either way (one indexed read of the running
	// IDs, only while workflows run).
	every := time.Second
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-rt.ctx.Done():
				return
			case <-t.C:
			}
			rt.pollCancellations(rt.ctx) // on error the next tick tries again
		}
	}()
}

// pollCancellations stops the executions of this runtime whose rows are
// CANCELLED.
func (rt *Runtime) pollCancellations(ctx context.Context) {
	rt.mu.Lock()
	ids := make([]string, 0, len(rt.executions))
	for id := range rt.executions {
		ids = append(ids, id)
	}
	rt.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	cancelled, err := rt.store.Cancelled(ctx, ids)
	if err != nil {
		return
	}
	for _, id := range cancelled {
		rt.cancelLocal(id, fmt.Errorf("%w: workflow %s was cancelled", ErrWorkflowCancelled, id))
	}
}

// retryDB runs op until it succeeds, fails for a reason other than the
// database being away, or ctx ends. Waits are capped and jittered so that
// many workflows do not hammer a restarting server in step.
func (rt *Runtime) retryDB(ctx context.Context, op func(context.Context) error) error {
	return retryTransient(ctx, rt.log, rt.cfg.ConnectionWaitTimeout, rt.poolAttrs, op)
}

func (rt *Runtime) runningCount() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return len(rt.executions)
}

// poolAttrs describes the pools' state for logs.
func (rt *Runtime) poolAttrs() []any {
	a := rt.sysPool.attrs()
	if rt.app != nil && rt.app.pool != nil {
		a = append(a, slog.Group("application", rt.app.pool.attrs()...))
	}
	return a
}

// retryTransient runs op until it succeeds or fails for good. A database
// that is away (a restart, a cut connection) is waited for as long as ctx
// lasts; a server refusing connections as too many is retried for at most
// wait, since that ends only when someone else lets go; a wait for a pooled
// connection that timed out is reported with the pools' state.
func retryTransient(ctx context.Context, log *slog.Logger, wait time.Duration, attrs func() []any, op func(context.Context) error) error {
	delay := 50 * time.Millisecond
	var crowdedSince time.Time
	for attempt := 0; ; attempt++ {
		err := op(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		switch {
		case tooManyConnections(err):
			if crowdedSince.IsZero() {
				crowdedSince = time.Now()
				log.Warn("PostgreSQL refused a connection: too many connections; retrying for "+wait.String(),
					append(attrs(), "error", err)...)
			} else if time.Since(crowdedSince) > wait {
				return errorf(ErrConfig, err, "dbos: PostgreSQL refused new connections for %v: too many connections for the role, "+
					"the database or the server; other sessions hold the slots this runtime's pools were sized for (see Config.SystemPoolSize)", wait)
			}
		case errors.Is(err, context.DeadlineExceeded):
			// ctx is live, so the deadline was the pool's: no connection
			// came free within the wait (the tracer has logged who holds them).
			return fmt.Errorf("no pooled connection came free within %v (%s): %w", wait, describeAttrs(attrs()), err)
		case !sysdb.IsTransient(err):
			return err
		case attempt == 0:
			log.Warn("database unavailable, retrying", append(attrs(), "error", err)...)
		}
		pause := delay/2 + rand.N(delay/2+1)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// recordStep records a step outcome, riding out database outages. It runs on
// dbCtx: once an outcome is known it is worth recording even if the
// workflow is being interrupted.
func (rt *Runtime) recordStep(row sysdb.StepRow) (stored sysdb.StepRow, fresh bool, err error) {
	err = rt.retryDB(rt.dbCtx, func(ctx context.Context) (err error) {
		stored, fresh, err = rt.store.RecordStep(ctx, row)
		return err
	})
	return stored, fresh, err
}
