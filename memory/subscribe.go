package memory

import (
	"context"
	"iter"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/follow"
	"github.com/eventstore-go/eventstore/storekit"
)

var _ eventstore.CheckpointStore = (*Store)(nil)

// scanLimit is how many log entries a subscription looks at under one
// lock, matching or not.
const scanLimit = 16 * pageSize

// Subscribe implements eventstore.Store. Every Append wakes the store's
// subscriptions once it has stored its events; each then copies the events
// after the last position it looked at, a page per lock, as reads do.
func (s *Store) Subscribe(ctx context.Context, afterPosition uint64, filter eventstore.Filter) iter.Seq2[eventstore.Event, error] {
	return follow.Seq(ctx, &s.signal, afterPosition, func(after, head uint64, yield func(eventstore.Event, error) bool) (uint64, bool) {
		page := make([]eventstore.Event, 0, pageSize)
		var c copier
		for after < head {
			if err := ctx.Err(); err != nil {
				yield(eventstore.Event{}, err)
				return 0, false
			}
			page = page[:0]
			s.mu.RLock()
			if s.closed {
				s.mu.RUnlock()
				yield(eventstore.Event{}, eventstore.ErrClosed)
				return 0, false
			}
			end := min(head, after+scanLimit)
			for p := after + 1; p <= end && len(page) < pageSize; p++ {
				e := &s.log[p-1]
				if filter.Match(*e) {
					page = append(page, c.copy(*e))
				}
				after = p
			}
			s.mu.RUnlock()
			for i, e := range page {
				if i > 0 && ctx.Err() != nil {
					yield(eventstore.Event{}, ctx.Err())
					return 0, false
				}
				if !yield(e, nil) {
					return 0, false
				}
			}
		}
		return head, true
	})
}

// Head implements eventstore.Store.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, eventstore.ErrClosed
	}
	return uint64(len(s.log)), nil
}

// LoadCheckpoint implements eventstore.CheckpointStore.
func (s *Store) LoadCheckpoint(ctx context.Context, name string) (uint64, error) {
	if err := checkCheckpoint(ctx, name); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, eventstore.ErrClosed
	}
	return s.checkpoints[name], nil
}

// SaveCheckpoint implements eventstore.CheckpointStore.
func (s *Store) SaveCheckpoint(ctx context.Context, name string, position uint64) error {
	if err := checkCheckpoint(ctx, name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return eventstore.ErrClosed
	}
	if s.checkpoints == nil {
		s.checkpoints = make(map[string]uint64)
	}
	s.checkpoints[name] = position
	return nil
}

func checkCheckpoint(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return storekit.CheckCheckpointName(name)
}
