package bolt

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
)

// TestStore_CloseAfterBreakDoesNotWait: an operation that entered the store
// and is blocked inside bbolt when bbolt breaks down (here one that never
// exits) must not keep Close waiting.
func TestStore_CloseAfterBreakDoesNotWait(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path, &Options{UnsafeNoSync: true})
	require.NoError(t, err)
	_, err = s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`)})
	require.NoError(t, err)

	require.NoError(t, s.enter()) // the blocked operation; it never exits

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	var hdr [32]byte
	_, err = f.ReadAt(hdr[:], 0)
	require.NoError(t, err)
	pageSize := int64(binary.NativeEndian.Uint32(hdr[16+8:]))
	for i := range int64(2) {
		_, err = f.WriteAt([]byte("DAMAGED!"), i*pageSize+16+56)
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())

	_, err = s.Version(ctx, "a")
	require.ErrorIs(t, err, eventstore.ErrNeedsReopen)

	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		require.ErrorIs(t, err, eventstore.ErrCorrupt)
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for an operation blocked inside a broken bbolt")
	}
}
