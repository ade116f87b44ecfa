package torture

import (
	"context"
	"syscall"
	"time"
)

// After the faults: every start acknowledged and every workflow finished,
// then every worker shut down gracefully and its connections gone.

func (d *driver) drain() {
	// Every slot up, every start acknowledged, every workflow finished.
	d.waitAllReady(2 * time.Minute)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		for _, p := range d.currentProcs() {
			d.resubmit(p, 2*time.Second)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var pending int
		err := d.pool.QueryRow(ctx, `SELECT count(*) FROM dbos.workflow_status WHERE status IN ('PENDING', 'ENQUEUED')`).Scan(&pending)
		cancel()
		d.mu.Lock()
		unacked := 0
		for _, id := range d.ids {
			if !d.wfs[id].acked {
				unacked++
			}
		}
		d.mu.Unlock()
		if err == nil && pending == 0 && unacked == 0 {
			d.event("drained: nothing PENDING or ENQUEUED, every start acknowledged")
			return
		}
		if time.Now().After(deadline) {
			d.event("drain timed out: %d PENDING or ENQUEUED, %d unacknowledged (err %v)", pending, unacked, err)
			d.dumpStuck()
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dumpStuck logs the unfinished workflows and the executors' leases: who
// holds what the drain waited for in vain.
func (d *driver) dumpStuck() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, q := range []string{
		`SELECT workflow_uuid || ' ' || status || ' executor=' || COALESCE(executor_id, '') || ' queue=' || COALESCE(queue_name, '') ||
			' attempts=' || recovery_attempts || ' updated_at=' || updated_at FROM dbos.workflow_status WHERE status IN ('PENDING', 'ENQUEUED')`,
		`SELECT executor_id || ' pid=' || pid || ' instance=' || instance_id || ' expires_in_ms=' ||
			(lease_expires_at - (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT) FROM dbos.dbosgen_executors`,
	} {
		rows, err := d.pool.Query(ctx, q)
		if err != nil {
			d.event("stuck: %v", err)
			continue
		}
		for rows.Next() {
			var line string
			if rows.Scan(&line) == nil {
				d.event("stuck: %s", line)
			}
		}
		rows.Close()
	}
}

func (d *driver) quitAll() {
	d.mu.Lock()
	d.quitting = true
	var live []*proc
	for _, p := range d.procs {
		select {
		case <-p.done:
		default:
			p.quitSent = true
			live = append(live, p)
		}
	}
	d.mu.Unlock()
	for _, p := range live {
		p.send("quit")
	}
	for _, p := range live {
		select {
		case <-p.done:
		case <-time.After(60 * time.Second):
			d.violation("worker %d (pid %d) did not shut down within 60s of quit\n%s", p.n, p.pid, tail(p.logPath, 30))
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
			<-p.done
		}
		if c := exitCode(p.exitErr); c != 0 {
			d.violation("worker %d (pid %d) exited with %v after quit\n%s", p.n, p.pid, p.exitErr, tail(p.logPath, 30))
		}
	}
	d.supervised.Wait()
}

func (d *driver) checkConnections() {
	var n int
	for i := 0; i < 100; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := d.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2`,
			d.dbName, appName).Scan(&n)
		cancel()
		if err == nil && n == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.violation("%d worker connections to the database remain after every worker shut down gracefully", n)
}
