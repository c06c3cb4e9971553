package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
)

// RunPayloadLimit checks a backend's MaxPayloadSize option: newStore
// returns an empty store that accepts payloads of at most maxPayload bytes
// (zero: the default, eventstore.DefaultMaxPayloadSize), and registers its
// own cleanup with t.Cleanup. A payload one byte over the limit fails with
// an error matching eventstore.ErrInvalidEvent and writes nothing, as does
// an append that holds it among valid events; one at the limit reads back
// whole. Every backend offers the option, so that tests on memory refuse
// what production refuses.
func RunPayloadLimit(t *testing.T, newStore func(t *testing.T, maxPayload int) eventstore.Store) {
	t.Helper()
	ctx := context.Background()
	// payload returns a JSON string of exactly n bytes.
	payload := func(n int) []byte { return []byte(`"` + strings.Repeat("x", n-2) + `"`) }
	for _, limit := range []int{100, 0, eventstore.DefaultMaxPayloadSize + 512<<10} {
		t.Run(fmt.Sprint("limit=", limit), func(t *testing.T) {
			s := newStore(t, limit)
			most := limit
			if most == 0 {
				most = eventstore.DefaultMaxPayloadSize
			}
			over := []eventstore.Event{
				{AggregateID: "a", Type: "T", Payload: []byte(`{}`)},
				{AggregateID: "a", Type: "T", Payload: payload(most + 1)},
			}
			_, err := s.Append(ctx, over...)
			require.True(t, errors.Is(err, eventstore.ErrInvalidEvent), "a payload of %d bytes with a limit of %d: got %v", most+1, most, err)
			all, err := eventstore.Collect(s.ReadAll(ctx, 0))
			require.NoError(t, err)
			require.Empty(t, all, "a refused append wrote events")

			at := mustAppend(t, s, eventstore.Event{AggregateID: "a", Type: "T", Payload: payload(most)})
			got, err := eventstore.Events(ctx, s, "a")
			require.NoError(t, err)
			require.Len(t, got, 1)
			require.Equal(t, at[0].ID, got[0].ID)
			require.Equal(t, most, len(got[0].Payload))
		})
	}
}
