package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"iter"
	"math"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/index"
	"github.com/eventstore-go/eventstore/storekit"
	bbolt "go.etcd.io/bbolt"
)

// upgrade turns a file of format 1 or 2 into one of format 3, the format
// this package writes, in one transaction: for format 1 it adds the tags
// bucket (empty: format 1 has no tags). Records of the older formats are
// records of format 3 (which only adds a form of metadata value), so only
// the format key changes: a version of this package that knows only an
// older format then refuses the file (ErrUnknownFormat) rather than meet
// records or buckets it cannot read, or append events without their tag
// entries. Format 2's mark of a log (formatLoggedV2) counts as format 2:
// Open calls upgrade once any log is replayed and gone. It writes only when
// the file is of format 1 or 2.
func upgrade(db *bbolt.DB) error {
	old := false
	err := db.View(func(tx *bbolt.Tx) error {
		format := tx.Bucket(bucketMeta).Get(keyFormat)
		old = bytes.Equal(format, formatV1) || isFormatV2(format)
		if !bytes.Equal(format, formatV1) && tx.Bucket(bucketTags) == nil {
			return fmt.Errorf("%w: bucket %q missing", eventstore.ErrCorrupt, bucketTags)
		}
		return nil
	})
	if err != nil || !old {
		return err
	}
	return db.Update(func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketTags); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyFormat, formatV3)
	})
}

// Read implements eventstore.Store.
//
// It walks index entries, never the events bucket: an item with tags
// walks those tags' entries of the tags bucket together (a leapfrog join:
// each cursor seeks the largest position the others stand at, so the
// rarest tag sets the pace), and with types also those types' entries of
// the types bucket; an item with types only walks those types' entries.
// The items' walks are merged by position, each event once, and only the
// events they all agree on are decoded (an AggregatePrefix is checked on
// the events key first). A filter that selects every type and tag walks
// the positions bucket.
func (s *Store) Read(ctx context.Context, filter eventstore.Filter, afterPosition uint64) iter.Seq2[eventstore.Event, error] {
	plan := storekit.PlanFilter(filter)
	return s.read(ctx, func() pageFunc { return queryPages(plan, afterPosition, math.MaxUint64, 0) })
}

// AppendIf implements eventstore.Store. The condition is checked in the
// write transaction of the group commit that writes the events, after the
// requests before it in that commit: no commit comes between the check
// and the write. A condition that fails answers only its own request.
func (s *Store) AppendIf(ctx context.Context, cond eventstore.Condition, events ...eventstore.Event) ([]eventstore.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.exit()
	prepared, err := storekit.PrepareAppendIf(events, s.maxPayload)
	if err != nil || len(prepared) == 0 {
		return nil, err
	}
	if s.poisoned.Load() {
		return nil, errNeedsReopen
	}
	r := &appendReq{caller: events, prepared: prepared, ids: make([][]byte, len(prepared)), wake: make(chan bool, 1),
		cond: &cond, plan: storekit.PlanFilter(cond.FailIfEventsMatch)}
	for i := range prepared {
		if r.ids[i], err = index.ID(prepared[i].ID); err != nil {
			return nil, fmt.Errorf("bolt: event %d: %w", i, err) // unreachable: Prepare checked the ID
		}
	}
	s.submit(r)
	return r.out, r.err
}

// firstMatch returns the first position after after whose event plan
// selects, in tx.
func firstMatch(tx *bbolt.Tx, plan storekit.Plan, after uint64) (uint64, bool, error) {
	if plan.None() || after == math.MaxUint64 {
		return 0, false, nil
	}
	root, err := planStream(tx, plan)
	if err != nil {
		return 0, false, err
	}
	prefix := []byte(plan.AggregatePrefix)
	for from := after + 1; ; {
		pos, ptr, ok := root.next(from)
		if !ok {
			return 0, false, nil
		}
		if aggregateHasPrefix(ptr, prefix) {
			return pos, true, nil
		}
		if pos == math.MaxUint64 {
			return 0, false, nil
		}
		from = pos + 1
	}
}

// queryPages reads the events plan selects with positions after after, up
// to head. A scanLimit above zero bounds the index entries one page looks
// at (for subscriptions, whose pages must not hold a transaction long).
func queryPages(plan storekit.Plan, after, head uint64, scanLimit int) pageFunc {
	from := after // the last position looked at
	prefix := []byte(plan.AggregatePrefix)
	return func(tx *bbolt.Tx, d *decoder, page []eventstore.Event, n int) ([]eventstore.Event, bool, error) {
		if plan.None() || from >= head {
			return page, false, nil
		}
		root, err := planStream(tx, plan)
		if err != nil {
			return page, false, err
		}
		events, err := bucket(tx, bucketEvents)
		if err != nil {
			return page, false, err
		}
		g := getter{c: events.Cursor()}
		size, scanned := 0, 0
		for {
			pos, ptr, ok := root.next(from + 1)
			if !ok || pos > head {
				from = head
				return page, false, nil
			}
			if pageFull(page, n, size) || scanLimit > 0 && scanned == scanLimit {
				return page, true, nil
			}
			scanned++
			if aggregateHasPrefix(ptr, prefix) {
				var rec int
				if page, rec, err = g.decode(d, ptr, ptr, page); err != nil {
					return page, false, err
				}
				size += rec
				if page[len(page)-1].Position != pos {
					return page[:len(page)-1], false, corrupt("index entry", ptr, fmt.Errorf("position %d does not match the event's", pos))
				}
			}
			from = pos
		}
	}
}

// stream yields index entries in position order.
type stream interface {
	// next returns the first entry at a position of at least from: the
	// position and the events key the entry points to (valid until the
	// transaction ends).
	next(from uint64) (pos uint64, ptr []byte, ok bool)
}

// planStream returns the stream of the entries plan selects (before its
// aggregate prefix is checked).
func planStream(tx *bbolt.Tx, plan storekit.Plan) (stream, error) {
	if plan.All {
		b, err := bucket(tx, bucketPositions)
		if err != nil {
			return nil, err
		}
		return &cursorStream{c: b.Cursor()}, nil
	}
	types, err := bucket(tx, bucketTypes)
	if err != nil {
		return nil, err
	}
	tags, err := bucket(tx, bucketTags)
	if err != nil {
		return nil, err
	}
	items := make(unionStream, 0, len(plan.Items))
	for _, it := range plan.Items {
		var typeStream stream
		if len(it.Types) > 0 {
			u := make(unionStream, len(it.Types))
			for i, t := range it.Types {
				u[i] = &cursorStream{c: types.Cursor(), prefix: index.TypePrefix(t)}
			}
			typeStream = u
			if len(u) == 1 {
				typeStream = u[0]
			}
		}
		if len(it.Tags) == 0 {
			items = append(items, typeStream)
			continue
		}
		x := make(intersectStream, 0, len(it.Tags)+1)
		for _, t := range it.Tags {
			x = append(x, &cursorStream{c: tags.Cursor(), prefix: index.TypePrefix(t)})
		}
		if typeStream != nil {
			x = append(x, typeStream)
		}
		if len(x) == 1 {
			items = append(items, x[0])
		} else {
			items = append(items, x)
		}
	}
	if len(items) == 1 {
		return items[0], nil
	}
	return items, nil
}

// cursorStream walks the keys of one name in an index bucket (len16 name,
// position -> events key), or with no prefix the positions bucket.
type cursorStream struct {
	c      *bbolt.Cursor
	prefix []byte // the name's prefix; nil for the positions bucket
	seek   []byte
	pos    uint64
	ptr    []byte
	valid  bool // pos and ptr hold the cursor's entry
	done   bool // the cursor left the name's keys
}

func (s *cursorStream) next(from uint64) (uint64, []byte, bool) {
	if s.done {
		return 0, nil, false
	}
	if s.valid && s.pos >= from {
		return s.pos, s.ptr, true
	}
	var k, v []byte
	if s.valid {
		// Entries mostly come in order: try the next key before seeking.
		k, v = s.c.Next()
		if s.within(k) && binary.BigEndian.Uint64(k[len(s.prefix):]) < from {
			k = nil
		}
	}
	if k == nil {
		s.seek = index.AppendUint64(append(s.seek[:0], s.prefix...), from)
		k, v = s.c.Seek(s.seek)
	}
	if !s.within(k) {
		s.done, s.valid = true, false
		return 0, nil, false
	}
	s.pos, s.ptr, s.valid = binary.BigEndian.Uint64(k[len(s.prefix):]), v, true
	return s.pos, s.ptr, true
}

func (s *cursorStream) within(k []byte) bool {
	return k != nil && len(k) == len(s.prefix)+8 && bytes.HasPrefix(k, s.prefix)
}

// unionStream yields the entries of any of its streams, each position
// once.
type unionStream []stream

func (u unionStream) next(from uint64) (uint64, []byte, bool) {
	var best uint64
	var ptr []byte
	found := false
	for _, s := range u {
		if p, v, ok := s.next(from); ok && (!found || p < best) {
			best, ptr, found = p, v, true
		}
	}
	return best, ptr, found
}

// intersectStream yields the positions all of its streams hold.
type intersectStream []stream

func (x intersectStream) next(from uint64) (uint64, []byte, bool) {
	for {
		var ptr []byte
		agreed := true
		for i, s := range x {
			p, v, ok := s.next(from)
			if !ok {
				return 0, nil, false
			}
			if i == 0 {
				ptr = v
			}
			if p != from {
				from, agreed = p, false
				break
			}
		}
		if agreed {
			return from, ptr, true
		}
	}
}

// checkTagEntry checks that the tags bucket holds the entry of each tag of
// the event r, stored under the events key k, pointing to k, and returns
// how many tags r has (Check then counts the bucket's entries).
func checkTagEntry(tags *bbolt.Bucket, k []byte, r *rawEvent) (int, error) {
	b := r.tags
	for range r.tagsLen {
		var t []byte
		t, b, _ = readBytes(b)
		key := index.Type(string(t), r.position)
		if got := tags.Get(key); !bytes.Equal(got, k) {
			return 0, corrupt("event", k, fmt.Errorf("tags entry %x points to %x", key, got))
		}
	}
	return r.tagsLen, nil
}
