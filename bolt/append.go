package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/index"
	"github.com/eventstore-go/eventstore/storekit"
	bbolt "go.etcd.io/bbolt"
)

// appendReq is one Append waiting for a commit.
type appendReq struct {
	caller   []eventstore.Event // as passed to Append
	prepared []eventstore.Event // as returned by Prepare
	ids      [][]byte           // the ids keys of prepared

	// cond is the condition of an AppendIf, plan its filter's; nil for an
	// Append.
	cond *eventstore.Condition
	plan storekit.Plan

	out []eventstore.Event
	err error

	// wake receives false when out and err are set, true when this
	// request's goroutine must run the next commit.
	wake chan bool
}

// Limits of one group commit.
const (
	maxBatchRequests = 1024
	maxBatchBytes    = 16 << 20
)

// Append implements eventstore.Store. See the package doc for group commit
// and for what a failed commit means. ctx is checked before the append
// joins a commit; once queued, it waits for its commit to finish.
func (s *Store) Append(ctx context.Context, events ...eventstore.Event) ([]eventstore.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.exit()
	prepared, err := storekit.Prepare(events, s.maxPayload)
	if err != nil || len(prepared) == 0 {
		return nil, err
	}
	if s.poisoned.Load() {
		return nil, errNeedsReopen
	}
	r := &appendReq{caller: events, prepared: prepared, ids: make([][]byte, len(prepared)), wake: make(chan bool, 1)}
	for i := range prepared {
		if r.ids[i], err = index.ID(prepared[i].ID); err != nil {
			return nil, fmt.Errorf("bolt: event %d: %w", i, err) // unreachable: Prepare checked the ID
		}
	}
	s.submit(r)
	return r.out, r.err
}

// submit queues r and returns once it is answered. The first goroutine to
// find no commit running runs one; when it is done, it answers every
// request of that commit and hands the next commit to the first request
// still queued. A lone writer thus commits at once, and appends that arrive
// during a commit share the next one.
func (s *Store) submit(r *appendReq) {
	if s.readOnly { // Append and AppendIf
		r.err = s.errReadOnly()
		return
	}
	s.qmu.Lock()
	s.queue = append(s.queue, r)
	if s.leading {
		s.qmu.Unlock()
		if lead := <-r.wake; !lead {
			return
		}
		s.qmu.Lock()
	}
	s.leading = true
	s.gather.Wait(&s.qmu, func() int { return len(s.queue) }, maxBatchRequests)

	// Take a batch from the front of the queue; r is in it.
	n, size := 0, 0
	for n < len(s.queue) && n < maxBatchRequests && (n == 0 || size < maxBatchBytes) {
		for _, e := range s.queue[n].prepared {
			size += len(e.Payload)
		}
		n++
	}
	batch := slices.Clone(s.queue[:n])
	s.queue = slices.Delete(s.queue, 0, n)
	s.qmu.Unlock()

	start := time.Now()
	s.commitBatch(batch)
	took := time.Since(start)

	// Answer first, then hand over: the goroutines answered can queue
	// their next appends for the next commit.
	s.qmu.Lock()
	s.gather.Done(took, len(batch), len(s.queue))
	s.qmu.Unlock()
	for _, b := range batch {
		if b != r {
			b.wake <- false
		}
	}
	s.qmu.Lock()
	if len(s.queue) > 0 {
		s.queue[0].wake <- true
	} else {
		s.leading = false
	}
	s.qmu.Unlock()
}

// errInternal marks an error that leaves a write transaction in an unknown
// state: the transaction must be rolled back.
type errInternal struct{ err error }

func (e errInternal) Error() string { return e.err.Error() }
func (e errInternal) Unwrap() error { return e.err }

// commitBatch runs the requests of batch in one write transaction and sets
// each one's answer.
func (s *Store) commitBatch(batch []*appendReq) {
	for len(batch) > 0 {
		failed, err := s.tryBatch(batch)
		if err != nil {
			for _, r := range batch {
				r.out, r.err = nil, err
			}
			return
		}
		if failed < 0 {
			return
		}
		// One request broke the transaction: it has its answer; the
		// others run again without it.
		batch = slices.Delete(slices.Clone(batch), failed, failed+1)
	}
}

// tryBatch runs batch in one write transaction. It returns the index of a
// request whose failure forced a rollback (its answer set; the others must
// run again), or -1 when every request has its answer. A non-nil error is
// the answer of every request.
func (s *Store) tryBatch(batch []*appendReq) (failed int, err error) {
	defer recovered(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	s.wmu.Lock()
	defer s.wmu.Unlock() // after the commit or rollback below
	if s.poisoned.Load() {
		return -1, errNeedsReopen
	}
	if s.wal != nil {
		if err := s.ensureLog(); err != nil {
			// Nothing is written, but a failed fsync leaves the
			// cache in doubt: no write after it (see commitTx).
			s.poisoned.Store(true)
			return -1, fmt.Errorf("bolt: commit: %w: %w", eventstore.ErrUnknownOutcome, err)
		}
	}
	// In log mode, the group commits before this one may be in the held
	// transaction: this one joins them.
	var tx *bbolt.Tx
	var w *writer
	if s.wal != nil && s.wal.held != nil {
		tx, w = s.wal.held, s.wal.heldW
	} else {
		if tx, err = s.db.Begin(true); err != nil {
			return -1, fmt.Errorf("bolt: begin: %w", err)
		}
		if w, err = newWriter(tx); err != nil {
			s.rollback(tx)
			return -1, err
		}
	}
	done := false
	defer func() {
		if !done {
			s.abort(tx)
		}
	}()
	if s.wal != nil {
		w.logging = true
		w.log = append(s.wal.buf[:0], make([]byte, walRecordHeader)...)
		w.keys = 0
		w.logFirst = w.next
	}
	writes := false
	for i, r := range batch {
		out, wrote, err := w.append(r)
		var internal errInternal
		if errors.As(err, &internal) {
			r.out, r.err = nil, internal.err
			return i, nil
		}
		r.out, r.err = out, err
		writes = writes || wrote
	}
	done = true
	if !writes {
		// Only conflicts and retries: nothing to commit.
		if s.wal == nil || s.wal.held != tx {
			s.rollback(tx)
		}
		return -1, nil
	}
	if s.wal != nil {
		return -1, s.logBatch(tx, w, batch)
	}
	defer func() {
		// A panic inside Commit leaves a commit whose outcome is unknown.
		if r := recover(); r != nil {
			s.poisoned.Store(true)
			s.rollback(tx) // release the writer lock, if Commit did not
			err = fmt.Errorf("bolt: commit: %w: %w: bbolt panicked: %v", eventstore.ErrUnknownOutcome, eventstore.ErrCorrupt, r)
		}
	}()
	if err := s.commitTx(tx); err != nil {
		// The outcome of every request is unknown, even of those that
		// failed or were retries: they saw the writes before them.
		for _, r := range batch {
			r.out, r.err = nil, err
		}
		return -1, nil
	}
	s.signal.Publish(w.next - 1) // durable now: subscriptions may see it
	return -1, nil
}

// abort rolls back tx, a write transaction of tryBatch that failed. When
// tx is the held transaction, the commits it held are lost (see dropHeld).
func (s *Store) abort(tx *bbolt.Tx) {
	if s.wal != nil && s.wal.held == tx {
		s.dropHeld()
		return
	}
	s.rollback(tx)
}

// logBatch makes the writes of batch, which w wrote in tx, durable in log
// mode: it writes their record to the log and fdatasyncs it, which
// acknowledges them. tx then becomes (or stays) the held transaction,
// which later group commits join, until a limit (holdLimit), a read
// (syncHeld), a write of another kind or a checkpoint commits it: one
// bbolt commit serves many group commits. Call it with wmu held.
func (s *Store) logBatch(tx *bbolt.Tx, w *writer, batch []*appendReq) error {
	l := s.wal
	held := false
	defer func() {
		// A panic before tx holds the batch leaves writes in tx that no
		// record holds: roll it back (tryBatch's recovered answers).
		if r := recover(); r != nil {
			if !held {
				s.poisoned.Store(true)
				s.abort(tx)
			}
			panic(r)
		}
	}()
	if err := s.logRecord(w.log); err != nil {
		s.poisoned.Store(true)
		s.abort(tx)
		err = fmt.Errorf("bolt: commit: %w: log: %w", eventstore.ErrUnknownOutcome, err)
		for _, r := range batch {
			r.out, r.err = nil, err
		}
		return nil
	}
	l.tail.add(l.held == nil, s.tailSubs.Load() > 0, w.logFirst, w.next-1, w.log[walRecordHeader:])
	if cap(w.log) <= maxBatchBytes {
		l.buf = w.log[:0]
	}
	l.held, l.heldW = tx, w
	held = true
	l.heldGroups++
	l.heldBytes += len(w.log)
	l.heldKeys += w.keys
	l.pending.Store(true)
	s.signal.Publish(w.next - 1) // durable now: subscriptions may see it
	if l.holdLimit() {
		_ = s.flushHeld()
		// A failure poisons the store; the batch's events are durable
		// in the log all the same.
		return nil
	}
	// The held transaction waits for the next group commit, a read, or
	// the idle checkpoint.
	if l.idle == nil {
		l.idle = time.AfterFunc(walIdle, s.idleCheckpoint)
	} else {
		l.idle.Reset(walIdle)
	}
	return nil
}

// writer appends events within one write transaction.
type writer struct {
	events, positions, types, timestamps, ids, tags *bbolt.Bucket
	cursor                                          *bbolt.Cursor // on events
	tx                                              *bbolt.Tx
	next                                            uint64 // the next position
	dec                                             decoder

	// versions caches the last version of each aggregate the writer
	// looked up or wrote (see version).
	versions map[string]uint64

	// With logging set, putEvent appends each event's record to log (a
	// record of the write-ahead log in the making) and counts its keys.
	logging  bool
	log      []byte
	keys     int
	logFirst uint64 // the position of the first event of log
}

func newWriter(tx *bbolt.Tx) (*writer, error) {
	w := &writer{
		tx:         tx,
		events:     tx.Bucket(bucketEvents),
		positions:  tx.Bucket(bucketPositions),
		types:      tx.Bucket(bucketTypes),
		timestamps: tx.Bucket(bucketTimestamps),
		ids:        tx.Bucket(bucketIDs),
		tags:       tx.Bucket(bucketTags),
	}
	if w.events == nil || w.positions == nil || w.types == nil || w.timestamps == nil || w.ids == nil || w.tags == nil {
		return nil, fmt.Errorf("bolt: %w: bucket missing", eventstore.ErrCorrupt)
	}
	// Keys mostly grow at the end of their ranges: positions always;
	// timestamps, types and UUIDv7 IDs mostly; events at the end of each
	// aggregate's range. A page that splits keeps what no append will
	// touch again, so fill it, rather than leaving it half empty as bbolt's
	// default for random inserts does. On the bench workloads this makes
	// files 28-37% smaller than the default and writes no slower (also for
	// appends rotating over 1,000 aggregates, where sizes are equal).
	w.positions.FillPercent = 1.0
	w.timestamps.FillPercent = 0.9
	w.types.FillPercent = 0.9
	w.ids.FillPercent = 0.9
	w.tags.FillPercent = 0.9
	w.events.FillPercent = 0.9
	w.cursor = w.events.Cursor()
	last, _ := w.positions.Cursor().Last()
	if last != nil {
		p, err := index.ParsePosition(last)
		if err != nil {
			return nil, corrupt("positions key", last, err)
		}
		w.next = p
	}
	w.next++
	return w, nil
}

// append runs one request: it checks everything, then writes. It reports
// whether it wrote. An error that is not an errInternal means it wrote
// nothing.
func (w *writer) append(r *appendReq) (out []eventstore.Event, wrote bool, err error) {
	// A call whose IDs are stored is a retry or a duplicate. An ID that
	// Prepare just generated (a UUIDv7: 74 random bits within its
	// millisecond) is not looked up: it cannot be stored yet.
	var stored []eventstore.Event
	var found []bool
	for i, id := range r.ids {
		if r.caller[i].ID == "" {
			continue
		}
		k, err := lookup(w.ids, id, "ids entry")
		if err != nil {
			return nil, false, err
		}
		if k == nil {
			continue
		}
		if found == nil {
			stored = make([]eventstore.Event, len(r.ids))
			found = make([]bool, len(r.ids))
		}
		v := w.events.Get(k)
		if v == nil {
			return nil, false, corrupt("ids entry", id, errors.New("points to no event"))
		}
		if err := w.dec.decode(k, v, &stored[i]); err != nil {
			return nil, false, err
		}
		// The entry must point to the event of that ID: a damaged one
		// would make a new event pass for a retry of another.
		var want [36]byte
		formatUUID(&want, id)
		if stored[i].ID != string(want[:]) {
			return nil, false, corrupt("ids entry", id, fmt.Errorf("points to the event of ID %s", stored[i].ID))
		}
		found[i] = true
	}
	if found != nil {
		if err := storekit.CheckRetry(r.caller, stored, found); err != nil {
			return nil, false, err
		}
		return stored, false, nil
	}

	if r.cond != nil {
		// In the write transaction: it sees every commit before it and
		// the requests of this batch before r.
		pos, found, err := firstMatch(w.tx, r.plan, r.cond.After)
		if err != nil {
			return nil, false, err
		}
		if found {
			return nil, false, &eventstore.ConditionError{After: r.cond.After, Position: pos}
		}
	}

	events := slices.Clone(r.prepared) // a batch may run twice: keep r.prepared as it was
	for _, group := range storekit.Groups(events) {
		current, err := w.version(events[group[0]].AggregateID)
		if err != nil {
			return nil, false, err
		}
		if err := storekit.AssignGroupVersions(events, group, current); err != nil {
			return nil, false, err
		}
	}

	// bbolt keeps the keys and values passed to Put until the transaction
	// ends, so each gets its own bytes: one allocation for all.
	size := 0
	for i := range events {
		events[i].Position = w.next + uint64(i)
		size += putSize(&events[i])
	}
	buf := make([]byte, 0, size)
	for i := range events {
		if buf, err = w.putEvent(buf, &events[i], r.ids[i]); err != nil {
			return nil, true, errInternal{err}
		}
	}
	w.next += uint64(len(events))
	return events, true, nil
}

// putSize is how many bytes putEvent appends to its buffer for e.
func putSize(e *eventstore.Event) int {
	size := index.NameSize(e.AggregateID) + 8 + eventRecordSize(e) + 8 + index.NameSize(e.Type) + 8 + 16
	for _, t := range e.Tags {
		size += index.NameSize(t) + 8
	}
	return size
}

// putEvent writes e, whose version and position are set and whose ids key
// is id, into the events bucket and every index: the one place that knows
// what a stored event consists of. The keys and the record are appended to
// buf, which it returns: bbolt keeps what Put is given until the
// transaction ends, so buf is never reused (give it putSize(e) bytes of
// room to spare an allocation). An error leaves the transaction to be
// rolled back.
func (w *writer) putEvent(buf []byte, e *eventstore.Event, id []byte) ([]byte, error) {
	start := len(buf)
	buf = index.AppendEvent(buf, e.AggregateID, e.Version)
	key := buf[start:len(buf):len(buf)]
	start = len(buf)
	buf = appendEventRecord(buf, e, id)
	rec := buf[start:len(buf):len(buf)]
	start = len(buf)
	buf = index.AppendUint64(buf, e.Position)
	posKey := buf[start:len(buf):len(buf)]
	start = len(buf)
	buf = index.AppendType(buf, e.Type, e.Position)
	typeKey := buf[start:len(buf):len(buf)]
	start = len(buf)
	buf = index.AppendTime(buf, e.Timestamp, e.Position)
	timeKey := buf[start:len(buf):len(buf)]

	if err := w.events.Put(key, rec); err != nil {
		return buf, fmt.Errorf("bolt: put event: %w", err)
	}
	w.setVersion(e.AggregateID, e.Version)
	if w.logging {
		w.log = appendWalEvent(w.log, rec)
		w.keys += 5 + len(e.Tags)
	}
	for _, put := range []struct {
		b *bbolt.Bucket
		k []byte
	}{{w.positions, posKey}, {w.types, typeKey}, {w.timestamps, timeKey}, {w.ids, id}} {
		if err := put.b.Put(put.k, key); err != nil {
			return buf, fmt.Errorf("bolt: put index: %w", err)
		}
	}
	for _, t := range e.Tags {
		// A tags key has the shape of a types key: len16 tag, position.
		start = len(buf)
		buf = index.AppendType(buf, t, e.Position)
		if err := w.tags.Put(buf[start:len(buf):len(buf)], key); err != nil {
			return buf, fmt.Errorf("bolt: put tag: %w", err)
		}
	}
	return buf, nil
}

// version returns the version of the last event of aggregateID. It looks
// each aggregate up once per writer: the writer's transaction is the only
// one that writes, and putEvent, which every write goes through, keeps
// versions current. In log mode a writer lives as long as the held
// transaction, across group commits, so that an aggregate appended to
// again and again costs no seek.
func (w *writer) version(aggregateID string) (uint64, error) {
	if v, ok := w.versions[aggregateID]; ok {
		return v, nil
	}
	v, err := lastVersion(w.cursor, index.AggregatePrefix(aggregateID))
	if err != nil {
		return 0, err
	}
	w.setVersion(aggregateID, v)
	return v, nil
}

// setVersion records that the last event of aggregateID is at version v.
func (w *writer) setVersion(aggregateID string, v uint64) {
	if w.versions == nil {
		w.versions = make(map[string]uint64)
	}
	w.versions[aggregateID] = v
}

// lastVersion returns the version of the last event of the aggregate whose
// events keys start with prefix, using c, a cursor on the events bucket.
func lastVersion(c *bbolt.Cursor, prefix []byte) (uint64, error) {
	seek := index.AppendUint64(append(make([]byte, 0, len(prefix)+8), prefix...), ^uint64(0))
	k, _ := c.Seek(seek)
	switch {
	case k == nil:
		k, _ = c.Last()
	case index.IsEventOf(k, prefix):
		// The aggregate has an event at the largest version.
		return binary.BigEndian.Uint64(k[len(prefix):]), nil
	default:
		// A sound file has a well-formed events key after seek here (see
		// checkEventsStop).
		if err := checkEventsStop(k, seek); err != nil {
			return 0, err
		}
		k, _ = c.Prev()
	}
	switch {
	case k == nil:
		return 0, nil
	case index.IsEventOf(k, prefix):
		return binary.BigEndian.Uint64(k[len(prefix):]), nil
	}
	// The key before the aggregate's range: a well-formed events key that
	// sorts before it.
	if _, _, err := index.ParseEvent(k); err != nil || bytes.Compare(k, prefix) >= 0 {
		return 0, corrupt("events key", k, fmt.Errorf("%w: not an events key before %x", errMissing, prefix))
	}
	return 0, nil
}
