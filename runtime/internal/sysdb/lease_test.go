package sysdb

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

func holder(exec, instance string) Holder {
	return Holder{ExecutorID: exec, AppVersion: "v1", Host: "h", MachineID: "m", PID: 42, InstanceID: instance}
}

// A lease is held by one instance at a time; renewals keep it, a release or
// an expiry frees it; a proven-dead holder can be replaced at once.
func TestLeaseOwnership(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		s := tg.migrated(t).(Leases)
		const long = time.Minute
		if ok, err := s.AcquireLease(ctx, holder("e", "i1"), long, ""); !ok || err != nil {
			t.Fatalf("first acquire: %v %v", ok, err)
		}
		if ok, err := s.AcquireLease(ctx, holder("e", "i2"), long, ""); ok || err != nil {
			t.Fatalf("acquire of a live lease: %v %v, want refused", ok, err)
		}
		if ok, err := s.RenewLease(ctx, "e", "i2", long); ok || err != nil {
			t.Fatalf("renewal by a non-holder: %v %v", ok, err)
		}
		if ok, err := s.RenewLease(ctx, "e", "i1", long); !ok || err != nil {
			t.Fatalf("renewal by the holder: %v %v", ok, err)
		}
		l, err := s.Lease(ctx, "e")
		if err != nil || l.InstanceID != "i1" || l.PID != 42 || l.RemainingMS <= 0 || l.AppName != "app" {
			t.Fatalf("Lease = %+v, %v", l, err)
		}
		if ok, err := s.AcquireLease(ctx, holder("e", "i3"), long, "i1"); !ok || err != nil {
			t.Fatalf("replacing a dead holder: %v %v", ok, err)
		}
		if err := s.ReleaseLease(ctx, "e", "i3"); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.AcquireLease(ctx, holder("e", "i4"), long, ""); !ok || err != nil {
			t.Fatalf("acquire after release: %v %v", ok, err)
		}
		if ok, err := s.RenewLease(ctx, "e", "i3", long); ok || err != nil {
			t.Fatalf("renewal by the replaced holder: %v %v, want lost", ok, err)
		}
	})
}

// Adoption: of concurrent claimers of an expired executor exactly one wins,
// and each PENDING workflow of its version moves exactly once.
func TestLeaseAdoption(t *testing.T) {
	forEachBackend(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		st := tg.migrated(t)
		s := st.(Leases)
		if ok, err := s.AcquireLease(ctx, holder("dead", "d"), time.Millisecond, ""); !ok || err != nil {
			t.Fatalf("acquire: %v %v", ok, err)
		}
		for _, id := range []string{"w1", "w2", "w3", "old"} {
			p := initParams(id)
			p.Row.ExecutorID = "dead"
			if id == "old" {
				p.Row.AppVersion = "v0"
			}
			mustInit(t, st, p)
		}
		time.Sleep(20 * time.Millisecond)
		got, err := s.ExpiredExecutors(ctx, "v1", "me")
		if err != nil || !slices.Equal(got, []string{"dead"}) {
			t.Fatalf("ExpiredExecutors = %v, %v", got, err)
		}
		var mu sync.Mutex
		var winners []string
		var adopted []string
		var wg sync.WaitGroup
		for _, me := range []string{"a", "b", "c", "d"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				other := tg.open(t).(Leases) // its own connections
				ok, err := other.ClaimExecutor(ctx, "dead", AdoptingPrefix+me, "v1", time.Minute)
				if err != nil {
					t.Errorf("claim: %v", err)
				}
				ids, err := other.AdoptWorkflows(ctx, "dead", AdoptingPrefix+me, me, "v1")
				if err != nil {
					t.Errorf("adopt: %v", err)
				}
				mu.Lock()
				if ok {
					winners = append(winners, me)
				}
				adopted = append(adopted, ids...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		slices.Sort(adopted)
		if len(winners) != 1 || !slices.Equal(adopted, []string{"w1", "w2", "w3"}) {
			t.Fatalf("claim winners %v, adopted %v; want one winner and w1..w3 once each", winners, adopted)
		}
		if w, _ := st.Workflow(ctx, "old"); w.ExecutorID != "dead" {
			t.Fatalf("another version's workflow moved to %s", w.ExecutorID)
		}
		if ok, _ := s.AcquireLease(ctx, holder("dead", "restart"), time.Minute, ""); ok {
			t.Fatal("a restart took the lease while it was being adopted")
		}
		// A claim that expired before the move moves nothing: a restart
		// may have taken the lease back and listed its workflows.
		p := initParams("late")
		p.Row.ExecutorID = "dead"
		mustInit(t, st, p)
		if ids, err := s.AdoptWorkflows(ctx, "dead", AdoptingPrefix+"nobody", "x", "v1"); err != nil || len(ids) != 0 {
			t.Fatalf("adoption without a live claim moved %v, %v", ids, err)
		}
		if err := s.DropLease(ctx, "dead", AdoptingPrefix+winners[0]); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.AcquireLease(ctx, holder("dead", "restart"), time.Minute, ""); !ok {
			t.Fatal("the restart could not take the lease after the adoption")
		}
	})
}
