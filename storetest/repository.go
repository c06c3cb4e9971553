package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/aggregate"
)

// RunRepository runs the behaviour tests of package aggregate (loading,
// saving, retries, snapshots, temporal queries, upcasting, metadata) against
// the stores newStore returns, one fresh, empty store per subtest.
//
//	func TestRepository(t *testing.T) {
//		storetest.RunRepository(t, func(t *testing.T) eventstore.SnapshottingStore { return mustOpen(t) })
//	}
func RunRepository(t *testing.T, newStore func(t *testing.T) eventstore.SnapshottingStore) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s eventstore.SnapshottingStore)
	}{
		{"LoadEmpty", testRepoLoadEmpty},
		{"SaveLoad", testRepoSaveLoad},
		{"Conflict", testRepoConflict},
		{"RunRetriesConflict", testRepoRunRetries},
		{"RunBoundedRetries", testRepoRunBounded},
		{"RunConcurrent", testRepoRunConcurrent},
		{"RunContendedDefaults", testRepoRunContendedDefaults},
		{"RunDecideError", testRepoRunDecideError},
		{"SnapshotPolicy", testRepoSnapshotPolicy},
		{"SnapshotUsed", testRepoSnapshotUsed},
		{"SnapshotIgnored", testRepoSnapshotIgnored},
		{"LoadVersion", testRepoLoadVersion},
		{"LoadTime", testRepoLoadTime},
		{"Clock", testRepoClock},
		{"Upcast", testRepoUpcast},
		{"UnknownEvent", testRepoUnknownEvent},
		{"Metadata", testRepoMetadata},
		{"Idempotent", testRepoIdempotent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

// The test domain: a bank account.

type tOpened struct {
	Owner string `json:"owner"`
}

func (tOpened) EventType() string { return "AccountOpened" }

// tDeposited is at schema 2; at schema 1 it was {"cents": n}.
type tDeposited struct {
	Amount int64  `json:"amount"`
	Note   string `json:"note,omitempty"`
}

func (tDeposited) EventType() string { return "MoneyDeposited" }

type tDepositedV1 struct {
	Cents int64 `json:"cents"`
}

type tWithdrawn struct {
	Amount int64 `json:"amount"`
}

func (tWithdrawn) EventType() string { return "MoneyWithdrawn" }

type tAccount struct {
	aggregate.Base
	Owner   string `json:"owner"`
	Balance int64  `json:"balance"`
	Applied int    `json:"applied"` // how many events Apply saw since the start of this value's history
}

func newTAccount(id string) *tAccount { return &tAccount{Base: aggregate.Base{ID: id}} }

func (a *tAccount) Apply(e aggregate.Event) error {
	switch d := e.Data.(type) {
	case tOpened:
		a.Owner = d.Owner
	case tDeposited:
		a.Balance += d.Amount
	case tWithdrawn:
		a.Balance -= d.Amount
	default:
		return aggregate.UnknownEvent(e)
	}
	a.Applied++
	a.Version = e.Version
	return nil
}

func (a *tAccount) deposit(n int64) ([]aggregate.Data, error) {
	if a.Owner == "" {
		return nil, errNoAccount
	}
	return []aggregate.Data{tDeposited{Amount: n}}, nil
}

var errNoAccount = errors.New("no such account")

func tTypes() *aggregate.Registry {
	reg := aggregate.NewRegistry()
	aggregate.Register[tOpened](reg)
	aggregate.Register[tDeposited](reg)
	aggregate.Register[tWithdrawn](reg)
	reg.Upcast("MoneyDeposited", 1, aggregate.UpcastFunc(func(v1 tDepositedV1) tDeposited {
		return tDeposited{Amount: v1.Cents, Note: "upcast from v1"}
	}))
	return reg
}

func tRepo(s eventstore.SnapshottingStore, opts *aggregate.Options) *aggregate.Repository[*tAccount] {
	o := aggregate.Options{Types: tTypes(), Snapshots: s, SnapshotEvery: 1000, SnapshotSchema: "account/v1"}
	if opts != nil {
		o = *opts
		if o.Types == nil {
			o.Types = tTypes()
		}
	}
	return aggregate.NewRepository(s, newTAccount, &o)
}

func mustLoad(t *testing.T, r *aggregate.Repository[*tAccount], id string) *tAccount {
	t.Helper()
	a, err := r.Load(context.Background(), id)
	if err != nil {
		t.Fatalf("Load(%q): %v", id, err)
	}
	return a
}

func mustSave(t *testing.T, r *aggregate.Repository[*tAccount], a *tAccount, data ...aggregate.Data) []eventstore.Event {
	t.Helper()
	stored, err := r.Save(context.Background(), a, data...)
	if err != nil {
		t.Fatalf("Save(%q at version %d): %v", a.ID, a.Version, err)
	}
	return stored
}

// openTAccount opens id and makes n deposits of 1 to 10 (deposit i is i),
// one Save each; the account ends at version n+1.
func openTAccount(t *testing.T, r *aggregate.Repository[*tAccount], id string, n int) *tAccount {
	t.Helper()
	a := mustLoad(t, r, id)
	mustSave(t, r, a, tOpened{Owner: "ada"})
	for i := 1; i <= n; i++ {
		mustSave(t, r, a, tDeposited{Amount: int64(i)})
	}
	return a
}

func wantAccount(t *testing.T, a *tAccount, version uint64, balance int64) {
	t.Helper()
	if a.Version != version || a.Balance != balance {
		t.Fatalf("account %q at version %d with balance %d, want version %d with balance %d",
			a.ID, a.Version, a.Balance, version, balance)
	}
}

func testRepoLoadEmpty(t *testing.T, s eventstore.SnapshottingStore) {
	a := mustLoad(t, tRepo(s, nil), "acc-none")
	if a.ID != "acc-none" || a.Version != 0 || a.Owner != "" || a.Applied != 0 {
		t.Fatalf("Load of an aggregate with no events = %+v, want a fresh one", a)
	}
}

func testRepoSaveLoad(t *testing.T, s eventstore.SnapshottingStore) {
	ctx := context.Background()
	r := tRepo(s, nil)
	a := mustLoad(t, r, "acc-1")
	stored := mustSave(t, r, a, tOpened{Owner: "ada"}, tDeposited{Amount: 50}, tWithdrawn{Amount: 20})
	if len(stored) != 3 {
		t.Fatalf("Save returned %d events, want 3", len(stored))
	}
	for i, e := range stored {
		if e.Version != uint64(i+1) || e.AggregateID != "acc-1" || e.Position == 0 || e.ID == "" {
			t.Errorf("stored[%d] = version %d, aggregate %q, position %d, ID %q", i, e.Version, e.AggregateID, e.Position, e.ID)
		}
		if e.Metadata[aggregate.MetaSchemaVersion] == "" {
			t.Errorf("stored[%d] has no schema_version metadata: %v", i, e.Metadata)
		}
	}
	if stored[1].Type != "MoneyDeposited" || stored[1].Metadata[aggregate.MetaSchemaVersion] != "2" {
		t.Errorf("stored[1] = type %q schema %q, want MoneyDeposited at schema 2", stored[1].Type, stored[1].Metadata[aggregate.MetaSchemaVersion])
	}
	var d tDeposited
	if err := stored[1].Unmarshal(&d); err != nil || d.Amount != 50 {
		t.Errorf("stored payload %s = %+v, %v; want amount 50", stored[1].Payload, d, err)
	}
	// Save applied the events to a.
	wantAccount(t, a, 3, 30)
	if a.Owner != "ada" {
		t.Errorf("Owner = %q after Save, want ada", a.Owner)
	}
	got := mustLoad(t, r, "acc-1")
	wantAccount(t, got, 3, 30)
	if got.Owner != "ada" {
		t.Errorf("Owner = %q after Load, want ada", got.Owner)
	}
	// The events are in the store, readable by anyone.
	if v, err := s.Version(ctx, "acc-1"); err != nil || v != 3 {
		t.Errorf("store Version = %d, %v; want 3", v, err)
	}
	// Saving nothing writes nothing.
	if stored, err := r.Save(ctx, got); err != nil || stored != nil {
		t.Errorf("Save with no data = %v, %v; want nil, nil", stored, err)
	}
	wantAccount(t, mustLoad(t, r, "acc-1"), 3, 30)
}

func testRepoConflict(t *testing.T, s eventstore.SnapshottingStore) {
	r := tRepo(s, nil)
	openTAccount(t, r, "acc-c", 1)
	first := mustLoad(t, r, "acc-c")
	second := mustLoad(t, r, "acc-c")
	mustSave(t, r, first, tDeposited{Amount: 10})

	_, err := r.Save(context.Background(), second, tDeposited{Amount: 100})
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("stale Save = %v, want an error matching ErrConflict", err)
	}
	var ce *eventstore.ConflictError
	if !errors.As(err, &ce) || ce.Expected != 2 || ce.Actual != 3 {
		t.Fatalf("stale Save = %v, want a *ConflictError expecting 2, actual 3", err)
	}
	wantAccount(t, second, 2, 1) // unchanged
	wantAccount(t, mustLoad(t, r, "acc-c"), 3, 11)
}

func testRepoRunRetries(t *testing.T, s eventstore.SnapshottingStore) {
	r := tRepo(s, nil)
	other := tRepo(s, nil)
	openTAccount(t, r, "acc-r", 0)
	calls := 0
	a, err := r.Run(context.Background(), "acc-r", func(a *tAccount) ([]aggregate.Data, error) {
		calls++
		if calls == 1 {
			// Another writer gets in between this load and this save.
			b := mustLoad(t, other, "acc-r")
			mustSave(t, other, b, tDeposited{Amount: 5})
		}
		return a.deposit(7)
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if calls != 2 {
		t.Errorf("decide ran %d times, want 2 (one conflict, one retry)", calls)
	}
	wantAccount(t, a, 3, 12)
	wantAccount(t, mustLoad(t, r, "acc-r"), 3, 12)
}

func testRepoRunBounded(t *testing.T, s eventstore.SnapshottingStore) {
	r := tRepo(s, &aggregate.Options{MaxAttempts: 2})
	openTAccount(t, r, "acc-b", 0)
	calls := 0
	_, err := r.Run(context.Background(), "acc-b", func(a *tAccount) ([]aggregate.Data, error) {
		calls++
		b := mustLoad(t, r, "acc-b")
		mustSave(t, r, b, tDeposited{Amount: 1}) // always in the way
		return a.deposit(100)
	})
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("Run = %v, want an error matching ErrConflict after the last attempt", err)
	}
	var ce *eventstore.ConflictError
	if !errors.As(err, &ce) {
		t.Errorf("Run = %v, want a *ConflictError inside", err)
	}
	if calls != 2 {
		t.Errorf("decide ran %d times, want MaxAttempts = 2", calls)
	}
	wantAccount(t, mustLoad(t, r, "acc-b"), 3, 2)
}

func testRepoRunConcurrent(t *testing.T, s eventstore.SnapshottingStore) {
	const workers, each = 4, 5
	r := tRepo(s, &aggregate.Options{Snapshots: s, SnapshotEvery: 3, SnapshotSchema: "account/v1", MaxAttempts: 1000})
	openTAccount(t, r, "acc-cc", 0)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range workers {
		wg.Go(func() {
			for range each {
				if _, err := r.Run(context.Background(), "acc-cc", func(a *tAccount) ([]aggregate.Data, error) {
					return a.deposit(1)
				}); err != nil {
					t.Errorf("Run: %v", err)
					failed.Add(1)
					return
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		return
	}
	wantAccount(t, mustLoad(t, r, "acc-cc"), workers*each+1, workers*each)
	if err := r.CheckSnapshot(context.Background(), "acc-cc"); err != nil {
		t.Error(err)
	}
}

// testRepoRunContendedDefaults runs 16 writers, each running 20 commands on
// one aggregate, with the default retry options: every command must succeed.
func testRepoRunContendedDefaults(t *testing.T, s eventstore.SnapshottingStore) {
	const writers, each = 16, 20
	r := tRepo(s, nil) // the default MaxAttempts and Backoff
	openTAccount(t, r, "acc-hot", 0)
	var wg sync.WaitGroup
	var decisions, most atomic.Int64
	for range writers {
		wg.Go(func() {
			for range each {
				n := int64(0)
				if _, err := r.Run(context.Background(), "acc-hot", func(a *tAccount) ([]aggregate.Data, error) {
					n++
					return a.deposit(1)
				}); err != nil {
					t.Errorf("Run with the default options, %d writers on one aggregate: %v", writers, err)
					return
				}
				decisions.Add(n)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d commands took %d attempts, at most %d for one", writers*each, decisions.Load(), most.Load())
	if !t.Failed() {
		wantAccount(t, mustLoad(t, r, "acc-hot"), writers*each+1, writers*each)
	}
}

func testRepoRunDecideError(t *testing.T, s eventstore.SnapshottingStore) {
	r := tRepo(s, nil)
	_, err := r.Run(context.Background(), "acc-missing", func(a *tAccount) ([]aggregate.Data, error) {
		return a.deposit(10)
	})
	if !errors.Is(err, errNoAccount) {
		t.Fatalf("Run = %v, want decide's error", err)
	}
	if v, err := s.Version(context.Background(), "acc-missing"); err != nil || v != 0 {
		t.Fatalf("store Version = %d, %v after a refused command; want 0", v, err)
	}
	// No events: nothing saved, the aggregate returned as loaded.
	a, err := r.Run(context.Background(), "acc-missing", func(*tAccount) ([]aggregate.Data, error) { return nil, nil })
	if err != nil || a.Version != 0 {
		t.Fatalf("Run with no events = %+v, %v; want version 0, nil", a, err)
	}
}

func testRepoSnapshotPolicy(t *testing.T, s eventstore.SnapshottingStore) {
	ctx := context.Background()
	var snapErrs []error
	r := tRepo(s, &aggregate.Options{Snapshots: s, SnapshotEvery: 3, SnapshotSchema: "account/v1",
		OnSnapshotError: func(_ string, err error) { snapErrs = append(snapErrs, err) }})
	a := openTAccount(t, r, "acc-s", 1) // versions 1, 2: no snapshot yet
	if _, err := s.LoadSnapshot(ctx, "acc-s"); !errors.Is(err, eventstore.ErrNotFound) {
		t.Fatalf("LoadSnapshot at version 2 = %v, want ErrNotFound", err)
	}
	mustSave(t, r, a, tDeposited{Amount: 2}) // version 3
	snap, err := s.LoadSnapshot(ctx, "acc-s")
	if err != nil || snap.Version != 3 || snap.Schema != "account/v1" {
		t.Fatalf("LoadSnapshot after version 3 = version %d schema %q, %v; want version 3 account/v1", snap.Version, snap.Schema, err)
	}
	// A save that jumps over a multiple (4, 5, 6, 7) snapshots at its end.
	mustSave(t, r, a, tDeposited{Amount: 1}, tDeposited{Amount: 1}, tDeposited{Amount: 1}, tDeposited{Amount: 1})
	if snap, err := s.LoadSnapshot(ctx, "acc-s"); err != nil || snap.Version != 7 {
		t.Fatalf("LoadSnapshot after version 7 = version %d, %v; want 7", snap.Version, err)
	}
	mustSave(t, r, a, tDeposited{Amount: 1}) // version 8: no new snapshot
	if snap, err := s.LoadSnapshot(ctx, "acc-s"); err != nil || snap.Version != 7 {
		t.Fatalf("LoadSnapshot after version 8 = version %d, %v; want 7", snap.Version, err)
	}
	if len(snapErrs) > 0 {
		t.Fatalf("snapshot errors: %v", snapErrs)
	}
	wantAccount(t, mustLoad(t, r, "acc-s"), 8, 8)
	if err := r.CheckSnapshot(ctx, "acc-s"); err != nil {
		t.Fatal(err)
	}
	// Deleting the snapshot changes no result.
	if err := s.DeleteSnapshot(ctx, "acc-s"); err != nil {
		t.Fatal(err)
	}
	wantAccount(t, mustLoad(t, r, "acc-s"), 8, 8)
	// Without a snapshot store the repository never writes one.
	plain := tRepo(s, &aggregate.Options{SnapshotEvery: 1})
	b := mustLoad(t, plain, "acc-s")
	mustSave(t, plain, b, tDeposited{Amount: 1})
	if _, err := s.LoadSnapshot(ctx, "acc-s"); !errors.Is(err, eventstore.ErrNotFound) {
		t.Fatalf("LoadSnapshot after a save without snapshots = %v, want ErrNotFound", err)
	}
}

func testRepoSnapshotUsed(t *testing.T, s eventstore.SnapshottingStore) {
	ctx := context.Background()
	r := tRepo(s, nil)
	openTAccount(t, r, "acc-u", 4) // version 5, balance 10
	// A snapshot that disagrees with the events shows that Load starts
	// from it and applies only the events after it.
	state, _ := json.Marshal(&tAccount{Base: aggregate.Base{ID: "acc-u", Version: 3}, Owner: "ada", Balance: 1000})
	if err := s.SaveSnapshot(ctx, eventstore.Snapshot{AggregateID: "acc-u", Version: 3, Schema: "account/v1", State: state}); err != nil {
		t.Fatal(err)
	}
	a := mustLoad(t, r, "acc-u")
	wantAccount(t, a, 5, 1000+3+4)
	if a.Applied != 2 {
		t.Errorf("Load applied %d events after the snapshot, want 2", a.Applied)
	}
	if err := r.CheckSnapshot(ctx, "acc-u"); err == nil {
		t.Error("CheckSnapshot = nil for a snapshot that disagrees with the events")
	}
	// LoadVersion below the snapshot cannot use it.
	b, err := r.LoadVersion(ctx, "acc-u", 2)
	if err != nil {
		t.Fatal(err)
	}
	wantAccount(t, b, 2, 1)
}

func testRepoSnapshotIgnored(t *testing.T, s eventstore.SnapshottingStore) {
	ctx := context.Background()
	r := tRepo(s, nil)
	openTAccount(t, r, "acc-i", 4) // version 5, balance 10
	good, _ := json.Marshal(&tAccount{Base: aggregate.Base{ID: "acc-i", Version: 3}, Owner: "ada", Balance: 1000})
	for _, tc := range []struct {
		name string
		snap eventstore.Snapshot
	}{
		{"OtherSchema", eventstore.Snapshot{Version: 3, Schema: "account/v0", State: good}},
		{"NotJSON", eventstore.Snapshot{Version: 3, Schema: "account/v1", State: []byte{0xff, 0, 1}}},
		{"UnknownField", eventstore.Snapshot{Version: 3, Schema: "account/v1",
			State: []byte(`{"id":"acc-i","version":3,"owner":"ada","balance":1000,"overdraft":5}`)}},
		{"WrongType", eventstore.Snapshot{Version: 3, Schema: "account/v1",
			State: []byte(`{"id":"acc-i","version":3,"owner":"ada","balance":"1000"}`)}},
		{"VersionMismatch", eventstore.Snapshot{Version: 3, Schema: "account/v1",
			State: []byte(`{"id":"acc-i","version":2,"owner":"ada","balance":1000}`)}},
		{"IDMismatch", eventstore.Snapshot{Version: 3, Schema: "account/v1",
			State: []byte(`{"id":"acc-other","version":3,"owner":"ada","balance":1000}`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.snap.AggregateID = "acc-i"
			if err := s.DeleteSnapshot(ctx, "acc-i"); err != nil {
				t.Fatal(err)
			}
			if err := s.SaveSnapshot(ctx, tc.snap); err != nil {
				t.Fatal(err)
			}
			a := mustLoad(t, r, "acc-i")
			wantAccount(t, a, 5, 10)
			if a.Applied != 5 {
				t.Errorf("Load applied %d events, want all 5 (snapshot ignored)", a.Applied)
			}
		})
	}
}

func testRepoLoadVersion(t *testing.T, s eventstore.SnapshottingStore) {
	ctx := context.Background()
	r := tRepo(s, &aggregate.Options{Snapshots: s, SnapshotEvery: 2, SnapshotSchema: "account/v1"})
	openTAccount(t, r, "acc-v", 5) // version 6, balance 15, snapshot at 6
	balances := []int64{0, 0, 1, 3, 6, 10, 15}
	for v := uint64(0); v <= 6; v++ {
		a, err := r.LoadVersion(ctx, "acc-v", v)
		if err != nil {
			t.Fatalf("LoadVersion(%d): %v", v, err)
		}
		wantAccount(t, a, v, balances[v])
	}
	if _, err := r.LoadVersion(ctx, "acc-v", 7); !errors.Is(err, eventstore.ErrNotFound) {
		t.Fatalf("LoadVersion beyond the last event = %v, want ErrNotFound", err)
	}
	if _, err := r.LoadVersion(ctx, "acc-none", 1); !errors.Is(err, eventstore.ErrNotFound) {
		t.Fatalf("LoadVersion of an aggregate with no events = %v, want ErrNotFound", err)
	}
}

func testRepoLoadTime(t *testing.T, s eventstore.SnapshottingStore) {
	ctx := context.Background()
	r := tRepo(s, nil)
	reg := tTypes()
	day := func(d int) time.Time { return time.Date(2024, 3, d, 12, 0, 0, 0, time.UTC) }
	var events []eventstore.Event
	for i, d := range []aggregate.Data{tOpened{Owner: "ada"}, tDeposited{Amount: 100}, tWithdrawn{Amount: 30}, tDeposited{Amount: 5}} {
		e, err := reg.NewEvent("acc-t", d)
		if err != nil {
			t.Fatal(err)
		}
		e.Version = uint64(i + 1)
		e.Timestamp = day(1 + 2*i) // days 1, 3, 5, 7
		events = append(events, e)
	}
	if _, err := s.Append(ctx, events...); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at      time.Time
		version uint64
		balance int64
	}{
		{day(1).Add(-time.Second), 0, 0},
		{day(1), 1, 0}, // an event at exactly t is included
		{day(2), 1, 0},
		{day(4), 2, 100},
		{day(5).Add(time.Microsecond), 3, 70},
		{day(30), 4, 75},
	} {
		a, err := r.LoadTime(ctx, "acc-t", tc.at)
		if err != nil {
			t.Fatalf("LoadTime(%v): %v", tc.at, err)
		}
		if a.Version != tc.version || a.Balance != tc.balance {
			t.Errorf("LoadTime(%v) = version %d balance %d, want version %d balance %d",
				tc.at, a.Version, a.Balance, tc.version, tc.balance)
		}
	}

	// Timestamps out of version order: the state as of t is the versions
	// up to the first event after t, never a state with a version missing.
	events = events[:0]
	for i, d := range []aggregate.Data{tOpened{Owner: "bob"}, tDeposited{Amount: 100}, tDeposited{Amount: 5}} {
		e, err := reg.NewEvent("acc-t2", d)
		if err != nil {
			t.Fatal(err)
		}
		e.Version = uint64(i + 1)
		e.Timestamp = day([]int{1, 5, 3}[i])
		events = append(events, e)
	}
	if _, err := s.Append(ctx, events...); err != nil {
		t.Fatal(err)
	}
	a, err := r.LoadTime(ctx, "acc-t2", day(4))
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != 1 || a.Balance != 0 {
		t.Errorf("LoadTime(day 4) with timestamps 1, 5, 3 = version %d balance %d, want version 1 balance 0", a.Version, a.Balance)
	}
}

// testRepoClock checks that Options.Now stamps the events Save stores and
// the snapshots it takes.
func testRepoClock(t *testing.T, s eventstore.SnapshottingStore) {
	ctx := context.Background()
	then := time.Date(2019, 6, 1, 14, 30, 0, 123456789, time.FixedZone("CEST", 2*3600))
	want := eventstore.NormalizeTime(then) // 12:30:00.123456 UTC
	r := tRepo(s, &aggregate.Options{Snapshots: s, SnapshotEvery: 2, SnapshotSchema: "account/v1",
		Now: func() time.Time { return then }})
	a := mustLoad(t, r, "acc-clock")
	stored := mustSave(t, r, a, tOpened{Owner: "ada"}, tDeposited{Amount: 5})
	for i, e := range stored {
		if !e.Timestamp.Equal(want) {
			t.Errorf("Save returned event %d stamped %v, want Options.Now's %v", i, e.Timestamp, want)
		}
	}
	events, err := eventstore.Events(ctx, s, "acc-clock")
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range events {
		if !e.Timestamp.Equal(want) {
			t.Errorf("stored event %d stamped %v, want Options.Now's %v", i, e.Timestamp, want)
		}
	}
	snap, err := s.LoadSnapshot(ctx, "acc-clock")
	if err != nil || snap.Version != 2 || !snap.Timestamp.Equal(want) {
		t.Errorf("LoadSnapshot = version %d stamped %v, %v; want version 2 stamped %v", snap.Version, snap.Timestamp, err, want)
	}
	// The clock's times are the ones LoadTime goes by.
	for _, tc := range []struct {
		at      time.Time
		version uint64
	}{{want.Add(-time.Microsecond), 0}, {want, 2}} {
		got, err := r.LoadTime(ctx, "acc-clock", tc.at)
		if err != nil {
			t.Fatalf("LoadTime(%v): %v", tc.at, err)
		}
		if got.Version != tc.version {
			t.Errorf("LoadTime(%v) = version %d, want %d", tc.at, got.Version, tc.version)
		}
	}
}

func testRepoUpcast(t *testing.T, s eventstore.SnapshottingStore) {
	ctx := context.Background()
	// Events written before MoneyDeposited had a schema_version, in the
	// v1 shape, by plain Appends.
	_, err := s.Append(ctx,
		eventstore.Event{AggregateID: "acc-old", Type: "AccountOpened", Payload: json.RawMessage(`{"owner":"bob"}`)},
		eventstore.Event{AggregateID: "acc-old", Type: "MoneyDeposited", Payload: json.RawMessage(`{"cents":250}`)},
		eventstore.Event{AggregateID: "acc-old", Type: "MoneyDeposited", Payload: json.RawMessage(`{"cents":50}`),
			Metadata: map[string]string{aggregate.MetaSchemaVersion: "1"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	r := tRepo(s, nil)
	a := mustLoad(t, r, "acc-old")
	wantAccount(t, a, 3, 300)
	// New events are written in the current shape and read back unchanged.
	mustSave(t, r, a, tDeposited{Amount: 1})
	wantAccount(t, mustLoad(t, r, "acc-old"), 4, 301)
	events, err := eventstore.Events(ctx, s, "acc-old")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(events[1].Payload); got != `{"cents":250}` {
		t.Errorf("stored payload = %s; upcasting must not rewrite the store", got)
	}
	if !strings.Contains(string(events[3].Payload), `"amount":1`) {
		t.Errorf("new payload = %s, want the current shape", events[3].Payload)
	}

	// Without the upcaster the old events cannot be read.
	noUp := aggregate.NewRegistry()
	aggregate.Register[tOpened](noUp)
	aggregate.Register[tDeposited](noUp)
	noUp.Upcast("MoneyDeposited", 2, aggregate.UpcastFunc(func(d tDeposited) tDeposited { return d }))
	if _, err := tRepo(s, &aggregate.Options{Types: noUp}).Load(ctx, "acc-old"); !errors.Is(err, aggregate.ErrUpcast) {
		t.Errorf("Load with the 1->2 upcaster missing = %v, want ErrUpcast", err)
	}
	// A registry that knows only schema 1 refuses schema 2 events rather
	// than misreading them.
	old := aggregate.NewRegistry()
	aggregate.Register[tOpened](old)
	aggregate.Register[tDeposited](old)
	if _, err := tRepo(s, &aggregate.Options{Types: old}).Load(ctx, "acc-old"); !errors.Is(err, aggregate.ErrUpcast) {
		t.Errorf("Load of a newer schema = %v, want ErrUpcast", err)
	}
}

func testRepoUnknownEvent(t *testing.T, s eventstore.SnapshottingStore) {
	ctx := context.Background()
	if _, err := s.Append(ctx,
		eventstore.Event{AggregateID: "acc-x", Type: "AccountOpened", Payload: json.RawMessage(`{"owner":"eve"}`)},
		eventstore.Event{AggregateID: "acc-x", Type: "AccountFrozen", Payload: json.RawMessage(`{}`)},
	); err != nil {
		t.Fatal(err)
	}
	_, err := tRepo(s, nil).Load(ctx, "acc-x")
	if !errors.Is(err, aggregate.ErrUnknownEvent) || !errors.Is(err, aggregate.ErrApply) {
		t.Fatalf("Load of an unknown event type = %v, want ErrApply and ErrUnknownEvent", err)
	}
	if !strings.Contains(err.Error(), "AccountFrozen") {
		t.Errorf("error %q does not name the event type", err)
	}
}

type tDeposit struct {
	Account string
	Amount  int64
}

func (tDeposit) CommandType() string { return "Deposit" }

func testRepoMetadata(t *testing.T, s eventstore.SnapshottingStore) {
	ctx := context.Background()
	r := tRepo(s, nil)
	openTAccount(t, r, "acc-m", 0)
	bus := aggregate.NewBus()
	aggregate.Handle(bus, func(ctx context.Context, c tDeposit) (int64, error) {
		a, err := r.Run(ctx, c.Account, func(a *tAccount) ([]aggregate.Data, error) { return a.deposit(c.Amount) })
		if err != nil {
			return 0, err
		}
		return a.Balance, nil
	})

	// A command starts a conversation: its ID is both causation and correlation.
	balance, err := aggregate.Dispatch[int64](ctx, bus, tDeposit{Account: "acc-m", Amount: 4})
	if err != nil || balance != 4 {
		t.Fatalf("Dispatch = %d, %v; want 4, nil", balance, err)
	}
	events, err := eventstore.Events(ctx, s, "acc-m")
	if err != nil {
		t.Fatal(err)
	}
	first := events[1].Metadata
	if first[aggregate.MetaCausationID] == "" || first[aggregate.MetaCorrelationID] != first[aggregate.MetaCausationID] {
		t.Fatalf("metadata of a command's event = %v, want causation_id = correlation_id", first)
	}

	// Within a conversation the correlation is kept, and other metadata
	// of the context reaches the events.
	cctx := aggregate.WithMetadata(ctx, map[string]string{aggregate.MetaCorrelationID: "req-789", "user_id": "admin-456"})
	if _, err := aggregate.Dispatch[int64](cctx, bus, tDeposit{Account: "acc-m", Amount: 1}); err != nil {
		t.Fatal(err)
	}
	// An event causes the next command.
	events, _ = eventstore.Events(ctx, s, "acc-m")
	second := events[2]
	if second.Metadata[aggregate.MetaCorrelationID] != "req-789" || second.Metadata["user_id"] != "admin-456" ||
		second.Metadata[aggregate.MetaCausationID] == "" || second.Metadata[aggregate.MetaCausationID] == first[aggregate.MetaCausationID] {
		t.Fatalf("metadata = %v, want correlation_id req-789, user_id admin-456 and a new causation_id", second.Metadata)
	}
	ectx := aggregate.CausedBy(ctx, second)
	md := aggregate.Metadata(ectx)
	if md[aggregate.MetaCorrelationID] != "req-789" || md[aggregate.MetaCausationID] != second.ID {
		t.Fatalf("CausedBy metadata = %v, want correlation req-789 and causation %s", md, second.ID)
	}
	a, err := r.Run(ectx, "acc-m", func(a *tAccount) ([]aggregate.Data, error) { return a.deposit(1) })
	if err != nil {
		t.Fatal(err)
	}
	events, _ = eventstore.Events(ctx, s, "acc-m")
	if got := events[a.Version-1].Metadata; got[aggregate.MetaCausationID] != second.ID || got[aggregate.MetaCorrelationID] != "req-789" {
		t.Fatalf("metadata of an event caused by an event = %v", got)
	}

	// A command nobody handles, or with the wrong result type.
	if _, err := aggregate.Dispatch[string](ctx, bus, tDeposit{Account: "acc-m", Amount: 1}); !errors.Is(err, aggregate.ErrUnknownCommand) {
		t.Fatalf("Dispatch with a wrong result type = %v, want ErrUnknownCommand", err)
	}
	if _, err := aggregate.Dispatch[int64](ctx, aggregate.NewBus(), tDeposit{}); !errors.Is(err, aggregate.ErrUnknownCommand) {
		t.Fatalf("Dispatch on an empty bus = %v, want ErrUnknownCommand", err)
	}
}

func testRepoIdempotent(t *testing.T, s eventstore.SnapshottingStore) {
	ctx := context.Background()
	r := tRepo(s, nil)
	openTAccount(t, r, "acc-d", 3) // version 4, balance 6
	events, err := eventstore.Events(ctx, s, "acc-d")
	if err != nil {
		t.Fatal(err)
	}
	reg := tTypes()
	a := newTAccount("acc-d")
	if err := aggregate.Replay(a, reg, events...); err != nil {
		t.Fatal(err)
	}
	// Applying events the aggregate already has changes nothing.
	if err := aggregate.Replay(a, reg, events...); err != nil {
		t.Fatal(err)
	}
	if err := aggregate.Replay(a, reg, events[2]); err != nil {
		t.Fatal(err)
	}
	wantAccount(t, a, 4, 6)
	if a.Applied != 4 {
		t.Fatalf("Apply ran %d times for 4 events", a.Applied)
	}
	// A gap is an error, not a silent skip.
	b := newTAccount("acc-d")
	if err := aggregate.Replay(b, reg, events[1:]...); !errors.Is(err, eventstore.ErrCorrupt) {
		t.Fatalf("Replay with a gap = %v, want ErrCorrupt", err)
	}
	// An Apply that forgets the version is caught.
	if err := aggregate.Replay(&forgetful{tAccount: newTAccount("acc-d")}, reg, events...); !errors.Is(err, aggregate.ErrApply) {
		t.Fatalf("Replay with an Apply that does not set the version = %v, want ErrApply", err)
	}
}

type forgetful struct{ *tAccount }

func (f *forgetful) Apply(e aggregate.Event) error {
	v := f.Version
	err := f.tAccount.Apply(e)
	f.Version = v
	return err
}
