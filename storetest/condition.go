package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/aggregate"
)

// testCondition checks AppendIf: the condition, several aggregates in one
// append, retries.
func testCondition(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	c1 := eventstore.Filter{Tags: []string{"course:c1"}}

	requireConditionFailed := func(t *testing.T, err error, after, pos uint64) {
		t.Helper()
		require.ErrorIs(t, err, eventstore.ErrConflict)
		var ce *eventstore.ConditionError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, eventstore.ConditionError{After: after, Position: pos}, *ce)
	}

	t.Run("ConflictWritesNothing", func(t *testing.T) {
		s := newStore(t)
		queryFixture(t, s) // course:c1 at 1, 3, 4, 7
		_, err := s.AppendIf(ctx, eventstore.Condition{FailIfEventsMatch: c1, After: 2},
			tagged("student-9", "StudentSubscribed", "course:c1", "student:s9"), tagged("course-1", "Other"))
		requireConditionFailed(t, err, 2, 3)
		require.Len(t, readAll(t, s), 8)
		v, err := s.Version(ctx, "student-9")
		require.NoError(t, err)
		require.Zero(t, v)
	})

	t.Run("NoConflict", func(t *testing.T) {
		s := newStore(t)
		queryFixture(t, s)
		out, err := s.AppendIf(ctx, eventstore.Condition{FailIfEventsMatch: c1, After: 7},
			tagged("student-9", "StudentSubscribed", "course:c1", "student:s9"))
		require.NoError(t, err)
		require.Equal(t, uint64(9), out[0].Position)
		require.Equal(t, uint64(1), out[0].Version)
		requireSameEvents(t, out, read(t, s, c1, 7))
	})

	t.Run("AfterZeroWithNothingMatching", func(t *testing.T) {
		s := newStore(t)
		q := eventstore.Filter{Types: []string{"UserRegistered"}, Tags: []string{"username:ann"}}
		out, err := s.AppendIf(ctx, eventstore.Condition{FailIfEventsMatch: q}, tagged("user-1", "UserRegistered", "username:ann"))
		require.NoError(t, err)
		require.Equal(t, uint64(1), out[0].Position)
		// The same decision by another user now fails.
		_, err = s.AppendIf(ctx, eventstore.Condition{FailIfEventsMatch: q}, tagged("user-2", "UserRegistered", "username:ann"))
		requireConditionFailed(t, err, 0, 1)
		// On an empty store too, the zero query after 0 passes.
		s2 := newStore(t)
		_, err = s2.AppendIf(ctx, eventstore.Condition{}, tagged("a", "T"))
		require.NoError(t, err)
		_, err = s2.AppendIf(ctx, eventstore.Condition{}, tagged("a", "T"))
		requireConditionFailed(t, err, 0, 1)
	})

	t.Run("ConditionOverOtherAggregates", func(t *testing.T) {
		s := newStore(t)
		queryFixture(t, s)
		// The condition reads courses; the append writes a third aggregate.
		q := eventstore.Filter{AggregatePrefix: "course-"}
		_, err := s.AppendIf(ctx, eventstore.Condition{FailIfEventsMatch: q, After: 6}, tagged("audit", "Checked"))
		requireConditionFailed(t, err, 6, 7)
		out, err := s.AppendIf(ctx, eventstore.Condition{FailIfEventsMatch: q, After: 7}, tagged("audit", "Checked"))
		require.NoError(t, err)
		require.Equal(t, uint64(9), out[0].Position)
		// Events of other aggregates after After do not fail it.
		out, err = s.AppendIf(ctx, eventstore.Condition{FailIfEventsMatch: q, After: 7}, tagged("audit", "Checked"))
		require.NoError(t, err)
		require.Equal(t, uint64(10), out[0].Position)
	})

	t.Run("SeveralAggregatesAtomically", func(t *testing.T) {
		s := newStore(t)
		mustAppend(t, s, tagged("a", "T"), tagged("a", "T"))
		in := []eventstore.Event{tagged("b", "T", "x"), tagged("a", "T", "x"), tagged("b", "T"), tagged("c", "T")}
		out, err := s.AppendIf(ctx, eventstore.Condition{After: 2}, in...)
		require.NoError(t, err)
		require.Equal(t, []uint64{1, 3, 2, 1}, versions(out))
		require.Equal(t, seq(3, 6), positions(out))
		requireSameEvents(t, out, read(t, s, eventstore.Filter{}, 2))

		// Explicit versions, per aggregate; one stale aggregate fails all.
		in = []eventstore.Event{ev("a", "T", 4, `1`), ev("b", "T", 3, `1`), ev("a", "T", 5, `1`), ev("c", "T", 1, `1`)}
		_, err = s.AppendIf(ctx, eventstore.Condition{After: 6}, in...)
		var ve *eventstore.ConflictError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, eventstore.ConflictError{AggregateID: "c", Expected: 0, Actual: 1}, *ve)
		require.Len(t, readAll(t, s), 6)
		in[3].Version = 2
		out, err = s.AppendIf(ctx, eventstore.Condition{After: 6}, in...)
		require.NoError(t, err)
		require.Equal(t, []uint64{4, 3, 5, 2}, versions(out))

		// Versions are checked per aggregate before anything is written.
		_, err = s.AppendIf(ctx, eventstore.Condition{After: 10},
			ev("a", "T", 6, `1`), ev("b", "T", 1, `1`), ev("a", "T", 8, `1`))
		require.ErrorIs(t, err, eventstore.ErrInvalidEvent)
		_, err = s.AppendIf(ctx, eventstore.Condition{After: 10}, ev("a", "T", 6, `1`), ev("b", "T", 0, `1`), ev("a", "T", 0, `1`))
		require.ErrorIs(t, err, eventstore.ErrInvalidEvent)
		require.Len(t, readAll(t, s), 10)
	})

	t.Run("RetrySucceedsWithoutTheCondition", func(t *testing.T) {
		s := newStore(t)
		in := []eventstore.Event{tagged("a", "T", "x"), tagged("b", "T", "x")}
		in[0].ID = "0190a0a0-0000-7000-8000-0000000000a1"
		in[1].ID = "0190a0a0-0000-7000-8000-0000000000a2"
		cond := eventstore.Condition{FailIfEventsMatch: eventstore.Filter{Tags: []string{"x"}}}
		out, err := s.AppendIf(ctx, cond, in...)
		require.NoError(t, err)
		again, err := s.AppendIf(ctx, cond, in...)
		require.NoError(t, err, "the same call again is a retry, though its own events now match")
		requireSameEvents(t, out, again)
		require.Len(t, readAll(t, s), 2)
		in[1].Payload = []byte(`{"other":1}`)
		_, err = s.AppendIf(ctx, cond, in...)
		require.ErrorIs(t, err, eventstore.ErrDuplicateEvent)
	})

	t.Run("NoEvents", func(t *testing.T) {
		s := newStore(t)
		out, err := s.AppendIf(ctx, eventstore.Condition{})
		require.NoError(t, err)
		require.Nil(t, out)
	})

	t.Run("CancelledContext", func(t *testing.T) {
		s := newStore(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := s.AppendIf(cctx, eventstore.Condition{}, tagged("a", "T"))
		require.ErrorIs(t, err, context.Canceled)
		require.Empty(t, readAll(t, s))
	})

	t.Run("CourseCapacityAndStudentLimit", func(t *testing.T) { testCourses(t, newStore(t)) })
	t.Run("UniqueUsernames", func(t *testing.T) { testUsernames(t, newStore(t)) })
	t.Run("GaplessInvoiceNumbers", func(t *testing.T) { testInvoices(t, newStore(t)) })
}

// writers is how many goroutines the invariant tests run at once.
const writers = 16

// fastRetries: conflicts are expected, and retried at once.
var fastRetries = &aggregate.Options{MaxAttempts: 1000, Backoff: func(int) time.Duration { return 0 }}

// errRefused is a decision's refusal in the invariant tests.
var errRefused = errors.New("refused")

// testCourses: 16 students each try to subscribe to all 4 courses, which
// hold at most 5 students each, while a student takes at most 2 courses.
// Each subscription is decided on the events of the course and of the
// student, and appended to the student's aggregate at version 0 (no
// version check): only the condition keeps the limits.
func testCourses(t *testing.T, s eventstore.Store) {
	const courses, capacity, limit = 4, 5, 2
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers*courses)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			student := fmt.Sprint("student:s", w)
			for c := range courses {
				course := fmt.Sprint("course:c", (c+w)%courses)
				type state struct{ course, student int }
				_, err := aggregate.Decide(ctx, s, aggregate.Decision[state]{
					Query: eventstore.Filter{Types: []string{"StudentSubscribed"}, Items: []eventstore.Item{{Tags: []string{course}}, {Tags: []string{student}}}},
					Evolve: func(st state, e eventstore.Event) (state, error) {
						if slices.Contains(e.Tags, course) {
							st.course++
						}
						if slices.Contains(e.Tags, student) {
							st.student++
						}
						return st, nil
					},
					Decide: func(st state) ([]eventstore.Event, error) {
						if st.course >= capacity || st.student >= limit {
							return nil, errRefused
						}
						return []eventstore.Event{tagged("student-"+strconv.Itoa(w), "StudentSubscribed", course, student)}, nil
					},
				}, fastRetries)
				if err != nil && !errors.Is(err, errRefused) {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	perCourse, perStudent := map[string]int{}, map[string]int{}
	for _, e := range readAll(t, s) {
		perCourse[e.Tags[0]]++
		perStudent[e.Tags[1]]++
	}
	total := 0
	for c, n := range perCourse {
		require.LessOrEqual(t, n, capacity, "course %s over capacity", c)
		total += n
	}
	for st, n := range perStudent {
		require.LessOrEqual(t, n, limit, "student %s over the limit", st)
	}
	// Every student asked for every course: the seats are all taken.
	require.Equal(t, courses*capacity, total)
}

// testUsernames: 16 writers at once register each of 4 names for a user
// of their own; exactly one registration of each name wins.
func testUsernames(t *testing.T, s eventstore.Store) {
	ctx := context.Background()
	names := []string{"ann", "bob", "cy", "di"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := map[string]int{}
	errs := make(chan error, writers*len(names))
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, name := range names {
				_, err := aggregate.Decide(ctx, s, aggregate.Decision[bool]{
					Query:  eventstore.Filter{Types: []string{"UserRegistered"}, Tags: []string{"username:" + name}},
					Evolve: func(bool, eventstore.Event) (bool, error) { return true, nil },
					Decide: func(taken bool) ([]eventstore.Event, error) {
						if taken {
							return nil, errRefused
						}
						return []eventstore.Event{tagged(fmt.Sprintf("user-%d-%s", w, name), "UserRegistered", "username:"+name)}, nil
					},
				}, fastRetries)
				switch {
				case err == nil:
					mu.Lock()
					wins[name]++
					mu.Unlock()
				case !errors.Is(err, errRefused):
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for _, name := range names {
		require.Equal(t, 1, wins[name], "winners of %s", name)
		require.Len(t, read(t, s, eventstore.Filter{Tags: []string{"username:" + name}}, 0), 1, "registrations of %s", name)
	}
}

// testInvoices: 16 writers each create 5 invoices, numbered by the last
// number stored plus one, each in an aggregate of its own: the numbers
// are 1 to 80, with no gap and no duplicate.
func testInvoices(t *testing.T, s eventstore.Store) {
	const each = 5
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	q := eventstore.Filter{Types: []string{"InvoiceCreated"}}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, err := aggregate.Decide(ctx, s, aggregate.Decision[int]{
					Query: q,
					Evolve: func(_ int, e eventstore.Event) (int, error) {
						var n int
						err := e.Unmarshal(&n)
						return n, err
					},
					Decide: func(last int) ([]eventstore.Event, error) {
						return []eventstore.Event{ev(fmt.Sprintf("invoice-%d-%d", w, i), "InvoiceCreated", 0, strconv.Itoa(last+1))}, nil
					},
				}, fastRetries)
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var numbers []int
	for _, e := range read(t, s, q, 0) {
		var n int
		require.NoError(t, e.Unmarshal(&n))
		numbers = append(numbers, n)
	}
	sort.Ints(numbers)
	want := make([]int, writers*each)
	for i := range want {
		want[i] = i + 1
	}
	require.Equal(t, want, numbers)
}
