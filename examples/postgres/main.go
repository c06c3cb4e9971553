// Command postgres shows the PostgreSQL store used directly, without the
// aggregate package: it appends a user's history, rebuilds the user from
// it, handles a version conflict, and queries events by type, by time
// range, and from plain SQL.
//
// It connects to EVENTSTORE_POSTGRES_DSN, or to
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable, works in a
// schema of its own that it drops when done, and exits non-zero on any
// failure.
//
//	go run ./examples/postgres
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/postgres"
)

// User is an aggregate rebuilt from its events.
type User struct {
	ID      string
	Name    string
	Email   string
	Version uint64
}

// Apply folds one event into the user. Events it has already applied are
// skipped, so replaying is idempotent.
func (u *User) Apply(e eventstore.Event) error {
	if e.Version <= u.Version {
		return nil
	}
	var p struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	if err := e.Unmarshal(&p); err != nil {
		return err
	}
	switch e.Type {
	case "UserCreated":
		u.Name, u.Email = p.Name, p.Email
	case "UserRenamed":
		u.Name = p.Name
	case "EmailChanged":
		u.Email = p.Email
	default:
		return fmt.Errorf("user %s: unknown event type %q", u.ID, e.Type)
	}
	u.Version = e.Version
	return nil
}

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	dsn := os.Getenv("EVENTSTORE_POSTGRES_DSN")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	// The application owns the pool; postgres.Open(ctx, dsn, opts) would
	// make one for the store instead.
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()

	var b [4]byte
	rand.Read(b[:])
	schema := "eventstore_example_" + hex.EncodeToString(b[:])
	store, err := postgres.New(ctx, pool, &postgres.Options{Schema: schema})
	if err != nil {
		return err
	}
	defer store.Close()
	defer pool.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE") //nolint:errcheck

	// Store events: a week of a user's history, with metadata.
	weekAgo := time.Now().UTC().Add(-7 * 24 * time.Hour)
	history := []eventstore.Event{
		{AggregateID: "user-123", Type: "UserCreated", Version: 1, Timestamp: weekAgo,
			Payload:  []byte(`{"name": "John Doe", "email": "john@example.com"}`),
			Metadata: map[string]string{"user_id": "admin-456", "correlation_id": "req-789"}},
		{AggregateID: "user-123", Type: "UserRenamed", Version: 2, Timestamp: weekAgo.Add(24 * time.Hour),
			Payload: []byte(`{"name": "Jane Doe"}`)},
		{AggregateID: "user-123", Type: "EmailChanged", Version: 3, Timestamp: weekAgo.Add(5 * 24 * time.Hour),
			Payload: []byte(`{"email": "jane@example.com"}`)},
	}
	stored, err := store.Append(ctx, history...)
	if err != nil {
		return fmt.Errorf("append: %w", err)
	}
	fmt.Printf("stored %d events at positions %d..%d\n", len(stored), stored[0].Position, stored[len(stored)-1].Position)
	other, err := eventstore.NewEvent("user-456", "UserCreated", map[string]string{"name": "Ada", "email": "ada@example.com"})
	if err != nil {
		return err
	}
	if _, err := store.Append(ctx, other); err != nil {
		return fmt.Errorf("append: %w", err)
	}

	// Rebuild the user from its events.
	events, err := eventstore.Events(ctx, store, "user-123")
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	user := User{ID: "user-123"}
	for _, e := range events {
		if err := user.Apply(e); err != nil {
			return err
		}
	}
	fmt.Printf("user: %s <%s> at version %d\n", user.Name, user.Email, user.Version)

	// A writer that read the user at version 1 is stale: version conflict.
	rename := eventstore.Event{AggregateID: "user-123", Type: "UserRenamed", Version: 2, Payload: []byte(`{"name": "J. Doe"}`)}
	_, err = store.Append(ctx, rename)
	var conflict *eventstore.ConflictError
	if !errors.As(err, &conflict) {
		return fmt.Errorf("stale append: got %v, want a version conflict", err)
	}
	fmt.Printf("version conflict: expected %d, stored %d; retrying at version %d\n",
		conflict.Expected, conflict.Actual, conflict.Actual+1)
	rename.Version = conflict.Actual + 1 // after re-reading and re-deciding
	if _, err := store.Append(ctx, rename); err != nil {
		return fmt.Errorf("retry: %w", err)
	}

	// Events since a version, for a user rebuilt from a snapshot at 3.
	since, err := eventstore.EventsSince(ctx, store, "user-123", 3)
	if err != nil {
		return err
	}
	for _, e := range since {
		if err := user.Apply(e); err != nil {
			return err
		}
	}
	fmt.Printf("user: %s <%s> at version %d\n", user.Name, user.Email, user.Version)

	// Every event of one type, in log order: the input of a projection.
	created, err := eventstore.EventsByType(ctx, store, "UserCreated")
	if err != nil {
		return err
	}
	fmt.Printf("%d users created:", len(created))
	for _, e := range created {
		fmt.Printf(" %s", e.AggregateID)
	}
	fmt.Println()

	// A temporal query: what happened to the user in its first three days.
	firstDays, err := eventstore.EventsInRange(ctx, store, "user-123", weekAgo, weekAgo.Add(3*24*time.Hour))
	if err != nil {
		return err
	}
	fmt.Printf("%d events in the first three days:", len(firstDays))
	for _, e := range firstDays {
		fmt.Printf(" %s", e.Type)
	}
	fmt.Println()

	// Payloads stay JSON in the table, for ad-hoc SQL.
	rows, err := pool.Query(ctx, "SELECT aggregate_id, payload->>'email' FROM "+
		pgx.Identifier{schema, "events"}.Sanitize()+" WHERE event_type = 'UserCreated' ORDER BY position")
	if err != nil {
		return err
	}
	emails, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ User, Email string }])
	if err != nil {
		return err
	}
	fmt.Printf("emails from SQL: %v\n", emails)

	if user.Name != "J. Doe" || user.Email != "jane@example.com" || len(created) != 2 || len(firstDays) != 2 || len(emails) != 2 {
		return errors.New("unexpected results")
	}
	return nil
}
