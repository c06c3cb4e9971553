// Command users shows the aggregate package on the embedded bolt store,
// with a user as the aggregate: a command creates a user, another changes
// the email, the user is rebuilt from its events, a stale writer gets a
// version conflict, and temporal queries give the user as of a version and
// a time.
//
// It works in a temporary directory that it removes, prints what it does,
// and exits non-zero on any failure.
//
//	go run ./examples/users
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/aggregate"
	"github.com/eventstore-go/eventstore/bolt"
)

// UserCreated records a new user.
type UserCreated struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// EventType implements aggregate.Data.
func (UserCreated) EventType() string { return "UserCreated" }

// EmailChanged records a user's new email address.
type EmailChanged struct {
	Email string `json:"email"`
}

// EventType implements aggregate.Data.
func (EmailChanged) EventType() string { return "EmailChanged" }

// User is the aggregate: its state is the fold of its events.
type User struct {
	aggregate.Base
	Name  string `json:"name"`
	Email string `json:"email"`
}

// NewUser returns a user with no events.
func NewUser(id string) *User { return &User{Base: aggregate.Base{ID: id}} }

// Apply implements aggregate.Aggregate.
func (u *User) Apply(e aggregate.Event) error {
	switch d := e.Data.(type) {
	case UserCreated:
		u.Name, u.Email = d.Name, d.Email
	case EmailChanged:
		u.Email = d.Email
	default:
		return aggregate.UnknownEvent(e)
	}
	u.Version = e.Version
	return nil
}

// CreateUser is the command that creates a user; its handler returns the
// new user's ID.
type CreateUser struct {
	Name  string
	Email string
}

// CommandType implements aggregate.Command.
func (CreateUser) CommandType() string { return "CreateUser" }

// ChangeEmail changes a user's email.
type ChangeEmail struct {
	UserID string
	Email  string
}

// CommandType implements aggregate.Command.
func (ChangeEmail) CommandType() string { return "ChangeEmail" }

var errExists = errors.New("user already exists")

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	fmt.Println("OK")
}

func run() error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "eventstore-users-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	store, err := bolt.Open(filepath.Join(dir, "events.db"), nil)
	if err != nil {
		return err
	}
	defer store.Close()

	types := aggregate.NewRegistry()
	aggregate.Register[UserCreated](types)
	aggregate.Register[EmailChanged](types)
	users := aggregate.NewRepository(store, NewUser, &aggregate.Options{Types: types})

	bus := aggregate.NewBus()
	aggregate.Handle(bus, func(ctx context.Context, c CreateUser) (string, error) {
		id := "user-" + uuid.NewString()[:8]
		_, err := users.Run(ctx, id, func(u *User) ([]aggregate.Data, error) {
			if u.Version > 0 {
				return nil, errExists
			}
			return []aggregate.Data{UserCreated{Name: c.Name, Email: c.Email}}, nil
		})
		return id, err
	})
	aggregate.Handle(bus, func(ctx context.Context, c ChangeEmail) (*User, error) {
		return users.Run(ctx, c.UserID, func(u *User) ([]aggregate.Data, error) {
			if u.Version == 0 {
				return nil, fmt.Errorf("no user %s", c.UserID)
			}
			return []aggregate.Data{EmailChanged{Email: c.Email}}, nil
		})
	})

	// Commands in, events out, with the request's correlation ID.
	rctx := aggregate.WithMetadata(ctx, map[string]string{aggregate.MetaCorrelationID: "req-789", "user_id": "admin-456"})
	id, err := aggregate.Dispatch[string](rctx, bus, CreateUser{Name: "John Doe", Email: "john@example.com"})
	if err != nil {
		return err
	}
	fmt.Printf("CreateUser -> %s\n", id)
	afterCreate := time.Now()
	time.Sleep(2 * time.Millisecond) // so that the next event is later than afterCreate
	u, err := aggregate.Dispatch[*User](rctx, bus, ChangeEmail{UserID: id, Email: "jd@example.com"})
	if err != nil {
		return err
	}
	fmt.Printf("ChangeEmail -> %s is at version %d\n", u.Email, u.Version)

	events, err := eventstore.Events(ctx, store, id)
	if err != nil {
		return err
	}
	fmt.Println("Events:")
	for _, e := range events {
		fmt.Printf("  v%d %-12s %s  correlation=%s causation=%s\n", e.Version, e.Type, e.Payload,
			e.Metadata[aggregate.MetaCorrelationID], e.Metadata[aggregate.MetaCausationID])
		if e.Metadata[aggregate.MetaCorrelationID] != "req-789" || e.Metadata["user_id"] != "admin-456" {
			return fmt.Errorf("event %d lost the command's metadata: %v", e.Version, e.Metadata)
		}
	}

	// Rebuilding state from events.
	u, err = users.Load(ctx, id)
	if err != nil {
		return err
	}
	fmt.Printf("Rebuilt: %s (%s), version %d\n", u.Name, u.Email, u.Version)
	if u.Name != "John Doe" || u.Email != "jd@example.com" || u.Version != 2 {
		return fmt.Errorf("rebuilt %+v", u)
	}

	// Handling version conflicts: a writer holding version 1 is refused.
	stale, err := users.LoadVersion(ctx, id, 1)
	if err != nil {
		return err
	}
	_, err = users.Save(ctx, stale, EmailChanged{Email: "stale@example.com"})
	var conflict *eventstore.ConflictError
	if !errors.As(err, &conflict) {
		return fmt.Errorf("stale save: got %v, want a conflict", err)
	}
	fmt.Printf("Stale save refused: expected version %d, actual %d\n", conflict.Expected, conflict.Actual)

	// A second CreateUser for an existing ID is a domain error.
	if _, err := users.Run(ctx, id, func(u *User) ([]aggregate.Data, error) {
		if u.Version > 0 {
			return nil, errExists
		}
		return []aggregate.Data{UserCreated{}}, nil
	}); !errors.Is(err, errExists) {
		return fmt.Errorf("create twice: %v", err)
	}
	fmt.Println("Create twice refused:", errExists)

	// Temporal queries.
	then, err := users.LoadTime(ctx, id, afterCreate)
	if err != nil {
		return err
	}
	fmt.Printf("As of just after creation: %s, version %d\n", then.Email, then.Version)
	if then.Email != "john@example.com" || then.Version != 1 {
		return fmt.Errorf("as of time: %+v", then)
	}
	weekly, err := eventstore.EventsInRange(ctx, store, id, time.Now().Add(-7*24*time.Hour), time.Time{})
	if err != nil {
		return err
	}
	created, err := eventstore.EventsByType(ctx, store, "UserCreated")
	if err != nil {
		return err
	}
	fmt.Printf("Events this week: %d; UserCreated events in the store: %d\n", len(weekly), len(created))
	if len(weekly) != 2 || len(created) != 1 {
		return errors.New("wrong query results")
	}
	return nil
}
