package eventstore

// Limits of Event.Tags.
const (
	// MaxTags is the most tags one event carries.
	MaxTags = 32

	// MaxTagLength is the longest tag, in bytes.
	MaxTagLength = 256
)
