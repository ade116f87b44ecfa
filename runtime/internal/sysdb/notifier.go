package sysdb

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// DBOS's notification channels. DBOS's trigger on notifications sends
// "destination::topic" on NotificationsChannel; events and streams have no
// trigger any more (DBOS dropped them), so their writers send
// "workflow::key" from code: dbosgen does the same, in the writing
// transaction, so that a DBOS client waiting in GetEvent or ReadStream wakes.
const (
	NotificationsChannel = "dbos_notifications_channel"
	EventsChannel        = "dbos_workflow_events_channel"
	StreamsChannel       = "dbos_streams_channel"
)

// listenChannels are the channels the process's one listening connection
// LISTENs on. To multiplex another, add it here and register a handler or
// waiters for it.
var listenChannels = []string{CancelChannel, QueueChannel, NotificationsChannel, EventsChannel, StreamsChannel}

// notifier is the process's single listening connection (per store) and its
// dispatch table: whole-channel handlers (cancellations) and waiters keyed by
// payload (a Recv waits for "workflow::topic"). Thousands of waiters share
// the one connection. Without a pool (SQLite) it only dispatches the
// writes this process makes (signal); other processes' writes are seen by
// the waiters' polling.
type notifier struct {
	pool *pgxpool.Pool // nil: no LISTEN (SQLite)
	once sync.Once

	mu       sync.Mutex
	handlers map[string][]func(payload string)
	waiters  map[string]map[string]map[chan struct{}]struct{} // channel -> payload -> wake channels
}

func newNotifier(pool *pgxpool.Pool) *notifier {
	return &notifier{pool: pool, handlers: map[string][]func(string){}, waiters: map[string]map[string]map[chan struct{}]struct{}{}}
}

// handle calls fn with every payload on channel.
func (n *notifier) handle(channel string, fn func(payload string)) {
	n.mu.Lock()
	n.handlers[channel] = append(n.handlers[channel], fn)
	n.mu.Unlock()
}

// subscribe returns a channel that receives a wake-up whenever payload is
// notified on channel (coalesced: one pending wake-up at most), and the
// function that unsubscribes it. A wake-up says "look again", nothing more:
// the waiter re-reads the database.
func (n *notifier) subscribe(channel, payload string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	byPayload := n.waiters[channel]
	if byPayload == nil {
		byPayload = map[string]map[chan struct{}]struct{}{}
		n.waiters[channel] = byPayload
	}
	set := byPayload[payload]
	if set == nil {
		set = map[chan struct{}]struct{}{}
		byPayload[payload] = set
	}
	set[ch] = struct{}{}
	n.mu.Unlock()
	return ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if set := n.waiters[channel][payload]; set != nil {
			delete(set, ch)
			if len(set) == 0 {
				delete(n.waiters[channel], payload)
			}
		}
	}
}

// dispatch delivers one notification.
func (n *notifier) dispatch(channel, payload string) {
	n.mu.Lock()
	hs := n.handlers[channel]
	for ch := range n.waiters[channel][payload] {
		wake(ch)
	}
	n.mu.Unlock()
	for _, h := range hs {
		h(payload)
	}
}

// wakeAll wakes every waiter: after the connection was (re)established,
// notifications sent while it was down are lost, so everyone looks again.
func (n *notifier) wakeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, byPayload := range n.waiters {
		for _, set := range byPayload {
			for ch := range set {
				wake(ch)
			}
		}
	}
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// listens reports whether notifications arrive from the database (and so
// from other processes), not only from this process's own writes.
func (n *notifier) listens() bool { return n.pool != nil }

// start runs the listening connection until ctx ends, once per store;
// without a pool it does nothing.
func (n *notifier) start(ctx context.Context) {
	if n.pool == nil {
		return
	}
	n.once.Do(func() { go n.run(ctx) })
}

// run keeps one LISTEN connection up, reconnecting with capped backoff.
func (n *notifier) run(ctx context.Context) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		began := time.Now()
		_ = n.listen(ctx) // waiters poll slowly as a fallback: a dropped listener only delays them
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > 10*time.Second {
			delay = 100 * time.Millisecond // it was up for a while: reconnect promptly
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

func (n *notifier) listen(ctx context.Context) error {
	conn, err := n.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection carries LISTEN state: never hand it back to the pool.
	raw := conn.Hijack()
	defer raw.Close(context.Background())
	for _, ch := range listenChannels {
		if _, err := raw.Exec(ctx, "LISTEN "+quoteIdent(ch)); err != nil {
			return err
		}
	}
	n.wakeAll()
	for {
		msg, err := raw.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		n.dispatch(msg.Channel, msg.Payload)
	}
}
