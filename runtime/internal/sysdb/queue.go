package sysdb

import (
	"context"
	"errors"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
)

// Queues live in DBOS's own columns of workflow_status (queue_name, status
// ENQUEUED/DELAYED, priority, deduplication_id, queue_partition_key,
// delay_until_epoch_ms, started_at_epoch_ms, rate_limited), so that DBOS
// clients enqueue dbosgen workflows and DBOS's tools list them. The
// operations are a separate interface, Queuer, which *Postgres and *SQLite
// implement, so the Store interface stays as it is.

// QueueChannel is the LISTEN/NOTIFY channel on which an enqueue announces
// the queue it wrote to (the payload is the queue's name). DBOS's channels
// are named dbos_*; this one cannot collide with them.
const QueueChannel = "dbosgen_queue"

// ErrDeduplicated is returned by Enqueue when a live workflow of the queue
// holds the deduplication ID.
var ErrDeduplicated = errors.New("deduplicated")

// EnqueueParams is a workflow to put on a queue.
type EnqueueParams struct {
	// Row gives ID, Name, QueueName, ExecutorID, AppVersion, ParentID,
	// TimeoutMS, DeadlineMS (a bound inherited from a parent) and Inputs.
	Row             WorkflowRow
	DeduplicationID string // "": none
	Priority        int
	PartitionKey    string // "": none
	DelayUntilMS    int64  // unix ms; 0: runnable at once (ENQUEUED), else DELAYED
	// Notify wakes other executors (PostgreSQL: NOTIFY on QueueChannel).
	// A NOTIFY serializes commits server-wide, so the enqueuer leaves it
	// out when it will run the workflow itself (see Workflow.Enqueue).
	Notify bool
	// Claim inserts the workflow already dequeued by Row.ExecutorID
	// (PENDING, started now, attempt 1), for an enqueuer that will run it
	// at once; Row.DeadlineMS is then its deadline from now.
	Claim bool
}

// EnqueueResult is the row as it stands after Enqueue.
type EnqueueResult struct {
	Row      WorkflowRow
	Inserted bool // false: the ID existed; Row is the existing row
}

// DequeueParams says which queue to take work from, for whom, and within
// which limits. A zero limit means none.
type DequeueParams struct {
	Queue, ExecutorID, AppVersion string
	WorkerConcurrency             int // PENDING rows of this executor on the queue
	GlobalConcurrency             int // PENDING rows of the queue
	RateLimit                     int // starts within RatePeriodMS
	RatePeriodMS                  int64
	// PartitionKey, when set, takes only rows of that partition, and
	// PartitionConcurrency bounds that partition's PENDING rows.
	PartitionKey         string
	PartitionConcurrency int
	Max                  int // rows per call; required
}

// Dequeued is a row Dequeue claimed.
type Dequeued struct {
	WorkflowRow
	// HasSteps says whether the workflow has recorded outcomes: a resumed
	// or forked workflow does, one enqueued afresh does not, and the
	// runtime loads them only then.
	HasSteps bool
}

// Queuer is the system database's queue operations.
type Queuer interface {
	// Enqueue inserts an ENQUEUED (or DELAYED) workflow with its inputs: one
	// statement on PostgreSQL, which also notifies QueueChannel. An existing
	// ID is not changed: its row is returned with Inserted false. A live
	// deduplication ID fails with ErrDeduplicated.
	Enqueue(ctx context.Context, p EnqueueParams) (EnqueueResult, error)
	// Dequeue claims runnable rows of a queue for an executor within the
	// queue's limits, in priority then FIFO order, and returns them as they
	// now stand (PENDING, with inputs, started now, deadline set from the
	// timeout): one transaction.
	Dequeue(ctx context.Context, p DequeueParams) ([]Dequeued, error)
	// RunnableQueues lists the queues that have runnable rows (ENQUEUED, or
	// DELAYED past their delay): one cheap read, so an idle executor's poll
	// costs one statement whatever the number of queues.
	RunnableQueues(ctx context.Context) ([]string, error)
	// PartitionKeys lists the partition keys of a queue's runnable rows.
	PartitionKeys(ctx context.Context, queue string) ([]string, error)
	// WatchQueues calls fn with the name of every queue enqueued to from now
	// on, by any process, until ctx ends; false when the engine has no
	// notifications (the caller polls).
	WatchQueues(fn func(queue string)) bool
}

const enqueueStatus = `INSERT INTO {schema}.workflow_status (workflow_uuid, status, name, queue_name, executor_id,
	application_version, application_name, parent_workflow_id, recovery_attempts, workflow_timeout_ms,
	workflow_deadline_epoch_ms, deduplication_id, priority, queue_partition_key, delay_until_epoch_ms,
	created_at, updated_at, serialization, creator_xid, started_at_epoch_ms, owner_xid)
VALUES ($1, CASE WHEN $16 THEN 'PENDING' WHEN $14::BIGINT > 0 THEN 'DELAYED' ELSE 'ENQUEUED' END, $2, $3,
	NULLIF($4, ''), NULLIF($5, ''), NULLIF($6, ''), NULLIF($7, ''), CASE WHEN $16 THEN 1 ELSE 0 END,
	NULLIF($8::BIGINT, 0), NULLIF($9::BIGINT, 0), NULLIF($10, ''), $11, NULLIF($12, ''), NULLIF($14::BIGINT, 0),
	$13, $13, 'portable_json', $15, CASE WHEN $16 THEN $13::BIGINT END, CASE WHEN $16 THEN $15 END)
ON CONFLICT (workflow_uuid) DO NOTHING
RETURNING workflow_uuid`

// pgEnqueue is enqueueStatus with the inputs and the wake-up in the same
// statement. pg_notify is transactional: listeners hear it at commit.
const pgEnqueue = `WITH ins AS (` + enqueueStatus + `
), inp AS (
	INSERT INTO {schema}.workflow_input (workflow_uuid, inputs) SELECT workflow_uuid, $17 FROM ins
)
SELECT workflow_uuid FROM ins, pg_notify('` + QueueChannel + `', $3)`

// pgEnqueueQuiet is pgEnqueue without the NOTIFY.
var pgEnqueueQuiet = strings.Replace(pgEnqueue, `FROM ins, pg_notify('`+QueueChannel+`', $3)`, `FROM ins WHERE $3 <> ''`, 1)

// Enqueue implements Queuer.
func (s *store) Enqueue(ctx context.Context, p EnqueueParams) (EnqueueResult, error) {
	r := p.Row
	args := []any{r.ID, r.Name, r.QueueName, r.ExecutorID, r.AppVersion, s.appName, r.ParentID, r.TimeoutMS,
		r.DeadlineMS, p.DeduplicationID, p.Priority, p.PartitionKey, nowMS(), p.DelayUntilMS, uuid.NewString(), p.Claim}
	var n int
	var err error
	if s.dl.cte {
		var rs rows
		q := pgEnqueueQuiet
		if p.Notify {
			q = pgEnqueue
		}
		rs, err = s.d.writer().Query(ctx, s.dl.cached(q), append(args, r.Inputs)...)
		var ids []string
		ids, err = collect(rs, err, func(r rows, id *string) error { return r.Scan(id) })
		n = len(ids)
	} else {
		err = s.d.inTx(ctx, func(tx querier) error {
			rs, err := tx.Query(ctx, s.dl.cached(enqueueStatus), args...)
			ids, err := collect(rs, err, func(r rows, id *string) error { return r.Scan(id) })
			if n = len(ids); err != nil || n == 0 {
				return err
			}
			_, err = tx.Exec(ctx, s.q.insertInputs, r.ID, r.Inputs)
			return err
		})
	}
	if err != nil {
		if isDedupViolation(err) {
			return EnqueueResult{}, ErrDeduplicated
		}
		return EnqueueResult{}, err
	}
	if n == 1 {
		switch {
		case p.Claim:
			r.Status, r.RecoveryAttempts = StatusPending, 1
		case p.DelayUntilMS > 0:
			r.Status = StatusDelayed
		default:
			r.Status = StatusEnqueued
		}
		r.AppName, r.Serialization = s.appName, FormatPortable
		return EnqueueResult{Row: r, Inserted: true}, nil
	}
	w, err := s.Workflow(ctx, r.ID)
	return EnqueueResult{Row: w}, err
}

// isDedupViolation recognises the unique index on (queue_name,
// deduplication_id) on either engine.
func isDedupViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505" && pgErr.ConstraintName == "uq_workflow_status_dedup_id"
	}
	return strings.Contains(err.Error(), "UNIQUE constraint failed: workflow_status.queue_name, workflow_status.deduplication_id")
}

// queueLoad counts, in one statement, what the limits are checked against:
// this executor's PENDING rows of the queue, all its PENDING rows, the
// starts within the rate-limit window, and the partition's PENDING rows.
const queueLoad = `SELECT
	COALESCE(SUM(CASE WHEN status = 'PENDING' AND executor_id = $2 THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN status = 'PENDING' THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN rate_limited AND status NOT IN ('ENQUEUED', 'DELAYED') AND started_at_epoch_ms > $3 THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN status = 'PENDING' AND queue_partition_key = $4 THEN 1 ELSE 0 END), 0)
FROM {schema}.workflow_status
WHERE queue_name = $1 AND (status = 'PENDING' OR (rate_limited AND started_at_epoch_ms > $3))
	AND (application_name = $5 OR application_name IS NULL)`

// dequeueCandidates selects runnable rows: ENQUEUED, or DELAYED past their
// delay (DBOS's executors move those to ENQUEUED on a timer; taking them here
// saves that statement), of this version or none (a DBOS client's enqueue),
// priority then FIFO.
const dequeueCandidates = `SELECT workflow_uuid FROM {schema}.workflow_status
WHERE (status = 'ENQUEUED' OR (status = 'DELAYED' AND delay_until_epoch_ms <= $4)) AND ` + dequeueFilter + `
ORDER BY priority, created_at
LIMIT $9`

// dequeueFilter is what, besides its status, makes a row of queue $1 this
// dequeuer's to take.
const dequeueFilter = `queue_name = $1
	AND (application_version = $3 OR application_version IS NULL)
	AND (application_name = $7 OR application_name IS NULL)
	AND ($8 = '' OR queue_partition_key = $8)`

// pgDequeueCandidates selects and locks dequeueCandidates' rows on
// PostgreSQL, up to {limit}. The ENQUEUED rows and the due DELAYED ones are
// two branches, each ordered and limited on its own: an OR of the two
// would keep the planner from reading DBOS's in-flight index (queue_name,
// status, priority, created_at) in order, and every dequeue would sort all
// of the queue's runnable rows (8.6 ms for 6,000; once per finished
// workflow on a queue with worker concurrency). SKIP LOCKED lets dequeuers
// of queues without queue-wide limits pass each other. Each branch locks
// up to {limit} rows, so while its statement runs a dequeue can hold up to
// twice the rows it claims; a dequeuer running at that moment skips those
// too, and takes the next.
const pgDequeueCandidates = `SELECT workflow_uuid FROM (
	SELECT * FROM (SELECT workflow_uuid, priority, created_at FROM {schema}.workflow_status
		WHERE status = 'ENQUEUED' AND ` + dequeueFilter + `
		ORDER BY priority, created_at LIMIT {limit} FOR UPDATE SKIP LOCKED) e
	UNION ALL
	SELECT * FROM (SELECT workflow_uuid, priority, created_at FROM {schema}.workflow_status
		WHERE status = 'DELAYED' AND delay_until_epoch_ms <= $4 AND ` + dequeueFilter + `
		ORDER BY priority, created_at LIMIT {limit} FOR UPDATE SKIP LOCKED) d
) c ORDER BY priority, created_at LIMIT {limit}`

const dequeueClaim = `UPDATE {schema}.workflow_status SET status = 'PENDING', executor_id = $2, application_version = $3,
	started_at_epoch_ms = $4, updated_at = $4, rate_limited = $5, recovery_attempts = recovery_attempts + 1,
	owner_xid = $6, application_name = COALESCE(application_name, NULLIF($7, '')),
	workflow_deadline_epoch_ms = CASE WHEN workflow_timeout_ms IS NOT NULL AND workflow_deadline_epoch_ms IS NULL
		THEN $4 + workflow_timeout_ms ELSE workflow_deadline_epoch_ms END
WHERE workflow_uuid {in} ({candidates})
	AND status IN ('ENQUEUED', 'DELAYED')`

// pgDequeueLimited claims up to limit rows and returns them with their
// inputs in one statement. A limit that is not a parameter is computed
// once, in a CTE, for the three places that read it.
func pgDequeueLimited(limit string) string {
	with := "WITH "
	if !strings.HasPrefix(limit, "$") {
		with, limit = "WITH lim AS (SELECT "+limit+" AS n), ", "(SELECT n FROM lim)"
	}
	candidates := strings.ReplaceAll(pgDequeueCandidates, "{limit}", limit)
	// = ANY (ARRAY(…)) claims the candidates by primary key: with IN, a
	// limit the planner cannot read (pgDequeueLocal's) made it hash-join
	// the candidates against a scan of the whole table.
	claim := strings.NewReplacer("{in}", "= ANY (ARRAY", "{candidates}", candidates+")").Replace(dequeueClaim)
	return with + `s AS (` + claim + ` RETURNING *)
SELECT s.workflow_uuid, EXISTS (SELECT 1 FROM {schema}.operation_outputs x WHERE x.workflow_uuid = s.workflow_uuid), ` + wfColumns + `
FROM s LEFT JOIN {schema}.workflow_input i ON i.workflow_uuid = s.workflow_uuid
	LEFT JOIN {schema}.workflow_output o ON o.workflow_uuid = s.workflow_uuid
ORDER BY s.priority, s.created_at`
}

// pgDequeue claims up to $9 rows (pgDequeueLimited).
var pgDequeue = pgDequeueLimited("$9")

// pgDequeueLocal is pgDequeue for a queue whose only limit is this
// executor's worker concurrency ($10): the count is a subquery of the claim.
// One statement needs no transaction: only this executor's runner claims
// for it, and it runs one dequeue at a time.
var pgDequeueLocal = pgDequeueLimited(`GREATEST(0, LEAST($9, $10 - (SELECT count(*)
	FROM {schema}.workflow_status WHERE queue_name = $1 AND status = 'PENDING' AND executor_id = $2)))`)

// sqliteDequeueClaim claims dequeueCandidates' rows; SQLite's write
// transaction holds them already.
var sqliteDequeueClaim = strings.NewReplacer("{in}", "IN", "{candidates}", dequeueCandidates).Replace(dequeueClaim)

// Dequeue implements Queuer: on PostgreSQL one statement for a queue
// without queue-wide limits; else [an advisory lock,] the counts and the
// claim in one transaction.
func (s *store) Dequeue(ctx context.Context, p DequeueParams) ([]Dequeued, error) {
	now := nowMS()
	var out []Dequeued
	scan := func(r rows, w *Dequeued) error { return scanWorkflow(r, &w.WorkflowRow, &w.ID, &w.HasSteps) }
	if s.dl.cte && p.GlobalConcurrency == 0 && p.RateLimit == 0 && p.PartitionConcurrency == 0 {
		args := []any{p.Queue, p.ExecutorID, p.AppVersion, now, false, uuid.NewString(), s.appName, p.PartitionKey, p.Max}
		q := pgDequeue
		if p.WorkerConcurrency > 0 {
			q, args = pgDequeueLocal, append(args, p.WorkerConcurrency)
		}
		rs, err := s.d.writer().Query(ctx, s.dl.cached(q), args...)
		return collect(rs, err, scan)
	}
	err := s.d.inTx(ctx, func(tx querier) error {
		n := p.Max
		queueWide := p.GlobalConcurrency > 0 || p.RateLimit > 0 || p.PartitionConcurrency > 0
		if queueWide && s.dl.cte {
			// Queue-wide limits are counts over every executor's rows: two
			// dequeuers counting at once would both see room. The
			// transaction-scoped lock makes them count in turn (read
			// committed: the count after the lock sees the previous claim).
			// SQLite's write transaction is such a lock already.
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, QueueChannel+":"+p.Queue); err != nil {
				return err
			}
		}
		if p.WorkerConcurrency > 0 || queueWide {
			var local, global, recent, part int
			if err := tx.QueryRow(ctx, s.dl.cached(queueLoad), p.Queue, p.ExecutorID, now-p.RatePeriodMS,
				p.PartitionKey, s.appName).Scan(&local, &global, &recent, &part); err != nil {
				return err
			}
			bound := func(limit, used int) {
				if limit > 0 {
					n = min(n, max(limit-used, 0))
				}
			}
			bound(p.WorkerConcurrency, local)
			bound(p.GlobalConcurrency, global)
			bound(p.RateLimit, recent)
			if p.PartitionKey != "" {
				bound(p.PartitionConcurrency, part)
			}
		}
		if n == 0 {
			return nil
		}
		args := []any{p.Queue, p.ExecutorID, p.AppVersion, now, p.RateLimit > 0, uuid.NewString(), s.appName, p.PartitionKey, n}
		if s.dl.cte {
			rs, err := tx.Query(ctx, s.dl.cached(pgDequeue), args...)
			out, err = collect(rs, err, scan)
			return err
		}
		// SQLite's RETURNING has no order: read the candidates in queue
		// order first (the write transaction holds them still), then claim.
		rs, err := tx.Query(ctx, s.dl.cached(dequeueCandidates), args...)
		ids, err := collect(rs, err, func(r rows, id *string) error { return r.Scan(id) })
		if err != nil || len(ids) == 0 {
			return err
		}
		if _, err := tx.Exec(ctx, s.dl.cached(sqliteDequeueClaim), args...); err != nil {
			return err
		}
		for _, id := range ids {
			w := Dequeued{WorkflowRow: WorkflowRow{ID: id}}
			if err := scanWorkflow(tx.QueryRow(ctx, s.q.workflow, id), &w.WorkflowRow); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM operation_outputs WHERE workflow_uuid = ?1)`, id).Scan(&w.HasSteps); err != nil {
				return err
			}
			out = append(out, w)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RunnableQueues implements Queuer.
func (s *store) RunnableQueues(ctx context.Context) ([]string, error) {
	rs, err := s.d.reader().Query(ctx, s.dl.cached(`SELECT DISTINCT queue_name FROM {schema}.workflow_status
WHERE (status = 'ENQUEUED' OR (status = 'DELAYED' AND delay_until_epoch_ms <= $1)) AND queue_name IS NOT NULL
	AND (application_name = $2 OR application_name IS NULL) ORDER BY queue_name`), nowMS(), s.appName)
	return collect(rs, err, func(r rows, q *string) error { return r.Scan(q) })
}

// PartitionKeys implements Queuer.
func (s *store) PartitionKeys(ctx context.Context, queue string) ([]string, error) {
	rs, err := s.d.reader().Query(ctx, s.dl.cached(`SELECT DISTINCT queue_partition_key FROM {schema}.workflow_status
WHERE queue_name = $1 AND status IN ('ENQUEUED', 'DELAYED') AND queue_partition_key IS NOT NULL`), queue)
	return collect(rs, err, func(r rows, k *string) error { return r.Scan(k) })
}

// WatchQueues implements Queuer: SQLite has no notifications.
func (s *SQLite) WatchQueues(func(string)) bool { return false }

var (
	_ Queuer = (*Postgres)(nil)
	_ Queuer = (*SQLite)(nil)
)

// WatchQueues implements Queuer: the process's listening connection (see
// notifier) hands QueueChannel's notifications to fn. Set it before
// WatchCancellations starts the listener.
func (p *Postgres) WatchQueues(fn func(queue string)) bool {
	p.hub.handle(QueueChannel, fn)
	return true
}
