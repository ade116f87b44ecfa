package sysdb

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dbosgen/dbosgen/internal/dbtest"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// BenchmarkPhases times one workflow's three statements apart, one in
// flight: the start, a step checkpoint and the finish, each next to a raw
// single-row INSERT into a copy of the table it writes first (same columns,
// same indexes), interleaved in the same loop so that both see the same
// server. x-raw-* is a phase's cost over its raw INSERT's. Run with
//
//	go test -run '^$' -bench Phases ./runtime/internal/sysdb/
func BenchmarkPhases(b *testing.B) {
	b.Run("postgres", func(b *testing.B) {
		ctx := context.Background()
		url := dbtest.Postgres(b)
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			b.Fatal(err)
		}
		defer pool.Close()
		s := NewPostgres(pool, "dbos", "app")
		if _, err := s.Migrate(ctx); err != nil {
			b.Fatal(err)
		}
		for _, q := range []string{
			`CREATE TABLE raw_status (LIKE dbos.workflow_status INCLUDING ALL)`,
			`CREATE TABLE raw_outputs (LIKE dbos.operation_outputs INCLUDING ALL)`,
		} {
			if _, err := pool.Exec(ctx, q); err != nil {
				b.Fatal(err)
			}
		}
		db := stdlib.OpenDBFromPool(pool)
		defer db.Close()
		rawStatus := func(id string) error {
			_, err := db.ExecContext(ctx, `INSERT INTO raw_status (workflow_uuid, status, name, executor_id, application_version,
	application_name, created_at, updated_at, serialization) VALUES ($1, 'PENDING', 'pkg.Workflow', 'exec-a', 'v1', 'app', $2, $2, 'portable_json')`,
				id, time.Now().UnixMilli())
			return err
		}
		rawOutput := func(id string) error {
			_, err := db.ExecContext(ctx, `INSERT INTO raw_outputs (workflow_uuid, function_id, function_name, output, completed_at_epoch_ms,
	serialization, application_name) VALUES ($1, 1, 'step', '42', $2, 'portable_json', 'app')`, id, time.Now().UnixMilli())
			return err
		}
		var d [5]time.Duration // raw status, raw output, start, step, finish
		timed := func(i int, f func() error) {
			t0 := time.Now()
			if err := f(); err != nil {
				b.Fatal(err)
			}
			d[i] += time.Since(t0)
		}
		run := func(n int, prefix string) {
			for i := range n {
				id := fmt.Sprintf("%s-%d", prefix, i)
				timed(0, func() error { return rawStatus(id) })
				timed(1, func() error { return rawOutput(id) })
				timed(2, func() error { _, err := s.InitWorkflow(ctx, initParams(id)); return err })
				timed(3, func() error {
					_, _, err := s.RecordStep(ctx, StepRow{WorkflowID: id, StepID: 1, Name: "step", Output: "42"})
					return err
				})
				timed(4, func() error {
					_, err := s.FinishWorkflow(ctx, FinishParams{ID: id, Status: StatusSuccess, Output: "42"})
					return err
				})
			}
		}
		run(50, "warm")
		d = [5]time.Duration{}
		b.ResetTimer()
		run(b.N, "run")
		b.StopTimer()
		per := func(i int) float64 { return float64(d[i].Nanoseconds()) / float64(b.N) }
		b.ReportMetric(per(1), "raw-insert-ns/op")
		b.ReportMetric(per(2)/per(0), "x-raw-start")
		b.ReportMetric(per(3)/per(1), "x-raw-step")
		// The finish writes workflow_status first, as the start does; its
		// cost over the step's cheaper insert is shown too.
		b.ReportMetric(per(4)/per(0), "x-raw-finish")
		b.ReportMetric(per(4)/per(1), "x-raw-insert-finish")
		b.ReportMetric(per(0)/per(1), "raw-status/raw-insert")
	})
}
