package storekit_test

import (
	"errors"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/storekit"
)

func TestPrepareSnapshot(t *testing.T) {
	zone := time.FixedZone("east", 3*3600)
	in := eventstore.Snapshot{
		AggregateID: "acc-1",
		Version:     3,
		Schema:      "account/v1",
		State:       []byte("state"),
		Timestamp:   time.Date(2024, 1, 2, 3, 4, 5, 6789, zone),
	}
	out, err := storekit.PrepareSnapshot(in)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Timestamp.Equal(eventstore.NormalizeTime(in.Timestamp)) || out.Timestamp.Location() != time.UTC {
		t.Errorf("Timestamp = %v, want %v in UTC", out.Timestamp, eventstore.NormalizeTime(in.Timestamp))
	}
	out.State[0] = 'S'
	if string(in.State) != "state" || in.Timestamp.Location() != zone {
		t.Errorf("PrepareSnapshot modified its input or shares State with it")
	}

	in.Timestamp = time.Time{}
	before := time.Now().UTC().Truncate(time.Microsecond)
	out, err = storekit.PrepareSnapshot(in)
	if err != nil || out.Timestamp.Before(before) || out.Timestamp.Location() != time.UTC {
		t.Errorf("zero Timestamp: got %v, %v; want now in UTC", out.Timestamp, err)
	}

	for name, snap := range map[string]eventstore.Snapshot{
		"AggregateID": {Version: 1},
		"Version":     {AggregateID: "a"},
		"Schema":      {AggregateID: "a", Version: 1, Schema: "\x00"},
		"Timestamp":   {AggregateID: "a", Version: 1, Timestamp: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		_, err := storekit.PrepareSnapshot(snap)
		var ie *eventstore.InvalidEventError
		if !errors.Is(err, eventstore.ErrInvalidEvent) || !errors.As(err, &ie) || ie.Field != name {
			t.Errorf("PrepareSnapshot with a bad %s = %v, want an *InvalidEventError on that field", name, err)
		}
	}
}
