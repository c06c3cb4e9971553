// Package memory is an eventstore.Store that keeps everything in memory.
//
// It has the same semantics as the bolt and postgres stores (it passes the
// same conformance suite) and is the fake to use in tests and development.
// Nothing survives the process: "durable" means durable for the life of the
// Store.
package memory

import (
	"bytes"
	"context"
	"iter"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/follow"
	"github.com/eventstore-go/eventstore/storekit"
)

// pageSize is how many events a read copies out under one lock.
const pageSize = 256

var (
	_ eventstore.Store         = (*Store)(nil)
	_ eventstore.SnapshotStore = (*Store)(nil)
)

// Options configure New. A nil *Options means every default.
type Options struct {
	// MaxPayloadSize is the largest payload Append accepts, in bytes, as
	// the option of the same name on the bolt and postgres stores: set it
	// alike so that tests refuse what production refuses. Zero or less
	// means eventstore.DefaultMaxPayloadSize (1 MiB).
	MaxPayloadSize int
}

// Store is an in-memory event store. It is safe for concurrent use.
type Store struct {
	maxPayload int
	mu         sync.RWMutex
	closed     bool
	log        []eventstore.Event             // the global log; log[p-1] has position p
	aggs       map[string][]uint64            // aggregate ID -> positions in version order
	types      map[string][]uint64            // event type -> positions
	tags       map[string][]uint64            // tag -> positions
	ids        map[string]uint64              // event ID -> position
	byTime     []uint64                       // positions ordered by (timestamp, position)
	aggTime    map[string][]uint64            // aggregate ID -> positions ordered by (timestamp, position)
	snapshots  map[string]eventstore.Snapshot // aggregate ID -> latest snapshot

	checkpoints map[string]uint64 // checkpoint name -> position
	signal      follow.Signal     // published after every Append that stores events
}

// New returns an empty store.
func New(opts *Options) *Store {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxPayloadSize <= 0 {
		o.MaxPayloadSize = eventstore.DefaultMaxPayloadSize
	}
	return &Store{
		maxPayload: o.MaxPayloadSize,
		aggs:       make(map[string][]uint64),
		types:      make(map[string][]uint64),
		tags:       make(map[string][]uint64),
		ids:        make(map[string]uint64),
		aggTime:    make(map[string][]uint64),
		snapshots:  make(map[string]eventstore.Snapshot),
	}
}

// beginWrite starts a write: it checks ctx and runs prepare (validation,
// outside the lock) and, when prepare gives events, returns them with s.mu
// held for writing; the caller unlocks it. Otherwise it returns nil and
// prepare's error, or ErrClosed after Close, which comes first.
func (s *Store) beginWrite(ctx context.Context, prepare func() ([]eventstore.Event, error)) ([]eventstore.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prepared, err := prepare()
	if err != nil || len(prepared) == 0 {
		s.mu.RLock()
		closed := s.closed
		s.mu.RUnlock()
		if closed {
			return nil, eventstore.ErrClosed
		}
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, eventstore.ErrClosed
	}
	return prepared, nil
}

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, events ...eventstore.Event) ([]eventstore.Event, error) {
	prepared, err := s.beginWrite(ctx, func() ([]eventstore.Event, error) { return storekit.Prepare(events, s.maxPayload) })
	if err != nil || prepared == nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return s.appendLocked(events, prepared, nil)
}

// appendLocked stores prepared, the events the caller passed as events,
// on the condition cond (none when nil). s.mu is held.
func (s *Store) appendLocked(events, prepared []eventstore.Event, cond *eventstore.Condition) ([]eventstore.Event, error) {
	// A call whose IDs are already stored is a retry or a duplicate.
	var stored []eventstore.Event
	var found []bool
	for i, e := range prepared {
		if pos, ok := s.ids[e.ID]; ok {
			if found == nil {
				stored = make([]eventstore.Event, len(prepared))
				found = make([]bool, len(prepared))
			}
			stored[i], found[i] = s.log[pos-1], true
		}
	}
	if found != nil {
		if err := storekit.CheckRetry(events, stored, found); err != nil {
			return nil, err
		}
		return cloneAll(stored), nil
	}

	if cond != nil {
		if p, ok := s.firstMatch(storekit.PlanFilter(cond.FailIfEventsMatch), cond.After); ok {
			return nil, &eventstore.ConditionError{After: cond.After, Position: p}
		}
	}
	for _, group := range storekit.Groups(prepared) {
		aggID := prepared[group[0]].AggregateID
		if err := storekit.AssignGroupVersions(prepared, group, uint64(len(s.aggs[aggID]))); err != nil {
			return nil, err
		}
	}
	for i := range prepared {
		e := &prepared[i]
		e.Position = uint64(len(s.log)) + 1
		s.log = append(s.log, *e)
		s.aggs[e.AggregateID] = append(s.aggs[e.AggregateID], e.Position)
		s.types[e.Type] = append(s.types[e.Type], e.Position)
		for _, t := range e.Tags {
			s.tags[t] = append(s.tags[t], e.Position)
		}
		s.ids[e.ID] = e.Position
		s.byTime = s.insertByTime(s.byTime, e.Position)
		s.aggTime[e.AggregateID] = s.insertByTime(s.aggTime[e.AggregateID], e.Position)
	}
	s.signal.Publish(uint64(len(s.log)))
	// The log keeps its own copies; the caller gets others.
	return cloneAll(prepared), nil
}

// insertByTime inserts pos into positions, which is ordered by (timestamp,
// position). Appends are mostly in time order, so this is mostly an append.
func (s *Store) insertByTime(positions []uint64, pos uint64) []uint64 {
	ts := s.log[pos-1].Timestamp
	i := len(positions)
	for i > 0 && s.log[positions[i-1]-1].Timestamp.After(ts) {
		i--
	}
	return slices.Insert(positions, i, pos)
}

// Version implements eventstore.Store.
func (s *Store) Version(ctx context.Context, aggregateID string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, eventstore.ErrClosed
	}
	return uint64(len(s.aggs[aggregateID])), nil
}

// ReadAggregate implements eventstore.Store.
func (s *Store) ReadAggregate(ctx context.Context, aggregateID string, afterVersion uint64) iter.Seq2[eventstore.Event, error] {
	return s.read(ctx, func() []uint64 { return s.aggs[aggregateID] }, func(positions []uint64, last uint64) int {
		if last == 0 {
			return int(min(afterVersion, uint64(len(positions))))
		}
		return int(s.log[last-1].Version)
	})
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, afterPosition uint64) iter.Seq2[eventstore.Event, error] {
	return s.read(ctx, nil, func(_ []uint64, last uint64) int {
		return int(min(max(afterPosition, last), uint64(len(s.log))))
	})
}

// ReadType implements eventstore.Store.
func (s *Store) ReadType(ctx context.Context, eventType string, afterPosition uint64) iter.Seq2[eventstore.Event, error] {
	return s.read(ctx, func() []uint64 { return s.types[eventType] }, func(positions []uint64, last uint64) int {
		after := max(afterPosition, last)
		if after == math.MaxUint64 {
			return len(positions) // nothing comes after; after+1 would wrap
		}
		i, _ := slices.BinarySearch(positions, after+1)
		return i
	})
}

// ReadTime implements eventstore.Store. A zero end means no bound; any
// other end is truncated to microseconds first, even one that truncates to
// the zero time.
func (s *Store) ReadTime(ctx context.Context, aggregateID string, start, end time.Time) iter.Seq2[eventstore.Event, error] {
	bounded := !end.IsZero()
	start, end = eventstore.NormalizeTime(start), eventstore.NormalizeTime(end)
	index := func() []uint64 {
		if aggregateID == "" {
			return s.byTime
		}
		return s.aggTime[aggregateID]
	}
	inner := s.read(ctx, index, func(positions []uint64, last uint64) int {
		return sortIndex(len(positions), func(i int) bool {
			e := &s.log[positions[i]-1]
			if last == 0 {
				return !e.Timestamp.Before(start)
			}
			l := &s.log[last-1]
			return e.Timestamp.After(l.Timestamp) || e.Timestamp.Equal(l.Timestamp) && e.Position > l.Position
		})
	})
	return func(yield func(eventstore.Event, error) bool) {
		for e, err := range inner {
			if err == nil && bounded && !e.Timestamp.Before(end) {
				return
			}
			if !yield(e, err) {
				return
			}
		}
	}
}

// sortIndex returns the smallest i in [0, n) for which f is true, or n.
func sortIndex(n int, f func(int) bool) int {
	lo, hi := 0, n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if f(m) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

// read streams events page by page, taking the lock once a page and never
// holding it while the caller runs. index returns the positions to walk (nil
// for the whole log) and next returns where in them to resume after the
// last position yielded (0 before the first).
func (s *Store) read(ctx context.Context, index func() []uint64, next func(positions []uint64, last uint64) int) iter.Seq2[eventstore.Event, error] {
	return func(yield func(eventstore.Event, error) bool) {
		var last uint64
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
			if index == nil {
				for p := next(nil, last); p < len(s.log) && len(page) < pageSize; p++ {
					page = append(page, c.copy(s.log[p]))
				}
			} else {
				positions := index()
				for i := next(positions, last); i < len(positions) && len(page) < pageSize; i++ {
					page = append(page, c.copy(s.log[positions[i]-1]))
				}
			}
			s.mu.RUnlock()

			for _, e := range page {
				if err := ctx.Err(); err != nil {
					yield(eventstore.Event{}, err)
					return
				}
				if !yield(e, nil) {
					return
				}
				last = e.Position
			}
			if len(page) < pageSize {
				return
			}
		}
	}
}

// Close implements eventstore.Store. It drops every event.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.signal.Close()
	s.tags = nil
	s.log, s.aggs, s.types, s.ids, s.byTime, s.aggTime, s.snapshots, s.checkpoints = nil, nil, nil, nil, nil, nil, nil, nil
	return nil
}

// clone returns a copy of e that shares no memory with the store.
func clone(e eventstore.Event) eventstore.Event {
	e.Payload = bytes.Clone(e.Payload)
	e.Metadata = maps.Clone(e.Metadata)
	e.Tags = slices.Clone(e.Tags)
	return e
}

// copier copies the events of one read. Like bolt's reads, it gives events
// with equal metadata one map while they come in a run (see
// eventstore.Event.Metadata): its maps are its read's alone.
type copier struct {
	src, dst map[string]string // the last metadata copied and its copy
}

func (c *copier) copy(e eventstore.Event) eventstore.Event {
	e.Payload = bytes.Clone(e.Payload)
	e.Tags = slices.Clone(e.Tags)
	switch {
	case len(e.Metadata) == 0:
		e.Metadata = nil
	case c.dst != nil && maps.Equal(e.Metadata, c.src):
		e.Metadata = c.dst
	default:
		c.src = e.Metadata
		e.Metadata = maps.Clone(e.Metadata)
		c.dst = e.Metadata
	}
	return e
}

func cloneAll(events []eventstore.Event) []eventstore.Event {
	out := make([]eventstore.Event, len(events))
	for i, e := range events {
		out[i] = clone(e)
	}
	return out
}
