package storetest

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
)

// RunCheckpoints runs the conformance tests of eventstore.CheckpointStore
// against the stores newStore returns, one fresh, empty store per subtest;
// newStore registers its own cleanup with t.Cleanup. The store must be
// closed by Close, which the tests call.
//
//	func TestCheckpoints(t *testing.T) {
//		storetest.RunCheckpoints(t, func(t *testing.T) storetest.CheckpointingStore { return mustOpen(t) })
//	}
func RunCheckpoints(t *testing.T, newStore func(t *testing.T) CheckpointingStore) {
	t.Helper()
	for _, tt := range []struct {
		name string
		fn   func(t *testing.T, s CheckpointingStore)
	}{
		{"LoadNone", testCheckpointLoadNone},
		{"RoundTrip", testCheckpointRoundTrip},
		{"Backwards", testCheckpointBackwards},
		{"Names", testCheckpointNames},
		{"InvalidNames", testCheckpointInvalidNames},
		{"Concurrent", testCheckpointConcurrent},
		{"ContextCanceled", testCheckpointContextCanceled},
		{"Closed", testCheckpointClosed},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// CheckpointingStore is what RunCheckpoints tests: checkpoints, and Close.
type CheckpointingStore interface {
	eventstore.CheckpointStore
	Close() error
}

func mustLoadCheckpoint(t *testing.T, s eventstore.CheckpointStore, name string) uint64 {
	t.Helper()
	p, err := s.LoadCheckpoint(context.Background(), name)
	require.NoError(t, err, "LoadCheckpoint(%q)", name)
	return p
}

func mustSaveCheckpoint(t *testing.T, s eventstore.CheckpointStore, name string, p uint64) {
	t.Helper()
	require.NoError(t, s.SaveCheckpoint(context.Background(), name, p), "SaveCheckpoint(%q, %d)", name, p)
}

func testCheckpointLoadNone(t *testing.T, s CheckpointingStore) {
	require.Zero(t, mustLoadCheckpoint(t, s, "never-saved"))
}

func testCheckpointRoundTrip(t *testing.T, s CheckpointingStore) {
	for _, p := range []uint64{1, 42, math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64} {
		mustSaveCheckpoint(t, s, "p", p)
		require.Equal(t, p, mustLoadCheckpoint(t, s, "p"))
	}
}

func testCheckpointBackwards(t *testing.T, s CheckpointingStore) {
	mustSaveCheckpoint(t, s, "rebuilt", 100)
	mustSaveCheckpoint(t, s, "rebuilt", 7)
	require.Equal(t, uint64(7), mustLoadCheckpoint(t, s, "rebuilt"), "a save moves a checkpoint backwards")
	mustSaveCheckpoint(t, s, "rebuilt", 0)
	require.Zero(t, mustLoadCheckpoint(t, s, "rebuilt"), "a rebuild resets it to 0")
	mustSaveCheckpoint(t, s, "rebuilt", 3)
	require.Equal(t, uint64(3), mustLoadCheckpoint(t, s, "rebuilt"))
}

func testCheckpointNames(t *testing.T, s CheckpointingStore) {
	names := []string{"a", "A", "a ", "projection/orders", "rm:orders", "ünïcödé ✓", "'; DROP TABLE x; --", strings.Repeat("n", eventstore.MaxNameLength)}
	for i, name := range names {
		mustSaveCheckpoint(t, s, name, uint64(i+1))
	}
	for i, name := range names {
		require.Equal(t, uint64(i+1), mustLoadCheckpoint(t, s, name), "checkpoint %q", name)
	}
}

func testCheckpointInvalidNames(t *testing.T, s CheckpointingStore) {
	ctx := context.Background()
	for _, name := range []string{"", strings.Repeat("n", eventstore.MaxNameLength+1), "nul\x00byte", "bad\xffutf8"} {
		err := s.SaveCheckpoint(ctx, name, 1)
		require.ErrorIs(t, err, eventstore.ErrInvalidCheckpoint, "SaveCheckpoint(%q)", name)
		var ice *eventstore.InvalidCheckpointError
		require.ErrorAs(t, err, &ice)
		require.Equal(t, name, ice.Name)
		_, err = s.LoadCheckpoint(ctx, name)
		require.ErrorIs(t, err, eventstore.ErrInvalidCheckpoint, "LoadCheckpoint(%q)", name)
	}
}

func testCheckpointConcurrent(t *testing.T, s CheckpointingStore) {
	const workers, saves = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			name := fmt.Sprint("worker-", w)
			for i := 1; i <= saves; i++ {
				if err := s.SaveCheckpoint(context.Background(), name, uint64(i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for w := range workers {
		require.Equal(t, uint64(saves), mustLoadCheckpoint(t, s, fmt.Sprint("worker-", w)))
	}
}

func testCheckpointContextCanceled(t *testing.T, s CheckpointingStore) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, s.SaveCheckpoint(ctx, "c", 5), context.Canceled)
	_, err := s.LoadCheckpoint(ctx, "c")
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, mustLoadCheckpoint(t, s, "c"), "a cancelled save wrote")
}

func testCheckpointClosed(t *testing.T, s CheckpointingStore) {
	mustSaveCheckpoint(t, s, "c", 5)
	require.NoError(t, s.Close())
	require.ErrorIs(t, s.SaveCheckpoint(context.Background(), "c", 6), eventstore.ErrClosed)
	_, err := s.LoadCheckpoint(context.Background(), "c")
	require.ErrorIs(t, err, eventstore.ErrClosed)
}
