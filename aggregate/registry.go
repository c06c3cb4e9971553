package aggregate

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"strconv"
	"sync"

	"github.com/eventstore-go/eventstore"
)

// Metadata keys this package writes and reads.
const (
	// MetaSchemaVersion records the schema version of an event's payload:
	// "1", "2", ... An event without it is at schema 1.
	MetaSchemaVersion = "schema_version"

	// MetaCorrelationID names the conversation an event belongs to: the ID
	// of the first command or event of the chain that led to it.
	MetaCorrelationID = "correlation_id"

	// MetaCausationID names the command or event that directly caused an
	// event.
	MetaCausationID = "causation_id"
)

// Data is the payload of an event as a Go value. Its EventType names the
// event, "Deposited": past tense by convention. Data types are value types
// (structs) whose EventType does not look at the receiver, so that the zero
// value names the type too.
type Data interface {
	// EventType returns the name of the event type, the Type of the
	// stored event.
	EventType() string
}

// Upcaster turns the payload of an event at one schema version into the
// payload at the next version. It must not modify payload. UpcastFunc makes
// one from a typed function.
type Upcaster func(payload json.RawMessage) (json.RawMessage, error)

// UpcastFunc returns an Upcaster that unmarshals the payload into Old, calls
// f and marshals its result, so that upcasters need not parse JSON.
func UpcastFunc[Old, New any](f func(Old) New) Upcaster {
	return func(payload json.RawMessage) (json.RawMessage, error) {
		var old Old
		if err := json.Unmarshal(payload, &old); err != nil {
			return nil, err
		}
		return json.Marshal(f(old))
	}
}

// Registry maps event type names to Go types and holds the upcasters of
// older schema versions. The zero value is an empty registry ready to use,
// and a nil *Registry is an empty one that cannot be added to. A Registry is
// safe for concurrent use; register everything before the first load.
type Registry struct {
	mu        sync.RWMutex
	types     map[string]reflect.Type // event type -> the Go type registered for it
	decoders  map[string]func(json.RawMessage) (Data, error)
	upcasters map[string]map[uint64]Upcaster // event type -> from version -> upcaster
	current   map[string]uint64              // event type -> current schema version, when above 1
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return new(Registry) }

// Register registers T under the name T's zero value returns from
// EventType. T is the current schema of that event type: loads decode
// payloads into a T, and NewEvent (so Repository.Save) accepts only a T or
// a *T for that name. It panics if the name is empty or already registered:
// both are programming errors found at start-up, as with http.ServeMux.
func Register[T Data](r *Registry) {
	var zero T
	name := zero.EventType()
	if name == "" {
		panic(fmt.Sprintf("aggregate: Register: %T has an empty EventType", zero))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.decoders[name]; dup {
		panic(fmt.Sprintf("aggregate: Register: event type %q registered twice", name))
	}
	if r.decoders == nil {
		r.decoders = make(map[string]func(json.RawMessage) (Data, error))
		r.types = make(map[string]reflect.Type)
	}
	r.types[name] = reflect.TypeFor[T]()
	r.decoders[name] = func(payload json.RawMessage) (Data, error) {
		var v T
		if err := json.Unmarshal(payload, &v); err != nil {
			return nil, err
		}
		return v, nil
	}
}

// Upcast registers up to turn payloads of eventType at schema version from
// into payloads at version from+1. The current schema version of an event
// type is one more than the highest from registered for it (1 when there
// is none); reading an event at a lower version runs every upcaster from its
// version up, and fails with ErrUpcast if one is missing. It panics if from
// is 0 or already registered for eventType.
func (r *Registry) Upcast(eventType string, from uint64, up Upcaster) {
	if from == 0 {
		panic("aggregate: Upcast: schema versions start at 1")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.upcasters[eventType][from]; dup {
		panic(fmt.Sprintf("aggregate: Upcast: %q from version %d registered twice", eventType, from))
	}
	if r.upcasters == nil {
		r.upcasters = make(map[string]map[uint64]Upcaster)
		r.current = make(map[string]uint64)
	}
	if r.upcasters[eventType] == nil {
		r.upcasters[eventType] = make(map[uint64]Upcaster)
	}
	r.upcasters[eventType][from] = up
	r.current[eventType] = max(r.current[eventType], from+1)
}

// SchemaVersion returns the current schema version of eventType: the one
// new events are written at.
func (r *Registry) SchemaVersion(eventType string) uint64 {
	if r == nil {
		return 1
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return max(r.current[eventType], 1)
}

// NewEvent returns an event of aggregateID whose type is d.EventType(),
// whose payload is d marshalled as JSON, and whose metadata records the
// current schema version of the type. It has a new UUIDv7 ID, so that
// retrying the Append that stores it is safe; Version and Timestamp are
// left to the caller.
//
// When a Go type is registered for d's event type, d must be a value of
// that type or a non-nil pointer to one (both marshal alike); any other Go
// type, such as the struct of an older schema kept for an upcaster, fails
// with a *WrongEventTypeError (matching ErrWrongEventType) rather than be
// stamped with the current schema. NewEvent does not require d's type to be
// registered: a type with no Go type registered is stamped as given. A nil
// d, or a nil pointer, fails with an error matching ErrUnknownEvent.
func (r *Registry) NewEvent(aggregateID string, d Data) (eventstore.Event, error) {
	return r.newEvent(aggregateID, d, false)
}

// newEvent is NewEvent; with mustBeRegistered, an event type with no Go type
// registered fails with ErrUnknownEvent.
func (r *Registry) newEvent(aggregateID string, d Data, mustBeRegistered bool) (eventstore.Event, error) {
	if d == nil {
		return eventstore.Event{}, fmt.Errorf("%w: nil event data", ErrUnknownEvent)
	}
	got := reflect.TypeOf(d)
	if v := reflect.ValueOf(d); v.Kind() == reflect.Pointer && v.IsNil() {
		// Calling EventType on it may panic, and it would marshal as null.
		return eventstore.Event{}, fmt.Errorf("%w: nil %v as event data", ErrUnknownEvent, got)
	}
	name := d.EventType()
	if r != nil {
		r.mu.RLock()
		want, ok := r.types[name]
		r.mu.RUnlock()
		switch {
		case !ok && mustBeRegistered:
			// Storing it would leave an event this repository cannot load.
			return eventstore.Event{}, fmt.Errorf("%w %q (%v): register it in Options.Types before saving it", ErrUnknownEvent, name, got)
		case ok && got != want && got != reflect.PointerTo(want):
			return eventstore.Event{}, &WrongEventTypeError{EventType: name, Registered: want, Got: got}
		}
	}
	e, err := eventstore.NewEvent(aggregateID, name, d)
	if err != nil {
		return eventstore.Event{}, err
	}
	e.Metadata = map[string]string{MetaSchemaVersion: strconv.FormatUint(r.SchemaVersion(e.Type), 10)}
	return e, nil
}

// WrongEventTypeError reports event data whose Go type is not the one
// registered for its event type: typically the struct of an older schema,
// kept for an upcaster, whose EventType returns the same name. Saving it
// would store its JSON labelled with the current schema, which would later
// load with fields missing. It matches ErrWrongEventType.
type WrongEventTypeError struct {
	EventType  string       // the name both Go types give from EventType
	Registered reflect.Type // the Go type registered for EventType: the current schema
	Got        reflect.Type // the Go type of the data passed
}

// Error implements error.
func (e *WrongEventTypeError) Error() string {
	return fmt.Sprintf("aggregate: event type %q is registered as Go type %v, got %v: save the registered (current) type",
		e.EventType, e.Registered, e.Got)
}

// Unwrap returns ErrWrongEventType.
func (e *WrongEventTypeError) Unwrap() error { return ErrWrongEventType }

// Decode brings a stored event to the current schema of its type and
// unmarshals its payload into the registered Go type. The returned event's
// Payload is the upcast payload and its schema_version metadata the current
// version; Data is nil when no Go type is registered for the type. It never
// modifies e.
//
// Decode fails with an error matching ErrUpcast when the event's schema
// version is unreadable, newer than the current one, or an upcaster is
// missing or fails; and with a wrapped json error when the payload does not
// unmarshal into the registered type.
func (r *Registry) Decode(e eventstore.Event) (Event, error) {
	from := uint64(1)
	if s, ok := e.Metadata[MetaSchemaVersion]; ok {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil || v == 0 {
			return Event{}, fmt.Errorf("%w: event %s (%s): schema_version %q is not a positive integer", ErrUpcast, e.ID, e.Type, s)
		}
		from = v
	}
	if r == nil {
		if from != 1 {
			return Event{}, fmt.Errorf("%w: event %s (%s) is at schema %d, the registry knows 1", ErrUpcast, e.ID, e.Type, from)
		}
		return Event{Event: e}, nil
	}
	r.mu.RLock()
	current := max(r.current[e.Type], 1)
	var chain []Upcaster // the upcasters from the event's schema to the current one; nil where missing
	for v := from; v < current; v++ {
		chain = append(chain, r.upcasters[e.Type][v])
	}
	decode := r.decoders[e.Type]
	r.mu.RUnlock()

	if from > current {
		return Event{}, fmt.Errorf("%w: event %s (%s) is at schema %d, newer than the current %d", ErrUpcast, e.ID, e.Type, from, current)
	}
	if from < current {
		payload := e.Payload
		for i, up := range chain {
			v := from + uint64(i)
			if up == nil {
				return Event{}, fmt.Errorf("%w: event %s (%s): no upcaster from schema %d", ErrUpcast, e.ID, e.Type, v)
			}
			next, err := up(payload)
			if err != nil {
				return Event{}, fmt.Errorf("%w: event %s (%s) from schema %d: %w", ErrUpcast, e.ID, e.Type, v, err)
			}
			payload = next
		}
		e.Payload = payload
		e.Metadata = maps.Clone(e.Metadata)
		if e.Metadata == nil {
			e.Metadata = make(map[string]string, 1)
		}
		e.Metadata[MetaSchemaVersion] = strconv.FormatUint(current, 10)
	}
	out := Event{Event: e}
	if decode != nil {
		d, err := decode(e.Payload)
		if err != nil {
			return Event{}, fmt.Errorf("eventstore: decode event %s (%s) of %q: %w", e.ID, e.Type, e.AggregateID, err)
		}
		out.Data = d
	}
	return out, nil
}
