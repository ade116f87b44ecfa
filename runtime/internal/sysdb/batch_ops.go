package sysdb

import (
	"context"
	"slices"
	"strings"
)

// The engines' ways of writing many rows at once, for the batcher.

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

// recordStepsTx inserts rows in one transaction on SQLite: one commit (one
// fsync of the single writer) for all of them.
func (s *store) recordStepsTx(ctx context.Context, rows []StepRow) ([]bool, error) {
	return s.d.(*sqliteDriver).recordSteps(ctx, rows)
}

// finishManyPG records outcomes with one statement.
func (s *store) finishManyPG(ctx context.Context, batch []FinishParams) ([]bool, error) {
	return inIDOrder(batch, func(p *FinishParams) string { return p.ID }, func(sorted []FinishParams) ([]bool, error) {
		return s.d.(pgDriver).finishMany(ctx, s.q.finishMany, sorted, nowMS())
	})
}

// inIDOrder writes rows sorted by ID, and gives the results back in the
// rows' order. Batches of one kind then lock their rows in one order: two
// statements locking the same rows in opposite orders would deadlock.
func inIDOrder[T any](rows []T, id func(*T) string, write func(sorted []T) ([]bool, error)) ([]bool, error) {
	order := make([]int, len(rows))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(id(&rows[a]), id(&rows[b])) })
	sorted := make([]T, len(rows))
	for k, i := range order {
		sorted[k] = rows[i]
	}
	got, err := write(sorted)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(rows))
	for k, i := range order {
		out[i] = got[k]
	}
	return out, nil
}

// finishManyTx records outcomes in one transaction on SQLite.
func (s *store) finishManyTx(ctx context.Context, batch []FinishParams) ([]bool, error) {
	return s.d.(*sqliteDriver).finishMany(ctx, batch, nowMS())
}

// insertManyPG starts new workflows with one statement.
func (s *store) insertManyPG(ctx context.Context, batch []newWorkflow) ([]bool, error) {
	return inIDOrder(batch, func(w *newWorkflow) string { return w.Row.ID }, func(sorted []newWorkflow) ([]bool, error) {
		return s.d.(pgDriver).insertMany(ctx, s.q.insertMany, sorted)
	})
}
