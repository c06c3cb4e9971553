package eventstore

import "time"

// Limits shared by every store.
const (
	// MaxNameLength is the longest AggregateID or Type, in bytes.
	MaxNameLength = 512

	// MaxMetadataSize is the most bytes an event's metadata keys and
	// values may hold together.
	MaxMetadataSize = 64 << 10

	// DefaultMaxPayloadSize is the largest payload a store accepts unless
	// its options say otherwise, in bytes.
	DefaultMaxPayloadSize = 1 << 20
)

// NormalizeTime returns t in UTC, truncated to microseconds, without a
// monotonic clock reading: the form in which every store keeps timestamps.
func NormalizeTime(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}
