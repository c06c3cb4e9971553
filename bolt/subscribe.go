package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/index"
	"github.com/eventstore-go/eventstore/internal/follow"
	"github.com/eventstore-go/eventstore/storekit"
	bbolt "go.etcd.io/bbolt"
)

// scanLimit is how many index entries one page of a subscription looks at,
// matching its filter or not, in one read transaction.
const scanLimit = 16 * DefaultReadPageSize

// Subscribe implements eventstore.Store.
//
// A subscription reads only up to the head, the last position whose commit
// has returned: bbolt lets a read transaction see a commit before its
// fsync, and a failed commit may have reached the file, but no
// subscription yields an event before its commit is durable, nor an event
// of a failed commit. Each commit publishes the new head and wakes the
// store's subscriptions, which read from the last position they looked at,
// a page per read transaction, as the other reads do.
//
// A filter with Types walks those types' entries of the types bucket,
// merged by position; one without walks the positions bucket. An
// AggregatePrefix is checked on the events key an entry points to, so an
// event of another aggregate is never read.
//
// A filter with Tags or Items is read as Read reads it (see Read), up to
// the head. Every subscription reads the events after the last bbolt
// commit from the live tail when it holds them, and selects them with
// Filter.Match (see "Subscriptions" in the package doc).
func (s *Store) Subscribe(ctx context.Context, afterPosition uint64, filter eventstore.Filter) iter.Seq2[eventstore.Event, error] {
	filter = cloneFilter(filter) // the live tail matches events with it
	var none bool                // the filter selects no event
	var pages func(after, head uint64) pageFunc
	if len(filter.Tags) > 0 || len(filter.Items) > 0 {
		plan := storekit.PlanFilter(filter)
		none = plan.None()
		pages = func(after, head uint64) pageFunc { return queryPages(plan, after, head, scanLimit) }
	} else {
		types, noType := filterTypes(filter.Types)
		prefix := []byte(filter.AggregatePrefix)
		none = noType
		pages = func(after, head uint64) pageFunc { return subscribePage(after, head, types, prefix) }
	}
	seq := follow.Seq(ctx, s.signal, afterPosition, func(after, head uint64, yield func(eventstore.Event, error) bool) (uint64, bool) {
		if head <= after || none {
			return max(after, head), true
		}
		if last, ok, served := s.readTail(ctx, after, head, filter, yield); served {
			return last, ok
		}
		for e, err := range s.read(ctx, func() pageFunc { return pages(after, head) }) {
			if err != nil {
				yield(eventstore.Event{}, err)
				return 0, false
			}
			if !yield(e, nil) {
				return 0, false
			}
		}
		return head, true
	})
	return func(yield func(eventstore.Event, error) bool) {
		s.tailSubs.Add(1)
		defer s.tailSubs.Add(-1)
		seq(yield)
	}
}

// cloneFilter returns a copy of f that shares no slice with it.
func cloneFilter(f eventstore.Filter) eventstore.Filter {
	f.Types, f.Tags = slices.Clone(f.Types), slices.Clone(f.Tags)
	f.Items = slices.Clone(f.Items)
	for i := range f.Items {
		f.Items[i].Types, f.Items[i].Tags = slices.Clone(f.Items[i].Types), slices.Clone(f.Items[i].Tags)
	}
	return f
}

// filterTypes returns the type prefixes (index.TypePrefix) of the types a
// Filter selects, each once, leaving out names no event can have; nil
// means every type. none reports a list of types none of which an event
// can have.
func filterTypes(types []string) (prefixes [][]byte, none bool) {
	if len(types) == 0 {
		return nil, false
	}
	seen := make(map[string]bool, len(types))
	for _, t := range types {
		if t == "" || len(t) > eventstore.MaxNameLength || !utf8.ValidString(t) || strings.ContainsRune(t, 0) || seen[t] {
			continue
		}
		seen[t] = true
		prefixes = append(prefixes, index.TypePrefix(t))
	}
	return prefixes, len(prefixes) == 0
}

// subscribePage returns the pageFunc of one catch-up of a subscription: the
// events after position after, up to head, of the given types (all when
// nil) and of aggregates whose ID starts with prefix.
func subscribePage(after, head uint64, types [][]byte, prefix []byte) pageFunc {
	pos := after // the last position looked at
	return func(tx *bbolt.Tx, d *decoder, page []eventstore.Event, n int) ([]eventstore.Event, bool, error) {
		events, err := bucket(tx, bucketEvents)
		if err != nil {
			return page, false, err
		}
		g := getter{c: events.Cursor()}
		size := 0 // the bytes of the records in page
		// take looks at the index entry k -> ptr of position p.
		take := func(name []byte, k, ptr []byte, p uint64) error {
			pos = p
			if !aggregateHasPrefix(ptr, prefix) {
				return nil
			}
			var n int
			if page, n, err = g.decode(d, k, ptr, page); err != nil {
				return err
			}
			size += n
			if page[len(page)-1].Position != p {
				page = page[:len(page)-1]
				return corrupt(string(name)+" entry", k, errors.New("position does not match the event's"))
			}
			return nil
		}

		if types == nil {
			b, err := bucket(tx, bucketPositions)
			if err != nil {
				return page, false, err
			}
			c := b.Cursor()
			scanned := 0
			for k, ptr := c.Seek(index.Position(pos + 1)); k != nil; k, ptr = c.Next() {
				p, err := index.ParsePosition(k)
				if err != nil {
					return page, false, corrupt("positions key", k, err)
				}
				if p > head {
					break
				}
				if p != pos+1 {
					return page, false, corrupt("positions key", k, fmt.Errorf("%w: position %d follows position %d", errMissing, p, pos))
				}
				if pageFull(page, n, size) {
					return page, true, nil
				}
				if scanned == scanLimit {
					return page, true, nil
				}
				scanned++
				if err := take(bucketPositions, k, ptr, p); err != nil {
					return page, false, err
				}
			}
			if pos < head {
				// The head's commit returned: every position up to it is stored.
				return page, false, corrupt("positions", index.Position(pos+1), fmt.Errorf("%w: the walk ended at position %d, before the head %d", errMissing, pos, head))
			}
			return page, false, nil
		}

		// One cursor per type, merged by position.
		b, err := bucket(tx, bucketTypes)
		if err != nil {
			return page, false, err
		}
		type typeCursor struct {
			c      *bbolt.Cursor
			prefix []byte
			k, v   []byte
		}
		cs := make([]typeCursor, len(types))
		for i, tp := range types {
			cs[i] = typeCursor{c: b.Cursor(), prefix: tp}
			cs[i].k, cs[i].v = cs[i].c.Seek(index.AppendUint64(slices.Clip(tp), pos+1))
		}
		scanned := 0
		for {
			best := -1
			var minPos uint64
			for i := range cs {
				tc := &cs[i]
				if tc.k != nil && (len(tc.k) != len(tc.prefix)+8 || !bytes.HasPrefix(tc.k, tc.prefix)) {
					tc.k = nil // past the type's range
				}
				if tc.k == nil {
					continue
				}
				if p := binary.BigEndian.Uint64(tc.k[len(tc.prefix):]); best < 0 || p < minPos {
					best, minPos = i, p
				}
			}
			if best < 0 || minPos > head {
				pos = head
				return page, false, nil
			}
			if pageFull(page, n, size) {
				return page, true, nil
			}
			if scanned == scanLimit {
				return page, true, nil
			}
			scanned++
			tc := &cs[best]
			if err := take(bucketTypes, tc.k, tc.v, minPos); err != nil {
				return page, false, err
			}
			tc.k, tc.v = tc.c.Next()
		}
	}
}

// aggregateHasPrefix reports whether the aggregate ID of the events key k
// starts with prefix. A malformed key reports true, so that reading its
// event reports the damage.
func aggregateHasPrefix(k, prefix []byte) bool {
	if len(prefix) == 0 {
		return true
	}
	id, _, err := index.ParseEvent(k)
	if err != nil {
		return true
	}
	return bytes.HasPrefix(id, prefix)
}

// Head implements eventstore.Store. It returns the last position whose
// commit has returned (see Subscribe), which an append that fails never
// moves.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.exit()
	return s.signal.Head(), nil
}

// newSignal returns the commit signal of a store whose file db holds: its
// head is the last position in the file.
func newSignal(db *bbolt.DB) (*follow.Signal, error) {
	var head uint64
	err := db.View(func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketPositions)
		if err != nil {
			return err
		}
		if k, _ := b.Cursor().Last(); k != nil {
			if head, err = index.ParsePosition(k); err != nil {
				return corrupt("positions key", k, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return follow.NewSignal(head), nil
}
