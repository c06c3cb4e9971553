package bolt

import (
	"bytes"
	"context"
	"slices"
	"sync"

	"github.com/eventstore-go/eventstore"
)

// In log mode, the group commits that the held transaction gathers are
// durable in the log but not yet in bbolt, where a read transaction would
// see them: a read commits the held transaction first (syncHeld). A live
// subscription reads after every group commit, so that, left to the reads,
// it would turn every group commit into a bbolt commit as well, which
// rewrites the pages the group touched and undoes what holding the
// transaction saves (64 concurrent appenders ran at 0.59x with one live
// subscription).
//
// The live tail spares that commit: for each held transaction that begins
// while subscriptions run (Store.tailSubs), it keeps a copy of the log
// payload of every group commit the transaction gathers, which holds their
// event records byte for byte as the events bucket does. A subscription whose
// next events all lie in the tail decodes them from there, as a read of
// the events bucket would, and never touches the held transaction. The
// tail holds what the held transaction holds, and is emptied when that
// commits or is rolled back (walState.takeHeld); its bytes are never
// reused, so a subscription that took them decodes them outside its lock.

// liveTail holds the log payloads of the group commits of the held
// transaction, from its first on, while it is on.
type liveTail struct {
	mu       sync.Mutex
	on       bool     // the tail holds every group commit of the held transaction
	first    uint64   // the position of the first event it holds
	last     uint64   // the position of the last event it holds; first-1 when none
	payloads [][]byte // copies of the log payloads, in position order
	starts   []uint64 // the position of each payload's first event
}

// add records the group commit of the events at positions first to last,
// whose log payload is payload, when the tail is on: fresh says the
// group begins a held transaction, which turns the tail on when want
// (subscriptions may read it) and off otherwise. Call it with wmu held,
// after the group is durable and before its head is published.
func (t *liveTail) add(fresh, want bool, first, last uint64, payload []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if fresh {
		t.on, t.first, t.last, t.payloads, t.starts = want, first, first-1, nil, nil
	}
	if !t.on {
		return
	}
	if first != t.last+1 || last < first {
		// Not the group after the last: unreachable, as wmu orders the
		// group commits; the tail stops rather than hold a gap.
		t.clearLocked()
		return
	}
	t.payloads = append(t.payloads, bytes.Clone(payload))
	t.starts = append(t.starts, first)
	t.last = last
}

// clear empties the tail and turns it off: the held transaction is
// committed or rolled back.
func (t *liveTail) clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clearLocked()
}

func (t *liveTail) clearLocked() {
	t.on, t.first, t.last, t.payloads, t.starts = false, 0, 0, nil, nil
}

// span returns the payloads of the tail from the one that holds position
// after+1 on, when the tail holds every event after position after up to
// head, or nil. The payloads are never changed: the caller may read them
// without the lock.
func (t *liveTail) span(after, head uint64) [][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.on || t.first > after+1 || t.last < head {
		return nil
	}
	// The last payload that starts at or before after+1.
	i, found := slices.BinarySearch(t.starts, after+1)
	if !found {
		i--
	}
	return slices.Clip(t.payloads[i:])
}

// readTail reads a subscription's events after position after, up to
// head, from the live tail, when it holds them all: those that filter
// selects (Filter.Match). served reports whether it did; when it did not,
// it yielded nothing, and the caller reads the file. last and ok are those
// of a follow.ReadFunc.
func (s *Store) readTail(ctx context.Context, after, head uint64, filter eventstore.Filter, yield func(eventstore.Event, error) bool) (last uint64, ok, served bool) {
	if s.wal == nil {
		return 0, false, false
	}
	payloads := s.wal.tail.span(after, head)
	if payloads == nil {
		return 0, false, false
	}
	var d decoder
	var r rawEvent
	prefix := []byte(filter.AggregatePrefix)
	for _, p := range payloads {
		for len(p) > 0 {
			// The payload is the log's: it splits as a replay splits it.
			var err error
			if _, p, err = nextWalEvent(&r, p); err != nil {
				yield(eventstore.Event{}, err)
				return 0, false, true
			}
			if r.position <= after {
				continue
			}
			if r.position > head {
				return head, true, true
			}
			if !bytes.HasPrefix(r.aggregateID, prefix) ||
				len(filter.Types) > 0 && !slices.ContainsFunc(filter.Types, func(t string) bool { return t == string(r.typ) }) {
				continue // what Match would refuse, without decoding it
			}
			var e eventstore.Event
			if err := d.fill(nil, &r, &e, -1); err != nil {
				yield(eventstore.Event{}, err)
				return 0, false, true
			}
			if !filter.Match(e) {
				continue
			}
			if err := ctx.Err(); err != nil {
				yield(eventstore.Event{}, err)
				return 0, false, true
			}
			// A closed or broken store ends a subscription here as a
			// read of the file would.
			if err := s.enter(); err != nil {
				yield(eventstore.Event{}, err)
				return 0, false, true
			}
			s.exit()
			if !yield(e, nil) {
				return 0, false, true
			}
		}
	}
	return head, true, true
}
