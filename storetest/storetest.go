// Package storetest is the conformance suite every eventstore.Store passes.
//
// A backend's tests call Run with a function that opens a fresh, empty
// store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) eventstore.Store {
//			s, err := bolt.Open(filepath.Join(t.TempDir(), "events.db"), nil)
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// A backend that passes the suite has the semantics documented on
// eventstore.Store; the suite, not any one backend, is the definition.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
)

// NewStore opens a fresh, empty store for one subtest and registers its
// cleanup with t. Closing the store twice must be harmless.
type NewStore func(t *testing.T) eventstore.Store

// Run runs the conformance suite against stores made by newStore, one fresh
// store per subtest.
func Run(t *testing.T, newStore NewStore) {
	t.Helper()
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, NewStore)
	}{
		{"Append", testAppend},
		{"Conflict", testConflict},
		{"Retry", testRetry},
		{"Positions", testPositions},
		{"Payload", testPayload},
		{"Metadata", testMetadata},
		{"Time", testTime},
		{"Read", testRead},
		{"ReadTime", testReadTime},
		{"Iterators", testIterators},
		{"Concurrency", testConcurrency},
		{"InvalidInput", testInvalidInput},
		{"Close", testClose},
		{"Subscribe", testSubscribe},
		{"Tags", testTags},
		{"Query", testQuery},
		{"Condition", testCondition},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore) })
	}
}

// ev returns a valid event of aggregate agg with a small payload.
func ev(agg, typ string, version uint64, payload string) eventstore.Event {
	return eventstore.Event{AggregateID: agg, Type: typ, Version: version, Payload: json.RawMessage(payload)}
}

func mustAppend(t *testing.T, s eventstore.Store, events ...eventstore.Event) []eventstore.Event {
	t.Helper()
	out, err := s.Append(context.Background(), events...)
	require.NoError(t, err)
	require.Len(t, out, len(events))
	return out
}

func collect(t *testing.T, seq func(func(eventstore.Event, error) bool)) []eventstore.Event {
	t.Helper()
	out, err := eventstore.Collect(seq)
	require.NoError(t, err)
	return out
}

func readAll(t *testing.T, s eventstore.Store) []eventstore.Event {
	t.Helper()
	return collect(t, s.ReadAll(context.Background(), 0))
}

// requireSameEvents checks that got equals want field by field, with
// timestamps in UTC.
func requireSameEvents(t *testing.T, want, got []eventstore.Event) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		w, g := want[i], got[i]
		require.Equal(t, w.ID, g.ID, "event %d ID", i)
		require.Equal(t, w.AggregateID, g.AggregateID, "event %d AggregateID", i)
		require.Equal(t, w.Type, g.Type, "event %d Type", i)
		require.Equal(t, string(w.Payload), string(g.Payload), "event %d Payload", i)
		require.Equal(t, len(w.Metadata), len(g.Metadata), "event %d Metadata", i)
		require.Equal(t, w.Metadata == nil, g.Metadata == nil, "event %d Metadata: nil when empty", i)
		for k, v := range w.Metadata {
			require.Equal(t, v, g.Metadata[k], "event %d Metadata[%q]", i, k)
		}
		require.True(t, w.Timestamp.Equal(g.Timestamp), "event %d Timestamp: want %v, got %v", i, w.Timestamp, g.Timestamp)
		require.Equal(t, time.UTC, g.Timestamp.Location(), "event %d Timestamp location", i)
		require.Equal(t, w.Version, g.Version, "event %d Version", i)
		require.Equal(t, w.Position, g.Position, "event %d Position", i)
		require.Equal(t, len(w.Tags), len(g.Tags), "event %d Tags", i)
		for j := range w.Tags {
			require.Equal(t, w.Tags[j], g.Tags[j], "event %d Tags[%d]", i, j)
		}
	}
}

func versions(events []eventstore.Event) []uint64 {
	out := make([]uint64, len(events))
	for i, e := range events {
		out[i] = e.Version
	}
	return out
}

func positions(events []eventstore.Event) []uint64 {
	out := make([]uint64, len(events))
	for i, e := range events {
		out[i] = e.Position
	}
	return out
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func testAppend(t *testing.T, newStore NewStore) {
	ctx := context.Background()

	t.Run("FillsInIDTimestampVersionPosition", func(t *testing.T) {
		s := newStore(t)
		before := time.Now().Add(-time.Second)
		in := []eventstore.Event{ev("user-1", "UserCreated", 0, `{"name":"Ada"}`), ev("user-1", "UserRenamed", 0, `{"name":"Grace"}`)}
		out := mustAppend(t, s, in...)
		for i, e := range out {
			id, err := uuid.Parse(e.ID)
			require.NoError(t, err)
			require.Equal(t, uuid.Version(7), id.Version())
			require.Equal(t, uint64(i+1), e.Version)
			require.Equal(t, uint64(i+1), e.Position)
			require.True(t, e.Timestamp.After(before) && e.Timestamp.Before(time.Now().Add(time.Second)), "timestamp %v", e.Timestamp)
			require.Equal(t, time.UTC, e.Timestamp.Location())
			require.Equal(t, 0, e.Timestamp.Nanosecond()%1000, "timestamp has sub-microsecond precision")
		}
		require.NotEqual(t, out[0].ID, out[1].ID)
		requireSameEvents(t, out, readAll(t, s))
	})

	t.Run("LeavesCallerEventsUnchanged", func(t *testing.T) {
		s := newStore(t)
		in := []eventstore.Event{ev("a", "T", 0, `{}`)}
		in[0].Metadata = map[string]string{"k": "v"}
		in[0].Position = 99
		snapshot := in[0]
		out := mustAppend(t, s, in...)
		require.Equal(t, snapshot, in[0])
		// The returned events share nothing with the store.
		out[0].Payload[0] = '['
		out[0].Metadata["k"] = "changed"
		got := readAll(t, s)
		require.Equal(t, `{}`, string(got[0].Payload))
		require.Equal(t, "v", got[0].Metadata["k"])
		require.Equal(t, uint64(1), got[0].Position, "caller's Position is ignored")
	})

	t.Run("StoresCopiesOfCallerData", func(t *testing.T) {
		s := newStore(t)
		payload := json.RawMessage(`{"n":1}`)
		meta := map[string]string{"k": "v"}
		mustAppend(t, s, eventstore.Event{AggregateID: "a", Type: "T", Payload: payload, Metadata: meta})
		// The caller reuses its buffers; stored events never change.
		payload[1] = 'X'
		meta["k"] = "changed"
		meta["new"] = "added"
		got := readAll(t, s)
		require.Equal(t, `{"n":1}`, string(got[0].Payload))
		require.Equal(t, map[string]string{"k": "v"}, got[0].Metadata)
	})

	t.Run("KeepsCallerIDInCanonicalForm", func(t *testing.T) {
		s := newStore(t)
		id := uuid.New()
		e := ev("a", "T", 1, `{}`)
		e.ID = strings.ToUpper(id.String())
		out := mustAppend(t, s, e)
		require.Equal(t, id.String(), out[0].ID)
		require.Equal(t, id.String(), readAll(t, s)[0].ID)
	})

	t.Run("NoEvents", func(t *testing.T) {
		s := newStore(t)
		out, err := s.Append(ctx)
		require.NoError(t, err)
		require.Nil(t, out)
		require.Empty(t, readAll(t, s))
	})

	t.Run("VersionZeroAppendsAtEnd", func(t *testing.T) {
		s := newStore(t)
		mustAppend(t, s, ev("a", "T", 1, `1`), ev("a", "T", 2, `2`))
		out := mustAppend(t, s, ev("a", "T", 0, `3`), ev("a", "T", 0, `4`))
		require.Equal(t, []uint64{3, 4}, versions(out))
		v, err := s.Version(ctx, "a")
		require.NoError(t, err)
		require.Equal(t, uint64(4), v)
	})

	t.Run("VersionOfUnknownAggregateIsZero", func(t *testing.T) {
		s := newStore(t)
		v, err := s.Version(ctx, "nobody")
		require.NoError(t, err)
		require.Zero(t, v)
	})

	t.Run("Metadata", func(t *testing.T) {
		s := newStore(t)
		a := ev("a", "T", 0, `{}`)
		a.Metadata = map[string]string{"correlation_id": "c-1", "causation_id": "c-0", "user_id": "ü-ser", "empty": ""}
		b := ev("a", "T", 0, `{}`)
		b.Metadata = map[string]string{}
		out := mustAppend(t, s, a, b)
		require.Nil(t, out[1].Metadata, "empty metadata reads as nil")
		got := readAll(t, s)
		requireSameEvents(t, out, got)
		require.Equal(t, a.Metadata, got[0].Metadata)
		require.Nil(t, got[1].Metadata)
	})

	t.Run("LargestValidInput", func(t *testing.T) {
		s := newStore(t)
		agg := strings.Repeat("é", eventstore.MaxNameLength/2)
		typ := strings.Repeat("t", eventstore.MaxNameLength)
		payload := `"` + strings.Repeat("x", eventstore.DefaultMaxPayloadSize-2) + `"`
		e := ev(agg, typ, 1, payload)
		e.Metadata = map[string]string{"k": strings.Repeat("m", eventstore.MaxMetadataSize-1)}
		out := mustAppend(t, s, e)
		got := collect(t, s.ReadAggregate(ctx, agg, 0))
		requireSameEvents(t, out, got)
	})

	t.Run("CancelledContext", func(t *testing.T) {
		s := newStore(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := s.Append(cctx, ev("a", "T", 0, `{}`))
		require.ErrorIs(t, err, context.Canceled)
		require.Empty(t, readAll(t, s))
	})
}

func testConflict(t *testing.T, newStore NewStore) {
	ctx := context.Background()

	t.Run("StaleVersion", func(t *testing.T) {
		s := newStore(t)
		mustAppend(t, s, ev("acct", "Opened", 1, `{}`), ev("acct", "Deposited", 2, `{}`))
		_, err := s.Append(ctx, ev("acct", "Withdrawn", 2, `{}`))
		require.ErrorIs(t, err, eventstore.ErrConflict)
		var ce *eventstore.ConflictError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, eventstore.ConflictError{AggregateID: "acct", Expected: 1, Actual: 2}, *ce)
		require.Len(t, readAll(t, s), 2, "a conflict writes nothing")
	})

	t.Run("VersionAhead", func(t *testing.T) {
		s := newStore(t)
		mustAppend(t, s, ev("acct", "Opened", 1, `{}`))
		_, err := s.Append(ctx, ev("acct", "Deposited", 3, `{}`), ev("acct", "Deposited", 4, `{}`))
		var ce *eventstore.ConflictError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, uint64(2), ce.Expected)
		require.Equal(t, uint64(1), ce.Actual)
		v, err := s.Version(ctx, "acct")
		require.NoError(t, err)
		require.Equal(t, uint64(1), v)
	})

	t.Run("NewAggregateStartsAtOne", func(t *testing.T) {
		s := newStore(t)
		_, err := s.Append(ctx, ev("new", "T", 2, `{}`))
		require.ErrorIs(t, err, eventstore.ErrConflict)
		require.Empty(t, readAll(t, s))
	})

	t.Run("ConflictNamesItsAggregateOnly", func(t *testing.T) {
		s := newStore(t)
		mustAppend(t, s, ev("a", "T", 1, `{}`))
		mustAppend(t, s, ev("b", "T", 1, `{}`))
		_, err := s.Append(ctx, ev("a", "T", 1, `{}`))
		require.ErrorIs(t, err, eventstore.ErrConflict)
		out := mustAppend(t, s, ev("b", "T", 2, `{}`))
		require.Equal(t, uint64(3), out[0].Position, "a failed append consumes no position")
	})
}

func testRetry(t *testing.T, newStore NewStore) {
	ctx := context.Background()

	withID := func(e eventstore.Event) eventstore.Event {
		e.ID = uuid.NewString()
		return e
	}

	t.Run("SameCallReturnsStoredEvents", func(t *testing.T) {
		s := newStore(t)
		call := []eventstore.Event{withID(ev("a", "T", 1, `{"n":1}`)), withID(ev("a", "T", 2, `{"n":2}`))}
		call[0].Metadata = map[string]string{"k": "v"}
		first := mustAppend(t, s, call...)
		again := mustAppend(t, s, call...)
		requireSameEvents(t, first, again)
		requireSameEvents(t, first, readAll(t, s))
	})

	t.Run("VersionZeroRetryWritesNothing", func(t *testing.T) {
		s := newStore(t)
		call := []eventstore.Event{withID(ev("a", "T", 0, `1`)), withID(ev("a", "T", 0, `2`))}
		first := mustAppend(t, s, call...)
		mustAppend(t, s, ev("a", "T", 0, `3`)) // someone else appended since
		again := mustAppend(t, s, call...)
		requireSameEvents(t, first, again)
		require.Len(t, readAll(t, s), 3)
	})

	t.Run("CallerTimestampMustMatch", func(t *testing.T) {
		s := newStore(t)
		e := withID(ev("a", "T", 1, `{}`))
		e.Timestamp = time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)
		mustAppend(t, s, e)
		again := mustAppend(t, s, e)
		require.True(t, again[0].Timestamp.Equal(e.Timestamp))
		e.Timestamp = e.Timestamp.Add(time.Second)
		_, err := s.Append(ctx, e)
		require.ErrorIs(t, err, eventstore.ErrDuplicateEvent)
	})

	t.Run("DifferentContentIsDuplicate", func(t *testing.T) {
		s := newStore(t)
		e := withID(ev("a", "T", 1, `{"n":1}`))
		mustAppend(t, s, e)
		for name, change := range map[string]func(*eventstore.Event){
			"Payload":   func(e *eventstore.Event) { e.Payload = json.RawMessage(`{"n":2}`) },
			"Type":      func(e *eventstore.Event) { e.Type = "U" },
			"Aggregate": func(e *eventstore.Event) { e.AggregateID = "b"; e.Version = 0 },
			"Metadata":  func(e *eventstore.Event) { e.Metadata = map[string]string{"k": "v"} },
			"Version":   func(e *eventstore.Event) { e.Version = 2 },
		} {
			d := e
			change(&d)
			_, err := s.Append(ctx, d)
			require.ErrorIs(t, err, eventstore.ErrDuplicateEvent, name)
			var de *eventstore.DuplicateEventError
			require.ErrorAs(t, err, &de, name)
			require.Equal(t, e.ID, de.ID, name)
		}
		require.Len(t, readAll(t, s), 1)
		out := mustAppend(t, s, ev("a", "T", 0, `{}`))
		require.Equal(t, uint64(2), out[0].Version)
		require.Equal(t, uint64(2), out[0].Position, "a refused duplicate consumes no position")
	})

	t.Run("PartlyStoredCallIsDuplicate", func(t *testing.T) {
		s := newStore(t)
		stored := withID(ev("a", "T", 0, `1`))
		mustAppend(t, s, stored)
		_, err := s.Append(ctx, stored, withID(ev("a", "T", 0, `2`)))
		require.ErrorIs(t, err, eventstore.ErrDuplicateEvent)
		var de *eventstore.DuplicateEventError
		require.ErrorAs(t, err, &de)
		require.Equal(t, stored.ID, de.ID, "the error names the stored ID")
		_, err = s.Append(ctx, withID(ev("a", "T", 0, `0`)), stored)
		require.ErrorIs(t, err, eventstore.ErrDuplicateEvent)
		require.ErrorAs(t, err, &de)
		require.Equal(t, stored.ID, de.ID, "the error names the stored ID")
		require.Len(t, readAll(t, s), 1)
	})

	t.Run("EventsStoredApartAreNotARetry", func(t *testing.T) {
		// A retry repeats one call: its events are stored at consecutive
		// versions, in the order of the call.
		s := newStore(t)
		a, b := withID(ev("a", "T", 0, `1`)), withID(ev("a", "T", 0, `2`))
		mustAppend(t, s, a)
		mustAppend(t, s, ev("a", "T", 0, `"between"`))
		mustAppend(t, s, b)
		_, err := s.Append(ctx, a, b)
		require.ErrorIs(t, err, eventstore.ErrDuplicateEvent, "events stored by two calls")
		c, d := withID(ev("c", "T", 0, `1`)), withID(ev("c", "T", 0, `2`))
		mustAppend(t, s, c, d)
		_, err = s.Append(ctx, d, c)
		require.ErrorIs(t, err, eventstore.ErrDuplicateEvent, "the events of one call in another order")
		require.Len(t, readAll(t, s), 5)
	})

	t.Run("IDInAnotherFormRetries", func(t *testing.T) {
		s := newStore(t)
		e := ev("a", "T", 0, `{}`)
		e.ID = strings.ToUpper(uuid.NewString())
		first := mustAppend(t, s, e)
		requireSameEvents(t, first, mustAppend(t, s, e))
		e.ID = first[0].ID // the canonical form of the same ID
		requireSameEvents(t, first, mustAppend(t, s, e))
		require.Len(t, readAll(t, s), 1)
	})

	t.Run("NormalizedInputRetries", func(t *testing.T) {
		// Empty metadata means no metadata, and a timestamp is kept in UTC
		// to the microsecond: a retry of such input is still a retry.
		s := newStore(t)
		e := withID(ev("a", "T", 0, `{}`))
		e.Metadata = map[string]string{}
		e.Timestamp = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("JST", 9*3600))
		first := mustAppend(t, s, e)
		requireSameEvents(t, first, mustAppend(t, s, e))
		require.Len(t, readAll(t, s), 1)
	})

	t.Run("RetryResultSharesNothingWithTheStore", func(t *testing.T) {
		s := newStore(t)
		e := withID(ev("a", "T", 1, `{"n":1}`))
		e.Metadata = map[string]string{"k": "v"}
		mustAppend(t, s, e)
		again := mustAppend(t, s, e)
		again[0].Payload[1] = 'X'
		again[0].Metadata["k"] = "changed"
		got := readAll(t, s)
		require.Equal(t, `{"n":1}`, string(got[0].Payload))
		require.Equal(t, map[string]string{"k": "v"}, got[0].Metadata)
	})
}

func testPositions(t *testing.T, newStore NewStore) {
	ctx := context.Background()

	t.Run("GaplessAcrossAggregates", func(t *testing.T) {
		s := newStore(t)
		mustAppend(t, s, ev("a", "T", 0, `1`), ev("a", "T", 0, `2`))
		_, err := s.Append(ctx, ev("b", "T", 5, `{}`)) // fails, uses no position
		require.Error(t, err)
		mustAppend(t, s, ev("b", "T", 0, `3`))
		mustAppend(t, s, ev("a", "T", 0, `4`), ev("a", "T", 0, `5`), ev("a", "T", 0, `6`))
		got := readAll(t, s)
		require.Equal(t, seq(1, 6), positions(got))
		for i, e := range got {
			require.Equal(t, fmt.Sprint(i+1), string(e.Payload))
		}
	})
}

func testPayload(t *testing.T, newStore NewStore) {
	payloads := []string{
		`{"b": 1,   "a": [1, 2 ,3]}`,
		"{\n\t\"nested\": {\"z\": null, \"a\": true}\n}\n",
		`{"big":12345678901234567890123456789,"float":1.0e+10,"neg":-0.0}`,
		`{"text":"caf\u00e9 \"quoted\" ☕ 日本語","esc":"\u2028"}`,
		`"just a string"`,
		`[]`,
		`null`,
		` 42 `,
	}
	s := newStore(t)
	var in []eventstore.Event
	for _, p := range payloads {
		in = append(in, ev("p", "T", 0, p))
	}
	out := mustAppend(t, s, in...)
	got := collect(t, s.ReadAggregate(context.Background(), "p", 0))
	for i, p := range payloads {
		require.Equal(t, p, string(out[i].Payload), "Append result %d", i)
		require.Equal(t, p, string(got[i].Payload), "read %d", i)
	}
}

// testMetadata: metadata values read back byte for byte, whatever they
// look like; in particular values that are UUIDs in text form, which a
// backend may store in a compact form, and values that nearly are.
func testMetadata(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	values := []string{
		"0190a7e2-3c4d-7e8f-9a0b-1c2d3e4f5a6b", // UUIDv7, canonical
		uuid.NewString(),                       // UUIDv4, canonical
		"00000000-0000-0000-0000-000000000000",
		"ffffffff-ffff-ffff-ffff-ffffffffffff",
		"0190A7E2-3C4D-7E8F-9A0B-1C2D3E4F5A6B", // upper case
		"0190a7e2-3c4d-7e8f-9a0b-1C2d3e4f5a6b", // one upper-case digit
		"{0190a7e2-3c4d-7e8f-9a0b-1c2d3e4f5a6b}",
		"urn:uuid:0190a7e2-3c4d-7e8f-9a0b-1c2d3e4f5a6b",
		"0190a7e23c4d7e8f9a0b1c2d3e4f5a6b",
		"0190a7e2-3c4d-7e8f-9a0b-1c2d3e4f5a6g",  // not hex
		"0190a7e2-3c4d-7e8f-9a0b-1c2d3e4f5a6",   // too short
		"0190a7e2-3c4d-7e8f-9a0b-1c2d3e4f5a6b ", // trailing space
		"0190a7e2x3c4d-7e8f-9a0b-1c2d3e4f5a6b",  // no dash
		"0190a7e-23c4d-7e8f-9a0b-1c2d3e4f5a6b",  // a dash moved
		"------------------------------------",
		"", "café ☕", "user-00042",
	}
	s := newStore(t)
	var in []eventstore.Event
	for i, v := range values {
		e := ev("m", "T", 0, `{}`)
		e.ID = uuid.NewString()
		e.Metadata = map[string]string{"value": v, "correlation_id": values[0], "n": fmt.Sprint(i)}
		in = append(in, e)
	}
	// One call with metadata shared by its events, one event per call after.
	shared := map[string]string{"correlation_id": values[1], "causation_id": values[4]}
	in[0].Metadata, in[1].Metadata = shared, shared
	out := mustAppend(t, s, in[:2]...)
	for _, e := range in[2:] {
		out = append(out, mustAppend(t, s, e)...)
	}
	for i := range in {
		require.Equal(t, in[i].Metadata, out[i].Metadata, "Append result %d", i)
	}
	requireSameEvents(t, out, collect(t, s.ReadAggregate(ctx, "m", 0)))
	requireSameEvents(t, out, readAll(t, s))
	requireSameEvents(t, out, collect(t, s.Read(ctx, eventstore.Filter{Types: []string{"T"}}, 0)))
	// A retry returns the stored events, read back one by one.
	requireSameEvents(t, out[2:3], mustAppend(t, s, in[2]))
	requireSameEvents(t, out[:2], mustAppend(t, s, in[:2]...))
}

func testTime(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	s := newStore(t)
	tokyo := time.FixedZone("JST", 9*3600)
	stamps := []time.Time{
		time.Date(2025, 3, 4, 5, 6, 7, 123456789, tokyo), // nanoseconds are truncated
		time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Now(), // has a monotonic clock reading
	}
	var in []eventstore.Event
	for _, ts := range stamps {
		e := ev("t", "T", 0, `{}`)
		e.Timestamp = ts
		in = append(in, e)
	}
	out := mustAppend(t, s, in...)
	for i, ts := range stamps {
		want := ts.UTC().Truncate(time.Microsecond)
		require.True(t, want.Equal(out[i].Timestamp), "Append result %d: want %v, got %v", i, want, out[i].Timestamp)
		require.Equal(t, time.UTC, out[i].Timestamp.Location())
	}
	requireSameEvents(t, out, collect(t, s.ReadAggregate(ctx, "t", 0)))
	requireSameEvents(t, out, readAll(t, s))
}

func testRead(t *testing.T, newStore NewStore) {
	ctx := context.Background()

	t.Run("AggregateInVersionOrderAfterVersion", func(t *testing.T) {
		s := newStore(t)
		for i := 0; i < 5; i++ {
			mustAppend(t, s, ev("a", "T", 0, fmt.Sprint(i)))
			mustAppend(t, s, ev("b", "T", 0, fmt.Sprint(i)))
		}
		got := collect(t, s.ReadAggregate(ctx, "a", 0))
		require.Equal(t, seq(1, 5), versions(got))
		got = collect(t, s.ReadAggregate(ctx, "a", 3))
		require.Equal(t, []uint64{4, 5}, versions(got))
		require.Empty(t, collect(t, s.ReadAggregate(ctx, "a", 5)))
		require.Empty(t, collect(t, s.ReadAggregate(ctx, "a", 1000)))
		require.Empty(t, collect(t, s.ReadAggregate(ctx, "nobody", 0)))
		events, err := eventstore.Events(ctx, s, "b")
		require.NoError(t, err)
		require.Len(t, events, 5)
		events, err = eventstore.EventsSince(ctx, s, "b", 4)
		require.NoError(t, err)
		require.Equal(t, []uint64{5}, versions(events))
	})

	t.Run("NamesNoStoreAcceptsReadAsEmpty", func(t *testing.T) {
		// No event can have such an aggregate ID or type, so reads find
		// nothing, on every backend, rather than failing.
		s := newStore(t)
		mustAppend(t, s, ev("a", "T", 0, `{}`))
		for _, name := range []string{"", "a\x00", "\xff", strings.Repeat("a", eventstore.MaxNameLength+1)} {
			require.Empty(t, collect(t, s.ReadAggregate(ctx, name, 0)), "ReadAggregate %q", name)
			require.Empty(t, collect(t, s.ReadType(ctx, name, 0)), "ReadType %q", name)
			if name != "" { // "" means every aggregate in ReadTime
				require.Empty(t, collect(t, s.ReadTime(ctx, name, time.Time{}, time.Time{})), "ReadTime %q", name)
			}
			v, err := s.Version(ctx, name)
			require.NoError(t, err, "Version %q", name)
			require.Zero(t, v, "Version %q", name)
		}
	})

	t.Run("PrefixAggregatesStaySeparate", func(t *testing.T) {
		s := newStore(t)
		ids := []string{"a", "ab", "a/b", "a b", "a\x01", "b", "aa", "a\xc3\xa9"}
		for i := 0; i < 3; i++ {
			for _, id := range ids {
				payload, err := json.Marshal(id)
				require.NoError(t, err)
				mustAppend(t, s, ev(id, "T", 0, string(payload)))
			}
		}
		for _, id := range ids {
			got := collect(t, s.ReadAggregate(ctx, id, 0))
			require.Len(t, got, 3, "aggregate %q", id)
			for _, e := range got {
				require.Equal(t, id, e.AggregateID)
			}
			require.Len(t, collect(t, s.ReadTime(ctx, id, time.Time{}, time.Time{})), 3, "ReadTime %q", id)
			v, err := s.Version(ctx, id)
			require.NoError(t, err)
			require.Equal(t, uint64(3), v, "aggregate %q", id)
		}
	})

	t.Run("AllAfterPosition", func(t *testing.T) {
		s := newStore(t)
		for i := 0; i < 10; i++ {
			mustAppend(t, s, ev(fmt.Sprint("agg-", i%3), "T", 0, fmt.Sprint(i)))
		}
		require.Equal(t, seq(1, 10), positions(readAll(t, s)))
		require.Equal(t, seq(8, 10), positions(collect(t, s.ReadAll(ctx, 7))))
		require.Empty(t, collect(t, s.ReadAll(ctx, 10)))
		require.Empty(t, collect(t, s.ReadAll(ctx, 1<<62)))
	})

	t.Run("TypeAfterPosition", func(t *testing.T) {
		s := newStore(t)
		types := []string{"User", "UserCreated", "User", "UserCreated", "Use", "User"}
		for i, typ := range types {
			mustAppend(t, s, ev("a", typ, 0, fmt.Sprint(i)))
		}
		got := collect(t, s.ReadType(ctx, "User", 0))
		require.Equal(t, []uint64{1, 3, 6}, positions(got))
		for _, e := range got {
			require.Equal(t, "User", e.Type)
		}
		require.Equal(t, []uint64{6}, positions(collect(t, s.ReadType(ctx, "User", 3))))
		byType, err := eventstore.EventsByType(ctx, s, "UserCreated")
		require.NoError(t, err)
		require.Equal(t, []uint64{2, 4}, positions(byType))
		require.Empty(t, collect(t, s.ReadType(ctx, "Nothing", 0)))
		require.Empty(t, collect(t, s.ReadType(ctx, "User", math.MaxUint64)))
		require.Empty(t, collect(t, s.ReadAll(ctx, math.MaxUint64)))
		require.Empty(t, collect(t, s.ReadAggregate(ctx, "a", math.MaxUint64)))
	})

	t.Run("ReadsEqualAppendResults", func(t *testing.T) {
		s := newStore(t)
		base := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
		var all []eventstore.Event
		for i := 0; i < 5; i++ {
			e := ev("x", fmt.Sprint("T", i%2), 0, fmt.Sprintf(`{"i":%d}`, i))
			if i < 4 {
				e.Metadata = map[string]string{"i": fmt.Sprint(i)}
			}
			if i%2 == 0 {
				e.Timestamp = base.Add(time.Duration(i) * time.Second)
			} else {
				e.Timestamp = base.Add(time.Duration(i) * time.Second).In(time.FixedZone("X", -7*3600))
			}
			all = append(all, mustAppend(t, s, e)...)
		}
		requireSameEvents(t, all, readAll(t, s))
		requireSameEvents(t, all, collect(t, s.ReadAggregate(ctx, "x", 0)))
		requireSameEvents(t, []eventstore.Event{all[1], all[3]}, collect(t, s.ReadType(ctx, "T1", 0)))
		requireSameEvents(t, all, collect(t, s.ReadTime(ctx, "x", time.Time{}, time.Time{})))
		requireSameEvents(t, all, collect(t, s.ReadTime(ctx, "", base, base.Add(time.Minute))))
	})

	t.Run("RunsOfEqualMetadataReadBack", func(t *testing.T) {
		// Backends may share one map among read events with equal
		// metadata (see eventstore.Event); each event still reads back
		// its own, across runs, gaps and page boundaries.
		s := newStore(t)
		a := map[string]string{"correlation_id": "c-1", "user_id": "u"}
		b := map[string]string{"correlation_id": "c-2", "user_id": "u"}
		var all []eventstore.Event
		for call, pattern := range [][]map[string]string{
			{a, a, a, b, nil, a, a},
			{a, a},
			{b},
			{{"correlation_id": "c-1"}, a, {"user_id": "u", "correlation_id": "c-1"}},
		} {
			var events []eventstore.Event
			for i, md := range pattern {
				e := ev(fmt.Sprint("m", call%2), fmt.Sprint("T", i%2), 0, fmt.Sprint(i))
				e.Metadata = md
				events = append(events, e)
			}
			all = append(all, mustAppend(t, s, events...)...)
		}
		var agg0, ofT0 []eventstore.Event
		for _, e := range all {
			if e.AggregateID == "m0" {
				agg0 = append(agg0, e)
			}
			if e.Type == "T0" {
				ofT0 = append(ofT0, e)
			}
		}
		requireSameEvents(t, all, readAll(t, s))
		requireSameEvents(t, all[2:], collect(t, s.ReadAll(ctx, all[1].Position)))
		requireSameEvents(t, agg0, collect(t, s.ReadAggregate(ctx, "m0", 0)))
		requireSameEvents(t, ofT0, collect(t, s.ReadType(ctx, "T0", 0)))
		requireSameEvents(t, agg0, collect(t, s.ReadTime(ctx, "m0", time.Time{}, time.Time{})))
	})

	t.Run("ReadsShareNothingWithTheStore", func(t *testing.T) {
		s := newStore(t)
		e := ev("x", "T", 0, `{"n":1}`)
		e.Metadata = map[string]string{"k": "v"}
		mustAppend(t, s, e)
		for name, read := range map[string]func() []eventstore.Event{
			"ReadAll":       func() []eventstore.Event { return readAll(t, s) },
			"ReadAggregate": func() []eventstore.Event { return collect(t, s.ReadAggregate(ctx, "x", 0)) },
			"ReadType":      func() []eventstore.Event { return collect(t, s.ReadType(ctx, "T", 0)) },
			"ReadTime":      func() []eventstore.Event { return collect(t, s.ReadTime(ctx, "", time.Time{}, time.Time{})) },
		} {
			got := read()
			require.Len(t, got, 1, name)
			got[0].Payload[1] = 'X'
			got[0].Metadata["k"] = "changed"
			got[0].Metadata["new"] = "added"
			got = read()
			require.Equal(t, `{"n":1}`, string(got[0].Payload), "%s: the caller changed a stored payload", name)
			require.Equal(t, map[string]string{"k": "v"}, got[0].Metadata, "%s: the caller changed stored metadata", name)
		}
	})

	t.Run("LongAggregatePagesInOrder", func(t *testing.T) {
		s := newStore(t)
		const n = 2500
		batch := make([]eventstore.Event, 0, 100)
		for i := 1; i <= n; i++ {
			batch = append(batch, ev("long", "T", 0, fmt.Sprint(i)))
			if len(batch) == cap(batch) {
				mustAppend(t, s, batch...)
				mustAppend(t, s, ev("other", "T", 0, `0`))
				batch = batch[:0]
			}
		}
		got := collect(t, s.ReadAggregate(ctx, "long", 0))
		require.Equal(t, seq(1, n), versions(got))
		got = collect(t, s.ReadAggregate(ctx, "long", 1234))
		require.Equal(t, seq(1235, n), versions(got))
		require.Len(t, collect(t, s.ReadType(ctx, "T", 1000)), n+n/100-1000)
	})
}

func testReadTime(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(agg string, minutes int, payload string) eventstore.Event {
		e := ev(agg, "T", 0, payload)
		e.Timestamp = base.Add(time.Duration(minutes) * time.Minute)
		return e
	}
	s := newStore(t)
	// Positions and timestamps disagree on purpose: time never orders the log.
	mustAppend(t, s, at("a", 30, `"a30"`))
	mustAppend(t, s, at("b", 10, `"b10"`))
	mustAppend(t, s, at("a", 10, `"a10"`), at("a", 20, `"a20"`))
	mustAppend(t, s, at("b", 20, `"b20"`))
	mustAppend(t, s, at("ab", 20, `"ab20"`))
	mustAppend(t, s, at("a", 40, `"a40"`))

	payloads := func(events []eventstore.Event) []string {
		var out []string
		for _, e := range events {
			out = append(out, string(e.Payload))
		}
		return out
	}
	read := func(agg string, from, to int) []string {
		var end time.Time
		if to >= 0 {
			end = base.Add(time.Duration(to) * time.Minute)
		}
		return payloads(collect(t, s.ReadTime(ctx, agg, base.Add(time.Duration(from)*time.Minute), end)))
	}

	t.Run("OneAggregateHalfOpen", func(t *testing.T) {
		require.Equal(t, []string{`"a10"`, `"a20"`, `"a30"`}, read("a", 10, 40))
		require.Equal(t, []string{`"a20"`, `"a30"`}, read("a", 11, 31))
		got, err := eventstore.EventsInRange(ctx, s, "a", base, base.Add(25*time.Minute))
		require.NoError(t, err)
		require.Equal(t, []string{`"a10"`, `"a20"`}, payloads(got))
	})

	t.Run("AllAggregatesTiesByPosition", func(t *testing.T) {
		require.Equal(t, []string{`"b10"`, `"a10"`, `"a20"`, `"b20"`, `"ab20"`, `"a30"`}, read("", 0, 40))
	})

	t.Run("ZeroEndIsUnbounded", func(t *testing.T) {
		require.Equal(t, []string{`"a30"`, `"a40"`}, read("a", 25, -1))
		require.Len(t, read("", -1000000, -1), 7)
	})

	t.Run("EmptyRanges", func(t *testing.T) {
		require.Empty(t, read("a", 20, 20))
		require.Empty(t, read("a", 30, 10))
		require.Empty(t, read("a", 41, -1))
		require.Empty(t, read("nobody", 0, -1))
	})

	t.Run("BoundsInOtherZones", func(t *testing.T) {
		zone := time.FixedZone("X", -5*3600)
		got := collect(t, s.ReadTime(ctx, "b", base.Add(20*time.Minute).In(zone), base.Add(21*time.Minute).In(zone)))
		require.Equal(t, []string{`"b20"`}, payloads(got))
	})

	t.Run("BoundsAtMicrosecondPrecision", func(t *testing.T) {
		// Bounds are truncated to microseconds like stored timestamps, so
		// a range starting at the timestamp an event was appended with
		// finds it, and one ending there does not.
		s := newStore(t)
		ts := base.Add(123456789 * time.Nanosecond)
		e := ev("fine", "T", 0, `{}`)
		e.Timestamp = ts
		mustAppend(t, s, e)
		require.Len(t, collect(t, s.ReadTime(ctx, "fine", ts, ts.Add(time.Microsecond))), 1)
		require.Len(t, collect(t, s.ReadTime(ctx, "", ts, time.Time{})), 1)
		require.Empty(t, collect(t, s.ReadTime(ctx, "fine", ts.Add(-time.Second), ts)))
		require.Empty(t, collect(t, s.ReadTime(ctx, "fine", ts.Add(time.Microsecond), time.Time{})))
	})

	t.Run("BoundsNearTheYearLimitsTruncateFirst", func(t *testing.T) {
		// The microsecond rule holds within a microsecond of the first and
		// the last timestamp a store holds too: a bound is truncated
		// before anything else, and a non-zero end that truncates to the
		// zero time is a bound, not "no bound".
		s := newStore(t)
		first := time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC) // the zero time would mean "now"
		last := time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
		var in []eventstore.Event
		for _, ts := range []time.Time{last, first} {
			e := ev("edge", "T", 0, `{}`)
			e.Timestamp = ts
			in = append(in, e)
		}
		out := mustAppend(t, s, in...)
		half := 500 * time.Nanosecond
		for _, agg := range []string{"edge", ""} {
			read := func(start, end time.Time) []eventstore.Event { return collect(t, s.ReadTime(ctx, agg, start, end)) }
			requireSameEvents(t, out[:1], read(last.Add(half), time.Time{}))      // start truncates to last
			requireSameEvents(t, out[1:], read(first, last.Add(half)))            // end truncates to last
			requireSameEvents(t, out[1:], read(first.Add(half), first.Add(1000))) // start truncates to first
			require.Empty(t, read(time.Time{}, first.Add(half)))                  // end truncates to first
			require.Empty(t, read(time.Time{}, time.Time{}.Add(half)))            // end truncates to the zero time
		}
	})

	t.Run("ManyEqualTimestampsPage", func(t *testing.T) {
		s := newStore(t)
		var batch []eventstore.Event
		for i := 0; i < 700; i++ {
			e := ev(fmt.Sprint("agg", i/50%2), "T", 0, fmt.Sprint(i))
			e.Timestamp = base
			batch = append(batch, e)
			if len(batch) == 50 || i == 699 {
				mustAppend(t, s, batch...)
				batch = nil
			}
		}
		got := collect(t, s.ReadTime(ctx, "", base, base.Add(time.Microsecond)))
		require.Equal(t, seq(1, 700), positions(got))
	})
}

func testIterators(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	fill := func(t *testing.T, s eventstore.Store, n int) {
		var batch []eventstore.Event
		for i := 0; i < n; i++ {
			batch = append(batch, ev("big", "T", 0, fmt.Sprint(i)))
			if len(batch) == 100 {
				mustAppend(t, s, batch...)
				batch = nil
			}
		}
		if len(batch) > 0 {
			mustAppend(t, s, batch...)
		}
	}
	withTimeout := func(t *testing.T, what string, f func()) {
		t.Helper()
		done := make(chan struct{})
		go func() { defer close(done); f() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: still blocked after 30s (deadlock?)", what)
		}
	}
	reads := func(s eventstore.Store) map[string]func() func(func(eventstore.Event, error) bool) {
		return map[string]func() func(func(eventstore.Event, error) bool){
			"ReadAggregate": func() func(func(eventstore.Event, error) bool) { return s.ReadAggregate(ctx, "big", 0) },
			"ReadAll":       func() func(func(eventstore.Event, error) bool) { return s.ReadAll(ctx, 0) },
			"ReadType":      func() func(func(eventstore.Event, error) bool) { return s.ReadType(ctx, "T", 0) },
			"ReadTime": func() func(func(eventstore.Event, error) bool) {
				return s.ReadTime(ctx, "", time.Time{}, time.Time{})
			},
		}
	}

	t.Run("BreakThenAppend", func(t *testing.T) {
		s := newStore(t)
		fill(t, s, 3000)
		for name, read := range reads(s) {
			withTimeout(t, name, func() {
				n := 0
				for _, err := range read() {
					require.NoError(t, err)
					if n++; n == 10 {
						break
					}
				}
				mustAppend(t, s, ev("other", "U", 0, `{}`))
			})
		}
	})

	t.Run("AppendInsideLoop", func(t *testing.T) {
		s := newStore(t)
		fill(t, s, 1200)
		for name, read := range reads(s) {
			inner := "inner-" + name
			withTimeout(t, "append inside "+name, func() {
				n := 0
				for e, err := range read() {
					require.NoError(t, err)
					if e.AggregateID == "big" && n%300 == 0 {
						mustAppend(t, s, ev(inner, "U", 0, `{}`))
					}
					n++
				}
				// The read may or may not see what it appended, but it ends.
				require.GreaterOrEqual(t, n, 1200)
			})
			v, err := s.Version(ctx, inner)
			require.NoError(t, err)
			require.Equal(t, uint64(4), v, name)
		}
	})

	t.Run("ContextCancelledMidRead", func(t *testing.T) {
		s := newStore(t)
		fill(t, s, 1500)
		for name := range reads(s) {
			cctx, cancel := context.WithCancel(ctx)
			var seq func(func(eventstore.Event, error) bool)
			switch name {
			case "ReadAggregate":
				seq = s.ReadAggregate(cctx, "big", 0)
			case "ReadAll":
				seq = s.ReadAll(cctx, 0)
			case "ReadType":
				seq = s.ReadType(cctx, "T", 0)
			case "ReadTime":
				seq = s.ReadTime(cctx, "", time.Time{}, time.Time{})
			}
			n, errs := 0, 0
			withTimeout(t, name, func() {
				for _, err := range seq {
					if err != nil {
						require.ErrorIs(t, err, context.Canceled, name)
						errs++
						continue // a well-behaved iterator stops after its error
					}
					if n++; n == 5 {
						cancel()
					}
				}
			})
			cancel()
			require.Equal(t, 1, errs, "%s yields exactly one error", name)
			require.Equal(t, 5, n, "%s yielded events after ctx was cancelled: it checks ctx between items", name)
		}
	})

	t.Run("ContextCancelledBeforeRead", func(t *testing.T) {
		s := newStore(t)
		fill(t, s, 10)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := eventstore.Collect(s.ReadAll(cctx, 0))
		require.ErrorIs(t, err, context.Canceled)
		_, err = s.Version(cctx, "big")
		require.ErrorIs(t, err, context.Canceled)
	})
}

func testConcurrency(t *testing.T, newStore NewStore) {
	ctx := context.Background()

	t.Run("RaceForNextVersion", func(t *testing.T) {
		s := newStore(t)
		const writers, target = 16, 200
		var (
			mu      sync.Mutex
			winners = map[uint64]string{} // version -> payload of the winning append
		)
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for attempt := 0; ; attempt++ {
					// Each conflict means another writer won a version, so a
					// writer needs at most about 2*target attempts.
					if attempt > 10*target {
						t.Errorf("writer %d: no progress after %d attempts: Version or the version check is wrong", w, attempt)
						return
					}
					v, err := s.Version(ctx, "contended")
					if err != nil {
						t.Error(err)
						return
					}
					if v >= target {
						return
					}
					payload := fmt.Sprintf(`{"writer":%d,"attempt":%d}`, w, attempt)
					out, err := s.Append(ctx, ev("contended", "T", v+1, payload))
					if errors.Is(err, eventstore.ErrConflict) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if prev, dup := winners[out[0].Version]; dup {
						t.Errorf("version %d won twice: %s and %s", out[0].Version, prev, payload)
					}
					winners[out[0].Version] = payload
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		got := collect(t, s.ReadAggregate(ctx, "contended", 0))
		require.Equal(t, seq(1, target), versions(got))
		require.Equal(t, seq(1, target), positions(got))
		require.Len(t, winners, target)
		for _, e := range got {
			require.Equal(t, winners[e.Version], string(e.Payload), "version %d", e.Version)
		}
	})

	t.Run("ManyAggregates", func(t *testing.T) {
		s := newStore(t)
		const writers, calls = 16, 30
		var wg sync.WaitGroup
		var acked atomic.Int64
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				agg := fmt.Sprint("agg-", w)
				for c := 0; c < calls; c++ {
					n := 1 + c%3
					batch := make([]eventstore.Event, n)
					for i := range batch {
						batch[i] = ev(agg, "T", 0, fmt.Sprint(c))
					}
					out, err := s.Append(ctx, batch...)
					if err != nil {
						t.Error(err)
						return
					}
					for i := 1; i < len(out); i++ {
						if out[i].Position != out[0].Position+uint64(i) {
							t.Errorf("batch positions not contiguous: %v", positions(out))
						}
					}
					acked.Add(int64(n))
				}
			}()
		}
		wg.Wait()
		all := readAll(t, s)
		require.Equal(t, seq(1, uint64(acked.Load())), positions(all))
		for w := 0; w < writers; w++ {
			got := collect(t, s.ReadAggregate(ctx, fmt.Sprint("agg-", w), 0))
			require.Equal(t, seq(1, uint64(len(got))), versions(got))
			require.Len(t, got, calls*2)
		}
	})

	t.Run("FollowersSeeEveryEventInOrder", func(t *testing.T) {
		s := newStore(t)
		const writers, perWriter = 8, 40
		done := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perWriter; i++ {
					if _, err := s.Append(ctx, ev(fmt.Sprint("w", w), "T", 0, `{}`), ev(fmt.Sprint("w", w), "T", 0, `{}`)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		go func() { wg.Wait(); close(done) }()
		defer wg.Wait() // a failed check below must not leave writers running after the test

		var seen []uint64
		var last uint64
		for finished := false; !finished; {
			select {
			case <-done:
				finished = true
			default:
			}
			for e, err := range s.ReadAll(ctx, last) {
				require.NoError(t, err)
				require.Equal(t, last+1, e.Position, "follower skipped or repeated a position")
				seen = append(seen, e.Position)
				last = e.Position
			}
		}
		require.Equal(t, seq(1, writers*perWriter*2), seen)
	})
}

func testInvalidInput(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	good := func() eventstore.Event { return ev("agg", "T", 0, `{}`) }
	long := strings.Repeat("x", eventstore.MaxNameLength+1)
	bigPayload := `"` + strings.Repeat("x", eventstore.DefaultMaxPayloadSize-1) + `"`
	with := func(f func(*eventstore.Event)) eventstore.Event {
		e := good()
		f(&e)
		return e
	}
	cases := []struct {
		name   string
		events []eventstore.Event
	}{
		{"EmptyAggregateID", []eventstore.Event{with(func(e *eventstore.Event) { e.AggregateID = "" })}},
		{"LongAggregateID", []eventstore.Event{with(func(e *eventstore.Event) { e.AggregateID = long })}},
		{"AggregateIDNotUTF8", []eventstore.Event{with(func(e *eventstore.Event) { e.AggregateID = "a\xff" })}},
		{"AggregateIDWithNUL", []eventstore.Event{with(func(e *eventstore.Event) { e.AggregateID = "a\x00b" })}},
		{"EmptyType", []eventstore.Event{with(func(e *eventstore.Event) { e.Type = "" })}},
		{"LongType", []eventstore.Event{with(func(e *eventstore.Event) { e.Type = long })}},
		{"TypeNotUTF8", []eventstore.Event{with(func(e *eventstore.Event) { e.Type = "\xc3" })}},
		{"TypeWithNUL", []eventstore.Event{with(func(e *eventstore.Event) { e.Type = "T\x00" })}},
		{"IDNotUUID", []eventstore.Event{with(func(e *eventstore.Event) { e.ID = "not-a-uuid" })}},
		{"PayloadEmpty", []eventstore.Event{with(func(e *eventstore.Event) { e.Payload = nil })}},
		{"PayloadNotJSON", []eventstore.Event{with(func(e *eventstore.Event) { e.Payload = json.RawMessage(`{"a":`) })}},
		{"PayloadTwoDocuments", []eventstore.Event{with(func(e *eventstore.Event) { e.Payload = json.RawMessage(`{} {}`) })}},
		{"PayloadNotUTF8", []eventstore.Event{with(func(e *eventstore.Event) { e.Payload = json.RawMessage("\"\xff\"") })}},
		{"PayloadTooLarge", []eventstore.Event{with(func(e *eventstore.Event) { e.Payload = json.RawMessage(bigPayload) })}},
		{"MetadataEmptyKey", []eventstore.Event{with(func(e *eventstore.Event) { e.Metadata = map[string]string{"": "v"} })}},
		{"MetadataKeyWithNUL", []eventstore.Event{with(func(e *eventstore.Event) { e.Metadata = map[string]string{"k\x00": "v"} })}},
		{"MetadataValueWithNUL", []eventstore.Event{with(func(e *eventstore.Event) { e.Metadata = map[string]string{"k": "\x00"} })}},
		{"MetadataTooLarge", []eventstore.Event{with(func(e *eventstore.Event) {
			e.Metadata = map[string]string{"a": strings.Repeat("x", eventstore.MaxMetadataSize/2), "b": strings.Repeat("y", eventstore.MaxMetadataSize/2)}
		})}},
		{"MetadataValueNotUTF8", []eventstore.Event{with(func(e *eventstore.Event) { e.Metadata = map[string]string{"k": "\xfe"} })}},
		{"TimestampBeyond9999", []eventstore.Event{with(func(e *eventstore.Event) { e.Timestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) })}},
		{"TimestampBeforeYear1", []eventstore.Event{with(func(e *eventstore.Event) { e.Timestamp = time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC) })}},
		{"SeveralAggregates", []eventstore.Event{good(), with(func(e *eventstore.Event) { e.AggregateID = "other" })}},
		{"VersionsMixZeroAndNonZero", []eventstore.Event{with(func(e *eventstore.Event) { e.Version = 1 }), good()}},
		{"VersionsMixNonZeroAndZero", []eventstore.Event{good(), with(func(e *eventstore.Event) { e.Version = 2 })}},
		{"VersionsNotConsecutive", []eventstore.Event{with(func(e *eventstore.Event) { e.Version = 1 }), with(func(e *eventstore.Event) { e.Version = 3 })}},
		{"VersionsRepeated", []eventstore.Event{with(func(e *eventstore.Event) { e.Version = 1 }), with(func(e *eventstore.Event) { e.Version = 1 })}},
		{"SameIDTwice", func() []eventstore.Event {
			id := uuid.NewString()
			a, b := good(), good()
			a.ID, b.ID = id, id
			return []eventstore.Event{a, b}
		}()},
		{"BadEventAfterGoodOnes", []eventstore.Event{good(), good(), with(func(e *eventstore.Event) { e.Payload = json.RawMessage(`nope`) })}},
	}
	s := newStore(t)
	mustAppend(t, s, ev("agg", "T", 0, `"before"`))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := s.Append(ctx, tc.events...)
			require.ErrorIs(t, err, eventstore.ErrInvalidEvent)
			var ie *eventstore.InvalidEventError
			require.ErrorAs(t, err, &ie)
			require.Nil(t, out)
			require.Len(t, readAll(t, s), 1, "invalid input wrote something")
			v, err := s.Version(ctx, "agg")
			require.NoError(t, err)
			require.Equal(t, uint64(1), v)
		})
	}
	// The store still works, and positions have no gap.
	out := mustAppend(t, s, good())
	require.Equal(t, uint64(2), out[0].Position)
}

func testClose(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	s := newStore(t)
	mustAppend(t, s, ev("a", "T", 0, `{}`))
	iterator := s.ReadAll(ctx, 0) // made before Close, run after
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "closing twice")

	_, err := s.Append(ctx, ev("a", "T", 0, `{}`))
	require.ErrorIs(t, err, eventstore.ErrClosed)
	_, err = s.Append(ctx)
	require.ErrorIs(t, err, eventstore.ErrClosed, "Append of no events after Close")
	_, err = s.Version(ctx, "a")
	require.ErrorIs(t, err, eventstore.ErrClosed)
	for name, seq := range map[string]func(func(eventstore.Event, error) bool){
		"ReadAggregate": s.ReadAggregate(ctx, "a", 0),
		"ReadAll":       iterator,
		"ReadType":      s.ReadType(ctx, "T", 0),
		"ReadTime":      s.ReadTime(ctx, "", time.Time{}, time.Time{}),
	} {
		// Go on after the error, as a careless caller might: the read
		// yields its one error and stops.
		errs, events := 0, 0
		for _, err := range seq {
			if err != nil {
				require.ErrorIs(t, err, eventstore.ErrClosed, name)
				errs++
			} else {
				events++
			}
			if errs+events > 100 {
				break
			}
		}
		require.Equal(t, 1, errs, "%s yields exactly one error", name)
		require.Zero(t, events, "%s yields events after Close", name)
	}
}
