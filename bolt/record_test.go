package bolt

import (
	"bytes"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/eventstore-go/eventstore"
)

// libRecord is an event record as github.com/vmihailenco/msgpack sees it.
type libRecord struct {
	_msgpack    struct{} `msgpack:",as_array"`
	ID          []byte
	AggregateID string
	Type        string
	Version     uint64
	Position    uint64
	Timestamp   int64
	Payload     []byte
	Metadata    map[string]any // string or *libUUID
}

// libUUID is a metadata value stored as a UUID (format 3), as the library
// reads and writes the extension.
type libUUID [16]byte

func (u *libUUID) MarshalMsgpack() ([]byte, error) { return u[:], nil }

func (u *libUUID) UnmarshalMsgpack(b []byte) error {
	if len(b) != len(u) {
		return fmt.Errorf("UUID extension of %d bytes", len(b))
	}
	copy(u[:], b)
	return nil
}

func init() { msgpack.RegisterExt(uuidExt, (*libUUID)(nil)) }

// libMetadata is the metadata the library read, with UUIDs in text form;
// ok is false if a value is of another kind.
func libMetadata(m map[string]any) (_ map[string]string, ok bool) {
	if m == nil {
		return nil, true
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case string:
			out[k] = v
		case *libUUID:
			out[k] = uuid.UUID(*v).String()
		default:
			return nil, false
		}
	}
	return out, true
}

// fuzzEvent builds an event from fuzz input, within what Prepare accepts
// closely enough for the codec (which does not validate).
func fuzzEvent(id []byte, agg, typ string, version, position uint64, micros int64, payload []byte, mk, mv string) (eventstore.Event, []byte) {
	var u uuid.UUID
	copy(u[:], id)
	micros = min(max(micros, minMicros), maxMicros)
	e := eventstore.Event{
		ID:          u.String(),
		AggregateID: agg,
		Type:        typ,
		Version:     max(version, 1),
		Position:    max(position, 1),
		Timestamp:   time.UnixMicro(micros).UTC(),
		Payload:     payload,
	}
	if mk != "" {
		// mv, and a UUID in text form: stored as a str and as the UUID
		// extension, unless mv is a UUID too.
		e.Metadata = map[string]string{mk: mv, mk + "2": mv + mv, mk + "3": u.String()}
	}
	return e, u[:]
}

func addRecordSeeds(f *testing.F) {
	f.Add([]byte("0123456789abcdef"), "order-1", "OrderPlaced", uint64(1), uint64(1), int64(1700000000000000), []byte(`{"a":1}`), "", "")
	f.Add([]byte{}, "a", "T", uint64(1<<40), uint64(300), int64(-62135596800000000), []byte(`[]`), "k", "v")
	f.Add([]byte{1}, string(bytes.Repeat([]byte("x"), 300)), string(bytes.Repeat([]byte("y"), 40)), uint64(70000), uint64(1<<33), int64(-33), bytes.Repeat([]byte("z"), 70000), "correlation_id", "abc")
	// Metadata values that are, or nearly are, UUIDs in text form.
	f.Add([]byte("0123456789abcdef"), "a", "T", uint64(1), uint64(1), int64(0), []byte(`{}`), "causation_id", "0190a7e2-3c4d-7e8f-9a0b-1c2d3e4f5a6b")
	f.Add([]byte("0123456789abcdef"), "a", "T", uint64(1), uint64(1), int64(0), []byte(`{}`), "u", "0190A7E2-3C4D-7E8F-9A0B-1C2D3E4F5A6B")
	f.Add([]byte("0123456789abcdef"), "a", "T", uint64(1), uint64(1), int64(0), []byte(`{}`), "u", "0190a7e2x3c4d-7e8f-9a0b-1c2d3e4f5a6b")
	f.Add([]byte("0123456789abcdef"), "a", "T", uint64(1), uint64(1), int64(0), []byte(`{}`), "u", "0190a7e2-3c4d-7e8f-9a0b-1c2d3e4f5a6g")
}

// FuzzEventRecord checks that the hand-written writer and reader agree with
// the msgpack library, in both directions, and round trip.
func FuzzEventRecord(f *testing.F) {
	addRecordSeeds(f)
	f.Fuzz(func(t *testing.T, id []byte, agg, typ string, version, position uint64, micros int64, payload []byte, mk, mv string) {
		e, idb := fuzzEvent(id, agg, typ, version, position, micros, payload, mk, mv)

		// Ours -> ours.
		rec := appendEventRecord(nil, &e, idb)
		var d decoder
		var got eventstore.Event
		if err := d.decode(nil, rec, &got); err != nil {
			t.Fatalf("decode: %v", err)
		}
		requireEqualEvent(t, e, got)

		// A UUID in text form is stored as the extension.
		if e.Metadata != nil && !bytes.Contains(rec, append([]byte{0xd8, uuidExt}, idb...)) {
			t.Fatalf("record %x holds metadata value %s as text", rec, e.ID)
		}

		// Ours -> library.
		var lib libRecord
		if err := msgpack.Unmarshal(rec[crcSize:], &lib); err != nil {
			t.Fatalf("library cannot read our record: %v", err)
		}
		var libCRC uint32
		if err := msgpack.Unmarshal(rec[:crcSize], &libCRC); err != nil {
			t.Fatalf("library cannot read our checksum: %v", err)
		}
		libMeta, ok := libMetadata(lib.Metadata)
		if !ok || !bytes.Equal(lib.ID, idb) || lib.AggregateID != e.AggregateID || lib.Type != e.Type ||
			lib.Version != e.Version || lib.Position != e.Position || lib.Timestamp != e.Timestamp.UnixMicro() ||
			!bytes.Equal(lib.Payload, e.Payload) || !maps.Equal(libMeta, e.Metadata) {
			t.Fatalf("library read %+v, wrote %+v", lib, e)
		}

		// Library -> ours.
		body, err := msgpack.Marshal(&lib)
		if err != nil {
			t.Fatal(err)
		}
		libRec := make([]byte, crcSize, crcSize+len(body))
		libRec = append(libRec, body...)
		sealRecord(libRec)
		var got2 eventstore.Event
		if err := d.decode(nil, libRec, &got2); err != nil {
			t.Fatalf("decode of library record %x: %v", libRec, err)
		}
		requireEqualEvent(t, e, got2)

		// Page mode shares allocations among events: each is still itself.
		var pd decoder
		var page []eventstore.Event
		other, otherID := fuzzEvent([]byte("fedcba9876543210"), agg+"x", typ, 1, 1, 0, []byte(`{}`), "k", "v")
		otherRec := appendEventRecord(nil, &other, otherID)
		for _, r := range [][]byte{rec, libRec, otherRec, rec} {
			if page, err = pd.decodePage(nil, r, page); err != nil {
				t.Fatal(err)
			}
		}
		pd.finish(page)
		requireEqualEvent(t, e, page[0])
		requireEqualEvent(t, e, page[1])
		requireEqualEvent(t, other, page[2])
		requireEqualEvent(t, e, page[3])
		page[0].Payload = append(page[0].Payload, 'x')
		requireEqualEvent(t, e, page[1])

		// Any flipped bit fails the checksum.
		for _, i := range []int{0, len(rec) / 2, len(rec) - 1} {
			bad := bytes.Clone(rec)
			bad[i] ^= 0x10
			if err := d.decode(nil, bad, &got2); err == nil {
				t.Fatalf("flipped byte %d decoded", i)
			}
		}
	})
}

// FuzzParseEventRecord feeds arbitrary bytes (with a valid checksum) to the
// reader: it never panics, and what it accepts the library reads alike.
func FuzzParseEventRecord(f *testing.F) {
	e, idb := fuzzEvent([]byte("0123456789abcdef"), "a", "T", 1, 1, 0, []byte(`{}`), "k", "v")
	f.Add(appendEventRecord(nil, &e, idb)[crcSize:])
	f.Add([]byte{0x98, 0xc4, 0x10})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := append(make([]byte, crcSize), body...)
		sealRecord(rec)
		r, err := parseEventRecord(rec)
		if err != nil {
			return
		}
		var lib libRecord
		if err := msgpack.Unmarshal(body, &lib); err != nil {
			t.Fatalf("we accept %x, the library does not: %v", body, err)
		}
		if !bytes.Equal(lib.ID, r.id) || lib.AggregateID != string(r.aggregateID) || lib.Type != string(r.typ) ||
			lib.Version != r.version || lib.Position != r.position || lib.Timestamp != r.micros ||
			!bytes.Equal(lib.Payload, r.payload) || len(lib.Metadata) > r.metaLen {
			t.Fatalf("we read %+v, the library %+v", r, lib)
		}
		var d decoder
		var got eventstore.Event
		_ = d.fill(nil, &r, &got, -1)
	})
}

func FuzzSnapshotRecord(f *testing.F) {
	f.Add("order-1", uint64(3), "order/v1", []byte("state"), int64(1700000000000000))
	f.Add("a", uint64(1<<60), "", []byte{}, int64(-5))
	f.Fuzz(func(t *testing.T, agg string, version uint64, schema string, state []byte, micros int64) {
		snap := eventstore.Snapshot{AggregateID: agg, Version: version, Schema: schema, State: state,
			Timestamp: time.UnixMicro(min(max(micros, minMicros), maxMicros)).UTC()}
		rec := appendSnapshotRecord(nil, &snap)
		got, err := parseSnapshotRecord([]byte(agg), rec)
		if err != nil {
			t.Fatal(err)
		}
		if got.AggregateID != snap.AggregateID || got.Version != snap.Version || got.Schema != snap.Schema ||
			!bytes.Equal(got.State, snap.State) || !got.Timestamp.Equal(snap.Timestamp) || got.State == nil {
			t.Fatalf("got %+v, want %+v", got, snap)
		}
		bad := bytes.Clone(rec)
		bad[len(bad)-1] ^= 1
		if _, err := parseSnapshotRecord([]byte(agg), bad); err == nil {
			t.Fatal("flipped byte parsed")
		}
	})
}

func requireEqualEvent(t *testing.T, want, got eventstore.Event) {
	t.Helper()
	if got.ID != want.ID || got.AggregateID != want.AggregateID || got.Type != want.Type ||
		got.Version != want.Version || got.Position != want.Position || !got.Timestamp.Equal(want.Timestamp) ||
		got.Timestamp.Location() != time.UTC || !bytes.Equal(got.Payload, want.Payload) ||
		!maps.Equal(got.Metadata, want.Metadata) || (want.Metadata == nil) != (got.Metadata == nil) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}
