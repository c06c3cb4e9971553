package aggregate_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/aggregate"
	"github.com/eventstore-go/eventstore/memory"
)

// A user aggregate, with two typed events: UserCreated and EmailChanged.

type UserCreated struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

func (UserCreated) EventType() string { return "UserCreated" }

type EmailChanged struct {
	Email string `json:"email"`
}

func (EmailChanged) EventType() string { return "EmailChanged" }

type User struct {
	aggregate.Base
	Name  string `json:"name"`
	Email string `json:"email"`
}

func NewUser(id string) *User { return &User{Base: aggregate.Base{ID: id}} }

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

func userTypes() *aggregate.Registry {
	types := aggregate.NewRegistry()
	aggregate.Register[UserCreated](types)
	aggregate.Register[EmailChanged](types)
	return types
}

// Save events of a new aggregate, then rebuild it from its events.
func Example() {
	ctx := context.Background()
	store := memory.New(nil)
	defer store.Close()
	users := aggregate.NewRepository(store, NewUser, &aggregate.Options{Types: userTypes()})

	u, err := users.Load(ctx, "user-123") // version 0: no events yet
	if err != nil {
		log.Fatal(err)
	}
	if _, err := users.Save(ctx, u,
		UserCreated{Name: "John Doe", Email: "john@example.com"},
		EmailChanged{Email: "jd@example.com"},
	); err != nil {
		log.Fatal(err)
	}

	u, err = users.Load(ctx, "user-123")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("User: %s (%s) at version %d\n", u.Name, u.Email, u.Version)
	// Output: User: John Doe (jd@example.com) at version 2
}

// Run loads, decides and saves, and starts again when another writer saved
// first.
func ExampleRepository_Run() {
	ctx := context.Background()
	store := memory.New(nil)
	defer store.Close()
	users := aggregate.NewRepository(store, NewUser, &aggregate.Options{Types: userTypes()})

	create := func(u *User) ([]aggregate.Data, error) {
		if u.Version > 0 {
			return nil, errors.New("user exists")
		}
		return []aggregate.Data{UserCreated{Name: "Ada", Email: "ada@example.com"}}, nil
	}
	u, err := users.Run(ctx, "user-1", create)
	fmt.Println(u.Name, u.Version, err)

	_, err = users.Run(ctx, "user-1", create)
	fmt.Println(err)
	// Output:
	// Ada 1 <nil>
	// user exists
}

// Temporal queries: the state as of a version.
func ExampleRepository_LoadVersion() {
	ctx := context.Background()
	store := memory.New(nil)
	defer store.Close()
	users := aggregate.NewRepository(store, NewUser, &aggregate.Options{Types: userTypes()})

	u, _ := users.Load(ctx, "user-7")
	if _, err := users.Save(ctx, u,
		UserCreated{Name: "Grace", Email: "grace@navy.mil"},
		EmailChanged{Email: "grace@yale.edu"},
		EmailChanged{Email: "grace@example.com"},
	); err != nil {
		log.Fatal(err)
	}
	for v := uint64(1); v <= 3; v++ {
		u, err := users.LoadVersion(ctx, "user-7", v)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(v, u.Email)
	}
	_, err := users.LoadVersion(ctx, "user-7", 4)
	fmt.Println(errors.Is(err, eventstore.ErrNotFound))
	// Output:
	// 1 grace@navy.mil
	// 2 grace@yale.edu
	// 3 grace@example.com
	// true
}

// An event stored in an older shape reaches Apply in the current one.
func ExampleRegistry_Upcast() {
	ctx := context.Background()
	store := memory.New(nil)
	defer store.Close()

	// Version 1 of UserCreated had one field, "fullname"; no schema_version
	// metadata means version 1.
	if _, err := store.Append(ctx, eventstore.Event{
		AggregateID: "user-9", Type: "UserCreated",
		Payload: []byte(`{"fullname":"Alan Turing"}`),
	}); err != nil {
		log.Fatal(err)
	}

	type userCreatedV1 struct {
		FullName string `json:"fullname"`
	}
	types := userTypes()
	types.Upcast("UserCreated", 1, aggregate.UpcastFunc(func(old userCreatedV1) UserCreated {
		return UserCreated{Name: old.FullName, Email: "unknown"}
	}))
	users := aggregate.NewRepository(store, NewUser, &aggregate.Options{Types: types})

	u, err := users.Load(ctx, "user-9")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s <%s>, UserCreated now at schema %d\n", u.Name, u.Email, types.SchemaVersion("UserCreated"))
	// Output: Alan Turing <unknown>, UserCreated now at schema 2
}

type ChangeEmail struct {
	UserID string
	Email  string
}

func (ChangeEmail) CommandType() string { return "ChangeEmail" }

// A command handler runs a command against an aggregate; the events it
// saves carry the command's correlation and causation IDs.
func ExampleDispatch() {
	ctx := context.Background()
	store := memory.New(nil)
	defer store.Close()
	users := aggregate.NewRepository(store, NewUser, &aggregate.Options{Types: userTypes()})
	u, _ := users.Load(ctx, "user-5")
	if _, err := users.Save(ctx, u, UserCreated{Name: "Barbara", Email: "b@example.com"}); err != nil {
		log.Fatal(err)
	}

	bus := aggregate.NewBus()
	aggregate.Handle(bus, func(ctx context.Context, c ChangeEmail) (uint64, error) {
		u, err := users.Run(ctx, c.UserID, func(u *User) ([]aggregate.Data, error) {
			if u.Version == 0 {
				return nil, fmt.Errorf("no user %s", c.UserID)
			}
			if u.Email == c.Email {
				return nil, nil // nothing to do
			}
			return []aggregate.Data{EmailChanged{Email: c.Email}}, nil
		})
		if err != nil {
			return 0, err
		}
		return u.Version, nil
	})

	ctx = aggregate.WithMetadata(ctx, map[string]string{aggregate.MetaCorrelationID: "req-789", "user_id": "admin-456"})
	version, err := aggregate.Dispatch[uint64](ctx, bus, ChangeEmail{UserID: "user-5", Email: "barbara@example.com"})
	if err != nil {
		log.Fatal(err)
	}
	events, _ := eventstore.Events(ctx, store, "user-5")
	e := events[version-1]
	fmt.Println(e.Type, e.Metadata[aggregate.MetaCorrelationID], e.Metadata["user_id"], e.Metadata[aggregate.MetaCausationID] != "")

	_, err = aggregate.Dispatch[uint64](ctx, bus, ChangeEmail{UserID: "user-6", Email: "x@example.com"})
	fmt.Println(err)
	// Output:
	// EmailChanged req-789 admin-456 true
	// no user user-6
}
