package bolt

import (
	"context"
	"errors"
	"fmt"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/index"
	"github.com/eventstore-go/eventstore/storekit"
	bbolt "go.etcd.io/bbolt"
)

var _ eventstore.Importer = (*Store)(nil)

// Import implements eventstore.Importer. The whole call is one write
// transaction, fsynced on commit like an Append's (unless
// Options.UnsafeNoSync), taken in turn with the group commits of Append:
// appends that arrive meanwhile wait for it. Lookups of the call's IDs and
// aggregate versions, and the writes, happen inside that transaction. A
// failed commit has the outcome and consequences of a failed Append's (see
// "Writes" in the package doc): eventstore.ErrUnknownOutcome, then
// eventstore.ErrNeedsReopen until the store is reopened, after which
// rerunning the same Import is safe. ctx is checked before the transaction
// begins and again before it commits.
func (s *Store) Import(ctx context.Context, events []eventstore.Event) ([]eventstore.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	prepared, err := storekit.PrepareImport(events, s.maxPayload)
	s.exit()
	if err != nil || len(prepared) == 0 {
		return nil, err
	}
	ids := make([][]byte, len(prepared))
	for i := range prepared {
		if ids[i], err = index.ID(prepared[i].ID); err != nil {
			return nil, fmt.Errorf("bolt: event %d: %w", i, err) // unreachable: PrepareImport checked the ID
		}
	}
	var out []eventstore.Event
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		w, err := newWriter(tx)
		if err != nil {
			return err
		}
		write, err := storekit.PlanImport(prepared,
			func(i int) (eventstore.Event, bool, error) { return w.stored(ids[i]) },
			func(aggregateID string) (uint64, error) { return w.version(aggregateID) })
		if err != nil {
			return err
		}
		if len(write) == 0 {
			return errNoWrite
		}
		if out, err = w.importEvents(prepared, ids, write); err != nil {
			return err
		}
		// The last moment to give up with nothing written.
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	if len(out) > 0 {
		s.signal.Publish(out[len(out)-1].Position) // durable now: subscriptions may see it
	}
	return out, nil
}

// stored returns the stored event whose ids key is id, if there is one.
func (w *writer) stored(id []byte) (eventstore.Event, bool, error) {
	k, err := lookup(w.ids, id, "ids entry")
	if err != nil || k == nil {
		return eventstore.Event{}, false, err
	}
	v := w.events.Get(k)
	if v == nil {
		return eventstore.Event{}, false, corrupt("ids entry", id, errors.New("points to no event"))
	}
	var e eventstore.Event
	if err := w.dec.decode(k, v, &e); err != nil {
		return eventstore.Event{}, false, err
	}
	// The entry must point to the event of that ID: a damaged one would
	// make a new event pass for one already stored.
	var want [36]byte
	formatUUID(&want, id)
	if e.ID != string(want[:]) {
		return eventstore.Event{}, false, corrupt("ids entry", id, fmt.Errorf("points to the event of ID %s", e.ID))
	}
	return e, true, nil
}

// importEvents writes prepared[i] for each i in write, in that order, at
// the next positions, with the records and index entries of Append, and
// returns the events written. Its caller rolls back on any error.
func (w *writer) importEvents(prepared []eventstore.Event, ids [][]byte, write []int) ([]eventstore.Event, error) {
	out := make([]eventstore.Event, len(write))
	// bbolt keeps the keys and values passed to Put until the transaction
	// ends, so each gets its own bytes: one allocation for all.
	size := 0
	for j, i := range write {
		out[j] = prepared[i]
		out[j].Position = w.next + uint64(j)
		size += putSize(&out[j])
	}
	buf := make([]byte, 0, size)
	for j, i := range write {
		var err error
		if buf, err = w.putEvent(buf, &out[j], ids[i]); err != nil {
			return nil, err
		}
	}
	w.next += uint64(len(write))
	return out, nil
}
