// Package index holds the byte encodings of the keys the bolt backend stores,
// chosen so that bytes.Compare orders keys the way reads need them.
//
// Every integer is fixed-width big-endian, so byte order is numeric order.
// Every variable-length name (an aggregate ID, an event type) is prefixed by
// its length as a 2-byte big-endian integer, so that the keys of one name
// never fall inside the range of another: the keys of "a" all start with
// 00 01 'a', and no key of "ab" (00 02 'a' 'b') or "a/b" (00 03 ...) does.
// Names sort by length first, then by bytes; no read depends on the order of
// names, only on the order within one name.
//
// Timestamps are microseconds since the Unix epoch as a signed 64-bit
// integer with its sign bit flipped, so that the years 1 to 9999 (negative
// and positive values alike) sort as unsigned bytes.
package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"time"

	"github.com/google/uuid"
)

// Sizes of the fixed-width parts of keys, in bytes.
const (
	// PositionSize is the size of an encoded position, and of a version.
	PositionSize = 8

	// TimeSize is the size of an encoded timestamp.
	TimeSize = 8

	// MaxNameLength is the longest name a key can hold, in bytes.
	MaxNameLength = math.MaxUint16
)

// ErrKey reports a key that does not have the shape its decoder expects.
var ErrKey = errors.New("index: malformed key")

// AppendUint64 appends v as 8 bytes big-endian.
func AppendUint64(dst []byte, v uint64) []byte {
	return binary.BigEndian.AppendUint64(dst, v)
}

// Position returns the key of a position in the positions bucket: 8 bytes
// big-endian.
func Position(pos uint64) []byte {
	return AppendUint64(make([]byte, 0, PositionSize), pos)
}

// ParsePosition decodes a key made by Position.
func ParsePosition(key []byte) (uint64, error) {
	if len(key) != PositionSize {
		return 0, ErrKey
	}
	return binary.BigEndian.Uint64(key), nil
}

// AppendName appends name prefixed by its length (2 bytes big-endian). The
// result is a prefix that no encoding of another name starts with. Names
// longer than MaxNameLength are the caller's error; they are truncated so
// that the encoding stays well-formed.
func AppendName(dst []byte, name string) []byte {
	if len(name) > MaxNameLength {
		name = name[:MaxNameLength]
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(name)))
	return append(dst, name...)
}

// NameSize returns the size of name encoded by AppendName.
func NameSize(name string) int { return 2 + min(len(name), MaxNameLength) }

// splitName splits an encoded name off the front of key and returns the
// name's bytes and the rest.
func splitName(key []byte) (name, rest []byte, err error) {
	if len(key) < 2 {
		return nil, nil, ErrKey
	}
	n := int(binary.BigEndian.Uint16(key))
	if len(key) < 2+n {
		return nil, nil, ErrKey
	}
	return key[2 : 2+n], key[2+n:], nil
}

// AppendEvent appends the key of an event in the events bucket: the
// aggregate ID (AppendName) and the version (8 bytes big-endian). The keys
// of one aggregate are contiguous and in version order.
func AppendEvent(dst []byte, aggregateID string, version uint64) []byte {
	return AppendUint64(AppendName(dst, aggregateID), version)
}

// Event returns the key of an event in the events bucket; see AppendEvent.
func Event(aggregateID string, version uint64) []byte {
	return AppendEvent(make([]byte, 0, NameSize(aggregateID)+PositionSize), aggregateID, version)
}

// AggregatePrefix returns the prefix every events key of aggregateID starts
// with, and no other key does.
func AggregatePrefix(aggregateID string) []byte {
	return AppendName(make([]byte, 0, NameSize(aggregateID)+PositionSize), aggregateID)
}

// ParseEvent decodes a key made by AppendEvent. The returned aggregate ID
// aliases key.
func ParseEvent(key []byte) (aggregateID []byte, version uint64, err error) {
	name, rest, err := splitName(key)
	if err != nil || len(rest) != PositionSize {
		return nil, 0, ErrKey
	}
	return name, binary.BigEndian.Uint64(rest), nil
}

// IsEventOf reports whether key is an events key of the aggregate whose
// AggregatePrefix is prefix.
func IsEventOf(key, prefix []byte) bool {
	return len(key) == len(prefix)+PositionSize && bytes.HasPrefix(key, prefix)
}

// AppendType appends the key of an event in the types bucket: the type
// (AppendName) and the position (8 bytes big-endian). The keys of one type
// are contiguous and in position order.
func AppendType(dst []byte, eventType string, pos uint64) []byte {
	return AppendUint64(AppendName(dst, eventType), pos)
}

// Type returns the key of an event in the types bucket; see AppendType.
func Type(eventType string, pos uint64) []byte {
	return AppendType(make([]byte, 0, NameSize(eventType)+PositionSize), eventType, pos)
}

// TypePrefix returns the prefix every types key of eventType starts with, and
// no other key does.
func TypePrefix(eventType string) []byte {
	return AppendName(make([]byte, 0, NameSize(eventType)+PositionSize), eventType)
}

// ParseType decodes a key made by AppendType. The returned type aliases key.
func ParseType(key []byte) (eventType []byte, pos uint64, err error) {
	return ParseEvent(key) // the same shape: name, then 8 bytes
}

// Micros encodes microseconds since the Unix epoch so that they sort as
// unsigned big-endian bytes: the sign bit is flipped.
func Micros(us int64) uint64 { return uint64(us) ^ (1 << 63) }

// UnMicros reverses Micros.
func UnMicros(u uint64) int64 { return int64(u ^ (1 << 63)) }

// AppendTime appends the key of an event in the timestamps bucket: the
// timestamp in microseconds (Micros, 8 bytes big-endian) and the position (8
// bytes big-endian). Keys sort by timestamp, then position.
func AppendTime(dst []byte, t time.Time, pos uint64) []byte {
	return AppendUint64(AppendUint64(dst, Micros(t.UnixMicro())), pos)
}

// Time returns the key of an event in the timestamps bucket; see AppendTime.
func Time(t time.Time, pos uint64) []byte {
	return AppendTime(make([]byte, 0, TimeSize+PositionSize), t, pos)
}

// ParseTime decodes a key made by AppendTime. The time is in UTC.
func ParseTime(key []byte) (t time.Time, pos uint64, err error) {
	if len(key) != TimeSize+PositionSize {
		return time.Time{}, 0, ErrKey
	}
	us := UnMicros(binary.BigEndian.Uint64(key))
	return time.UnixMicro(us).UTC(), binary.BigEndian.Uint64(key[TimeSize:]), nil
}

// IDSize is the size of a key in the ids bucket.
const IDSize = 16

// ID returns the key of an event ID in the ids bucket: the 16 bytes of the
// UUID. id must be a UUID (Prepare checked it).
func ID(id string) ([]byte, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return nil, ErrKey
	}
	return u[:], nil
}
