package sysdb

import (
	"context"
	"database/sql/driver"
	"path/filepath"
	"slices"
	"testing"
)

func TestToPositional(t *testing.T) {
	p := toPositional(`UPDATE t SET a = ?2, b = ?3, c = ?3 WHERE id = ?1 AND n = ?10`)
	if want := `UPDATE t SET a = ?, b = ?, c = ? WHERE id = ? AND n = ?`; p.sql != want {
		t.Errorf("sql = %q, want %q", p.sql, want)
	}
	if want := []int{2, 3, 3, 1, 10}; !slices.Equal(p.order, want) {
		t.Errorf("order = %v, want %v", p.order, want)
	}
}

// The writer's statements belong to one connection of the write pool; when
// the pool replaces it, they are prepared again on the new one.
func TestSQLiteWriterNewConnection(t *testing.T) {
	ctx := context.Background()
	s := openSQLiteT(t, filepath.Join(t.TempDir(), "sys.sqlite"))
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	mustInit(t, s, initParams("wf"))
	step := func(id int) {
		t.Helper()
		if _, fresh, err := s.RecordStep(ctx, StepRow{WorkflowID: "wf", StepID: id, Name: "s", Output: "1"}); err != nil || !fresh {
			t.Fatalf("step %d: fresh %v, %v", id, fresh, err)
		}
	}
	step(1)
	w := s.d.(*sqliteDriver).wr
	first := w.dc
	conn, err := s.WriteDB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The pool closes a connection its user reports bad.
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	conn.Close()
	step(2)
	if w.dc == first {
		t.Fatal("the pool kept the connection reported bad")
	}
	if _, err := s.FinishWorkflow(ctx, FinishParams{ID: "wf", Status: StatusSuccess, Output: "1"}); err != nil {
		t.Fatal(err)
	}
	steps, err := s.Steps(ctx, "wf")
	if err != nil || len(steps) != 2 {
		t.Fatalf("steps = %+v, %v; want 2", steps, err)
	}
	if w, err := s.Workflow(ctx, "wf"); err != nil || w.Status != StatusSuccess || w.Output != "1" {
		t.Fatalf("workflow = %+v, %v", w, err)
	}
}
