package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore/bolt"
	"github.com/eventstore-go/eventstore/memory"
)

// backends are the columns of the results table, in order. postgres.go
// adds PostgreSQL.
var backends = []backend{
	{name: "memory", open: openMemory, append: true, replay: true, onHeap: true},
	{name: "bolt", open: openBolt(false), reopen: reopenBolt, append: true, replay: true},
	{name: "bolt-nosync", open: openBolt(true), append: true},
	postgresBackend,
	{name: "rawbolt", open: openRawBolt, reopen: reopenRawBolt, append: true, replay: true},
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
		return &handle{target: s, size: boltSize(path), cleanup: removeFile(path)}
	}
}

// reopenBolt closes a loaded fixture and opens it with the default options.
func reopenBolt(tb testing.TB, h *handle) *handle {
	tb.Helper()
	path := h.target.(*bolt.Store).Path()
	if err := h.Close(); err != nil {
		tb.Fatal(err)
	}
	size, err := h.size()
	if err != nil {
		tb.Fatal(err)
	}
	s, err := bolt.Open(path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &handle{target: s, size: h.size, cleanup: h.cleanup, closedSize: size}
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

// reopenRawBolt closes a loaded fixture and opens it again with fsync on.
func reopenRawBolt(tb testing.TB, h *handle) *handle {
	tb.Helper()
	path := h.target.(*rawStore).db.Path()
	if err := h.Close(); err != nil {
		tb.Fatal(err)
	}
	size, err := h.size()
	if err != nil {
		tb.Fatal(err)
	}
	s, err := openRaw(path, false, false)
	if err != nil {
		tb.Fatal(err)
	}
	return &handle{target: s, size: h.size, cleanup: h.cleanup, closedSize: size}
}
