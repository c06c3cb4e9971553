package aggregate_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/aggregate"
	"github.com/eventstore-go/eventstore/memory"
)

// flaky answers ErrUnknownOutcome to the next Appends it is told to, after
// committing them or not.
type flaky struct {
	*memory.Store
	fail   int  // how many Appends to answer with ErrUnknownOutcome
	commit bool // whether those Appends commit first
	calls  int
}

func (f *flaky) Append(ctx context.Context, events ...eventstore.Event) ([]eventstore.Event, error) {
	f.calls++
	if f.fail > 0 {
		f.fail--
		if f.commit {
			if _, err := f.Store.Append(ctx, events...); err != nil {
				return nil, err
			}
		}
		return nil, eventstore.ErrUnknownOutcome
	}
	return f.Store.Append(ctx, events...)
}

func TestRepository_SaveUnknownOutcome(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		fail    int
		commit  bool
		wantErr error
	}{
		{"CommittedThenLost", 1, true, nil},
		{"NotCommitted", 1, false, nil},
		{"StillUnknown", 2, false, eventstore.ErrUnknownOutcome},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &flaky{Store: memory.New(nil)}
			users := aggregate.NewRepository(s, NewUser, &aggregate.Options{Types: userTypes()})
			u, err := users.Load(ctx, "u-1")
			if err != nil {
				t.Fatal(err)
			}
			s.fail, s.commit = tc.fail, tc.commit
			_, err = users.Save(ctx, u, UserCreated{Name: "Ada"}, EmailChanged{Email: "ada@example.com"})
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("Save = %v, want %v", err, tc.wantErr)
			}
			if s.calls != 2 {
				t.Errorf("Append called %d times, want 2 (one retry)", s.calls)
			}
			events, err := eventstore.Events(ctx, s, "u-1")
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 0, false: 2}[tc.wantErr != nil]; len(events) != want {
				t.Fatalf("%d events stored, want %d", len(events), want)
			}
			if tc.wantErr == nil && u.Version != 2 {
				t.Errorf("aggregate at version %d after Save, want 2", u.Version)
			}
		})
	}
}

func TestRepository_BadConstructor(t *testing.T) {
	s := memory.New(nil)
	users := aggregate.NewRepository(s, func(string) *User { return NewUser("someone-else") }, nil)
	if _, err := users.Load(context.Background(), "u-1"); err == nil {
		t.Fatal("Load with a constructor that ignores the ID succeeded")
	}
}

func TestRepository_SnapshotWithoutStore(t *testing.T) {
	users := aggregate.NewRepository(memory.New(nil), NewUser, nil)
	if err := users.Snapshot(context.Background(), NewUser("u-1")); err == nil {
		t.Fatal("Snapshot without a snapshot store succeeded")
	}
}

type unregistered struct{}

func (unregistered) EventType() string { return "Unregistered" }

func TestRepository_SaveUnregistered(t *testing.T) {
	ctx := context.Background()
	s := memory.New(nil)
	users := aggregate.NewRepository(s, NewUser, &aggregate.Options{Types: userTypes()})
	u := NewUser("u-1")
	if _, err := users.Save(ctx, u, UserCreated{Name: "Ada"}, unregistered{}); !errors.Is(err, aggregate.ErrUnknownEvent) {
		t.Fatalf("Save of an unregistered type = %v, want ErrUnknownEvent", err)
	}
	if v, _ := s.Version(ctx, "u-1"); v != 0 || u.Version != 0 {
		t.Fatalf("a refused Save stored events or changed the aggregate: store at %d, aggregate at %d", v, u.Version)
	}
}

// conflictEveryTime returns a decide function that lets another writer save
// an event of the user between Run's load and its save, every time.
func conflictEveryTime(t *testing.T, users *aggregate.Repository[*User]) func(u *User) ([]aggregate.Data, error) {
	return func(u *User) ([]aggregate.Data, error) {
		other, err := users.Load(context.Background(), u.ID)
		if err != nil {
			t.Error(err)
			return nil, err
		}
		if _, err := users.Save(context.Background(), other, EmailChanged{Email: "other@example.com"}); err != nil {
			t.Error(err)
			return nil, err
		}
		return []aggregate.Data{EmailChanged{Email: "mine@example.com"}}, nil
	}
}

func TestRepository_RunBackoff(t *testing.T) {
	var attempts []int
	users := aggregate.NewRepository(memory.New(nil), NewUser, &aggregate.Options{
		Types:       userTypes(),
		MaxAttempts: 4,
		Backoff: func(attempt int) time.Duration {
			attempts = append(attempts, attempt)
			return time.Microsecond
		},
	})
	_, err := users.Run(context.Background(), "u-1", conflictEveryTime(t, users))
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("Run = %v, want an error matching ErrConflict", err)
	}
	// A pause after each conflict but the last: no pause before giving up.
	if want := []int{1, 2, 3}; !slices.Equal(attempts, want) {
		t.Fatalf("Backoff called with %v, want %v", attempts, want)
	}
}

func TestRepository_RunBackoffCtx(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	users := aggregate.NewRepository(memory.New(nil), NewUser, &aggregate.Options{
		Types: userTypes(),
		Backoff: func(int) time.Duration {
			cancel() // the caller gives up while Run waits
			return time.Hour
		},
	})
	done := make(chan error, 1)
	go func() {
		_, err := users.Run(ctx, "u-1", conflictEveryTime(t, users))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run cancelled during its pause = %v, want an error matching context.Canceled", err)
		}
	case <-time.After(time.Minute): // a watchdog for a pause of an hour, not a speed test
		t.Fatal("Run kept waiting out its pause after ctx was cancelled")
	}
}

func TestExponentialBackoff(t *testing.T) {
	const base, limit = time.Millisecond, 250 * time.Millisecond
	b := aggregate.ExponentialBackoff(base, limit)
	for _, tc := range []struct {
		attempt int
		bound   time.Duration
	}{
		{0, base}, {1, base}, {2, 2 * base}, {3, 4 * base}, {8, 128 * base},
		{9, limit}, {10, limit}, {63, limit}, {64, limit}, {1 << 30, limit},
	} {
		var low, high bool // pauses below and above half the bound: jitter over the whole range
		for range 200 {
			d := b(tc.attempt)
			if d < 0 || d >= tc.bound {
				t.Fatalf("pause after conflict %d = %v, want in [0, %v)", tc.attempt, d, tc.bound)
			}
			low, high = low || d < tc.bound/2, high || d >= tc.bound/2
		}
		if !low || !high {
			t.Errorf("200 pauses after conflict %d all on one side of %v", tc.attempt, tc.bound/2)
		}
	}
	if d := aggregate.ExponentialBackoff(0, time.Second)(5); d != 0 {
		t.Errorf("ExponentialBackoff(0, 1s)(5) = %v, want 0", d)
	}
	if d := aggregate.ExponentialBackoff(time.Second, 0)(5); d < 0 || d >= time.Second {
		t.Errorf("ExponentialBackoff(1s, 0)(5) = %v, want in [0, 1s)", d)
	}
}

// userCreatedV1 is UserCreated before it had an email: a struct kept for an
// upcaster, whose EventType is the registered type's.
type userCreatedV1 struct {
	FullName string `json:"fullname"`
}

func (userCreatedV1) EventType() string { return "UserCreated" }

func TestRepository_SaveOldEventType(t *testing.T) {
	ctx := context.Background()
	s := memory.New(nil)
	types := userTypes()
	types.Upcast("UserCreated", 1, aggregate.UpcastFunc(func(old userCreatedV1) UserCreated {
		return UserCreated{Name: old.FullName}
	}))
	users := aggregate.NewRepository(s, NewUser, &aggregate.Options{Types: types})
	u := NewUser("u-1")
	_, err := users.Save(ctx, u, EmailChanged{Email: "ada@example.com"}, userCreatedV1{FullName: "Ada"})
	if !errors.Is(err, aggregate.ErrWrongEventType) {
		t.Fatalf("Save of an old schema's type = %v, want an error matching ErrWrongEventType", err)
	}
	for _, name := range []string{"aggregate_test.UserCreated", "aggregate_test.userCreatedV1"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	if v, _ := s.Version(ctx, "u-1"); v != 0 || u.Version != 0 {
		t.Fatalf("a refused Save stored events or changed the aggregate: store at %d, aggregate at %d", v, u.Version)
	}
	// A nil pointer is refused too, without a panic.
	if _, err := users.Save(ctx, u, (*UserCreated)(nil)); !errors.Is(err, aggregate.ErrUnknownEvent) {
		t.Fatalf("Save of a nil *UserCreated = %v, want ErrUnknownEvent", err)
	}
	// A pointer to the registered type is stored as the value would be.
	if _, err := users.Save(ctx, u, &UserCreated{Name: "Ada", Email: "ada@example.com"}); err != nil {
		t.Fatalf("Save of a *UserCreated: %v", err)
	}
	got, err := users.Load(ctx, "u-1")
	if err != nil || got.Name != "Ada" || got.Email != "ada@example.com" || got.Version != 1 {
		t.Fatalf("Load = %+v, %v; want Ada at version 1", got, err)
	}
}

// Counter counts EmailChanged events. Its count is what matters, and JSON
// snapshots lose it: count is unexported, Changes is tagged json:"-".
type Counter struct {
	aggregate.Base
	count   int
	Changes int `json:"-"`
}

func (c *Counter) Apply(e aggregate.Event) error {
	switch e.Data.(type) {
	case UserCreated:
	case EmailChanged:
		c.count++
		c.Changes++
	default:
		return aggregate.UnknownEvent(e)
	}
	c.Version = e.Version
	return nil
}

func TestRepository_CheckSnapshotLosesState(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		snapshots bool
	}{{"WithSnapshot", true}, {"NoSnapshotStore", false}} {
		t.Run(tc.name, func(t *testing.T) {
			s := memory.New(nil)
			opts := &aggregate.Options{Types: userTypes()}
			if tc.snapshots {
				opts.Snapshots, opts.SnapshotEvery = s, 1
			}
			counters := aggregate.NewRepository(s, func(id string) *Counter { return &Counter{Base: aggregate.Base{ID: id}} }, opts)
			c, err := counters.Load(ctx, "c-1")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := counters.Save(ctx, c, UserCreated{Name: "Ada"}, EmailChanged{Email: "a@example.com"}, EmailChanged{Email: "b@example.com"}); err != nil {
				t.Fatal(err)
			}
			err = counters.CheckSnapshot(ctx, "c-1")
			if err == nil || !strings.Contains(err.Error(), "does not survive") {
				t.Fatalf("CheckSnapshot of an aggregate whose count JSON drops = %v, want an error", err)
			}
			if tc.snapshots {
				// What CheckSnapshot warns of: loaded through the snapshot, the count is gone.
				if got, err := counters.Load(ctx, "c-1"); err != nil || got.count != 0 || got.Version != 3 {
					t.Fatalf("Load through the snapshot = %+v, %v; want version 3 with the count lost", got, err)
				}
			}
		})
	}
}
