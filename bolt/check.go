package bolt

import (
	"bytes"
	"context"
	"fmt"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/index"
	bbolt "go.etcd.io/bbolt"
)

// Check verifies the whole file: its page structure, every record's
// checksum, versions 1, 2, 3, ... in every aggregate, positions 1 to N
// without gaps, and that every index bucket holds exactly one entry per
// event, pointing to it. It returns an error matching eventstore.ErrCorrupt
// describing the first problem, or nil.
//
// The page structure is checked first by reading the file itself, never
// bbolt's memory map, with every offset checked before use: both meta
// pages, the freelist, and every bucket's B+tree (each page reached once,
// of the right type, inside the file and below the high water mark; every
// element, key and value inside its page; keys in order), and that every
// page is reached, free or a meta exactly once. Only a file that passes
// goes to bbolt's own consistency check (tx.Check, which walks the map in
// a goroutine where a damaged page would crash the process) and then to
// the record and index checks. A damaged file thus gives ErrCorrupt, never
// a crash.
//
// Check holds off appends while it reads the page structure (one read of
// the file), then reads every event in one read transaction; it is for
// tests and for inspecting a file after a crash, not for every Open. While
// that transaction runs, the file keeps the pages it started with, and an
// Append that must grow the file's memory map waits for it to finish.
func (s *Store) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.exit()

	// No commit may change the file between the walk and the start of the
	// read transaction, which must see the pages the walk saw.
	s.wmu.Lock()
	locked := true
	defer func() {
		if locked {
			s.wmu.Unlock()
		}
	}()
	if s.wal != nil {
		// The appends that the log holds are checked too (and view
		// below then finds none to commit, so it does not take wmu).
		if err := s.flushHeld(); err != nil {
			return err
		}
	}
	fi, err := s.file.Stat()
	if err != nil {
		return fmt.Errorf("bolt: check %s: %w", s.path, err)
	}
	fm, err := walkFile(ctx, s.file, fi.Size())
	if err != nil {
		return fmt.Errorf("bolt: check %s: %w", s.path, err)
	}
	return s.view(func(tx *bbolt.Tx) error {
		s.wmu.Unlock()
		locked = false
		if got := uint64(tx.ID()); got != fm.meta.txid {
			return fmt.Errorf("bolt: check %s: %w: bbolt reads transaction %d, the file's meta says %d", s.path, eventstore.ErrCorrupt, got, fm.meta.txid)
		}
		// Drain the channel: its goroutine would block on its next error.
		var first error
		for err := range tx.Check() {
			if first == nil {
				first = err
			}
		}
		if first != nil {
			return fmt.Errorf("bolt: check %s: %w: %w", s.path, eventstore.ErrCorrupt, first)
		}
		return checkIndexes(ctx, tx)
	})
}

func checkIndexes(ctx context.Context, tx *bbolt.Tx) error {
	var bs [6]*bbolt.Bucket
	for i, name := range [][]byte{bucketEvents, bucketPositions, bucketTypes, bucketTimestamps, bucketIDs, bucketTags} {
		b, err := bucket(tx, name)
		if err != nil {
			return err
		}
		bs[i] = b
	}
	events, positions, types, timestamps, ids, tags := bs[0], bs[1], bs[2], bs[3], bs[4], bs[5]
	bad := func(k []byte, format string, args ...any) error {
		return corrupt("event", k, fmt.Errorf(format, args...))
	}

	var n, nTags uint64
	var prevAgg []byte
	var prevVersion uint64
	c := events.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		n++
		r, err := parseEventRecord(v)
		if err != nil {
			return corrupt("event", k, err)
		}
		if !isEventKey(k, r.aggregateID, r.version) {
			return bad(k, "key does not match record")
		}
		if bytes.Equal(r.aggregateID, prevAgg) {
			if r.version != prevVersion+1 {
				return bad(k, "version %d follows %d", r.version, prevVersion)
			}
		} else if r.version != 1 {
			return bad(k, "aggregate starts at version %d", r.version)
		}
		prevAgg, prevVersion = r.aggregateID, r.version

		for _, entry := range []struct {
			name string
			b    *bbolt.Bucket
			key  []byte
		}{
			{"positions", positions, index.Position(r.position)},
			{"types", types, index.Type(string(r.typ), r.position)},
			{"timestamps", timestamps, index.AppendUint64(index.AppendUint64(nil, index.Micros(r.micros)), r.position)},
			{"ids", ids, r.id},
		} {
			if got := entry.b.Get(entry.key); !bytes.Equal(got, k) {
				return bad(k, "%s entry %x points to %x", entry.name, entry.key, got)
			}
		}
		nt, err := checkTagEntry(tags, k, &r)
		if err != nil {
			return err
		}
		nTags += uint64(nt)
	}
	// The tags bucket holds one entry per tag of every event.
	if got := tags.Stats().KeyN; uint64(got) != nTags {
		return fmt.Errorf("bolt: check: %w: tags has %d entries for %d tags of events", eventstore.ErrCorrupt, got, nTags)
	}

	// Every index holds n entries: the ones checked above, and no others.
	for _, b := range []struct {
		name string
		b    *bbolt.Bucket
	}{{"positions", positions}, {"types", types}, {"timestamps", timestamps}, {"ids", ids}} {
		if got := b.b.Stats().KeyN; uint64(got) != n {
			return fmt.Errorf("bolt: check: %w: %s has %d entries for %d events", eventstore.ErrCorrupt, b.name, got, n)
		}
	}
	// n distinct positions, the last of which is n: 1 to n.
	if last, _ := positions.Cursor().Last(); n > 0 {
		if p, err := index.ParsePosition(last); err != nil || p != n {
			return fmt.Errorf("bolt: check: %w: last position %x, want %d", eventstore.ErrCorrupt, last, n)
		}
	}
	if n > 0 {
		if first, _ := positions.Cursor().First(); !bytes.Equal(first, index.Position(1)) {
			return fmt.Errorf("bolt: check: %w: first position %x", eventstore.ErrCorrupt, first)
		}
	}
	return nil
}
