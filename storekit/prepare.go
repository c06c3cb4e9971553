// Package storekit holds what those who write an eventstore.Store share: the
// rules that decide which events an Append accepts ([Prepare]), how versions
// are checked and assigned ([AssignVersions]), what a repeated Append means
// ([CheckRetry]) and which snapshots a SnapshotStore accepts
// ([PrepareSnapshot]). Every backend in this module calls them, so every
// backend accepts and rejects the same input and treats retries and
// conflicts alike; package storetest then checks the rest of the behaviour.
//
// Applications do not need this package: the rules it enforces are
// documented on eventstore.Event and eventstore.Store.
package storekit

import (
	"bytes"
	"encoding/json"
	"maps"
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
//   - events of more than one aggregate, the same ID twice, versions that
//     mix zero and non-zero, or non-zero versions that are not consecutive.
func Prepare(events []eventstore.Event, maxPayload int) ([]eventstore.Event, error) {
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
		if i > 0 && e.AggregateID != events[0].AggregateID {
			return nil, invalid(i, "AggregateID", "events of one Append must belong to one aggregate")
		}
		e, err := prepareEvent(i, e, maxPayload, now)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			first := events[0].Version
			switch {
			case (first == 0) != (e.Version == 0):
				return nil, invalid(i, "Version", "versions mix zero and non-zero")
			case first != 0 && e.Version != first+uint64(i):
				return nil, invalid(i, "Version", "versions are not consecutive")
			}
		}
		e.Position = 0
		out[i] = e
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

// prepareEvent applies Prepare's rules for one event's ID, Payload,
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
	if !utf8.Valid(e.Payload) || !json.Valid(e.Payload) {
		return e, invalid(i, "Payload", "not a JSON document in UTF-8")
	}
	e.Payload = bytes.Clone(e.Payload)
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
func CheckRetry(requested, stored []eventstore.Event, found []bool) error {
	for i, r := range requested {
		if !found[i] || !sameEvent(r, stored[i]) ||
			stored[i].Version != stored[0].Version+uint64(i) {
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

func validString(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}
