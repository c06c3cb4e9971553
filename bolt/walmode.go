package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/index"
	bbolt "go.etcd.io/bbolt"
)

// This file runs the write-ahead log (see "Write-ahead log" in the package
// doc; wal.go holds its format). In short:
//
//   - A group commit writes its events to the log as one record and
//     fdatasyncs the log: the log is what makes it durable. Its bbolt
//     transaction stays open (walState.held) for the next group commits
//     to join, and is committed without bbolt's fsyncs (db.NoSync) at a
//     limit (holdLimit), before a read (syncHeld), before any other write
//     transaction, and before a checkpoint, which must never make a base
//     that lacks an acknowledged record it drops.
//   - The log's header holds a copy of a meta page whose pages are on the
//     disk: the base. After a crash, Open writes that meta back into the
//     file's meta pages, so that bbolt sees the base, and replays the
//     records on top of it.
//   - The base's pages must survive until the next base: a read
//     transaction on the base (the pin) keeps bbolt from reusing them
//     (bbolt never frees a page that an open read transaction reaches).
//   - A checkpoint fdatasyncs the file and makes the current state the new
//     base, in the other header slot with the next generation.
//
// The pin holds bbolt's mmap lock for reading, so a commit that must grow
// the memory map would wait for it forever: a commit that might grow the
// map (see mayRemap) drops the pin first, and a watchdog drops it if a
// commit takes longer than walPinTimeout all the same. A commit without a
// pin is followed by a checkpoint before the next write transaction
// begins, which is what keeps the base's pages safe: bbolt releases freed
// pages only when a write transaction begins.

// ErrNeedsRecovery reports a read-only Open of a file whose write-ahead log
// holds commits that the file may lack: a writable Store left it behind
// when it crashed (or lost its disk). Open the file once without
// Options.ReadOnly to replay the log.
var ErrNeedsRecovery = errors.New("bolt: log needs recovery")

// Tunables of the log; tests change some of them.
var (
	// walLimit is the size of the log that makes a commit checkpoint.
	walLimit int64 = 16 << 20

	// walMaxCommits is the number of commits since the last checkpoint
	// that makes a commit checkpoint. While the pin holds the base, the
	// pages that commits free cannot be reused: they stay pending, and
	// bbolt writes every pending page's id in the freelist of every
	// commit, so that the cost of a commit grows with the commits since
	// the checkpoint (and the file with their pages). Without this bound,
	// a single writer's commits slowed down thirteenfold.
	walMaxCommits = 128

	// walMaxGrowth is how far the file's pages may grow past the base's
	// before a commit checkpoints, for the same reason: most of the pages
	// of commits since the checkpoint come from the end of the file.
	walMaxGrowth int64 = 4 << 20

	// walHoldGroups and walHoldBytes bound the group commits that one
	// held bbolt transaction gathers (see flushHeld): past either, the
	// group commit that reaches it commits the transaction.
	walHoldGroups       = 64
	walHoldBytes  int64 = 8 << 20

	// walIdle is how long after the last commit that the file lacks a
	// checkpoint runs.
	walIdle = time.Second

	// walInitialMmapSize is bbolt's InitialMmapSize in log mode: a large
	// map rarely needs to grow.
	walInitialMmapSize = defaultWalMmap

	// walPinTimeout is how long a commit may run before the watchdog
	// drops the pin (see mayRemap).
	walPinTimeout = 250 * time.Millisecond

	// walGuessRemap turns mayRemap on; tests turn it off to exercise the
	// watchdog.
	walGuessRemap = true

	// testNoWAL turns the log off by default, so that the tests run once
	// in each mode (export_test.go).
	testNoWAL bool
)

// defaultWalMmap is 1 GiB where the address space has room for it.
const defaultWalMmap = int(1 << 30 * (^uint(0) >> 63)) // 0 on 32-bit systems

// walState is the write-ahead log of a store. Every field but the pin, the
// tail (which has a lock of its own) and the atomics is guarded by
// Store.wmu.
type walState struct {
	path string
	dir  string

	// f is the open log, nil while there is none: then the store's file
	// holds every commit durably, and the first write creates the log.
	f    *os.File
	gen  uint64
	slot int   // of the current header
	end  int64 // where the next record goes

	// dirty is set by a commit that the file has not synced; commits
	// counts the commits since the last checkpoint.
	dirty   bool
	commits int
	// baseSize is the size of the base's pages (bbolt's high water
	// mark), size that of the last commit's when it began.
	baseSize, size int64
	idle           *time.Timer // checkpoints walIdle after the last commit
	buf            []byte      // a record's buffer, reused

	pinMu sync.Mutex
	pin   *bbolt.Tx // the read transaction on the base, nil once dropped

	// held is the write transaction that holds the group commits whose
	// records the log has synced (they are acknowledged) but that bbolt
	// has not committed yet, nil when there are none; heldW is its writer,
	// heldGroups, heldBytes and heldKeys count its commits, their records'
	// bytes and their keys (see holdLimit and flushHeld).
	held                            *bbolt.Tx
	heldW                           *writer
	heldGroups, heldBytes, heldKeys int

	// pending is set while held is: a read must have held committed
	// first (see Store.syncHeld). lost is set when held failed to commit
	// or was rolled back: the file then lacks acknowledged events that
	// the log holds, and every read fails with it until the store is
	// reopened (Open replays the log).
	pending atomic.Bool
	lost    atomic.Pointer[error]

	// tail holds the group commits of held for live subscriptions (see
	// tail.go).
	tail liveTail
}

// markLost records that the held transaction never reached bbolt, for
// why; it poisons the store. It returns the error that reads and writes
// give from now on.
func (s *Store) markLost(why error) error {
	s.poisoned.Store(true)
	err := fmt.Errorf("%w: acknowledged appends that the log holds failed to reach the file; Open replays them: %w", errNeedsReopen, why)
	s.wal.lost.CompareAndSwap(nil, &err)
	return *s.wal.lost.Load()
}

// setPin makes tx the pin, and rolls back the one before.
func (l *walState) setPin(tx *bbolt.Tx) {
	l.pinMu.Lock()
	old := l.pin
	l.pin = tx
	l.pinMu.Unlock()
	if old != nil {
		_ = old.Rollback()
	}
}

// dropPin rolls back the pin: a write transaction may then grow bbolt's
// memory map. The base's pages stay safe only if a checkpoint follows
// before the next write transaction begins.
func (l *walState) dropPin() { l.setPin(nil) }

func (l *walState) pinned() bool {
	l.pinMu.Lock()
	defer l.pinMu.Unlock()
	return l.pin != nil
}

// fileMetaPage returns the meta page of the file f (page size pageSize)
// that bbolt uses, as it is in the file: the valid one of the higher txid.
func fileMetaPage(f *os.File, pageSize int) ([walMetaSize]byte, boltMeta, error) {
	var pages [2][walMetaSize]byte
	var metas [2]boltMeta
	var errs [2]error
	for i := range pages {
		if errs[i] = readFull(f, pages[i][:], int64(i*pageSize)); errs[i] == nil {
			metas[i], errs[i] = parseMeta(pages[i][:])
		}
	}
	switch {
	case errs[0] != nil && errs[1] != nil:
		return pages[0], metas[0], fmt.Errorf("%w: no valid meta page: %w; %w", eventstore.ErrCorrupt, errs[0], errs[1])
	case errs[1] != nil || (errs[0] == nil && metas[0].txid > metas[1].txid):
		return pages[0], metas[0], nil
	default:
		return pages[1], metas[1], nil
	}
}

// pinBase begins the pin on the file's current meta, which must be the
// state bbolt reads.
func (s *Store) pinBase() (*bbolt.Tx, [walMetaSize]byte, error) {
	page, m, err := fileMetaPage(s.file, s.boltPageSize)
	if err != nil {
		return nil, page, err
	}
	tx, err := s.begin(false)
	if err != nil {
		return nil, page, err
	}
	if uint64(tx.ID()) != m.txid {
		_ = tx.Rollback()
		return nil, page, fmt.Errorf("%w: bbolt reads transaction %d, the file's meta says %d", eventstore.ErrCorrupt, tx.ID(), m.txid)
	}
	return tx, page, nil
}

// ensureLog creates the log if there is none: a header whose base is the
// current state (which the file holds durably when there is no log),
// fsynced together with the log's directory entry before any record
// relies on it. Call it with wmu held, before a write transaction begins.
func (s *Store) ensureLog() (err error) {
	l := s.wal
	if l.f != nil {
		return nil
	}
	// The mark first, durably: no log exists without it. db.NoSync is
	// set in log mode; with no log, this commit is synced as without one.
	s.db.NoSync = false
	err = markLogged(s.db, true)
	s.db.NoSync = true
	if err != nil {
		return fmt.Errorf("bolt: create log: mark the file: %w", err)
	}
	pin, meta, err := s.pinBase()
	if err != nil {
		return fmt.Errorf("bolt: create log: %w", err)
	}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		_ = pin.Rollback()
		return fmt.Errorf("bolt: create log: %w", err)
	}
	defer func() {
		if err != nil {
			_ = pin.Rollback()
			_ = f.Close()
			_ = os.Remove(l.path)
			err = fmt.Errorf("bolt: create log %s: %w", l.path, err)
		}
	}()
	h := walHeader{gen: rand.Uint64() >> 2, meta: meta}
	if _, err := f.WriteAt(appendWalHeader(nil, &h), 0); err != nil {
		return err
	}
	if err := fdatasync(f); err != nil {
		return err
	}
	if err := syncDir(l.dir); err != nil {
		return err
	}
	l.f, l.gen, l.slot, l.end = f, h.gen, 0, walRecordsStart
	l.baseSize = pin.Size()
	l.setPin(pin)
	return nil
}

// logRecord writes rec, a record whose payload follows walRecordHeader
// bytes, at the end of the log and fdatasyncs it. Call it with wmu held.
func (s *Store) logRecord(rec []byte) error {
	l := s.wal
	sealWalRecord(rec, l.gen)
	if _, err := l.f.WriteAt(rec, l.end); err != nil {
		return fmt.Errorf("write %s: %w", l.path, err)
	}
	if err := fdatasync(l.f); err != nil {
		return fmt.Errorf("fdatasync %s: %w", l.path, err)
	}
	l.end += int64(len(rec))
	return nil
}

// checkpoint makes the current state the log's base: it fdatasyncs the
// file, then writes a header of the next generation holding the current
// meta into the other slot, fdatasyncs the log, and pins the new base.
// Records go to the start of the log again. A failure poisons the store.
// Call it with wmu held, no write transaction open.
func (s *Store) checkpoint() error {
	l := s.wal
	if l.f == nil {
		return nil
	}
	if err := s.commitHeld(); err != nil {
		return err
	}
	if err := s.syncFile(); err != nil {
		return err
	}
	pin, meta, err := s.pinBase()
	if err != nil {
		s.poisoned.Store(true)
		return fmt.Errorf("bolt: checkpoint: %w", err)
	}
	h := walHeader{gen: l.gen + 1, meta: meta}
	slot := 1 - l.slot
	_, err = l.f.WriteAt(appendWalHeader(nil, &h), int64(slot*walSlotSize))
	if err == nil {
		err = fdatasync(l.f)
	}
	if err != nil {
		// The old header stands, and so must its base: keep its pin.
		_ = pin.Rollback()
		s.poisoned.Store(true)
		return fmt.Errorf("bolt: checkpoint: write the header of %s: %w", l.path, err)
	}
	l.gen, l.slot, l.end, l.commits = h.gen, slot, walRecordsStart, 0
	l.baseSize = pin.Size()
	l.setPin(pin)
	return nil
}

// syncFile fdatasyncs the store's file if a commit since the last sync
// needs it. A failure poisons the store. Call it with wmu held.
func (s *Store) syncFile() error {
	l := s.wal
	if !l.dirty {
		return nil
	}
	if err := s.db.Sync(); err != nil {
		s.poisoned.Store(true)
		return fmt.Errorf("bolt: checkpoint: fdatasync %s: %w", s.path, err)
	}
	l.dirty = false
	if l.idle != nil {
		l.idle.Stop()
	}
	return nil
}

// closeLog syncs the file and removes the log, leaving one file that holds
// every commit. Call it with wmu held, on a store that is not poisoned.
func (s *Store) closeLog() error {
	l := s.wal
	if l.f == nil {
		return nil
	}
	if err := s.commitHeld(); err != nil {
		return err
	}
	if err := s.syncFile(); err != nil {
		return err
	}
	l.dropPin()
	err := l.f.Close()
	l.f = nil
	if err == nil {
		err = os.Remove(l.path)
	}
	if err == nil {
		err = syncDir(l.dir)
	}
	if err != nil {
		return fmt.Errorf("bolt: remove log %s: %w", l.path, err)
	}
	s.db.NoSync = false
	err = markLogged(s.db, false)
	s.db.NoSync = true
	if err != nil {
		return fmt.Errorf("bolt: close log: unmark the file: %w", err)
	}
	return nil
}

// markLogged sets the file's format to formatLogged (logged) or back to
// formatV3, in a commit of its own, unless it is so already. Only a file
// of format 3 is marked: Open upgrades a file to it (see upgrade) before
// it makes a log.
func markLogged(db *bbolt.DB, logged bool) error {
	from, to := formatV3, formatLogged
	if !logged {
		from, to = to, from
	}
	var mark bool
	if err := db.View(func(tx *bbolt.Tx) error {
		mark = bytes.Equal(tx.Bucket(bucketMeta).Get(keyFormat), from)
		return nil
	}); err != nil || !mark {
		return err
	}
	return db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyFormat, to)
	})
}

// abandonLog closes a poisoned store's log without touching it: the next
// Open replays it.
func (s *Store) abandonLog() {
	l := s.wal
	s.dropHeld()
	if l.idle != nil {
		l.idle.Stop()
	}
	l.dropPin()
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}

// takeHeld clears held and its counts, and returns the counts. Call it
// with wmu held; pending stays set until the caller is done with the
// transaction.
func (l *walState) takeHeld() (groups, size, keys int) {
	groups, size, keys = l.heldGroups, l.heldBytes, l.heldKeys
	l.held, l.heldW, l.heldGroups, l.heldBytes, l.heldKeys = nil, nil, 0, 0, 0
	l.tail.clear()
	return groups, size, keys
}

// holdLimit reports whether the held transaction must be committed now:
// it gathered walHoldGroups group commits or walHoldBytes of records, or
// the log needs a checkpoint.
func (l *walState) holdLimit() bool {
	return l.heldGroups >= walHoldGroups || int64(l.heldBytes) >= walHoldBytes || l.needCheckpoint(1)
}

// flushHeld commits the held transaction, if there is one, and then
// checkpoints if the pin was dropped or a limit is reached (afterCommit).
// Call it with wmu held.
func (s *Store) flushHeld() error {
	if s.wal.held == nil {
		return nil
	}
	if err := s.commitHeld(); err != nil {
		return err
	}
	s.afterCommit()
	return nil
}

// commitHeld commits the held transaction, if there is one, without
// bbolt's fsyncs (the log holds its records durably). A failure poisons
// the store and marks it lost: its events are in the log, and the next
// Open replays them. Call it with wmu held, and checkpoint after it (as
// flushHeld does).
func (s *Store) commitHeld() (err error) {
	l := s.wal
	tx := l.held
	if tx == nil {
		return nil
	}
	_, size, keys := l.takeHeld()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		// A panic inside Commit leaves a commit whose outcome is unknown.
		if r := recover(); r != nil {
			s.rollback(tx) // release the writer lock, if Commit did not
			err = fmt.Errorf("bolt: commit: %w: %w: bbolt panicked: %v", eventstore.ErrUnknownOutcome, eventstore.ErrCorrupt, r)
		}
		if err != nil {
			err = s.markLost(err)
		}
		l.pending.Store(false)
	}()
	l.size = tx.Size()
	if l.needCheckpoint(1) || s.mayRemap(tx, size, keys) {
		l.dropPin() // a checkpoint follows (afterCommit)
	}
	return s.commitTx(tx)
}

// dropHeld rolls back the held transaction, if there is one. When it held
// acknowledged commits, the store is poisoned and lost (see walState.lost).
// Call it with wmu held.
func (s *Store) dropHeld() {
	l := s.wal
	if l.held == nil {
		return
	}
	tx := l.held
	if groups, _, _ := l.takeHeld(); groups > 0 {
		s.markLost(errors.New("rolled back"))
	}
	s.rollback(tx)
	l.pending.Store(false)
}

// syncHeld readies the store for a read: it commits the held transaction,
// so that the read sees every acknowledged append. It fails once the file
// lacks acknowledged events (walState.lost).
func (s *Store) syncHeld() error {
	l := s.wal
	if l == nil {
		return nil
	}
	if l.pending.Load() {
		if err := s.lockedFlush(); err != nil {
			return err
		}
	}
	if p := l.lost.Load(); p != nil {
		return *p
	}
	return nil
}

// lockedFlush is flushHeld with wmu taken and released (also when it
// panics).
func (s *Store) lockedFlush() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.flushHeld()
}

// commitNoSync commits tx, a write transaction begun with the log open,
// without bbolt's fsyncs. Unless the pin was dropped before, a watchdog
// drops it if the commit runs for longer than walPinTimeout: it may wait
// to grow the memory map.
func (s *Store) commitNoSync(tx *bbolt.Tx) error {
	l := s.wal
	var watchdog *time.Timer
	if l.pinned() {
		watchdog = time.AfterFunc(walPinTimeout, l.dropPin)
	}
	err := s.commit(tx)
	if watchdog != nil && !watchdog.Stop() {
		// The watchdog fired, and its dropPin may not have run yet:
		// drop the pin here, so that afterCommit sees it gone and
		// checkpoints before the next write transaction.
		l.dropPin()
	}
	if err != nil {
		return err
	}
	l.dirty = true
	l.commits++
	if l.idle == nil {
		l.idle = time.AfterFunc(walIdle, s.idleCheckpoint)
	} else {
		l.idle.Reset(walIdle)
	}
	return nil
}

// idleCheckpoint runs a checkpoint walIdle after the last commit.
func (s *Store) idleCheckpoint() {
	if err := s.enter(); err != nil {
		return
	}
	defer s.exit()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.poisoned.Load() || (!s.wal.dirty && s.wal.held == nil) {
		return
	}
	_ = s.checkpoint() // a failure poisons the store: the next write says so
}

// afterCommit checkpoints after a group commit if the pin was dropped or
// a limit is reached (see needCheckpoint). Call it with wmu held.
func (s *Store) afterCommit() {
	if !s.wal.pinned() || s.wal.needCheckpoint(0) {
		_ = s.checkpoint() // a failure poisons the store: the next write says so
	}
}

// needCheckpoint reports whether the log, after n more commits, reaches
// one of its limits: its size, its commits, or the growth of the file
// since the base.
func (l *walState) needCheckpoint(n int) bool {
	return l.end >= walLimit || l.commits+n >= walMaxCommits || l.size-l.baseSize >= walMaxGrowth
}

// mayRemap reports whether committing tx, which adds about size bytes of
// records, might make bbolt grow its memory map: then the pin must go
// before the commit. bbolt maps mmapSize(n) bytes for some n at least its
// InitialMmapSize and at least the high water mark of its pages, so that
// is the smallest the map can be; the growth of a commit is bounded
// generously by its records (each written to a leaf and four indexes, with
// the pages it splits), a few pages per key, and the freelist.
func (s *Store) mayRemap(tx *bbolt.Tx, size, keys int) bool {
	if !walGuessRemap {
		return false
	}
	hwm := int(tx.Size())
	ps := s.boltPageSize
	mapped := max(mmapSize(walInitialMmapSize), mmapSize(hwm))
	growth := 4*size + (keys+16)*4*ps + hwm/ps*8 + 1<<20
	return hwm+growth+ps >= mapped
}

// mmapSize is bbolt v1.5's DB.mmapSize: the size of the memory map it
// makes for a file of size bytes (32 KiB doubled up to 1 GiB, then whole
// GiBs).
func mmapSize(size int) int {
	for i := uint(15); i <= 30; i++ {
		if size <= 1<<i {
			return 1 << i
		}
	}
	const step = 1 << 30
	return (size + step - 1) / step * step
}

// recoverLog readies the file f at name before bbolt reads it when the
// log of a crashed store is there: it writes the base's meta into both of
// the file's meta pages and fdatasyncs the file, so that bbolt opens the
// base, and returns the log's records, for replayLog. What a log holds,
// and what a read-only Open makes of it, is readLog's: the file is written
// only for a log with a valid header of this version, and not when
// readOnly.
func recoverLog(f *os.File, name string, readOnly bool) (payloads [][]byte, err error) {
	h, payloads, err := readLog(name, readOnly)
	if err != nil || payloads == nil {
		return nil, err
	}
	m, err := parseMeta(h.meta[:])
	if err != nil {
		return nil, err // unreachable: decodeWal checked it
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() < 2*int64(m.pageSize) {
		return nil, fmt.Errorf("%w: the file has %d bytes, but its log's base has pages of %d", eventstore.ErrCorrupt, fi.Size(), m.pageSize)
	}
	for slot := range 2 {
		page := h.meta
		hostOrder.PutUint64(page[:], uint64(slot)) // the page's id
		if _, err := f.WriteAt(page[:], int64(slot)*int64(m.pageSize)); err != nil {
			return nil, fmt.Errorf("restore the base of the log: %w", err)
		}
	}
	if err := fdatasync(f); err != nil {
		return nil, fmt.Errorf("restore the base of the log: %w", err)
	}
	return payloads, nil
}

// readLog reads the log beside the file at name, as Open decides what it
// holds. With no log, or one without a valid header (which never took part
// in a commit, and which readLog removes unless readOnly), payloads is
// nil. A log with a header holds commits that the file may lack: readOnly,
// that is an error matching ErrNeedsRecovery; otherwise readLog returns
// its header and records (payloads not nil, even without records: a log
// to remove). A log whose header is of another version of the log fails
// with an error matching eventstore.ErrUnknownFormat, and stays.
func readLog(name string, readOnly bool) (h walHeader, payloads [][]byte, err error) {
	path := name + walSuffix
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return h, nil, nil
	}
	if err != nil {
		return h, nil, fmt.Errorf("read log: %w", err)
	}
	h, payloads, _, err = decodeWal(data)
	switch {
	case errors.Is(err, errNoWalHeader):
		if !readOnly {
			_ = os.Remove(path)
		}
		return h, nil, nil
	case err != nil:
		// A later version's log: the file and the log are left as they
		// are, for that version.
		return h, nil, fmt.Errorf("%s: %w", path, err)
	case readOnly:
		return h, nil, fmt.Errorf("%w: %s holds commits that the file may lack; open the file once without Options.ReadOnly to replay them", ErrNeedsRecovery, path)
	}
	if payloads == nil {
		payloads = [][]byte{}
	}
	return h, payloads, nil
}

// replayLog applies the records of a log to db, opened on the log's base,
// in one synced write transaction (a single transaction never reuses the
// pages it frees, so the base stays whole until the commit is durable),
// and returns how many events it wrote. Events at positions the file has
// are skipped; a record that skips a position, or an event whose version
// does not follow its aggregate's, fails with ErrCorrupt.
func replayLog(db *bbolt.DB, payloads [][]byte) (n int, err error) {
	err = db.Update(func(tx *bbolt.Tx) error {
		w, err := newWriter(tx)
		if err != nil {
			return err
		}
		// The records replayed are written in format 3: a file of format
		// 2 (marked, as a version writing format 2 left it) becomes format
		// 3, marked, in the same commit, so that no version that knows
		// only format 2 reads them.
		if meta := tx.Bucket(bucketMeta); meta != nil {
			if isFormatV2(meta.Get(keyFormat)) {
				if err := meta.Put(keyFormat, formatLogged); err != nil {
					return err
				}
			}
		}
		for _, p := range payloads {
			raws, recs, err := walEvents(p)
			if err != nil {
				return err
			}
			for i := range raws {
				r := &raws[i]
				if r.position < w.next {
					if w.positions.Get(index.Position(r.position)) == nil {
						return fmt.Errorf("bolt: log: %w: position %d is neither in the file nor next", eventstore.ErrCorrupt, r.position)
					}
					continue
				}
				if r.position > w.next {
					return fmt.Errorf("bolt: log: %w: position %d follows %d", eventstore.ErrCorrupt, r.position, w.next-1)
				}
				var e eventstore.Event
				if err := w.dec.decode(index.AppendEvent(nil, string(r.aggregateID), r.version), recs[i], &e); err != nil {
					return err
				}
				current, err := w.version(e.AggregateID)
				if err != nil {
					return err
				}
				if e.Version != current+1 {
					return fmt.Errorf("bolt: log: %w: %q version %d follows %d", eventstore.ErrCorrupt, e.AggregateID, e.Version, current)
				}
				if _, err := w.putEvent(make([]byte, 0, putSize(&e)), &e, r.id); err != nil {
					return err
				}
				w.next++
				n++
			}
		}
		return nil
	})
	return n, err
}

// finishRecovery removes the log once its records are in the file, which
// replayLog synced.
func finishRecovery(name string) error {
	if err := os.Remove(name + walSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(name))
}
