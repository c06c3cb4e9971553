package bolt_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
	"github.com/eventstore-go/eventstore/storetest"
)

// MustOpen opens a store in a new file in a temporary directory, and checks
// the file's consistency and closes the store at the end of the test.
func MustOpen(tb testing.TB, opts *bolt.Options) *bolt.Store {
	tb.Helper()
	return MustOpenPath(tb, filepath.Join(tb.TempDir(), "events.db"), opts)
}

// MustOpenPath is MustOpen on the file at path.
func MustOpenPath(tb testing.TB, path string, opts *bolt.Options) *bolt.Store {
	tb.Helper()
	s, err := bolt.Open(path, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		// Check whatever the test left, unless it closed the store.
		if err := s.Check(context.Background()); err != nil && !isClosed(err) {
			tb.Errorf("check %s: %v", path, err)
		}
		if err := s.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts *bolt.Options
	}{
		{"durable", nil},
		{"NoWAL", &bolt.Options{NoWAL: true}},
		{"UnsafeNoSync", &bolt.Options{UnsafeNoSync: true}},
		{"ReadPageSize=3", &bolt.Options{UnsafeNoSync: true, ReadPageSize: 3}},
		{"NoCommitWait", &bolt.Options{UnsafeNoSync: true, MaxCommitWait: -1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) eventstore.Store { return MustOpen(t, tt.opts) })
		})
	}
}

func TestSnapshots(t *testing.T) {
	storetest.RunSnapshots(t, func(t *testing.T) eventstore.SnapshotStore { return MustOpen(t, nil) })
	t.Run("NoWAL", func(t *testing.T) {
		storetest.RunSnapshots(t, func(t *testing.T) eventstore.SnapshotStore { return MustOpen(t, &bolt.Options{NoWAL: true}) })
	})
}

func isClosed(err error) bool { return errors.Is(err, eventstore.ErrClosed) }

func TestRepository(t *testing.T) {
	storetest.RunRepository(t, func(t *testing.T) eventstore.SnapshottingStore { return MustOpen(t, nil) })
	t.Run("NoWAL", func(t *testing.T) {
		storetest.RunRepository(t, func(t *testing.T) eventstore.SnapshottingStore { return MustOpen(t, &bolt.Options{NoWAL: true}) })
	})
}

func TestPayloadLimit(t *testing.T) {
	storetest.RunPayloadLimit(t, func(t *testing.T, maxPayload int) eventstore.Store {
		return MustOpen(t, &bolt.Options{UnsafeNoSync: true, MaxPayloadSize: maxPayload})
	})
}
