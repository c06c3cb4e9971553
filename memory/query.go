package memory

import (
	"context"
	"iter"
	"math"
	"slices"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/storekit"
)

// Read implements eventstore.Store. It walks the positions of the tags
// and types the filter names (for an item with tags, those of its rarest
// tag), merged by position, and checks each event with Filter.Match; a
// filter that selects every type and tag walks the log.
func (s *Store) Read(ctx context.Context, filter eventstore.Filter, afterPosition uint64) iter.Seq2[eventstore.Event, error] {
	plan := storekit.PlanFilter(filter)
	return func(yield func(eventstore.Event, error) bool) {
		after := afterPosition
		page := make([]eventstore.Event, 0, pageSize)
		var c copier
		for {
			if err := ctx.Err(); err != nil {
				yield(eventstore.Event{}, err)
				return
			}
			page = page[:0]
			s.mu.RLock()
			if s.closed {
				s.mu.RUnlock()
				yield(eventstore.Event{}, eventstore.ErrClosed)
				return
			}
			var more bool
			after, more = s.scan(plan, filter, after, func(e *eventstore.Event) bool {
				page = append(page, c.copy(*e))
				return len(page) < pageSize
			})
			s.mu.RUnlock()
			for _, e := range page {
				if err := ctx.Err(); err != nil {
					yield(eventstore.Event{}, err)
					return
				}
				if !yield(e, nil) {
					return
				}
			}
			if !more {
				return
			}
		}
	}
}

// AppendIf implements eventstore.Store: the condition is checked under
// the lock that the write holds.
func (s *Store) AppendIf(ctx context.Context, cond eventstore.Condition, events ...eventstore.Event) ([]eventstore.Event, error) {
	prepared, err := s.beginWrite(ctx, func() ([]eventstore.Event, error) { return storekit.PrepareAppendIf(events, s.maxPayload) })
	if err != nil || prepared == nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return s.appendLocked(events, prepared, &cond)
}

// firstMatch returns the first position after after whose event plan
// selects. s.mu is held.
func (s *Store) firstMatch(plan storekit.Plan, after uint64) (pos uint64, ok bool) {
	f := eventstore.Filter{Items: plan.Items, AggregatePrefix: plan.AggregatePrefix}
	s.scan(plan, f, after, func(e *eventstore.Event) bool {
		pos, ok = e.Position, true
		return false
	})
	return pos, ok
}

// scan calls take, in position order, with each event after position
// after that filter (whose plan is plan) selects, until take returns
// false. It returns the last position it looked at and whether events may
// follow it. s.mu is held.
func (s *Store) scan(plan storekit.Plan, filter eventstore.Filter, after uint64, take func(*eventstore.Event) bool) (uint64, bool) {
	if plan.None() || after == math.MaxUint64 {
		return after, false // nothing comes after; after+1 would wrap
	}
	head := uint64(len(s.log))
	if plan.All {
		for p := after + 1; p <= head; p++ {
			if e := &s.log[p-1]; filter.Match(*e) && !take(e) {
				return p, p < head
			}
		}
		return max(after, head), false
	}
	// The position lists to merge: per item, its rarest tag's, or its
	// types'.
	var lists [][]uint64
	for _, it := range plan.Items {
		if len(it.Tags) > 0 {
			best := s.tags[it.Tags[0]]
			for _, t := range it.Tags[1:] {
				if l := s.tags[t]; len(l) < len(best) {
					best = l
				}
			}
			lists = append(lists, best)
			continue
		}
		for _, t := range it.Types {
			lists = append(lists, s.types[t])
		}
	}
	at := make([]int, len(lists))
	for i, l := range lists {
		at[i], _ = slices.BinarySearch(l, after+1)
	}
	for {
		best := -1
		for i, l := range lists {
			if at[i] < len(l) && (best < 0 || l[at[i]] < lists[best][at[best]]) {
				best = i
			}
		}
		if best < 0 {
			return max(after, head), false
		}
		p := lists[best][at[best]]
		for i, l := range lists {
			if at[i] < len(l) && l[at[i]] == p {
				at[i]++
			}
		}
		after = p
		if e := &s.log[p-1]; filter.Match(*e) && !take(e) {
			return p, true
		}
	}
}
