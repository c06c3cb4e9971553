// Package storekit holds what those who write an eventstore.Store share: the
// rules that decide which events an Append accepts ([Prepare]), how versions
// are checked and assigned ([AssignVersions]), what a repeated Append means
// ([CheckRetry]), which snapshots a SnapshotStore accepts
// ([PrepareSnapshot]), and how a Filter is served from indexes
// ([PlanFilter]). Every backend in this module calls them, so every
// backend accepts and rejects the same input and treats retries and
// conflicts alike; package storetest then checks the rest of the behaviour.
//
// Applications do not need this package: the rules it enforces are
// documented on eventstore.Event and eventstore.Store.
package storekit

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/eventstore-go/eventstore"
)

// The range of timestamps every backend can store and order.
var (
	minTimestamp = time.Date(1, time.January, 1, 0, 0, 0, 0, time.UTC)
	maxTimestamp = time.Date(9999, time.December, 31, 23, 59, 59, 999999000, time.UTC)
)

// Prepare validates the events of one Append call and returns copies ready to
// store: IDs assigned where empty (UUIDv7), IDs in canonical form, timestamps
// set where zero and truncated to UTC microseconds, metadata copied (nil when
// empty), Position zero. It never modifies events.
//
// maxPayload is the largest payload accepted, in bytes; zero or less means
// eventstore.DefaultMaxPayloadSize. Prepare returns an error matching ErrInvalidEvent
// (an *eventstore.InvalidEventError) for:
//   - an AggregateID or Type that is empty, longer than MaxNameLength, not
//     UTF-8, or holds a NUL byte;
//   - an ID that is not a UUID;
//   - a Payload that is not a JSON document in UTF-8, or is larger than
//     maxPayload;
//   - Metadata with an empty key, a key or value that is not UTF-8 or
//     holds a NUL byte, or more than eventstore.MaxMetadataSize bytes of keys and
//     values;
//   - a Timestamp outside the years 1 to 9999;
//   - Tags with an empty tag, one longer than eventstore.MaxTagLength, not
//     UTF-8 or holding a NUL byte, the same tag twice, or more than
//     eventstore.MaxTags of them;
//   - events of more than one aggregate, the same ID twice, versions that
//     mix zero and non-zero, or non-zero versions that are not consecutive.
//
// Tags are copied in their order, nil when empty.
func Prepare(events []eventstore.Event, maxPayload int) ([]eventstore.Event, error) {
	return prepare(events, maxPayload, false)
}

// PrepareAppendIf is Prepare for Store.AppendIf: the events may belong to
// several aggregates, and the version rules hold among the events of each
// aggregate (in call order).
func PrepareAppendIf(events []eventstore.Event, maxPayload int) ([]eventstore.Event, error) {
	return prepare(events, maxPayload, true)
}

func prepare(events []eventstore.Event, maxPayload int, multi bool) ([]eventstore.Event, error) {
	if len(events) == 0 {
		return nil, nil
	}
	if maxPayload <= 0 {
		maxPayload = eventstore.DefaultMaxPayloadSize
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	out := make([]eventstore.Event, len(events))
	for i, e := range events {
		if err := checkNames(i, e); err != nil {
			return nil, err
		}
		if !multi && i > 0 && e.AggregateID != events[0].AggregateID {
			return nil, invalid(i, "AggregateID", "events of one Append must belong to one aggregate")
		}
		e, err := prepareEvent(i, e, maxPayload, now)
		if err != nil {
			return nil, err
		}
		e.Position = 0
		out[i] = e
	}
	for _, group := range Groups(out) {
		first := out[group[0]].Version
		for k, i := range group[1:] {
			switch v := out[i].Version; {
			case (first == 0) != (v == 0):
				return nil, invalid(i, "Version", "versions mix zero and non-zero")
			case first != 0 && v != first+uint64(k+1):
				return nil, invalid(i, "Version", "versions are not consecutive")
			}
		}
	}
	if len(out) > 1 {
		seen := make(map[string]struct{}, len(out))
		for i, e := range out {
			if _, dup := seen[e.ID]; dup {
				return nil, invalid(i, "ID", "the same ID twice in one Append")
			}
			seen[e.ID] = struct{}{}
		}
	}
	return out, nil
}

// checkNames checks the AggregateID and Type of e, the event at index i.
func checkNames(i int, e eventstore.Event) error {
	if err := checkName(e.AggregateID); err != "" {
		return invalid(i, "AggregateID", err)
	}
	if err := checkName(e.Type); err != "" {
		return invalid(i, "Type", err)
	}
	return nil
}

// prepareEvent applies Prepare's rules for one event's ID, Payload, Tags,
// Metadata and Timestamp to e, the event at index i, and returns the copy
// to store. now replaces a zero Timestamp. Its names are checked by
// checkNames.
func prepareEvent(i int, e eventstore.Event, maxPayload int, now time.Time) (eventstore.Event, error) {
	if e.ID == "" {
		e.ID = uuid.Must(uuid.NewV7()).String()
	} else {
		id, err := uuid.Parse(e.ID)
		if err != nil {
			return e, invalid(i, "ID", "not a UUID")
		}
		e.ID = id.String()
	}
	if len(e.Payload) > maxPayload {
		return e, invalid(i, "Payload", "larger than the limit")
	}
	if !validJSON(e.Payload) {
		return e, invalid(i, "Payload", "not a JSON document in UTF-8")
	}
	e.Payload = bytes.Clone(e.Payload)
	if reason := checkTags(e.Tags); reason != "" {
		return e, invalid(i, "Tags", reason)
	}
	if len(e.Tags) == 0 {
		e.Tags = nil
	} else {
		e.Tags = slices.Clone(e.Tags)
	}
	metaSize := 0
	for k, v := range e.Metadata {
		metaSize += len(k) + len(v)
		if k == "" {
			return e, invalid(i, "Metadata", "empty key")
		}
		if !validString(k) || !validString(v) {
			return e, invalid(i, "Metadata", "key or value not UTF-8 or holds a NUL byte")
		}
	}
	if metaSize > eventstore.MaxMetadataSize {
		return e, invalid(i, "Metadata", "larger than 64 KiB")
	}
	if len(e.Metadata) == 0 {
		e.Metadata = nil
	} else {
		e.Metadata = maps.Clone(e.Metadata)
	}
	if e.Timestamp.IsZero() {
		e.Timestamp = now
	} else {
		e.Timestamp = eventstore.NormalizeTime(e.Timestamp)
		if e.Timestamp.Before(minTimestamp) || e.Timestamp.After(maxTimestamp) {
			return e, invalid(i, "Timestamp", "outside the years 1 to 9999")
		}
	}
	return e, nil
}

// AssignVersions checks the prepared events of one Append against their
// aggregate's current version and, where the events carry version 0,
// numbers them current+1, current+2, ... It returns a *eventstore.ConflictError when
// non-zero versions do not start at current+1.
func AssignVersions(events []eventstore.Event, current uint64) error {
	if len(events) == 0 {
		return nil
	}
	if first := events[0].Version; first != 0 {
		if first != current+1 {
			return &eventstore.ConflictError{AggregateID: events[0].AggregateID, Expected: first - 1, Actual: current}
		}
		return nil
	}
	for i := range events {
		events[i].Version = current + 1 + uint64(i)
	}
	return nil
}

// Groups returns the indexes of events by aggregate: one slice of indexes
// per aggregate, in call order, the aggregates in the order they first
// appear.
func Groups(events []eventstore.Event) [][]int {
	if len(events) == 0 {
		return nil
	}
	single := true
	for _, e := range events[1:] {
		if e.AggregateID != events[0].AggregateID {
			single = false
			break
		}
	}
	if single {
		idx := make([]int, len(events))
		for i := range idx {
			idx[i] = i
		}
		return [][]int{idx}
	}
	var groups [][]int
	at := make(map[string]int)
	for i, e := range events {
		g, ok := at[e.AggregateID]
		if !ok {
			g = len(groups)
			at[e.AggregateID] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// AssignGroupVersions is AssignVersions for the events of one aggregate
// among events of several: events[idx[0]], events[idx[1]], ... (a slice
// of Groups).
func AssignGroupVersions(events []eventstore.Event, idx []int, current uint64) error {
	e0 := events[idx[0]]
	if first := e0.Version; first != 0 {
		if first != current+1 {
			return &eventstore.ConflictError{AggregateID: e0.AggregateID, Expected: first - 1, Actual: current}
		}
		return nil
	}
	for k, i := range idx {
		events[i].Version = current + 1 + uint64(k)
	}
	return nil
}

// CheckRetry decides what an Append means when some of its event IDs are
// already stored. requested are the events as the caller passed them to
// Append, after Prepare accepted them; stored[i] is the stored event whose ID
// is that of the prepared requested[i], and found[i] reports whether there is
// one.
//
// It returns nil when the call repeats a committed Append: every ID is
// stored, at consecutive versions of the requested aggregate, with the same
// type, payload bytes and metadata, and with the same version and timestamp
// wherever the request set them. The store then returns stored and writes
// nothing. Otherwise it returns a *DuplicateEventError.
//
// For AppendIf, whose events may belong to several aggregates, the
// versions must be consecutive among the events of each aggregate.
func CheckRetry(requested, stored []eventstore.Event, found []bool) error {
	type run struct {
		first uint64 // the stored version of the aggregate's first event
		n     uint64 // its events so far
	}
	runs := make(map[string]*run, 1)
	for i, r := range requested {
		ok := found[i] && sameEvent(r, stored[i])
		if ok {
			g := runs[stored[i].AggregateID]
			if g == nil {
				g = &run{first: stored[i].Version}
				runs[stored[i].AggregateID] = g
			}
			ok = stored[i].Version == g.first+g.n
			g.n++
		}
		if !ok {
			// Name an ID that is stored: that is the one the caller must look at.
			for j := range requested {
				if found[j] {
					return &eventstore.DuplicateEventError{ID: stored[j].ID}
				}
			}
			return &eventstore.DuplicateEventError{ID: r.ID}
		}
	}
	return nil
}

// sameEvent reports whether stored is what requested would have stored.
func sameEvent(requested, stored eventstore.Event) bool {
	return requested.AggregateID == stored.AggregateID &&
		requested.Type == stored.Type &&
		bytes.Equal(requested.Payload, stored.Payload) &&
		maps.Equal(requested.Metadata, stored.Metadata) &&
		slices.Equal(requested.Tags, stored.Tags) &&
		(requested.Version == 0 || requested.Version == stored.Version) &&
		(requested.Timestamp.IsZero() || eventstore.NormalizeTime(requested.Timestamp).Equal(stored.Timestamp))
}

func invalid(i int, field, reason string) error {
	return &eventstore.InvalidEventError{Index: i, Field: field, Reason: reason}
}

// checkName returns why s is not a valid AggregateID or Type, or "".
func checkName(s string) string {
	switch {
	case s == "":
		return "empty"
	case len(s) > eventstore.MaxNameLength:
		return "longer than 512 bytes"
	case !validString(s):
		return "not UTF-8 or holds a NUL byte"
	}
	return ""
}

// checkTags returns why tags are not valid Event.Tags, or "".
func checkTags(tags []string) string {
	if len(tags) > eventstore.MaxTags {
		return "more than 32 tags"
	}
	for i, t := range tags {
		if !ValidTag(t) {
			return fmt.Sprintf("tag %d is empty, longer than 256 bytes, not UTF-8 or holds a NUL byte", i)
		}
		if slices.Contains(tags[:i], t) {
			return fmt.Sprintf("tag %q twice", t)
		}
	}
	return ""
}

// ValidTag reports whether an event can carry tag t: 1 to
// eventstore.MaxTagLength bytes of UTF-8 with no NUL byte.
func ValidTag(t string) bool {
	return t != "" && len(t) <= eventstore.MaxTagLength && validString(t)
}

// ValidName reports whether an event can have s as its AggregateID or
// Type.
func ValidName(s string) bool { return checkName(s) == "" }

func validString(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}
