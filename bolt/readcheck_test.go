package bolt

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/index"
)

// The tests in this file damage real files the way a bad disk or a bug
// would, then check that reads end with an error matching
// eventstore.ErrCorrupt instead of returning a short or wrong answer with a
// nil error.

// leafElem is one element of a bbolt leaf page in a file's bytes.
type leafElem struct {
	hdr      int    // offset in the file of its 16-byte header: flags, pos, ksize, vsize (u32 each)
	key, val []byte // its key and value, aliasing the file's bytes
}

// leafPage is a bbolt leaf page in a file's bytes.
type leafPage struct {
	off   int // offset in the file of its 16-byte header: id u64, flags u16, count u16, overflow u32
	elems []leafElem
}

// leafPages parses every leaf page of the bbolt file raw, live or freed:
// a damage applied to every copy of a page reaches the live one.
func leafPages(t *testing.T, raw []byte) []leafPage {
	t.Helper()
	ps := int(binary.LittleEndian.Uint32(raw[16+8:])) // the first meta page's page size
	require.GreaterOrEqual(t, ps, 1024)
	var pages []leafPage
	for off := 0; off+ps <= len(raw); off += ps {
		flags := binary.LittleEndian.Uint16(raw[off+8:])
		count := int(binary.LittleEndian.Uint16(raw[off+10:]))
		overflow := int(binary.LittleEndian.Uint32(raw[off+12:]))
		if flags != 0x02 { // a leaf page
			continue
		}
		p := leafPage{off: off}
		for i := range count {
			h := off + 16 + 16*i
			pos := int(binary.LittleEndian.Uint32(raw[h+4:]))
			ksize := int(binary.LittleEndian.Uint32(raw[h+8:]))
			vsize := int(binary.LittleEndian.Uint32(raw[h+12:]))
			if h+pos+ksize+vsize > len(raw) {
				break // not a page after all
			}
			k := raw[h+pos : h+pos+ksize]
			p.elems = append(p.elems, leafElem{hdr: h, key: k, val: raw[h+pos+ksize : h+pos+ksize+vsize]})
		}
		pages = append(pages, p)
		off += overflow * ps
	}
	return pages
}

// has reports whether the page holds key, and at which element.
func (p leafPage) has(key []byte) (int, bool) {
	for i, e := range p.elems {
		if string(e.key) == string(key) {
			return i, true
		}
	}
	return 0, false
}

// lowerBranchKey finds, in every copy of every branch page of raw, the
// first key after the page's first that begins with prefix, and lowers it
// to the greatest key with that prefix of the page its left neighbour
// points to (of the same length: keys of one type or aggregate are). It
// returns that key.
func lowerBranchKey(t *testing.T, raw, prefix []byte) []byte {
	t.Helper()
	ps := int(binary.LittleEndian.Uint32(raw[16+8:]))
	pages := leafPages(t, raw)
	var lowered []byte
	for off := 0; off+ps <= len(raw); off += ps {
		if binary.LittleEndian.Uint16(raw[off+8:]) != 0x01 { // a branch page
			continue
		}
		count := int(binary.LittleEndian.Uint16(raw[off+10:]))
		for i := 1; i < count; i++ {
			h := off + 16 + 16*i
			pos := int(binary.LittleEndian.Uint32(raw[h:]))
			ksize := int(binary.LittleEndian.Uint32(raw[h+4:]))
			key := raw[h+pos : h+pos+ksize]
			if !strings.HasPrefix(string(key), string(prefix)) {
				continue
			}
			// The left neighbour's leaf: its greatest key with prefix.
			left := int(binary.LittleEndian.Uint64(raw[h-16+8:]))
			var best []byte
			for _, p := range pages {
				if p.off != left*ps {
					continue
				}
				for _, e := range p.elems {
					if len(e.key) == len(key) && strings.HasPrefix(string(e.key), string(prefix)) {
						best = append(best[:0], e.key...)
					}
				}
			}
			if best == nil {
				continue
			}
			copy(key, best)
			lowered = best
			break
		}
	}
	require.NotNil(t, lowered, "no branch key with prefix %q to lower", prefix)
	return lowered
}

// shortenKey shrinks by one byte the key of every leaf element whose key is
// key, in every copy of its page: a flipped bit in an element header. A walk
// over the bucket meets a key that is not in its range there and stops.
func shortenKey(t *testing.T, raw, key []byte) {
	t.Helper()
	n := 0
	for _, p := range leafPages(t, raw) {
		if i, ok := p.has(key); ok {
			h := p.elems[i].hdr
			binary.LittleEndian.PutUint32(raw[h+8:], uint32(len(key)-1))
			n++
		}
	}
	require.Positive(t, n, "key %x in no leaf page", key)
}

// dropLast lowers by two the element count of every copy of the leaf page
// that holds key and neither of the keys not: a walk over the bucket skips
// the page's last two keys and goes on with the next page.
func dropLast(t *testing.T, raw, key []byte, not ...[]byte) {
	t.Helper()
	n := 0
pages:
	for _, p := range leafPages(t, raw) {
		if _, ok := p.has(key); !ok {
			continue
		}
		for _, k := range not {
			if _, ok := p.has(k); ok {
				continue pages
			}
		}
		require.Greater(t, len(p.elems), 4)
		binary.LittleEndian.PutUint16(raw[p.off+10:], uint16(len(p.elems)-2))
		n++
	}
	require.Positive(t, n, "no leaf page holds key %x without the others", key)
}

// damageFixture writes a store of 340 events: aggregate "x" with 300 events
// of types Deposited and Withdrawn in turn, between aggregates "w" and "y"
// of 20 events of type Opened each, so that every bucket spans several leaf
// pages. It returns the file's path, closed, and the stored events.
func damageFixture(t *testing.T) (string, []eventstore.Event) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path, &Options{UnsafeNoSync: true})
	require.NoError(t, err)
	payload := []byte(`{"note":"` + strings.Repeat("p", 200) + `"}`)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var all []eventstore.Event
	appendN := func(agg string, n int, typ func(i int) string) {
		for i := 0; i < n; i += 10 {
			batch := make([]eventstore.Event, 10)
			for j := range batch {
				batch[j] = eventstore.Event{AggregateID: agg, Type: typ(i + j), Payload: payload,
					Timestamp: base.Add(time.Duration(len(all)+j) * time.Second)}
			}
			out, err := s.Append(ctx, batch...)
			require.NoError(t, err)
			all = append(all, out...)
		}
	}
	opened := func(int) string { return "Opened" }
	appendN("w", 20, opened)
	appendN("x", 300, func(i int) string { return [2]string{"Deposited", "Withdrawn"}[i%2] })
	appendN("y", 20, opened)
	require.NoError(t, s.Close())
	return path, all
}

func filter(events []eventstore.Event, keep func(e eventstore.Event) bool) []eventstore.Event {
	var out []eventstore.Event
	for _, e := range events {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// TestStore_ReadsNoticeDamagedPages damages the leaf pages of a real file
// so that a cursor skips keys or stops early while every record stays
// intact: each read must end with ErrCorrupt, never succeed with a short
// answer.
func TestStore_ReadsNoticeDamagedPages(t *testing.T) {
	ctx := context.Background()
	path, all := damageFixture(t)
	clean, err := os.ReadFile(path)
	require.NoError(t, err)

	x := filter(all, func(e eventstore.Event) bool { return e.AggregateID == "x" })
	deposits := filter(all, func(e eventstore.Event) bool { return e.Type == "Deposited" })
	head := all[len(all)-1].Position
	timeKey := func(e eventstore.Event) []byte { return index.Time(e.Timestamp, e.Position) }

	type read struct {
		name string
		want []eventstore.Event
		read func(s *Store) iter2
	}
	var from uint64 // set by a damage: where its read starts
	readAggregate := read{"ReadAggregate", x, func(s *Store) iter2 { return s.ReadAggregate(ctx, "x", 0) }}
	readTimeOf := read{"ReadTimeOfAggregate", x, func(s *Store) iter2 { return s.ReadTime(ctx, "x", time.Time{}, time.Time{}) }}
	for _, tc := range []struct {
		name   string
		damage func(raw []byte)
		reads  []read
	}{
		{
			// The walk over x's keys meets a key outside x's range at
			// version 14 and stops after 13 of 300 events.
			name:   "EventsKeyHeader",
			damage: func(raw []byte) { shortenKey(t, raw, index.Event("x", 14)) },
			reads:  []read{readAggregate, readTimeOf},
		},
		{
			// The walk over x's keys skips two versions.
			name:   "EventsPageCount",
			damage: func(raw []byte) { dropLast(t, raw, index.Event("x", 150), index.Event("x", 1), index.Event("x", 300)) },
			reads:  []read{readAggregate, readTimeOf},
		},
		{
			// The walk over the positions skips two.
			name:   "PositionsPageCount",
			damage: func(raw []byte) { dropLast(t, raw, index.Position(10), index.Position(head)) },
			reads:  []read{{"ReadAll", all, func(s *Store) iter2 { return s.ReadAll(ctx, 0) }}},
		},
		{
			// The walk over Deposited's entries meets a key outside its
			// range at the 20th and stops.
			name:   "TypesKeyHeader",
			damage: func(raw []byte) { shortenKey(t, raw, index.Type("Deposited", deposits[19].Position)) },
			reads:  []read{{"ReadType", deposits, func(s *Store) iter2 { return s.ReadType(ctx, "Deposited", 0) }}},
		},
		{
			// A key of a branch page of the types bucket lowered to the
			// Deposited entry just before it, in the page to its left: a
			// seek to that entry goes to the right-hand page and lands
			// after it. The walk from there has no gap to notice (one
			// type's positions have gaps by nature) and reaches the end
			// of the range.
			name: "TypesBranchKeyLowered",
			damage: func(raw []byte) {
				lowered := lowerBranchKey(t, raw, index.TypePrefix("Deposited"))
				_, p, err := index.ParseType(lowered)
				require.NoError(t, err)
				from = p - 1
			},
			reads: []read{{"ReadType", deposits, func(s *Store) iter2 { return s.ReadType(ctx, "Deposited", from) }}},
		},
		{
			// The walk over the timestamps skips two entries.
			name:   "TimestampsPageCount",
			damage: func(raw []byte) { dropLast(t, raw, timeKey(all[10]), timeKey(all[len(all)-1])) },
			reads: []read{{"ReadTimeOfEverything", all, func(s *Store) iter2 {
				return s.ReadTime(ctx, "", time.Time{}, time.Time{})
			}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := append([]byte(nil), clean...)
			tc.damage(raw)
			require.NoError(t, os.WriteFile(path, raw, 0o600))
			s, err := Open(path, nil)
			require.NoError(t, err)
			defer s.Close()
			for _, r := range tc.reads {
				t.Run(r.name, func(t *testing.T) {
					got, err := eventstore.Collect(r.read(s))
					t.Logf("%d of %d events, then %v", len(got), len(r.want), err)
					require.ErrorIs(t, err, eventstore.ErrCorrupt)
					require.ErrorIs(t, err, errMissing)
					requireSubsequence(t, r.want, got)
				})
			}
		})
	}
}

type iter2 = func(func(eventstore.Event, error) bool)

// requireSubsequence checks that got holds events of want, in want's order:
// a read that fails may have left events out, but yields no wrong one.
func requireSubsequence(t *testing.T, want, got []eventstore.Event) {
	t.Helper()
	i := 0
	for _, e := range got {
		for i < len(want) && want[i].Position != e.Position {
			i++
		}
		require.Less(t, i, len(want), "event at position %d is not in the answer, or out of order", e.Position)
		require.Equal(t, want[i], e)
	}
}

// TestStore_ReadsCheckIndexEntries rewrites index entries (with bbolt, as
// a bug could) so that an entry describes another event than the one it
// points to: the reads through that index must fail with ErrCorrupt rather
// than yield an event of another type or outside the time range.
func TestStore_ReadsCheckIndexEntries(t *testing.T) {
	ctx := context.Background()
	path, all := damageFixture(t)
	e := all[30] // of aggregate x, type Deposited
	require.Equal(t, "Deposited", e.Type)
	ptr := index.Event(e.AggregateID, e.Version)
	clean, err := os.ReadFile(path)
	require.NoError(t, err)
	moved := e.Timestamp.Add(-time.Hour)

	for _, tc := range []struct {
		name    string
		rewrite func(tx *bbolt.Tx) error
		read    func(s *Store) iter2
	}{
		{
			name: "TypesEntryOfAnotherType",
			rewrite: func(tx *bbolt.Tx) error {
				return tx.Bucket(bucketTypes).Put(index.Type("Closed", e.Position), ptr)
			},
			read: func(s *Store) iter2 { return s.ReadType(ctx, "Closed", 0) },
		},
		{
			name: "TimestampsEntryAtAnotherTime",
			rewrite: func(tx *bbolt.Tx) error {
				b := tx.Bucket(bucketTimestamps)
				if err := b.Delete(index.Time(e.Timestamp, e.Position)); err != nil {
					return err
				}
				return b.Put(index.Time(moved, e.Position), ptr)
			},
			read: func(s *Store) iter2 { return s.ReadTime(ctx, "", moved, moved.Add(time.Second)) },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(path, clean, 0o600))
			rewrite(t, path, tc.rewrite)
			s, err := Open(path, nil)
			require.NoError(t, err)
			defer s.Close()
			got, err := eventstore.Collect(tc.read(s))
			require.ErrorIs(t, err, eventstore.ErrCorrupt)
			require.Empty(t, got)
		})
	}
}

// rewrite changes the bbolt file at path directly.
func rewrite(t *testing.T, path string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(fn))
	require.NoError(t, db.Close())
}

// TestStore_ReadsOfSoundFilesSucceed reads a sound file in many page sizes
// while appends run, so that the end-of-read checks meet concurrent
// appends at every page boundary: none may report damage.
func TestStore_ReadsOfSoundFilesSucceed(t *testing.T) {
	ctx := context.Background()
	path, _ := damageFixture(t)
	for _, pageSize := range []int{1, 7, 512} {
		t.Run(fmt.Sprint("ReadPageSize=", pageSize), func(t *testing.T) {
			s, err := Open(path, &Options{UnsafeNoSync: true, ReadPageSize: pageSize})
			require.NoError(t, err)
			defer s.Close()
			done := make(chan error)
			go func() {
				for i := range 50 {
					_, err := s.Append(ctx, eventstore.Event{AggregateID: []string{"x", "v", "z"}[i%3], Type: "Deposited", Payload: []byte(`{}`),
						Timestamp: time.Date(2025, 1, 1, 0, 0, i, 0, time.UTC)}) // before every other: behind a ReadTime's cursor
					if err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			reads := []iter2{
				s.ReadAggregate(ctx, "x", 0), s.ReadAll(ctx, 0), s.ReadType(ctx, "Deposited", 0),
				s.ReadTime(ctx, "", time.Time{}, time.Time{}), s.ReadTime(ctx, "x", time.Time{}, time.Time{}),
			}
			for running := true; running; {
				select {
				case err := <-done:
					require.NoError(t, err)
					running = false
				default:
				}
				for _, r := range reads {
					_, err := eventstore.Collect(r)
					require.NoError(t, err)
				}
			}
		})
	}
}

// TestStore_RetryChecksIDsEntry points an event's entry in the ids bucket
// at another event, as a damaged file could: a retry of the first event
// must fail with ErrCorrupt, neither pass for "already stored" (returning
// the other event) nor fail with ErrDuplicateEvent.
func TestStore_RetryChecksIDsEntry(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, other string // the aggregate of the event the entry points to
	}{
		{"SameContentNextVersion", "r"}, // would pass for a retry
		{"OtherAggregate", "q"},         // would be a duplicate
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.db")
			s, err := Open(path, &Options{UnsafeNoSync: true})
			require.NoError(t, err)
			first := eventstore.Event{ID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a01", AggregateID: "r", Type: "T", Payload: []byte(`{}`)}
			other := eventstore.Event{ID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a02", AggregateID: tc.other, Type: "T", Payload: []byte(`{}`)}
			_, err = s.Append(ctx, first)
			require.NoError(t, err)
			stored, err := s.Append(ctx, other)
			require.NoError(t, err)
			require.NoError(t, s.Close())

			rewrite(t, path, func(tx *bbolt.Tx) error {
				id, err := index.ID(first.ID)
				if err != nil {
					return err
				}
				return tx.Bucket(bucketIDs).Put(id, index.Event(stored[0].AggregateID, stored[0].Version))
			})
			s, err = Open(path, nil)
			require.NoError(t, err)
			defer s.Close()
			got, err := s.Append(ctx, first)
			require.ErrorIs(t, err, eventstore.ErrCorrupt)
			require.NotErrorIs(t, err, eventstore.ErrDuplicateEvent)
			require.Nil(t, got)
		})
	}
}
