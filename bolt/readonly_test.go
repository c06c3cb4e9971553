package bolt_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

func TestOpen_ReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	w, err := bolt.Open(path, nil)
	require.NoError(t, err)
	stored, err := w.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{"x":1}`)})
	require.NoError(t, err)
	require.NoError(t, w.SaveCheckpoint(ctx, "c", 1))
	require.NoError(t, w.Close())
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	r, err := bolt.Open(path, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	got, err := eventstore.Collect(r.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Equal(t, stored, got)
	p, err := r.LoadCheckpoint(ctx, "c")
	require.NoError(t, err)
	require.EqualValues(t, 1, p)
	require.NoError(t, r.Check(ctx))

	t.Run("WritesFail", func(t *testing.T) {
		_, err := r.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`)})
		require.ErrorIs(t, err, bolt.ErrReadOnly)
		require.ErrorIs(t, r.SaveCheckpoint(ctx, "c", 2), bolt.ErrReadOnly)
		require.ErrorIs(t, r.SaveSnapshot(ctx, eventstore.Snapshot{AggregateID: "a", Version: 1, State: []byte("s")}), bolt.ErrReadOnly)
		require.ErrorIs(t, r.DeleteSnapshot(ctx, "a"), bolt.ErrReadOnly)
		_, err = r.AppendIf(ctx, eventstore.Condition{}, eventstore.Event{AggregateID: "b", Type: "T", Payload: []byte(`{}`)})
		require.ErrorIs(t, err, bolt.ErrReadOnly)
		e, err := eventstore.NewEvent("c", "T", 1)
		require.NoError(t, err)
		e.Version, e.Timestamp = 1, time.Now()
		_, err = r.Import(ctx, []eventstore.Event{e})
		require.ErrorIs(t, err, bolt.ErrReadOnly)
	})

	t.Run("ReadersShareWriterExcluded", func(t *testing.T) {
		r2, err := bolt.Open(path, &bolt.Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
		require.NoError(t, err, "a second reader must share the file")
		_, err = bolt.Open(path, &bolt.Options{Timeout: 100 * time.Millisecond})
		require.ErrorIs(t, err, eventstore.ErrLocked, "a writer must wait for the readers")
		require.NoError(t, r2.Close())
	})
	require.NoError(t, r.Close())
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after, "a read-only store changed the file")

	t.Run("WriterExcludesReaders", func(t *testing.T) {
		w, err := bolt.Open(path, nil)
		require.NoError(t, err)
		defer w.Close()
		_, err = bolt.Open(path, &bolt.Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
		require.ErrorIs(t, err, eventstore.ErrLocked)
	})

	t.Run("Missing", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "missing.db")
		_, err := bolt.Open(missing, &bolt.Options{ReadOnly: true})
		require.ErrorIs(t, err, fs.ErrNotExist)
		_, err = os.Stat(missing)
		require.ErrorIs(t, err, fs.ErrNotExist, "a read-only Open created the file")
	})
	t.Run("Empty", func(t *testing.T) {
		empty := filepath.Join(t.TempDir(), "empty.db")
		require.NoError(t, os.WriteFile(empty, nil, 0o600))
		_, err := bolt.Open(empty, &bolt.Options{ReadOnly: true})
		require.ErrorIs(t, err, eventstore.ErrUnknownFormat)
		fi, err := os.Stat(empty)
		require.NoError(t, err)
		require.Zero(t, fi.Size())
	})
}
