package bench

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/memory"
	"github.com/eventstore-go/eventstore/storetest"
)

// The SQLite baseline is a real event store: it passes the conformance
// suite every backend of the library passes.
var _ eventstore.Store = (*sqliteStore)(nil)

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) eventstore.Store {
		// The baseline compares appends and replays; it keeps no tags and
		// has no conditional appends (see sqliteStore.Read and AppendIf).
		for _, suite := range []string{"/Tags", "/Query", "/Condition"} {
			if strings.Contains(t.Name(), suite) {
				t.Skip("the SQLite baseline keeps no tags and has no AppendIf")
			}
		}
		s, err := openSQLite(filepath.Join(t.TempDir(), "events.sqlite"), false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestSQLiteStore checks the SQLite baseline against the memory store:
// the same realistic calls appended to both read back the same events
// through every read the benchmarks use, and more.
func TestSQLiteStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.sqlite")
	s, err := openSQLite(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mem := memory.New(nil)
	sh := shape{smallAggs: 12, smallLen: 10, bigLen: 60}
	var info fixtureInfo
	for events := range calls(sh, &info) {
		got, err := s.Append(background, events...)
		if err != nil {
			t.Fatal(err)
		}
		want, err := mem.Append(background, events...)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, want, sameEvent) {
			t.Fatalf("Append returned\n %v\nwant %v", got, want)
		}
	}
	check := func(name string, got, want iterSeq, n int) {
		t.Helper()
		g, err := eventstore.Collect(got)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		w, err := eventstore.Collect(want)
		if err != nil {
			t.Fatal(err)
		}
		if n >= 0 && len(w) != n {
			t.Fatalf("%s: memory read %d events, want %d", name, len(w), n)
		}
		if !slices.EqualFunc(g, w, sameEvent) {
			t.Errorf("%s:\n got %v\nwant %v", name, g, w)
		}
	}
	check("ReadAll", s.ReadAll(background, 0), mem.ReadAll(background, 0), info.Total)
	check("ReadAll after 17", s.ReadAll(background, 17), mem.ReadAll(background, 17), info.Total-17)
	for i := range sh.smallAggs {
		check("ReadAggregate", s.ReadAggregate(background, smallAggregate(i), 0), mem.ReadAggregate(background, smallAggregate(i), 0), sh.smallLen)
	}
	check("ReadAggregate big after 7", s.ReadAggregate(background, bigAggregate, 7), mem.ReadAggregate(background, bigAggregate, 7), sh.bigLen-7)
	check("ReadAggregate none", s.ReadAggregate(background, "nobody", 0), mem.ReadAggregate(background, "nobody", 0), 0)
	for _, typ := range eventTypes {
		check("ReadType "+typ, s.ReadType(background, typ, 0), mem.ReadType(background, typ, 0), -1)
	}
	check("ReadType", s.ReadType(background, replayType, 0), mem.ReadType(background, replayType, 0), info.OfType)
	check("ReadType after 30", s.ReadType(background, replayType, 30), mem.ReadType(background, replayType, 30), -1)
	check("ReadTime", s.ReadTime(background, "", info.Start, info.End), mem.ReadTime(background, "", info.Start, info.End), info.InTime)
	check("ReadTime open", s.ReadTime(background, "", info.Start, time.Time{}), mem.ReadTime(background, "", info.Start, time.Time{}), -1)
	check("ReadTime aggregate", s.ReadTime(background, bigAggregate, info.Start, info.End), mem.ReadTime(background, bigAggregate, info.Start, info.End), -1)
	check("ReadTime aggregate open", s.ReadTime(background, bigAggregate, info.Start, time.Time{}), mem.ReadTime(background, bigAggregate, info.Start, time.Time{}), -1)

	// A read stopped early releases its rows: an Append from inside the
	// loop and after it goes through.
	for e, err := range s.ReadAll(background, 0) {
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(background, event(e.AggregateID, 0, 1, 1)); err != nil {
			t.Fatalf("Append inside a read: %v", err)
		}
		break
	}

	t.Run("Conflict", func(t *testing.T) {
		_, err := s.Append(background, event("conflict", 2, 1, 1))
		var ce *eventstore.ConflictError
		if !errors.Is(err, eventstore.ErrConflict) || !errors.As(err, &ce) || ce.Actual != 0 {
			t.Fatalf("Append at version 2 of a new aggregate: %v", err)
		}
		if _, err := s.Append(background, event("conflict", 1, 1, 1)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(background, event("conflict", 1, 2, 2)); !errors.Is(err, eventstore.ErrConflict) {
			t.Fatalf("a stale Append: %v", err)
		}
	})
	t.Run("Retry", func(t *testing.T) {
		call := newGen(3).next("retry", 0, 3, fixtureBase)
		first, err := s.Append(background, call...)
		if err != nil {
			t.Fatal(err)
		}
		again, err := s.Append(background, call...)
		if err != nil {
			t.Fatalf("a retried Append: %v", err)
		}
		if !slices.EqualFunc(first, again, sameEvent) {
			t.Fatalf("the retry returned\n %v\nwant %v", again, first)
		}
		if n, _ := eventstore.Collect(s.ReadAggregate(background, "retry", 0)); len(n) != 3 {
			t.Fatalf("the retry wrote: %d events", len(n))
		}
		other := event("retry-other", 0, 1, 1)
		other.ID = call[1].ID
		if _, err := s.Append(background, other); !errors.Is(err, eventstore.ErrDuplicateEvent) {
			t.Fatalf("an ID stored for another event: %v", err)
		}
	})
	t.Run("InvalidEvent", func(t *testing.T) {
		bad := event("bad", 0, 1, 1)
		bad.Payload = []byte("{not json")
		if _, err := s.Append(background, event("bad", 0, 1, 1), bad); !errors.Is(err, eventstore.ErrInvalidEvent) {
			t.Fatalf("a payload that is not JSON: %v", err)
		}
		if n, _ := eventstore.Collect(s.ReadAggregate(background, "bad", 0)); len(n) != 0 {
			t.Fatalf("a refused Append wrote %d events", len(n))
		}
	})
	t.Run("Durable", func(t *testing.T) {
		// What was appended is there after a reopen.
		want, err := eventstore.Collect(s.ReadAll(background, 0))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(background, event("x", 0, 1, 1)); !errors.Is(err, eventstore.ErrClosed) {
			t.Fatalf("Append after Close: %v", err)
		}
		s2, err := openSQLite(path, false)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		got, err := eventstore.Collect(s2.ReadAll(background, 0))
		if err != nil || !slices.EqualFunc(got, want, sameEvent) {
			t.Fatalf("after reopening: %d events, %v; want %d", len(got), err, len(want))
		}
	})
}

// TestSQLiteLoad checks the fixture loader: many calls per transaction
// store what one Append per call stores.
func TestSQLiteLoad(t *testing.T) {
	dir := t.TempDir()
	sh := shape{smallAggs: 30, smallLen: 20, bigLen: 100}
	a, err := openSQLite(filepath.Join(dir, "a"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := openSQLite(filepath.Join(dir, "b"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var info fixtureInfo
	if err := appendCalls(t, &handle{target: a}, calls(sh, &info)); err != nil {
		t.Fatal(err)
	}
	if err := b.load(calls(sh, &info)); err != nil {
		t.Fatal(err)
	}
	ga, _ := eventstore.Collect(a.ReadAll(background, 0))
	gb, err := eventstore.Collect(b.ReadAll(background, 0))
	if err != nil || len(ga) != sh.events() || !slices.EqualFunc(ga, gb, sameEvent) {
		t.Fatalf("loaded %d events (%v), appended %d, want %d", len(gb), err, len(ga), sh.events())
	}
}
