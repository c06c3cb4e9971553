package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
)

// tagged returns ev(agg, typ, 0, `{}`) with tags.
func tagged(agg, typ string, tags ...string) eventstore.Event {
	e := ev(agg, typ, 0, `{}`)
	e.Tags = tags
	return e
}

func read(t *testing.T, s eventstore.Store, f eventstore.Filter, after uint64) []eventstore.Event {
	t.Helper()
	return collect(t, s.Read(context.Background(), f, after))
}

// requireTags checks that got carries the tags of want, in order, and nil
// for none.
func requireTags(t *testing.T, want, got []eventstore.Event) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		w := want[i].Tags
		if len(w) == 0 {
			w = nil
		}
		require.Equal(t, w, got[i].Tags, "event %d Tags", i)
	}
}

// testTags checks that tags are validated, stored and returned.
func testTags(t *testing.T, newStore NewStore) {
	ctx := context.Background()

	t.Run("StoredAndReturnedInOrder", func(t *testing.T) {
		s := newStore(t)
		in := []eventstore.Event{
			tagged("a", "T", "z:1", "a:2", "m:3"),
			tagged("a", "T"),
			tagged("a", "T", []string{}...),
			tagged("a", "T", strings.Repeat("t", eventstore.MaxTagLength), "ü:✓"),
		}
		in[2].Tags = []string{}
		many := make([]string, eventstore.MaxTags)
		for i := range many {
			many[i] = fmt.Sprint("tag:", i)
		}
		in = append(in, tagged("a", "T", many...))
		out := mustAppend(t, s, in...)
		requireTags(t, in, out)
		requireTags(t, in, readAll(t, s))
		requireTags(t, in, collect(t, s.ReadAggregate(ctx, "a", 0)))
		requireTags(t, in, read(t, s, eventstore.Filter{}, 0))
		requireSameEvents(t, out, readAll(t, s))
	})

	t.Run("ReadsShareNoTagsWithTheStore", func(t *testing.T) {
		s := newStore(t)
		in := tagged("a", "T", "x", "y")
		out := mustAppend(t, s, in)
		in.Tags[0], out[0].Tags[1] = "changed", "changed"
		got := readAll(t, s)
		require.Equal(t, []string{"x", "y"}, got[0].Tags)
		got[0].Tags[0] = "changed"
		require.Equal(t, []string{"x", "y"}, read(t, s, eventstore.Filter{Tags: []string{"x"}}, 0)[0].Tags)
	})

	t.Run("RetryComparesTags", func(t *testing.T) {
		s := newStore(t)
		e := tagged("a", "T", "x", "y")
		e.ID = "0190a0a0-0000-7000-8000-000000000001"
		mustAppend(t, s, e)
		_, err := s.Append(ctx, e)
		require.NoError(t, err, "the same call again is a retry")
		other := e
		other.Tags = []string{"y", "x"}
		_, err = s.Append(ctx, other)
		require.ErrorIs(t, err, eventstore.ErrDuplicateEvent)
	})

	t.Run("InvalidTagsWriteNothing", func(t *testing.T) {
		tooMany := make([]string, eventstore.MaxTags+1)
		for i := range tooMany {
			tooMany[i] = fmt.Sprint("t", i)
		}
		for _, tc := range []struct {
			name string
			tags []string
		}{
			{"Empty", []string{"ok", ""}},
			{"TooLong", []string{strings.Repeat("t", eventstore.MaxTagLength+1)}},
			{"NUL", []string{"a\x00b"}},
			{"NotUTF8", []string{"a\xff"}},
			{"Twice", []string{"a", "b", "a"}},
			{"TooMany", tooMany},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := newStore(t)
				_, err := s.Append(ctx, tagged("a", "T", "fine"), tagged("a", "T", tc.tags...))
				require.ErrorIs(t, err, eventstore.ErrInvalidEvent)
				var ie *eventstore.InvalidEventError
				require.ErrorAs(t, err, &ie)
				require.Equal(t, 1, ie.Index)
				require.Equal(t, "Tags", ie.Field)
				_, err = s.AppendIf(ctx, eventstore.Condition{}, tagged("b", "T", tc.tags...))
				require.ErrorIs(t, err, eventstore.ErrInvalidEvent)
				require.Empty(t, readAll(t, s))
			})
		}
	})
}

// queryFixture appends, at positions 1 to 8:
//
//	1 course-1  CourseDefined      course:c1
//	2 course-2  CourseDefined      course:c2
//	3 student-1 StudentSubscribed  course:c1 student:s1
//	4 student-2 StudentSubscribed  course:c1 student:s2
//	5 student-1 StudentSubscribed  course:c2 student:s1
//	6 student-1 StudentRenamed     student:s1
//	7 course-1  CourseRenamed      course:c1
//	8 other     Noise
func queryFixture(t *testing.T, s eventstore.Store) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	for _, e := range []eventstore.Event{
		tagged("course-1", "CourseDefined", "course:c1"),
		tagged("course-2", "CourseDefined", "course:c2"),
		tagged("student-1", "StudentSubscribed", "course:c1", "student:s1"),
		tagged("student-2", "StudentSubscribed", "student:s2", "course:c1"),
		tagged("student-1", "StudentSubscribed", "course:c2", "student:s1"),
		tagged("student-1", "StudentRenamed", "student:s1"),
		tagged("course-1", "CourseRenamed", "course:c1"),
		tagged("other", "Noise"),
	} {
		out = append(out, mustAppend(t, s, e)...)
	}
	return out
}

// testQuery checks Read and the rules of Filter on every backend.
func testQuery(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	s := newStore(t)
	all := queryFixture(t, s)
	cases := []struct {
		name  string
		f     eventstore.Filter
		after uint64
		want  []uint64
	}{
		{"EmptyQuery", eventstore.Filter{}, 0, seq(1, 8)},
		{"EmptyQueryAfterPosition", eventstore.Filter{}, 5, seq(6, 8)},
		{"OneTag", eventstore.Filter{Tags: []string{"course:c1"}}, 0, []uint64{1, 3, 4, 7}},
		{"TagsAreAnded", eventstore.Filter{Tags: []string{"course:c1", "student:s1"}}, 0, []uint64{3}},
		{"TagsInAnyOrder", eventstore.Filter{Tags: []string{"student:s1", "course:c1"}}, 0, []uint64{3}},
		{"TypesAreOred", eventstore.Filter{Types: []string{"CourseDefined", "CourseRenamed"}}, 0, []uint64{1, 2, 7}},
		{"TypesAndTags", eventstore.Filter{Types: []string{"StudentSubscribed"}, Tags: []string{"student:s1"}}, 0, []uint64{3, 5}},
		{"ItemsAreOred", eventstore.Filter{Items: []eventstore.Item{
			{Types: []string{"StudentSubscribed"}, Tags: []string{"course:c1"}},
			{Types: []string{"StudentSubscribed", "StudentRenamed"}, Tags: []string{"student:s1"}},
		}}, 0, []uint64{3, 4, 5, 6}},
		{"ItemsAfterPosition", eventstore.Filter{Items: []eventstore.Item{
			{Tags: []string{"course:c2"}}, {Tags: []string{"student:s2"}},
		}}, 2, []uint64{4, 5}},
		{"OverlappingItemsYieldEachEventOnce", eventstore.Filter{Items: []eventstore.Item{
			{Tags: []string{"course:c1"}}, {Tags: []string{"student:s1"}}, {Types: []string{"StudentSubscribed"}},
		}}, 0, []uint64{1, 3, 4, 5, 6, 7}},
		{"EmptyItemMatchesEverything", eventstore.Filter{Items: []eventstore.Item{{Tags: []string{"nothing"}}, {}}}, 0, seq(1, 8)},
		{"ShorthandAndedWithItems", eventstore.Filter{Types: []string{"StudentSubscribed"}, Items: []eventstore.Item{
			{Tags: []string{"course:c2"}}, {Tags: []string{"student:s2"}},
		}}, 0, []uint64{4, 5}},
		{"ShorthandTypesExcludeItemTypes", eventstore.Filter{Types: []string{"CourseDefined"}, Items: []eventstore.Item{
			{Types: []string{"StudentSubscribed"}},
		}}, 0, nil},
		{"Prefix", eventstore.Filter{AggregatePrefix: "student-", Tags: []string{"course:c1"}}, 0, []uint64{3, 4}},
		{"PrefixWithItems", eventstore.Filter{AggregatePrefix: "course-", Items: []eventstore.Item{
			{Tags: []string{"course:c2"}}, {Types: []string{"CourseRenamed"}},
		}}, 0, []uint64{2, 7}},
		{"UnknownTag", eventstore.Filter{Tags: []string{"course:c9"}}, 0, nil},
		{"TagNoEventCanHave", eventstore.Filter{Tags: []string{""}}, 0, nil},
		{"TagTooLong", eventstore.Filter{Tags: []string{strings.Repeat("x", eventstore.MaxTagLength+1)}}, 0, nil},
		{"TypeNoEventCanHave", eventstore.Filter{Types: []string{"a\x00"}}, 0, nil},
		{"AfterTheEnd", eventstore.Filter{Tags: []string{"course:c1"}}, 8, nil},
		{"AfterMaxPosition", eventstore.Filter{Tags: []string{"course:c1"}}, ^uint64(0), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := read(t, s, tc.f, tc.after)
			require.Equal(t, tc.want, nilIfEmpty(positions(got)))
			var want []eventstore.Event
			for _, p := range tc.want {
				want = append(want, all[p-1])
				require.True(t, tc.f.Match(all[p-1]), "Match agrees")
			}
			requireSameEvents(t, want, got)
			requireTags(t, want, got)
		})
	}

	t.Run("SubscribeFollowsTheSameRules", func(t *testing.T) {
		for _, tc := range cases {
			if tc.after == ^uint64(0) {
				continue
			}
			got := subscribeUpTo(t, s, tc.f, tc.after)
			require.Equal(t, tc.want, nilIfEmpty(positions(got)), tc.name)
		}
	})

	t.Run("LiveSubscriptionsFollowTheSameRules", func(t *testing.T) {
		// The subscriptions run before the events are appended, so that
		// they read them as they come.
		s := newStore(t)
		subs := make([]*subscription, len(cases))
		for i, tc := range cases {
			subs[i] = subscribe(t, s, tc.after, tc.f)
		}
		stored := queryFixture(t, s)
		for i, tc := range cases {
			got := subs[i].take(t, len(tc.want))
			require.Equal(t, tc.want, nilIfEmpty(positions(got)), tc.name)
			var want []eventstore.Event
			for _, p := range tc.want {
				want = append(want, stored[p-1])
			}
			requireSameEvents(t, want, got)
			requireTags(t, want, got)
		}
	})

	t.Run("BreakEarly", func(t *testing.T) {
		n := 0
		for _, err := range s.Read(ctx, eventstore.Filter{Tags: []string{"course:c1"}}, 0) {
			require.NoError(t, err)
			n++
			break
		}
		require.Equal(t, 1, n)
	})

	t.Run("CancelledContext", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := eventstore.Collect(s.Read(cctx, eventstore.Filter{}, 0))
		require.ErrorIs(t, err, context.Canceled)
	})

	t.Run("ManyPages", func(t *testing.T) {
		s := newStore(t)
		var want []uint64
		for i := range 30 {
			batch := make([]eventstore.Event, 40)
			for j := range batch {
				batch[j] = tagged(fmt.Sprint("agg-", i), "T", fmt.Sprint("j:", j%4))
				if j%2 == 0 {
					batch[j].Tags = append(batch[j].Tags, "even")
				}
			}
			for _, e := range mustAppend(t, s, batch...) {
				if slices.Contains(e.Tags, "j:2") || slices.Contains(e.Tags, "j:1") {
					want = append(want, e.Position)
				}
			}
		}
		got := read(t, s, eventstore.Filter{Items: []eventstore.Item{{Tags: []string{"even", "j:2"}}, {Tags: []string{"j:1"}}}}, 0)
		require.Equal(t, want, positions(got))
	})

	t.Run("MatchesFilterMatchOnRandomData", func(t *testing.T) {
		testQueryProperty(t, newStore(t))
	})
}

func nilIfEmpty(p []uint64) []uint64 {
	if len(p) == 0 {
		return nil
	}
	return p
}

// subscribeUpTo collects what Subscribe with f yields after after, up to
// the last event Read(f, after) finds (or nothing, when it finds none).
func subscribeUpTo(t *testing.T, s eventstore.Store, f eventstore.Filter, after uint64) []eventstore.Event {
	t.Helper()
	want := read(t, s, f, after)
	if len(want) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []eventstore.Event
	for e, err := range s.Subscribe(ctx, after, f) {
		require.NoError(t, err)
		out = append(out, e)
		if e.Position >= want[len(want)-1].Position {
			break
		}
	}
	return out
}

// testQueryProperty appends random tagged events and checks Read and
// AppendIf's condition against Filter.Match for random filters.
func testQueryProperty(t *testing.T, s eventstore.Store) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(12, 34))
	types := []string{"A", "B", "C", "D"}
	tags := []string{"t:0", "t:1", "t:2", "t:3", "t:4", "t:5"}
	aggs := []string{"x-1", "x-2", "y-1", "y-22", "z"}
	pick := func(from []string, max int) []string {
		n := rng.IntN(max + 1)
		out := []string{}
		for range n {
			v := from[rng.IntN(len(from))]
			if !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
		return out
	}
	var all []eventstore.Event
	for range 60 {
		agg := aggs[rng.IntN(len(aggs))]
		batch := make([]eventstore.Event, 1+rng.IntN(4))
		for i := range batch {
			batch[i] = tagged(agg, types[rng.IntN(len(types))], pick(tags, 3)...)
		}
		all = append(all, mustAppend(t, s, batch...)...)
	}
	randomFilter := func() eventstore.Filter {
		var f eventstore.Filter
		if rng.IntN(4) == 0 {
			f.Types = pick(types, 2)
		}
		if rng.IntN(4) == 0 {
			f.Tags = pick(tags, 1)
		}
		if rng.IntN(4) == 0 {
			f.AggregatePrefix = []string{"x-", "y-2", "z", "q"}[rng.IntN(4)]
		}
		for range rng.IntN(4) {
			f.Items = append(f.Items, eventstore.Item{Types: pick(types, 2), Tags: pick(tags, 2)})
		}
		return f
	}
	for i := range 300 {
		f := randomFilter()
		after := uint64(rng.IntN(len(all) + 1))
		var want []uint64
		for _, e := range all[after:] {
			if f.Match(e) {
				want = append(want, e.Position)
			}
		}
		got := collect(t, s.Read(ctx, f, after))
		require.Equal(t, want, nilIfEmpty(positions(got)), "filter %d %+v after %d", i, f, after)

		if i%10 == 0 {
			// The condition selects as Read does: it fails exactly when
			// an event after After matches, naming the first.
			_, err := s.AppendIf(ctx, eventstore.Condition{FailIfEventsMatch: f, After: after},
				tagged("probe", "Probe", "never-matched"))
			if len(want) > 0 {
				var ce *eventstore.ConditionError
				require.ErrorAs(t, err, &ce, "filter %+v after %d", f, after)
				require.Equal(t, want[0], ce.Position)
			} else {
				require.NoError(t, err, "filter %+v after %d", f, after)
				all = append(all, readAll(t, s)[len(all)])
			}
		}
	}
}

// testImportTags (an entry of RunImport): Import keeps tags and indexes
// them for Read; a rerun compares them; invalid tags are refused.
func testImportTags(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	s := newStore(t)
	in := history([]string{"a", "b"}, 2)
	in[0].Tags = []string{"course:c1", "student:s1"}
	in[1].Tags = []string{"course:c1"}
	in[3].Tags = []string{"student:s1", "course:c2"}
	out := mustImport(t, s, in)
	requireTags(t, in, out)
	requireTags(t, in, readAll(t, s))
	got := read(t, s, eventstore.Filter{Tags: []string{"course:c1"}}, 0)
	require.Equal(t, []uint64{1, 2}, positions(got))
	requireTags(t, in[:2], got)
	got = read(t, s, eventstore.Filter{Tags: []string{"student:s1"}}, 0)
	require.Equal(t, []uint64{1, 4}, positions(got))

	// A rerun is skipped; the same IDs with other tags are duplicates.
	out = mustImport(t, s, in)
	require.Empty(t, out)
	other := append([]eventstore.Event(nil), in...)
	other[3].Tags = []string{"course:c2", "student:s1"}
	_, err := importer(t, s).Import(ctx, other)
	require.ErrorIs(t, err, eventstore.ErrDuplicateEvent)

	bad := history([]string{"c"}, 1)
	bad[0].Tags = []string{"x", "x"}
	_, err = importer(t, s).Import(ctx, bad)
	require.ErrorIs(t, err, eventstore.ErrInvalidEvent)
	require.Len(t, readAll(t, s), 4)
}
