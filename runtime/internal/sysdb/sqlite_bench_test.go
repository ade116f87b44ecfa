package sysdb

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkSQLiteOps measures one workflow's three statements on SQLite
// apart, one at a time, for their time and (with -benchmem) their heap
// allocations: the start of a new workflow, a step checkpoint and the
// finish. Run with
//
//	go test -run '^$' -bench SQLiteOps -benchmem ./runtime/internal/sysdb/
func BenchmarkSQLiteOps(b *testing.B) {
	ctx := context.Background()
	open := func(b *testing.B) *SQLite {
		s, err := OpenSQLite(ctx, filepath.Join(b.TempDir(), "sys.sqlite"), "app")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(s.Close)
		if _, err := s.Migrate(ctx); err != nil {
			b.Fatal(err)
		}
		return s
	}
	// ids are made before the timer starts: their formatting is not the
	// store's.
	ids := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("wf-%d", i)
		}
		return out
	}
	start := func(b *testing.B, s *SQLite, id string) {
		if _, err := s.InitWorkflow(ctx, initParams(id)); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("start", func(b *testing.B) {
		s := open(b)
		wf := ids(b.N)
		b.ResetTimer()
		for i := range b.N {
			start(b, s, wf[i])
		}
	})
	b.Run("step", func(b *testing.B) {
		s := open(b)
		start(b, s, "wf")
		b.ResetTimer()
		for i := range b.N {
			row := StepRow{WorkflowID: "wf", StepID: i, Name: "step", Output: "42", StartedMS: 1700000000000}
			if _, _, err := s.RecordStep(ctx, row); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("finish", func(b *testing.B) {
		s := open(b)
		wf := ids(b.N)
		for _, id := range wf {
			start(b, s, id)
		}
		b.ResetTimer()
		for i := range b.N {
			if _, err := s.FinishWorkflow(ctx, FinishParams{ID: wf[i], Status: StatusSuccess, Output: "42"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
