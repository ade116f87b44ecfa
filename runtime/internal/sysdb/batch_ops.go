package sysdb

import "context"

// The two engines' ways of recording many step rows at once, for the
// stepBatcher.

type stepKey struct {
	wf string
	id int
}

// recordStepsPG inserts rows with one multi-row statement.
func (s *store) recordStepsPG(ctx context.Context, batch []StepRow) ([]bool, error) {
	n := len(batch)
	wf, name, out, errs, child := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	fid := make([]int32, n)
	started, completed := make([]int64, n), make([]int64, n)
	now := nowMS()
	for i, r := range batch {
		wf[i], fid[i], name[i], out[i], errs[i], child[i] = r.WorkflowID, int32(r.StepID), r.Name, r.Output, r.Error, r.ChildID
		started[i], completed[i] = r.StartedMS, r.CompletedMS
		if completed[i] == 0 {
			completed[i] = now
		}
	}
	rs, err := s.d.writer().Query(ctx, s.q.recordSteps, wf, fid, name, out, errs, child, started, completed, s.appName)
	keys, err := collect(rs, err, func(r rows, k *stepKey) error { return r.Scan(&k.wf, &k.id) })
	if err != nil {
		return nil, err
	}
	inserted := map[stepKey]bool{}
	for _, k := range keys {
		inserted[k] = true
	}
	return claimed(batch, inserted), nil
}

// recordStepsTx inserts rows in one transaction: one commit (SQLite: one
// fsync of the single writer) for all of them.
func (s *store) recordStepsTx(ctx context.Context, rows []StepRow) ([]bool, error) {
	inserted := map[stepKey]bool{}
	err := s.d.inTx(ctx, func(tx querier) error {
		for _, r := range rows {
			n, err := tx.Exec(ctx, s.q.recordStep, stepArgs(r, s.appName)...)
			if err != nil {
				return err
			}
			if n == 1 {
				inserted[stepKey{r.WorkflowID, r.StepID}] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return claimed(rows, inserted), nil
}

// claimed says which rows were inserted; of two rows with one key in a
// batch, only the first can have been.
func claimed(rows []StepRow, inserted map[stepKey]bool) []bool {
	out := make([]bool, len(rows))
	for i, r := range rows {
		k := stepKey{r.WorkflowID, r.StepID}
		out[i] = inserted[k]
		delete(inserted, k)
	}
	return out
}
