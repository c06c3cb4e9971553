package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/pgtest"
)

// The same call made by many goroutines at once, so that several copies go
// in one group commit: one stores the events and the others get them back
// as a retry.
func TestAppend_GroupRetries(t *testing.T) {
	ctx := context.Background()
	s := mustNew(t, 20)
	for round := range 20 {
		agg := fmt.Sprint("acct-", round)
		call := []eventstore.Event{
			{ID: uuid.NewString(), AggregateID: agg, Type: "Opened", Payload: []byte(`{}`)},
			{ID: uuid.NewString(), AggregateID: agg, Type: "Deposited", Payload: []byte(`{"amount":1}`)},
		}
		const n = 16
		outs := make([][]eventstore.Event, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { outs[i], errs[i] = s.Append(ctx, call...) })
		}
		wg.Wait()
		for i := range n {
			require.NoError(t, errs[i])
			require.Equal(t, outs[0], outs[i])
		}
		got, err := eventstore.Events(ctx, s, agg)
		require.NoError(t, err)
		require.Len(t, got, 2, "stored once")
	}
	all, err := eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	for i, e := range all {
		require.Equal(t, uint64(i+1), e.Position)
	}
}

// When the server refuses one append of a group, the others are stored
// and only that one fails.
func TestAppend_GroupWithARefusedAppend(t *testing.T) {
	ctx := context.Background()
	s := mustNew(t, 20)
	// A trigger refuses one payload, as a server-side rule might.
	_, err := pgtest.Admin(t).Exec(ctx, `
		CREATE FUNCTION `+s.Schema()+`.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.payload::text = '"refused"' THEN RAISE EXCEPTION 'refused by trigger'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse BEFORE INSERT ON `+table(s, "events")+`
			FOR EACH ROW EXECUTE FUNCTION `+s.Schema()+`.refuse();`)
	require.NoError(t, err)

	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for round := range 10 {
		for i := range n {
			payload := `{}`
			if i == round%n {
				payload = `"refused"`
			}
			wg.Go(func() {
				_, errs[i] = s.Append(ctx, eventstore.Event{AggregateID: fmt.Sprint("w", i), Type: "T", Payload: []byte(payload)})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if i == round%n {
				require.Error(t, err)
				require.NotErrorIs(t, err, eventstore.ErrUnknownOutcome)
			} else {
				require.NoError(t, err)
			}
		}
	}
	all, err := eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Len(t, all, 10*(n-1))
	for i, e := range all {
		require.Equal(t, uint64(i+1), e.Position)
		require.Equal(t, `{}`, string(e.Payload))
	}
}
