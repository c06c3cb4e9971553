package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/pgtest"
	"github.com/eventstore-go/eventstore/postgres"
	"github.com/eventstore-go/eventstore/storetest"
)

func TestCheckpoints(t *testing.T) {
	pgtest.Admin(t)
	storetest.RunCheckpoints(t, func(t *testing.T) storetest.CheckpointingStore { return mustOpen(t, nil) })
}

// slowPoll is a PollInterval no test waits for: what these tests see comes
// from notifications.
const slowPoll = 30 * time.Second

// follow runs a subscription from after and returns a channel of what it
// yields; it ends with the test.
func follow(t *testing.T, s *postgres.Store, after uint64) <-chan eventstore.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan eventstore.Event, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e, err := range s.Subscribe(ctx, after, eventstore.Filter{}) {
			if err != nil {
				return
			}
			out <- e
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return out
}

// expect waits for the subscription's next event, which must have position
// p, for less than the poll interval.
func expect(t *testing.T, events <-chan eventstore.Event, p uint64) {
	t.Helper()
	select {
	case e := <-events:
		require.Equal(t, p, e.Position)
	case <-time.After(slowPoll / 3):
		t.Fatalf("position %d not yielded within %v: no notification woke the subscription", p, slowPoll/3)
	}
}

func appendOne(t *testing.T, s *postgres.Store) {
	t.Helper()
	_, err := s.Append(context.Background(), eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`)})
	require.NoError(t, err)
}

// A subscription wakes for an append made through another Store, with its
// own pool, on the same schema: as another process would append.
func TestSubscribe_WakesForOtherPool(t *testing.T) {
	ctx := context.Background()
	a := mustOpen(t, &postgres.Options{PollInterval: slowPoll})
	b, err := postgres.Open(ctx, pgtest.DSN(), &postgres.Options{Schema: a.Schema()})
	require.NoError(t, err)
	defer b.Close()
	events := follow(t, a, 0)
	appendOne(t, b)
	expect(t, events, 1)
	settle()
	for p := uint64(2); p <= 4; p++ {
		appendOne(t, b)
		expect(t, events, p)
	}
}

// settle lets a new store's listener start: it reads the head once it
// listens, which would wake a subscription without any notification.
// Tests then append several times: only the first could still be woken so.
func settle() { time.Sleep(200 * time.Millisecond) }

// The schema's channel name is hashed when the schema name is long; the
// trigger and the listener agree on it.
func TestSubscribe_LongSchemaName(t *testing.T) {
	pgtest.Admin(t)
	var r [4]byte
	rand.Read(r[:])
	schema := "estest_" + hex.EncodeToString(r[:]) + "_" + strings.Repeat("x", 63-16)
	require.Len(t, schema, 63)
	t.Cleanup(func() {
		_, err := pgtest.Admin(t).Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		require.NoError(t, err)
	})
	s, err := postgres.Open(context.Background(), pgtest.DSN(), &postgres.Options{Schema: schema, PollInterval: slowPoll})
	require.NoError(t, err)
	defer s.Close()
	events := follow(t, s, 0)
	settle()
	for p := uint64(1); p <= 3; p++ {
		appendOne(t, s)
		expect(t, events, p)
	}
}

// listenerPID returns the backend pid of the store's listening connection.
func listenerPID(t *testing.T, s *postgres.Store) int {
	t.Helper()
	q := fmt.Sprintf("LISTEN %s", pgx.Identifier{"eventstore." + s.Schema()}.Sanitize())
	deadline := time.Now().Add(10 * time.Second)
	for {
		var pid int
		err := pgtest.Admin(t).QueryRow(context.Background(), "SELECT pid FROM pg_stat_activity WHERE query = $1", q).Scan(&pid)
		if err == nil {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection ran %q: %v", q, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Killing the listening connection loses nothing: it reconnects, and the
// subscription gets every later event (and those committed while it was
// away) long before the poll interval.
func TestSubscribe_ListenerKilled(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, &postgres.Options{PollInterval: slowPoll})
	events := follow(t, s, 0)
	appendOne(t, s)
	expect(t, events, 1)

	for round := range 2 {
		pid := listenerPID(t, s)
		var killed bool
		require.NoError(t, pgtest.Admin(t).QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&killed))
		require.True(t, killed)
		appendOne(t, s) // maybe while no one listens
		p := uint64(2 + 3*round)
		expect(t, events, p)
		require.NotEqual(t, pid, listenerPID(t, s), "the listener reconnected")
		appendOne(t, s)
		appendOne(t, s)
		expect(t, events, p+1)
		expect(t, events, p+2)
	}
}

// Without notifications (the trigger dropped), the poll still wakes
// subscriptions.
func TestSubscribe_PollsWithoutNotifications(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, &postgres.Options{PollInterval: 50 * time.Millisecond})
	_, err := pgtest.Admin(t).Exec(ctx, "DROP TRIGGER events_notify ON "+table(s, "events"))
	require.NoError(t, err)
	events := follow(t, s, 0)
	appendOne(t, s)
	expect(t, events, 1)
	appendOne(t, s)
	expect(t, events, 2)
}
