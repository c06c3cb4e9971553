package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/index"
	bbolt "go.etcd.io/bbolt"
)

// Version implements eventstore.Store.
func (s *Store) Version(ctx context.Context, aggregateID string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var v uint64
	err := s.view(func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketEvents)
		if err != nil {
			return err
		}
		v, err = lastVersion(b.Cursor(), index.AggregatePrefix(aggregateID))
		return err
	})
	return v, err
}

func bucket(tx *bbolt.Tx, name []byte) (*bbolt.Bucket, error) {
	b := tx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("bolt: %w: bucket %q missing", eventstore.ErrCorrupt, name)
	}
	return b, nil
}

// pageFunc reads the next page of a read in the read transaction tx: it
// appends to page, decoded with d, up to n events and up to maxPageBytes of
// records (at least one event), and returns page and whether the read goes
// on after it.
type pageFunc func(tx *bbolt.Tx, d *decoder, page []eventstore.Event, n int) (_ []eventstore.Event, more bool, _ error)

// maxPageBytes caps the records one page of a read copies out (payloads,
// metadata and names), as maxBatchBytes caps a commit: with 1 MiB payloads
// a page of DefaultReadPageSize events would hold 512 MiB, even for a
// caller that stops after one event. A page always holds at least one
// event.
const maxPageBytes = 16 << 20

// pageFull reports whether a page of len(page) events, holding size bytes
// of records, takes no more.
func pageFull(page []eventstore.Event, n, size int) bool {
	return len(page) >= n || size >= maxPageBytes
}

// read streams the pages that the pageFunc from start reads, one read
// transaction per page, never yielding while a transaction is open. Each
// run of the iterator calls start for a pageFunc of its own, so that the
// iterator reads from the beginning each time it is ranged over.
func (s *Store) read(ctx context.Context, start func() pageFunc) iter.Seq2[eventstore.Event, error] {
	return func(yield func(eventstore.Event, error) bool) {
		next := start()
		rb := getReadBuf()
		defer putReadBuf(rb)
		d := &rb.d
		page := rb.page
		defer func() { rb.page = page }()
		for {
			if err := ctx.Err(); err != nil {
				yield(eventstore.Event{}, err)
				return
			}
			var err error
			var more bool
			page = page[:0]
			err = s.view(func(tx *bbolt.Tx) error {
				page, more, err = next(tx, d, page, s.pageSize)
				return err
			})
			d.finish(page)
			// On error, page holds the events read before it: yield them
			// first.
			for i := range page {
				if i > 0 {
					if err := ctx.Err(); err != nil {
						yield(eventstore.Event{}, err)
						return
					}
				}
				if !yield(page[i], nil) {
					return
				}
			}
			if err != nil {
				yield(eventstore.Event{}, err)
				return
			}
			if !more {
				return
			}
		}
	}
}

// readBuf holds what a read reuses from one read to the next: its page of
// events (yielded by value, so the array is never the caller's) and its
// decoder's buffers. Nothing that reaches the caller is reused.
type readBuf struct {
	page []eventstore.Event
	d    decoder
}

var readBufs = sync.Pool{New: func() any { return &readBuf{page: make([]eventstore.Event, 0, 64)} }}

func getReadBuf() *readBuf { return readBufs.Get().(*readBuf) }

// putReadBuf returns rb to the pool, dropping every reference to what the
// caller got, unless it grew too large to keep.
func putReadBuf(rb *readBuf) {
	if cap(rb.page) > 4096 || cap(rb.d.strs) > 1<<20 || cap(rb.d.metaRaw) > 64<<10 {
		return
	}
	clear(rb.page[:cap(rb.page)])
	rb.page = rb.page[:0]
	rb.d.fixups = rb.d.fixups[:0]
	clear(rb.d.metas[:cap(rb.d.metas)])
	rb.d.metas = rb.d.metas[:0]
	rb.d.strs = rb.d.strs[:0]
	rb.d.slab = nil
	rb.d.forgetMeta()
	rb.d.shares = rb.d.shares[:0]
	rb.d.aggregateID = ""
	rb.d.agg = fixup{}
	readBufs.Put(rb)
}

// errMissing is the cause of the ErrCorrupt that ends a read whose walk
// over a bucket skipped keys, met them out of order, or ended before the
// last key of its range: signs of a damaged page, whose records may all be
// intact.
var errMissing = errors.New("keys missing from the walk (a damaged page?)")

// ReadAggregate implements eventstore.Store. See "Damaged files" in the
// package doc for what it checks.
func (s *Store) ReadAggregate(ctx context.Context, aggregateID string, afterVersion uint64) iter.Seq2[eventstore.Event, error] {
	return s.read(ctx, aggregatePages(aggregateID, afterVersion))
}

// aggregatePages reads the events of one aggregate after afterVersion. The
// versions it walks must be afterVersion+1, +2, ... with no gap; when the
// walk leaves the aggregate's keys, checkVersion compares the last version
// walked with the aggregate's version in the same transaction.
func aggregatePages(aggregateID string, afterVersion uint64) func() pageFunc {
	prefix := index.AggregatePrefix(aggregateID)
	return func() pageFunc {
		after := afterVersion // the last version walked, or afterVersion
		walked := false
		return func(tx *bbolt.Tx, d *decoder, page []eventstore.Event, n int) ([]eventstore.Event, bool, error) {
			if after == ^uint64(0) {
				return page, false, nil
			}
			b, err := bucket(tx, bucketEvents)
			if err != nil {
				return page, false, err
			}
			c := b.Cursor()
			seek := index.AppendUint64(append(make([]byte, 0, len(prefix)+8), prefix...), after+1)
			size := 0
			k, v := c.Seek(seek)
			for ; k != nil && index.IsEventOf(k, prefix); k, v = c.Next() {
				if pageFull(page, n, size) {
					return page, true, nil
				}
				if page, err = d.decodePage(k, v, page); err != nil {
					return page, false, err
				}
				if version := page[len(page)-1].Version; version != after+1 {
					return page[:len(page)-1], false, corrupt("event", k, fmt.Errorf("%w: version %d follows version %d", errMissing, version, after))
				}
				after++
				walked = true
				size += len(v)
			}
			if err := checkEventsStop(k, seek); err != nil {
				return page, false, err
			}
			return page, false, checkVersion(c, prefix, after, walked)
		}
	}
}

// checkEventsStop checks the key k at which a walk of the events bucket
// that began with a seek to seek left its range (nil: the bucket's end): a
// sound file gives a well-formed events key after seek there. A damaged
// branch page can send a cursor into a page of another bucket, or to keys
// before its target, where the walk would otherwise just find nothing.
func checkEventsStop(k, seek []byte) error {
	if k == nil {
		return nil
	}
	if bytes.Compare(k, seek) < 0 {
		return corrupt("events key", k, fmt.Errorf("%w: a seek to %x landed before it", errMissing, seek))
	}
	if _, _, err := index.ParseEvent(k); err != nil {
		return corrupt("events key", k, fmt.Errorf("%w: not an events key", errMissing))
	}
	return nil
}

// checkVersion is called when a walk over the events keys of the aggregate
// whose prefix is prefix has left them, in the transaction of c, having
// reached version after (walked: by walking at least one key). It seeks the
// aggregate's last version on its own and fails with ErrCorrupt unless it
// is the one the walk reached: a damaged page that hid the aggregate's last
// keys from the walk, but not from the seek, would otherwise end the read
// early without an error. In one transaction, no concurrent append can make
// the two disagree.
func checkVersion(c *bbolt.Cursor, prefix []byte, after uint64, walked bool) error {
	v, err := lastVersion(c, prefix)
	if err != nil {
		return err
	}
	if v > after || walked && v < after {
		return corrupt("aggregate", prefix, fmt.Errorf("%w: the walk ended at version %d, the aggregate's last version is %d", errMissing, after, v))
	}
	return nil
}

// ReadAll implements eventstore.Store. See "Damaged files" in the package
// doc for what it checks.
func (s *Store) ReadAll(ctx context.Context, afterPosition uint64) iter.Seq2[eventstore.Event, error] {
	return s.read(ctx, allPages(afterPosition))
}

// allPages reads the positions bucket after afterPosition.
func allPages(afterPosition uint64) func() pageFunc {
	return pointerPages(pointerRead{
		name:    bucketPositions,
		from:    index.Position(afterPosition + 1),
		within:  func(k []byte) bool { return len(k) == index.PositionSize },
		none:    afterPosition == ^uint64(0),
		gapless: true,
		after:   afterPosition,
	})
}

// ReadType implements eventstore.Store. See "Damaged files" in the package
// doc for what it checks.
func (s *Store) ReadType(ctx context.Context, eventType string, afterPosition uint64) iter.Seq2[eventstore.Event, error] {
	return s.read(ctx, typePages(eventType, afterPosition))
}

// typePages reads the types bucket's entries of eventType after
// afterPosition.
func typePages(eventType string, afterPosition uint64) func() pageFunc {
	prefix := index.TypePrefix(eventType)
	return pointerPages(pointerRead{
		name:   bucketTypes,
		from:   index.Type(eventType, afterPosition+1),
		last:   index.Type(eventType, ^uint64(0)),
		within: func(k []byte) bool { return len(k) == len(prefix)+8 && bytes.HasPrefix(k, prefix) },
		none:   afterPosition == ^uint64(0),
		check: func(_ []byte, e *eventstore.Event) error {
			if e.Type != eventType {
				return errors.New("type does not match the event's")
			}
			return nil
		},
	})
}

// pointerRead is a read of an index bucket whose keys end with the 8-byte
// position of the event they point to: the keys from from to last that
// within accepts, in key order.
type pointerRead struct {
	name   []byte            // the index bucket
	from   []byte            // the first key of the range
	last   []byte            // the last key the range can hold; nil: the bucket's last key
	within func([]byte) bool // whether a key from from to last is in the range: only false on damage, or after last
	none   bool              // the range is empty: read nothing

	// check, if not nil, checks that e is the event the entry k describes
	// (its position is checked already).
	check func(k []byte, e *eventstore.Event) error

	// gapless: the positions walked must be after+1, +2, ...
	gapless bool
	after   uint64

	// everything: the range holds every event, so the walk must meet
	// every event that was stored when it began.
	everything bool
}

// pointerPages streams the events the index entries of r point to. Every
// entry must point to an event whose position is the key's, keys must
// increase, and r.check must accept each event. When the walk leaves the
// range, the last key of the range, found by a seek of its own in the same
// transaction, must be the last walked (and with r.everything, the walk
// must have met every position up to the head it saw first).
func pointerPages(r pointerRead) func() pageFunc {
	return func() pageFunc {
		seek := slices.Clone(r.from)
		pos := r.after             // the last position walked (r.gapless)
		var head, counted uint64   // r.everything: the head when the walk began, and the events up to it walked
		headKnown := !r.everything // whether head is read
		return func(tx *bbolt.Tx, d *decoder, page []eventstore.Event, n int) ([]eventstore.Event, bool, error) {
			if r.none {
				return page, false, nil
			}
			b, err := bucket(tx, r.name)
			if err != nil {
				return page, false, err
			}
			events, err := bucket(tx, bucketEvents)
			if err != nil {
				return page, false, err
			}
			if !headKnown {
				positions, err := bucket(tx, bucketPositions)
				if err != nil {
					return page, false, err
				}
				if k, _ := positions.Cursor().Last(); k != nil {
					if head, err = index.ParsePosition(k); err != nil {
						return page, false, corrupt("positions key", k, err)
					}
				}
				headKnown = true
			}
			what := string(r.name) + " entry"
			if err := checkSeek(b, seek, what); err != nil {
				return page, false, err
			}
			g := getter{c: events.Cursor()}
			c := b.Cursor()
			var last []byte // the last key walked in this transaction
			size := 0
			for k, p := c.Seek(seek); k != nil && r.within(k); k, p = c.Next() {
				if pageFull(page, n, size) {
					seek = nextKey(seek[:0], last)
					return page, true, nil
				}
				if last == nil && bytes.Compare(k, seek) < 0 || last != nil && bytes.Compare(k, last) <= 0 {
					return page, false, corrupt(what, k, fmt.Errorf("%w: key out of order", errMissing))
				}
				var rec int
				if page, rec, err = g.decode(d, k, p, page); err != nil {
					return page, false, err
				}
				e := &page[len(page)-1]
				var cause error
				switch p := binary.BigEndian.Uint64(k[len(k)-8:]); {
				case p != e.Position:
					cause = errors.New("position does not match the event's")
				case r.gapless && p != pos+1:
					cause = fmt.Errorf("%w: position %d follows position %d", errMissing, p, pos)
				case r.check != nil:
					cause = r.check(k, e)
				}
				if cause != nil {
					return page[:len(page)-1], false, corrupt(what, k, cause)
				}
				pos = e.Position
				if e.Position <= head {
					counted++
				}
				last = k
				size += rec
			}
			// The walk left the range: it must have reached its last key.
			end := lastAtMost(c, r.last)
			switch {
			case last != nil && !bytes.Equal(end, last):
				return page, false, corrupt(what, end, fmt.Errorf("%w: the walk ended at key %x before the range's last key", errMissing, last))
			case last == nil && end != nil && r.within(end) && bytes.Compare(end, seek) >= 0:
				return page, false, corrupt(what, end, fmt.Errorf("%w: the walk from key %x met none of the range's keys", errMissing, seek))
			case r.everything && counted != head:
				return page, false, fmt.Errorf("bolt: %s: %w: %w: the walk met %d of the %d events stored when it began", r.name, eventstore.ErrCorrupt, errMissing, counted, head)
			}
			return page, false, nil
		}
	}
}

// checkSeek fails with ErrCorrupt when a seek to seek in b passes over
// keys at or after seek: when the key before the one the seek lands on (or
// the bucket's last key, if it lands on none) is not below seek. Stepping
// back follows the tree's pointers, not its keys, so it finds keys that a
// damaged key in a branch page hides from a seek; a walk without gapless
// positions (ReadType, ReadTime) would otherwise start past them
// without an error.
func checkSeek(b *bbolt.Bucket, seek []byte, what string) error {
	c := b.Cursor()
	k, _ := c.Seek(seek)
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if k != nil && bytes.Compare(k, seek) >= 0 {
		return corrupt(what, k, fmt.Errorf("%w: a seek to %x passed over it", errMissing, seek))
	}
	return nil
}

// lookup returns the value of key in b, or nil when b holds no such key.
// Where bbolt's Bucket.Get misses a key whose branch key a damaged page
// raised (its seek stops at the end of the page before), lookup's seek
// moves on and finds it; where a damaged branch key was lowered, so that
// every seek passes over the key, lookup fails with ErrCorrupt (see
// checkSeek). A miss costs one more step of the cursor than Get.
func lookup(b *bbolt.Bucket, key []byte, what string) ([]byte, error) {
	c := b.Cursor()
	k, v := c.Seek(key)
	if k != nil && bytes.Equal(k, key) { // bytes.Equal takes a nil k (no key at or after key) for an empty key
		if v == nil {
			return nil, corrupt(what, key, errors.New("a bucket, not a value"))
		}
		return v, nil
	}
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if k != nil && bytes.Compare(k, key) >= 0 {
		return nil, corrupt(what, k, fmt.Errorf("%w: a seek to %x passed over it", errMissing, key))
	}
	return nil, nil
}

// lastAtMost returns the last key of the cursor's bucket that is at most
// max (nil: the last key), or nil.
func lastAtMost(c *bbolt.Cursor, max []byte) []byte {
	if max == nil {
		k, _ := c.Last()
		return k
	}
	k, _ := c.Seek(max)
	switch {
	case k == nil:
		k, _ = c.Last()
	case !bytes.Equal(k, max):
		k, _ = c.Prev()
	}
	return k
}

// nextKey sets dst to the key just after k among keys of k's length that
// end in an 8-byte position: k with its position plus one.
func nextKey(dst, k []byte) []byte {
	dst = append(dst, k...)
	p := binary.BigEndian.Uint64(k[len(k)-8:])
	binary.BigEndian.PutUint64(dst[len(dst)-8:], p+1)
	return dst
}

// getter reads the events that index entries point to. Consecutive entries
// mostly point to consecutive events (an Append writes its events under
// consecutive keys), so it tries the cursor's next key before seeking.
type getter struct {
	c     *bbolt.Cursor
	valid bool
}

// decode appends to page the event that the index entry k -> ptr points
// to, and returns the size of its record.
func (g *getter) decode(d *decoder, k, ptr []byte, page []eventstore.Event) ([]eventstore.Event, int, error) {
	var ek, v []byte
	if g.valid {
		ek, v = g.c.Next()
	}
	if ek == nil || !bytes.Equal(ek, ptr) {
		ek, v = g.c.Seek(ptr)
	}
	g.valid = ek != nil
	if ek == nil || !bytes.Equal(ek, ptr) || v == nil {
		return page, 0, corrupt("index entry", k, errors.New("points to no event"))
	}
	page, err := d.decodePage(ek, v, page)
	return page, len(v), err
}

// ReadTime implements eventstore.Store. With an aggregate ID it walks that
// aggregate's events (see the package doc); without, the timestamps bucket.
// See "Damaged files" in the package doc for what it checks.
func (s *Store) ReadTime(ctx context.Context, aggregateID string, start, end time.Time) iter.Seq2[eventstore.Event, error] {
	return s.read(ctx, timePages(aggregateID, start, end))
}

// timePages reads what ReadTime reads.
func timePages(aggregateID string, start, end time.Time) func() pageFunc {
	lo, hi := clampMicros(start), int64(maxMicros+1)
	if !end.IsZero() {
		hi = clampMicros(end)
	}
	if aggregateID != "" {
		return aggregateTimePages(aggregateID, lo, hi)
	}
	var endKey [16]byte
	binary.BigEndian.PutUint64(endKey[:], index.Micros(hi))
	return pointerPages(pointerRead{
		name: bucketTimestamps,
		from: index.AppendUint64(index.AppendUint64(nil, index.Micros(lo)), 0),
		last: index.AppendUint64(index.AppendUint64(nil, index.Micros(hi-1)), ^uint64(0)),
		within: func(k []byte) bool {
			return len(k) == index.TimeSize+index.PositionSize && bytes.Compare(k, endKey[:]) < 0
		},
		none: lo >= hi,
		check: func(k []byte, e *eventstore.Event) error {
			if binary.BigEndian.Uint64(k) != index.Micros(e.Timestamp.UnixMicro()) {
				return errors.New("timestamp does not match the event's")
			}
			return nil
		},
		everything: lo == minMicros && hi == maxMicros+1,
	})
}

// clampMicros returns t in microseconds as eventstore.NormalizeTime
// truncates it, then clamped to the timestamps a store can hold (one past
// the last, for an end). Truncating first keeps the documented rule for
// bounds within a microsecond of the last timestamp.
func clampMicros(t time.Time) int64 {
	t = eventstore.NormalizeTime(t)
	switch {
	case t.Before(time.UnixMicro(minMicros)):
		return minMicros
	case t.After(time.UnixMicro(maxMicros)):
		return maxMicros + 1
	}
	return t.UnixMicro()
}

// scanPages is how many pages of records ReadTime of one aggregate scans
// per read transaction (it reads only two fields of each).
const scanPages = 16

// aggregateTimePages reads the events of one aggregate with lo <= timestamp
// < hi (microseconds). It first walks the aggregate's events, a page per
// read transaction, noting the version and timestamp of those that match,
// sorts them by timestamp (stably: for equal timestamps, version order is
// position order within an aggregate), then reads them a page at a time.
// The walk checks versions as aggregatePages does.
func aggregateTimePages(aggregateID string, lo, hi int64) func() pageFunc {
	prefix := index.AggregatePrefix(aggregateID)
	type match struct {
		micros  int64
		version uint64
	}
	return func() pageFunc {
		var matches []match
		scanned := false
		var after uint64 // the last version scanned
		return func(tx *bbolt.Tx, d *decoder, page []eventstore.Event, n int) ([]eventstore.Event, bool, error) {
			b, err := bucket(tx, bucketEvents)
			if err != nil {
				return page, false, err
			}
			c := b.Cursor()
			if !scanned {
				// Scan the aggregate's events, reading only the two fields
				// needed, a bounded number per read transaction.
				if lo >= hi {
					return page, false, nil
				}
				seek := index.AppendUint64(append(make([]byte, 0, len(prefix)+8), prefix...), after+1)
				k, v := c.Seek(seek)
				for i := 0; k != nil && index.IsEventOf(k, prefix); k, v = c.Next() {
					if i == scanPages*n {
						return page, true, nil // after is the last version scanned
					}
					i++
					r, err := parseEventRecord(v)
					if err != nil {
						return page, false, corrupt("event", k, err)
					}
					switch {
					case !isEventKey(k, r.aggregateID, r.version):
						return page, false, corrupt("event", k, errors.New("key does not match record"))
					case r.version != after+1:
						return page, false, corrupt("event", k, fmt.Errorf("%w: version %d follows version %d", errMissing, r.version, after))
					}
					after = r.version
					if r.micros >= lo && r.micros < hi {
						matches = append(matches, match{r.micros, after})
					}
				}
				if err := checkVersion(c, prefix, after, after > 0); err != nil {
					return page, false, err
				}
				slices.SortStableFunc(matches, func(a, b match) int {
					switch {
					case a.micros < b.micros:
						return -1
					case a.micros > b.micros:
						return 1
					}
					return 0
				})
				scanned = true
			}
			key := make([]byte, 0, len(prefix)+8)
			for size := 0; len(matches) > 0 && !pageFull(page, n, size); {
				key = index.AppendUint64(append(key[:0], prefix...), matches[0].version)
				k, v := c.Seek(key)
				if k == nil || !bytes.Equal(k, key) {
					return page, false, corrupt("event", key, errors.New("vanished"))
				}
				if page, err = d.decodePage(k, v, page); err != nil {
					return page, false, err
				}
				size += len(v)
				matches = matches[1:]
			}
			return page, len(matches) > 0, nil
		}
	}
}
