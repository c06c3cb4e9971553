// Package bolt is an eventstore.Store that keeps everything in one bbolt
// file (go.etcd.io/bbolt): the embedded default backend.
//
// Open a file, append, read:
//
//	s, err := bolt.Open("events.db", nil)
//	if err != nil { ... }
//	defer s.Close()
//	stored, err := s.Append(ctx, eventstore.Event{AggregateID: "order-1", Type: "OrderPlaced", Payload: []byte(`{}`)})
//
// # File format
//
// Every event is stored once, in the events bucket; the other buckets point
// to it by its events key. Integers in keys are 8 bytes big-endian and names
// are prefixed by their length (2 bytes big-endian), so that byte order is
// the order reads need and no key of one aggregate or type falls inside the
// range of another (package github.com/eventstore-go/eventstore/index holds
// the encodings). The buckets, each key -> value:
//
//	events      len16 aggregate ID, version u64                      -> event record
//	positions   position u64                                         -> events key
//	types       len16 type, position u64                             -> events key
//	timestamps  µs since 1970 as i64, sign bit flipped, position u64 -> events key
//	ids         event ID (the UUID's 16 bytes)                       -> events key
//	tags        len16 tag, position u64                              -> events key (one per tag of an event)
//	snapshots   aggregate ID (its bytes)                             -> snapshot record
//	checkpoints checkpoint name (its bytes)                          -> position u64
//	meta        "format"                                             -> "eventstore/bolt 3"
//	rm:NAME     the application's (read models: see Project)
//
// Format 2 is format 1 with tags: the tags bucket, and a 9th field in the
// records of events with tags (an event without tags has the record of
// format 1). Open upgrades a file of format 1 in place, adding the tags
// bucket and rewriting the format key in one transaction; a version of
// this package that knows only format 1 then refuses the file with
// ErrUnknownFormat, rather than append events whose tags it would drop.
//
// Format 3 is format 2 where a metadata value may also be a UUID: a value
// in the canonical text form of one (lower-case hex, 8-4-4-4-12, as
// uuid.UUID.String and aggregate.Dispatch's correlation and causation IDs
// write it) is stored as its 16 bytes, a msgpack fixext 16 of type 1,
// which reads back as the same text; any other value stays a str. It made
// the file of the bench's realistic fixture (a million events, each with
// a correlation and a causation ID) 7% smaller: 954 against 1022 bytes an
// event. A record of format 1 or 2 is a record of format 3, so a
// read-write Open upgrades a file of format 1 or 2 by rewriting the format
// key alone (and adding the tags bucket to one of format 1), and only
// versions of this package that know format 3 open it afterwards; a
// read-only Open reads every format as it is. Compact rewrites the records
// of an older format in the current one.
//
// These are the store's buckets, a fixed list. Buckets whose names start
// with "rm:" (ReadModelPrefix) are reserved for read models, which
// projections keep in the file beside the checkpoint they advance in the
// same transaction (see Project); the store never reads them, and Check
// vets only their pages. The checkpoints bucket came after the format was
// named: Open adds it to a file that lacks it, and older versions of this
// package ignore it, so the format stays "eventstore/bolt 1".
//
// (len16 is a 2-byte big-endian length followed by the bytes; u64 and i64
// are 8 bytes big-endian.) Timestamps thus sort correctly for the years 1 to
// 9999.
//
// Records are msgpack, readable by any msgpack tool: a uint32 (always in its
// 5-byte form, 0xce) holding the CRC32C (Castagnoli) of the rest of the
// record, then an array of the fields:
//
//	event     [id bin, aggregateID str, type str, version, position, timestamp µs, payload bin, metadata map (str -> str or UUID) or nil(, tags [str])]
//	snapshot  [aggregateID str, version, schema str, state bin, timestamp µs]
//
// A record whose checksum fails, or whose fields do not match its key, reads
// as an error matching eventstore.ErrCorrupt, never as data. Opening a bbolt
// file without the meta bucket, or with another format, fails with an error
// matching eventstore.ErrUnknownFormat.
//
// # Writes
//
// Appends are durable on return: each commit is fdatasynced, as a record
// of the write-ahead log (below) or, with Options.NoWAL, by bbolt itself
// (unless Options.UnsafeNoSync). Concurrent appends share commits: while one commit
// runs, the appends that arrive queue up, and the next commit takes all of
// them at once, checks each in turn against the ones before it, and answers
// each caller with its own result; a conflict in one append does not fail
// the others. Positions are assigned in the write transaction, so they have
// no gaps and follow commit order.
//
// Concurrent writers that append again as soon as they are answered would
// split into two cohorts, each queueing while the other's commit runs, so
// that every commit (two fsyncs) carried half of them. So a commit first
// gathers: it waits for as many appends as the last commit took and saw
// arrive, while they keep arriving (it stops when none came for a
// sixteenth of the last commit's duration, at most 1ms), for at most half
// the last commit's duration and Options.MaxCommitWait, and not at all
// once that long has passed since the last commit ended. A lone writer
// thus commits at once, and one that follows a burst waits at most one
// such stall. On the bench machine this doubled the rate of 8 concurrent
// writers and raised that of 64 by a fifth.
//
// When a commit fails, its outcome is unknown: bbolt may report an error for
// a commit that reached the disk. Append then returns an error matching
// eventstore.ErrUnknownOutcome (retrying with the same event IDs is safe),
// and the store refuses every later write with eventstore.ErrNeedsReopen
// until it is closed and opened again. Open then syncs the file and reads
// its state from the disk, not from what a failed fsync may have left in
// the cache (see Open).
//
// # Write-ahead log
//
// bbolt fsyncs a commit twice: its pages, then its meta page. With the
// log (the default), a group commit instead writes its events as one
// record to the file <path>-wal (created 0600 by the first write, its
// directory fsynced, covered by the store file's lock) and fdatasyncs the
// log, which acknowledges its appends. Its bbolt transaction stays open
// (held): the next group commits write into it too, and bbolt commits it,
// without fsync, when 64 group commits or 8 MiB of records are in it,
// when a read begins, before any other write, and at a checkpoint. So one
// bbolt commit, whose cost grows with the pages it touches rather than the
// events it holds, serves many group commits. A read commits the held
// transaction before it begins, so that it sees every acknowledged append
// (reads of a store that is being appended to pay for the commits that
// the appends skipped); subscriptions and Head see a commit only once its
// record is synced, so they never see an event that is not durable. A
// record carries its length, a CRC32C and the log's generation, so that a
// torn tail, or the bytes of an earlier generation left in a reused log,
// are never replayed.
//
// A checkpoint fdatasyncs the store's file and makes its state the log's
// base: a header, written to one of two slots with the next generation,
// holds a copy of bbolt's meta page. Until the next checkpoint the store
// keeps a read transaction open on the base, so that bbolt never writes
// over its pages. A checkpoint runs when the log reaches 16 MiB, after 128
// bbolt commits or 4 MiB of file growth (the pages that commits free cannot be
// reused until then), a second after the last commit, before a commit that
// may have to grow bbolt's memory map (which waits for every read
// transaction), and after every write that is not an append (SaveCheckpoint,
// SaveSnapshot, DeleteSnapshot, Import, projections), which the log does not
// hold: such a write returns once it is in the base. Close checkpoints and
// removes the log: a closed store is one file.
//
// After a crash, Open writes the base's meta page back into the file, so
// that bbolt reads the base, whose pages are intact whatever the commits
// after it left half-written, replays the log's records of the base's
// generation in one synced transaction, and removes the log. Opening with
// Options.NoWAL replays a log too. A read-only Open of a file with such a
// log fails with ErrNeedsRecovery: the file alone may be torn. Before the
// first write creates a log, the store marks the file's format (format key
// "eventstore/bolt 3+log", in a synced commit); Close, and an Open that has
// replayed a log, reset it. Versions of this package without the log
// accept only formats 1 and 2 (every version that writes format 3 has the
// log), so they refuse a file a crash left with a log
// (eventstore.ErrUnknownFormat) rather than read it without its last
// commits; likewise this version leaves alone a log beside a file of a
// format it does not know, and Open fails with ErrUnknownFormat. A log
// that a version writing format 2 left ("eventstore/bolt 2+log") is
// replayed like this version's own. A Backup taken while the store is open carries the mark, which
// the next read-write Open of the copy resets. The mark costs a synced
// commit when the log is created and another at Close.
//
// The trade-off: one fdatasync per commit instead of two, and one bbolt
// commit per many (single appends and group commits are faster, see
// bench/RESULTS.md), for a second file while the store is open, memory for
// the held transaction (8 MiB of records, plus the group commit that
// crosses that line, and bbolt's copies of the pages they touch), reads
// that may wait for a group commit in progress (its fdatasync included)
// before they commit the held transaction, a checkpoint's sync now and then (a commit that
// runs it waits for it), a file that grows between checkpoints by the pages
// the base holds (a few MiB), and the replay on Open after a crash.
// Options.NoWAL turns the log off; Options.UnsafeNoSync (no fsync at all)
// implies it.
//
// When the log's write or fdatasync fails, the commit is rolled back and
// its appends answer eventstore.ErrUnknownOutcome (the record may be in
// the log, and then the next Open replays it), and the store refuses
// later writes until it is reopened; Close leaves the log to that Open.
// When a held transaction fails to reach bbolt (its commit fails, or the
// rollback of a failed group commit that joined it takes it along), the
// appends it held were acknowledged already and stay durable in the log,
// but the file lacks them: every later read and write then fails with
// eventstore.ErrNeedsReopen rather than answer without them, and the next
// Open replays them. A failed checkpoint refuses later writes (reads go
// on); the commits it followed were durable already.
//
// # Reads
//
// Reads stream page by page (Options.ReadPageSize events, and at most 16 MiB
// of records, as a commit holds): each page is read in its own read
// transaction and copied out of the memory map before the
// transaction ends, and no event is yielded while a transaction is open. A
// caller may append from inside its loop, and a long replay neither blocks
// writers nor keeps old pages alive. ctx is checked between events.
//
// Read walks the index buckets of the tags and types its filter names and
// decodes only the events they agree on (see Read). ReadAggregate walks
// the aggregate's keys in the events bucket; ReadAll,
// ReadType and ReadTime of every aggregate walk the positions, types and
// timestamps buckets and fetch the events they point to. ReadTime of one
// aggregate walks that aggregate's events instead (not the timestamps
// bucket, which holds every aggregate's), reading only each record's
// timestamp, and orders the matches in memory (16 bytes per matching event)
// before reading them a page at a time.
//
// Records are parsed by hand, not by reflection, and the events of one page
// share allocations: small payloads are cut from shared buffers of at most
// 32 KiB, and the IDs and aggregate IDs of a page from one string; events
// of one read whose metadata equal the previous event's share its map (the
// read-only rule of eventstore.Event.Metadata). Each slice
// is capped at its own length, so no append reaches another event's bytes,
// but an event kept after the loop keeps its buffer (at most 32 KiB) alive;
// copy a payload (bytes.Clone) to keep it alone for long.
//
// # Subscriptions
//
// Subscribe reads like ReadAll and ReadType (see Subscribe for the
// filters), but only up to the last position whose commit has returned
// (with the log, whose record is synced): a subscription never yields an
// event before its commit's fsync, nor one of a failed commit. After each
// commit the store wakes its subscriptions, which read on from where they
// stopped; an idle one is a goroutine blocked on a channel. Head returns
// that same position.
//
// With the log, a read first commits the group commits that bbolt holds
// back (see "Write-ahead log"), which a subscription reading after every
// group commit would do each time. Instead, for each batch of held-back
// group commits that begins while a subscription runs, the store keeps a
// copy of their log records (the live tail, emptied by the bbolt commit
// that takes them, at 64 group commits or 8 MiB of records), and a
// subscription that has read up to them decodes its next events from
// there, the same records and so the same events, and selects them with
// Filter.Match. A subscription that starts in the middle of a batch reads
// the file once, which commits it. A subscription that is slow to pull
// keeps the records it was given alive until it has read them. Measured
// here with one live subscription, 64 concurrent appenders ran at 1.5x
// the rate they had when each group commit was committed for it
// (BenchmarkAppendSubscribed), and the median time from Append's return
// to the subscription's yield fell from about 50 µs to about 5 µs
// (BenchmarkSubscribe in bench/).
//
// Check verifies a whole file: bbolt's page structure, every record's
// checksum, and that every index agrees with the events.
//
// # Projections
//
// Project keeps a read model in the file, in buckets named "rm:..."
// (ReadModelPrefix), exactly once: each batch of events is handed to the
// handler, and the projection's checkpoint advanced, in one write
// transaction, so that after any crash the read model holds the effects of
// exactly the events up to the checkpoint. One Project runs per name on a
// Store; ViewReadModel reads read models, ResetProjection clears one for a
// rebuild. The handler's ProjectTx and ViewReadModel's ReadModelTx reach
// only "rm:" buckets (others fail with ErrNotReadModel).
//
// # Damaged files
//
// bbolt trusts its pages: on a damaged file it can panic, or read outside
// its memory map. This package guarantees, for a file damaged on disk
// (bit flips, zeroed or misplaced pages, truncation):
//
//   - Open fails with eventstore.ErrCorrupt (or ErrUnknownFormat for a file
//     that is not bbolt's, of any size but 0) rather than panic: before
//     bbolt reads the file, Open checks, under the file's lock, the meta
//     pages and the freelist, which bbolt reads when it opens a file. If
//     bbolt panics anyway, Open releases the file and its lock, so that a
//     later Open is not refused with ErrLocked; bbolt's memory map of the
//     file, if it made one, stays until the process exits.
//   - Check reports ErrCorrupt, never crashes: it checks every page
//     itself, reading the file rather than the map, before bbolt's own
//     check walks the map.
//   - Reads, Version and Append turn a panic or a fault inside bbolt into
//     ErrCorrupt, and reads check what they walk (below).
//   - If bbolt panics where it keeps its locks (both meta pages damaged
//     while the store is open), the store fails every later call at once
//     with an error matching eventstore.ErrNeedsReopen and ErrCorrupt, and
//     Close returns without waiting for calls bbolt blocked; it releases
//     the file's lock, and leaks bbolt's memory map and those calls'
//     goroutines. Open the file again (and restore it from a backup).
//
// The corruption campaign in campaign_test.go checks this on hundreds of
// damaged copies of a store, each in a child process.
//
// bbolt's pages carry no checksum; records do. Besides each record's
// checksum and that its fields match its key, reads make checks that cost
// a comparison per event and a seek per read, and end with an error
// matching eventstore.ErrCorrupt (after the events read before it) when one
// fails:
//
//   - ReadAggregate, and ReadTime of one aggregate (which walks the same
//     keys): versions follow afterVersion+1, +2, ... with no gap, and when
//     the walk leaves the aggregate, the aggregate's last version, found by
//     a seek of its own in the same read transaction, is the last walked.
//   - ReadAll: positions follow afterPosition+1, +2, ... with no gap, up to
//     the last key of the positions bucket, found the same way.
//   - ReadType and ReadTime of every aggregate: each entry points to an
//     event with the position and the type or timestamp its key holds,
//     keys increase, and the walk reaches the last key of its range, found
//     the same way. ReadTime over all time (a start in year 1 or before, a
//     zero end or one after year 9999) also counts the events up to the
//     last position it saw when it began, and must meet them all.
//   - Read (and Subscribe with tags or items): each entry it follows must
//     point to an event at the position its key holds. It does not check
//     that its walks reach the end of their ranges: a tag's or type's
//     entries lost from a damaged page go unnoticed there, as they would
//     for a condition of AppendIf. Check finds them.
//
// The walks of ReadAll, ReadType and ReadTime, which start with a seek
// (one per read transaction), also step back from where the seek landed:
// the key before must come before the seek's target. That step follows
// the tree's page pointers, not the keys in its branch pages, so a damaged branch key that sends a seek past keys
// it should have found (where the walk would then start late, with no gap
// to see in ReadType's or ReadTime's positions) is noticed. Lookups of one
// key (a snapshot, an event ID on Append or Import, a checkpoint) do the
// same when they miss, so that a damaged page does not make a stored
// snapshot, ID or checkpoint pass for absent.
//
// So a damaged page that makes a walk skip keys or stop at a key outside
// its range is noticed, except where the same keys are hidden from the
// seek too: the last keys of an aggregate, of the log or of a type, lost
// from their leaf page (its element count lowered) or in pages that a
// damaged branch page no longer reaches, go unnoticed. Nor can ReadType or
// a bounded ReadTime notice entries missing inside their range: the
// positions of one type or time range have gaps by nature. Check finds all
// of these: every index must hold one entry per event.
//
// # Caveats
//
//   - One process per file. Open locks the file; a second Open, in this
//     process or another, fails with an error matching eventstore.ErrLocked
//     after Options.Timeout, saying that another process (or another Store
//     in this process) has the file open.
//   - Local filesystems only: bbolt relies on mmap, flock and fsync, which
//     network filesystems do not all honour.
//   - The file never shrinks: events are never deleted, and the space a
//     deleted snapshot frees is reused but not returned to the system.
//   - Damaged files: see above.
package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/follow"
	"github.com/eventstore-go/eventstore/internal/gather"
	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	_ eventstore.Store         = (*Store)(nil)
	_ eventstore.SnapshotStore = (*Store)(nil)
)

// Bucket names.
var (
	bucketEvents     = []byte("events")
	bucketPositions  = []byte("positions")
	bucketTypes      = []byte("types")
	bucketTimestamps = []byte("timestamps")
	bucketIDs        = []byte("ids")
	bucketSnapshots  = []byte("snapshots")
	bucketMeta       = []byte("meta")
	bucketTags       = []byte("tags") // format 2

	// The buckets of format 1; format 2 adds bucketTags.
	allBuckets = [][]byte{bucketEvents, bucketPositions, bucketTypes, bucketTimestamps, bucketIDs, bucketSnapshots, bucketMeta}
)

// The meta bucket's format key, and the format this package writes.
var (
	keyFormat    = []byte("format")
	formatPrefix = []byte("eventstore/bolt ")
	formatV1     = []byte("eventstore/bolt 1")
	formatV2     = []byte("eventstore/bolt 2") // v1 with tags
	formatV3     = []byte("eventstore/bolt 3") // the format this package writes: v2 with UUID metadata values

	// formatLogged is format 3 in a file that has, or may have, a
	// write-ahead log beside it holding commits that the file lacks. It
	// is set, durably, before a log is created and reset once the log is
	// gone, so that versions of this package that know no log (and so
	// would not replay it) refuse the file with ErrUnknownFormat instead
	// of reading a file that a crash left without its last commits.
	formatLogged = []byte("eventstore/bolt 3+log")

	// formatLoggedV2 is formatLogged of format 2, which the versions of
	// this package that wrote format 2 set: Open replays its log as any.
	formatLoggedV2 = []byte("eventstore/bolt 2+log")
)

// isFormatV2 reports whether format, a format key, is format 2's, with or
// without its mark of a log: what replayLog and upgrade turn into format 3.
func isFormatV2(format []byte) bool {
	return bytes.Equal(format, formatV2) || bytes.Equal(format, formatLoggedV2)
}

// knownFormats are the formats Open reads.
var knownFormats = [][]byte{formatV1, formatV2, formatLoggedV2, formatV3, formatLogged}

// checkFormat fails with an error matching eventstore.ErrUnknownFormat
// unless format, the meta bucket's format key, is one of knownFormats.
func checkFormat(format []byte) error {
	switch {
	case slices.ContainsFunc(knownFormats, func(f []byte) bool { return bytes.Equal(format, f) }):
		return nil
	case bytes.HasPrefix(format, formatPrefix):
		return fmt.Errorf("%w: format %q, this package reads %q", eventstore.ErrUnknownFormat, format, knownFormats)
	default:
		return fmt.Errorf("%w: meta bucket without a known format (format %q)", eventstore.ErrUnknownFormat, format)
	}
}

// Defaults of Options.
const (
	// DefaultTimeout is how long Open waits for the file lock by default.
	DefaultTimeout = 5 * time.Second

	// DefaultReadPageSize is how many events a read copies out per read
	// transaction by default.
	DefaultReadPageSize = 512
)

// Options configure Open. A nil *Options means every default.
type Options struct {
	// Timeout is how long Open waits for the lock on the file, held by
	// another process or another Store in this process, before it fails
	// with an error matching eventstore.ErrLocked. Zero or less means
	// DefaultTimeout (5s); Open never waits forever.
	Timeout time.Duration

	// UnsafeNoSync skips the fsync of every commit. Appends are then no
	// longer durable: a power loss or OS crash can lose acknowledged events
	// or corrupt the whole file. A process crash alone loses nothing. Only
	// for data you can rebuild, such as tests and bulk imports. Default
	// false.
	UnsafeNoSync bool

	// MaxPayloadSize is the largest payload Append accepts, in bytes. Zero
	// or less means eventstore.DefaultMaxPayloadSize (1 MiB).
	MaxPayloadSize int

	// ReadPageSize is how many events a read copies out per read
	// transaction, within 16 MiB of records (a page holds at least one
	// event). Larger pages replay faster; smaller ones hold each read
	// transaction for less time. Zero or less means DefaultReadPageSize
	// (512).
	ReadPageSize int

	// MaxCommitWait caps how long a commit waits for concurrent appends to
	// join it (see "Writes" in the package doc), which is also at most half
	// the duration of the last commit. Zero means no cap beyond that; less
	// than zero turns the wait off, so that a commit takes only the appends
	// already queued.
	MaxCommitWait time.Duration

	// ReadOnly opens the file for reading only, under a shared lock: any
	// number of read-only Stores, in this process or others, may hold the
	// file together, and a writable Store excludes them (each waits for
	// the other as for any lock, see Timeout). Every write (Append,
	// SaveSnapshot, DeleteSnapshot, SaveCheckpoint) then fails with an
	// error matching ErrReadOnly; reads, Head, Check and Backup work. The
	// file must already be a store: a missing file fails with an error
	// matching fs.ErrNotExist, an empty one with
	// eventstore.ErrUnknownFormat, one whose write-ahead log a crash left
	// with ErrNeedsRecovery. Subscribe on a read-only Store yields
	// the events stored and then waits, since no other process can append
	// while it holds the file. Default false.
	ReadOnly bool

	// NoWAL turns the write-ahead log off (see "Write-ahead log" in the
	// package doc): each commit is then a plain bbolt commit, which
	// fsyncs the file twice, and no log file is ever made. With the log,
	// a commit fdatasyncs one record of the log, and checkpoints sync the
	// file. UnsafeNoSync and ReadOnly imply NoWAL (a read-only Open still
	// refuses a file whose log needs recovery). Default false: the log is
	// on.
	NoWAL bool

	// PageSize is the size of bbolt's pages in a file that Open creates:
	// a power of two from 1024 to 65536 bytes; anything else fails with
	// an error matching ErrInvalidOptions. A file that exists keeps the
	// page size it was made with. Larger pages hold more of what single
	// appends leave behind when they split a page: on the bench's
	// realistic fixture (a million events appended in calls of 1 to 3),
	// 8192-byte pages made the file 7% smaller (947 against 1022 bytes an
	// event, measured with format 2's records) and ReadAll up to 1.17x as
	// fast, at the cost of more bytes written per commit: single durable
	// appends ran at 0.91x, and small files (thousands of events) were
	// larger, not smaller. Zero means
	// bbolt's default, the operating system's page size (4096 on most
	// systems).
	PageSize int
}

// ErrInvalidOptions reports Options that Open cannot use.
var ErrInvalidOptions = errors.New("bolt: invalid options")

// Store is an event store in one bbolt file. It is safe for concurrent use.
type Store struct {
	db         *bbolt.DB
	path       string
	maxPayload int
	pageSize   int

	// readOnly is Options.ReadOnly: writes fail with ErrReadOnly.
	readOnly bool

	// tailSubs counts the subscriptions running: the live tail is kept
	// while there are any (see tail.go).
	tailSubs atomic.Int64

	// file is the file bbolt opened, captured so that its lock can be
	// released when bbolt itself cannot be closed; boltPageSize is the
	// file's page size.
	file         *os.File
	boltPageSize int

	// ops counts the operations in progress (enter to exit), plus
	// closedBit once Close has begun; the exit that leaves a closed store
	// idle closes idle, which Close waits for.
	ops      atomic.Int64
	idle     chan struct{}
	idleOnce sync.Once

	// broken holds the error every call returns once bbolt panicked in a
	// way that may leave its locks held (see markBroken); brokenCh is
	// closed then, so that Close stops waiting for operations in progress.
	broken     atomic.Pointer[error]
	brokenCh   chan struct{}
	brokenOnce sync.Once

	// poisoned is set when a commit failed: the store refuses writes until
	// it is reopened.
	poisoned atomic.Bool

	// wmu serializes write transactions (group commits and snapshot
	// writes) together with the poisoned check: a writer takes it, checks
	// poisoned, and holds it until its commit or rollback has set poisoned
	// or stuck. bbolt releases its own writer lock inside a failing Commit,
	// before poisoned is set, so without wmu another write could begin and
	// commit after a failed one.
	wmu sync.Mutex

	// stuck is set when a write transaction panicked while rolling back:
	// bbolt may still hold its writer lock, so Close must not wait for it.
	stuck atomic.Bool

	// Group commit: queue holds the appends waiting for the next commit;
	// leading reports whether some goroutine runs commits, which waits for
	// concurrent appends with gather first. All three are guarded by qmu.
	qmu     sync.Mutex
	queue   []*appendReq
	leading bool
	gather  gather.Gatherer

	// commit commits tx; tests replace it to simulate failures.
	commit func(tx *bbolt.Tx) error

	// signal holds the last position whose commit returned, and wakes
	// subscriptions when it grows (see Subscribe).
	signal *follow.Signal

	// proj holds the names of the projections running (project.go).
	proj projections

	// wal is the write-ahead log, nil when it is off (walmode.go).
	wal *walState
}

// Open opens the event store in the file at path, creating the file (mode
// 0600) and its buckets if it does not exist.
//
// It fails with an error matching eventstore.ErrLocked when another Store,
// in this process or another, holds the file for longer than the timeout;
// eventstore.ErrUnknownFormat when the file is not an event store (a file
// that is not bbolt's at all, of any size but 0, or a bbolt file of
// another application or format); eventstore.ErrCorrupt when the file is
// damaged. Before bbolt reads the file, Open checks, under the file's
// lock, the pages bbolt trusts when it opens a file (the meta pages and
// the freelist), so that a damaged file fails with ErrCorrupt rather than
// a panic inside bbolt. An empty file becomes a new store. A write-ahead
// log that a crash left beside the file is replayed first, whatever
// Options.NoWAL says (see "Write-ahead log" in the package doc); a
// read-only Open refuses it with ErrNeedsRecovery.
//
// On Linux, Open locks the file itself before bbolt reads it. When the file
// is new (empty), Open fsyncs its directory, so that the file's name
// survives a power loss as its first commit does. When the file exists,
// Open fdatasyncs it and then drops the cached copy of bbolt's meta pages
// (POSIX_FADV_DONTNEED), so that the state the store finds is the one on
// the disk (every page that a meta page on the disk reaches was synced
// before that meta page was written). This makes the recovery from
// eventstore.ErrUnknownOutcome (close, open again, retry the same events)
// safe after a failed fsync: Linux may keep the pages whose writeback
// failed in its cache, marked clean, and a retry that found the events
// there would report them as stored although the disk never got them. The
// limits: the drop is advice, and the kernel does not evict pages that
// another process has mapped (a reader outside this package), and nothing
// helps against a disk that acknowledges writes it then loses. Elsewhere
// than Linux, Open does none of this.
func Open(path string, opts *Options) (s *Store, err error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxPayloadSize <= 0 {
		o.MaxPayloadSize = eventstore.DefaultMaxPayloadSize
	}
	if o.ReadPageSize <= 0 {
		o.ReadPageSize = DefaultReadPageSize
	}
	if ps := o.PageSize; ps != 0 && (ps < 1024 || ps > 65536 || ps&(ps-1) != 0) {
		return nil, fmt.Errorf("bolt: open %s: %w: PageSize %d is not a power of two from 1024 to 65536", path, ErrInvalidOptions, ps)
	}

	// bbolt opens the file through openFile, which locks it and vets it
	// first, and keeps it: after a panic inside bbolt, releasing the lock
	// must not depend on bbolt.
	var file *os.File
	var replay [][]byte // the records of a log to replay, if there is one
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		if err := lockFile(f, o.Timeout, !o.ReadOnly); err != nil {
			_ = f.Close()
			return nil, err
		}
		if o.ReadOnly {
			if err := vetReadOnly(f); err != nil { // readonly.go
				releaseFile(f)
				return nil, err
			}
		}
		// Whether or not this Store uses a log, a log left by a crash
		// must be replayed: the file may not be whole without it.
		if replay, err = recoverLog(f, name, o.ReadOnly); err != nil { // walmode.go
			releaseFile(f)
			return nil, err
		}
		if err := prepareFile(f, name); err != nil { // durable.go
			releaseFile(f)
			return nil, err
		}
		if err := vetOpen(f); err != nil {
			releaseFile(f)
			return nil, err
		}
		file = f
		return f, nil
	}

	useWAL := !o.NoWAL && !testNoWAL && !o.UnsafeNoSync && !o.ReadOnly
	var db *bbolt.DB
	defer func() {
		if r := recover(); r != nil {
			// bbolt may hold its own locks and its memory map: do not call
			// into it again. The map (if bbolt made one) stays until the
			// process exits; the file and its lock are released.
			err = fmt.Errorf("bolt: open %s: %w: bbolt panicked: %v", path, eventstore.ErrCorrupt, r)
			s = nil
			if file != nil {
				releaseFile(file)
			}
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	bopts := &bbolt.Options{
		PageSize:     o.PageSize,
		Timeout:      o.Timeout,
		NoSync:       o.UnsafeNoSync,
		NoStatistics: true,
		ReadOnly:     o.ReadOnly,
		OpenFile:     openFile,
	}
	if useWAL {
		bopts.InitialMmapSize = walInitialMmapSize
	}
	db, err = bbolt.Open(path, 0o600, bopts)
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		// Where lockFile leaves the locking to bbolt.
		return nil, fmt.Errorf("bolt: open %s: %w", path, errLocked(o.Timeout))
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("bolt: open %s: %w: not a bbolt file: %w", path, eventstore.ErrUnknownFormat, err)
	case errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("bolt: open %s: %w: %w", path, eventstore.ErrCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	if replay != nil {
		// A log beside a file of a format this package does not know is
		// not this package's to replay: keep it for the version that wrote
		// it.
		if err := db.View(func(tx *bbolt.Tx) error {
			if meta := tx.Bucket(bucketMeta); meta != nil {
				return checkFormat(meta.Get(keyFormat))
			}
			return nil
		}); err != nil {
			closeQuietly(db)
			return nil, fmt.Errorf("bolt: open %s: %w", path, err)
		}
		if len(replay) > 0 {
			if _, err := replayLog(db, replay); err != nil {
				closeQuietly(db)
				return nil, fmt.Errorf("bolt: open %s: replay the log: %w", path, err)
			}
			// With UnsafeNoSync bbolt did not sync the replay; the log's
			// records were durable, so they must be before it goes.
			if db.NoSync {
				if err := db.Sync(); err != nil {
					closeQuietly(db)
					return nil, fmt.Errorf("bolt: open %s: replay the log: sync: %w", path, err)
				}
			}
		}
		if err := finishRecovery(path); err != nil {
			closeQuietly(db)
			return nil, fmt.Errorf("bolt: open %s: %w", path, err)
		}
	}
	if err := initFile(db, o.ReadOnly); err != nil {
		closeQuietly(db)
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	signal, err := newSignal(db)
	if err != nil {
		closeQuietly(db)
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	s = &Store{
		db:           db,
		path:         path,
		file:         file,
		boltPageSize: db.Info().PageSize,
		idle:         make(chan struct{}),
		brokenCh:     make(chan struct{}),
		readOnly:     o.ReadOnly,
		maxPayload:   o.MaxPayloadSize,
		pageSize:     o.ReadPageSize,
		commit:       (*bbolt.Tx).Commit,
		gather:       gather.Gatherer{MaxWait: o.MaxCommitWait},
		signal:       signal,
	}
	if useWAL {
		// From now on the log makes commits durable (see walmode.go).
		db.NoSync = true
		s.wal = &walState{path: path + walSuffix, dir: filepath.Dir(path)}
	}
	liveStores.Store(s, struct{}{})
	return s, nil
}

// errLocked is Open's error for a file whose lock it waited for in vain.
func errLocked(waited time.Duration) error {
	return fmt.Errorf("%w: another process (or another Store in this process) has this file open; close it, or wait for it to exit (waited %v)", eventstore.ErrLocked, waited)
}

// vetOpen checks a file before bbolt opens it: vetFile, unless it is empty
// (a new store).
func vetOpen(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return nil
	}
	_, err = vetFile(f, fi.Size())
	return err
}

// releaseFile unlocks and closes f, the file bbolt opened, without bbolt.
func releaseFile(f *os.File) {
	_ = unlockFile(f)
	_ = f.Close()
}

func closeQuietly(db *bbolt.DB) {
	defer func() { _ = recover() }()
	_ = db.Close()
}

// initFile checks the format of a file, and creates the buckets of an empty
// one (unless readOnly).
func initFile(db *bbolt.DB, readOnly bool) error {
	empty := true
	err := db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			// Either a new file or someone else's.
			return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
				empty = false
				return fmt.Errorf("%w: a bbolt file without the meta bucket (it has bucket %q)", eventstore.ErrUnknownFormat, name)
			})
		}
		empty = false
		if err := checkFormat(meta.Get(keyFormat)); err != nil {
			return err
		}
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: bucket %q missing", eventstore.ErrCorrupt, name)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if readOnly {
		if empty {
			return fmt.Errorf("%w: a bbolt file without buckets, opened read-only", eventstore.ErrUnknownFormat)
		}
		return nil // a missing checkpoints bucket stays missing
	}
	if empty {
		err = db.Update(func(tx *bbolt.Tx) error {
			for _, name := range allBuckets {
				if _, err := tx.CreateBucket(name); err != nil {
					return err
				}
			}
			if _, err := tx.CreateBucket(bucketTags); err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Put(keyFormat, formatV3)
		})
	}
	if err != nil {
		return err
	}
	if err := upgrade(db); err != nil {
		return err
	}
	// Open has replayed and removed any log: the mark has no more use.
	if err := markLogged(db, false); err != nil {
		return err
	}
	return addBuckets(db)
}

// Path returns the path of the store's file.
func (s *Store) Path() string { return s.path }

// Close closes the file. It waits for the operations in progress (a read
// in progress finishes its current page; its next page fails with
// eventstore.ErrClosed). Calls after Close fail with eventstore.ErrClosed;
// closing again returns nil.
//
// After bbolt panicked on a damaged file (see "Damaged files" in the
// package doc), Close does not wait for operations that bbolt blocked and
// does not call into bbolt: it releases the file's lock and closes it, and
// returns an error matching eventstore.ErrCorrupt; bbolt's memory map of
// the file stays until the process exits.
func (s *Store) Close() error {
	s.signal.Close() // wake subscriptions first: they hold nothing Close waits for
	old := s.ops.Or(closedBit)
	if old&closedBit != 0 {
		return nil
	}
	if old != 0 {
		select {
		case <-s.idle:
		case <-s.brokenCh:
		}
	}
	liveStores.Delete(s)
	if err := s.closeBroken(); err != nil {
		return err
	}
	var walErr error
	if s.wal != nil {
		// Sync the file and remove the log; after a failure, leave the
		// log to the next Open.
		s.wmu.Lock()
		if !s.poisoned.Load() {
			walErr = s.closeLog()
		}
		s.abandonLog()
		s.wmu.Unlock()
		// Committing held appends may have broken bbolt down (they
		// stay in the log for the next Open).
		if err := s.closeBroken(); err != nil {
			return err
		}
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt: close %s: %w", s.path, err)
	}
	if walErr != nil {
		return fmt.Errorf("bolt: close %s: %w", s.path, walErr)
	}
	return nil
}

// closeBroken releases the file of a store whose bbolt broke down or may
// hold its writer lock (db.Close would wait for it forever) and returns
// Close's error; it returns nil when bbolt can be closed.
func (s *Store) closeBroken() error {
	p := s.broken.Load()
	if p == nil && !s.stuck.Load() {
		return nil
	}
	why := "a write transaction could not be rolled back"
	if p != nil {
		why = (*p).Error()
	}
	releaseFile(s.file)
	return fmt.Errorf("bolt: close %s: %w: bbolt cannot be closed (%s); the file is closed and unlocked, its memory map stays until the process exits", s.path, eventstore.ErrCorrupt, why)
}

// closedBit is set in Store.ops once Close has begun.
const closedBit = 1 << 62

// enter starts an operation: it fails with ErrClosed after Close, with the
// broken error after bbolt broke down, and otherwise holds off Close until
// exit.
func (s *Store) enter() error {
	if s.ops.Add(1)&closedBit != 0 {
		s.exit()
		return eventstore.ErrClosed
	}
	if p := s.broken.Load(); p != nil {
		s.exit()
		return *p
	}
	return nil
}

func (s *Store) exit() {
	if s.ops.Add(-1) == closedBit {
		s.idleOnce.Do(func() { close(s.idle) })
	}
}

// markBroken records that bbolt can no longer be used (it panicked where
// it may hold its locks): every later call fails fast with an error
// matching eventstore.ErrNeedsReopen and eventstore.ErrCorrupt, and Close
// neither waits for the calls bbolt blocked nor calls into bbolt.
func (s *Store) markBroken(why string) {
	s.brokenOnce.Do(func() {
		err := fmt.Errorf("bolt: %s: %w (%w: %s)", s.path, eventstore.ErrNeedsReopen, eventstore.ErrCorrupt, why)
		s.broken.Store(&err)
		s.poisoned.Store(true) // appends queued for a commit fail fast too
		close(s.brokenCh)
	})
}

// liveStores holds every open Store, for checkLiveStores.
var liveStores sync.Map // *Store -> struct{}

// checkLiveStores marks broken every open store whose file has no valid
// meta page left: bbolt panics in every Begin on such a file and keeps the
// locks it took. recovered calls it after every panic, since a panic inside
// bbolt's Begin (in Append's commit, which does not go through begin) does
// not say which store it came from.
func checkLiveStores() {
	liveStores.Range(func(k, _ any) bool {
		s := k.(*Store)
		if s.broken.Load() == nil {
			if err := validMeta(s.file, s.boltPageSize); err != nil {
				s.markBroken(fmt.Sprintf("no valid meta page: %v", err))
			}
		}
		return true
	})
}

// recovered turns a panic (bbolt panics on some damaged files) into an
// error matching ErrCorrupt. Call it deferred, with
//
//	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
//
// after it, so that a read outside the memory map panics rather than
// crashing the process.
//
// After a panic it checks the open stores' meta pages (checkLiveStores), so
// that a store whose bbolt is left holding its locks fails every later call
// fast instead of blocking.
func recovered(err *error) {
	if r := recover(); r != nil {
		if e, ok := r.(error); ok {
			*err = fmt.Errorf("bolt: %w: bbolt panicked: %w", eventstore.ErrCorrupt, e)
		} else {
			*err = fmt.Errorf("bolt: %w: bbolt panicked: %v", eventstore.ErrCorrupt, r)
		}
		checkLiveStores()
	}
}

// begin starts a bbolt transaction. A panic inside bbolt's Begin (on a file
// whose meta pages were damaged while it is open) leaves bbolt's locks held
// for good: begin then marks the store broken and returns its error. Call
// it with SetPanicOnFault set, as view and update do.
func (s *Store) begin(writable bool) (tx *bbolt.Tx, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.markBroken(fmt.Sprintf("bbolt panicked starting a transaction: %v", r))
			tx, err = nil, *s.broken.Load()
		}
	}()
	tx, err = s.db.Begin(writable)
	if err != nil {
		return nil, fmt.Errorf("bolt: begin: %w", err)
	}
	return tx, nil
}

// view runs fn in a read transaction, turning panics into ErrCorrupt.
func (s *Store) view(fn func(tx *bbolt.Tx) error) (err error) {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	defer recovered(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	if err := s.syncHeld(); err != nil {
		return err
	}
	tx, err := s.begin(false)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // also when fn panics
	return fn(tx)
}

// update runs fn in its own write transaction (not shared with appends),
// with the commit failure handling of Append.
func (s *Store) update(ctx context.Context, fn func(tx *bbolt.Tx) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()
	if s.readOnly {
		return s.errReadOnly()
	}
	s.wmu.Lock()
	defer s.wmu.Unlock() // after the commit or rollback below
	if s.poisoned.Load() {
		return errNeedsReopen
	}
	defer recovered(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	if s.wal != nil && s.wal.f == nil {
		// No log: the file holds every commit, and this one is synced
		// by bbolt as without a log.
		s.db.NoSync = false
		defer func() { s.db.NoSync = true }()
	}
	if s.wal != nil {
		// The appends the log holds come first (a checkpoint follows
		// this commit). The checkpoint flushHeld may run can fail: no
		// write after it then.
		if err := s.flushHeld(); err != nil {
			return err
		}
		if s.poisoned.Load() {
			return errNeedsReopen
		}
	}
	tx, err := s.begin(true)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			s.rollback(tx)
		}
	}()
	if err := fn(tx); err != nil {
		if err == errNoWrite {
			return nil
		}
		return err
	}
	committed = true
	defer func() {
		// A panic inside Commit leaves a commit whose outcome is unknown.
		if r := recover(); r != nil {
			s.poisoned.Store(true)
			s.rollback(tx) // release the writer lock, if Commit did not
			err = fmt.Errorf("bolt: commit: %w: %w: bbolt panicked: %v", eventstore.ErrUnknownOutcome, eventstore.ErrCorrupt, r)
		}
	}()
	if s.wal == nil || s.wal.f == nil {
		return s.commitTx(tx)
	}
	// With the log: commit without bbolt's fsyncs, then checkpoint, which
	// syncs the file and makes this commit the base, so that a crash
	// never restores a base without it (the log holds only events). The
	// pin can go first: the checkpoint follows before the next write.
	s.wal.dropPin()
	if err := s.commitTx(tx); err != nil {
		return err
	}
	if err := s.checkpoint(); err != nil {
		return fmt.Errorf("bolt: commit: %w: %w", eventstore.ErrUnknownOutcome, err)
	}
	return nil
}

// rollback rolls back the write transaction tx. If bbolt panics doing so
// (on a damaged file), its writer lock may stay held: the store then
// refuses writes, and Close leaves the file open rather than hang.
func (s *Store) rollback(tx *bbolt.Tx) {
	defer func() {
		if r := recover(); r != nil {
			s.stuck.Store(true)
			s.poisoned.Store(true)
		}
	}()
	_ = tx.Rollback()
}

// errNoWrite tells update that fn changed nothing: no commit is needed.
var errNoWrite = errors.New("no write")

var errNeedsReopen = fmt.Errorf("bolt: %w", eventstore.ErrNeedsReopen)

// commitTx commits tx. A failed commit poisons the store, and its error
// matches ErrUnknownOutcome.
func (s *Store) commitTx(tx *bbolt.Tx) error {
	commit := s.commit
	if s.wal != nil && s.wal.f != nil {
		commit = s.commitNoSync
	}
	if err := commit(tx); err != nil {
		s.poisoned.Store(true)
		return fmt.Errorf("bolt: commit: %w: %w", eventstore.ErrUnknownOutcome, err)
	}
	return nil
}
