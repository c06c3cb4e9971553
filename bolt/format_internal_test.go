package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/index"
)

// TestOpen_UpgradesFormat2 opens a file of format 2, whose records hold
// every metadata value as a str: a read-only Open reads it as it is and
// leaves it so; a read-write Open makes it format 3 by its format key
// alone, the old records read as before, and new ones store UUID values
// as the extension.
func TestOpen_UpgradesFormat2(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v2.db")
	want, meta := makeFormat2File(t, path)
	corr := meta["correlation_id"]

	ro, err := Open(path, &Options{ReadOnly: true})
	require.NoError(t, err)
	got, err := eventstore.Collect(ro.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.NoError(t, ro.Check(ctx))
	require.NoError(t, ro.Close())
	require.Equal(t, string(formatV2), fileFormat(t, path), "a read-only Open changed the file")

	s, err := Open(path, nil)
	require.NoError(t, err)
	defer s.Close()
	got, err = eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Equal(t, want, got)
	added, err := s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`), Metadata: meta})
	require.NoError(t, err)
	require.NoError(t, s.view(func(tx *bbolt.Tx) error {
		format := tx.Bucket(bucketMeta).Get(keyFormat)
		require.True(t, bytes.Equal(format, formatV3) || bytes.Equal(format, formatLogged), "format %q", format)
		v := tx.Bucket(bucketEvents).Get(index.Event("a", added[0].Version))
		u := uuid.MustParse(corr)
		require.True(t, bytes.Contains(v, append([]byte{0xd8, uuidExt}, u[:]...)), "new record %x", v)
		return nil
	}))
	got, err = eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Equal(t, append(want, added...), got)
	require.NoError(t, s.Check(ctx))
}

// TestCompact_UpgradesFormat2 compacts a file of format 2 that also holds a
// snapshot, a checkpoint and a read model with a nested bucket, in
// transactions of a few hundred bytes: the copy is of format 3, its
// records are rewritten (UUIDs as the extension), every other key and
// value is copied as it was, and it reads back the same events.
func TestCompact_UpgradesFormat2(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "v2.db")
	want, meta := makeFormat2File(t, src)
	db, err := bbolt.Open(src, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		rm, err := tx.CreateBucket([]byte(ReadModelPrefix + "totals"))
		if err != nil {
			return err
		}
		require.NoError(t, rm.SetSequence(42))
		nested, err := rm.CreateBucket([]byte("by-day"))
		if err != nil {
			return err
		}
		for i := range 50 {
			require.NoError(t, nested.Put(fmt.Appendf(nil, "day-%03d", i), bytes.Repeat([]byte{byte(i)}, 40)))
		}
		require.NoError(t, rm.Put([]byte("total"), []byte("50")))
		require.NoError(t, tx.Bucket(bucketCheckpoints).Put([]byte("totals"), index.AppendUint64(nil, 3)))
		return tx.Bucket(bucketSnapshots).Put([]byte("a"), appendSnapshotRecord(nil, &eventstore.Snapshot{
			AggregateID: "a", Version: 2, Schema: "s1", State: []byte("state"), Timestamp: want[0].Timestamp}))
	}))

	dst := filepath.Join(dir, "v3.db")
	to, err := bbolt.Open(dst, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	from, err := bbolt.Open(src, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	require.NoError(t, Compact(ctx, to, from, 300))

	// Every key of src is in dst, with its value unless an event record.
	var upgraded int
	require.NoError(t, from.View(func(ftx *bbolt.Tx) error {
		return to.View(func(ttx *bbolt.Tx) error {
			require.Equal(t, string(formatV3), string(ttx.Bucket(bucketMeta).Get(keyFormat)))
			var walk func(path []string, fb, tb *bbolt.Bucket)
			walk = func(path []string, fb, tb *bbolt.Bucket) {
				require.NotNil(t, tb, "bucket %q missing", path)
				require.Equal(t, fb.Sequence(), tb.Sequence(), "bucket %q", path)
				require.Equal(t, fb.Stats().KeyN, tb.Stats().KeyN, "bucket %q", path)
				require.NoError(t, fb.ForEach(func(k, v []byte) error {
					switch {
					case v == nil:
						walk(append(path, string(k)), fb.Bucket(k), tb.Bucket(k))
					case path[0] == string(bucketEvents) && !bytes.Equal(v, tb.Get(k)):
						upgraded++
						require.True(t, bytes.Contains(tb.Get(k), []byte{0xd8, uuidExt}))
						require.Less(t, len(tb.Get(k)), len(v))
					case path[0] != string(bucketMeta):
						require.Equal(t, v, tb.Get(k), "bucket %q key %q", path, k)
					}
					return nil
				}))
			}
			return ftx.ForEach(func(name []byte, fb *bbolt.Bucket) error {
				walk([]string{string(name)}, fb, ttx.Bucket(name))
				return nil
			})
		})
	}))
	require.Equal(t, 2, upgraded, "the two events with metadata")
	require.NoError(t, from.Close())
	require.NoError(t, to.Close())

	s, err := Open(dst, &Options{ReadOnly: true})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Check(ctx))
	got, err := eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.Equal(t, meta, got[0].Metadata)
	snap, err := s.LoadSnapshot(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, []byte("state"), snap.State)
}

// TestCompact_RefusesOthers: a file of an unknown format, or with a record
// that does not parse, fails with the matching sentinel; a mark without a
// log that holds commits is dropped.
func TestCompact_RefusesOthers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	s, err := Open(src, nil)
	require.NoError(t, err)
	_, err = s.Append(ctx, tagged("a", "T"))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	mark := func(format []byte) func(tx *bbolt.Tx) error {
		return func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, format) }
	}
	for name, tc := range map[string]struct {
		change func(tx *bbolt.Tx) error
		log    bool // a log file without a header beside src
		want   error
	}{
		"format": {change: mark([]byte("eventstore/bolt 9")), want: eventstore.ErrUnknownFormat},
		"record": {change: func(tx *bbolt.Tx) error {
			k, v := tx.Bucket(bucketEvents).Cursor().First()
			bad := bytes.Clone(v)
			bad[len(bad)-1] ^= 1
			return tx.Bucket(bucketEvents).Put(k, bad)
		}, want: eventstore.ErrCorrupt},
		"markOnly": {change: mark(formatLogged)}, // the log is gone: the copy is whole
		// A log that never got its header held no commit: a read-only
		// Open reads the file, and so does Compact.
		"headerlessLog": {change: mark(formatLoggedV2), log: true},
		"format1": {change: func(tx *bbolt.Tx) error { // the copy gets the tags bucket
			if err := tx.DeleteBucket(bucketTags); err != nil {
				return err
			}
			return mark(formatV1)(tx)
		}},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "src.db")
			require.NoError(t, copyFileForTest(src, path))
			db, err := bbolt.Open(path, 0o600, nil)
			require.NoError(t, err)
			require.NoError(t, db.Update(tc.change))
			if tc.log {
				require.NoError(t, os.WriteFile(path+walSuffix, []byte("a log"), 0o600))
			}
			to, err := bbolt.Open(filepath.Join(t.TempDir(), "dst.db"), 0o600, nil)
			require.NoError(t, err)
			defer to.Close()
			err = Compact(ctx, to, db, 0)
			require.NoError(t, db.Close())
			if tc.want == nil {
				require.NoError(t, err)
				require.NoError(t, to.View(func(tx *bbolt.Tx) error {
					require.Equal(t, string(formatV3), string(tx.Bucket(bucketMeta).Get(keyFormat)))
					require.NotNil(t, tx.Bucket(bucketTags))
					return nil
				}))
				return
			}
			require.ErrorIs(t, err, tc.want)
		})
	}
}

// TestCompact_RefusesLog: the file of a crashed store, whose log holds
// commits that the file may lack, is refused as a read-only Open refuses
// it; after a read-write Open replays the log, it compacts.
func TestCompact_RefusesLog(t *testing.T) {
	requireWAL(t)
	ctx := context.Background()
	_, crashed := crashedStore(t, 3)

	_, err := Open(crashed, &Options{ReadOnly: true})
	require.ErrorIs(t, err, ErrNeedsRecovery)
	compact := func() error {
		from, err := bbolt.Open(crashed, 0o600, &bbolt.Options{ReadOnly: true})
		require.NoError(t, err)
		defer from.Close()
		to, err := bbolt.Open(filepath.Join(t.TempDir(), "dst.db"), 0o600, nil)
		require.NoError(t, err)
		defer to.Close()
		return Compact(ctx, to, from, 0)
	}
	require.ErrorIs(t, compact(), ErrNeedsRecovery)
	requireEvents(t, crashed, 3, "replayed")
	require.NoError(t, compact())
}

// TestOpen_LogOfAnotherVersion: a log whose header is whole but of another
// version of the log (a later version's) is neither replayed nor removed,
// and the file is not touched: Open fails with ErrUnknownFormat, and so
// does a read-only Open.
func TestOpen_LogOfAnotherVersion(t *testing.T) {
	requireWAL(t)
	_, crashed := crashedStore(t, 3)

	log, err := os.ReadFile(crashed + walSuffix)
	require.NoError(t, err)
	_, slot, err := pickWalHeader(log)
	require.NoError(t, err)
	h := log[slot*walSlotSize : slot*walSlotSize+walHeaderSize]
	binary.BigEndian.PutUint32(h[8:], walVersion+1)
	binary.BigEndian.PutUint32(h[walHeaderSize-4:], crc32.Checksum(h[:walHeaderSize-4], castagnoli))
	require.NoError(t, os.WriteFile(crashed+walSuffix, log, 0o600))
	file, err := os.ReadFile(crashed)
	require.NoError(t, err)

	for _, opts := range []*Options{nil, {ReadOnly: true}, {NoWAL: true}} {
		_, err = Open(crashed, opts)
		require.ErrorIs(t, err, eventstore.ErrUnknownFormat, "%+v", opts)
		after, err := os.ReadFile(crashed + walSuffix)
		require.NoError(t, err, "Open removed the log")
		require.Equal(t, log, after, "Open changed the log")
		afterFile, err := os.ReadFile(crashed)
		require.NoError(t, err)
		require.True(t, bytes.Equal(file, afterFile), "Open changed the file")
	}
}

// makeFormat2File makes a store file of format 2 at path, whose records
// hold the metadata meta (with UUIDs) as strs, and returns its events.
func makeFormat2File(t *testing.T, path string) ([]eventstore.Event, map[string]string) {
	t.Helper()
	ctx := context.Background()
	corr := uuid.Must(uuid.NewV7()).String()
	meta := map[string]string{"correlation_id": corr, "upper": "0190A7E2-3C4D-7E8F-9A0B-1C2D3E4F5A6B", "user_id": "user-7"}
	s, err := Open(path, nil)
	require.NoError(t, err)
	_, err = s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`), Metadata: meta},
		eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`), Metadata: meta, Tags: []string{"x"}})
	require.NoError(t, err)
	_, err = s.Append(ctx, eventstore.Event{AggregateID: "b", Type: "U", Payload: []byte(`[1]`)})
	require.NoError(t, err)
	want, err := eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.NoError(t, s.Close())

	// Make it the file format 2 wrote: the same records with their UUIDs as
	// strs, format 2.
	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		olds := map[string][]byte{}
		err := b.ForEach(func(k, v []byte) error {
			if bytes.HasPrefix(k, index.AggregatePrefix("a")) {
				require.True(t, bytes.Contains(v, []byte{0xd8, uuidExt}), "a record of format 3 without the UUID extension")
			}
			olds[string(k)] = formatV2Record(t, v)
			return nil
		})
		if err != nil {
			return err
		}
		for k, v := range olds {
			require.False(t, bytes.Contains(v, []byte{0xd8, uuidExt}))
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyFormat, formatV2)
	}))
	require.NoError(t, db.Close())
	return want, meta
}

// formatV2Record returns the record v (of format 3) as format 2 writes it:
// its metadata values all strs.
func formatV2Record(t *testing.T, v []byte) []byte {
	t.Helper()
	r, err := parseEventRecord(v)
	require.NoError(t, err)
	start := len(v) - len(r.meta)
	if r.tagsLen > 0 {
		start -= len(r.tags) + 1 // the tags array's header: fewer than 16 tags
	}
	if r.metaLen == 0 {
		return v
	}
	require.Equal(t, r.meta, v[start:start+len(r.meta)])
	out := append([]byte(nil), v[:start]...)
	b := r.meta
	for range r.metaLen {
		var key, val []byte
		var isUUID bool
		key, b, _ = readBytes(b)
		val, isUUID, b, _ = readMetaValue(b)
		out = appendStr(out, string(key))
		if isUUID {
			var text [36]byte
			formatUUID(&text, val)
			val = text[:]
		}
		out = appendStr(out, string(val))
	}
	out = append(out, v[start+len(r.meta):]...)
	sealRecord(out)
	return out
}

func copyFileForTest(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o600)
}

// TestReplayLog_Format2Mark: replaying a log that a version writing format
// 2 left (the file marked "2+log", the log's records with UUIDs as strs)
// writes the records in format 3 and the mark of format 3 in one commit,
// so that no moment leaves records of format 3 under a key that versions
// knowing only format 2 accept; Open then clears the mark.
func TestReplayLog_Format2Mark(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path, &Options{NoWAL: true})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	id := uuid.New()
	e := eventstore.Event{ID: id.String(), AggregateID: "a", Type: "T", Version: 1, Position: 1,
		Timestamp: time.UnixMicro(1_700_000_000_000_000).UTC(), Payload: []byte(`{}`),
		Metadata: map[string]string{"correlation_id": uuid.NewString()}}
	rec := formatV2Record(t, appendEventRecord(nil, &e, id[:]))
	require.False(t, bytes.Contains(rec, []byte{0xd8, uuidExt}))

	db, err := bbolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, formatLoggedV2) }))
	n, err := replayLog(db, [][]byte{appendWalEvent(nil, rec)})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		require.Equal(t, string(formatLogged), string(tx.Bucket(bucketMeta).Get(keyFormat)))
		require.True(t, bytes.Contains(tx.Bucket(bucketEvents).Get(index.Event("a", 1)), []byte{0xd8, uuidExt}))
		return nil
	}))
	require.NoError(t, db.Close())

	s, err = Open(path, nil)
	require.NoError(t, err)
	got, err := eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, e.Metadata, got[0].Metadata)
	require.NoError(t, s.Close())
	require.Equal(t, string(formatV3), fileFormat(t, path))
}

// TestOpen_UnknownFormatKeepsLog: a log beside a file of a format this
// package does not know (a later version's, marked as having a log) is not
// replayed: Open fails with ErrUnknownFormat and leaves file and log as
// they were.
func TestOpen_UnknownFormatKeepsLog(t *testing.T) {
	requireWAL(t)
	path := filepath.Join(t.TempDir(), "events.db")
	// A later version's mark, which this test's store writes in place of
	// its own.
	saved := formatLogged
	formatLogged = []byte("eventstore/bolt 4+log")
	s, err := Open(path, walOpts)
	if err != nil {
		formatLogged = saved
		require.NoError(t, err)
	}
	appendN(t, s, 3, 0)
	dst := crashCopy(t, path, t.TempDir())
	formatLogged = saved
	require.NoError(t, s.Close())
	require.Equal(t, "eventstore/bolt 4+log", fileFormat(t, dst))
	log, err := os.ReadFile(dst + walSuffix)
	require.NoError(t, err)
	file, err := os.ReadFile(dst)
	require.NoError(t, err)

	_, err = Open(dst, nil)
	require.ErrorIs(t, err, eventstore.ErrUnknownFormat)
	after, err := os.ReadFile(dst + walSuffix)
	require.NoError(t, err, "Open removed the log")
	require.Equal(t, log, after, "Open changed the log")
	afterFile, err := os.ReadFile(dst)
	require.NoError(t, err)
	require.Equal(t, len(file), len(afterFile))
}
