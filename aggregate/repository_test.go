package aggregate_test

import (
	"context"
	"errors"
	"testing"

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
