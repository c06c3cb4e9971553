package eventstore

import "context"

// Limits of one Import call.
const (
	// MaxImportEvents is the most events one Import call takes.
	MaxImportEvents = 10_000

	// MaxImportSize is the most bytes of payloads and metadata (keys and
	// values) one Import call takes together. One event alone may exceed
	// it by its own size: a call of one event is never refused for size.
	MaxImportSize = 64 << 20
)

// Importer appends events of many aggregates in one atomic commit, keeping
// their IDs, versions, timestamps and metadata; positions are assigned here.
//
// It is the bulk path for moving history between stores (see package
// replicate) and for loading exports: one call is one transaction, so
// importing a thousand events costs about one Append.
//
// Every backend of this module implements it; package storetest's
// RunImport checks the rules below.
type Importer interface {
	// Import stores events, which may belong to many aggregates, atomically
	// and durably (as Append is durable), and returns the events it wrote,
	// in the order given, with their new positions. The positions of the
	// events written by one call are consecutive and follow the order of
	// the call. An empty call does nothing and returns nil.
	//
	// Events keep what the caller set: ID, AggregateID, Type, Payload (byte
	// for byte), Metadata, Timestamp (normalized as by NormalizeTime) and
	// Version. So ID, Timestamp and Version are required: an event without
	// one fails with an error matching ErrInvalidEvent. Every other field
	// follows the rules of Append (see Event); Position is ignored.
	//
	// Within a call, the events of one aggregate come in version order with
	// consecutive versions (v, v+1, v+2, ...), interleaved with other
	// aggregates' events in any way, and no ID comes twice; otherwise the
	// call fails with an error matching ErrInvalidEvent. A call holds at
	// most MaxImportEvents events and MaxImportSize bytes of payloads and
	// metadata (ErrInvalidEvent otherwise).
	//
	// An event whose ID is stored with the same content (aggregate, type,
	// payload bytes, metadata, version and timestamp) is skipped: it is not
	// written again and not returned. A rerun of an import that was
	// interrupted, or whose outcome was unknown, thus writes only what is
	// missing; the skipped events of an aggregate may be followed by new
	// ones in the same call (the stored prefix, then the rest). An ID
	// stored with other content fails with an error matching
	// ErrDuplicateEvent (a *DuplicateEventError naming it).
	//
	// The first event of each aggregate that is not skipped must have the
	// aggregate's stored version + 1; otherwise the call fails with a
	// *ConflictError naming that aggregate (matching ErrConflict): its
	// Expected is that event's version - 1, its Actual the stored version.
	//
	// Any error writes nothing: the call is one transaction. An error
	// matching ErrUnknownOutcome means the commit may or may not have
	// happened; rerunning the same call is safe. ctx bounds the whole call.
	// After Close, Import fails with ErrClosed.
	Import(ctx context.Context, events []Event) ([]Event, error)
}
