package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"iter"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/index"
)

// rawStore is the baseline: bbolt used directly, writing what package bolt
// writes (the same buckets, keys, index entries and msgpack records with
// CRC32C; see the bolt package doc) with none of the event-store layer: no
// validation, no retry detection (no lookup in the ids bucket), no group
// commit, no paging. An append is one Update (DB.Batch when concurrent); it
// still reads what any correct writer must: the last position and the
// aggregate's version. A read is one View that yields from inside the
// transaction, decoding as package bolt does.
type rawStore struct {
	db    *bbolt.DB
	batch bool // append with DB.Batch instead of DB.Update
}

// The buckets and format of package bolt (bolt.go).
var (
	rawEvents     = []byte("events")
	rawPositions  = []byte("positions")
	rawTypes      = []byte("types")
	rawTimestamps = []byte("timestamps")
	rawIDs        = []byte("ids")
	rawBuckets    = [][]byte{rawEvents, rawPositions, rawTypes, rawTimestamps, rawIDs, []byte("snapshots"), []byte("meta"), []byte("tags")}
)

func openRaw(path string, noSync, batch bool) (*rawStore, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second, NoSync: noSync, NoStatistics: true})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range rawBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("meta")).Put([]byte("format"), []byte("eventstore/bolt 3"))
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &rawStore{db: db, batch: batch}, nil
}

func (s *rawStore) Close() error { return s.db.Close() }

var errRawConflict = errors.New("rawbolt: version conflict")

// Append stores events, all of one aggregate, in one transaction. It
// returns no events: the caller of a raw store has no use for them.
func (s *rawStore) Append(_ context.Context, events ...eventstore.Event) ([]eventstore.Event, error) {
	if len(events) == 0 {
		return nil, nil
	}
	update := s.db.Update
	if s.batch {
		update = s.db.Batch
	}
	return nil, update(func(tx *bbolt.Tx) error { return rawAppend(tx, events) })
}

func rawAppend(tx *bbolt.Tx, events []eventstore.Event) error {
	evb, posb, typb, tsb, idb := tx.Bucket(rawEvents), tx.Bucket(rawPositions), tx.Bucket(rawTypes), tx.Bucket(rawTimestamps), tx.Bucket(rawIDs)
	// The page fill package bolt uses: the keys of these buckets mostly
	// grow at the end.
	posb.FillPercent, tsb.FillPercent, typb.FillPercent, idb.FillPercent, evb.FillPercent = 1.0, 0.9, 0.9, 0.9, 0.9
	next := uint64(1)
	if k, _ := posb.Cursor().Last(); k != nil {
		next = binary.BigEndian.Uint64(k) + 1
	}
	aggregateID := events[0].AggregateID
	prefix := index.AggregatePrefix(aggregateID)
	current := rawLastVersion(evb.Cursor(), prefix)
	if v := events[0].Version; v != 0 && v != current+1 {
		return errRawConflict
	}
	now := time.Now()
	size := 0
	for i := range events {
		e := &events[i]
		size += 2*len(prefix) + 8 + 64 + len(e.AggregateID) + len(e.Type) + len(e.Payload) + 8 + index.NameSize(e.Type) + 8 + 16 + 16
		for k, v := range e.Metadata {
			size += 10 + len(k) + len(v)
		}
	}
	buf := make([]byte, 0, size)
	for i := range events {
		e := &events[i]
		var id uuid.UUID
		var err error
		if e.ID == "" {
			id, err = uuid.NewV7()
		} else {
			id, err = uuid.Parse(e.ID)
		}
		if err != nil {
			return err
		}
		ts := e.Timestamp
		if ts.IsZero() {
			ts = now
		}
		micros := ts.UnixMicro()
		version, pos := current+1+uint64(i), next+uint64(i)

		start := len(buf)
		buf = index.AppendUint64(append(buf, prefix...), version)
		key := buf[start:len(buf):len(buf)]
		start = len(buf)
		buf = append(buf, id[:]...)
		idKey := buf[start:len(buf):len(buf)]
		start = len(buf)
		buf = rawRecord(buf, id[:], e, version, pos, micros)
		rec := buf[start:len(buf):len(buf)]
		start = len(buf)
		buf = index.AppendUint64(buf, pos)
		posKey := buf[start:len(buf):len(buf)]
		start = len(buf)
		buf = index.AppendType(buf, e.Type, pos)
		typeKey := buf[start:len(buf):len(buf)]
		start = len(buf)
		buf = index.AppendUint64(index.AppendUint64(buf, index.Micros(micros)), pos)
		timeKey := buf[start:len(buf):len(buf)]

		if err := evb.Put(key, rec); err != nil {
			return err
		}
		if err := posb.Put(posKey, key); err != nil {
			return err
		}
		if err := typb.Put(typeKey, key); err != nil {
			return err
		}
		if err := tsb.Put(timeKey, key); err != nil {
			return err
		}
		if err := idb.Put(idKey, key); err != nil {
			return err
		}
	}
	return nil
}

// rawLastVersion returns the version of the aggregate whose events keys
// start with prefix.
func rawLastVersion(c *bbolt.Cursor, prefix []byte) uint64 {
	seek := index.AppendUint64(append(make([]byte, 0, len(prefix)+8), prefix...), math.MaxUint64)
	k, _ := c.Seek(seek)
	switch {
	case k == nil:
		k, _ = c.Last()
	case index.IsEventOf(k, prefix):
	default:
		k, _ = c.Prev()
	}
	if k == nil || !index.IsEventOf(k, prefix) {
		return 0
	}
	return binary.BigEndian.Uint64(k[len(prefix):])
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// rawRecord appends the event record package bolt writes: a msgpack uint32
// with the CRC32C of the rest, then the array [id bin, aggregateID str, type
// str, version, position, timestamp µs, payload bin, metadata map or nil],
// a metadata value that is a UUID in text form stored as its 16 bytes
// (format 3).
func rawRecord(dst, id []byte, e *eventstore.Event, version, pos uint64, micros int64) []byte {
	start := len(dst)
	dst = append(dst, 0xce, 0, 0, 0, 0, 0x98)
	dst = mpBin(dst, id)
	dst = mpStr(dst, e.AggregateID)
	dst = mpStr(dst, e.Type)
	dst = mpUint(dst, version)
	dst = mpUint(dst, pos)
	if micros >= 0 {
		dst = mpUint(dst, uint64(micros))
	} else {
		dst = binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(micros))
	}
	dst = mpBin(dst, e.Payload)
	if len(e.Metadata) == 0 {
		dst = append(dst, 0xc0)
	} else {
		if len(e.Metadata) > 15 {
			panic("rawbolt: more than 15 metadata entries")
		}
		dst = append(dst, 0x80|byte(len(e.Metadata)))
		for _, k := range slices.Sorted(maps.Keys(e.Metadata)) {
			dst = mpStr(dst, k)
			if u, ok := canonicalUUID(e.Metadata[k]); ok {
				dst = append(append(dst, 0xd8, 1), u[:]...) // format 3: a UUID value as its 16 bytes
			} else {
				dst = mpStr(dst, e.Metadata[k])
			}
		}
	}
	binary.BigEndian.PutUint32(dst[start+1:], crc32.Checksum(dst[start+5:], castagnoli))
	return dst
}

// canonicalUUID parses v if it is a UUID in canonical text form (lower-case
// hex, 8-4-4-4-12), which format 3 stores as its 16 bytes.
func canonicalUUID(v string) (uuid.UUID, bool) {
	if len(v) != 36 || strings.ToLower(v) != v {
		return uuid.UUID{}, false
	}
	u, err := uuid.Parse(v)
	return u, err == nil
}

func mpUint(dst []byte, v uint64) []byte {
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

func mpStr(dst []byte, s string) []byte {
	switch n := len(s); {
	case n <= 31:
		dst = append(dst, 0xa0|byte(n))
	case n <= math.MaxUint8:
		dst = append(dst, 0xd9, byte(n))
	default:
		dst = binary.BigEndian.AppendUint16(append(dst, 0xda), uint16(n))
	}
	return append(dst, s...)
}

func mpBin(dst, b []byte) []byte {
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

var errRawRecord = errors.New("rawbolt: malformed record")

// rawDecoder decodes records as package bolt does: it checks the CRC,
// copies every byte out of the memory map, and reuses the aggregate ID and
// type strings that repeat.
type rawDecoder struct {
	aggregateID string
	types       map[string]string
}

func (d *rawDecoder) decode(v []byte, e *eventstore.Event) error {
	if len(v) < 6 || v[0] != 0xce || binary.BigEndian.Uint32(v[1:]) != crc32.Checksum(v[5:], castagnoli) || v[5] != 0x98 {
		return errRawRecord
	}
	b := v[6:]
	id, b, ok := mpReadBytes(b)
	if !ok || len(id) != 16 {
		return errRawRecord
	}
	agg, b, ok1 := mpReadBytes(b)
	typ, b, ok2 := mpReadBytes(b)
	version, b, ok3 := mpReadUint(b)
	pos, b, ok4 := mpReadUint(b)
	var micros int64
	var ok5 bool
	if len(b) > 9 && b[0] == 0xd3 {
		micros, b, ok5 = int64(binary.BigEndian.Uint64(b[1:])), b[9:], true
	} else {
		var u uint64
		u, b, ok5 = mpReadUint(b)
		micros = int64(u)
	}
	payload, b, ok6 := mpReadBytes(b)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || len(b) == 0 {
		return errRawRecord
	}
	if string(agg) != d.aggregateID {
		d.aggregateID = string(agg)
	}
	e.AggregateID = d.aggregateID
	if t, ok := d.types[string(typ)]; ok {
		e.Type = t
	} else {
		if d.types == nil {
			d.types = make(map[string]string)
		}
		e.Type = string(typ)
		d.types[e.Type] = e.Type
	}
	var s [36]byte
	hex.Encode(s[0:8], id[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], id[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], id[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], id[8:10])
	s[23] = '-'
	hex.Encode(s[24:], id[10:])
	e.ID = string(s[:])
	e.Version, e.Position = version, pos
	e.Timestamp = time.UnixMicro(micros).UTC()
	e.Payload = append([]byte(nil), payload...)
	e.Metadata = nil
	switch c := b[0]; {
	case c == 0xc0:
	case c&0xf0 == 0x80 && c > 0x80:
		n := int(c & 0x0f)
		b = b[1:]
		e.Metadata = make(map[string]string, n)
		for range n {
			var k, v []byte
			if k, b, ok = mpReadBytes(b); !ok {
				return errRawRecord
			}
			if len(b) >= 18 && b[0] == 0xd8 && b[1] == 1 {
				e.Metadata[string(k)] = uuid.UUID(b[2:18]).String()
				b = b[18:]
				continue
			}
			if v, b, ok = mpReadBytes(b); !ok {
				return errRawRecord
			}
			e.Metadata[string(k)] = string(v)
		}
	default:
		return errRawRecord
	}
	return nil
}

func mpReadUint(b []byte) (uint64, []byte, bool) {
	if len(b) == 0 {
		return 0, nil, false
	}
	switch c := b[0]; {
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
	}
	return 0, nil, false
}

func mpReadBytes(b []byte) ([]byte, []byte, bool) {
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
	return b[h : h+n], b[h+n:], true
}

// view yields, from inside one read transaction, the events of the records
// scan finds.
func (s *rawStore) view(scan func(tx *bbolt.Tx, yield func(v []byte) bool) error) iter.Seq2[eventstore.Event, error] {
	return func(yield func(eventstore.Event, error) bool) {
		var d rawDecoder
		var err error
		verr := s.db.View(func(tx *bbolt.Tx) error {
			return scan(tx, func(v []byte) bool {
				var e eventstore.Event
				if err = d.decode(v, &e); err != nil {
					return false
				}
				return yield(e, nil)
			})
		})
		if err == nil {
			err = verr
		}
		if err != nil {
			yield(eventstore.Event{}, err)
		}
	}
}

// ReadAggregate reads an aggregate's events from the events bucket.
func (s *rawStore) ReadAggregate(_ context.Context, aggregateID string, afterVersion uint64) iter.Seq2[eventstore.Event, error] {
	prefix := index.AggregatePrefix(aggregateID)
	return s.view(func(tx *bbolt.Tx, yield func([]byte) bool) error {
		c := tx.Bucket(rawEvents).Cursor()
		for k, v := c.Seek(index.Event(aggregateID, afterVersion+1)); k != nil && index.IsEventOf(k, prefix); k, v = c.Next() {
			if !yield(v) {
				return nil
			}
		}
		return nil
	})
}

// pointers yields the records that an index bucket's entries point to,
// from seek on while within(key). Like package bolt, it tries the events
// cursor's next key before seeking: an Append writes consecutive keys.
func (s *rawStore) pointers(name, seek []byte, within func(k []byte) bool) iter.Seq2[eventstore.Event, error] {
	return s.view(func(tx *bbolt.Tx, yield func([]byte) bool) error {
		ec := tx.Bucket(rawEvents).Cursor()
		valid := false
		c := tx.Bucket(name).Cursor()
		for k, ptr := c.Seek(seek); k != nil && within(k); k, ptr = c.Next() {
			var ek, v []byte
			if valid {
				ek, v = ec.Next()
			}
			if ek == nil || !bytes.Equal(ek, ptr) {
				ek, v = ec.Seek(ptr)
			}
			valid = ek != nil
			if !bytes.Equal(ek, ptr) {
				return fmt.Errorf("rawbolt: %x points to no event", k)
			}
			if !yield(v) {
				return nil
			}
		}
		return nil
	})
}

// ReadAll reads the positions bucket.
func (s *rawStore) ReadAll(_ context.Context, afterPosition uint64) iter.Seq2[eventstore.Event, error] {
	return s.pointers(rawPositions, index.Position(afterPosition+1), func([]byte) bool { return true })
}

// ReadType reads one type's entries in the types bucket.
func (s *rawStore) ReadType(_ context.Context, eventType string, afterPosition uint64) iter.Seq2[eventstore.Event, error] {
	prefix := index.TypePrefix(eventType)
	return s.pointers(rawTypes, index.Type(eventType, afterPosition+1), func(k []byte) bool {
		return len(k) == len(prefix)+8 && bytes.HasPrefix(k, prefix)
	})
}

// ReadTime reads the timestamps bucket; it supports only an empty
// aggregateID and a non-zero end, all the benchmarks use.
func (s *rawStore) ReadTime(_ context.Context, aggregateID string, start, end time.Time) iter.Seq2[eventstore.Event, error] {
	if aggregateID != "" || end.IsZero() {
		return func(yield func(eventstore.Event, error) bool) {
			yield(eventstore.Event{}, errors.New("rawbolt: ReadTime of one aggregate or without end: not implemented"))
		}
	}
	endKey := index.Time(end, 0)
	return s.pointers(rawTimestamps, index.Time(start, 0), func(k []byte) bool { return bytes.Compare(k, endKey) < 0 })
}
