package storekit

import (
	"slices"

	"github.com/eventstore-go/eventstore"
)

// Plan is a Filter in the form a backend serves from its indexes: a list
// of items OR-ed together, each with the types (one of which an event
// must have) and the tags (all of which it must carry) that the Filter's
// shorthand and its item ask for together, and the aggregate prefix.
//
// Names that no event can have are left out: an item whose every type is
// such a name, or that asks for such a tag, is dropped, as is an item
// whose types the shorthand's types exclude. A Plan selects exactly the
// events that Filter.Match selects.
type Plan struct {
	// All reports a filter that selects every event (of aggregates with
	// the prefix): some item asks for no type and no tag. Items is nil
	// then.
	All bool

	// Items are the items, when not All. None (and not All) means the
	// filter selects no event. Types and tags appear once in each item;
	// an item has at least one type or tag.
	Items []eventstore.Item

	// AggregatePrefix is the filter's.
	AggregatePrefix string
}

// None reports whether the plan selects no event.
func (p Plan) None() bool { return !p.All && len(p.Items) == 0 }

// PlanFilter returns the Plan of f.
func PlanFilter(f eventstore.Filter) Plan {
	p := Plan{AggregatePrefix: f.AggregatePrefix}
	base, ok := planItem(nil, eventstore.Item{Types: f.Types, Tags: f.Tags})
	if !ok {
		return p
	}
	items := f.Items
	if len(items) == 0 {
		items = []eventstore.Item{{}}
	}
	for _, it := range items {
		pi, ok := planItem(&base, it)
		if !ok {
			continue
		}
		if len(pi.Types) == 0 && len(pi.Tags) == 0 {
			return Plan{All: true, AggregatePrefix: f.AggregatePrefix}
		}
		p.Items = append(p.Items, pi)
	}
	return p
}

// planItem returns it with names no event can have left out, combined
// with base (types: those in both; tags: those of either), and false when
// it can match no event.
func planItem(base *eventstore.Item, it eventstore.Item) (eventstore.Item, bool) {
	var out eventstore.Item
	if len(it.Types) > 0 {
		for _, t := range it.Types {
			if ValidName(t) && !slices.Contains(out.Types, t) && (base == nil || len(base.Types) == 0 || slices.Contains(base.Types, t)) {
				out.Types = append(out.Types, t)
			}
		}
		if len(out.Types) == 0 {
			return out, false
		}
	} else if base != nil {
		out.Types = base.Types
	}
	if base != nil {
		out.Tags = slices.Clone(base.Tags)
	}
	for _, t := range it.Tags {
		if !ValidTag(t) {
			return out, false
		}
		if !slices.Contains(out.Tags, t) {
			out.Tags = append(out.Tags, t)
		}
	}
	if len(out.Tags) > eventstore.MaxTags {
		return out, false
	}
	return out, true
}
