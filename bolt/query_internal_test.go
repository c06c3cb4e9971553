package bolt

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/index"
)

func tagged(agg, typ string, tags ...string) eventstore.Event {
	return eventstore.Event{AggregateID: agg, Type: typ, Payload: []byte(`{}`), Tags: tags}
}

// TestOpen_UpgradesFormat1 opens a file of format 1 (no tags bucket, the
// format key "eventstore/bolt 1", 8-field records): Open makes it format
// 3 (format 2 and its own rule, see format_internal_test.go), which a version of this package that knows only format 1 refuses,
// and its old events read as before, beside new tagged ones.
func TestOpen_UpgradesFormat1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	s, err := Open(path, nil)
	require.NoError(t, err)
	_, err = s.Append(ctx, tagged("a", "T"), tagged("a", "U"))
	require.NoError(t, err)
	require.NoError(t, s.Close())

	// Make it the file format 1 wrote: the same records (events without
	// tags have the 8-field record), no tags bucket, format 1.
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketTags); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyFormat, formatV1)
	}))
	require.NoError(t, db.Close())

	s, err = Open(path, nil)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.view(func(tx *bbolt.Tx) error {
		require.Equal(t, string(formatV3), string(tx.Bucket(bucketMeta).Get(keyFormat)))
		require.NotNil(t, tx.Bucket(bucketTags))
		return nil
	}))
	_, err = s.Append(ctx, tagged("b", "T", "x"))
	require.NoError(t, err)
	got, err := eventstore.Collect(s.Read(ctx, eventstore.Filter{Types: []string{"T"}}, 0))
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Nil(t, got[0].Tags)
	require.Equal(t, []string{"x"}, got[1].Tags)
	got, err = eventstore.Collect(s.Read(ctx, eventstore.Filter{Tags: []string{"x"}}, 0))
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.NoError(t, s.Check(ctx))
}

// TestCheck_Tags: Check requires exactly one tags entry per tag of every
// event, pointing to it.
func TestCheck_Tags(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		damage func(b *bbolt.Bucket) error
	}{
		{"Missing", func(b *bbolt.Bucket) error { return b.Delete(index.Type("y", 2)) }},
		{"Extra", func(b *bbolt.Bucket) error { return b.Put(index.Type("z", 2), index.Event("a", 2)) }},
		{"Misdirected", func(b *bbolt.Bucket) error { return b.Put(index.Type("x", 1), index.Event("a", 2)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(filepath.Join(t.TempDir(), "events.db"), &Options{UnsafeNoSync: true})
			require.NoError(t, err)
			defer s.Close()
			_, err = s.Append(ctx, tagged("a", "T", "x"), tagged("a", "T", "x", "y"), tagged("a", "T"))
			require.NoError(t, err)
			require.NoError(t, s.Check(ctx))
			require.NoError(t, s.db.Update(func(tx *bbolt.Tx) error { return tc.damage(tx.Bucket(bucketTags)) }))
			require.ErrorIs(t, s.Check(ctx), eventstore.ErrCorrupt)
		})
	}
}

// TestRead_DecodesOnlyMatches: Read finds its events through the indexes
// and decodes no other event, so a damaged record of an event it does not
// select does not disturb it (ReadAll, which reads it, fails).
func TestRead_DecodesOnlyMatches(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "events.db"), &Options{UnsafeNoSync: true})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Append(ctx, tagged("a", "T", "x"), tagged("a", "T", "y"), tagged("a", "U", "x"), tagged("a", "T", "x", "y"))
	require.NoError(t, err)
	// Damage the records of events 2 and 3 (in place: same length).
	require.NoError(t, s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		for _, v := range []uint64{2, 3} {
			rec := append([]byte(nil), b.Get(index.Event("a", v))...)
			rec[len(rec)-1] ^= 0xff
			if err := b.Put(index.Event("a", v), rec); err != nil {
				return err
			}
		}
		return nil
	}))
	_, err = eventstore.Collect(s.ReadAll(ctx, 0))
	require.ErrorIs(t, err, eventstore.ErrCorrupt)
	for _, f := range []eventstore.Filter{
		{Types: []string{"T"}, Tags: []string{"x"}},            // 3 has tag x, 2 type T: neither both
		{Items: []eventstore.Item{{Tags: []string{"x", "y"}}}}, // only 4
	} {
		got, err := eventstore.Collect(s.Read(ctx, f, 0))
		require.NoError(t, err, "%+v", f)
		for _, e := range got {
			require.True(t, f.Match(e))
		}
	}
}

// TestAppendIf_FailureAnswersOnlyItself puts a failing AppendIf in one
// group commit with two Appends: they commit, it fails.
func TestAppendIf_FailureAnswersOnlyItself(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "events.db"), &Options{UnsafeNoSync: true, MaxCommitWait: -1})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Append(ctx, tagged("a", "T", "x"))
	require.NoError(t, err)

	// Hold the writer lock: the first append below leads a commit that
	// waits for it; the next ones queue for the commit after.
	s.wmu.Lock()
	type result struct {
		out []eventstore.Event
		err error
	}
	first := make(chan result, 1)
	go func() {
		out, err := s.Append(ctx, tagged("b", "T"))
		first <- result{out, err}
	}()
	waitQueue := func(n int) {
		for {
			s.qmu.Lock()
			q, leading := len(s.queue), s.leading
			s.qmu.Unlock()
			if leading && q == n {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitQueue(0) // the leader took its batch
	failing, plain := make(chan result, 1), make(chan result, 1)
	go func() {
		out, err := s.AppendIf(ctx, eventstore.Condition{FailIfEventsMatch: eventstore.Filter{Tags: []string{"x"}}}, tagged("c", "T", "x"))
		failing <- result{out, err}
	}()
	waitQueue(1)
	go func() {
		out, err := s.AppendIf(ctx, eventstore.Condition{FailIfEventsMatch: eventstore.Filter{Tags: []string{"x"}}, After: 1}, tagged("d", "T", "y"))
		plain <- result{out, err}
	}()
	waitQueue(2)
	s.wmu.Unlock()

	r := <-first
	require.NoError(t, r.err)
	r = <-failing
	var ce *eventstore.ConditionError
	require.ErrorAs(t, r.err, &ce)
	require.Equal(t, uint64(1), ce.Position)
	r = <-plain
	require.NoError(t, r.err)
	require.Equal(t, uint64(3), r.out[0].Position)
	all, err := eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Len(t, all, 3)
	require.NoError(t, s.Check(ctx))
}
