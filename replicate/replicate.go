// Package replicate copies the events of one store into another: a device's
// bolt file up to a PostgreSQL server, a server's events down to a device
// for a local read copy, one bolt file into another.
//
//	stats, err := replicate.Copy(ctx, device, server, &replicate.Options{
//		Checkpoint: "from:device-17",
//		Metadata:   map[string]string{"origin": "device-17"},
//	})
//
// Both directions are the same call with the stores swapped; a Filter with
// an AggregatePrefix copies only some aggregates.
//
// # What is copied
//
// Every source event after the checkpoint that the Filter selects, through
// the destination's Import (eventstore.Importer), in batches. The
// destination assigns its own positions; IDs, aggregate IDs, types,
// payloads (byte for byte), metadata, versions and timestamps are kept.
// Options.Metadata adds keys to each copied event's metadata; a key the
// event already has keeps the event's value, so that an event copied on
// through several stores keeps its first origin.
//
// # Resuming
//
// The checkpoint, the last source position copied, is kept in the
// destination (its eventstore.CheckpointStore) under Options.Checkpoint,
// saved after each batch is imported. A crash of either side at any point,
// then a rerun, ends with the destination holding every source event once:
// a batch imported but not yet checkpointed is imported again, and Import
// skips the events already stored with the same content. The copied
// content is a function of the source event and the Options alone, so a
// rerun with the same Options compares equal; change Options.Metadata and
// the events copied before are different content (ErrDuplicateEvent).
//
// # One writing side per aggregate
//
// Each aggregate should be written on one side only: its events are
// created on one device (or on the server) and copied elsewhere. When the
// destination already has other events for an aggregate (two devices wrote
// the same aggregate, or one wrote it on both sides), Copy stops with the
// *eventstore.ConflictError by default. With OnConflict set to Skip it
// records the conflict in Stats.Conflicts, copies everything else, and
// leaves out that aggregate's later events for the rest of the call. A
// later call notices the fork again: before it copies an aggregate from a
// version above 1 for the first time, it checks that the destination's
// previous event of that aggregate is the source's (the same ID).
package replicate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/eventstore-go/eventstore"
)

// ErrInvalidOptions reports Options that Copy and Follow refuse before they
// read anything.
var ErrInvalidOptions = errors.New("replicate: invalid options")

// Destination is a store that Copy writes to: it imports events and keeps
// the checkpoint. Every backend of this module is one.
type Destination interface {
	eventstore.Store
	eventstore.Importer
	eventstore.CheckpointStore
}

// ConflictPolicy says what Copy does when the destination has other events
// for an aggregate.
type ConflictPolicy int

const (
	// Stop ends the copy with the *eventstore.ConflictError. The batch
	// that met it is not imported; the checkpoint stays before it.
	Stop ConflictPolicy = iota

	// Skip records the conflict in Stats.Conflicts and leaves out the
	// aggregate's events, for the rest of the call; everything else is
	// copied and the checkpoint moves on.
	Skip
)

// Defaults of Options.
const (
	// DefaultBatchSize is how many events one Import carries by default:
	// the most one Import takes. Each Import is one transaction with its
	// fsyncs, and each batch one checkpoint save, so large batches copy
	// fastest; a smaller BatchSize loses less work to a crash and makes
	// Progress more frequent.
	DefaultBatchSize = eventstore.MaxImportEvents

	// DefaultLinger is how long Follow waits for more live events to fill
	// a batch by default.
	DefaultLinger = 20 * time.Millisecond
)

// Options configure Copy and Follow. Checkpoint is required, so a nil
// *Options is refused.
type Options struct {
	// Checkpoint names the checkpoint, in the destination, that holds the
	// last source position copied. Required: each source copied into a
	// destination needs its own name ("from:device-17"), or one source
	// would resume where another stopped.
	Checkpoint string

	// Filter selects the source events to copy; the zero Filter copies
	// everything. Only AggregatePrefix may be set: Import needs every
	// event of an aggregate, so a Filter with Types is refused.
	Filter eventstore.Filter

	// Metadata is added to the metadata of every copied event, for example
	// {"origin": "device-17"}. A key the event has keeps the event's
	// value. Default: none.
	Metadata map[string]string

	// BatchSize is how many events one Import carries, at most
	// eventstore.MaxImportEvents; a batch also ends before
	// eventstore.MaxImportSize bytes. Zero or less means
	// DefaultBatchSize (eventstore.MaxImportEvents, 10,000).
	BatchSize int

	// OnConflict says what to do when the destination has other events
	// for an aggregate. Default: Stop.
	OnConflict ConflictPolicy

	// Progress, when set, is called after each batch and once at the end,
	// from the goroutine that called Copy or Follow. Default: none.
	Progress func(Progress)

	// Linger is how long Follow waits for more live events before it
	// imports a batch that is not full. Zero or less means DefaultLinger
	// (20ms).
	Linger time.Duration
}

// Progress is what Options.Progress gets: enough for a progress bar.
type Progress struct {
	// Start is the source position the call resumed after; Position the
	// source position copied up to; Head the source's head, read when the
	// call began (Copy) or as events arrive (Follow). Position - Start out
	// of Head - Start is the share done: positions, not events, since a
	// Filter skips some.
	Start, Position, Head uint64

	// Events is how many source events the call has handled so far:
	// copied, skipped as present, or left out for a conflict.
	Events int64

	// Rate is Events per second since the call began.
	Rate float64
}

// Stats reports what a call did.
type Stats struct {
	// Copied is how many events were written to the destination.
	Copied int64

	// Skipped is how many were there already (the same ID and content),
	// from an earlier call that stopped before its checkpoint.
	Skipped int64

	// ConflictSkipped is how many were left out because their aggregate
	// conflicted (OnConflict: Skip).
	ConflictSkipped int64

	// Conflicts lists the aggregates left out, one conflict each, in the
	// order met (OnConflict: Skip).
	Conflicts []*eventstore.ConflictError

	// Batches is how many Import calls were made.
	Batches int

	// Duration is how long the call took.
	Duration time.Duration

	// SourceHead is the source's head when the call began (Follow: the
	// last position seen), and Checkpoint the source position the
	// destination's checkpoint holds at the end.
	SourceHead, Checkpoint uint64
}

// Copy copies every source event after the checkpoint, up to the source's
// head when Copy began, into dst, and returns what it did. Events committed
// to src during the call are left for the next call.
//
// It fails with an error matching ErrInvalidOptions for bad Options, with
// the *eventstore.ConflictError of a conflicting aggregate (OnConflict:
// Stop), with eventstore.ErrDuplicateEvent when dst holds an ID with other
// content, and with the error of a read, an Import or a checkpoint save.
// The Stats returned with an error count what was done before it: rerun
// Copy to resume.
func Copy(ctx context.Context, src eventstore.Store, dst Destination, opts *Options) (Stats, error) {
	r, err := newRun(ctx, src, dst, opts)
	if err != nil {
		return r.stats, err
	}
	err = r.catchUp(ctx)
	r.finish()
	return r.stats, err
}

// Follow is Copy, then it keeps copying the source's new events as they
// are committed (through src.Subscribe), a batch at a time, until ctx ends
// or an error occurs. It returns ctx's error when ctx ends, with the Stats
// of the whole call.
func Follow(ctx context.Context, src eventstore.Store, dst Destination, opts *Options) (Stats, error) {
	r, err := newRun(ctx, src, dst, opts)
	if err != nil {
		return r.stats, err
	}
	if err := r.catchUp(ctx); err != nil {
		r.finish()
		return r.stats, err
	}
	err = r.follow(ctx)
	r.finish()
	return r.stats, err
}

// run is the state of one Copy or Follow call.
type run struct {
	src   eventstore.Store
	dst   Destination
	o     Options
	begin time.Time
	start uint64 // the checkpoint loaded
	pos   uint64 // the checkpoint saved
	head  uint64 // the source head known

	batch []eventstore.Event // events of the next Import
	last  uint64             // the source position the batch reaches
	size  int                // payload and metadata bytes of batch

	conflicted map[string]bool // aggregates left out (Skip)
	verified   map[string]bool // aggregates whose history in dst is known to be src's
	handled    int64
	stats      Stats
}

func newRun(ctx context.Context, src eventstore.Store, dst Destination, opts *Options) (*run, error) {
	r := &run{src: src, dst: dst, begin: time.Now()}
	if opts == nil {
		return r, fmt.Errorf("%w: Options.Checkpoint is required", ErrInvalidOptions)
	}
	r.o = *opts
	switch {
	case r.o.Checkpoint == "":
		return r, fmt.Errorf("%w: Options.Checkpoint is required: name the source, such as \"from:device-17\"", ErrInvalidOptions)
	case len(r.o.Filter.Types) > 0:
		return r, fmt.Errorf("%w: Options.Filter.Types: Import needs every event of an aggregate", ErrInvalidOptions)
	case r.o.OnConflict != Stop && r.o.OnConflict != Skip:
		return r, fmt.Errorf("%w: Options.OnConflict %d", ErrInvalidOptions, r.o.OnConflict)
	}
	for k := range r.o.Metadata {
		if k == "" {
			return r, fmt.Errorf("%w: Options.Metadata has an empty key", ErrInvalidOptions)
		}
	}
	if r.o.BatchSize <= 0 {
		r.o.BatchSize = DefaultBatchSize
	}
	r.o.BatchSize = min(r.o.BatchSize, eventstore.MaxImportEvents)
	if r.o.Linger <= 0 {
		r.o.Linger = DefaultLinger
	}
	r.o.Metadata = maps.Clone(r.o.Metadata)
	r.conflicted = make(map[string]bool)
	r.verified = make(map[string]bool)

	var err error
	if r.start, err = dst.LoadCheckpoint(ctx, r.o.Checkpoint); err != nil {
		return r, fmt.Errorf("replicate: load checkpoint %q: %w", r.o.Checkpoint, err)
	}
	r.pos, r.last = r.start, r.start
	if r.head, err = src.Head(ctx); err != nil {
		return r, fmt.Errorf("replicate: source head: %w", err)
	}
	r.stats.SourceHead = r.head
	r.stats.Checkpoint = r.pos
	return r, nil
}

// catchUp copies the source events after the checkpoint up to the head.
// A goroutine reads the source and forms the batches, so that batch n+1
// is read while batch n is imported; this one imports them in order and
// saves the checkpoint after each, as add and flush do for Follow.
func (r *run) catchUp(ctx context.Context) error {
	if r.head <= r.pos {
		r.last = max(r.last, r.head)
		return r.flush(ctx)
	}
	type batch struct {
		events []eventstore.Event
		last   uint64 // the source position the batch reaches
		size   int
		final  bool // the last batch: last is the head
		err    error
	}
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan batch) // unbuffered: one batch read ahead, not more
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	from, head := r.pos, r.head
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ch)
		send := func(b batch) bool {
			select {
			case ch <- b:
				return true
			case <-ctx.Done():
				return false
			}
		}
		b := batch{last: from}
		for e, err := range r.src.ReadAll(ctx, from) {
			if err != nil {
				send(batch{err: fmt.Errorf("replicate: read source: %w", err)})
				return
			}
			if e.Position > head {
				break
			}
			if !r.o.Filter.Match(e) {
				continue
			}
			size := r.eventSize(e)
			if len(b.events) > 0 && (len(b.events) >= r.o.BatchSize || b.size+size > eventstore.MaxImportSize) {
				if !send(b) {
					return
				}
				b = batch{events: make([]eventstore.Event, 0, len(b.events)), last: b.last}
			}
			b.events = append(b.events, r.withMetadata(e))
			b.size += size
			b.last = e.Position
		}
		// Every position up to the head was looked at.
		b.last, b.final = max(b.last, head), true
		send(b)
	}()
	for b := range ch {
		if b.err != nil {
			return b.err
		}
		r.batch, r.size, r.last = b.events, b.size, b.last
		if err := r.flush(ctx); err != nil {
			return err
		}
		if b.final {
			return nil
		}
	}
	// The reader stopped before its last batch: ctx ended.
	return ctx.Err()
}

// follow copies live events until ctx ends. A goroutine pulls the
// subscription; this one batches what arrives, and imports a batch when it
// is full or when no event came for Linger.
func (r *run) follow(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type item struct {
		e   eventstore.Event
		err error
	}
	ch := make(chan item, r.o.BatchSize)
	go func() {
		defer close(ch)
		for e, err := range r.src.Subscribe(ctx, r.pos, r.o.Filter) {
			select {
			case ch <- item{e, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var linger <-chan time.Time
	for {
		select {
		case it, ok := <-ch:
			if !ok {
				return ctx.Err()
			}
			if it.err != nil {
				if ctxErr := ctx.Err(); ctxErr != nil {
					return ctxErr
				}
				return fmt.Errorf("replicate: subscribe to source: %w", it.err)
			}
			r.head = max(r.head, it.e.Position)
			r.stats.SourceHead = r.head
			if err := r.add(ctx, it.e); err != nil {
				return err
			}
			if len(r.batch) > 0 && linger == nil {
				linger = time.After(r.o.Linger)
			}
		case <-linger:
			linger = nil
			if err := r.flush(ctx); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// add puts e in the batch, importing the batch first when e would not fit.
func (r *run) add(ctx context.Context, e eventstore.Event) error {
	if !r.o.Filter.Match(e) {
		return nil
	}
	size := r.eventSize(e)
	if len(r.batch) > 0 && (len(r.batch) >= r.o.BatchSize || r.size+size > eventstore.MaxImportSize) {
		if err := r.flush(ctx); err != nil {
			return err
		}
	}
	r.batch = append(r.batch, r.withMetadata(e)) // Import ignores the source's Position
	r.size += size
	r.last = e.Position
	return nil
}

// eventSize returns the bytes of payload and metadata that e counts for
// in a batch, as copied (with Options.Metadata).
func (r *run) eventSize(e eventstore.Event) int {
	size := len(e.Payload)
	for k, v := range e.Metadata {
		size += len(k) + len(v)
	}
	for k, v := range r.o.Metadata {
		size += len(k) + len(v)
	}
	return size
}

// withMetadata returns e with Options.Metadata added; the event's own
// values win.
func (r *run) withMetadata(e eventstore.Event) eventstore.Event {
	if len(r.o.Metadata) > 0 {
		m := maps.Clone(r.o.Metadata)
		maps.Copy(m, e.Metadata)
		e.Metadata = m
	}
	return e
}

// flush imports the batch and saves the checkpoint.
func (r *run) flush(ctx context.Context) error {
	batch := r.batch
	if len(batch) > 0 {
		n := int64(len(batch))
		if err := r.verify(ctx, batch); err != nil {
			return err
		}
		batch = r.dropConflicted(batch)
		for len(batch) > 0 {
			out, err := r.dst.Import(ctx, batch)
			r.stats.Batches++
			var conflict *eventstore.ConflictError
			if errors.As(err, &conflict) && r.o.OnConflict == Skip {
				r.conflict(conflict)
				batch = r.dropConflicted(batch)
				continue
			}
			if err != nil {
				return fmt.Errorf("replicate: import: %w", err)
			}
			r.stats.Copied += int64(len(out))
			r.stats.Skipped += int64(len(batch) - len(out))
			for _, e := range batch {
				r.verified[e.AggregateID] = true
			}
			break
		}
		r.handled += n
	}
	r.batch, r.size = r.batch[:0], 0
	if r.last > r.pos {
		if err := r.dst.SaveCheckpoint(ctx, r.o.Checkpoint, r.last); err != nil {
			return fmt.Errorf("replicate: save checkpoint %q: %w", r.o.Checkpoint, err)
		}
		r.pos = r.last
		r.stats.Checkpoint = r.pos
	}
	r.progress()
	return nil
}

// verify checks, for each aggregate of batch that this call has not
// copied yet and whose first event in batch has a version above 1, that
// dst's event before it is the source's: a fork there (another side wrote
// the aggregate) would pass Import's version check.
func (r *run) verify(ctx context.Context, batch []eventstore.Event) error {
	checked := make(map[string]bool)
	for _, e := range batch {
		if checked[e.AggregateID] || r.verified[e.AggregateID] || r.conflicted[e.AggregateID] {
			continue
		}
		checked[e.AggregateID] = true
		if e.Version <= 1 {
			continue
		}
		srcPrev, err := first(ctx, r.src, e.AggregateID, e.Version-2)
		if err != nil {
			return fmt.Errorf("replicate: read source: %w", err)
		}
		dstPrev, err := first(ctx, r.dst, e.AggregateID, e.Version-2)
		if err != nil {
			return fmt.Errorf("replicate: read destination: %w", err)
		}
		if dstPrev.ID == "" || dstPrev.Version != e.Version-1 {
			continue // dst lacks the event before: Import reports the conflict
		}
		if srcPrev.ID == dstPrev.ID {
			r.verified[e.AggregateID] = true
			continue
		}
		actual, err := r.dst.Version(ctx, e.AggregateID)
		if err != nil {
			return fmt.Errorf("replicate: read destination: %w", err)
		}
		conflict := &eventstore.ConflictError{AggregateID: e.AggregateID, Expected: e.Version - 1, Actual: actual}
		if r.o.OnConflict != Skip {
			return fmt.Errorf("replicate: aggregate %q holds events of another writer before version %d: %w", e.AggregateID, e.Version, conflict)
		}
		r.conflict(conflict)
	}
	return nil
}

// first returns the first event of aggregateID after version after, or a
// zero Event.
func first(ctx context.Context, s eventstore.Store, aggregateID string, after uint64) (eventstore.Event, error) {
	for e, err := range s.ReadAggregate(ctx, aggregateID, after) {
		return e, err
	}
	return eventstore.Event{}, nil
}

func (r *run) conflict(c *eventstore.ConflictError) {
	if !r.conflicted[c.AggregateID] {
		r.conflicted[c.AggregateID] = true
		r.stats.Conflicts = append(r.stats.Conflicts, c)
	}
}

// dropConflicted returns batch without the events of conflicted
// aggregates, counting them.
func (r *run) dropConflicted(batch []eventstore.Event) []eventstore.Event {
	out := batch[:0:0]
	for _, e := range batch {
		if r.conflicted[e.AggregateID] {
			r.stats.ConflictSkipped++
			continue
		}
		out = append(out, e)
	}
	return out
}

func (r *run) progress() {
	if r.o.Progress == nil {
		return
	}
	p := Progress{Start: r.start, Position: r.pos, Head: r.head, Events: r.handled}
	if d := time.Since(r.begin).Seconds(); d > 0 {
		p.Rate = float64(r.handled) / d
	}
	r.o.Progress(p)
}

func (r *run) finish() {
	r.stats.Duration = time.Since(r.begin)
	r.progress()
}
