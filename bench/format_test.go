package bench

import (
	"bytes"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
	"github.com/eventstore-go/eventstore/index"
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

	// The record bolt wrote is the one the baseline writes, byte for byte
	// (metadata UUIDs in their 16-byte form included).
	if len(stored[0].Metadata) == 0 {
		t.Fatal("the event has no metadata to compare")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	e := stored[0]
	id := uuid.MustParse(e.ID)
	want := rawRecord(nil, id[:], &e, e.Version, e.Position, e.Timestamp.UnixMicro())
	if err := db.View(func(tx *bbolt.Tx) error {
		got := tx.Bucket(rawEvents).Get(index.AppendUint64(index.AggregatePrefix("a"), 13))
		if !bytes.Equal(got, want) {
			t.Errorf("bolt's record\n%x\nthe baseline's\n%x", got, want)
		}
		if !bytes.Contains(got, []byte{0xd8, 1}) {
			t.Errorf("bolt's record %x holds no UUID in its 16-byte form", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func sameEvent(a, b eventstore.Event) bool {
	return a.ID == b.ID && a.AggregateID == b.AggregateID && a.Type == b.Type &&
		string(a.Payload) == string(b.Payload) && a.Timestamp.Equal(b.Timestamp) &&
		a.Version == b.Version && a.Position == b.Position &&
		len(a.Metadata) == len(b.Metadata) && maps.Equal(a.Metadata, b.Metadata)
}
