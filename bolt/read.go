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
// appends up to n events to page, decoded with d, and returns page. A page
// of fewer than n events is the last, unless more is set.
type pageFunc func(tx *bbolt.Tx, d *decoder, page []eventstore.Event, n int) (_ []eventstore.Event, more bool, _ error)

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
			if len(page) < s.pageSize && !more {
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

// ReadAggregate implements eventstore.Store.
func (s *Store) ReadAggregate(ctx context.Context, aggregateID string, afterVersion uint64) iter.Seq2[eventstore.Event, error] {
	prefix := index.AggregatePrefix(aggregateID)
	return s.read(ctx, func() pageFunc {
		after := afterVersion
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
			for k, v := c.Seek(seek); k != nil && len(page) < n && index.IsEventOf(k, prefix); k, v = c.Next() {
				if page, err = d.decodePage(k, v, page); err != nil {
					return page, false, err
				}
				after = page[len(page)-1].Version
			}
			return page, false, nil
		}
	})
}

// ReadAll implements eventstore.Store.
func (s *Store) ReadAll(ctx context.Context, afterPosition uint64) iter.Seq2[eventstore.Event, error] {
	return s.readPointers(ctx, bucketPositions, index.Position(afterPosition+1), nil, afterPosition == ^uint64(0))
}

// ReadType implements eventstore.Store.
func (s *Store) ReadType(ctx context.Context, eventType string, afterPosition uint64) iter.Seq2[eventstore.Event, error] {
	prefix := index.TypePrefix(eventType)
	within := func(k []byte) bool { return len(k) == len(prefix)+8 && bytes.HasPrefix(k, prefix) }
	return s.readPointers(ctx, bucketTypes, index.Type(eventType, afterPosition+1), within, afterPosition == ^uint64(0))
}

// readPointers streams the events an index bucket points to, from the key
// seek on while within(key) holds (nil: to the end). Every index key ends
// with the event's position, so a page resumes after the last position.
func (s *Store) readPointers(ctx context.Context, name, from []byte, within func([]byte) bool, none bool) iter.Seq2[eventstore.Event, error] {
	return s.read(ctx, func() pageFunc {
		seek := slices.Clone(from)
		return func(tx *bbolt.Tx, d *decoder, page []eventstore.Event, n int) ([]eventstore.Event, bool, error) {
			if none {
				return page, false, nil
			}
			b, err := bucket(tx, name)
			if err != nil {
				return page, false, err
			}
			events, err := bucket(tx, bucketEvents)
			if err != nil {
				return page, false, err
			}
			g := getter{c: events.Cursor()}
			c := b.Cursor()
			var last []byte
			for k, p := c.Seek(seek); k != nil && len(page) < n && (within == nil || within(k)); k, p = c.Next() {
				if page, err = g.decode(d, k, p, page); err != nil {
					return page, false, err
				}
				if binary.BigEndian.Uint64(k[len(k)-8:]) != page[len(page)-1].Position {
					return page[:len(page)-1], false, corrupt(string(name)+" entry", k, errors.New("position does not match the event's"))
				}
				last = k
			}
			if last != nil {
				seek = nextKey(seek[:0], last)
			}
			return page, false, nil
		}
	})
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
// to.
func (g *getter) decode(d *decoder, k, ptr []byte, page []eventstore.Event) ([]eventstore.Event, error) {
	var ek, v []byte
	if g.valid {
		ek, v = g.c.Next()
	}
	if ek == nil || !bytes.Equal(ek, ptr) {
		ek, v = g.c.Seek(ptr)
	}
	g.valid = ek != nil
	if ek == nil || !bytes.Equal(ek, ptr) || v == nil {
		return page, corrupt("index entry", k, errors.New("points to no event"))
	}
	return d.decodePage(ek, v, page)
}

// ReadTime implements eventstore.Store. With an aggregate ID it walks that
// aggregate's events (see the package doc); without, the timestamps bucket.
func (s *Store) ReadTime(ctx context.Context, aggregateID string, start, end time.Time) iter.Seq2[eventstore.Event, error] {
	lo, hi := clampMicros(start), int64(maxMicros+1)
	if !end.IsZero() {
		hi = clampMicros(end)
	}
	if aggregateID != "" {
		return s.readAggregateTime(ctx, aggregateID, lo, hi)
	}
	var endKey [16]byte
	binary.BigEndian.PutUint64(endKey[:], index.Micros(hi))
	within := func(k []byte) bool { return bytes.Compare(k, endKey[:]) < 0 }
	seek := index.AppendUint64(index.AppendUint64(nil, index.Micros(lo)), 0)
	return s.readPointers(ctx, bucketTimestamps, seek, within, lo >= hi)
}

// clampMicros returns t in microseconds, clamped to the timestamps a store
// can hold (one past the last, for an end).
func clampMicros(t time.Time) int64 {
	switch {
	case t.Before(time.UnixMicro(minMicros)):
		return minMicros
	case t.After(time.UnixMicro(maxMicros)):
		return maxMicros + 1
	}
	return eventstore.NormalizeTime(t).UnixMicro()
}

// scanPages is how many pages of records ReadTime of one aggregate scans
// per read transaction (it reads only two fields of each).
const scanPages = 16

// readAggregateTime reads the events of one aggregate with lo <= timestamp
// < hi (microseconds). It first walks the aggregate's events, a page per
// read transaction, noting the version and timestamp of those that match,
// sorts them by timestamp (stably: for equal timestamps, version order is
// position order within an aggregate), then reads them a page at a time.
func (s *Store) readAggregateTime(ctx context.Context, aggregateID string, lo, hi int64) iter.Seq2[eventstore.Event, error] {
	prefix := index.AggregatePrefix(aggregateID)
	type match struct {
		micros  int64
		version uint64
	}
	return s.read(ctx, func() pageFunc {
		var matches []match
		scanned := false
		var after uint64
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
					after = binary.BigEndian.Uint64(k[len(prefix):])
					if r.micros >= lo && r.micros < hi {
						matches = append(matches, match{r.micros, after})
					}
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
			for len(matches) > 0 && len(page) < n {
				key = index.AppendUint64(append(key[:0], prefix...), matches[0].version)
				k, v := c.Seek(key)
				if k == nil || !bytes.Equal(k, key) {
					return page, false, corrupt("event", key, errors.New("vanished"))
				}
				if page, err = d.decodePage(k, v, page); err != nil {
					return page, false, err
				}
				matches = matches[1:]
			}
			return page, false, nil
		}
	})
}
