package aggregate

import (
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"time"

	"github.com/eventstore-go/eventstore"
)

// Options configure a Repository. A nil *Options means the defaults.
type Options struct {
	// Types decodes payloads into Go types and upcasts old schemas. Nil
	// means an empty registry: Event.Data is nil and payloads are passed
	// as stored.
	Types *Registry

	// Snapshots caches aggregate states. Nil means no snapshots: Load
	// replays every event. Every backend's Store is also a SnapshotStore,
	// so this is usually the same value as the store.
	Snapshots eventstore.SnapshotStore

	// SnapshotEvery is the snapshot policy: after a Save that takes the
	// aggregate's version across a multiple of SnapshotEvery, the
	// repository saves a snapshot. Zero means 100.
	SnapshotEvery uint64

	// SnapshotSchema names the shape of the aggregate's state, "account/v2".
	// Change it whenever that shape changes: Load ignores snapshots of any
	// other schema. The default is "".
	SnapshotSchema string

	// MaxAttempts bounds how many times Run loads, decides and saves when
	// the save fails with ErrConflict. Zero means DefaultMaxAttempts (100).
	MaxAttempts int

	// Backoff returns how long Run pauses after the attempt-th conflict of
	// a command (attempt is 1, 2, ...) before it loads the aggregate again.
	// The pause ends early, and Run returns ctx's error, when ctx is done.
	// A Backoff that returns 0 retries at once. Nil means
	// ExponentialBackoff(DefaultMinBackoff, DefaultMaxBackoff): a random
	// pause below 1ms after the first conflict, below 2ms after the second,
	// the bound doubling up to 250ms from the ninth conflict on.
	Backoff func(attempt int) time.Duration

	// Now returns the time Save stamps on the events it stores and on the
	// snapshots it takes, for tests and for importing old data. Stores keep
	// it at microsecond precision in UTC; a zero time lets the store stamp
	// its own current time. Nil means time.Now.
	Now func() time.Time

	// OnSnapshotError, when not nil, is told about a snapshot that could
	// not be saved. Such a failure does not fail the Save: a snapshot is
	// only a cache. The default ignores it.
	OnSnapshotError func(aggregateID string, err error)
}

// Repository loads and saves aggregates of type A in a Store. It is safe for
// concurrent use; each Load returns a new aggregate.
//
// If A implements encoding.BinaryMarshaler and encoding.BinaryUnmarshaler,
// snapshots use them; otherwise they are A marshalled as JSON, so only
// exported fields are kept (call CheckSnapshot in a test to catch state
// that would be lost), and a snapshot holding a field A no longer has is
// ignored.
type Repository[A Aggregate] struct {
	store  eventstore.Store
	newAgg func(id string) A
	opts   Options
}

// NewRepository returns a repository of the aggregates newAgg makes. newAgg
// returns an aggregate with the given ID at version 0, with no events
// applied.
func NewRepository[A Aggregate](store eventstore.Store, newAgg func(id string) A, opts *Options) *Repository[A] {
	r := &Repository[A]{store: store, newAgg: newAgg}
	if opts != nil {
		r.opts = *opts
	}
	if r.opts.SnapshotEvery == 0 {
		r.opts.SnapshotEvery = 100
	}
	if r.opts.MaxAttempts <= 0 {
		r.opts.MaxAttempts = DefaultMaxAttempts
	}
	if r.opts.Backoff == nil {
		r.opts.Backoff = ExponentialBackoff(DefaultMinBackoff, DefaultMaxBackoff)
	}
	if r.opts.Now == nil {
		r.opts.Now = time.Now
	}
	return r
}

// The retry defaults of a Repository, used when Options.MaxAttempts and
// Options.Backoff are not set.
//
// They are sized for 16 writers running commands on one aggregate at once:
// with them, every one of 320 such commands succeeds on every backend
// (storetest's RunContendedDefaults). Measured under the race detector on
// a 2-core machine, the unluckiest command needed 18 to 22 attempts, and up
// to 40 when the machine ran five times more work than it had cores for;
// with the pause capped at 100ms instead it needed up to 51, since writers
// kept colliding, and capped at 1s the store sat idle between attempts,
// taking twice as long. The pauses are random, from 0 up to a bound that
// doubles with each conflict ("full jitter"), so that writers that
// conflicted together do not collide again in step; the cap bounds the
// wait of a command that conflicted many times.
const (
	// DefaultMaxAttempts is the default of Options.MaxAttempts: 2.5 times
	// the most attempts one command took in that measurement. A command
	// that keeps conflicting gives up after about 12 seconds of pauses.
	DefaultMaxAttempts = 100

	// DefaultMinBackoff is the bound of the first pause of the default
	// Options.Backoff.
	DefaultMinBackoff = time.Millisecond

	// DefaultMaxBackoff caps the bound of the pauses of the default
	// Options.Backoff.
	DefaultMaxBackoff = 250 * time.Millisecond
)

// ExponentialBackoff returns an Options.Backoff whose pause after the n-th
// conflict is a random duration in [0, min(base * 2^(n-1), limit)). A base of
// 0 or less gives no pause; a limit below base is taken as base.
func ExponentialBackoff(base, limit time.Duration) func(attempt int) time.Duration {
	limit = max(limit, base)
	return func(attempt int) time.Duration {
		if base <= 0 {
			return 0
		}
		bound := limit
		if attempt < 1 {
			attempt = 1
		}
		if shift := attempt - 1; shift < 62 {
			if b := base << shift; b>>shift == base && b < limit {
				bound = b
			}
		}
		return time.Duration(rand.Int64N(int64(bound)))
	}
}

// Load returns the aggregate's current state: the latest usable snapshot,
// then the events after it. An aggregate with no events is returned at
// version 0, as newAgg made it, with a nil error.
func (r *Repository[A]) Load(ctx context.Context, id string) (A, error) {
	return r.load(ctx, id, math.MaxUint64, true)
}

// LoadVersion returns the aggregate's state as of version: after applying
// its events 1 to version. It uses a snapshot of at most that version. If
// the aggregate has fewer events, it fails with an error matching
// eventstore.ErrNotFound. Version 0 gives the aggregate as newAgg made it.
func (r *Repository[A]) LoadVersion(ctx context.Context, id string, version uint64) (A, error) {
	return r.load(ctx, id, version, true)
}

// LoadTime returns the aggregate's state as of t: after applying its events,
// in version order, up to the first one whose Timestamp is after t. Events
// normally carry increasing timestamps, so that is every event at or before
// t. It replays from the first event and uses no snapshot, since a
// snapshot's version says nothing about event times.
func (r *Repository[A]) LoadTime(ctx context.Context, id string, t time.Time) (A, error) {
	a, err := r.fresh(id)
	if err != nil {
		return a, err
	}
	t = eventstore.NormalizeTime(t)
	for e, err := range r.store.ReadAggregate(ctx, id, 0) {
		if err != nil {
			var zero A
			return zero, err
		}
		if e.Timestamp.After(t) {
			break
		}
		if err := r.apply(a, e); err != nil {
			var zero A
			return zero, err
		}
	}
	return a, nil
}

// Save stores events made from data at the versions after a's, so that it
// fails with an error matching eventstore.ErrConflict if another writer
// saved events of the aggregate since a was loaded. On success it applies
// the stored events to a, so that a is current, and returns them; then, if
// a's version crossed a multiple of Options.SnapshotEvery, it saves a
// snapshot. On failure a is unchanged.
//
// With Options.Types set, every data's event type must be registered in
// it, or Save fails with an error matching ErrUnknownEvent, and every data
// must be of the registered Go type (or a pointer to it), or Save fails
// with a *WrongEventTypeError matching ErrWrongEventType; either way it
// stores nothing and a is unchanged.
// Each event's metadata is the metadata of ctx (see WithMetadata and
// Dispatch) and its schema version; its Timestamp is Options.Now(), one
// time for all the events of a Save. Saving no data does nothing.
//
// When the store answers eventstore.ErrUnknownOutcome, Save appends the same
// events, with the same IDs, once more: that either stores them or finds
// them stored. If that fails too, Save returns an error matching
// ErrUnknownOutcome and the events may or may not be stored.
func (r *Repository[A]) Save(ctx context.Context, a A, data ...Data) ([]eventstore.Event, error) {
	if len(data) == 0 {
		return nil, nil
	}
	id, before := a.AggregateID(), a.AggregateVersion()
	md := Metadata(ctx)
	now := r.opts.Now()
	events := make([]eventstore.Event, len(data))
	for i, d := range data {
		e, err := r.opts.Types.newEvent(id, d, r.opts.Types != nil)
		if err != nil {
			return nil, err
		}
		for k, v := range md {
			if _, reserved := e.Metadata[k]; !reserved {
				e.Metadata[k] = v
			}
		}
		e.Version = before + 1 + uint64(i)
		e.Timestamp = now
		events[i] = e
	}
	stored, err := r.store.Append(ctx, events...)
	if errors.Is(err, eventstore.ErrUnknownOutcome) {
		// The events may or may not be stored. Appending the same events
		// (the same IDs) again either stores them or returns them as
		// stored; a conflict then proves they were not stored.
		again, err2 := r.store.Append(ctx, events...)
		switch {
		case err2 == nil:
			stored, err = again, nil
		case errors.Is(err2, eventstore.ErrConflict):
			err = err2
		default:
			err = fmt.Errorf("%w (and retrying: %w)", err, err2)
		}
	}
	if err != nil {
		return nil, err
	}
	for _, e := range stored {
		if err := r.apply(a, e); err != nil {
			return stored, fmt.Errorf("eventstore: events stored, but applying them failed: %w", err)
		}
	}
	if every := r.opts.SnapshotEvery; r.opts.Snapshots != nil && before/every != a.AggregateVersion()/every {
		if err := r.saveSnapshot(ctx, a); err != nil && r.opts.OnSnapshotError != nil {
			r.opts.OnSnapshotError(id, err)
		}
	}
	return stored, nil
}

// Run executes a command against the aggregate: it loads the aggregate,
// calls decide, and saves the events decide returns at the version it
// loaded. When the save fails with ErrConflict, because another writer got
// there first, it pauses for Options.Backoff(attempt) and starts again from
// the load, up to Options.MaxAttempts attempts in all, and then returns the
// last conflict (an error matching eventstore.ErrConflict). If ctx is done
// during a pause, Run returns an error matching ctx.Err() at once.
//
// decide must not change the aggregate and must have no side effects, since
// it may run more than once; state changes come from Apply. An error from
// decide is returned as it is, with nothing saved. When decide returns no
// events, nothing is saved. Run returns the aggregate with the new events
// applied.
func (r *Repository[A]) Run(ctx context.Context, id string, decide func(a A) ([]Data, error)) (A, error) {
	var zero A
	for attempt := 1; ; attempt++ {
		a, err := r.Load(ctx, id)
		if err != nil {
			return zero, err
		}
		data, err := decide(a)
		if err != nil {
			return zero, err
		}
		_, err = r.Save(ctx, a, data...)
		if err == nil {
			return a, nil
		}
		if !errors.Is(err, eventstore.ErrConflict) || attempt >= r.opts.MaxAttempts {
			if attempt > 1 {
				err = fmt.Errorf("eventstore: after %d attempts: %w", attempt, err)
			}
			return zero, err
		}
		if pause := r.opts.Backoff(attempt); pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return zero, fmt.Errorf("eventstore: waiting to retry after %d conflicts: %w", attempt, ctx.Err())
			case <-t.C:
			}
		} else if err := ctx.Err(); err != nil {
			return zero, fmt.Errorf("eventstore: retrying after %d conflicts: %w", attempt, err)
		}
	}
}

// Snapshot saves a snapshot of a's current state now, whatever the policy.
// It fails if the repository has no snapshot store.
func (r *Repository[A]) Snapshot(ctx context.Context, a A) error {
	if r.opts.Snapshots == nil {
		return errors.New("eventstore: repository has no snapshot store")
	}
	return r.saveSnapshot(ctx, a)
}

// CheckSnapshot reports whether the aggregate's state survives a snapshot.
// Tests call it to catch state that the snapshot encoding loses, such as
// unexported fields or fields tagged json:"-", and snapshots that disagree
// with the events.
//
// It rebuilds the aggregate from its events alone, encodes that state as a
// snapshot would, decodes it into a new aggregate from newAgg, and compares
// the two with reflect.DeepEqual, which sees every field, unexported ones
// included. Then, when Options.Snapshots holds a usable snapshot of the
// aggregate, it loads the aggregate through that snapshot and compares it
// with the rebuilt one in the same way. It returns nil when both
// comparisons find the values equal, and otherwise an error that prints
// both values.
//
// DeepEqual is strict: a time.Time must come back with its location (keep
// times in UTC), a map or slice that is nil in one value must be nil in the
// other, and an aggregate holding a func is never equal to another.
func (r *Repository[A]) CheckSnapshot(ctx context.Context, id string) error {
	replayed, err := r.load(ctx, id, math.MaxUint64, false)
	if err != nil {
		return err
	}
	state, err := encodeState(replayed)
	if err != nil {
		return fmt.Errorf("eventstore: encode snapshot of %q: %w", id, err)
	}
	decoded, err := r.decodeState(id, replayed.AggregateVersion(), state)
	if err != nil {
		return fmt.Errorf("eventstore: the snapshot encoding of aggregate %q does not decode: %w", id, err)
	}
	if !reflect.DeepEqual(decoded, replayed) {
		return fmt.Errorf("eventstore: aggregate %q does not survive its snapshot encoding (an unexported or untagged field?):\n decoded: %+v\n  replay: %+v",
			id, decoded, replayed)
	}
	withSnap, err := r.load(ctx, id, math.MaxUint64, true)
	if err != nil {
		return err
	}
	if !reflect.DeepEqual(withSnap, replayed) {
		return fmt.Errorf("eventstore: aggregate %q loaded through its snapshot differs from its replay:\n snapshot: %+v\n   replay: %+v",
			id, withSnap, replayed)
	}
	return nil
}

// fresh returns a new aggregate and checks that newAgg honoured its contract.
func (r *Repository[A]) fresh(id string) (A, error) {
	a := r.newAgg(id)
	if a.AggregateID() != id || a.AggregateVersion() != 0 {
		var zero A
		return zero, fmt.Errorf("eventstore: newAgg(%q) returned aggregate %q at version %d, want %q at version 0",
			id, a.AggregateID(), a.AggregateVersion(), id)
	}
	return a, nil
}

// load rebuilds the aggregate up to version limit, starting from a snapshot
// when useSnapshot and one is usable.
func (r *Repository[A]) load(ctx context.Context, id string, limit uint64, useSnapshot bool) (A, error) {
	var zero A
	a, err := r.fresh(id)
	if err != nil {
		return zero, err
	}
	if useSnapshot && r.opts.Snapshots != nil && limit > 0 {
		snap, err := r.opts.Snapshots.LoadSnapshot(ctx, id)
		switch {
		case errors.Is(err, eventstore.ErrNotFound):
		case err != nil:
			return zero, err
		case snap.Version <= limit:
			if restored, ok := r.restore(id, snap); ok {
				a = restored
			}
		}
	}
	if a.AggregateVersion() < limit {
		for e, err := range r.store.ReadAggregate(ctx, id, a.AggregateVersion()) {
			if err != nil {
				return zero, err
			}
			if e.Version > limit {
				break
			}
			if err := r.apply(a, e); err != nil {
				return zero, err
			}
		}
	}
	if limit != math.MaxUint64 && a.AggregateVersion() < limit {
		return zero, fmt.Errorf("eventstore: aggregate %q has no version %d (it is at %d): %w",
			id, limit, a.AggregateVersion(), eventstore.ErrNotFound)
	}
	return a, nil
}

// apply decodes e and applies it to a, unless a already has e's version.
func (r *Repository[A]) apply(a A, e eventstore.Event) error {
	return applyEvent(r.opts.Types, a, e)
}

// Replay applies events to a in order, decoding each through types (which
// may be nil), as a Repository does when it loads: an event whose version a
// already has is skipped, so replaying the same events twice changes
// nothing. Apply must leave a at each event's version. Replay fails with an
// error matching eventstore.ErrCorrupt if an event's version is not the
// next one, with ErrApply if Apply fails or does not set the version, and
// with the errors of Registry.Decode.
func Replay(a Aggregate, types *Registry, events ...eventstore.Event) error {
	for _, e := range events {
		if err := applyEvent(types, a, e); err != nil {
			return err
		}
	}
	return nil
}

func applyEvent(types *Registry, a Aggregate, e eventstore.Event) error {
	v := a.AggregateVersion()
	if e.Version <= v {
		return nil // already applied: handlers are idempotent
	}
	if e.Version != v+1 {
		return fmt.Errorf("eventstore: aggregate %q at version %d got event version %d: %w",
			e.AggregateID, v, e.Version, eventstore.ErrCorrupt)
	}
	de, err := types.Decode(e)
	if err != nil {
		return err
	}
	if err := a.Apply(de); err != nil {
		return fmt.Errorf("%w: %s version %d of %q: %w", ErrApply, e.Type, e.Version, e.AggregateID, err)
	}
	if got := a.AggregateVersion(); got != e.Version {
		return fmt.Errorf("%w: %s version %d of %q left the aggregate at version %d; Apply must set it",
			ErrApply, e.Type, e.Version, e.AggregateID, got)
	}
	return nil
}

func (r *Repository[A]) saveSnapshot(ctx context.Context, a A) error {
	state, err := encodeState(a)
	if err != nil {
		return fmt.Errorf("eventstore: encode snapshot of %q: %w", a.AggregateID(), err)
	}
	return r.opts.Snapshots.SaveSnapshot(ctx, eventstore.Snapshot{
		AggregateID: a.AggregateID(),
		Version:     a.AggregateVersion(),
		Schema:      r.opts.SnapshotSchema,
		State:       state,
		Timestamp:   r.opts.Now(),
	})
}

// restore decodes snap into a new aggregate. It reports false, and the
// snapshot is ignored, when the schema differs or the state does not decode
// into an aggregate of the snapshot's ID and version.
func (r *Repository[A]) restore(id string, snap eventstore.Snapshot) (A, bool) {
	if snap.Schema != r.opts.SnapshotSchema || snap.Version == 0 {
		var zero A
		return zero, false
	}
	a, err := r.decodeState(id, snap.Version, snap.State)
	return a, err == nil
}

// decodeState decodes an encoded state into a new aggregate, which must
// then have the given ID and version.
func (r *Repository[A]) decodeState(id string, version uint64, state []byte) (A, error) {
	var zero A
	a, err := r.fresh(id)
	if err != nil {
		return zero, err
	}
	if u, ok := any(a).(encoding.BinaryUnmarshaler); ok {
		err = u.UnmarshalBinary(state)
	} else {
		dec := json.NewDecoder(bytes.NewReader(state))
		dec.DisallowUnknownFields()
		err = dec.Decode(a)
		if err == nil && dec.More() {
			err = errors.New("data after the state")
		}
	}
	if err != nil {
		return zero, err
	}
	if a.AggregateID() != id || a.AggregateVersion() != version {
		return zero, fmt.Errorf("state decodes to aggregate %q at version %d, want %q at version %d",
			a.AggregateID(), a.AggregateVersion(), id, version)
	}
	return a, nil
}

func encodeState(a Aggregate) ([]byte, error) {
	if m, ok := a.(encoding.BinaryMarshaler); ok {
		return m.MarshalBinary()
	}
	return json.Marshal(a)
}
