package memory

import (
	"context"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/storekit"
)

var _ eventstore.Importer = (*Store)(nil)

// Import implements eventstore.Importer: it checks and writes the whole
// call under the store's lock, so no Append or read sees part of it.
func (s *Store) Import(ctx context.Context, events []eventstore.Event) ([]eventstore.Event, error) {
	prepared, err := s.beginWrite(ctx, func() ([]eventstore.Event, error) { return storekit.PrepareImport(events, s.maxPayload) })
	if err != nil || prepared == nil {
		return nil, err
	}
	defer s.mu.Unlock()
	write, err := storekit.PlanImport(prepared,
		func(i int) (eventstore.Event, bool, error) {
			pos, ok := s.ids[prepared[i].ID]
			if !ok {
				return eventstore.Event{}, false, nil
			}
			return s.log[pos-1], true, nil
		},
		func(aggregateID string) (uint64, error) { return uint64(len(s.aggs[aggregateID])), nil })
	if err != nil {
		return nil, err
	}
	if len(write) == 0 {
		return nil, nil
	}
	out := make([]eventstore.Event, len(write))
	for j, i := range write {
		e := prepared[i]
		e.Position = uint64(len(s.log)) + 1
		s.log = append(s.log, e)
		s.aggs[e.AggregateID] = append(s.aggs[e.AggregateID], e.Position)
		s.types[e.Type] = append(s.types[e.Type], e.Position)
		for _, t := range e.Tags {
			s.tags[t] = append(s.tags[t], e.Position)
		}
		s.ids[e.ID] = e.Position
		s.byTime = s.insertByTime(s.byTime, e.Position)
		s.aggTime[e.AggregateID] = s.insertByTime(s.aggTime[e.AggregateID], e.Position)
		out[j] = clone(e)
	}
	s.signal.Publish(uint64(len(s.log)))
	return out, nil
}
