package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
)

var errInjected = errors.New("injected fsync failure")

// noWAL opens a store without its log, for the tests of a failing bbolt
// commit: with the log, an append is acknowledged before bbolt commits it
// (TestWAL_FailedHeldCommit covers that case).
var noWAL = &Options{NoWAL: true}

// failingCommit returns a commit that fails with errInjected after it
// wrote the transaction to the file (written) or rolled it back.
func failingCommit(written bool) func(tx *bbolt.Tx) error {
	return func(tx *bbolt.Tx) error {
		if written {
			if err := tx.Commit(); err != nil {
				return err
			}
		} else if err := tx.Rollback(); err != nil {
			return err
		}
		return errInjected
	}
}

// TestStore_UnknownOutcome simulates a commit whose fsync fails (without
// the log: see noWAL), both when the data reached the file anyway and when
// it did not: Append reports
// ErrUnknownOutcome, later writes get ErrNeedsReopen, and after a reopen a
// retry with the same events either finds them or stores them.
func TestStore_UnknownOutcome(t *testing.T) {
	for _, onDisk := range []bool{true, false} {
		t.Run(fmt.Sprintf("onDisk=%v", onDisk), func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "events.db")
			s, err := Open(path, noWAL)
			require.NoError(t, err)
			first, err := s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`1`)})
			require.NoError(t, err)

			s.commit = failingCommit(onDisk)
			events := []eventstore.Event{
				{ID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", AggregateID: "a", Type: "T", Payload: []byte(`2`), Version: 2},
				{ID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c", AggregateID: "a", Type: "T", Payload: []byte(`3`), Version: 3},
			}
			_, err = s.Append(ctx, events...)
			require.ErrorIs(t, err, eventstore.ErrUnknownOutcome)
			require.ErrorIs(t, err, errInjected)

			// Poisoned: writes refused, reads work.
			_, err = s.Append(ctx, events...)
			require.ErrorIs(t, err, eventstore.ErrNeedsReopen)
			require.ErrorIs(t, s.SaveSnapshot(ctx, eventstore.Snapshot{AggregateID: "a", Version: 1}), eventstore.ErrNeedsReopen)
			require.ErrorIs(t, s.DeleteSnapshot(ctx, "a"), eventstore.ErrNeedsReopen)
			got, err := eventstore.Collect(s.ReadAll(ctx, 0))
			require.NoError(t, err)
			require.Equal(t, first, got[:1])
			require.NoError(t, s.Close())

			// After a reopen the retry is safe either way.
			s, err = Open(path, noWAL)
			require.NoError(t, err)
			defer s.Close()
			stored, err := s.Append(ctx, events...)
			require.NoError(t, err)
			require.Equal(t, []uint64{2, 3}, []uint64{stored[0].Position, stored[1].Position})
			require.NoError(t, s.Check(ctx))
		})
	}
}

// TestStore_NoWriteAfterFailedCommit checks that a write waiting while
// another write's commit fails does not commit after it: bbolt releases its
// writer lock inside the failing Commit, before the store is poisoned.
func TestStore_NoWriteAfterFailedCommit(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "events.db"), noWAL)
	require.NoError(t, err)
	defer s.Close()

	inCommit, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	s.commit = func(tx *bbolt.Tx) error {
		if calls.Add(1) > 1 {
			return tx.Commit()
		}
		close(inCommit)
		<-release
		if err := tx.Commit(); err != nil {
			return err
		}
		return errInjected
	}
	saved := make(chan error, 1)
	go func() { saved <- s.SaveSnapshot(ctx, eventstore.Snapshot{AggregateID: "a", Version: 1}) }()
	<-inCommit
	appended := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`1`)})
		appended <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the Append reach its transaction
	close(release)

	require.ErrorIs(t, <-saved, eventstore.ErrUnknownOutcome)
	require.ErrorIs(t, <-appended, eventstore.ErrNeedsReopen, "an append committed after a failed commit")
	got, err := eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Empty(t, got)
}

// countCommits makes s count its bbolt commits through Store.commit.
func countCommits(s *Store) *atomic.Int64 {
	var n atomic.Int64
	s.commit = func(tx *bbolt.Tx) error {
		n.Add(1)
		return tx.Commit()
	}
	return &n
}

// TestStore_GroupCommit checks that concurrent appends share commits, that
// each gets its own answer, and that conflicts fail alone.
func TestStore_GroupCommit(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "events.db"), nil)
	require.NoError(t, err)
	defer s.Close()
	commits := countCommits(s)

	const writers, each = 32, 10
	var wg sync.WaitGroup
	var conflicts atomic.Int64
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			agg := fmt.Sprintf("agg-%d", w%8) // 4 writers per aggregate
			for range each {
				for {
					v, err := s.Version(ctx, agg)
					if err != nil {
						t.Error(err)
						return
					}
					stored, err := s.Append(ctx, eventstore.Event{AggregateID: agg, Type: "T", Payload: []byte(`{}`), Version: v + 1})
					if errors.Is(err, eventstore.ErrConflict) {
						conflicts.Add(1)
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					if stored[0].Version != v+1 || stored[0].AggregateID != agg {
						t.Errorf("stored %+v", stored[0])
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	n := int64(writers * each)
	t.Logf("%d appends, %d conflicts, %d commits", n, conflicts.Load(), commits.Load())
	require.Less(t, commits.Load(), n, "no commit was shared")
	for a := range 8 {
		v, err := s.Version(ctx, fmt.Sprintf("agg-%d", a))
		require.NoError(t, err)
		require.Equal(t, uint64(writers/8*each), v)
	}
	require.NoError(t, s.Check(ctx))
}

// TestStore_CommitGathers checks that a commit waits for the writers the
// last one answered: with writers that append again as soon as they are
// answered, commits carry all of them, not two alternating halves. A slow
// commit stands in for a slow fsync; the same writers with the wait turned
// off (MaxCommitWait < 0) are the comparison. On an idle machine the wait
// saves about 45% of the commits (26 vs 48 for 200 appends); under the
// load of a parallel make test, 25-35% (27-31 vs 40-45). Two rounds of each,
// interleaved, keep one slow round from deciding.
func TestStore_CommitGathers(t *testing.T) {
	const writers, each = 8, 25
	commits := func(maxWait time.Duration) int64 {
		ctx := context.Background()
		s, err := Open(filepath.Join(t.TempDir(), "events.db"), &Options{UnsafeNoSync: true, MaxCommitWait: maxWait})
		require.NoError(t, err)
		defer s.Close()
		var n atomic.Int64
		s.commit = func(tx *bbolt.Tx) error {
			n.Add(1)
			time.Sleep(10 * time.Millisecond)
			return tx.Commit()
		}
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					_, err := s.Append(ctx, eventstore.Event{AggregateID: fmt.Sprint("w", w), Type: "T", Payload: []byte(`{}`), Version: uint64(i + 1)})
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		require.NoError(t, s.Check(ctx))
		return n.Load()
	}
	var gathered, alone int64
	for range 2 {
		gathered += commits(0)
		alone += commits(-1)
	}
	t.Logf("2 x %d appends: %d commits gathering, %d without", writers*each, gathered, alone)
	require.Less(t, gathered*5, alone*4, "gathering saved less than a fifth of the commits")
}

// A record of about 270 bytes, as the issue measures.
func benchRecord() []byte {
	e := eventstore.Event{
		ID:          "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
		AggregateID: "account-000042",
		Type:        "MoneyDeposited",
		Version:     17,
		Position:    123456,
		Timestamp:   time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
		Payload:     []byte(`{"amount":1234,"currency":"EUR","note":"a payload of about two hundred bytes, which is what events often weigh","tags":["x","y","z"],"ok":true,"by":"user-123"}`),
	}
	u := uuid.MustParse(e.ID)
	return appendEventRecord(nil, &e, u[:])
}

// BenchmarkDecode compares the hand-written parser with the msgpack
// library's reflective decoding of the same record.
func BenchmarkDecode(b *testing.B) {
	rec := benchRecord()
	b.Logf("record: %d bytes", len(rec))
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		var d decoder
		page := make([]eventstore.Event, 0, 512)
		for b.Loop() {
			var err error
			if page, err = d.decodePage(nil, rec, page); err != nil {
				b.Fatal(err)
			}
			if len(page) == cap(page) {
				d.finish(page)
				page = page[:0]
			}
		}
	})
	b.Run("hand/single", func(b *testing.B) {
		b.ReportAllocs()
		var d decoder
		var e eventstore.Event
		for b.Loop() {
			if err := d.decode(nil, rec, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reflect", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r libRecord
			if err := msgpack.Unmarshal(rec[crcSize:], &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestStore_ConcurrentRetries appends the same events from many goroutines
// at once, as callers retrying after a lost answer do: one stores them, the
// others get them back as stored, in the same or a later commit.
func TestStore_ConcurrentRetries(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "events.db"), &Options{UnsafeNoSync: true})
	require.NoError(t, err)
	defer s.Close()
	for round := range 20 {
		events := []eventstore.Event{
			{ID: uuid.NewString(), AggregateID: "a", Type: "T", Payload: []byte(`1`)},
			{ID: uuid.NewString(), AggregateID: "a", Type: "T", Payload: []byte(`2`)},
		}
		results := make([][]eventstore.Event, 16)
		var wg sync.WaitGroup
		for g := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := s.Append(ctx, events...)
				if err != nil {
					t.Error(err)
				}
				results[g] = out
			}()
		}
		wg.Wait()
		for _, r := range results {
			require.Equal(t, results[0], r)
		}
		require.Equal(t, uint64(2*round+1), results[0][0].Position)
	}
	require.NoError(t, s.Check(ctx))
}

// TestStore_CommitPanics simulates bbolt panicking inside Commit.
func TestStore_CommitPanics(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "events.db"), noWAL)
	require.NoError(t, err)
	s.commit = func(*bbolt.Tx) error { panic("boom") }
	_, err = s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`1`)})
	require.ErrorIs(t, err, eventstore.ErrUnknownOutcome)
	require.ErrorIs(t, err, eventstore.ErrCorrupt)
	require.ErrorIs(t, s.SaveSnapshot(ctx, eventstore.Snapshot{AggregateID: "a", Version: 1}), eventstore.ErrNeedsReopen)
	_, err = s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`1`)})
	require.ErrorIs(t, err, eventstore.ErrNeedsReopen)
	require.NoError(t, s.Close()) // the writer lock was released
}
