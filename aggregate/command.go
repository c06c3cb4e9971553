package aggregate

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"github.com/google/uuid"

	"github.com/eventstore-go/eventstore"
)

type metadataKey struct{}

// WithMetadata returns a copy of ctx that carries md merged over the metadata
// ctx already carries. Repository.Save adds this metadata to every event it
// stores, so request-scoped values such as user_id reach the events.
func WithMetadata(ctx context.Context, md map[string]string) context.Context {
	merged := Metadata(ctx)
	if merged == nil {
		merged = make(map[string]string, len(md))
	}
	maps.Copy(merged, md)
	return context.WithValue(ctx, metadataKey{}, merged)
}

// Metadata returns a copy of the metadata ctx carries, or nil.
func Metadata(ctx context.Context) map[string]string {
	md, _ := ctx.Value(metadataKey{}).(map[string]string)
	return maps.Clone(md)
}

// CausedBy returns a copy of ctx whose metadata names e as the cause of what
// happens next: the causation ID is e's ID, and the correlation ID is e's
// correlation ID, or e's ID when it has none. A process manager reacting to
// an event uses it, so the chain of events stays correlated.
func CausedBy(ctx context.Context, e eventstore.Event) context.Context {
	corr := e.Metadata[MetaCorrelationID]
	if corr == "" {
		corr = e.ID
	}
	return WithMetadata(ctx, map[string]string{MetaCorrelationID: corr, MetaCausationID: e.ID})
}

// Command is a request to change the system, such as "deposit 10 into
// account acc-1". A handler registered on a Bus with Handle decides, from
// the current state, whether to accept it, and records the outcome as
// events; a command itself is never stored. Its CommandType names it,
// "Deposit": imperative by convention. Commands are value types (structs)
// whose CommandType does not look at the receiver, so that the zero value
// names the type too.
type Command interface {
	// CommandType returns the name under which the command's handler is
	// registered.
	CommandType() string
}

// HandlerFunc handles commands of type C and returns a result of type R.
type HandlerFunc[C Command, R any] func(ctx context.Context, cmd C) (R, error)

// Bus routes each command to the one handler registered for its type:
// register handlers with Handle, send commands with Dispatch, which also
// gives each command an ID and the correlation and causation metadata its
// events carry. The zero value is an empty bus ready to use. A Bus is safe
// for concurrent use.
type Bus struct {
	mu       sync.RWMutex
	handlers map[string]any // command type -> HandlerFunc[C, R]
}

// NewBus returns an empty bus.
func NewBus() *Bus { return new(Bus) }

// Handle registers h for the commands of type C. It panics if a handler is
// already registered for C's CommandType, or if that name is empty: both
// are programming errors found at start-up, as with http.ServeMux.
func Handle[C Command, R any](b *Bus, h HandlerFunc[C, R]) {
	var zero C
	name := zero.CommandType()
	if name == "" {
		panic(fmt.Sprintf("aggregate: Handle: %T has an empty CommandType", zero))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, dup := b.handlers[name]; dup {
		panic(fmt.Sprintf("aggregate: Handle: command %q registered twice", name))
	}
	if b.handlers == nil {
		b.handlers = make(map[string]any)
	}
	b.handlers[name] = h
}

// Dispatch runs the handler registered for cmd and returns its result. The
// result type comes first so that only it need be written:
//
//	balance, err := aggregate.Dispatch[int64](ctx, bus, Deposit{Account: "acc-1", Amount: 10})
//
// It gives the command a new ID (a UUIDv7) and runs the handler with a
// context whose metadata (see Metadata) has causation_id set to that ID and
// correlation_id kept from ctx, or set to that ID when ctx has none. Events
// the handler saves through a Repository carry both, so every event can be
// traced to the command that produced it.
//
// Dispatch fails with an error matching ErrUnknownCommand when no handler
// is registered for cmd, or when the registered one returns another result
// type than R.
func Dispatch[R any, C Command](ctx context.Context, b *Bus, cmd C) (R, error) {
	var zero R
	name := cmd.CommandType()
	b.mu.RLock()
	h, ok := b.handlers[name]
	b.mu.RUnlock()
	if !ok {
		return zero, fmt.Errorf("%w %q", ErrUnknownCommand, name)
	}
	fn, ok := h.(HandlerFunc[C, R])
	if !ok {
		return zero, fmt.Errorf("%w %q with command type %T and result type %T", ErrUnknownCommand, name, cmd, zero)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return zero, fmt.Errorf("eventstore: new command ID: %w", err)
	}
	md := map[string]string{MetaCausationID: id.String()}
	if corr := Metadata(ctx)[MetaCorrelationID]; corr == "" {
		md[MetaCorrelationID] = id.String()
	}
	return fn(WithMetadata(ctx, md), cmd)
}
