// Command quickstart appends a user's history to an embedded bolt file,
// replays it into the user's current state, and shows the store's
// guarantees at work: a stale writer's version conflict, a safe retry, and a
// reopened file that still holds every acknowledged event.
//
//	go run ./examples/quickstart [-db path/to/events.db]
//
// Without -db it uses a file in a temporary directory and removes it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

// User is the state that the events describe.
type User struct {
	ID      string
	Name    string
	Email   string
	Version uint64
}

// apply folds one event into the user's state.
func (u *User) apply(e eventstore.Event) error {
	var p struct{ Name, Email string }
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
		return fmt.Errorf("unknown event type %q", e.Type)
	}
	u.Version = e.Version
	return nil
}

func main() {
	log.SetFlags(0)
	path := flag.String("db", "", "bolt file to use (default: a temporary file)")
	flag.Parse()
	if *path == "" {
		dir, err := os.MkdirTemp("", "quickstart")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		*path = filepath.Join(dir, "events.db")
	}
	if err := run(context.Background(), *path); err != nil {
		log.Fatal("quickstart: ", err)
	}
}

func run(ctx context.Context, path string) error {
	store, err := bolt.Open(path, nil)
	if err != nil {
		return err
	}
	defer store.Close()

	// 1. Record what happened, as events with versions 1, 2, 3.
	const id = "user-123"
	var history []eventstore.Event
	for _, step := range []struct {
		typ     string
		payload any
	}{
		{"UserCreated", map[string]string{"name": "John Doe", "email": "john@example.com"}},
		{"UserRenamed", map[string]string{"name": "Jane Doe"}},
		{"EmailChanged", map[string]string{"email": "jane@example.com"}},
	} {
		e, err := eventstore.NewEvent(id, step.typ, step.payload)
		if err != nil {
			return err
		}
		e.Version = uint64(len(history) + 1)
		e.Metadata = map[string]string{"correlation_id": "signup-42"}
		history = append(history, e)
	}
	stored, err := store.Append(ctx, history...)
	if err != nil {
		return err
	}
	fmt.Printf("appended %d events to %s at positions %d..%d\n", len(stored), id, stored[0].Position, stored[len(stored)-1].Position)

	// 2. A writer that read version 1 and tries to write version 2 loses.
	late, _ := eventstore.NewEvent(id, "UserRenamed", map[string]string{"name": "Johnny"})
	late.Version = 2
	_, err = store.Append(ctx, late)
	var conflict *eventstore.ConflictError
	if !errors.As(err, &conflict) {
		return fmt.Errorf("expected a version conflict, got %v", err)
	}
	fmt.Printf("stale writer refused: expected version %d, stored %d\n", conflict.Expected, conflict.Actual)

	// 3. Retrying an append whose answer was lost is safe: nothing is written twice.
	again, err := store.Append(ctx, history...)
	if err != nil {
		return err
	}
	fmt.Printf("retry returned the stored events (positions %d..%d)\n", again[0].Position, again[len(again)-1].Position)

	// 4. Close, reopen, and replay: the state comes back from the events.
	if err := store.Close(); err != nil {
		return err
	}
	if store, err = bolt.Open(path, nil); err != nil {
		return err
	}
	user := User{ID: id}
	for e, err := range store.ReadAggregate(ctx, id, 0) {
		if err != nil {
			return err
		}
		if err := user.apply(e); err != nil {
			return err
		}
		fmt.Printf("  v%d %-12s %s\n", e.Version, e.Type, e.Payload)
	}
	fmt.Printf("replayed after reopen: %s <%s> at version %d\n", user.Name, user.Email, user.Version)
	if user.Name != "Jane Doe" || user.Email != "jane@example.com" || user.Version != 3 {
		return fmt.Errorf("unexpected state %+v", user)
	}
	return nil
}
