// Package dbostest tests durable workflows: an isolated runtime per test, a
// crash simulated after a workflow's n-th step followed by its recovery, and
// the replay of a finished workflow against its recorded outcomes.
//
//	func TestCheckoutRecovers(t *testing.T) {
//		rt := dbostest.Launch(t, dbostest.WithConfig(dbos.Config{Setup: createTables}))
//		ctx := dbos.WithWorkflowID(rt.Context(), "order-1")
//
//		// The process "dies" once the first two steps are recorded.
//		_, err := checkoutWorkflow(dbostest.CrashAfter(ctx, 2), order)
//		if !errors.Is(err, dbostest.ErrCrashed) {
//			t.Fatal(err)
//		}
//
//		// The next process recovers it: steps 1 and 2 return their
//		// recorded outcomes, the rest run.
//		rt = rt.Restart()
//		receipt, err := checkoutWorkflow(dbos.WithWorkflowID(rt.Context(), "order-1"), order)
//		...
//		// Run again against its history, it takes the same path.
//		dbostest.Replay(t, rt, "order-1")
//	}
//
// Launch uses a SQLite file in the test's temporary directory, or, when
// $DBOSGEN_TEST_POSTGRES_URL names a PostgreSQL server (or WithPostgres
// does), a database of its own on that server, dropped after the test.
// dbosgen vet finds nondeterminism statically; Replay catches what it
// cannot see, at run time, in your tests.
package dbostest
