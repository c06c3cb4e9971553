// Package aggregate is the event-sourcing programming model on top of any
// eventstore.Store: aggregates rebuilt from their events, a repository that
// loads, saves and retries on conflicts, snapshots as a cache, typed events
// with upcasters for old schemas, and a small command bus that carries
// correlation and causation IDs from a command to the events it produces.
//
// It imports no backend; pass it a store from bolt, memory or postgres.
//
// # Aggregates
//
// An aggregate is a Go type, usually a pointer to a struct that embeds
// [Base], whose Apply method folds one event into its state and sets its
// version to the event's version:
//
//	type Account struct {
//		aggregate.Base
//		Balance int64 `json:"balance"`
//	}
//
//	func (a *Account) Apply(e aggregate.Event) error {
//		switch d := e.Data.(type) {
//		case Deposited:
//			a.Balance += d.Amount
//		default:
//			return aggregate.UnknownEvent(e)
//		}
//		a.Version = e.Version
//		return nil
//	}
//
// Apply returns an error matching [ErrUnknownEvent] for an event type it does
// not handle: a stream the code cannot read is an error, not something to
// skip silently. The repository never gives Apply an event whose version the
// aggregate already has (it skips it: handlers are idempotent) and checks
// after each Apply that the aggregate's version is the event's.
//
// # Events
//
// Event payloads are Go types that implement [Data] and are registered in a
// [Registry]; the repository marshals them when it saves and unmarshals them
// into Event.Data when it loads, so Apply never parses JSON. Each event
// records its schema version in the metadata key "schema_version"; an event
// stored under an older schema passes through the [Upcaster]s registered
// for its type before it is unmarshalled. The Go type registered for an
// event type is its current schema, and the only one Save accepts for that
// name: the struct of an older schema, kept to write an upcaster, fails
// with [ErrWrongEventType] instead of being stored under the current schema.
//
// # Commands
//
// [Repository.Run] executes a command against one aggregate: it loads the
// aggregate, calls a decide function that returns the events to record (or
// an error refusing the command), and saves them with an optimistic
// concurrency check. When another writer saved first, Run pauses for a
// random, growing while and starts again from the load, up to
// [DefaultMaxAttempts] attempts unless Options.MaxAttempts and
// Options.Backoff say otherwise. A [Bus] routes typed commands to their
// handlers and gives the events they save correlation and causation IDs.
//
// # Snapshots
//
// With Options.Snapshots set, the repository saves the aggregate's state
// every Options.SnapshotEvery versions after a save, and Load starts from
// the latest snapshot. A snapshot is only a cache: one whose schema is not
// Options.SnapshotSchema, or that does not decode into an aggregate of the
// snapshot's ID and version, is ignored and the aggregate is rebuilt from
// its events. The default encoding is JSON, which drops unexported fields:
// call [Repository.CheckSnapshot] in a test to catch state a snapshot
// loses.
package aggregate

import (
	"errors"
	"fmt"

	"github.com/eventstore-go/eventstore"
)

// Errors of this package. Match them with errors.Is.
var (
	// ErrUnknownEvent reports an event whose type the aggregate or the
	// registry does not know. Apply returns it, through UnknownEvent, for
	// an event type it does not handle.
	ErrUnknownEvent = errors.New("eventstore: unknown event type")

	// ErrUpcast reports an event that cannot be brought to the current
	// schema of its type: an upcaster is missing or failed, or the event
	// was written under a newer schema than this program knows.
	ErrUpcast = errors.New("eventstore: cannot upcast event")

	// ErrApply reports an Apply that failed or that left the aggregate at
	// another version than the event's. The error also matches the cause
	// Apply returned.
	ErrApply = errors.New("eventstore: apply failed")

	// ErrWrongEventType reports event data whose Go type is not the one
	// registered for its event type, such as an old schema's struct;
	// errors.As gives a *WrongEventTypeError naming both types. Nothing is
	// stored.
	ErrWrongEventType = errors.New("aggregate: wrong Go type for event type")

	// ErrUnknownCommand reports a command that no handler on the bus takes
	// with the requested result type.
	ErrUnknownCommand = errors.New("eventstore: no handler for command")
)

// Aggregate is an entity whose state is rebuilt from its events: a bank
// account, a user, a shopping cart. Its events are its history, stored
// under its ID; its state is what applying them in order, with Apply,
// leaves. A Repository loads and saves aggregates; embed Base to get
// AggregateID and AggregateVersion.
//
// Implementations are not safe for concurrent use; the repository gives each
// caller its own value.
type Aggregate interface {
	// AggregateID returns the ID of the aggregate: the AggregateID of its
	// events.
	AggregateID() string

	// AggregateVersion returns the version of the last event applied, or 0
	// for an aggregate with no events.
	AggregateVersion() uint64

	// Apply folds one event into the state and sets the aggregate's version
	// to e.Version. It returns an error matching ErrUnknownEvent for an
	// event type it does not handle. It must not do I/O.
	Apply(e Event) error
}

// Base holds an aggregate's ID and version. Embed it in an aggregate struct
// to get AggregateID and AggregateVersion; Apply sets Version.
//
// Its fields are exported, with JSON tags, so that the default snapshot
// encoding (JSON) keeps them.
type Base struct {
	// ID is the aggregate's ID; the constructor passed to NewRepository
	// sets it.
	ID string `json:"id"`

	// Version is the version of the last event applied; Apply sets it.
	Version uint64 `json:"version"`
}

// AggregateID returns b.ID.
func (b *Base) AggregateID() string { return b.ID }

// AggregateVersion returns b.Version.
func (b *Base) AggregateVersion() uint64 { return b.Version }

// Event is a stored event as Apply sees it: its payload upcast to the
// current schema of its type, and decoded into Data when the type is
// registered.
type Event struct {
	eventstore.Event

	// Data is the payload as the Go type registered for Type, or nil when
	// no type is registered for it (then Apply may call Unmarshal).
	Data Data
}

// UnknownEvent returns the error Apply returns for an event type it does not
// handle. It matches ErrUnknownEvent.
func UnknownEvent(e Event) error {
	return fmt.Errorf("%w %q (aggregate %q, version %d)", ErrUnknownEvent, e.Type, e.AggregateID, e.Version)
}
