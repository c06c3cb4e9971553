package bolt

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
)

// TestOpen_UpgradesFormat2 opens a file of format 2, whose records hold
// every metadata value as a str: a read-only Open reads it as it is and
// leaves it so; a read-write Open makes it format 3 by its format key
// alone, the old records read as before, and new ones store UUID values
// as the extension.
func TestOpen_UpgradesFormat2(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v2.db")
	corr := uuid.Must(uuid.NewV7()).String()
	meta := map[string]string{"correlation_id": corr, "upper": "0190A7E2-3C4D-7E8F-9A0B-1C2D3E4F5A6B", "user_id": "user-7"}
	s, err := Open(path, nil)
	require.NoError(t, err)
	_, err = s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`), Metadata: meta},
		eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`), Metadata: meta})
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
			require.True(t, bytes.Contains(v, []byte{0xd8, uuidExt}), "a record of format 3 without the UUID extension")
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

	ro, err := Open(path, &Options{ReadOnly: true})
	require.NoError(t, err)
	got, err := eventstore.Collect(ro.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.NoError(t, ro.Check(ctx))
	require.NoError(t, ro.Close())
	require.Equal(t, string(formatV2), fileFormat(t, path), "a read-only Open changed the file")

	s, err = Open(path, nil)
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
		_, v := tx.Bucket(bucketEvents).Cursor().Last()
		u := uuid.MustParse(corr)
		require.True(t, bytes.Contains(v, append([]byte{0xd8, uuidExt}, u[:]...)), "new record %x", v)
		return nil
	}))
	got, err = eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Equal(t, append(want, added...), got)
	require.NoError(t, s.Check(ctx))
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
