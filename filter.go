package eventstore

import (
	"slices"
	"strings"
)

// Filter selects events; the zero Filter selects every event. It is the
// one selection type of every read that filters (Store.Read,
// Store.Subscribe, and the condition of Store.AppendIf): later selections
// arrive as new fields, whose zero value selects everything, so that a
// Filter written today keeps its meaning.
//
// A Filter is the query of the dynamic consistency boundaries
// specification (dcb.events): Items is its list of query items, OR-ed
// together. Types and Tags are the shorthand of a query of one item, and
// AND-ed with Items when both are set:
//
//	// Events of course c1 or of student s7, of two types:
//	eventstore.Filter{Items: []eventstore.Item{
//		{Types: []string{"StudentSubscribed", "CourseDefined"}, Tags: []string{"course:c1"}},
//		{Types: []string{"StudentSubscribed"}, Tags: []string{"student:s7"}},
//	}}
//
// A Filter needs no validation: a name that no event can have (see the
// rules on Event) simply matches no event, as ReadType of such a type finds
// nothing.
type Filter struct {
	// Types selects only events of these types. Empty selects every type.
	Types []string

	// Tags selects only events that carry every one of these tags. Empty
	// selects events with any tags or none.
	Tags []string

	// Items selects only events that match at least one item (see
	// Item.Match). Empty selects every event; an item with no types and no
	// tags matches every event.
	Items []Item

	// AggregatePrefix selects only events of aggregates whose ID starts
	// with these bytes, for example "order-". Empty selects every aggregate.
	AggregatePrefix string
}

// Item is one item of a query (a Filter's Items): it matches an event of
// one of its types that carries all of its tags.
type Item struct {
	// Types are the types an event must have one of. Empty: any type.
	Types []string

	// Tags are the tags an event must carry, all of them. Empty: any tags.
	Tags []string
}

// Match reports whether it selects e: e's Type is one of it.Types (or
// it.Types is empty) and e carries every tag of it.Tags.
func (it Item) Match(e Event) bool {
	if len(it.Types) > 0 && !slices.Contains(it.Types, e.Type) {
		return false
	}
	for _, t := range it.Tags {
		if !slices.Contains(e.Tags, t) {
			return false
		}
	}
	return true
}

// Match reports whether f selects e: e's AggregateID starts with
// f.AggregatePrefix, byte for byte; e matches the item {f.Types, f.Tags};
// and e matches at least one of f.Items, when there are any. It is the
// rule every backend follows; a backend serves a Filter from its indexes,
// but never selects other events than Match does.
func (f Filter) Match(e Event) bool {
	if !strings.HasPrefix(e.AggregateID, f.AggregatePrefix) {
		return false
	}
	if !(Item{Types: f.Types, Tags: f.Tags}).Match(e) {
		return false
	}
	if len(f.Items) == 0 {
		return true
	}
	for _, it := range f.Items {
		if it.Match(e) {
			return true
		}
	}
	return false
}
