package storekit_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/storekit"
)

func TestPrepare_FillsInAndCopies(t *testing.T) {
	in := []eventstore.Event{{
		AggregateID: "a", Type: "T", Payload: json.RawMessage(`{"x":1}`),
		Metadata: map[string]string{"k": "v"}, Position: 7,
		Timestamp: time.Date(2020, 1, 1, 1, 0, 0, 123456789, time.FixedZone("Z", 3600)),
	}}
	out, err := storekit.Prepare(in, 0)
	require.NoError(t, err)
	require.Len(t, out, 1)
	_, err = uuid.Parse(out[0].ID)
	require.NoError(t, err)
	require.Zero(t, out[0].Position)
	require.Equal(t, time.Date(2020, 1, 1, 0, 0, 0, 123456000, time.UTC), out[0].Timestamp)
	// No memory is shared with the input.
	out[0].Payload[0] = '['
	out[0].Metadata["k"] = "w"
	require.Equal(t, `{"x":1}`, string(in[0].Payload))
	require.Equal(t, "v", in[0].Metadata["k"])
	require.Empty(t, in[0].ID)
}

func TestPrepare_PayloadLimit(t *testing.T) {
	e := eventstore.Event{AggregateID: "a", Type: "T", Payload: json.RawMessage(`"12345678"`)}
	_, err := storekit.Prepare([]eventstore.Event{e}, 10)
	require.NoError(t, err)
	_, err = storekit.Prepare([]eventstore.Event{e}, 9)
	var ie *eventstore.InvalidEventError
	require.ErrorAs(t, err, &ie)
	require.Equal(t, "Payload", ie.Field)
}

func TestAssignVersions(t *testing.T) {
	events := []eventstore.Event{{AggregateID: "a"}, {AggregateID: "a"}}
	require.NoError(t, storekit.AssignVersions(events, 4))
	require.Equal(t, uint64(5), events[0].Version)
	require.Equal(t, uint64(6), events[1].Version)

	events = []eventstore.Event{{AggregateID: "a", Version: 3}}
	require.NoError(t, storekit.AssignVersions(events, 2))
	err := storekit.AssignVersions(events, 3)
	var ce *eventstore.ConflictError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, eventstore.ConflictError{AggregateID: "a", Expected: 2, Actual: 3}, *ce)
	require.True(t, errors.Is(err, eventstore.ErrConflict))
}

func TestCheckRetry(t *testing.T) {
	ts := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	stored := []eventstore.Event{
		{ID: uuid.NewString(), AggregateID: "a", Type: "T", Payload: json.RawMessage(`1`), Version: 4, Timestamp: ts},
		{ID: uuid.NewString(), AggregateID: "a", Type: "T", Payload: json.RawMessage(`2`), Version: 5, Timestamp: ts},
	}
	request := func() []eventstore.Event {
		r := make([]eventstore.Event, len(stored))
		for i, e := range stored {
			r[i] = eventstore.Event{ID: e.ID, AggregateID: e.AggregateID, Type: e.Type, Payload: e.Payload}
		}
		return r
	}
	both := []bool{true, true}
	require.NoError(t, storekit.CheckRetry(request(), stored, both))

	r := request()
	r[0].Version, r[1].Version = 4, 5
	r[1].Timestamp = ts.In(time.FixedZone("X", 7200)) // the same instant
	require.NoError(t, storekit.CheckRetry(r, stored, both))

	for name, change := range map[string]func(r []eventstore.Event){
		"Payload":   func(r []eventstore.Event) { r[1].Payload = json.RawMessage(` 2`) },
		"Version":   func(r []eventstore.Event) { r[0].Version, r[1].Version = 5, 6 },
		"Timestamp": func(r []eventstore.Event) { r[0].Timestamp = ts.Add(time.Microsecond) },
		"Metadata":  func(r []eventstore.Event) { r[0].Metadata = map[string]string{"k": ""} },
		"Type":      func(r []eventstore.Event) { r[1].Type = "U" },
	} {
		r := request()
		change(r)
		err := storekit.CheckRetry(r, stored, both)
		var de *eventstore.DuplicateEventError
		require.ErrorAs(t, err, &de, name)
		require.ErrorIs(t, err, eventstore.ErrDuplicateEvent, name)
	}

	// Only the second is stored: a duplicate naming the stored ID.
	err := storekit.CheckRetry(request(), []eventstore.Event{{}, stored[1]}, []bool{false, true})
	var de *eventstore.DuplicateEventError
	require.ErrorAs(t, err, &de)
	require.Equal(t, stored[1].ID, de.ID)

	// Stored, but not as one run of versions.
	gap := []eventstore.Event{stored[0], stored[1]}
	gap[1].Version = 9
	require.ErrorIs(t, storekit.CheckRetry(request(), gap, both), eventstore.ErrDuplicateEvent)
}

func TestNewEvent(t *testing.T) {
	e, err := eventstore.NewEvent("user-1", "UserCreated", map[string]string{"name": "Ada"})
	require.NoError(t, err)
	require.Equal(t, `{"name":"Ada"}`, string(e.Payload))
	id, err := uuid.Parse(e.ID)
	require.NoError(t, err)
	require.Equal(t, uuid.Version(7), id.Version())

	_, err = eventstore.NewEvent("a", "T", func() {})
	require.Error(t, err)

	var got struct{ Name string }
	require.NoError(t, e.Unmarshal(&got))
	require.Equal(t, "Ada", got.Name)
}

func TestErrors(t *testing.T) {
	for _, err := range []error{
		&eventstore.ConflictError{AggregateID: "a", Expected: 1, Actual: 2},
		&eventstore.InvalidEventError{Index: 2, Field: "Type", Reason: "empty"},
		&eventstore.DuplicateEventError{ID: "x"},
	} {
		require.Regexp(t, `^eventstore: `, err.Error())
	}
	for _, err := range []error{
		eventstore.ErrConflict, eventstore.ErrDuplicateEvent, eventstore.ErrInvalidEvent, eventstore.ErrClosed,
		eventstore.ErrCorrupt, eventstore.ErrUnknownOutcome, eventstore.ErrNeedsReopen, eventstore.ErrLocked,
		eventstore.ErrUnknownFormat, eventstore.ErrNotFound,
	} {
		require.Regexp(t, `^eventstore: `, err.Error())
	}
}
