package sysdb

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Executor leases (issue 12): each live runtime holds a lease on its executor
// ID in dbosgen_executors, renewed in the background; a runtime of the same
// application version adopts the PENDING workflows of an executor whose lease
// expired. Every statement here is one statement on either engine, timed by
// the database's clock ({now}), so that machines never compare their own.

// Holder is who holds, or asks for, an executor's lease.
type Holder struct {
	ExecutorID string
	AppVersion string
	Host       string
	MachineID  string // boot ID and PID namespace; "" when unknown
	PID        int64
	InstanceID string // one per runtime: tells two holders on one pid apart
}

// LeaseRow is an executor's lease as recorded.
type LeaseRow struct {
	Holder
	AppName string
	// RemainingMS is how long the lease has left on the database's clock;
	// zero or less: expired.
	RemainingMS int64
}

// AdoptingPrefix starts the instance ID of a lease that a live executor
// claimed to adopt a dead one's workflows: a restart of the dead executor
// waits for the adoption to finish rather than racing it.
const AdoptingPrefix = "adopting:"

// Leases is the lease side of the system database; both engines' stores
// implement it.
type Leases interface {
	// AcquireLease takes executorID's lease for h when it is free, expired,
	// or held by the instance replace (a holder proved gone; "" for none).
	AcquireLease(ctx context.Context, h Holder, lease time.Duration, replace string) (bool, error)
	// Lease reads an executor's lease, or ErrNotFound.
	Lease(ctx context.Context, executorID string) (LeaseRow, error)
	// RenewLease extends the lease held by instanceID; false when another
	// holder has it now (or adopted the executor's work).
	RenewLease(ctx context.Context, executorID, instanceID string, lease time.Duration) (bool, error)
	// ReleaseLease ends the lease held by instanceID at once (Shutdown): its
	// interrupted workflows may be adopted, or resumed by a restart.
	ReleaseLease(ctx context.Context, executorID, instanceID string) error
	// ExpiredExecutors lists the executors of this application and
	// appVersion whose lease expired, oldest first, except one.
	ExpiredExecutors(ctx context.Context, appVersion, except string) ([]string, error)
	// ClaimExecutor marks an expired executor's lease as being adopted by
	// marker (AdoptingPrefix + the adopter's instance) for lease; exactly one
	// claimer wins.
	ClaimExecutor(ctx context.Context, dead, marker, appVersion string, lease time.Duration) (bool, error)
	// AdoptWorkflows moves dead's PENDING workflows of appVersion to
	// adopter, with a new owner_xid as DBOS's recovery sets, and returns
	// their IDs: each row moves once, whoever else tries, and only while
	// marker's claim on dead is live (a restart of dead that took the lease
	// back keeps its workflows). A workflow dequeued from a queue is put
	// back on it (ENQUEUED), as DBOS's recovery does, so that the queue's
	// limits hold for whoever dequeues it next.
	AdoptWorkflows(ctx context.Context, dead, marker, adopter, appVersion string) ([]string, error)
	// DropLease deletes a lease row still held by instanceID.
	DropLease(ctx context.Context, executorID, instanceID string) error
	// StrandedVersions counts, per application version other than
	// appVersion, this application's PENDING workflows whose executor's
	// lease expired: work no live executor of this version can adopt.
	StrandedVersions(ctx context.Context, appVersion string) ([]VersionCount, error)
}

// pgNowMS is the database's clock in unix ms; sqliteNowMS is its SQLite twin.
const pgNowMS = `(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT`

func (s *store) leaseSQL(q string) string { return s.dl.cached(q) }

// AcquireLease implements Leases: one upsert.
func (s *store) AcquireLease(ctx context.Context, h Holder, lease time.Duration, replace string) (bool, error) {
	rs, err := s.d.writer().Query(ctx, s.leaseSQL(`INSERT INTO {schema}.`+executorsTable+` AS e (executor_id, application_name,
	application_version, host, machine_id, pid, instance_id, acquired_at, lease_expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, {now}, {now} + $8)
ON CONFLICT (executor_id) DO UPDATE SET application_name = excluded.application_name,
	application_version = excluded.application_version, host = excluded.host, machine_id = excluded.machine_id,
	pid = excluded.pid, instance_id = excluded.instance_id, acquired_at = excluded.acquired_at,
	lease_expires_at = excluded.lease_expires_at
WHERE e.lease_expires_at <= {now} OR e.instance_id = $9 OR e.instance_id = $7
RETURNING instance_id`), h.ExecutorID, s.appName, h.AppVersion, h.Host, h.MachineID, h.PID, h.InstanceID,
		lease.Milliseconds(), replace)
	got, err := collect(rs, err, func(r rows, id *string) error { return r.Scan(id) })
	return len(got) == 1, err
}

// Lease implements Leases.
func (s *store) Lease(ctx context.Context, executorID string) (LeaseRow, error) {
	l := LeaseRow{Holder: Holder{ExecutorID: executorID}}
	err := s.d.writer().QueryRow(ctx, s.leaseSQL(`SELECT application_name, application_version, host, machine_id, pid,
	instance_id, lease_expires_at - {now} FROM {schema}.`+executorsTable+` WHERE executor_id = $1`), executorID).
		Scan(&l.AppName, &l.AppVersion, &l.Host, &l.MachineID, &l.PID, &l.InstanceID, &l.RemainingMS)
	if isNoRows(err) {
		return l, ErrNotFound
	}
	return l, err
}

// RenewLease implements Leases: one UPDATE by primary key, the whole
// steady-state cost of holding a lease.
func (s *store) RenewLease(ctx context.Context, executorID, instanceID string, lease time.Duration) (bool, error) {
	n, err := s.d.writer().Exec(ctx, s.leaseSQL(`UPDATE {schema}.`+executorsTable+` SET lease_expires_at = {now} + $3
WHERE executor_id = $1 AND instance_id = $2`), executorID, instanceID, lease.Milliseconds())
	return n == 1, err
}

// ReleaseLease implements Leases.
func (s *store) ReleaseLease(ctx context.Context, executorID, instanceID string) error {
	_, err := s.d.writer().Exec(ctx, s.leaseSQL(`UPDATE {schema}.`+executorsTable+` SET lease_expires_at = 0
WHERE executor_id = $1 AND instance_id = $2`), executorID, instanceID)
	return err
}

// ExpiredExecutors implements Leases: one indexed read, the adoption poll.
func (s *store) ExpiredExecutors(ctx context.Context, appVersion, except string) ([]string, error) {
	rs, err := s.d.reader().Query(ctx, s.leaseSQL(`SELECT executor_id FROM {schema}.`+executorsTable+`
WHERE application_name = $1 AND application_version = $2 AND lease_expires_at <= {now} AND executor_id <> $3
ORDER BY lease_expires_at LIMIT 16`), s.appName, appVersion, except)
	return collect(rs, err, func(r rows, id *string) error { return r.Scan(id) })
}

// ClaimExecutor implements Leases: the row lock makes one claimer win; the
// others find the lease live again.
func (s *store) ClaimExecutor(ctx context.Context, dead, marker, appVersion string, lease time.Duration) (bool, error) {
	n, err := s.d.writer().Exec(ctx, s.leaseSQL(`UPDATE {schema}.`+executorsTable+`
SET instance_id = $2, lease_expires_at = {now} + $3
WHERE executor_id = $1 AND lease_expires_at <= {now} AND application_name = $4 AND application_version = $5`),
		dead, marker, lease.Milliseconds(), s.appName, appVersion)
	return n == 1, err
}

// AdoptWorkflows implements Leases.
//
// On PostgreSQL the claim's row is locked (FOR UPDATE) until the move
// commits, so a restart of the dead executor taking its lease back waits for
// it and then lists none of the moved workflows; or it took the lease first,
// and nothing moves. SQLite runs one writer at a time: the same holds.
func (s *store) AdoptWorkflows(ctx context.Context, dead, marker, adopter, appVersion string) ([]string, error) {
	lock := " FOR UPDATE"
	if s.dl.sqlite {
		lock = ""
	}
	// A queued workflow goes back to its queue rather than to the adopter's
	// hands: resumed at once beside the adopter's own, it would break the
	// queue's worker concurrency.
	rs, err := s.d.writer().Query(ctx, s.leaseSQL(`UPDATE {schema}.workflow_status
SET executor_id = $2, owner_xid = $5, updated_at = {now},
	status = CASE WHEN queue_name IS NULL THEN status ELSE 'ENQUEUED' END,
	started_at_epoch_ms = CASE WHEN queue_name IS NULL THEN started_at_epoch_ms END
WHERE executor_id = $1 AND status = 'PENDING' AND application_version = $3
	AND (application_name = $4 OR application_name IS NULL)
	AND EXISTS (SELECT 1 FROM {schema}.`+executorsTable+` e
		WHERE e.executor_id = $1 AND e.instance_id = $6 AND e.lease_expires_at > {now}`+lock+`)
RETURNING workflow_uuid`), dead, adopter, appVersion, s.appName, uuid.NewString(), marker)
	return collect(rs, err, func(r rows, id *string) error { return r.Scan(id) })
}

// DropLease implements Leases.
func (s *store) DropLease(ctx context.Context, executorID, instanceID string) error {
	_, err := s.d.writer().Exec(ctx, s.leaseSQL(`DELETE FROM {schema}.`+executorsTable+`
WHERE executor_id = $1 AND instance_id = $2`), executorID, instanceID)
	return err
}

// StrandedVersions implements Leases: one grouped query.
func (s *store) StrandedVersions(ctx context.Context, appVersion string) ([]VersionCount, error) {
	rs, err := s.d.reader().Query(ctx, s.leaseSQL(`SELECT w.application_version, count(*)
FROM {schema}.workflow_status w JOIN {schema}.`+executorsTable+` e ON e.executor_id = w.executor_id
WHERE w.status = 'PENDING' AND w.application_version <> $1 AND (w.application_name = $2 OR w.application_name IS NULL)
	AND e.application_name = $2 AND e.lease_expires_at <= {now}
GROUP BY w.application_version ORDER BY w.application_version`), appVersion, s.appName)
	return collect(rs, err, func(r rows, v *VersionCount) error { return r.Scan(&v.Version, &v.Count) })
}

var (
	_ Leases = (*Postgres)(nil)
	_ Leases = (*SQLite)(nil)
)
