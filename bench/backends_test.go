package bench

import (
	"context"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
	"github.com/eventstore-go/eventstore/memory"
)

// backends are the columns of the results table, in order. postgres.go
// adds PostgreSQL.
var backends = []backend{
	{name: "memory", open: openMemory, append: true, replay: true, onHeap: true},
	{name: "bolt", open: openBolt(false), file: boltFile, append: true, replay: true},
	{name: "bolt-nowal", open: openBoltNoWAL, append: true},
	{name: "bolt-nosync", open: openBolt(true), append: true},
	postgresBackend,
	{name: "sqlite", open: openSQLiteBackend, file: sqliteFile, load: loadSQLite, append: true, replay: true},
	{name: "rawbolt", open: openRawBolt, file: rawBoltFile, load: loadRawBolt, append: true, replay: true},
	{name: "rawbolt-nosync", open: openRawBoltNoSync, append: true},
	{name: "rawbolt-grouped", open: openRawBolt, append: true, grouped: true},
}

func openMemory(testing.TB, bool, bool) *handle {
	return &handle{target: memory.New(nil)}
}

var fileSeq atomic.Int64

// newPath returns the path of a new file in workdir.
func newPath(name string) string {
	return filepath.Join(workdir, fmt.Sprintf("%s-%d.db", name, fileSeq.Add(1)))
}

// boltSize returns the bytes a closed bbolt file uses: its pages up to the
// high-water mark (the file itself is grown ahead in large steps).
func boltSize(path string) func() (int64, error) {
	return func() (int64, error) {
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			return 0, err
		}
		defer db.Close()
		var n int64
		err = db.View(func(tx *bbolt.Tx) error { n = tx.Size(); return nil })
		return n, err
	}
}

func removeFile(path string) func() { return func() { os.Remove(path) } }

// openBolt opens a bolt.Store; a fixture loads without fsync.
func openBolt(noSync bool) func(testing.TB, bool, bool) *handle {
	return func(tb testing.TB, _, forFixture bool) *handle {
		tb.Helper()
		path := newPath("bolt")
		s, err := bolt.Open(path, &bolt.Options{UnsafeNoSync: noSync || forFixture})
		if err != nil {
			tb.Fatal(err)
		}
		return &handle{target: s, size: boltSize(path), cleanup: func() { os.Remove(path); os.Remove(path + "-wal") }}
	}
}

// openBoltNoWAL opens a bolt.Store without the write-ahead log: each
// commit a synced bbolt commit.
func openBoltNoWAL(tb testing.TB, _, forFixture bool) *handle {
	tb.Helper()
	path := newPath("bolt-nowal")
	s, err := bolt.Open(path, &bolt.Options{UnsafeNoSync: forFixture, NoWAL: true})
	if err != nil {
		tb.Fatal(err)
	}
	return &handle{target: s, size: boltSize(path), cleanup: func() { os.Remove(path); os.Remove(path + "-wal") }}
}

// boltFile is bolt's fileBackend: a fixture file opened with the default
// (durable) options.
var boltFile = &fileBackend{
	path: func(h *handle) string { return h.target.(*bolt.Store).Path() },
	open: func(path string) (target, error) { return bolt.Open(path, nil) },
	size: boltSize,
}

func openRawBolt(tb testing.TB, concurrent, forFixture bool) *handle {
	tb.Helper()
	path := newPath("rawbolt")
	s, err := openRaw(path, forFixture, concurrent)
	if err != nil {
		tb.Fatal(err)
	}
	return &handle{target: s, size: boltSize(path), cleanup: removeFile(path)}
}

// release closes h, reports its disk-B/event for events stored events, and
// cleans up.
func release(b *testing.B, h *handle, events int) {
	b.Helper()
	if err := h.Close(); err != nil {
		b.Error(err)
	}
	if h.size != nil {
		n, err := h.size()
		if err != nil {
			b.Error(err)
		}
		reportDisk(b, n, events)
	}
	if h.cleanup != nil {
		h.cleanup()
	}
}

var background = context.Background()

// openRawBoltNoSync opens the baseline without fsync: bolt-nosync's
// counterpart, which measures the layer's CPU cost without the disk's.
func openRawBoltNoSync(tb testing.TB, concurrent, _ bool) *handle {
	tb.Helper()
	path := newPath("rawbolt")
	s, err := openRaw(path, true, concurrent)
	if err != nil {
		tb.Fatal(err)
	}
	return &handle{target: s, size: boltSize(path), cleanup: removeFile(path)}
}

// rawBoltFile is rawbolt's fileBackend: a fixture opened with fsync on.
var rawBoltFile = &fileBackend{
	path: func(h *handle) string { return h.target.(*rawStore).db.Path() },
	open: func(path string) (target, error) { return openRaw(path, false, false) },
	size: boltSize,
}

// loadRawBolt loads a fixture into the baseline, many calls per Update:
// each call is a rawAppend of its own, as if appended alone.
func loadRawBolt(_ testing.TB, h *handle, calls iter.Seq[[]eventstore.Event]) error {
	rs := h.target.(*rawStore)
	next, stop := iter.Pull(calls)
	defer stop()
	for more := true; more; {
		err := rs.db.Update(func(tx *bbolt.Tx) error {
			for n := 0; n < 10_000; {
				events, ok := next()
				if !ok {
					more = false
					return nil
				}
				if err := rawAppend(tx, events); err != nil {
					return err
				}
				n += len(events)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// openSQLiteBackend opens an empty sqlite store; a fixture loads with
// synchronous=OFF.
func openSQLiteBackend(tb testing.TB, _, forFixture bool) *handle {
	tb.Helper()
	path := newPath("sqlite")
	s, err := openSQLite(path, forFixture)
	if err != nil {
		tb.Fatal(err)
	}
	return &handle{target: s, size: sqliteSize(path), cleanup: func() {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(path + suffix)
		}
	}}
}

// sqliteFile is sqlite's fileBackend.
var sqliteFile = &fileBackend{
	path: func(h *handle) string { return h.target.(*sqliteStore).path },
	open: func(path string) (target, error) { return openSQLite(path, false) },
	size: sqliteSize,
}

func loadSQLite(_ testing.TB, h *handle, calls iter.Seq[[]eventstore.Event]) error {
	return h.target.(*sqliteStore).load(calls)
}
