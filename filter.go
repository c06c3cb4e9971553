package eventstore

import (
	"slices"
	"strings"
)

// Filter selects events; the zero Filter selects every event. It is the
// one selection type of every read that filters (Store.Subscribe): later
// selections arrive as new fields, whose zero value selects everything, so
// that a Filter written today keeps its meaning.
//
// A Filter needs no validation: a name that no event can have (see the
// rules on Event) simply matches no event, as ReadType of such a type finds
// nothing.
type Filter struct {
	// Types selects only events of these types. Empty selects every type.
	Types []string

	// AggregatePrefix selects only events of aggregates whose ID starts
	// with these bytes, for example "order-". Empty selects every aggregate.
	AggregatePrefix string
}

// Match reports whether f selects e: e's Type is one of f.Types (or
// f.Types is empty) and e's AggregateID starts with f.AggregatePrefix,
// byte for byte. It is the rule every backend follows; a backend serves a
// Filter from its indexes, but never selects other events than Match does.
func (f Filter) Match(e Event) bool {
	if len(f.Types) > 0 && !slices.Contains(f.Types, e.Type) {
		return false
	}
	return strings.HasPrefix(e.AggregateID, f.AggregatePrefix)
}
