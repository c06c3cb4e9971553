package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/eventstore-go/eventstore"
)

// This file holds the hand-written msgpack reader and writer of records. The
// records stay plain msgpack, readable by any msgpack tool; writing and
// parsing them by hand avoids reflection on the hot paths (record_test.go
// fuzzes them against github.com/vmihailenco/msgpack for agreement).
//
// A record is two msgpack values one after the other:
//
//	uint32 (always the 5-byte form 0xce)  CRC32C (Castagnoli) of the bytes after it
//	array                                 the fields
//
// An event record's array has 8 fields, or 9 for an event with tags:
//
//	[id bin(16), aggregateID str, type str, version uint, position uint,
//	 timestamp int (microseconds since the Unix epoch), payload bin,
//	 metadata map[str]str or nil, tags [str, ...]]
//
// An event without tags has the 8-field record of format 1.
//
// A metadata value is a str, or, from format 3 on, a UUID: the msgpack
// fixext 16 of type uuidExt holding the 16 bytes of a value in the
// canonical text form (lower-case hex, 8-4-4-4-12), which it stands for.
// Writers store every such value so (correlation and causation IDs are
// UUIDs in most applications: 18 bytes instead of 38); any other value,
// upper-case hex included, stays a str, so that every value reads back
// byte for byte.
//
// A snapshot record's array has 5 fields:
//
//	[aggregateID str, version uint, schema str, state bin, timestamp int]

// errRecord is wrapped in ErrCorrupt when a record does not parse.
var errRecord = errors.New("malformed record")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcSize is the size of the msgpack uint32 that starts every record.
const crcSize = 5

const (
	eventFields    = 8
	taggedFields   = 9 // an event record with tags
	snapshotFields = 5
)

// corrupt returns an error matching eventstore.ErrCorrupt about key.
func corrupt(what string, key []byte, cause error) error {
	return &corruptError{what: what, key: slices.Clone(key), cause: cause}
}

// corruptError describes a record that failed its checks. It matches
// eventstore.ErrCorrupt and its cause.
type corruptError struct {
	what  string
	key   []byte
	cause error
}

func (e *corruptError) Error() string {
	return "bolt: " + e.what + " " + hex.EncodeToString(e.key) + ": " + eventstore.ErrCorrupt.Error() + ": " + e.cause.Error()
}

func (e *corruptError) Unwrap() []error { return []error{eventstore.ErrCorrupt, e.cause} }

// errChecksum is the cause of a record whose checksum fails.
var errChecksum = errors.New("checksum mismatch")

// checkRecord verifies the checksum of v and returns the msgpack array after
// it.
func checkRecord(v []byte) ([]byte, error) {
	if len(v) < crcSize || v[0] != 0xce {
		return nil, errRecord
	}
	body := v[crcSize:]
	if binary.BigEndian.Uint32(v[1:]) != crc32.Checksum(body, castagnoli) {
		return nil, errChecksum
	}
	return body, nil
}

// sealRecord writes the checksum header of the record rec, which starts with
// crcSize bytes reserved for it.
func sealRecord(rec []byte) {
	rec[0] = 0xce
	binary.BigEndian.PutUint32(rec[1:], crc32.Checksum(rec[crcSize:], castagnoli))
}

// eventRecordSize bounds the size of e's record, for preallocation.
func eventRecordSize(e *eventstore.Event) int {
	n := crcSize + 1 + 2 + 16 + 5 + len(e.AggregateID) + 5 + len(e.Type) + 9 + 9 + 9 + 5 + len(e.Payload) + 5
	for k, v := range e.Metadata {
		n += 10 + len(k) + len(v)
	}
	for _, t := range e.Tags {
		n += 3 + 2 + len(t)
	}
	return n
}

// appendEventRecord appends the record of e, whose ID is the UUID id, to
// dst.
func appendEventRecord(dst []byte, e *eventstore.Event, id []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0)
	if len(e.Tags) == 0 {
		dst = append(dst, 0x90|eventFields)
	} else {
		dst = append(dst, 0x90|taggedFields)
	}
	dst = appendBin(dst, id)
	dst = appendStr(dst, e.AggregateID)
	dst = appendStr(dst, e.Type)
	dst = appendUint(dst, e.Version)
	dst = appendUint(dst, e.Position)
	dst = appendInt(dst, e.Timestamp.UnixMicro())
	dst = appendBin(dst, e.Payload)
	if len(e.Metadata) == 0 {
		dst = append(dst, 0xc0)
	} else {
		dst = appendMapLen(dst, len(e.Metadata))
		// Sorted, so that equal events have equal records.
		for _, k := range slices.Sorted(maps.Keys(e.Metadata)) {
			dst = appendStr(dst, k)
			dst = appendMetaValue(dst, e.Metadata[k])
		}
	}
	if len(e.Tags) > 0 {
		dst = appendArrayLen(dst, len(e.Tags))
		for _, t := range e.Tags {
			dst = appendStr(dst, t)
		}
	}
	sealRecord(dst[start:])
	return dst
}

// rawEvent is a parsed event record whose byte fields alias the record.
type rawEvent struct {
	id, aggregateID, typ []byte
	version, position    uint64
	micros               int64
	payload              []byte
	metaLen              int    // number of metadata pairs
	meta                 []byte // the metadata pairs, msgpack
	tagsLen              int    // number of tags
	tags                 []byte // the tags, msgpack strs
}

// parseEventRecord checks and parses the record v.
func parseEventRecord(v []byte) (rawEvent, error) {
	var r rawEvent
	err := parseEventRecordTo(&r, v)
	return r, err
}

// parseEventRecordTo is parseEventRecord into *r, which it may change even
// when it fails.
func parseEventRecordTo(r *rawEvent, v []byte) error {
	b, err := checkRecord(v)
	if err != nil {
		return err
	}
	n, b, ok := readArrayLen(b)
	if !ok || n != eventFields && n != taggedFields {
		return errRecord
	}
	if r.id, b, ok = readBytes(b); !ok || len(r.id) != 16 {
		return errRecord
	}
	if r.aggregateID, b, ok = readBytes(b); !ok {
		return errRecord
	}
	if r.typ, b, ok = readBytes(b); !ok {
		return errRecord
	}
	if r.version, b, ok = readUint(b); !ok {
		return errRecord
	}
	if r.position, b, ok = readUint(b); !ok {
		return errRecord
	}
	if r.micros, b, ok = readInt(b); !ok {
		return errRecord
	}
	if r.payload, b, ok = readBytes(b); !ok {
		return errRecord
	}
	if r.metaLen, b, ok = readMapLen(b); !ok {
		return errRecord
	}
	r.meta = b
	for range r.metaLen {
		if _, b, ok = readBytes(b); !ok {
			return errRecord
		}
		if _, _, b, ok = readMetaValue(b); !ok {
			return errRecord
		}
	}
	r.meta = r.meta[:len(r.meta)-len(b)]
	r.tagsLen, r.tags = 0, nil
	if n == taggedFields {
		if r.tagsLen, b, ok = readArrayLen(b); !ok || r.tagsLen == 0 || r.tagsLen > eventstore.MaxTags {
			return errRecord
		}
		r.tags = b
		for range r.tagsLen {
			if _, b, ok = readBytes(b); !ok {
				return errRecord
			}
		}
	}
	if len(b) != 0 {
		return errRecord
	}
	return nil
}

// decoder turns records into events, copying every byte out of the record
// and reusing the strings that repeat from one event to the next. A decoder
// is not safe for concurrent use.
//
// In page mode (decodePage, then finish), it also shares allocations among
// the events of one page: the payloads of small events are cut from shared
// slabs of at most slabSize bytes, and the IDs and aggregate IDs from one
// string per page. The slices are capped, so that no append by a caller
// reaches another event's bytes; a caller that keeps one event keeps at most
// a slab and a page's strings alive.
//
// Page mode also shares metadata: an event whose metadata record equals the
// last one decoded gets the same map (the events of one Append usually carry
// the same correlation metadata). The rule that a read event's Metadata is
// read-only (see eventstore.Event) allows it; maps are shared only within
// one read, as the pooled decoder forgets them between reads (see
// putReadBuf).
type decoder struct {
	aggregateID string            // the last aggregate ID, reused while it repeats
	interned    map[string]string // types and metadata keys, reused

	slab []byte // the payload slab being filled; never reused once cut

	// recent caches interned strings by a cheap hash of their bytes, in
	// front of interned.
	recent [32]string

	// The strings of the page being decoded, made into one string by
	// finish, and the fields to set from it: the IDs and aggregate IDs
	// (fixups, free of pointers, one or two per event) and the metadata
	// values (metas).
	strs   []byte
	fixups []fixup
	metas  []metaFixup
	shares []shareFixup
	agg    fixup // the pending aggregate ID, when agg.n > 0

	// The last metadata decoded in page mode: its record (a copy) and its
	// map. metaOwner is noMeta when there is none, metaDone when the map is
	// made (meta), and 1 + the index of its event in the page while the map
	// waits for finish.
	metaRaw   []byte
	meta      map[string]string
	metaOwner int32
}

// Values of decoder.metaOwner besides an event's index + 1.
const (
	noMeta   = 0  // no metadata to share
	metaDone = -1 // the map is made: decoder.meta
)

// fixup sets the ID or AggregateID of page[i] from the page's strings.
type fixup struct {
	i, off, n int32
	field     uint8
}

// metaFixup sets the value of a metadata key of page[i] from the page's
// strings.
type metaFixup struct {
	i, off, n int32
	pairs     int32  // the event's number of metadata pairs
	key       string // the metadata key
}

// shareFixup sets the Metadata of page[i] to that of page[from].
type shareFixup struct{ i, from int32 }

// The fields a fixup sets.
const (
	fieldAggregateID = iota
	fieldID
)

// maxInterned bounds the strings a decoder keeps for reuse.
const maxInterned = 256

// Payload slabs: payloads up to slabMaxPayload bytes share slabs of
// slabSize bytes.
const (
	slabSize       = 32<<10 - 64 // an allocation of the largest small size class, not a large one
	slabMaxPayload = 2 << 10
)

// decode parses the record v stored under the events key k into e.
func (d *decoder) decode(k, v []byte, e *eventstore.Event) error {
	var r rawEvent
	if err := parseEventRecordTo(&r, v); err != nil {
		return corrupt("event", k, err)
	}
	return d.fill(k, &r, e, -1)
}

// decodePage parses the record v stored under the events key k and appends
// it to page. The event's ID and perhaps its AggregateID stay empty until
// finish(page).
func (d *decoder) decodePage(k, v []byte, page []eventstore.Event) ([]eventstore.Event, error) {
	var r rawEvent
	if err := parseEventRecordTo(&r, v); err != nil {
		return page, corrupt("event", k, err)
	}
	page = append(page, eventstore.Event{})
	if err := d.fill(k, &r, &page[len(page)-1], len(page)-1); err != nil {
		return page[:len(page)-1], err
	}
	return page, nil
}

// finish sets the strings of the events decodePage appended to page.
func (d *decoder) finish(page []eventstore.Event) {
	if len(d.fixups) == 0 && len(d.metas) == 0 && len(d.shares) == 0 {
		return
	}
	s := string(d.strs)
	for _, f := range d.fixups {
		if int(f.i) >= len(page) {
			continue // an event dropped on error
		}
		v := s[f.off : f.off+f.n]
		if f.field == fieldID {
			page[f.i].ID = v
		} else {
			page[f.i].AggregateID = v
		}
	}
	for _, f := range d.metas {
		if int(f.i) >= len(page) {
			continue // an event dropped on error
		}
		m := page[f.i].Metadata
		if m == nil {
			m = make(map[string]string, f.pairs)
			page[f.i].Metadata = m
		}
		m[f.key] = s[f.off : f.off+f.n]
	}
	for _, f := range d.shares {
		if int(f.i) >= len(page) {
			continue // an event dropped on error
		}
		page[f.i].Metadata = page[f.from].Metadata
	}
	if d.metaOwner > 0 {
		// The map of the last metadata is made now; later pages share it.
		if i := int(d.metaOwner) - 1; i < len(page) {
			d.meta, d.metaOwner = page[i].Metadata, metaDone
		} else {
			d.meta, d.metaOwner = nil, noMeta
		}
	}
	if d.agg.n > 0 {
		d.aggregateID = s[d.agg.off : d.agg.off+d.agg.n]
		d.agg = fixup{}
	}
	d.strs = d.strs[:0]
	d.fixups = d.fixups[:0]
	clear(d.metas)
	d.metas = d.metas[:0]
	d.shares = d.shares[:0]
}

// forgetMeta makes the decoder share no map it made before: the next read
// belongs to another caller.
func (d *decoder) forgetMeta() {
	d.meta, d.metaOwner, d.metaRaw = nil, noMeta, d.metaRaw[:0]
}

// fill copies the parsed record r, stored under the events key k, into e,
// which is page[i] in page mode and i is -1 otherwise. k may be nil when
// the caller checked it.
func (d *decoder) fill(k []byte, r *rawEvent, e *eventstore.Event, i int) error {
	if k != nil && !isEventKey(k, r.aggregateID, r.version) {
		return corrupt("event", k, errors.New("key does not match record"))
	}
	if r.version == 0 || r.position == 0 || r.micros < minMicros || r.micros > maxMicros {
		return corrupt("event", k, errRecord)
	}
	switch {
	case d.agg.n > 0 && string(r.aggregateID) == string(d.strs[d.agg.off:d.agg.off+d.agg.n]):
		d.fixups = append(d.fixups, fixup{i: int32(i), off: d.agg.off, n: d.agg.n})
	case d.agg.n == 0 && string(r.aggregateID) == d.aggregateID:
		e.AggregateID = d.aggregateID
	case i < 0:
		d.aggregateID = string(r.aggregateID)
		e.AggregateID = d.aggregateID
	default:
		d.agg = fixup{i: int32(i), off: int32(len(d.strs)), n: int32(len(r.aggregateID))}
		d.strs = append(d.strs, r.aggregateID...)
		d.fixups = append(d.fixups, d.agg)
	}
	e.Type = d.intern(r.typ)
	var id [36]byte
	formatUUID(&id, r.id)
	if i < 0 {
		e.ID = string(id[:])
	} else {
		d.fixups = append(d.fixups, fixup{i: int32(i), off: int32(len(d.strs)), n: 36, field: fieldID})
		d.strs = append(d.strs, id[:]...)
	}
	e.Version = r.version
	e.Position = r.position
	e.Timestamp = time.UnixMicro(r.micros).UTC()
	e.Payload = d.copyPayload(r.payload, i >= 0)
	e.Tags = nil
	if r.tagsLen > 0 {
		e.Tags = make([]string, r.tagsLen)
		b := r.tags
		for j := range e.Tags {
			var t []byte
			t, b, _ = readBytes(b)
			e.Tags[j] = d.intern(t)
		}
	}
	e.Metadata = nil
	if r.metaLen > 0 && i >= 0 && d.metaOwner != noMeta && bytes.Equal(r.meta, d.metaRaw) {
		// The same metadata as the last event's: share its map.
		if d.metaOwner == metaDone {
			e.Metadata = d.meta
		} else {
			d.shares = append(d.shares, shareFixup{i: int32(i), from: d.metaOwner - 1})
		}
		return nil
	}
	if r.metaLen > 0 {
		if i >= 0 {
			d.metaRaw = append(d.metaRaw[:0], r.meta...)
			d.meta, d.metaOwner = nil, int32(i)+1
		}
		if i < 0 {
			e.Metadata = make(map[string]string, r.metaLen)
		}
		b := r.meta
		var text [36]byte
		for range r.metaLen {
			var key, val []byte
			var isUUID bool
			key, b, _ = readBytes(b)
			val, isUUID, b, _ = readMetaValue(b)
			if isUUID {
				formatUUID(&text, val)
				val = text[:]
			}
			k := d.intern(key)
			if i < 0 {
				e.Metadata[k] = string(val)
				continue
			}
			// finish makes the map and sets the value.
			d.metas = append(d.metas, metaFixup{i: int32(i), off: int32(len(d.strs)), n: int32(len(val)), key: k, pairs: int32(r.metaLen)})
			d.strs = append(d.strs, val...)
		}
	}
	return nil
}

// intern returns b as a string, the same string for the same bytes while
// it has room.
func (d *decoder) intern(b []byte) string {
	var h uint
	if n := len(b); n > 0 {
		h = (uint(n) + uint(b[0])*3 + uint(b[n/2])*5 + uint(b[n-1])*7) % uint(len(d.recent))
	}
	if s := d.recent[h]; s == string(b) {
		return s
	}
	s, ok := d.interned[string(b)]
	if !ok {
		s = string(b)
		if d.interned == nil {
			d.interned = make(map[string]string)
		}
		if len(d.interned) >= maxInterned {
			return s
		}
		d.interned[s] = s
	}
	d.recent[h] = s
	return s
}

// copyPayload copies p out of the record, into a slab in page mode.
func (d *decoder) copyPayload(p []byte, page bool) []byte {
	if !page || len(p) > slabMaxPayload {
		c := make([]byte, len(p))
		copy(c, p)
		return c
	}
	if cap(d.slab)-len(d.slab) < len(p) {
		// Small reads get small slabs: each is twice the last.
		d.slab = make([]byte, 0, min(max(2*cap(d.slab), slabMaxPayload), slabSize))
	}
	start := len(d.slab)
	d.slab = append(d.slab, p...)
	return d.slab[start:len(d.slab):len(d.slab)]
}

// isEventKey reports whether k is the events key of aggregateID at version.
func isEventKey(k, aggregateID []byte, version uint64) bool {
	n := len(aggregateID)
	return len(k) == 2+n+8 && int(binary.BigEndian.Uint16(k)) == n &&
		bytes.Equal(k[2:2+n], aggregateID) && binary.BigEndian.Uint64(k[2+n:]) == version
}

// Timestamps a record may hold: the years 1 to 9999.
var (
	minMicros = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	maxMicros = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()
)

// formatUUID writes the canonical form of the 16-byte UUID u into dst.
func formatUUID(dst *[36]byte, u []byte) {
	_ = u[15]
	put := func(at int, b byte) {
		dst[at], dst[at+1] = hexPairs[2*int(b)], hexPairs[2*int(b)+1]
	}
	put(0, u[0])
	put(2, u[1])
	put(4, u[2])
	put(6, u[3])
	dst[8] = '-'
	put(9, u[4])
	put(11, u[5])
	dst[13] = '-'
	put(14, u[6])
	put(16, u[7])
	dst[18] = '-'
	put(19, u[8])
	put(21, u[9])
	dst[23] = '-'
	put(24, u[10])
	put(26, u[11])
	put(28, u[12])
	put(30, u[13])
	put(32, u[14])
	put(34, u[15])
}

// hexPairs holds the two lower-case hex digits of every byte, in order.
var hexPairs = func() *[512]byte {
	const digits = "0123456789abcdef"
	var t [512]byte
	for b := range 256 {
		t[2*b], t[2*b+1] = digits[b>>4], digits[b&0x0f]
	}
	return &t
}()

// appendSnapshotRecord appends the record of snap to dst.
func appendSnapshotRecord(dst []byte, snap *eventstore.Snapshot) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0)
	dst = append(dst, 0x90|snapshotFields)
	dst = appendStr(dst, snap.AggregateID)
	dst = appendUint(dst, snap.Version)
	dst = appendStr(dst, snap.Schema)
	dst = appendBin(dst, snap.State)
	dst = appendInt(dst, snap.Timestamp.UnixMicro())
	sealRecord(dst[start:])
	return dst
}

// parseSnapshotRecord checks and parses the record v stored under the
// snapshots key k.
func parseSnapshotRecord(k, v []byte) (eventstore.Snapshot, error) {
	var snap eventstore.Snapshot
	b, err := checkRecord(v)
	if err != nil {
		return snap, corrupt("snapshot", k, err)
	}
	n, b, ok := readArrayLen(b)
	if !ok || n != snapshotFields {
		return snap, corrupt("snapshot", k, errRecord)
	}
	agg, b, ok1 := readBytes(b)
	version, b, ok2 := readUint(b)
	schema, b, ok3 := readBytes(b)
	state, b, ok4 := readBytes(b)
	micros, b, ok5 := readInt(b)
	snap.Version = version
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || len(b) != 0 || string(agg) != string(k) ||
		micros < minMicros || micros > maxMicros {
		return eventstore.Snapshot{}, corrupt("snapshot", k, errRecord)
	}
	snap.AggregateID = string(agg)
	snap.Schema = string(schema)
	snap.State = append([]byte{}, state...)
	snap.Timestamp = time.UnixMicro(micros).UTC()
	return snap, nil
}

// msgpack writer.

func appendUint(dst []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(dst, byte(v))
	case v <= math.MaxUint8:
		return append(dst, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, 0xce), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xcf), v)
}

func appendInt(dst []byte, v int64) []byte {
	switch {
	case v >= 0:
		return appendUint(dst, uint64(v))
	case v >= -32:
		return append(dst, byte(v))
	case v >= math.MinInt8:
		return append(dst, 0xd0, byte(v))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(dst, 0xd1), uint16(v))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(dst, 0xd2), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(v))
}

func appendStr(dst []byte, s string) []byte {
	switch n := len(s); {
	case n <= 31:
		dst = append(dst, 0xa0|byte(n))
	case n <= math.MaxUint8:
		dst = append(dst, 0xd9, byte(n))
	case n <= math.MaxUint16:
		dst = binary.BigEndian.AppendUint16(append(dst, 0xda), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint32(append(dst, 0xdb), uint32(n))
	}
	return append(dst, s...)
}

// uuidExt is the msgpack extension type of a metadata value stored as a
// UUID (format 3).
const uuidExt = 1

// appendMetaValue appends the metadata value v: a UUID in its canonical text
// form as the 16-byte extension uuidExt, anything else as a str.
func appendMetaValue(dst []byte, v string) []byte {
	u, ok := canonicalUUID(v)
	if !ok {
		return appendStr(dst, v)
	}
	return append(append(dst, 0xd8, uuidExt), u[:]...)
}

// canonicalUUID returns the 16 bytes of v when v is a UUID in canonical
// text form (lower-case hex, 8-4-4-4-12), the form appendMetaValue stores
// as uuidExt.
func canonicalUUID[T string | []byte](v T) (u [16]byte, ok bool) {
	if len(v) != 36 {
		return u, false
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if v[i] != '-' {
				return u, false
			}
			i++
			continue
		}
		hi, lo := lowerHex[v[i]], lowerHex[v[i+1]]
		if hi|lo > 0x0f {
			return u, false
		}
		u[j] = hi<<4 | lo
		i, j = i+2, j+1
	}
	return u, true
}

// lowerHex maps the lower-case hex digits to their values and every other
// byte to 0xff.
var lowerHex = func() *[256]byte {
	var t [256]byte
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "0123456789abcdef" {
		t[c] = byte(i)
	}
	return &t
}()

// readMetaValue reads a metadata value: a str (or a bin, as readBytes), or
// a UUID extension, whose 16 bytes it returns with isUUID true.
func readMetaValue(b []byte) (v []byte, isUUID bool, rest []byte, ok bool) {
	if len(b) >= 18 && b[0] == 0xd8 && b[1] == uuidExt {
		return b[2:18:18], true, b[18:], true
	}
	v, rest, ok = readBytes(b)
	return v, false, rest, ok
}

func appendBin(dst []byte, b []byte) []byte {
	switch n := len(b); {
	case n <= math.MaxUint8:
		dst = append(dst, 0xc4, byte(n))
	case n <= math.MaxUint16:
		dst = binary.BigEndian.AppendUint16(append(dst, 0xc5), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint32(append(dst, 0xc6), uint32(n))
	}
	return append(dst, b...)
}

func appendArrayLen(dst []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(dst, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xdd), uint32(n))
}

func appendMapLen(dst []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(dst, 0x80|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, 0xde), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xdf), uint32(n))
}

// msgpack reader. Each function reads one value from the front of b and
// returns it with the rest of b, or ok false when b does not start with a
// well-formed value of the expected kind.

func readUint(b []byte) (v uint64, rest []byte, ok bool) {
	if len(b) == 0 {
		return 0, nil, false
	}
	c := b[0]
	switch {
	case c <= 0x7f:
		return uint64(c), b[1:], true
	case c == 0xcc && len(b) >= 2:
		return uint64(b[1]), b[2:], true
	case c == 0xcd && len(b) >= 3:
		return uint64(binary.BigEndian.Uint16(b[1:])), b[3:], true
	case c == 0xce && len(b) >= 5:
		return uint64(binary.BigEndian.Uint32(b[1:])), b[5:], true
	case c == 0xcf && len(b) >= 9:
		return binary.BigEndian.Uint64(b[1:]), b[9:], true
	case c >= 0xd0 && c <= 0xd3:
		// A signed encoding of a non-negative value.
		i, rest, ok := readInt(b)
		if !ok || i < 0 {
			return 0, nil, false
		}
		return uint64(i), rest, true
	}
	return 0, nil, false
}

func readInt(b []byte) (v int64, rest []byte, ok bool) {
	if len(b) == 0 {
		return 0, nil, false
	}
	c := b[0]
	switch {
	case c <= 0x7f:
		return int64(c), b[1:], true
	case c >= 0xe0:
		return int64(int8(c)), b[1:], true
	case c == 0xd0 && len(b) >= 2:
		return int64(int8(b[1])), b[2:], true
	case c == 0xd1 && len(b) >= 3:
		return int64(int16(binary.BigEndian.Uint16(b[1:]))), b[3:], true
	case c == 0xd2 && len(b) >= 5:
		return int64(int32(binary.BigEndian.Uint32(b[1:]))), b[5:], true
	case c == 0xd3 && len(b) >= 9:
		return int64(binary.BigEndian.Uint64(b[1:])), b[9:], true
	case c >= 0xcc && c <= 0xcf:
		u, rest, ok := readUint(b)
		if !ok || u > math.MaxInt64 {
			return 0, nil, false
		}
		return int64(u), rest, true
	}
	return 0, nil, false
}

// readBytes reads a str or a bin.
func readBytes(b []byte) (v, rest []byte, ok bool) {
	if len(b) == 0 {
		return nil, nil, false
	}
	var n, h int
	switch c := b[0]; {
	case c >= 0xa0 && c <= 0xbf:
		n, h = int(c&0x1f), 1
	case (c == 0xd9 || c == 0xc4) && len(b) >= 2:
		n, h = int(b[1]), 2
	case (c == 0xda || c == 0xc5) && len(b) >= 3:
		n, h = int(binary.BigEndian.Uint16(b[1:])), 3
	case (c == 0xdb || c == 0xc6) && len(b) >= 5:
		n, h = int(binary.BigEndian.Uint32(b[1:])), 5
	default:
		return nil, nil, false
	}
	if n > len(b)-h {
		return nil, nil, false
	}
	return b[h : h+n : h+n], b[h+n:], true
}

func readArrayLen(b []byte) (n int, rest []byte, ok bool) {
	if len(b) == 0 {
		return 0, nil, false
	}
	switch c := b[0]; {
	case c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f), b[1:], true
	case c == 0xdc && len(b) >= 3:
		return int(binary.BigEndian.Uint16(b[1:])), b[3:], true
	case c == 0xdd && len(b) >= 5:
		return int(binary.BigEndian.Uint32(b[1:])), b[5:], true
	}
	return 0, nil, false
}

// readMapLen reads a map header; nil reads as an empty map.
func readMapLen(b []byte) (n int, rest []byte, ok bool) {
	if len(b) == 0 {
		return 0, nil, false
	}
	switch c := b[0]; {
	case c == 0xc0:
		return 0, b[1:], true
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f), b[1:], true
	case c == 0xde && len(b) >= 3:
		return int(binary.BigEndian.Uint16(b[1:])), b[3:], true
	case c == 0xdf && len(b) >= 5:
		return int(binary.BigEndian.Uint32(b[1:])), b[5:], true
	}
	return 0, nil, false
}
