package aggregate_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/aggregate"
)

type nameV3 struct {
	First string `json:"first"`
	Last  string `json:"last"`
}

func (nameV3) EventType() string { return "NameChanged" }

func TestRegistry_UpcastChain(t *testing.T) {
	reg := aggregate.NewRegistry()
	aggregate.Register[nameV3](reg)
	// v1 {"name": "Ada Lovelace"} -> v2 {"full": "Ada Lovelace"} -> v3 {"first", "last"}
	type v1 struct {
		Name string `json:"name"`
	}
	type v2 struct {
		Full string `json:"full"`
	}
	reg.Upcast("NameChanged", 2, aggregate.UpcastFunc(func(o v2) nameV3 {
		for i := range len(o.Full) {
			if o.Full[i] == ' ' {
				return nameV3{First: o.Full[:i], Last: o.Full[i+1:]}
			}
		}
		return nameV3{First: o.Full}
	}))
	reg.Upcast("NameChanged", 1, aggregate.UpcastFunc(func(o v1) v2 { return v2{Full: o.Name} }))
	if got := reg.SchemaVersion("NameChanged"); got != 3 {
		t.Fatalf("SchemaVersion = %d, want 3", got)
	}
	if got := reg.SchemaVersion("Other"); got != 1 {
		t.Fatalf("SchemaVersion of an unknown type = %d, want 1", got)
	}
	for _, tc := range []struct {
		payload, schema string
	}{
		{`{"name":"Ada Lovelace"}`, ""},
		{`{"full":"Ada Lovelace"}`, "2"},
		{`{"first":"Ada","last":"Lovelace"}`, "3"},
	} {
		e := eventstore.Event{ID: "e", AggregateID: "u", Type: "NameChanged", Payload: json.RawMessage(tc.payload), Version: 1}
		if tc.schema != "" {
			e.Metadata = map[string]string{aggregate.MetaSchemaVersion: tc.schema, "keep": "me"}
		}
		orig := string(e.Payload)
		de, err := reg.Decode(e)
		if err != nil {
			t.Fatalf("Decode(%s): %v", tc.payload, err)
		}
		if de.Data != (nameV3{First: "Ada", Last: "Lovelace"}) {
			t.Errorf("Decode(%s).Data = %#v", tc.payload, de.Data)
		}
		if de.Metadata[aggregate.MetaSchemaVersion] != "3" && tc.schema != "3" {
			t.Errorf("Decode(%s) metadata = %v, want schema_version 3", tc.payload, de.Metadata)
		}
		if tc.schema != "" && de.Metadata["keep"] != "me" {
			t.Errorf("Decode lost metadata: %v", de.Metadata)
		}
		if string(e.Payload) != orig || (tc.schema != "" && e.Metadata[aggregate.MetaSchemaVersion] != tc.schema) {
			t.Errorf("Decode modified its input")
		}
	}
	for _, bad := range []string{"0", "x", "-1", "4"} {
		e := eventstore.Event{Type: "NameChanged", Payload: json.RawMessage(`{}`), Metadata: map[string]string{aggregate.MetaSchemaVersion: bad}}
		if _, err := reg.Decode(e); !errors.Is(err, aggregate.ErrUpcast) {
			t.Errorf("Decode at schema %q = %v, want ErrUpcast", bad, err)
		}
	}
	// A payload that does not fit the registered type is an error, not a zero value.
	e := eventstore.Event{Type: "NameChanged", Payload: json.RawMessage(`{"first":1}`), Metadata: map[string]string{aggregate.MetaSchemaVersion: "3"}}
	if _, err := reg.Decode(e); err == nil {
		t.Error("Decode of a payload of the wrong shape succeeded")
	}
}

func TestRegistry_Nil(t *testing.T) {
	var reg *aggregate.Registry
	e, err := reg.NewEvent("u-1", nameV3{First: "Ada"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Type != "NameChanged" || e.Metadata[aggregate.MetaSchemaVersion] != "1" || string(e.Payload) != `{"first":"Ada","last":""}` {
		t.Fatalf("NewEvent = %+v", e)
	}
	de, err := reg.Decode(e)
	if err != nil || de.Data != nil || string(de.Payload) != string(e.Payload) {
		t.Fatalf("Decode with a nil registry = %+v, %v; want the raw event", de, err)
	}
	if _, err := reg.NewEvent("u-1", nil); err == nil {
		t.Fatal("NewEvent(nil) succeeded")
	}
}

func TestRegistry_Panics(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	reg := aggregate.NewRegistry()
	aggregate.Register[nameV3](reg)
	mustPanic("Register twice", func() { aggregate.Register[nameV3](reg) })
	up := aggregate.UpcastFunc(func(v nameV3) nameV3 { return v })
	reg.Upcast("NameChanged", 1, up)
	mustPanic("Upcast twice", func() { reg.Upcast("NameChanged", 1, up) })
	mustPanic("Upcast from 0", func() { reg.Upcast("NameChanged", 0, up) })

	bus := aggregate.NewBus()
	h := func(context.Context, rename) (string, error) { return "", nil }
	aggregate.Handle(bus, h)
	mustPanic("Handle twice", func() { aggregate.Handle(bus, h) })
}

type rename struct{ To string }

func (rename) CommandType() string { return "Rename" }

func TestDispatch_Metadata(t *testing.T) {
	var bus aggregate.Bus // the zero value is ready to use
	var seen []map[string]string
	aggregate.Handle(&bus, func(ctx context.Context, c rename) (string, error) {
		seen = append(seen, aggregate.Metadata(ctx))
		return "renamed to " + c.To, nil
	})
	got, err := aggregate.Dispatch[string](context.Background(), &bus, rename{To: "x"})
	if err != nil || got != "renamed to x" {
		t.Fatalf("Dispatch = %q, %v", got, err)
	}
	ctx := aggregate.WithMetadata(context.Background(), map[string]string{aggregate.MetaCorrelationID: "req-1"})
	if _, err := aggregate.Dispatch[string](ctx, &bus, rename{To: "y"}); err != nil {
		t.Fatal(err)
	}
	first, second := seen[0], seen[1]
	if first[aggregate.MetaCausationID] == "" || first[aggregate.MetaCorrelationID] != first[aggregate.MetaCausationID] {
		t.Errorf("first command metadata = %v", first)
	}
	if second[aggregate.MetaCorrelationID] != "req-1" || second[aggregate.MetaCausationID] == first[aggregate.MetaCausationID] {
		t.Errorf("second command metadata = %v", second)
	}
	// The caller's context is untouched.
	if md := aggregate.Metadata(ctx); len(md) != 1 {
		t.Errorf("caller's metadata = %v", md)
	}
}

// nameV2 is NameChanged at schema 2, kept to write its upcaster; nameV3 is
// the registered, current schema.
type nameV2 struct {
	Full string `json:"full"`
}

func (nameV2) EventType() string { return "NameChanged" }

func TestRegistry_NewEventWrongType(t *testing.T) {
	reg := aggregate.NewRegistry()
	aggregate.Register[nameV3](reg)
	reg.Upcast("NameChanged", 2, aggregate.UpcastFunc(func(o nameV2) nameV3 { return nameV3{First: o.Full} }))

	_, err := reg.NewEvent("u-1", nameV2{Full: "Ada Lovelace"})
	if !errors.Is(err, aggregate.ErrWrongEventType) {
		t.Fatalf("NewEvent of an old schema's type = %v, want an error matching ErrWrongEventType", err)
	}
	var wt *aggregate.WrongEventTypeError
	if !errors.As(err, &wt) || wt.EventType != "NameChanged" ||
		wt.Registered != reflect.TypeFor[nameV3]() || wt.Got != reflect.TypeFor[nameV2]() {
		t.Fatalf("NewEvent error = %#v, want a *WrongEventTypeError naming nameV3 and nameV2", err)
	}
	for _, name := range []string{"aggregate_test.nameV3", "aggregate_test.nameV2"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}

	// The registered type, as a value or through a pointer, is stamped
	// with the current schema.
	want, err := reg.NewEvent("u-1", nameV3{First: "Ada"})
	if err != nil || want.Metadata[aggregate.MetaSchemaVersion] != "3" {
		t.Fatalf("NewEvent of the registered type = %+v, %v; want schema 3", want, err)
	}
	got, err := reg.NewEvent("u-1", &nameV3{First: "Ada"})
	if err != nil || string(got.Payload) != string(want.Payload) || got.Metadata[aggregate.MetaSchemaVersion] != "3" {
		t.Fatalf("NewEvent of a pointer to the registered type = %+v, %v; want %s at schema 3", got, err, want.Payload)
	}
	// A nil pointer is an error, not a panic and not a null payload.
	if _, err := reg.NewEvent("u-1", (*nameV3)(nil)); !errors.Is(err, aggregate.ErrUnknownEvent) {
		t.Fatalf("NewEvent of a nil pointer = %v, want ErrUnknownEvent", err)
	}
}
