package bench

import (
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

// TestRawBoltFormat checks that the baseline writes what package bolt
// writes: a file the baseline wrote opens with bolt.Open and reads back the
// same events through every read, and the baseline reads them back as bolt
// does.
func TestRawBoltFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raw.db")
	raw, err := openRaw(path, true, false)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	seq := 0
	for round := range 3 {
		for _, agg := range []string{"a", "b"} {
			var batch []eventstore.Event
			for j := range 4 {
				seq++
				e := event(agg, uint64(round*4+j+1), seq, seq/4)
				e.Timestamp = ts.Add(time.Duration(seq) * time.Second)
				if seq%3 == 0 {
					e.Metadata = nil
				}
				batch = append(batch, e)
			}
			if _, err := raw.Append(background, batch...); err != nil {
				t.Fatal(err)
			}
		}
	}
	rawAll, err := eventstore.Collect(raw.ReadAll(background, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(rawAll) != seq {
		t.Fatalf("raw ReadAll: %d events, want %d", len(rawAll), seq)
	}
	rawAgg, _ := eventstore.Collect(raw.ReadAggregate(background, "b", 2))
	rawType, _ := eventstore.Collect(raw.ReadType(background, replayType, 0))
	start, end := ts.Add(5*time.Second), ts.Add(17*time.Second)
	rawTime, _ := eventstore.Collect(raw.ReadTime(background, "", start, end))
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := bolt.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check := func(name string, got []eventstore.Event, err error, want []eventstore.Event) {
		t.Helper()
		if err != nil {
			t.Fatalf("bolt %s: %v", name, err)
		}
		if len(want) == 0 || !slices.EqualFunc(got, want, sameEvent) {
			t.Errorf("bolt %s:\n got %v\nwant %v", name, got, want)
		}
	}
	all, err := eventstore.Collect(s.ReadAll(background, 0))
	check("ReadAll", all, err, rawAll)
	agg, err := eventstore.Collect(s.ReadAggregate(background, "b", 2))
	check("ReadAggregate", agg, err, rawAgg)
	typ, err := eventstore.Collect(s.ReadType(background, replayType, 0))
	check("ReadType", typ, err, rawType)
	tm, err := eventstore.Collect(s.ReadTime(background, "", start, end))
	check("ReadTime", tm, err, rawTime)
	if len(rawTime) != 12 {
		t.Errorf("raw ReadTime: %d events, want 12", len(rawTime))
	}

	// Appends through bolt after the baseline's continue its log.
	stored, err := s.Append(background, event("a", 13, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if stored[0].Position != uint64(seq+1) {
		t.Errorf("bolt appended at position %d, want %d", stored[0].Position, seq+1)
	}
}

func sameEvent(a, b eventstore.Event) bool {
	return a.ID == b.ID && a.AggregateID == b.AggregateID && a.Type == b.Type &&
		string(a.Payload) == string(b.Payload) && a.Timestamp.Equal(b.Timestamp) &&
		a.Version == b.Version && a.Position == b.Position &&
		len(a.Metadata) == len(b.Metadata) && maps.Equal(a.Metadata, b.Metadata)
}
