package bolt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

func TestStore_Reopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := bolt.Open(path, nil)
	require.NoError(t, err)
	stored, err := s.Append(ctx,
		eventstore.Event{AggregateID: "order-1", Type: "OrderPlaced", Payload: []byte(`{"n": 1}`), Metadata: map[string]string{"user_id": "u1"}},
		eventstore.Event{AggregateID: "order-1", Type: "OrderPaid", Payload: []byte(`{}`)},
	)
	require.NoError(t, err)
	require.NoError(t, s.SaveSnapshot(ctx, eventstore.Snapshot{AggregateID: "order-1", Version: 2, Schema: "order/v1", State: []byte("s")}))
	require.NoError(t, s.Close())

	s = MustOpenPath(t, path, nil)
	got, err := eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Equal(t, stored, got)
	v, err := s.Version(ctx, "order-1")
	require.NoError(t, err)
	require.Equal(t, uint64(2), v)
	snap, err := s.LoadSnapshot(ctx, "order-1")
	require.NoError(t, err)
	require.Equal(t, uint64(2), snap.Version)

	// Positions continue where they stopped.
	more, err := s.Append(ctx, eventstore.Event{AggregateID: "order-2", Type: "OrderPlaced", Payload: []byte(`{}`)})
	require.NoError(t, err)
	require.Equal(t, uint64(3), more[0].Position)
}

func TestOpen_FileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	MustOpenPath(t, path, nil)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestOpen_ErrLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	MustOpenPath(t, path, nil)

	start := time.Now()
	s, err := bolt.Open(path, &bolt.Options{Timeout: 200 * time.Millisecond})
	if err == nil {
		s.Close()
	}
	require.ErrorIs(t, err, eventstore.ErrLocked)
	require.Less(t, time.Since(start), 2*time.Second)
}

func TestOpen_ErrUnknownFormat(t *testing.T) {
	t.Run("ForeignBbolt", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "widgets.db")
		db, err := bbolt.Open(path, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucket([]byte("widgets"))
			if err != nil {
				return err
			}
			return b.Put([]byte("w1"), []byte("blue"))
		}))
		require.NoError(t, db.Close())
		_, err = bolt.Open(path, nil)
		require.ErrorIs(t, err, eventstore.ErrUnknownFormat)
	})
	for _, format := range []string{"eventstore/bolt 4", "eventstore/bolt 4+log", "someone else's", ""} {
		t.Run("Format="+format, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.db")
			s, err := bolt.Open(path, nil)
			require.NoError(t, err)
			require.NoError(t, s.Close())
			rewrite(t, path, func(tx *bbolt.Tx) error {
				if format == "" {
					return tx.Bucket([]byte("meta")).Delete([]byte("format"))
				}
				return tx.Bucket([]byte("meta")).Put([]byte("format"), []byte(format))
			})
			_, err = bolt.Open(path, nil)
			require.ErrorIs(t, err, eventstore.ErrUnknownFormat)
		})
	}
	t.Run("NotBbolt", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "notes.txt")
		require.NoError(t, os.WriteFile(path, bytes.Repeat([]byte("not a database\n"), 1000), 0o600))
		_, err := bolt.Open(path, nil)
		require.ErrorIs(t, err, eventstore.ErrUnknownFormat)
	})
}

// rewrite changes the bbolt file at path directly.
func rewrite(t *testing.T, path string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(fn))
	require.NoError(t, db.Close())
}

func TestStore_ErrCorrupt(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := bolt.Open(path, nil)
	require.NoError(t, err)
	stored, err := s.Append(ctx,
		eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`"ok"`)},
		eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`"FLIPMEFLIPMEFLIPME"`)},
	)
	require.NoError(t, err)
	require.NoError(t, s.SaveSnapshot(ctx, eventstore.Snapshot{AggregateID: "a", Version: 1, State: []byte("SNAPSNAPSNAPSNAP")}))
	require.NoError(t, s.Close())

	// Flip one byte of the payload and one of the snapshot in the file
	// itself, as a bad disk would.
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, needle := range []string{"FLIPMEFLIPMEFLIPME", "SNAPSNAPSNAPSNAP"} {
		// Old copies of pages stay in the file until reused: flip all.
		require.Positive(t, bytes.Index(raw, []byte(needle)), "%s not found in the file", needle)
		for i := bytes.Index(raw, []byte(needle)); i >= 0; i = bytes.Index(raw, []byte(needle)) {
			raw[i+3] ^= 0x01
		}
	}
	require.NoError(t, os.WriteFile(path, raw, 0o600))

	s, err = bolt.Open(path, nil)
	require.NoError(t, err)
	defer s.Close()

	reads := map[string]func() ([]eventstore.Event, error){
		"ReadAggregate": func() ([]eventstore.Event, error) { return eventstore.Collect(s.ReadAggregate(ctx, "a", 0)) },
		"ReadAll":       func() ([]eventstore.Event, error) { return eventstore.Collect(s.ReadAll(ctx, 0)) },
		"ReadType":      func() ([]eventstore.Event, error) { return eventstore.Collect(s.ReadType(ctx, "T", 0)) },
		"ReadTime": func() ([]eventstore.Event, error) {
			return eventstore.Collect(s.ReadTime(ctx, "", time.Time{}, time.Time{}))
		},
		"ReadTimeOf": func() ([]eventstore.Event, error) {
			return eventstore.Collect(s.ReadTime(ctx, "a", time.Time{}, time.Time{}))
		},
		"Retry": func() ([]eventstore.Event, error) { return s.Append(ctx, stored[1]) },
	}
	for name, read := range reads {
		t.Run(name, func(t *testing.T) {
			got, err := read()
			require.ErrorIs(t, err, eventstore.ErrCorrupt)
			for _, e := range got {
				require.Equal(t, stored[0], e, "only the intact event may be returned")
			}
		})
	}
	_, err = s.LoadSnapshot(ctx, "a")
	require.ErrorIs(t, err, eventstore.ErrCorrupt)
	require.ErrorIs(t, s.Check(ctx), eventstore.ErrCorrupt)

	// The intact event still reads.
	got, err := eventstore.Collect(s.ReadAggregate(ctx, "a", 0))
	require.ErrorIs(t, err, eventstore.ErrCorrupt)
	require.Equal(t, stored[:1], got)
}

// TestStore_DamagedPages overwrites pages of the file with garbage: every
// call must return errors (ErrCorrupt where bbolt panics), never crash.
func TestStore_DamagedPages(t *testing.T) {
	t.Run("Leaves", func(t *testing.T) { testDamagedPages(t, false) })
	t.Run("Many", func(t *testing.T) { testDamagedPages(t, true) })
}

func testDamagedPages(t *testing.T, damageAll bool) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := bolt.Open(path, &bolt.Options{UnsafeNoSync: true})
	require.NoError(t, err)
	for i := range 200 {
		batch := make([]eventstore.Event, 10)
		for j := range batch {
			batch[j] = eventstore.Event{AggregateID: "agg-" + string(rune('a'+i%26)), Type: "T", Payload: []byte(`{"some":"payload to fill pages"}`)}
		}
		_, err := s.Append(ctx, batch...)
		require.NoError(t, err)
	}
	require.NoError(t, s.Close())

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	pageSize := os.Getpagesize()
	if damageAll {
		for p := 4; p*pageSize < len(raw); p += 3 {
			copy(raw[p*pageSize:], bytes.Repeat([]byte{0xa5}, 64))
		}
	} else {
		// Damage the header of every page that holds events.
		needle := []byte("payload to fill pages")
		for i := 0; ; {
			j := bytes.Index(raw[i:], needle)
			if j < 0 {
				break
			}
			p := (i + j) / pageSize * pageSize
			copy(raw[p:], bytes.Repeat([]byte{0xa5}, 16))
			i = p + pageSize
		}
	}
	require.NoError(t, os.WriteFile(path, raw, 0o600))

	s, err = bolt.Open(path, nil)
	if err != nil {
		t.Log("Open:", err)
		require.ErrorIs(t, err, eventstore.ErrCorrupt)
		return
	}
	defer s.Close()
	// With every events page damaged, every read fails. With pages damaged
	// at random, a read may miss the damage: bbolt pages carry no
	// checksum, only records do.
	check := func(what string, err error) {
		t.Helper()
		t.Log(what+":", err)
		if damageAll && err == nil {
			return
		}
		require.ErrorIs(t, err, eventstore.ErrCorrupt, what)
	}
	_, err = eventstore.Collect(s.ReadAll(ctx, 0))
	check("ReadAll", err)
	check("Check", s.Check(ctx))
	_, err = eventstore.Collect(s.ReadTime(ctx, "", time.Time{}, time.Time{}))
	check("ReadTime", err)
	_, err = eventstore.Collect(s.ReadAggregate(ctx, "agg-c", 0))
	check("ReadAggregate", err)
	_, err = s.Append(ctx, eventstore.Event{AggregateID: "agg-z", Type: "T", Payload: []byte(`{}`)})
	t.Log("Append:", err)
}

func TestStore_ClosedErrors(t *testing.T) {
	ctx := context.Background()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "events.db"), nil)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, err = s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`)})
	require.ErrorIs(t, err, eventstore.ErrClosed)
	_, err = s.Version(ctx, "a")
	require.ErrorIs(t, err, eventstore.ErrClosed)
	_, err = eventstore.Collect(s.ReadAll(ctx, 0))
	require.ErrorIs(t, err, eventstore.ErrClosed)
	require.ErrorIs(t, s.SaveSnapshot(ctx, eventstore.Snapshot{AggregateID: "a", Version: 1}), eventstore.ErrClosed)
	_, err = s.LoadSnapshot(ctx, "a")
	require.ErrorIs(t, err, eventstore.ErrClosed)
	require.ErrorIs(t, s.Check(ctx), eventstore.ErrClosed)
	require.True(t, errors.Is(s.DeleteSnapshot(ctx, "a"), eventstore.ErrClosed))
}

// TestStore_IteratorReuse ranges twice over one iterator: each run reads
// from the beginning.
func TestStore_IteratorReuse(t *testing.T) {
	ctx := context.Background()
	s := MustOpen(t, &bolt.Options{ReadPageSize: 2, UnsafeNoSync: true})
	for range 5 {
		_, err := s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`)})
		require.NoError(t, err)
	}
	for name, seq := range map[string]func(func(eventstore.Event, error) bool){
		"ReadAll":       s.ReadAll(ctx, 0),
		"ReadAggregate": s.ReadAggregate(ctx, "a", 0),
		"ReadType":      s.ReadType(ctx, "T", 0),
		"ReadTime":      s.ReadTime(ctx, "", time.Time{}, time.Time{}),
		"ReadTimeOf":    s.ReadTime(ctx, "a", time.Time{}, time.Time{}),
	} {
		first, err := eventstore.Collect(seq)
		require.NoError(t, err, name)
		second, err := eventstore.Collect(seq)
		require.NoError(t, err, name)
		require.Len(t, first, 5, name)
		require.Equal(t, first, second, name)
	}
	require.NoError(t, s.DeleteSnapshot(ctx, ""))
}

// TestStore_CloseUnderLoad closes a store while appends and reads run: each
// either succeeds or fails with ErrClosed, and nothing panics.
func TestStore_CloseUnderLoad(t *testing.T) {
	ctx := context.Background()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "events.db"), &bolt.Options{UnsafeNoSync: true, ReadPageSize: 4})
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				var err error
				if g%2 == 0 {
					_, err = s.Append(ctx, eventstore.Event{AggregateID: fmt.Sprintf("a%d", g), Type: "T", Payload: []byte(`{}`)})
				} else {
					for _, e := range s.ReadAll(ctx, 0) {
						if e != nil {
							err = e
							break
						}
					}
				}
				if err != nil {
					if !errors.Is(err, eventstore.ErrClosed) {
						errs <- err
					}
					return
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, s.Close())
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestStore_ReadTimeOfAggregate reads one aggregate whose timestamps run
// backwards, across many scan pages and read pages.
func TestStore_ReadTimeOfAggregate(t *testing.T) {
	ctx := context.Background()
	s := MustOpen(t, &bolt.Options{ReadPageSize: 2, UnsafeNoSync: true})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 100
	for i := range n {
		// Pairs share a timestamp; later pairs are earlier.
		ts := base.Add(time.Duration(n/2-i/2) * time.Second)
		for _, agg := range []string{"a", "b"} {
			_, err := s.Append(ctx, eventstore.Event{AggregateID: agg, Type: "T", Payload: []byte(`{}`), Timestamp: ts})
			require.NoError(t, err)
		}
	}
	start, end := base.Add(10*time.Second), base.Add(40*time.Second)
	got, err := eventstore.Collect(s.ReadTime(ctx, "a", start, end))
	require.NoError(t, err)
	require.Len(t, got, 60)
	for i, e := range got {
		require.Equal(t, "a", e.AggregateID)
		require.False(t, e.Timestamp.Before(start) || !e.Timestamp.Before(end))
		if i > 0 {
			p := got[i-1]
			require.True(t, p.Timestamp.Before(e.Timestamp) || p.Timestamp.Equal(e.Timestamp) && p.Position < e.Position,
				"%v/%d before %v/%d", p.Timestamp, p.Position, e.Timestamp, e.Position)
		}
	}
	all, err := eventstore.Collect(s.ReadTime(ctx, "", start, end))
	require.NoError(t, err)
	require.Len(t, all, 120)
}
