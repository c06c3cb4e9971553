package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
)

// RunImport runs the conformance tests of eventstore.Importer against
// stores made by newStore, one fresh store per subtest. Every store newStore
// returns must implement eventstore.Importer. It is an entry of its own,
// beside Run, because Import is an optional interface: a backend without
// it calls Run alone.
func RunImport(t *testing.T, newStore NewStore) {
	t.Helper()
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, NewStore)
	}{
		{"KeepsEverything", testImportKeeps},
		{"KeepsTags", testImportTags},
		{"Interleaved", testImportInterleaved},
		{"SkipOnRerun", testImportRerun},
		{"PartialRerun", testImportPartialRerun},
		{"DuplicateID", testImportDuplicate},
		{"Conflict", testImportConflict},
		{"InvalidInput", testImportInvalid},
		{"Positions", testImportPositions},
		{"ThenAppend", testImportThenAppend},
		{"Concurrent", testImportConcurrent},
		{"SubscribeAndHead", testImportSubscribe},
		{"Empty", testImportEmpty},
		{"Close", testImportClose},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore) })
	}
}

func importer(t *testing.T, s eventstore.Store) eventstore.Importer {
	t.Helper()
	im, ok := s.(eventstore.Importer)
	require.True(t, ok, "%T does not implement eventstore.Importer", s)
	return im
}

// imported returns an event as another store would have it: ID, version
// and timestamp set (with nanoseconds, which stores drop).
func imported(agg, typ string, version uint64, payload string) eventstore.Event {
	e := ev(agg, typ, version, payload)
	e.ID = uuid.NewString()
	e.Timestamp = time.Date(2021, 3, 4, 5, 6, 7, 0, time.FixedZone("X", 3600)).
		Add(time.Duration(version)*time.Minute + 123456789*time.Nanosecond)
	e.Metadata = map[string]string{"origin": "device-17", "v": fmt.Sprint(version)}
	return e
}

// history returns n events of each of aggs, interleaved round robin.
func history(aggs []string, n int) []eventstore.Event {
	var out []eventstore.Event
	for v := 1; v <= n; v++ {
		for _, a := range aggs {
			out = append(out, imported(a, "Happened", uint64(v), fmt.Sprintf(`{ "agg" : %q, "v":%d }`, a, v)))
		}
	}
	return out
}

func mustImport(t *testing.T, s eventstore.Store, events []eventstore.Event) []eventstore.Event {
	t.Helper()
	out, err := importer(t, s).Import(context.Background(), events)
	require.NoError(t, err)
	return out
}

// asStored returns events as a store keeps them, at positions from first.
func asStored(events []eventstore.Event, first uint64) []eventstore.Event {
	out := make([]eventstore.Event, len(events))
	for i, e := range events {
		e.Timestamp = eventstore.NormalizeTime(e.Timestamp)
		e.Position = first + uint64(i)
		out[i] = e
	}
	return out
}

func testImportKeeps(t *testing.T, newStore NewStore) {
	s := newStore(t)
	in := history([]string{"a"}, 3)
	in[1].Metadata = nil
	in[2].Payload = json.RawMessage("[1,\n  2.50, \"\\u00e9\"]")
	snapshot := make([]eventstore.Event, len(in))
	copy(snapshot, in)
	out := mustImport(t, s, in)
	want := asStored(in, 1)
	requireSameEvents(t, want, out)
	requireSameEvents(t, want, readAll(t, s))
	requireSameEvents(t, want, collect(t, s.ReadAggregate(context.Background(), "a", 0)))
	require.Equal(t, snapshot, in, "Import changed the caller's events")
	v, err := s.Version(context.Background(), "a")
	require.NoError(t, err)
	require.Equal(t, uint64(3), v)

	// The returned events share nothing with the store.
	out[0].Payload[0] = 'X'
	out[0].Metadata["origin"] = "changed"
	got := readAll(t, s)
	require.Equal(t, string(in[0].Payload), string(got[0].Payload))
	require.Equal(t, "device-17", got[0].Metadata["origin"])

	// Uppercase IDs are kept in canonical form; Position is ignored.
	e := imported("b", "T", 1, `{}`)
	id := e.ID
	e.ID = strings.ToUpper(e.ID)
	e.Position = 99
	out = mustImport(t, s, []eventstore.Event{e})
	require.Equal(t, id, out[0].ID)
	require.Equal(t, uint64(4), out[0].Position)
}

func testImportInterleaved(t *testing.T, newStore NewStore) {
	s := newStore(t)
	aggs := []string{"order-1", "order-2", "user-1"}
	in := history(aggs, 5)
	out := mustImport(t, s, in)
	want := asStored(in, 1)
	requireSameEvents(t, want, out)
	requireSameEvents(t, want, readAll(t, s))
	for _, a := range aggs {
		got := collect(t, s.ReadAggregate(context.Background(), a, 0))
		require.Equal(t, []uint64{1, 2, 3, 4, 5}, versions(got), a)
		v, err := s.Version(context.Background(), a)
		require.NoError(t, err)
		require.Equal(t, uint64(5), v, a)
	}
	byType := collect(t, s.ReadType(context.Background(), "Happened", 0))
	require.Equal(t, seq(1, 15), positions(byType))
	byTime := collect(t, s.ReadTime(context.Background(), "order-2", time.Time{}, time.Time{}))
	require.Equal(t, []uint64{1, 2, 3, 4, 5}, versions(byTime))
}

func testImportRerun(t *testing.T, newStore NewStore) {
	s := newStore(t)
	in := history([]string{"a", "b"}, 4)
	mustImport(t, s, in)
	before := readAll(t, s)
	for range 2 {
		out := mustImport(t, s, in)
		require.Empty(t, out, "a rerun writes nothing and returns nothing")
		requireSameEvents(t, before, readAll(t, s))
	}
	// The same events with timestamps that normalize alike are the same
	// content.
	again := make([]eventstore.Event, len(in))
	copy(again, in)
	for i := range again {
		again[i].Timestamp = eventstore.NormalizeTime(again[i].Timestamp).In(time.Local)
		again[i].ID = strings.ToUpper(again[i].ID)
	}
	require.Empty(t, mustImport(t, s, again))
	requireSameEvents(t, before, readAll(t, s))
}

func testImportPartialRerun(t *testing.T, newStore NewStore) {
	s := newStore(t)
	in := history([]string{"a", "b", "c"}, 4) // 12 events
	first := mustImport(t, s, in[:5])         // a1 b1 c1 a2 b2
	requireSameEvents(t, asStored(in[:5], 1), first)

	// An Append to another aggregate in between takes position 6.
	other := mustAppend(t, s, ev("z", "T", 0, `{}`))
	require.Equal(t, uint64(6), other[0].Position)

	// The rerun of the whole import skips the stored prefix of each
	// aggregate and writes the rest.
	out := mustImport(t, s, in)
	requireSameEvents(t, asStored(in[5:], 7), out)
	all := readAll(t, s)
	require.Equal(t, seq(1, 13), positions(all))
	for _, a := range []string{"a", "b", "c"} {
		got := collect(t, s.ReadAggregate(context.Background(), a, 0))
		require.Equal(t, []uint64{1, 2, 3, 4}, versions(got), a)
	}
	require.Empty(t, mustImport(t, s, in))
}

func testImportDuplicate(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	s := newStore(t)
	in := history([]string{"a", "b"}, 2) // a1 b1 a2 b2
	mustImport(t, s, in)
	appended := mustAppend(t, s, ev("c", "T", 0, `{"n":1}`))
	before := readAll(t, s)

	for name, change := range map[string]func(e *eventstore.Event){
		"Payload": func(e *eventstore.Event) { e.Payload = json.RawMessage(`{"other":true}`) },
		"PayloadBytes": func(e *eventstore.Event) {
			e.Payload = json.RawMessage(strings.ReplaceAll(string(e.Payload), " ", ""))
		},
		"Type":       func(e *eventstore.Event) { e.Type = "Other" },
		"Metadata":   func(e *eventstore.Event) { e.Metadata = map[string]string{"origin": "device-18"} },
		"NoMetadata": func(e *eventstore.Event) { e.Metadata = nil },
		"Timestamp":  func(e *eventstore.Event) { e.Timestamp = e.Timestamp.Add(time.Microsecond) },
		"Aggregate":  func(e *eventstore.Event) { e.AggregateID = "d" },
		"AppendedID": func(e *eventstore.Event) { e.ID = appended[0].ID; e.AggregateID = "c"; e.Version = 1 },
		"OtherVersion": func(e *eventstore.Event) {
			e.ID = in[1].ID // b1's ID on b2
		},
	} {
		t.Run(name, func(t *testing.T) {
			call := []eventstore.Event{imported("new", "T", 1, `{}`), in[0], in[3]}
			changed := call[2]
			change(&changed)
			call[2] = changed
			_, err := importer(t, s).Import(ctx, call)
			require.ErrorIs(t, err, eventstore.ErrDuplicateEvent)
			var dup *eventstore.DuplicateEventError
			require.ErrorAs(t, err, &dup)
			require.Equal(t, changed.ID, dup.ID)
			requireSameEvents(t, before, readAll(t, s))
			v, err := s.Version(ctx, "new")
			require.NoError(t, err)
			require.Zero(t, v, "the new event of the refused call was written")
		})
	}
}

func testImportConflict(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	s := newStore(t)
	mustAppend(t, s, ev("shared", "T", 0, `{}`), ev("shared", "T", 0, `{}`)) // version 2
	mustImport(t, s, history([]string{"mine"}, 2))
	before := readAll(t, s)

	for _, tc := range []struct {
		name     string
		events   []eventstore.Event
		agg      string
		expected uint64
		actual   uint64
	}{
		// Another side wrote the aggregate: its version 1 is not ours.
		{"OtherEvents", []eventstore.Event{imported("fresh", "T", 1, `{}`), imported("shared", "T", 1, `{}`), imported("shared", "T", 2, `{}`)}, "shared", 0, 2},
		{"Gap", []eventstore.Event{imported("fresh", "T", 1, `{}`), imported("mine", "T", 4, `{}`)}, "mine", 3, 2},
		{"GapOnEmpty", []eventstore.Event{imported("fresh", "T", 2, `{}`)}, "fresh", 1, 0},
		{"Behind", []eventstore.Event{imported("mine", "T", 2, `{}`), imported("mine", "T", 3, `{}`)}, "mine", 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := importer(t, s).Import(ctx, tc.events)
			require.ErrorIs(t, err, eventstore.ErrConflict)
			var conflict *eventstore.ConflictError
			require.ErrorAs(t, err, &conflict)
			require.Equal(t, tc.agg, conflict.AggregateID)
			require.Equal(t, tc.expected, conflict.Expected)
			require.Equal(t, tc.actual, conflict.Actual)
			requireSameEvents(t, before, readAll(t, s))
		})
	}
}

func testImportInvalid(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	s := newStore(t)
	mustImport(t, s, history([]string{"a"}, 1))
	before := readAll(t, s)

	big := make([]eventstore.Event, eventstore.MaxImportEvents+1)
	for i := range big {
		big[i] = imported(fmt.Sprint("agg-", i), "T", 1, `{}`)
	}
	payload := json.RawMessage(`"` + strings.Repeat("x", 900<<10) + `"`)
	var heavy []eventstore.Event
	for i := 0; i*(900<<10) <= eventstore.MaxImportSize; i++ {
		e := imported(fmt.Sprint("heavy-", i), "T", 1, "")
		e.Payload = payload
		heavy = append(heavy, e)
	}

	for _, tc := range []struct {
		name   string
		change func(e *eventstore.Event)
		events []eventstore.Event // instead of change
		index  int
		field  string
	}{
		{name: "NoID", change: func(e *eventstore.Event) { e.ID = "" }, field: "ID"},
		{name: "BadID", change: func(e *eventstore.Event) { e.ID = "not-a-uuid" }, field: "ID"},
		{name: "NoTimestamp", change: func(e *eventstore.Event) { e.Timestamp = time.Time{} }, field: "Timestamp"},
		{name: "NoVersion", change: func(e *eventstore.Event) { e.Version = 0 }, field: "Version"},
		{name: "EmptyAggregate", change: func(e *eventstore.Event) { e.AggregateID = "" }, field: "AggregateID"},
		{name: "NULType", change: func(e *eventstore.Event) { e.Type = "a\x00b" }, field: "Type"},
		{name: "BadPayload", change: func(e *eventstore.Event) { e.Payload = json.RawMessage(`{`) }, field: "Payload"},
		{name: "BadMetadata", change: func(e *eventstore.Event) { e.Metadata = map[string]string{"": "x"} }, field: "Metadata"},
		{name: "Year10000", change: func(e *eventstore.Event) { e.Timestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, field: "Timestamp"},
		{name: "VersionsNotConsecutive", events: []eventstore.Event{imported("x", "T", 1, `{}`), imported("y", "T", 1, `{}`), imported("x", "T", 3, `{}`)}, index: 2, field: "Version"},
		{name: "VersionsOutOfOrder", events: []eventstore.Event{imported("x", "T", 2, `{}`), imported("x", "T", 1, `{}`)}, index: 1, field: "Version"},
		{name: "SameIDTwice", events: func() []eventstore.Event {
			e := imported("x", "T", 1, `{}`)
			f := imported("y", "T", 1, `{}`)
			f.ID = e.ID
			return []eventstore.Event{e, f}
		}(), index: 1, field: "ID"},
		{name: "TooManyEvents", events: big, index: eventstore.MaxImportEvents, field: "Events"},
		{name: "TooManyBytes", events: heavy, index: len(heavy) - 1, field: "Events"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			events := tc.events
			if events == nil {
				// A valid event first: nothing of the call may be written.
				events = []eventstore.Event{imported("b", "T", 1, `{}`), imported("c", "T", 1, `{}`)}
				tc.change(&events[1])
				tc.index = 1
			}
			_, err := importer(t, s).Import(ctx, events)
			require.ErrorIs(t, err, eventstore.ErrInvalidEvent)
			var invalid *eventstore.InvalidEventError
			require.ErrorAs(t, err, &invalid)
			require.Equal(t, tc.index, invalid.Index, "%v", err)
			require.Equal(t, tc.field, invalid.Field, "%v", err)
			requireSameEvents(t, before, readAll(t, s))
		})
	}

	t.Run("LargestCall", func(t *testing.T) {
		// The count limit itself is accepted.
		out := mustImport(t, s, big[:eventstore.MaxImportEvents])
		require.Len(t, out, eventstore.MaxImportEvents)
	})
}

func testImportPositions(t *testing.T, newStore NewStore) {
	s := newStore(t)
	var want []uint64
	next := uint64(1)
	for round := range 4 {
		out := mustAppend(t, s, ev(fmt.Sprint("app-", round), "T", 0, `{}`), ev(fmt.Sprint("app-", round), "T", 0, `{}`))
		require.Equal(t, []uint64{next, next + 1}, positions(out))
		next += 2
		in := history([]string{fmt.Sprint("imp-", round, "-a"), fmt.Sprint("imp-", round, "-b")}, 3)
		out = mustImport(t, s, in)
		require.Equal(t, seq(next, next+5), positions(out), "round %d", round)
		next += 6
		want = append(want, seq(next-8, next-1)...)
	}
	require.Equal(t, want, positions(readAll(t, s)))
}

func testImportThenAppend(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	s := newStore(t)
	in := history([]string{"a"}, 3)
	mustImport(t, s, in)

	out := mustAppend(t, s, ev("a", "T", 0, `{}`))
	require.Equal(t, uint64(4), out[0].Version)
	out = mustAppend(t, s, ev("a", "T", 5, `{}`))
	require.Equal(t, uint64(5), out[0].Version)
	_, err := s.Append(ctx, ev("a", "T", 3, `{}`))
	require.ErrorIs(t, err, eventstore.ErrConflict)

	// An Append retrying an imported event with its ID returns it as
	// stored.
	retry, err := s.Append(ctx, in[0])
	require.NoError(t, err)
	require.Equal(t, uint64(1), retry[0].Position)

	// Import continues after what Append wrote.
	more := mustImport(t, s, []eventstore.Event{imported("a", "T", 6, `{}`)})
	require.Equal(t, uint64(6), more[0].Position)
	require.Equal(t, []uint64{1, 2, 3, 4, 5, 6}, versions(collect(t, s.ReadAggregate(ctx, "a", 0))))
}

// testImportConcurrent runs imports beside appends and checks that nothing
// is lost and the log stays gapless.
func testImportConcurrent(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	s := newStore(t)
	const (
		writers = 4
		rounds  = 10
	)
	var wg sync.WaitGroup
	var mu sync.Mutex
	written := 0
	conflicts := 0
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				if _, err := s.Append(ctx, ev(fmt.Sprint("w-", w), "T", 0, `{}`)); err != nil {
					t.Errorf("append: %v", err)
					return
				}
				// Imports of its own aggregates, and one aggregate that
				// the Appends of "shared" also write.
				call := []eventstore.Event{
					imported(fmt.Sprint("imp-", w, "-", r), "T", 1, `{}`),
					imported(fmt.Sprint("imp-", w, "-", r), "T", 2, `{}`),
				}
				out, err := importer(t, s).Import(ctx, call)
				if err != nil {
					t.Errorf("import: %v", err)
					return
				}
				v, err := s.Version(ctx, "shared")
				if err != nil {
					t.Errorf("version: %v", err)
					return
				}
				_, err = importer(t, s).Import(ctx, []eventstore.Event{imported("shared", "T", v+1, `{}`)})
				_, appendErr := s.Append(ctx, ev("shared", "T", 0, `{}`))
				mu.Lock()
				written += 1 + len(out) + 1
				if err == nil {
					written++
				} else if errors.Is(err, eventstore.ErrConflict) {
					conflicts++
				} else {
					t.Errorf("import shared: %v", err)
				}
				mu.Unlock()
				if appendErr != nil {
					t.Errorf("append shared: %v", appendErr)
				}
			}
		})
	}
	wg.Wait()
	all := readAll(t, s)
	require.Equal(t, seq(1, uint64(written)), positions(all))
	shared := collect(t, s.ReadAggregate(ctx, "shared", 0))
	require.Equal(t, seq(1, uint64(len(shared))), versions(shared))
	t.Logf("%d events, %d imports of shared refused by a concurrent append", written, conflicts)
}

func testImportEmpty(t *testing.T, newStore NewStore) {
	s := newStore(t)
	out, err := importer(t, s).Import(context.Background(), nil)
	require.NoError(t, err)
	require.Nil(t, out)
	require.Empty(t, readAll(t, s))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = importer(t, s).Import(ctx, history([]string{"a"}, 1))
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, readAll(t, s))
}

func testImportClose(t *testing.T, newStore NewStore) {
	s := newStore(t)
	im := importer(t, s)
	require.NoError(t, s.Close())
	_, err := im.Import(context.Background(), history([]string{"a"}, 1))
	require.ErrorIs(t, err, eventstore.ErrClosed)
}

// testImportSubscribe checks that a live subscription sees imported events
// and that Head counts them.
func testImportSubscribe(t *testing.T, newStore NewStore) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newStore(t)
	mustAppend(t, s, ev("a", "T", 0, `{}`))
	got := make(chan eventstore.Event, 16)
	done := make(chan error, 1)
	go func() {
		for e, err := range s.Subscribe(ctx, 0, eventstore.Filter{AggregatePrefix: "imp-"}) {
			if err != nil {
				done <- err
				return
			}
			got <- e
		}
	}()
	in := history([]string{"imp-1", "imp-2"}, 2)
	out := mustImport(t, s, in)
	for i := range out {
		select {
		case e := <-got:
			require.Equal(t, out[i].ID, e.ID)
			require.Equal(t, out[i].Position, e.Position)
		case err := <-done:
			t.Fatalf("subscription ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("the subscription did not see imported event %d", i)
		}
	}
	head, err := s.Head(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(5), head)
}
