package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
)

// RunSnapshots runs the conformance tests of eventstore.SnapshotStore against
// the stores newStore returns. Each subtest calls newStore once and expects
// an empty store; newStore registers its own cleanup with t.Cleanup.
//
// A backend's test calls it in one line:
//
//	func TestSnapshots(t *testing.T) {
//		storetest.RunSnapshots(t, func(t *testing.T) eventstore.SnapshotStore { return mustOpen(t) })
//	}
func RunSnapshots(t *testing.T, newStore func(t *testing.T) eventstore.SnapshotStore) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s eventstore.SnapshotStore)
	}{
		{"LoadNone", testSnapshotLoadNone},
		{"RoundTrip", testSnapshotRoundTrip},
		{"Timestamp", testSnapshotTimestamp},
		{"ZeroTimestamp", testSnapshotZeroTimestamp},
		{"EmptyState", testSnapshotEmptyState},
		{"LargeState", testSnapshotLargeState},
		{"NoAliasing", testSnapshotNoAliasing},
		{"LowerVersionKept", testSnapshotLowerVersionKept},
		{"HigherVersionReplaces", testSnapshotHigherVersionReplaces},
		{"SameVersionReplaces", testSnapshotSameVersionReplaces},
		{"Delete", testSnapshotDelete},
		{"DeleteNone", testSnapshotDeleteNone},
		{"Isolation", testSnapshotIsolation},
		{"Names", testSnapshotNames},
		{"Invalid", testSnapshotInvalid},
		{"ConcurrentSaves", testSnapshotConcurrentSaves},
		{"ContextCanceled", testSnapshotContextCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

// snapAt returns a snapshot of id at version v with a state that names both.
func snapAt(id string, v uint64) eventstore.Snapshot {
	return eventstore.Snapshot{
		AggregateID: id,
		Version:     v,
		Schema:      "test/v1",
		State:       fmt.Appendf(nil, `{"id":%q,"version":%d}`, id, v),
		Timestamp:   time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC),
	}
}

func mustSaveSnapshot(t *testing.T, s eventstore.SnapshotStore, snap eventstore.Snapshot) {
	t.Helper()
	if err := s.SaveSnapshot(context.Background(), snap); err != nil {
		t.Fatalf("SaveSnapshot(%q, version %d): %v", snap.AggregateID, snap.Version, err)
	}
}

func mustLoadSnapshot(t *testing.T, s eventstore.SnapshotStore, id string) eventstore.Snapshot {
	t.Helper()
	snap, err := s.LoadSnapshot(context.Background(), id)
	if err != nil {
		t.Fatalf("LoadSnapshot(%q): %v", id, err)
	}
	return snap
}

func wantNoSnapshot(t *testing.T, s eventstore.SnapshotStore, id string) {
	t.Helper()
	snap, err := s.LoadSnapshot(context.Background(), id)
	if !errors.Is(err, eventstore.ErrNotFound) {
		t.Fatalf("LoadSnapshot(%q) = version %d, %v; want an error matching ErrNotFound", id, snap.Version, err)
	}
}

// checkSnapshot compares every field; timestamps must be equal instants in UTC.
func checkSnapshot(t *testing.T, got, want eventstore.Snapshot) {
	t.Helper()
	if got.AggregateID != want.AggregateID {
		t.Errorf("AggregateID = %q, want %q", got.AggregateID, want.AggregateID)
	}
	if got.Version != want.Version {
		t.Errorf("Version = %d, want %d", got.Version, want.Version)
	}
	if got.Schema != want.Schema {
		t.Errorf("Schema = %q, want %q", got.Schema, want.Schema)
	}
	if !bytes.Equal(got.State, want.State) {
		t.Errorf("State = %q, want %q", got.State, want.State)
	}
	if !got.Timestamp.Equal(want.Timestamp) {
		t.Errorf("Timestamp = %v, want %v", got.Timestamp, want.Timestamp)
	}
	if got.Timestamp.Location() != time.UTC {
		t.Errorf("Timestamp location = %v, want UTC", got.Timestamp.Location())
	}
}

func testSnapshotLoadNone(t *testing.T, s eventstore.SnapshotStore) {
	wantNoSnapshot(t, s, "never-saved")
	// The empty ID, which no snapshot has (SaveSnapshot refuses it), on a
	// store that has never held a snapshot: not found, not an error.
	wantNoSnapshot(t, s, "")
}

func testSnapshotRoundTrip(t *testing.T, s eventstore.SnapshotStore) {
	// Binary state with a NUL byte and invalid UTF-8: State is opaque bytes.
	want := eventstore.Snapshot{
		AggregateID: "account-1",
		Version:     42,
		Schema:      "account/v2",
		State:       []byte{0, 1, 2, 0xff, 0xfe, '{', '}', 0},
		Timestamp:   time.Date(2024, 1, 2, 3, 4, 5, 678901000, time.UTC),
	}
	mustSaveSnapshot(t, s, want)
	checkSnapshot(t, mustLoadSnapshot(t, s, "account-1"), want)

	// JSON state comes back byte for byte: whitespace and key order kept.
	want = snapAt("account-2", 7)
	want.State = []byte(`{ "z": 1,  "a": [ 2, 3 ] }`)
	mustSaveSnapshot(t, s, want)
	checkSnapshot(t, mustLoadSnapshot(t, s, "account-2"), want)
}

func testSnapshotTimestamp(t *testing.T, s eventstore.SnapshotStore) {
	// A timestamp in another zone, with nanoseconds, is kept in UTC
	// truncated to microseconds.
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	snap := snapAt("ts-1", 3)
	snap.Timestamp = time.Date(2023, 12, 31, 23, 59, 59, 999999999, zone)
	mustSaveSnapshot(t, s, snap)
	want := snap
	want.Timestamp = eventstore.NormalizeTime(snap.Timestamp)
	got := mustLoadSnapshot(t, s, "ts-1")
	checkSnapshot(t, got, want)
	if got.Timestamp.Nanosecond()%1000 != 0 {
		t.Errorf("Timestamp %v has sub-microsecond digits", got.Timestamp)
	}
}

func testSnapshotZeroTimestamp(t *testing.T, s eventstore.SnapshotStore) {
	before := time.Now().UTC().Truncate(time.Microsecond)
	snap := snapAt("ts-zero", 1)
	snap.Timestamp = time.Time{}
	mustSaveSnapshot(t, s, snap)
	after := time.Now().UTC().Add(time.Microsecond)
	got := mustLoadSnapshot(t, s, "ts-zero")
	if got.Timestamp.Before(before) || got.Timestamp.After(after) {
		t.Errorf("Timestamp = %v, want the time of SaveSnapshot, between %v and %v", got.Timestamp, before, after)
	}
	if got.Timestamp.Location() != time.UTC {
		t.Errorf("Timestamp location = %v, want UTC", got.Timestamp.Location())
	}
}

func testSnapshotEmptyState(t *testing.T, s eventstore.SnapshotStore) {
	for i, state := range [][]byte{nil, {}} {
		id := fmt.Sprintf("empty-%d", i)
		snap := snapAt(id, 1)
		snap.State = state
		snap.Schema = ""
		mustSaveSnapshot(t, s, snap)
		got := mustLoadSnapshot(t, s, id)
		if len(got.State) != 0 || got.Schema != "" || got.Version != 1 {
			t.Errorf("LoadSnapshot(%q) = schema %q, state %q, version %d; want empty schema and state at version 1",
				id, got.Schema, got.State, got.Version)
		}
	}
}

func testSnapshotLargeState(t *testing.T, s eventstore.SnapshotStore) {
	snap := snapAt("large", 1000)
	snap.State = make([]byte, 4<<20) // 4 MiB, above the default event payload limit
	for i := range snap.State {
		snap.State[i] = byte(i * 7)
	}
	mustSaveSnapshot(t, s, snap)
	got := mustLoadSnapshot(t, s, "large")
	if !bytes.Equal(got.State, snap.State) {
		t.Fatalf("large State differs: got %d bytes, want %d", len(got.State), len(snap.State))
	}
}

func testSnapshotNoAliasing(t *testing.T, s eventstore.SnapshotStore) {
	snap := snapAt("alias", 1)
	state := []byte("original")
	snap.State = state
	mustSaveSnapshot(t, s, snap)
	copy(state, "CHANGED!") // the caller reuses its buffer

	got := mustLoadSnapshot(t, s, "alias")
	if string(got.State) != "original" {
		t.Fatalf("State = %q after the caller changed its buffer; SaveSnapshot must copy", got.State)
	}
	copy(got.State, "CHANGED!") // the caller changes what it loaded
	if again := mustLoadSnapshot(t, s, "alias"); string(again.State) != "original" {
		t.Fatalf("State = %q after the caller changed a loaded copy; LoadSnapshot must copy", again.State)
	}
}

func testSnapshotLowerVersionKept(t *testing.T, s eventstore.SnapshotStore) {
	high := snapAt("lower", 5)
	mustSaveSnapshot(t, s, high)
	low := snapAt("lower", 3)
	low.Schema = "test/v0"
	if err := s.SaveSnapshot(context.Background(), low); err != nil {
		t.Fatalf("SaveSnapshot of a lower version = %v; want nil (it is ignored)", err)
	}
	checkSnapshot(t, mustLoadSnapshot(t, s, "lower"), high)
}

func testSnapshotHigherVersionReplaces(t *testing.T, s eventstore.SnapshotStore) {
	mustSaveSnapshot(t, s, snapAt("higher", 2))
	want := snapAt("higher", 9)
	want.Schema = "test/v2"
	mustSaveSnapshot(t, s, want)
	checkSnapshot(t, mustLoadSnapshot(t, s, "higher"), want)
}

func testSnapshotSameVersionReplaces(t *testing.T, s eventstore.SnapshotStore) {
	// A new shape of the aggregate rewrites the snapshot at the same version.
	mustSaveSnapshot(t, s, snapAt("same", 4))
	want := snapAt("same", 4)
	want.Schema = "test/v2"
	want.State = []byte(`{"shape":2}`)
	mustSaveSnapshot(t, s, want)
	checkSnapshot(t, mustLoadSnapshot(t, s, "same"), want)
}

func testSnapshotDelete(t *testing.T, s eventstore.SnapshotStore) {
	ctx := context.Background()
	mustSaveSnapshot(t, s, snapAt("del", 8))
	mustSaveSnapshot(t, s, snapAt("keep", 8))
	if err := s.DeleteSnapshot(ctx, "del"); err != nil {
		t.Fatalf("DeleteSnapshot: %v", err)
	}
	wantNoSnapshot(t, s, "del")
	checkSnapshot(t, mustLoadSnapshot(t, s, "keep"), snapAt("keep", 8))

	// After a delete, any version may be saved again.
	mustSaveSnapshot(t, s, snapAt("del", 2))
	checkSnapshot(t, mustLoadSnapshot(t, s, "del"), snapAt("del", 2))
}

func testSnapshotDeleteNone(t *testing.T, s eventstore.SnapshotStore) {
	ctx := context.Background()
	for _, id := range []string{"", "never-saved"} {
		if err := s.DeleteSnapshot(ctx, id); err != nil {
			t.Fatalf("DeleteSnapshot(%q) of a missing snapshot = %v, want nil", id, err)
		}
	}
	mustSaveSnapshot(t, s, snapAt("twice", 1))
	for range 2 {
		if err := s.DeleteSnapshot(ctx, "twice"); err != nil {
			t.Fatalf("DeleteSnapshot: %v", err)
		}
	}
	wantNoSnapshot(t, s, "twice")
}

func testSnapshotIsolation(t *testing.T, s eventstore.SnapshotStore) {
	// IDs where one is a prefix of another must not share keys or rows.
	ids := []string{"a", "ab", "a-b", "a/b", "b", "A", "a\x01", "a "}
	for i, id := range ids {
		mustSaveSnapshot(t, s, snapAt(id, uint64(i+1)))
	}
	for i, id := range ids {
		checkSnapshot(t, mustLoadSnapshot(t, s, id), snapAt(id, uint64(i+1)))
	}
	if err := s.DeleteSnapshot(context.Background(), "a"); err != nil {
		t.Fatalf("DeleteSnapshot: %v", err)
	}
	wantNoSnapshot(t, s, "a")
	for i, id := range ids[1:] {
		checkSnapshot(t, mustLoadSnapshot(t, s, id), snapAt(id, uint64(i+2)))
	}
}

func testSnapshotNames(t *testing.T, s eventstore.SnapshotStore) {
	// The longest valid ID, and IDs beyond ASCII, are kept exactly.
	ids := []string{
		strings.Repeat("x", eventstore.MaxNameLength),
		strings.Repeat("é", eventstore.MaxNameLength/2),
		"utilisateur-ünïcødé-日本-🙂",
		"with 'quotes' and \"double\" and \\ backslash; DROP TABLE",
	}
	for _, id := range ids {
		snap := snapAt(id, 1)
		snap.Schema = strings.Repeat("s", eventstore.MaxNameLength)
		mustSaveSnapshot(t, s, snap)
		checkSnapshot(t, mustLoadSnapshot(t, s, id), snap)
	}
}

func testSnapshotInvalid(t *testing.T, s eventstore.SnapshotStore) {
	ctx := context.Background()
	bad := map[string]eventstore.Snapshot{}
	add := func(name string, change func(*eventstore.Snapshot)) {
		snap := snapAt("bad", 1)
		change(&snap)
		bad[name] = snap
	}
	add("EmptyAggregateID", func(s *eventstore.Snapshot) { s.AggregateID = "" })
	add("LongAggregateID", func(s *eventstore.Snapshot) { s.AggregateID = strings.Repeat("x", eventstore.MaxNameLength+1) })
	add("NULAggregateID", func(s *eventstore.Snapshot) { s.AggregateID = "a\x00b" })
	add("NotUTF8AggregateID", func(s *eventstore.Snapshot) { s.AggregateID = "a\xffb" })
	add("VersionZero", func(s *eventstore.Snapshot) { s.Version = 0 })
	add("LongSchema", func(s *eventstore.Snapshot) { s.Schema = strings.Repeat("s", eventstore.MaxNameLength+1) })
	add("NULSchema", func(s *eventstore.Snapshot) { s.Schema = "v\x001" })
	add("TimestampBeforeYear1", func(s *eventstore.Snapshot) {
		s.Timestamp = time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC)
	})
	add("TimestampAfterYear9999", func(s *eventstore.Snapshot) {
		s.Timestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	})
	for name, snap := range bad {
		t.Run(name, func(t *testing.T) {
			err := s.SaveSnapshot(ctx, snap)
			if !errors.Is(err, eventstore.ErrInvalidEvent) {
				t.Fatalf("SaveSnapshot = %v, want an error matching ErrInvalidEvent", err)
			}
			var ie *eventstore.InvalidEventError
			if !errors.As(err, &ie) {
				t.Fatalf("SaveSnapshot = %v, want an *InvalidEventError", err)
			}
			if snap.AggregateID != "" && eventstore.MaxNameLength >= len(snap.AggregateID) {
				if _, err := s.LoadSnapshot(ctx, snap.AggregateID); err == nil {
					t.Fatalf("a refused snapshot of %q was stored", snap.AggregateID)
				}
			}
		})
	}
	wantNoSnapshot(t, s, "bad")
}

func testSnapshotConcurrentSaves(t *testing.T, s eventstore.SnapshotStore) {
	const n = 32
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for v := uint64(1); v <= n; v++ {
		wg.Go(func() {
			if err := s.SaveSnapshot(ctx, snapAt("race", v)); err != nil {
				errs <- fmt.Errorf("SaveSnapshot version %d: %w", v, err)
			}
		})
	}
	// Readers alongside see a whole snapshot or none.
	for range 4 {
		wg.Go(func() {
			for range 8 {
				got, err := s.LoadSnapshot(ctx, "race")
				if errors.Is(err, eventstore.ErrNotFound) {
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("LoadSnapshot: %w", err)
					return
				}
				if want := snapAt("race", got.Version); !bytes.Equal(got.State, want.State) {
					errs <- fmt.Errorf("LoadSnapshot = version %d with state %q: torn", got.Version, got.State)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkSnapshot(t, mustLoadSnapshot(t, s, "race"), snapAt("race", n))
}

func testSnapshotContextCanceled(t *testing.T, s eventstore.SnapshotStore) {
	mustSaveSnapshot(t, s, snapAt("ctx", 1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	if err := s.SaveSnapshot(ctx, snapAt("ctx", 2)); !errors.Is(err, context.Canceled) {
		t.Errorf("SaveSnapshot with a canceled context = %v, want an error matching context.Canceled", err)
	}
	if _, err := s.LoadSnapshot(ctx, "ctx"); !errors.Is(err, context.Canceled) {
		t.Errorf("LoadSnapshot with a canceled context = %v, want an error matching context.Canceled", err)
	}
	if err := s.DeleteSnapshot(ctx, "ctx"); !errors.Is(err, context.Canceled) {
		t.Errorf("DeleteSnapshot with a canceled context = %v, want an error matching context.Canceled", err)
	}
	// Nothing changed.
	checkSnapshot(t, mustLoadSnapshot(t, s, "ctx"), snapAt("ctx", 1))
}
