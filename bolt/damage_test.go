package bolt_test

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

// smallStore makes a closed store of a few events and returns its path.
func smallStore(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := bolt.Open(path, &bolt.Options{UnsafeNoSync: true})
	require.NoError(t, err)
	for i := range 20 {
		_, err := s.Append(context.Background(), eventstore.Event{AggregateID: "a" + string(rune('a'+i%3)), Type: "T", Payload: []byte(`{"x":1}`)})
		require.NoError(t, err)
	}
	require.NoError(t, s.Close())
	return path
}

// metaField reads a u64 field of meta page i (offset off after the page
// header) and the page size, from the file's bytes.
func metaField(raw []byte, i, off int) (value uint64, pageSize int) {
	pageSize = int(binary.NativeEndian.Uint32(raw[16+8:]))
	return binary.NativeEndian.Uint64(raw[i*pageSize+16+off:]), pageSize
}

// TestOpen_DamagedFreelistReleasesLock gives both metas' freelist pages the
// type of a leaf, on which bbolt.Open panics after it has locked the file:
// Open fails with ErrCorrupt every time, never ErrLocked.
func TestOpen_DamagedFreelistReleasesLock(t *testing.T) {
	path := smallStore(t)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	for i := range 2 {
		fl, pageSize := metaField(raw, i, 32)
		binary.NativeEndian.PutUint16(raw[int(fl)*pageSize+8:], 0x02)
	}
	require.NoError(t, os.WriteFile(path, raw, 0o600))
	for i := range 3 {
		s, err := bolt.Open(path, &bolt.Options{Timeout: 200 * time.Millisecond})
		if err == nil {
			s.Close()
			t.Fatalf("open %d: opened a file with a damaged freelist", i)
		}
		t.Logf("open %d: %v", i, err)
		require.ErrorIs(t, err, eventstore.ErrCorrupt, "open %d", i)
		require.NotErrorIs(t, err, eventstore.ErrLocked, "open %d", i)
	}
}

// damageMetas overwrites the checksums of both meta pages of the file at
// path, in place, while a store has it open.
func damageMetas(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	var hdr [32]byte
	_, err = f.ReadAt(hdr[:], 0)
	require.NoError(t, err)
	pageSize := int64(binary.NativeEndian.Uint32(hdr[16+8:]))
	for i := range int64(2) {
		_, err := f.WriteAt([]byte("DAMAGED!"), i*pageSize+16+56)
		require.NoError(t, err)
	}
}

// within runs fn and fails the test if it has not returned after d.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %v", what, d)
	}
}

// TestStore_MetasDamagedWhileOpen damages both meta pages of an open
// store's file: bbolt panics in Begin and keeps its locks. The store then
// fails every call fast with ErrNeedsReopen (and ErrCorrupt), Close
// returns, and the file is unlocked.
func TestStore_MetasDamagedWhileOpen(t *testing.T) {
	for _, first := range []string{"ReadAll", "Version", "Append", "SaveSnapshot"} {
		t.Run("first="+first, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "events.db")
			s, err := bolt.Open(path, &bolt.Options{UnsafeNoSync: true})
			require.NoError(t, err)
			_, err = s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`)})
			require.NoError(t, err)
			damageMetas(t, path)

			calls := map[string]func() error{
				"ReadAll": func() error { _, err := eventstore.Collect(s.ReadAll(ctx, 0)); return err },
				"Version": func() error { _, err := s.Version(ctx, "a"); return err },
				"Append": func() error {
					_, err := s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`)})
					return err
				},
				"SaveSnapshot": func() error {
					return s.SaveSnapshot(ctx, eventstore.Snapshot{AggregateID: "a", Version: 1, State: []byte("s")})
				},
				"ReadAggregate": func() error { _, err := eventstore.Collect(s.ReadAggregate(ctx, "a", 0)); return err },
				"Check":         func() error { return s.Check(ctx) },
				"LoadSnapshot":  func() error { _, err := s.LoadSnapshot(ctx, "a"); return err },
			}
			within(t, 10*time.Second, first, func() {
				err := calls[first]()
				t.Logf("%s: %v", first, err)
				require.ErrorIs(t, err, eventstore.ErrCorrupt, first)
			})
			for name, call := range calls {
				within(t, 10*time.Second, name, func() {
					err := call()
					require.ErrorIs(t, err, eventstore.ErrNeedsReopen, name)
					require.ErrorIs(t, err, eventstore.ErrCorrupt, name)
				})
			}
			within(t, 10*time.Second, "Close", func() {
				err := s.Close()
				t.Logf("Close: %v", err)
				require.ErrorIs(t, err, eventstore.ErrCorrupt)
			})
			// The lock is released: Open finds the damage, not a lock.
			_, err = bolt.Open(path, &bolt.Options{Timeout: 200 * time.Millisecond})
			require.ErrorIs(t, err, eventstore.ErrCorrupt)
			require.NotErrorIs(t, err, eventstore.ErrLocked)
		})
	}
}

// TestOpen_SmallForeignFile opens files under 4 KiB that are not bbolt's:
// ErrUnknownFormat. An empty file becomes a new store.
func TestOpen_SmallForeignFile(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for name, content := range map[string][]byte{
		"json":        []byte(`{"a":1}`),
		"newline":     []byte("\n"),
		"random100":   random(100),
		"random4095":  random(4095),
		"zeros4095":   make([]byte, 4095),
		"zeros100":    make([]byte, 100),
		"text2000":    []byte(strings.Repeat("not a database\n", 133)),
		"random10000": random(10000),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.db")
			require.NoError(t, os.WriteFile(path, content, 0o600))
			s, err := bolt.Open(path, nil)
			if err == nil {
				s.Close()
				t.Fatal("opened a file that is not an event store")
			}
			t.Log(err)
			require.ErrorIs(t, err, eventstore.ErrUnknownFormat)
			got, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, content, got, "Open changed the file")
		})
	}
	t.Run("empty", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "events.db")
		require.NoError(t, os.WriteFile(path, nil, 0o600))
		s := MustOpenPath(t, path, nil)
		_, err := s.Append(context.Background(), eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`)})
		require.NoError(t, err)
	})
}

// TestOpen_ErrLockedSaysWhy: the error of an Open that waited for the lock
// in vain says what holds it and what to do.
func TestOpen_ErrLockedSaysWhy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	MustOpenPath(t, path, nil)
	s, err := bolt.Open(path, &bolt.Options{Timeout: 100 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("opened a locked file")
	}
	t.Log(err)
	require.ErrorIs(t, err, eventstore.ErrLocked)
	require.True(t, errors.Is(err, eventstore.ErrLocked))
	for _, want := range []string{path, "another process", "has this file open", "close it", "waited 100ms"} {
		require.Contains(t, err.Error(), want)
	}
	require.NotContains(t, err.Error(), "timeout")
}
