package bolt

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
)

// collectFor runs a subscription for d and returns what it yielded before
// its ctx ended.
func collectFor(t *testing.T, s *Store, after uint64, d time.Duration) []eventstore.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []eventstore.Event
	for e, err := range s.Subscribe(ctx, after, eventstore.Filter{}) {
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			break
		}
		out = append(out, e)
	}
	return out
}

// TestSubscribe_NotBeforeCommitReturns holds a commit after bbolt wrote
// it, before commitTx returns (as if its fsync were still running): a
// plain read already sees the event, but no subscription yields it and
// Head does not count it until the commit returns.
func TestSubscribe_NotBeforeCommitReturns(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "events.db"), noWAL)
	require.NoError(t, err)
	defer s.Close()
	first, err := s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`1`)})
	require.NoError(t, err)

	live := make(chan eventstore.Event, 10)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for e, err := range s.Subscribe(sctx, 0, eventstore.Filter{}) {
			if err != nil {
				return
			}
			live <- e
		}
	}()
	require.Equal(t, first[0].ID, (<-live).ID)

	written, hold := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	defer release() // before Close, which waits for the held Append
	s.commit = func(tx *bbolt.Tx) error {
		err := tx.Commit()
		close(written)
		<-hold
		return err
	}
	appended := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`2`)})
		appended <- err
	}()
	<-written
	all, err := eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Len(t, all, 2, "the fault is not reached: a plain read does not see the held commit")
	require.Empty(t, collectFor(t, s, 1, 300*time.Millisecond), "a new subscription yielded an event before its commit returned")
	select {
	case e := <-live:
		t.Fatalf("a live subscription yielded position %d before its commit returned", e.Position)
	default:
	}
	head, err := s.Head(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), head)

	release()
	require.NoError(t, <-appended)
	select {
	case e := <-live:
		require.Equal(t, uint64(2), e.Position)
	case <-time.After(30 * time.Second):
		t.Fatal("the committed event never came")
	}
	head, err = s.Head(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(2), head)
}

// TestSubscribe_FailedCommitNeverSeen fails a commit that reached the file
// (its outcome unknown): plain reads see its event, subscriptions never do,
// and Head does not count it.
func TestSubscribe_FailedCommitNeverSeen(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "events.db"), noWAL)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`1`)})
	require.NoError(t, err)
	s.commit = func(tx *bbolt.Tx) error {
		if err := tx.Commit(); err != nil {
			return err
		}
		return errInjected
	}
	_, err = s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`2`)})
	require.ErrorIs(t, err, eventstore.ErrUnknownOutcome)
	all, err := eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Len(t, all, 2, "the fault is not reached: the failed commit is not in the file")

	got := collectFor(t, s, 0, 300*time.Millisecond)
	require.Len(t, got, 1, "a subscription yielded the event of a failed commit")
	require.Equal(t, uint64(1), got[0].Position)
	head, err := s.Head(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), head)
}

// TestOpen_AddsCheckpointsBucket opens a file written before checkpoints
// existed (format "eventstore/bolt 1" without the bucket): Open adds the
// bucket, checkpoints work, and the file checks clean. A read-model bucket
// ("rm:...") is left alone.
func TestOpen_AddsCheckpointsBucket(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	s, err := Open(path, nil)
	require.NoError(t, err)
	_, err = s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`1`)})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketCheckpoints); err != nil {
			return err
		}
		b, err := tx.CreateBucket([]byte(readModelPrefix + "orders"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	}))
	require.NoError(t, db.Close())

	s, err = Open(path, nil)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.SaveCheckpoint(ctx, "p", 1))
	p, err := s.LoadCheckpoint(ctx, "p")
	require.NoError(t, err)
	require.Equal(t, uint64(1), p)
	head, err := s.Head(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), head, "Head of a reopened file")
	require.NoError(t, s.Check(ctx))
}

// TestCheckpoint_Damaged reads a checkpoint whose value is not 8 bytes.
func TestCheckpoint_Damaged(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path, nil)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketCheckpoints).Put([]byte("p"), []byte{1, 2, 3})
	}))
	_, err = s.LoadCheckpoint(ctx, "p")
	require.ErrorIs(t, err, eventstore.ErrCorrupt)
}
