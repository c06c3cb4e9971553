package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
)

var walOpts = &Options{}

// crashCopy copies the store's file and its log, as a process killed now
// would leave them (the page cache), to dir, and returns the copy's path.
func crashCopy(t *testing.T, path, dir string) string {
	t.Helper()
	dst := filepath.Join(dir, filepath.Base(path))
	for _, suffix := range []string{"", walSuffix} {
		data, err := os.ReadFile(path + suffix)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(dst+suffix, data, 0o600))
	}
	return dst
}

// crashedStore makes a store with the log, appends n events to it (see
// appendN), and returns its path, closed, and that of a copy taken before
// Close (see crashCopy): a crashed store whose log holds the events.
func crashedStore(t *testing.T, n int) (path, crashed string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path, walOpts)
	require.NoError(t, err)
	appendN(t, s, n, 0)
	crashed = crashCopy(t, path, t.TempDir())
	require.NoError(t, s.Close())
	return path, crashed
}

// walEnd returns where the store's next log record goes.
func walEnd(s *Store) int64 {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.wal.end
}

// requireEvents opens the store at path (WAL on), checks it, and requires
// its events to be positions 1..n with the payloads appendN gave them.
func requireEvents(t *testing.T, path string, n int, why string) {
	t.Helper()
	ctx := context.Background()
	s, err := Open(path, walOpts)
	require.NoError(t, err, why)
	defer s.Close()
	require.NoError(t, s.Check(ctx), why)
	got, err := eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err, why)
	require.Equal(t, n, len(got), why)
	for i, e := range got {
		require.Equal(t, uint64(i+1), e.Position, why)
		require.Equal(t, fmt.Sprintf(`{"n":%d}`, i+1), string(e.Payload[:strings.IndexByte(string(e.Payload), '}')+1]), why)
	}
	_, err = os.Stat(path + walSuffix)
	require.ErrorIs(t, err, os.ErrNotExist, "%s: Open left the log", why)
}

// appendN appends k events in one call, numbered on from the store's head,
// with payloads of pad bytes more.
func appendN(t *testing.T, s *Store, k, pad int) {
	t.Helper()
	ctx := context.Background()
	head, err := s.Head(ctx)
	require.NoError(t, err)
	events := make([]eventstore.Event, k)
	for i := range events {
		events[i] = eventstore.Event{
			AggregateID: fmt.Sprintf("agg-%d", int(head)%7),
			Type:        "T",
			Payload:     []byte(fmt.Sprintf(`{"n":%d}%s`, int(head)+i+1, strings.Repeat(" ", pad))),
			Tags:        []string{fmt.Sprintf("t%d", (int(head)+i)%3)},
		}
	}
	_, err = s.Append(ctx, events...)
	require.NoError(t, err)
}

func TestWAL_OneFileAtRest(t *testing.T) {
	requireWAL(t)
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "events.db")
	s, err := Open(path, walOpts)
	require.NoError(t, err)
	_, err = os.Stat(path + walSuffix)
	require.ErrorIs(t, err, os.ErrNotExist, "Open created the log before a write")
	appendN(t, s, 3, 0)
	fi, err := os.Stat(path + walSuffix)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	require.NoError(t, s.SaveCheckpoint(ctx, "c", 3))
	appendN(t, s, 2, 0)
	require.NoError(t, s.Close())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "Close left %v", entries)

	// Without the log the file is whole: it opens read-only, and with the
	// log off.
	r, err := Open(path, &Options{ReadOnly: true})
	require.NoError(t, err)
	require.NoError(t, r.Check(ctx))
	got, err := eventstore.Collect(r.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Len(t, got, 5)
	require.NoError(t, r.Close())
}

// fileFormat reads the format key of the bbolt file at path.
func fileFormat(t *testing.T, path string) string {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	var format string
	require.NoError(t, db.View(func(tx *bbolt.Tx) error {
		format = string(tx.Bucket(bucketMeta).Get(keyFormat))
		return nil
	}))
	return format
}

// TestWAL_MarksTheFile: while a log exists, the file's format is one that
// versions of this package without the log refuse (they accept exactly
// formats 1 and 2, and every version that knows format 3 knows the log),
// so that none reads a file a crash left without replaying its log; a
// clean Close, and an Open that replays a log, put format 3 back.
func TestWAL_MarksTheFile(t *testing.T) {
	requireWAL(t)
	path, dst := crashedStore(t, 2)
	require.Equal(t, string(formatV3), fileFormat(t, path), "after Close")

	crashed := fileFormat(t, dst)
	require.NotEqual(t, string(formatV1), crashed)
	require.NotEqual(t, string(formatV2), crashed)
	require.NotEqual(t, string(formatV3), crashed)
	require.True(t, strings.HasPrefix(crashed, string(formatPrefix)), "format %q", crashed)

	requireEvents(t, dst, 2, "recovered") // opens, replays, closes
	require.Equal(t, string(formatV3), fileFormat(t, dst), "after recovery")
}

// TestWAL_MarkWithoutLog: a crash after Close removed the log but before
// it put format 3 back leaves a marked file that holds every commit. A
// read-only Open reads it as it is; a read-write Open clears the mark. The
// same holds for the mark that versions writing format 2 set.
func TestWAL_MarkWithoutLog(t *testing.T) {
	for _, mark := range [][]byte{formatLogged, formatLoggedV2} {
		t.Run(string(mark), func(t *testing.T) { testMarkWithoutLog(t, mark) })
	}
}

func testMarkWithoutLog(t *testing.T, mark []byte) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path, walOpts)
	require.NoError(t, err)
	appendN(t, s, 3, 0)
	require.NoError(t, s.Close())
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, mark) }))
	require.NoError(t, db.Close())
	require.Equal(t, string(mark), fileFormat(t, path))

	ro, err := Open(path, &Options{ReadOnly: true})
	require.NoError(t, err)
	got, err := eventstore.Collect(ro.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.NoError(t, ro.Close())
	require.Equal(t, string(mark), fileFormat(t, path), "a read-only Open changed the file")

	requireEvents(t, path, 3, "read-write Open")
	require.Equal(t, string(formatV3), fileFormat(t, path), "after a read-write Open")
}

// TestWAL_BackupCarriesMark: a backup taken while the log exists carries
// the file's mark, as Backup's doc says; the copy is complete, and a
// read-write Open of it clears the mark.
func TestWAL_BackupCarriesMark(t *testing.T) {
	requireWAL(t)
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path, walOpts)
	require.NoError(t, err)
	defer s.Close()
	appendN(t, s, 4, 0)
	dst := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(dst)
	require.NoError(t, err)
	_, err = s.Backup(context.Background(), f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Equal(t, string(formatLogged), fileFormat(t, dst))
	requireEvents(t, dst, 4, "backup")
	require.Equal(t, string(formatV3), fileFormat(t, dst), "after a read-write Open")
}

// TestWAL_Recovery replays the log of a killed store (a copy of its files
// while it is open), read-only refused first; and the updates that are
// not in the log (a checkpoint, a snapshot) are in the base.
func TestWAL_Recovery(t *testing.T) {
	requireWAL(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path, walOpts)
	require.NoError(t, err)
	defer s.Close()
	appendN(t, s, 2, 0)
	require.NoError(t, s.SaveCheckpoint(ctx, "c", 2))
	require.NoError(t, s.SaveSnapshot(ctx, eventstore.Snapshot{AggregateID: "agg-1", Version: 1, State: []byte("s")}))
	appendN(t, s, 3, 0)
	appendN(t, s, 1, 0)

	dst := crashCopy(t, path, t.TempDir())
	_, err = Open(dst, &Options{ReadOnly: true})
	require.ErrorIs(t, err, ErrNeedsRecovery)
	requireEvents(t, dst, 6, "recovered")
	r, err := Open(dst, &Options{ReadOnly: true})
	require.NoError(t, err)
	defer r.Close()
	p, err := r.LoadCheckpoint(ctx, "c")
	require.NoError(t, err)
	require.Equal(t, uint64(2), p)
	_, err = r.LoadSnapshot(ctx, "agg-1")
	require.NoError(t, err)
}

// TestWAL_UpdateMovesBase: a write that the log does not hold (here a
// checkpoint) returns only once the log's base holds it, so that no crash
// restores a base without it.
func TestWAL_UpdateMovesBase(t *testing.T) {
	requireWAL(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path, walOpts)
	require.NoError(t, err)
	defer s.Close()
	appendN(t, s, 2, 0)
	for i := range 3 {
		require.NoError(t, s.SaveCheckpoint(ctx, "c", uint64(i)))
		data, err := os.ReadFile(path + walSuffix)
		require.NoError(t, err)
		h, payloads, _, err := decodeWal(data)
		require.NoError(t, err)
		require.Empty(t, payloads)
		m, err := parseMeta(h.meta[:])
		require.NoError(t, err)
		require.NoError(t, s.view(func(tx *bbolt.Tx) error {
			require.Equal(t, uint64(tx.ID()), m.txid, "the log's base is not the checkpoint's commit")
			return nil
		}))
	}
}

// TestWAL_IdleCheckpoint: walIdle after the last commit, the file is
// synced and the log starts over.
func TestWAL_IdleCheckpoint(t *testing.T) {
	requireWAL(t)
	defer func(d time.Duration) { walIdle = d }(walIdle)
	walIdle = 50 * time.Millisecond
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path, walOpts)
	require.NoError(t, err)
	defer s.Close()
	appendN(t, s, 2, 0)
	require.Greater(t, walEnd(s), int64(walRecordsStart))
	deadline := time.Now().Add(30 * time.Second)
	for walEnd(s) != walRecordsStart {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint 30s after the last commit")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.wmu.Lock()
	dirty := s.wal.dirty
	s.wmu.Unlock()
	require.False(t, dirty)
}

// TestWAL_PowerLoss cuts the log of an open store at every record boundary
// and inside records, as a power loss might leave it: truncated, or with
// the bytes of the generation before behind the cut. The store's file is
// taken three ways: as it is (every write of the commits after the base
// landed), as at the base (none landed), and with every page changed since
// the base overwritten with garbage (torn writes, which also proves that
// the base's pages were never written over). Each time, Open must find the
// events of the records before the cut and nothing else, and Check pass.
func TestWAL_PowerLoss(t *testing.T) {
	requireWAL(t)
	// No checkpoint but the test's: the records' offsets must hold.
	defer func(d time.Duration) { walIdle = d }(walIdle)
	walIdle = time.Hour
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "events.db")
	s, err := Open(path, walOpts)
	require.NoError(t, err)
	defer s.Close()

	// Generation 1: many records, that generation 2 leaves behind it.
	for i := range 12 {
		appendN(t, s, 1+i%4, 40*i)
	}
	oldLog, err := os.ReadFile(path + walSuffix)
	require.NoError(t, err)
	require.NoError(t, s.SaveCheckpoint(ctx, "c", 1)) // a checkpoint: the base
	base, err := os.ReadFile(path)
	require.NoError(t, err)
	head, err := s.Head(ctx)
	require.NoError(t, err)

	// Generation 2: the records to cut.
	counts := []int{int(head)}
	ends := []int64{walRecordsStart}
	for i := range 6 {
		appendN(t, s, 1+i%3, 100*i)
		if i%2 == 0 {
			// A read commits the held transaction to the file:
			// some records' events reach the file before the
			// crash, the others only the log.
			_, err := s.Version(ctx, "agg-0")
			require.NoError(t, err)
		}
		h, err := s.Head(ctx)
		require.NoError(t, err)
		counts = append(counts, int(h))
		ends = append(ends, walEnd(s))
	}
	cur, err := os.ReadFile(path)
	require.NoError(t, err)
	log, err := os.ReadFile(path + walSuffix)
	require.NoError(t, err)
	require.Greater(t, len(oldLog), int(ends[len(ends)-1]), "generation 1 must reach beyond generation 2")

	ps := s.boltPageSize
	torn := bytes.Clone(cur)
	changed := 0
	for off := 2 * ps; off < len(torn); off += ps {
		if off+ps > len(base) || !bytes.Equal(torn[off:off+ps], base[off:off+ps]) {
			for i := off; i < off+ps && i < len(torn); i++ {
				torn[i] = 0xAA
			}
			changed++
		}
	}
	require.NotZero(t, changed)

	files := map[string][]byte{"as-is": cur, "base": base, "torn": torn}
	for i := 1; i < len(ends); i++ {
		start, end := ends[i-1], ends[i]
		for _, cut := range []int64{start, start + 1, start + walRecordHeader, (start + end) / 2, end - 1} {
			for _, stale := range []bool{false, true} {
				cutLog := bytes.Clone(log[:cut])
				if stale {
					cutLog = append(cutLog, oldLog[cut:]...)
				}
				for name, file := range files {
					why := fmt.Sprintf("record %d, cut at %d (stale=%v), file %s", i, cut, stale, name)
					d := t.TempDir()
					p := filepath.Join(d, "events.db")
					require.NoError(t, os.WriteFile(p, file, 0o600))
					require.NoError(t, os.WriteFile(p+walSuffix, cutLog, 0o600))
					want := counts[i-1]
					if cut == end {
						want = counts[i]
					}
					requireEvents(t, p, want, why)
				}
			}
		}
	}
	// The whole log: every acknowledged event.
	for name, file := range files {
		d := t.TempDir()
		p := filepath.Join(d, "events.db")
		require.NoError(t, os.WriteFile(p, file, 0o600))
		require.NoError(t, os.WriteFile(p+walSuffix, log, 0o600))
		requireEvents(t, p, counts[len(counts)-1], "whole log, file "+name)
	}
}

// TestWAL_GrowsAcrossRemaps grows a store in log mode from bbolt's
// smallest memory map across several remaps, which wait for every read
// transaction, the pin included: each must drop the pin first (mayRemap)
// or, when that guess is off, the watchdog must. Neither may hang.
func TestWAL_GrowsAcrossRemaps(t *testing.T) {
	requireWAL(t)
	for _, guess := range []bool{true, false} {
		t.Run(fmt.Sprintf("guess=%v", guess), func(t *testing.T) {
			defer func(m int, g bool, d time.Duration) {
				walInitialMmapSize, walGuessRemap, walPinTimeout = m, g, d
			}(walInitialMmapSize, walGuessRemap, walPinTimeout)
			walInitialMmapSize, walGuessRemap = 0, guess
			walPinTimeout = 50 * time.Millisecond

			path := filepath.Join(t.TempDir(), "events.db")
			s, err := Open(path, walOpts)
			require.NoError(t, err)
			// Not closed on failure: Close would wait for the
			// append that hangs.
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range 40 {
					appendN(t, s, 3, 100<<10)
				}
			}()
			select {
			case <-done:
			case <-time.After(3 * time.Minute):
				t.Fatal("appends hang while the file grows")
			}
			fi, err := os.Stat(path)
			require.NoError(t, err)
			require.Greater(t, fi.Size(), int64(8<<20))
			require.NoError(t, s.Check(context.Background()))
			dst := crashCopy(t, path, t.TempDir())
			require.NoError(t, s.Close())
			requireEvents(t, dst, 120, "after growth")
		})
	}
}

// TestWAL_HeldCommits: with the log, group commits share bbolt
// transactions (an append is acknowledged once its record is synced, and
// bbolt commits many of them at once), yet every read sees every
// acknowledged append at once, and a read-only Open after Close finds them
// all in the file.
func TestWAL_HeldCommits(t *testing.T) {
	requireWAL(t)
	defer func(d time.Duration) { walIdle = d }(walIdle)
	walIdle = time.Hour // no idle checkpoint commits the held transaction
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path, walOpts)
	require.NoError(t, err)
	commits := countCommits(s)
	const n = 200
	for i := range n {
		_, err := s.Append(ctx, eventstore.Event{AggregateID: fmt.Sprintf("a%d", i%5), Type: "T", Payload: []byte(fmt.Sprintf(`{"n":%d}`, i+1))})
		require.NoError(t, err)
	}
	require.LessOrEqual(t, commits.Load(), int64(n/walHoldGroups+1), "appends without reads between them did not share bbolt commits")

	// A read after each append sees it.
	for i := n; i < n+20; i++ {
		stored, err := s.Append(ctx, eventstore.Event{AggregateID: "a0", Type: "T", Payload: []byte(fmt.Sprintf(`{"n":%d}`, i+1))})
		require.NoError(t, err)
		got, err := eventstore.Collect(s.ReadAggregate(ctx, "a0", 0))
		require.NoError(t, err)
		require.Equal(t, stored[0], got[len(got)-1])
		v, err := s.Version(ctx, "a0")
		require.NoError(t, err)
		require.Equal(t, stored[0].Version, v)
	}
	all, err := eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Len(t, all, n+20)
	require.NoError(t, s.Check(ctx))
	require.NoError(t, s.Close())

	r, err := Open(path, &Options{ReadOnly: true})
	require.NoError(t, err)
	defer r.Close()
	again, err := eventstore.Collect(r.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Equal(t, all, again)
}

// TestWAL_FailedHeldCommit fails the bbolt commit of appends that the log
// acknowledged (an error after the write reached the file, one before,
// and a panic): nothing acknowledged is lost. Reads and writes fail with
// ErrNeedsReopen instead of answering without those events, and a reopen
// replays them from the log, so that a retry of the same events finds them
// stored.
func TestWAL_FailedHeldCommit(t *testing.T) {
	requireWAL(t)
	defer func(d time.Duration) { walIdle = d }(walIdle)
	walIdle = time.Hour // no idle checkpoint commits the held transaction
	for _, fault := range []string{"error-written", "error-unwritten", "panic"} {
		t.Run(fault, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "events.db")
			s, err := Open(path, walOpts)
			require.NoError(t, err)
			first, err := s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`1`)})
			require.NoError(t, err)
			var failed atomic.Bool
			fail := failingCommit(fault == "error-written")
			s.commit = func(tx *bbolt.Tx) error {
				failed.Store(true)
				if fault == "panic" {
					panic("boom")
				}
				return fail(tx)
			}
			events := []eventstore.Event{
				{ID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", AggregateID: "a", Type: "T", Payload: []byte(`2`)},
				{ID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c", AggregateID: "a", Type: "T", Payload: []byte(`3`)},
			}
			stored, err := s.Append(ctx, events...)
			require.NoError(t, err, "the log synced the record: the append is acknowledged")
			require.False(t, failed.Load(), "the fault is not reached: bbolt committed before the read")

			_, err = eventstore.Collect(s.ReadAll(ctx, 0))
			require.ErrorIs(t, err, eventstore.ErrNeedsReopen, "a read answered without acknowledged events")
			require.True(t, failed.Load())
			_, err = s.Version(ctx, "a")
			require.ErrorIs(t, err, eventstore.ErrNeedsReopen)
			_, err = s.Append(ctx, eventstore.Event{AggregateID: "b", Type: "T", Payload: []byte(`4`)})
			require.ErrorIs(t, err, eventstore.ErrNeedsReopen)
			require.ErrorIs(t, s.SaveSnapshot(ctx, eventstore.Snapshot{AggregateID: "a", Version: 1}), eventstore.ErrNeedsReopen)
			require.NoError(t, s.Close()) // the writer lock was released

			s, err = Open(path, walOpts)
			require.NoError(t, err)
			defer s.Close()
			all, err := eventstore.Collect(s.ReadAll(ctx, 0))
			require.NoError(t, err)
			require.Equal(t, append(first, stored...), all)
			again, err := s.Append(ctx, events...)
			require.NoError(t, err)
			require.Equal(t, stored, again, "the retry did not find the events stored")
			require.NoError(t, s.Check(ctx))
		})
	}
}
