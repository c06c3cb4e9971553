// Package projection keeps read models up to date from any
// eventstore.Store, at least once, with a checkpoint in any
// eventstore.CheckpointStore.
//
// A [Projection] names a read model, selects its events with a Filter and
// handles them one by one. [Run] loads the projection's checkpoint, catches
// up from the log, then follows new events as they commit, saving the
// checkpoint after each batch, until its context ends:
//
//	err := projection.Run(ctx, store, store, projection.Projection{
//		Name:   "orders-report",
//		Filter: eventstore.Filter{Types: []string{"OrderPlaced", "OrderShipped"}},
//		Handle: report.apply, // idempotent: the event ID deduplicates
//	}, nil)
//
// # At least once
//
// The read model and the checkpoint are written separately, so a process
// that dies after handling an event and before saving the checkpoint
// handles that event again when it restarts: Handle must be idempotent
// (upsert by key, or remember the IDs or the last position applied). Events
// are never skipped, and after a clean stop (ctx ended, the checkpoint
// saved) none is repeated. The bolt and postgres backends also offer
// exactly-once projections whose read model lives in the store's own
// transactions; this package works over every store, including the ones
// that cannot.
//
// # Checkpoints and lag
//
// The checkpoint is the position up to which every selected event was
// handled. Run saves it after BatchSize events, when no event arrived for
// IdleInterval, on a clean stop and before it returns a handler's error.
// While caught up it also advances the checkpoint over events the filter
// does not select, so [Lag] (head minus checkpoint) drops to 0 within about
// IdleInterval of the last commit.
//
// # One runner per name
//
// Two runners of one projection would handle its events twice and race
// on its checkpoint. Run therefore takes a lock on the projection's name
// first (see [Locker]): from Options.Locker, else from the store or the
// checkpoint store when one of them implements Locker (the postgres
// store does, across processes), else an in-process lock per checkpoint
// store and name. A second Run of the name waits as a hot standby and
// takes over from the checkpoint when the first stops or loses its lock.
//
// # Rebuild
//
// Options.Rebuild starts a projection over: under the lock, Run calls
// Projection.Reset, saves the checkpoint 0, and handles every selected
// event from the start of the log.
package projection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eventstore-go/eventstore"
)

// ErrInvalidProjection reports a Projection that Run refuses: an empty
// Name, a nil Handle, or (in RunAll) a name given twice.
var ErrInvalidProjection = errors.New("projection: invalid projection")

// Projection is a read model kept up to date from the events that Filter
// selects.
type Projection struct {
	// Name identifies the projection: it names its checkpoint and its
	// lock. It is a valid checkpoint name (see eventstore.CheckpointStore):
	// 1 to 512 bytes of UTF-8 with no NUL byte.
	Name string

	// Filter selects the events that Handle gets. The zero Filter selects
	// every event.
	Filter eventstore.Filter

	// Handle applies one event to the read model. It is called for each
	// selected event in position order, from one goroutine, never for two
	// events at once.
	//
	// Delivery is at least once: after a crash, the events handled since
	// the last saved checkpoint (at most about Options.BatchSize of them)
	// are handled again. Handle must therefore be idempotent; the event's
	// ID, or its Position, is there to recognise a repeat.
	//
	// An error stops Run, which saves the checkpoint of the events before
	// this one and returns a *HandlerError. When ctx has ended, an error is
	// taken as the event not handled, and Run stops cleanly.
	Handle func(ctx context.Context, e eventstore.Event) error

	// Reset clears the read model for a rebuild (Options.Rebuild). Nil
	// means there is nothing to clear.
	Reset func(ctx context.Context) error
}

// validate reports why Run refuses p.
func (p *Projection) validate() error {
	if p.Name == "" {
		return fmt.Errorf("%w: empty Name", ErrInvalidProjection)
	}
	if p.Handle == nil {
		return fmt.Errorf("%w %q: nil Handle", ErrInvalidProjection, p.Name)
	}
	return nil
}

// HandlerError reports the event that a Projection's Handle failed on.
// Run saves no checkpoint at or past Position: the event is handled again
// when the projection runs again. It unwraps to Err.
type HandlerError struct {
	Projection string // the projection's Name
	Position   uint64 // the event's position
	EventID    string // the event's ID
	Err        error  // what Handle returned
}

// Error implements error.
func (e *HandlerError) Error() string {
	return fmt.Sprintf("projection %q: handle event %s at position %d: %v", e.Projection, e.EventID, e.Position, e.Err)
}

// Unwrap returns Err.
func (e *HandlerError) Unwrap() error { return e.Err }

// Locker grants one runner at a time the right to run a projection of a
// given name. (*postgres.Store) implements it with an advisory lock, which
// makes runners in several processes take turns.
type Locker interface {
	// LockProjection blocks until the caller holds name, or ctx ends (then
	// it returns ctx's error). held is cancelled when the hold is lost,
	// for example when the database connection that kept it died; a
	// runner then stops handling at once. release gives the hold up; it
	// may be called more than once.
	LockProjection(ctx context.Context, name string) (held context.Context, release func(), err error)
}

// Defaults of Options.
const (
	// DefaultBatchSize is how many events Run handles between two
	// checkpoint saves while events keep coming.
	DefaultBatchSize = 100

	// DefaultIdleInterval is how long Run waits for another event before
	// it saves the checkpoint of a partly filled batch.
	DefaultIdleInterval = time.Second

	// StopTimeout bounds the checkpoint save of a clean stop, or of a
	// stop on a handler's error: the save runs on a context that keeps
	// ctx's values but not its cancellation.
	StopTimeout = 5 * time.Second
)

// Options configure Run and RunAll. A nil *Options means every default.
type Options struct {
	// BatchSize is how many events Run handles before it saves the
	// checkpoint. It bounds how many events a crash makes Run handle
	// again. Zero or less means DefaultBatchSize (100).
	BatchSize int

	// IdleInterval is how long Run waits for another event before it saves
	// the checkpoint of a partly filled batch; while caught up it checks
	// this often whether the log grew with events the filter does not
	// select, and moves the checkpoint over them. Zero or less means
	// DefaultIdleInterval (1s).
	IdleInterval time.Duration

	// Rebuild starts the projection over: once Run holds the lock it calls
	// Projection.Reset, saves the checkpoint 0, and handles every selected
	// event from the start. Default false: resume from the checkpoint.
	Rebuild bool

	// Locker keeps a projection to one runner at a time. Nil means the
	// store, or else the checkpoint store, when either implements Locker;
	// otherwise a lock inside this process, per checkpoint store and name.
	Locker Locker

	// Progress, when set, is called after each checkpoint save, from the
	// goroutine that runs the projection (in RunAll, one per projection:
	// it may be called concurrently). Default nil.
	Progress func(Progress)
}

// Progress is what Options.Progress gets after a checkpoint save.
type Progress struct {
	Projection string // the projection's Name
	Checkpoint uint64 // the position just saved
	Handled    int    // events handled since the previous save
}

// withDefaults returns a copy of o with every default filled in.
func (o *Options) withDefaults() Options {
	var c Options
	if o != nil {
		c = *o
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.IdleInterval <= 0 {
		c.IdleInterval = DefaultIdleInterval
	}
	return c
}

// Lag returns how far the projection name is behind the log: the store's
// head minus its checkpoint, or 0 when the checkpoint is at or past the
// head.
func Lag(ctx context.Context, store eventstore.Store, checkpoints eventstore.CheckpointStore, name string) (uint64, error) {
	cp, err := checkpoints.LoadCheckpoint(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("projection %q: load checkpoint: %w", name, err)
	}
	head, err := store.Head(ctx)
	if err != nil {
		return 0, fmt.Errorf("projection %q: read head: %w", name, err)
	}
	if cp >= head {
		return 0, nil
	}
	return head - cp, nil
}
