package storekit_test

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/storekit"
)

// TestPlanFilter_SelectsWhatMatchSelects: on random filters and events,
// an event is selected by the plan (All, or one of its items, and the
// prefix) exactly when Filter.Match selects it.
func TestPlanFilter_SelectsWhatMatchSelects(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	names := []string{"A", "B", "C", "", "x\x00"}
	tags := []string{"t1", "t2", "t3", "", "bad\xff"}
	pick := func(from []string) []string {
		var out []string
		for range rng.IntN(3) {
			out = append(out, from[rng.IntN(len(from))])
		}
		return out
	}
	for i := range 20000 {
		f := eventstore.Filter{Types: pick(names), Tags: pick(tags)}
		for range rng.IntN(3) {
			f.Items = append(f.Items, eventstore.Item{Types: pick(names), Tags: pick(tags)})
		}
		if rng.IntN(3) == 0 {
			f.AggregatePrefix = "a"
		}
		e := eventstore.Event{AggregateID: []string{"a1", "b1"}[rng.IntN(2)], Type: names[rng.IntN(3)]}
		for _, t := range tags[:3] {
			if rng.IntN(2) == 0 {
				e.Tags = append(e.Tags, t)
			}
		}
		p := storekit.PlanFilter(f)
		got := p.All && eventstore.Filter{AggregatePrefix: p.AggregatePrefix}.Match(e) ||
			!p.All && len(p.Items) > 0 && eventstore.Filter{Items: p.Items, AggregatePrefix: p.AggregatePrefix}.Match(e)
		require.Equal(t, f.Match(e), got, "case %d: filter %+v event %+v plan %+v", i, f, e, p)
		for _, it := range p.Items {
			require.True(t, len(it.Types) > 0 || len(it.Tags) > 0, "an item of a plan selects something")
		}
	}
}
