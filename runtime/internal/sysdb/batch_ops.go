package sysdb

import "context"

// The two engines' ways of recording many step rows at once, for the
// stepBatcher.

type stepKey struct {
	wf string
	id int
}

// recordStepsPG inserts rows with one multi-row statement: all of them, or
// none (an error) when one of them was recorded already.
func (s *store) recordStepsPG(ctx context.Context, batch []StepRow) ([]bool, error) {
	if err := s.d.(pgDriver).recordSteps(ctx, s.q.recordSteps, batch, s.appName); err != nil {
		return nil, err
	}
	all := make([]bool, len(batch))
	for i := range all {
		all[i] = true
	}
	return all, nil
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
