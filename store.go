// Package eventstore records every change of an application as an immutable
// event and keeps those events safe, in order, and fast to replay.
//
// The package holds the domain types every backend shares: [Event], the
// [Store] interface, the errors a Store returns, and the validation that
// decides which events a Store accepts. It imports no backend. Pick one:
//
//   - github.com/eventstore-go/eventstore/bolt: the embedded default, one bbolt file.
//   - github.com/eventstore-go/eventstore/memory: in memory, for tests and development.
//   - github.com/eventstore-go/eventstore/postgres: PostgreSQL through pgx, for servers.
//
// Every backend passes the same conformance suite
// (github.com/eventstore-go/eventstore/storetest), so code written against
// [Store] moves between them unchanged.
//
// # Guarantees
//
//   - Append is atomic: all events of a call are stored, or none.
//   - Append is durable on return (unless a backend's option turned that off).
//   - Versions are checked optimistically: a stale writer gets [ErrConflict]
//     and writes nothing.
//   - A retried Append whose events are already stored succeeds and writes
//     nothing, so a caller that lost the answer can retry safely.
//   - Every event gets a global Position 1, 2, 3, ... in commit order with no
//     gaps: a reader that has seen position p and reads after p never misses a
//     later commit.
//   - Bad input gets an error matching [ErrInvalidEvent] and writes nothing.
package eventstore

import (
	"context"
	"encoding/json"
	"iter"
	"time"
)

// Event is one immutable fact in the history of an aggregate.
//
// Append fills in ID (when empty), Timestamp (when zero), Version (when
// zero) and Position, and returns the stored events; it never changes the
// events the caller passed.
type Event struct {
	// ID identifies the event globally. It is a UUID in its canonical
	// 36-character form; Append assigns a new UUIDv7 when it is empty.
	// Setting it before Append makes a retry of that Append idempotent.
	ID string

	// AggregateID names the aggregate (the stream) the event belongs to.
	// It is 1 to 512 bytes of UTF-8 with no NUL byte.
	AggregateID string

	// Type names what happened, "UserCreated": past tense by convention.
	// It is 1 to 512 bytes of UTF-8 with no NUL byte.
	Type string

	// Payload is the event's data, a JSON document in UTF-8, at most the
	// store's payload limit (DefaultMaxPayloadSize, 1 MiB, unless its
	// options say otherwise). Stores return it byte for byte: whitespace and
	// key order are kept.
	Payload json.RawMessage

	// Metadata carries enrichment such as correlation_id, causation_id and
	// user_id. Keys are non-empty; keys and values are UTF-8 with no NUL
	// byte; keys and values hold at most MaxMetadataSize (64 KiB) bytes
	// together. A nil and an empty map mean the same; reads return nil for
	// an event stored without metadata.
	//
	// The map of an event that a read yields is read-only: events of one
	// read whose metadata are equal (the events of one Append usually
	// carry the same correlation metadata) may share one map, which saves a
	// map per event on replay. Clone it (maps.Clone) before changing it.
	// No read shares a map with the store or with another read.
	Metadata map[string]string

	// Timestamp is when the event happened. Append sets it to the current
	// time when it is zero. Stores keep it in UTC with microsecond precision,
	// so what a read returns equals what Append returned. It must lie in
	// the years 1 to 9999 (UTC). Timestamps never order the log; positions
	// do.
	Timestamp time.Time

	// Version is the event's place within its aggregate: 1, 2, 3, ...
	// Zero asks Append to place the event at the end of the aggregate
	// without a concurrency check.
	Version uint64

	// Position is the event's place in the global log: 1, 2, 3, ... in
	// commit order with no gaps. Append assigns it and ignores the value
	// passed in.
	Position uint64

	// Tags name what the event is about beyond its aggregate, such as
	// "course:c1" or "student:s7", so that a Filter can select the events
	// that matter to a decision across aggregates (see Store.AppendIf).
	// Each tag is 1 to MaxTagLength (256) bytes of UTF-8 with no NUL byte;
	// an event has at most MaxTags (32) tags and none twice. Stores keep
	// the order given. A nil and an empty slice mean the same; reads return
	// nil for an event stored without tags.
	Tags []string
}

// Unmarshal decodes the event's JSON payload into v.
func (e Event) Unmarshal(v any) error {
	return json.Unmarshal(e.Payload, v)
}

// Store is an append-only log of events, grouped by aggregate and ordered
// globally by position. Implementations are safe for concurrent use.
//
// Reads return single-use iterators. An iterator reads lazily, page by page;
// it releases what it holds when the caller stops early (break), checks ctx
// between items, and on failure yields one non-nil error and stops. A caller
// may call Append from inside the loop of a read. Reads and Version of an
// aggregate ID or type that no event can have (see the rules on Event) find
// nothing; they are not errors.
type Store interface {
	// Append atomically stores events, all of which must belong to one
	// aggregate, and returns them as stored: IDs, timestamps, versions and
	// positions filled in. It is durable on return.
	//
	// Versions are either all zero, which appends at the end of the
	// aggregate with no check, or consecutive starting at the aggregate's
	// current version + 1; otherwise Append fails with an error matching
	// ErrConflict (a *ConflictError) and writes nothing.
	//
	// Repeating a call whose events are already stored (the same IDs at the
	// same versions with the same content) succeeds, writes nothing and
	// returns the stored events. An ID stored for another event fails with
	// an error matching ErrDuplicateEvent.
	//
	// Invalid events fail with an error matching ErrInvalidEvent (an
	// *InvalidEventError naming the event and field) and write nothing: a
	// field outside the rules documented on Event, a payload larger than the
	// store's limit (DefaultMaxPayloadSize unless its options say
	// otherwise), events of more than one aggregate, the same ID twice,
	// versions that mix zero and non-zero or are not consecutive. Appending no events does nothing and returns
	// nil. After Close, Append fails with ErrClosed.
	Append(ctx context.Context, events ...Event) ([]Event, error)

	// Version returns the aggregate's current version: the version of its
	// last event, or 0 if it has none.
	Version(ctx context.Context, aggregateID string) (uint64, error)

	// ReadAggregate yields the aggregate's events with a version greater
	// than afterVersion, in version order.
	ReadAggregate(ctx context.Context, aggregateID string, afterVersion uint64) iter.Seq2[Event, error]

	// ReadAll yields every event with a position greater than afterPosition,
	// in position order. Polling ReadAll with the last position seen never
	// misses an event committed later.
	ReadAll(ctx context.Context, afterPosition uint64) iter.Seq2[Event, error]

	// ReadType yields the events of one type with a position greater than
	// afterPosition, in position order.
	ReadType(ctx context.Context, eventType string, afterPosition uint64) iter.Seq2[Event, error]

	// ReadTime yields the events with start <= Timestamp < end, in timestamp
	// order and, for equal timestamps, position order. An empty aggregateID
	// reads every aggregate; a zero end means no upper bound. Bounds are
	// taken at microsecond precision, as timestamps are stored (see
	// NormalizeTime), so a range that starts at the Timestamp an event was
	// appended with finds it, and one that ends there does not.
	ReadTime(ctx context.Context, aggregateID string, start, end time.Time) iter.Seq2[Event, error]

	// Subscribe yields, in position order, every event with a position
	// greater than afterPosition that filter selects (see Filter.Match):
	// first those already stored, then each new one soon after its commit.
	// It yields each such event exactly once and skips none, so resuming
	// with the last position seen continues without a gap or a repeat. It
	// yields only committed events, and on stores that make appends durable
	// only once their commit is durable; an Append that fails is never
	// yielded.
	//
	// A subscription holds no transaction or connection while it waits or
	// while the caller handles an event, and buffers at most one read page:
	// a caller that stops pulling delays no Append. Breaking out of the
	// loop releases everything.
	//
	// It ends only with an error: ctx's error when ctx ends, an error
	// matching ErrClosed when the store closes (within a second of either),
	// or the error of a failed read. Like every read, it yields one error
	// and stops.
	Subscribe(ctx context.Context, afterPosition uint64, filter Filter) iter.Seq2[Event, error]

	// Read yields, in position order, every event with a position greater
	// than afterPosition that filter selects (see Filter.Match): the read
	// of a decision across aggregates (see AppendIf). Stores serve it from
	// their indexes (of types and tags), not by decoding every event. Unlike
	// Subscribe it ends after the last event stored when it reaches the end.
	Read(ctx context.Context, filter Filter, afterPosition uint64) iter.Seq2[Event, error]

	// AppendIf is Append on a condition: it atomically checks that no
	// stored event selected by cond.FailIfEventsMatch has a position
	// greater than cond.After, and stores events. When one has, it fails
	// with an error matching ErrConflict (a *ConditionError naming the
	// first such position) and writes nothing. The check and the write are
	// one atomic step: no append commits between them.
	//
	// The events may belong to several aggregates; the events of each
	// aggregate follow Append's version rules (all zero, or consecutive
	// from that aggregate's current version + 1), so a decision that
	// creates events in several aggregates commits them all or none. A
	// version conflict fails with a *ConflictError, as in Append.
	//
	// Repeating a call whose events are all stored succeeds, writes
	// nothing and returns the stored events, without checking cond (the
	// events the first call stored may match it). Invalid events fail as in
	// Append, except that several aggregates are allowed. Appending no
	// events checks nothing and returns nil.
	AppendIf(ctx context.Context, cond Condition, events ...Event) ([]Event, error)

	// Head returns the position of the last committed event, 0 when the
	// store is empty. Subscribe(ctx, head, filter) then yields only events
	// committed after the call.
	Head(ctx context.Context) (uint64, error)

	// Close releases the store and ends every subscription with ErrClosed.
	// Calls after Close fail with ErrClosed; closing again returns nil.
	Close() error
}
