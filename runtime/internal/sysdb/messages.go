package sysdb

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// Messages, events and streams in DBOS's tables (notifications,
// workflow_events, workflow_events_history, streams). Each write made from a
// workflow is one transaction holding the write and its step checkpoint,
// through the transaction seam, so a crash keeps both or neither; the
// checkpoint goes first, so an execution that finds it taken (another
// execution of the same workflow recorded that step) rolls back and reads the
// recorded outcome instead.

// NullTopic is how DBOS stores the empty topic.
const NullTopic = "__null__topic__"

// StreamClosed is the value DBOS writes to close a stream.
const StreamClosed = "__DBOS_STREAM_CLOSED__"

// ErrNoDestination: a message for a workflow that does not exist.
var ErrNoDestination = errors.New("destination workflow does not exist")

// ErrStreamClosed: a write to a stream already closed.
var ErrStreamClosed = errors.New("stream is closed")

// errStepTaken rolls back a write whose step another execution recorded.
var errStepTaken = errors.New("step already recorded")

// Messaging is the Store's part for messages, events and streams.
type Messaging interface {
	// Send inserts a message (topic "" is NullTopic). With step, the step
	// is recorded in the same transaction; when it was recorded already the
	// recorded outcome is returned with fresh=false and nothing is sent.
	// MessageUUID, when set, makes the send idempotent. A missing
	// destination is ErrNoDestination.
	Send(ctx context.Context, m Message, step *StepRow) (stored StepRow, fresh bool, err error)
	// HasMessage reports whether an unconsumed message waits on the topic.
	HasMessage(ctx context.Context, destination, topic string) (bool, error)
	// Recv consumes the oldest unconsumed message of the topic and records
	// step with it as output (and its serialization), in one transaction
	// (one statement on PostgreSQL). When there is none it records step
	// with no output (a timeout) if orTimeout, and otherwise does nothing
	// (Recorded false): the caller waits and tries again.
	Recv(ctx context.Context, destination, topic string, step StepRow, orTimeout bool) (RecvResult, error)
	// SetEvent upserts an event, adds it to the history under step's ID,
	// records step and notifies EventsChannel, in one transaction.
	SetEvent(ctx context.Context, ev Event, step StepRow) (stored StepRow, fresh bool, err error)
	// GetEvent reads an event; found is false when it is not set.
	GetEvent(ctx context.Context, workflowID, key string) (ev Event, found bool, err error)
	// WriteStream appends a value (StreamClosed closes the stream) at the
	// next offset, records step and notifies StreamsChannel, in one
	// transaction; a closed stream is ErrStreamClosed.
	WriteStream(ctx context.Context, ev Event, step StepRow) (stored StepRow, fresh bool, err error)
	// ReadStream reads a stream's values from offset on, and whether the
	// close marker follows them.
	ReadStream(ctx context.Context, workflowID, key string, from int) (vals []StreamValue, closed bool, err error)
	// Subscribe wakes the returned channel when payload is notified on
	// channel ("workflow::topic" or "workflow::key"); Notifies says whether
	// other processes' writes wake it too (PostgreSQL), or only this
	// process's own (SQLite: waiters poll for the others').
	Subscribe(channel, payload string) (<-chan struct{}, func())
	Notifies() bool
	// RecordStepAs is RecordStep keeping step.Serialization.
	RecordStepAs(ctx context.Context, step StepRow) (stored StepRow, fresh bool, err error)
}

// RecvResult is what Recv did.
type RecvResult struct {
	Step     StepRow // the step as recorded, when Recorded
	Recorded bool    // the step is recorded, by this call (Fresh) or an earlier execution
	Fresh    bool
}

// Message is a row of notifications.
type Message struct {
	Destination   string
	Topic         string
	Value         string
	Serialization string
	MessageUUID   string // "": a fresh one
}

// Event is an event (workflow_events) or a stream value to write.
type Event struct {
	WorkflowID    string
	Key           string
	Value         string
	Serialization string
}

// StreamValue is one value of a stream.
type StreamValue struct {
	Offset        int
	Value         string
	Serialization string
}

// Payload is a notification's payload, as DBOS builds it.
func Payload(workflowID, key string) string { return workflowID + "::" + key }

// TopicOrNull is the topic as DBOS stores it: "" is NullTopic.
func TopicOrNull(t string) string {
	if t == "" {
		return NullTopic
	}
	return t
}

// Subscribe implements Messaging.
func (s *store) Subscribe(channel, payload string) (<-chan struct{}, func()) {
	return s.hub.subscribe(channel, payload)
}

// Notifies implements Messaging.
func (s *store) Notifies() bool { return s.hub.listens() }

// signal wakes this process's waiters after a commit where the database
// does not notify (SQLite); on PostgreSQL the statement's pg_notify does,
// for every process.
func (s *store) signal(channel, payload string) {
	if !s.hub.listens() {
		s.hub.dispatch(channel, payload)
	}
}

// withStep runs write and records step in one transaction; when the step is
// recorded already it returns the recorded outcome, fresh=false.
func (s *store) withStep(ctx context.Context, step *StepRow, write func(tx querier) error) (StepRow, bool, error) {
	err := s.d.inTx(ctx, func(tx querier) error {
		if step != nil {
			n, err := tx.Exec(ctx, s.dl.cached(msgRecordStep), stepRowArgs(*step, s.appName)...)
			if err != nil {
				return err
			}
			if n == 0 {
				return errStepTaken
			}
		}
		return write(tx)
	})
	if step == nil {
		return StepRow{}, err == nil, err
	}
	if errors.Is(err, errStepTaken) {
		got := StepRow{WorkflowID: step.WorkflowID}
		err = scanStep(s.d.reader().QueryRow(ctx, s.q.recordedStep, step.WorkflowID, step.StepID), &got)
		return got, false, err
	}
	if step.Serialization == "" {
		step.Serialization = FormatPortable
	}
	return *step, err == nil, err
}

// Send implements Messaging.
func (s *store) Send(ctx context.Context, m Message, step *StepRow) (StepRow, bool, error) {
	if m.MessageUUID == "" {
		m.MessageUUID = uuid.NewString()
	}
	topic := TopicOrNull(m.Topic)
	var stored StepRow
	var fresh bool
	var err error
	switch {
	case step == nil:
		err = s.insertMessage(ctx, s.d.writer(), m, topic)
		fresh = err == nil
	case s.dl.cte:
		if fresh, err = s.pgStepWrite(ctx, pgSendStep, *step, m.Destination, topic, m.Value, m.Serialization, m.MessageUUID); err != nil || fresh {
			stored = *step
			break
		}
		var ok bool
		if stored, ok, err = s.recordedStepRow(ctx, *step); err == nil && !ok {
			err = fmt.Errorf("%w: %s", ErrNoDestination, m.Destination)
		}
	default:
		stored, fresh, err = s.withStep(ctx, step, func(tx querier) error { return s.insertMessage(ctx, tx, m, topic) })
	}
	if err == nil && fresh {
		s.signal(NotificationsChannel, Payload(m.Destination, topic))
	}
	return stored, fresh, err
}

// insertMessage inserts a message only for an existing destination (SQLite
// does not enforce DBOS's foreign key): nothing inserted is either a
// missing destination or an idempotency key used already.
func (s *store) insertMessage(ctx context.Context, q querier, m Message, topic string) error {
	n, err := q.Exec(ctx, s.dl.cached(msgSend), m.Destination, topic, m.Value, m.Serialization, m.MessageUUID, nowMS())
	if err != nil || n == 1 {
		return err
	}
	var exists bool
	if err := q.QueryRow(ctx, s.dl.cached(msgWorkflowExists), m.Destination).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("%w: %s", ErrNoDestination, m.Destination)
	}
	return nil // the idempotency key was used already: sent once
}

// HasMessage implements Messaging.
func (s *store) HasMessage(ctx context.Context, destination, topic string) (bool, error) {
	var ok bool
	err := s.d.reader().QueryRow(ctx, s.dl.cached(msgPending), destination, TopicOrNull(topic)).Scan(&ok)
	return ok, err
}

// Recv implements Messaging. The consume comes first here: the step row
// holds the message it consumed.
func (s *store) Recv(ctx context.Context, destination, topic string, step StepRow, orTimeout bool) (RecvResult, error) {
	if s.dl.cte {
		return s.pgRecv(ctx, destination, topic, step, orTimeout)
	}
	if !orTimeout {
		// SQLite waiters poll: look on the read pool first, so that a poll
		// finding nothing never takes the single write connection.
		if has, err := s.HasMessage(ctx, destination, topic); err != nil || !has {
			return RecvResult{}, err
		}
	}
	got := step
	err := s.d.inTx(ctx, func(tx querier) error {
		var msg, format *string
		err := tx.QueryRow(ctx, s.dl.cached(msgConsume), destination, TopicOrNull(topic), step.StepID).Scan(&msg, &format)
		if isNoRows(err) && !orTimeout {
			return errNothingYet
		}
		if err != nil && !isNoRows(err) {
			return err
		}
		got.Serialization = FormatPortable
		if msg != nil {
			got.Output, got.Serialization = *msg, FormatDBOSJSON // DBOS reads a message without format as DBOS_JSON
			if format != nil && *format != "" {
				got.Serialization = *format
			}
		}
		n, err := tx.Exec(ctx, s.dl.cached(msgRecordStep), stepRowArgs(got, s.appName)...)
		if err == nil && n == 0 {
			return errStepTaken
		}
		return err
	})
	switch {
	case errors.Is(err, errNothingYet):
		return RecvResult{}, nil
	case errors.Is(err, errStepTaken):
		rec, ok, err := s.recordedStepRow(ctx, step)
		return RecvResult{Step: rec, Recorded: ok}, err
	case err != nil:
		return RecvResult{}, err
	}
	return RecvResult{Step: got, Recorded: true, Fresh: true}, nil
}

// errNothingYet rolls back a Recv that found no message and may not time out.
var errNothingYet = errors.New("no message yet")

// SetEvent implements Messaging.
func (s *store) SetEvent(ctx context.Context, ev Event, step StepRow) (StepRow, bool, error) {
	if s.dl.cte {
		return s.pgWrite(ctx, pgSetEvent, step, nil, ev.Key, ev.Value, ev.Serialization)
	}
	stored, fresh, err := s.withStep(ctx, &step, func(tx querier) error {
		if _, err := tx.Exec(ctx, s.dl.cached(msgSetEvent), ev.WorkflowID, ev.Key, ev.Value, ev.Serialization); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.dl.cached(msgEventHistory), ev.WorkflowID, step.StepID, ev.Key, ev.Value, ev.Serialization); err != nil {
			return err
		}
		return s.notifyInTx(ctx, tx, EventsChannel, Payload(ev.WorkflowID, ev.Key))
	})
	if err == nil && fresh {
		s.signal(EventsChannel, Payload(ev.WorkflowID, ev.Key))
	}
	return stored, fresh, err
}

// notifyInTx sends a notification at the transaction's commit (PostgreSQL).
func (s *store) notifyInTx(ctx context.Context, tx querier, channel, payload string) error {
	if !s.dl.cte {
		return nil
	}
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, payload)
	return err
}

// GetEvent implements Messaging.
func (s *store) GetEvent(ctx context.Context, workflowID, key string) (Event, bool, error) {
	ev := Event{WorkflowID: workflowID, Key: key}
	var format *string
	err := s.d.reader().QueryRow(ctx, s.dl.cached(msgGetEvent), workflowID, key).Scan(&ev.Value, &format)
	if isNoRows(err) {
		return ev, false, nil
	}
	ev.Serialization = FormatDBOSJSON
	if format != nil && *format != "" {
		ev.Serialization = *format
	}
	return ev, err == nil, err
}

// WriteStream implements Messaging.
func (s *store) WriteStream(ctx context.Context, ev Event, step StepRow) (StepRow, bool, error) {
	if s.dl.cte {
		var format any = ev.Serialization
		if ev.Value == StreamClosed {
			format = nil
		}
		closed := fmt.Errorf("%w: stream %q of workflow %s", ErrStreamClosed, ev.Key, ev.WorkflowID)
		return s.pgWrite(ctx, pgWriteStream, step, closed, ev.Key, ev.Value, format)
	}
	stored, fresh, err := s.withStep(ctx, &step, func(tx querier) error {
		var closed bool
		if err := tx.QueryRow(ctx, s.dl.cached(msgStreamClosed), ev.WorkflowID, ev.Key, StreamClosed).Scan(&closed); err != nil {
			return err
		}
		if closed {
			return fmt.Errorf("%w: stream %q of workflow %s", ErrStreamClosed, ev.Key, ev.WorkflowID)
		}
		var format any = ev.Serialization
		if ev.Value == StreamClosed {
			format = nil // the marker is not a value: DBOS writes it with no format
		}
		if _, err := tx.Exec(ctx, s.dl.cached(msgStreamWrite), ev.WorkflowID, ev.Key, ev.Value, step.StepID, format); err != nil {
			return err
		}
		return s.notifyInTx(ctx, tx, StreamsChannel, Payload(ev.WorkflowID, ev.Key))
	})
	if err == nil && fresh {
		s.signal(StreamsChannel, Payload(ev.WorkflowID, ev.Key))
	}
	return stored, fresh, err
}

// ReadStream implements Messaging.
func (s *store) ReadStream(ctx context.Context, workflowID, key string, from int) ([]StreamValue, bool, error) {
	rs, err := s.d.reader().Query(ctx, s.dl.cached(msgStreamRead), workflowID, key, from)
	if err != nil {
		return nil, false, err
	}
	defer rs.Close()
	var out []StreamValue
	for rs.Next() {
		var v StreamValue
		var format *string
		if err := rs.Scan(&v.Value, &v.Offset, &format); err != nil {
			return nil, false, err
		}
		if v.Value == StreamClosed {
			return out, true, nil
		}
		v.Serialization = FormatDBOSJSON
		if format != nil && *format != "" {
			v.Serialization = *format
		}
		out = append(out, v)
	}
	return out, false, rs.Err()
}

// RecordStepAs records a step like RecordStep, keeping step.Serialization
// (a value recorded as it was read, in the format its writer chose).
func (s *store) RecordStepAs(ctx context.Context, step StepRow) (StepRow, bool, error) {
	n, err := s.d.writer().Exec(ctx, s.dl.cached(msgRecordStep), stepRowArgs(step, s.appName)...)
	if err != nil {
		return StepRow{}, false, err
	}
	if n == 1 {
		if step.Serialization == "" {
			step.Serialization = FormatPortable
		}
		return step, true, nil
	}
	got := StepRow{WorkflowID: step.WorkflowID}
	err = scanStep(s.d.reader().QueryRow(ctx, s.q.recordedStep, step.WorkflowID, step.StepID), &got)
	return got, false, err
}
