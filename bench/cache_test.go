package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// The fixture cache keeps the replay fixtures of the file backends (bolt,
// rawbolt, sqlite) and PostgreSQL's across runs, so that `make bench`
// builds each once. It lives in $EVENTSTORE_BENCH_CACHE, by default
// os.UserCacheDir()/eventstore-bench (or $TMPDIR/eventstore-bench);
// EVENTSTORE_BENCH_CACHE=off turns it off. Delete the directory to empty it
// (and, for PostgreSQL, drop the schemas named benchfix_*).
//
// A fixture is keyed by a hash of the backend's name, the fixture's shape
// generator and loaders (fixtureSeed, activeAggs, genVersion,
// fixtureLayout) and the backend's
// format: for bolt and rawbolt, a fingerprint of what they write for a
// fixed sample (so a change of bolt's format or records misses the
// cache); for sqlite, sqliteSchemaVersion; for PostgreSQL, the text of its
// migrations. A file is copied out of the cache before it is opened: the
// cached copy is never modified. PostgreSQL's fixture is a schema the
// replay benchmarks only read.

// fixtureLayout is the version of the way fixtures are loaded (the
// backends' load functions): bump it when one changes what a loaded
// fixture holds or how its file is laid out. It is part of the cache key.
// 2: bolt loads one Append per call in order, no longer from 16
// goroutines, whose interleaved commits left its ids and timestamps
// buckets' pages 43% full.
const fixtureLayout = 2

// fileBackend says how a backend keeps a store in one file.
type fileBackend struct {
	path func(h *handle) string                  // the file of an open store
	open func(path string) (target, error)       // opens a file for the replay benchmarks
	size func(path string) func() (int64, error) // the bytes of a closed store
}

// serverCache keeps a server's fixtures across runs.
type serverCache struct {
	// get returns the handle of the fixture named key, or nil if there is
	// none.
	get func(tb testing.TB, key string) *handle
	// put makes the loaded h the fixture named key and returns its handle.
	put func(tb testing.TB, key string, h *handle) *handle
	// format is what the fixture's key holds of the backend's format.
	format func() string
}

// cacheDir returns the cache's directory, or "" when it is off.
func cacheDir() string {
	dir := os.Getenv("EVENTSTORE_BENCH_CACHE")
	switch dir {
	case "off":
		return ""
	case "":
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		dir = filepath.Join(base, "eventstore-bench")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ""
	}
	return dir
}

// fixtureKey names the fixture of shape sh on be in the cache.
func fixtureKey(tb testing.TB, be backend, sh shape) string {
	var format string
	switch {
	case be.fixtureCache != nil:
		format = be.fixtureCache.format()
	case be.name == "sqlite":
		format = fmt.Sprintf("sqlite schema %d", sqliteSchemaVersion)
	default:
		format = boltFingerprint(tb, be)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s|%+v|seed=%d|active=%d|gen=%d|layout=%d|%s", be.name, sh, fixtureSeed, activeAggs, genVersion, fixtureLayout, format)
	return hex.EncodeToString(h.Sum(nil))[:20]
}

var (
	fingerprintMu sync.Mutex
	fingerprints  = map[string]string{}
)

// boltFingerprint returns a hash of every key and value in a bbolt file
// that the backend wrote with a fixed sample of calls: it changes whenever
// what the backend writes changes.
func boltFingerprint(tb testing.TB, be backend) string {
	fingerprintMu.Lock()
	defer fingerprintMu.Unlock()
	if f, ok := fingerprints[be.name]; ok {
		return f
	}
	h := be.open(tb, false, true)
	path := be.file.path(h)
	g := newGen(7)
	ts := time.Date(2026, 2, 3, 4, 5, 6, 7000, time.UTC)
	for i := range 3 {
		if _, err := h.Append(background, g.next(fmt.Sprint("sample-", i%2), uint64(i/2*3), 3, ts)...); err != nil {
			tb.Fatalf("%s fingerprint: %v", be.name, err)
		}
	}
	if err := h.Close(); err != nil {
		tb.Fatal(err)
	}
	defer h.cleanup()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	sum := sha256.New()
	err = db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			fmt.Fprintf(sum, "bucket %q\n", name)
			return b.ForEach(func(k, v []byte) error {
				fmt.Fprintf(sum, "%x %x\n", k, v)
				return nil
			})
		})
	})
	if err != nil {
		tb.Fatal(err)
	}
	f := hex.EncodeToString(sum.Sum(nil))
	fingerprints[be.name] = f
	return f
}

// cachedFixture returns the backend's fixture of shape sh from the cache.
func cachedFixture(tb testing.TB, be backend, sh shape) (*handle, fixtureInfo, bool) {
	var info fixtureInfo
	dir := cacheDir()
	if dir == "" || (be.file == nil && be.fixtureCache == nil) {
		return nil, info, false
	}
	base := filepath.Join(dir, be.name+"-"+fixtureKey(tb, be, sh))
	b, err := os.ReadFile(base + ".json")
	if err != nil || json.Unmarshal(b, &info) != nil {
		return nil, info, false
	}
	if be.fixtureCache != nil {
		h := be.fixtureCache.get(tb, fixtureKey(tb, be, sh))
		return h, info, h != nil
	}
	path := newPath(be.name)
	if err := copyFile(base+".db", path); err != nil {
		os.Remove(path)
		return nil, info, false
	}
	t, err := be.file.open(path)
	if err != nil {
		tb.Fatalf("opening the cached %s fixture %s: %v", be.name, base+".db", err)
	}
	return &handle{target: t, size: be.file.size(path), cleanup: removeFile(path)}, info, true
}

// storeFixture turns the loaded store h into the one the replay benchmarks
// read, measures its size into info, and keeps it in the cache.
func storeFixture(tb testing.TB, be backend, sh shape, h *handle, info *fixtureInfo) *handle {
	dir := cacheDir()
	var base string
	if dir != "" && (be.file != nil || be.fixtureCache != nil) {
		base = filepath.Join(dir, be.name+"-"+fixtureKey(tb, be, sh))
	}
	switch {
	case be.file != nil:
		path := be.file.path(h)
		if err := h.Close(); err != nil {
			tb.Fatal(err)
		}
		n, err := be.file.size(path)()
		if err != nil {
			tb.Fatal(err)
		}
		info.Size = n
		if base != "" {
			tmp := fmt.Sprintf("%s.db.%d.tmp", base, os.Getpid())
			if err := copyFile(path, tmp); err != nil {
				tb.Logf("fixture cache: %v", err)
				base = ""
			} else if err := os.Rename(tmp, base+".db"); err != nil {
				tb.Logf("fixture cache: %v", err)
				base = ""
			}
		}
		t, err := be.file.open(path)
		if err != nil {
			tb.Fatal(err)
		}
		h = &handle{target: t, size: be.file.size(path), cleanup: h.cleanup}
	case be.fixtureCache != nil && base != "":
		h = be.fixtureCache.put(tb, fixtureKey(tb, be, sh), h)
		fallthrough
	default:
		if h.size != nil {
			n, err := h.size() // a server's size, read while open
			if err != nil {
				tb.Fatal(err)
			}
			info.Size = n
		}
	}
	if base != "" {
		b, err := json.Marshal(info)
		if err == nil {
			tmp := fmt.Sprintf("%s.json.%d.tmp", base, os.Getpid())
			if err = os.WriteFile(tmp, b, 0o644); err == nil {
				err = os.Rename(tmp, base+".json")
			}
		}
		if err != nil {
			tb.Logf("fixture cache: %v", err)
		}
	}
	return h
}

// copyFile copies the file src to dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
