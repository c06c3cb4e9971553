package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/follow"
	"github.com/eventstore-go/eventstore/storekit"
	bbolt "go.etcd.io/bbolt"
)

// ErrNotReadModel reports a bucket name that a ProjectTx or a ReadModelTx
// refuses: one that is not ReadModelPrefix followed by at least one byte,
// such as the name of one of the store's own buckets.
var ErrNotReadModel = errors.New("bolt: not a read-model bucket")

// Batches of Project.
const (
	// projectBatchEvents is the most events one transaction of Project
	// hands to its handler.
	projectBatchEvents = 256

	// projectBatchBytes ends a batch of Project after the event whose
	// payload and metadata bring the batch to this many bytes (a batch
	// holds at least one event).
	projectBatchBytes = 1 << 20
)

// ProjectError reports that the handler of a projection failed on an
// event: Project rolled back the batch that event was in (the read model
// and the checkpoint are as they were before it) and returned. Unwrap
// gives the handler's error.
type ProjectError struct {
	Name     string // the projection
	Position uint64 // the position of the event the handler failed on
	EventID  string // its ID
	Err      error  // what the handler returned
}

// Error implements error.
func (e *ProjectError) Error() string {
	return fmt.Sprintf("bolt: projection %q: event %s at position %d: %v", e.Name, e.EventID, e.Position, e.Err)
}

// Unwrap returns Err.
func (e *ProjectError) Unwrap() error { return e.Err }

// ReadModelTx is a window on a bbolt transaction that reaches only the
// read-model buckets: top-level buckets whose names are ReadModelPrefix
// ("rm:") followed by at least one byte, such as "rm:orders". Names are
// the buckets' names in the file, as ForEachBucket, backups and the
// eventstore command show them. A name that is not a read model's, such
// as "events" or "checkpoints" or "rm:" alone, is refused with an error
// matching ErrNotReadModel; the store's own buckets are out of reach.
// What a read-model bucket holds (keys, values, nested buckets) is the
// application's business: the store never reads it, and Check only vets
// its pages.
//
// A refused name also marks the transaction: the function it was given
// to (a handler of Project, a reset of ResetProjection, the function of
// ViewReadModel) then fails with that error even if it returned nil, so
// that a projection never commits a batch after a refused access it
// ignored.
//
// A ReadModelTx, and the buckets it returns, are valid only until the
// function it was given to returns: do not keep them. The buckets are
// bbolt's own; their Tx method reaches the whole file, and must not be
// used (never commit or roll back that transaction yourself).
type ReadModelTx struct {
	tx       *bbolt.Tx
	refused  error // the first name refused
	finished bool
}

// errTxDone is the error of a ReadModelTx used after its function
// returned.
var errTxDone = errors.New("bolt: read-model transaction used after its function returned")

// ReadModelPrefix starts the name of every read-model bucket.
const ReadModelPrefix = readModelPrefix

// check returns the error of name, which it records when it is the first
// refusal.
func (t *ReadModelTx) check(name []byte) error {
	if t.finished {
		return errTxDone
	}
	if len(name) > len(readModelPrefix) && bytes.HasPrefix(name, []byte(readModelPrefix)) {
		return nil
	}
	err := fmt.Errorf("%w: %q (read-model buckets are named %q followed by at least one byte)", ErrNotReadModel, name, readModelPrefix)
	if t.refused == nil {
		t.refused = err
	}
	return err
}

// result is the error of a function given t that returned err: err, or
// the first refused name when err does not already report one.
func (t *ReadModelTx) result(err error) error {
	if t.refused == nil || errors.Is(err, ErrNotReadModel) {
		return err
	}
	return errors.Join(err, t.refused)
}

// Bucket returns the read-model bucket name, or nil when there is none.
// It returns nil for a name that is not a read model's, and marks the
// transaction (see ReadModelTx).
func (t *ReadModelTx) Bucket(name []byte) *bbolt.Bucket {
	if t.check(name) != nil {
		return nil
	}
	return t.tx.Bucket(name)
}

// ForEachBucket calls fn for each read-model bucket, in name order (the
// store's own buckets are skipped), and stops at the first error fn
// returns, which it returns.
func (t *ReadModelTx) ForEachBucket(fn func(name []byte, b *bbolt.Bucket) error) error {
	if t.finished {
		return errTxDone
	}
	c := t.tx.Cursor()
	prefix := []byte(readModelPrefix)
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if v != nil || len(k) == len(prefix) {
			continue // not a bucket, or "rm:" itself: not a read model's
		}
		b := t.tx.Bucket(k)
		if b == nil {
			continue
		}
		if err := fn(k, b); err != nil {
			return err
		}
	}
	return nil
}

// ProjectTx is the handler's window on the transaction of a batch of
// Project (and of ResetProjection): a ReadModelTx that can also create
// and delete read-model buckets. Everything written through it commits
// with the batch and the checkpoint, or not at all. The rules of
// ReadModelTx apply: only read-model buckets, valid only until the
// handler returns.
type ProjectTx struct {
	ReadModelTx
	name string
}

// Name returns the name of the projection (its checkpoint's name).
func (t *ProjectTx) Name() string { return t.name }

// CreateBucket creates the read-model bucket name, and fails (with
// bbolt's error wrapped) when it exists.
func (t *ProjectTx) CreateBucket(name []byte) (*bbolt.Bucket, error) {
	if err := t.check(name); err != nil {
		return nil, err
	}
	b, err := t.tx.CreateBucket(name)
	if err != nil {
		return nil, fmt.Errorf("bolt: create bucket %q: %w", name, err)
	}
	return b, nil
}

// CreateBucketIfNotExists returns the read-model bucket name, creating it
// when it does not exist.
func (t *ProjectTx) CreateBucketIfNotExists(name []byte) (*bbolt.Bucket, error) {
	if err := t.check(name); err != nil {
		return nil, err
	}
	b, err := t.tx.CreateBucketIfNotExists(name)
	if err != nil {
		return nil, fmt.Errorf("bolt: create bucket %q: %w", name, err)
	}
	return b, nil
}

// DeleteBucket deletes the read-model bucket name and everything in it.
// Deleting a bucket that does not exist fails with bbolt's
// errors.ErrBucketNotFound wrapped.
func (t *ProjectTx) DeleteBucket(name []byte) error {
	if err := t.check(name); err != nil {
		return err
	}
	if err := t.tx.DeleteBucket(name); err != nil {
		return fmt.Errorf("bolt: delete bucket %q: %w", name, err)
	}
	return nil
}

// Project runs the projection name: it hands each event that filter
// selects to handle, once, in position order, with a ProjectTx through
// which handle updates the projection's read model, and it advances the
// checkpoint name (see LoadCheckpoint) in the same bbolt transaction. The
// read model and the checkpoint thus always agree, across crashes: an
// event's effects are in the file if and only if the checkpoint is at or
// past its position. This is exactly-once processing, for effects kept in
// read-model buckets; anything else handle does (a message sent, a
// counter in memory) happens at least once, and again for every batch
// that is rolled back.
//
// Each round reads, in one read transaction, the checkpoint and up to 256
// selected events after it (fewer when their payloads and metadata reach
// 1 MiB), up to the head (see Head), and copies them out. It then opens
// one write transaction, checks that the checkpoint is still the one it
// read (if something else moved it, a SaveCheckpoint of the same name,
// the round starts over from the new value: the read model is then the
// caller's to mend), calls handle for each event, and writes the new
// checkpoint: the last event's position when the batch is full, otherwise
// the head, so that a caught-up projection stands at the head even when
// the last events are ones its filter does not select. The commit is
// durable as an Append's. When the checkpoint is at the head, Project
// waits for the next commit, without polling.
//
// Project runs until ctx ends (it returns ctx.Err()), the store closes
// (ErrClosed), handle fails, or the store fails (a damaged file, a
// failed commit). When handle returns an error, or a ProjectTx refused a
// name (ErrNotReadModel), the batch is rolled back, read model and
// checkpoint untouched, and Project returns a *ProjectError naming the
// event; errors.As finds it and errors.Is sees through it to the
// handler's error. A panic in handle rolls the batch back too, and
// Project panics again with the same value.
//
// One runner per name: while a Project of name runs on this Store,
// another Project of the same name waits for it to return (a hot
// standby), then goes on from the checkpoint the first one left. The file
// is locked to one process, so this holds across the whole file.
//
// handle runs inside a bbolt write transaction: it must not call this
// Store (an Append or a SaveCheckpoint would wait for that transaction
// for ever, and bbolt warns that a read transaction opened by the goroutine
// that holds a write transaction can deadlock), must not keep
// the ProjectTx or its buckets, and should be quick, as every append
// waits for the batch's commit. The read model is read with
// ViewReadModel, rebuilt with ResetProjection.
func (s *Store) Project(ctx context.Context, name string, filter eventstore.Filter, handle func(tx *ProjectTx, e eventstore.Event) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := storekit.CheckCheckpointName(name); err != nil {
		return err
	}
	if handle == nil {
		return fmt.Errorf("bolt: project %q: nil handler", name)
	}
	if err := s.enter(); err != nil {
		return err
	}
	s.exit()
	if s.readOnly {
		return s.errReadOnly()
	}
	release, err := s.proj.acquire(ctx, s.signal, name, true)
	if err != nil {
		return err
	}
	defer release()

	plan := storekit.PlanFilter(filter)
	key := []byte(name)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		head, next, closed := s.signal.Watch() // before the read: see follow.Signal
		if closed {
			return eventstore.ErrClosed
		}
		moved, err := s.projectRound(ctx, name, key, plan, head, handle)
		switch {
		case err != nil:
			return err
		case moved:
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-next:
		}
	}
}

// projectRound runs one round of Project up to head: it reads a batch and
// applies it. It reports whether the checkpoint moved (so that the next
// round should start at once); false means it was at the head already.
func (s *Store) projectRound(ctx context.Context, name string, key []byte, plan storekit.Plan, head uint64, handle func(*ProjectTx, eventstore.Event) error) (moved bool, err error) {
	if h := s.proj.onRound; h != nil {
		h()
	}
	rb := getReadBuf()
	defer putReadBuf(rb)
	page := rb.page[:0]
	defer func() { rb.page = page }()

	var from uint64 // the checkpoint read
	more := false
	err = s.view(func(tx *bbolt.Tx) error {
		var err error
		if from, err = checkpointIn(tx, key); err != nil || from >= head {
			return err
		}
		page, more, err = queryPages(plan, from, head, 0)(tx, &rb.d, page, projectBatchEvents)
		return err
	})
	rb.d.finish(page)
	if err != nil {
		return false, s.projectErr(ctx, name, err)
	}
	if from >= head {
		return false, nil
	}
	// The batch ends at 1 MiB of payloads and metadata.
	size := 0
	for i := range page {
		size += len(page[i].Payload)
		for k, v := range page[i].Metadata {
			size += len(k) + len(v)
		}
		if size >= projectBatchBytes && i+1 < len(page) {
			page, more = page[:i+1], true
			break
		}
	}
	to := head
	if more {
		to = page[len(page)-1].Position
	}
	if h := s.proj.afterRead; h != nil {
		h()
	}

	var herr *ProjectError
	var panicked bool
	var panicVal any
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketCheckpoints)
		if err != nil {
			return err
		}
		if cur, err := checkpointIn(tx, key); err != nil {
			return err
		} else if cur != from {
			return errCheckpointMoved
		}
		ptx := &ProjectTx{ReadModelTx: ReadModelTx{tx: tx}, name: name}
		defer func() { ptx.finished = true }()
		for _, e := range page {
			p, ok, err := callUser(func() error { return handle(ptx, e) })
			if !ok {
				panicked, panicVal = true, p
				return errUserPanic
			}
			if err = ptx.result(err); err != nil {
				herr = &ProjectError{Name: name, Position: e.Position, EventID: e.ID, Err: err}
				return herr
			}
		}
		if err := b.Put(key, binary.BigEndian.AppendUint64(nil, to)); err != nil {
			return fmt.Errorf("bolt: save checkpoint %q: %w", name, err)
		}
		return nil
	})
	switch {
	case panicked:
		panic(panicVal)
	case errors.Is(err, errCheckpointMoved):
		return true, nil
	case herr != nil && err == herr:
		return false, herr
	case err != nil:
		return false, s.projectErr(ctx, name, err)
	}
	return true, nil
}

// projectErr is the error Project returns for err, which is not the
// handler's: ctx's error when ctx ended, ErrClosed as it is, otherwise
// err with the projection's name.
func (s *Store) projectErr(ctx context.Context, name string, err error) error {
	if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
		return cerr
	}
	if err == eventstore.ErrClosed {
		return err
	}
	return fmt.Errorf("bolt: project %q: %w", name, err)
}

// errCheckpointMoved rolls back a batch whose checkpoint is no longer the
// one its events were read after.
var errCheckpointMoved = errors.New("bolt: checkpoint moved")

// errUserPanic rolls back a transaction whose user function panicked.
var errUserPanic = errors.New("bolt: panic in a projection's function")

// callUser calls fn and returns its error, or reports ok false with the
// value when it panics (so that the transaction is rolled back before the
// panic goes on: the store's own recovery would take it for bbolt's).
func callUser(fn func() error) (p any, ok bool, err error) {
	defer func() {
		if !ok {
			p = recover()
		}
	}()
	err = fn()
	return nil, true, err
}

// checkpointIn returns the checkpoint under key in tx (0 when there is
// none).
func checkpointIn(tx *bbolt.Tx, key []byte) (uint64, error) {
	b, err := bucket(tx, bucketCheckpoints)
	if err != nil {
		return 0, err
	}
	v, err := lookup(b, key, "checkpoint")
	if err != nil || v == nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, corrupt("checkpoint", key, errors.New("value is not 8 bytes"))
	}
	return binary.BigEndian.Uint64(v), nil
}

// ResetProjection prepares the projection name for a rebuild: in one
// transaction, it calls reset (which may be nil), which should clear the
// projection's read model (DeleteBucket), and sets the checkpoint name to
// 0, so that the next Project replays every event. When reset fails, or
// a ProjectTx refused a name, nothing changes and the error is returned;
// a panic in reset rolls back and panics again.
//
// It fails with an error matching eventstore.ErrProjectionRunning while a
// Project of name runs or waits on this Store; Projects of name started
// while it runs wait for it.
func (s *Store) ResetProjection(ctx context.Context, name string, reset func(tx *ProjectTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := storekit.CheckCheckpointName(name); err != nil {
		return err
	}
	release, err := s.proj.acquire(ctx, s.signal, name, false)
	if err != nil {
		return fmt.Errorf("bolt: reset projection %q: %w", name, err)
	}
	defer release()
	var panicked bool
	var panicVal any
	err = s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketCheckpoints)
		if err != nil {
			return err
		}
		if reset != nil {
			ptx := &ProjectTx{ReadModelTx: ReadModelTx{tx: tx}, name: name}
			defer func() { ptx.finished = true }()
			p, ok, err := callUser(func() error { return reset(ptx) })
			if !ok {
				panicked, panicVal = true, p
				return errUserPanic
			}
			if err := ptx.result(err); err != nil {
				return err
			}
		}
		return b.Put([]byte(name), binary.BigEndian.AppendUint64(nil, 0))
	})
	if panicked {
		panic(panicVal)
	}
	if err != nil && err != eventstore.ErrClosed && ctx.Err() == nil {
		return fmt.Errorf("bolt: reset projection %q: %w", name, err)
	}
	return err
}

// ViewReadModel calls fn with a read-only window on the read models (see
// ReadModelTx), in one read transaction: fn sees the state of one commit,
// every read model together with every checkpoint (LoadCheckpoint in
// between would see a later one). Its error is returned, or
// ErrNotReadModel when fn returned nil after a refused name. A panic in
// fn goes on after the transaction is closed.
//
// fn must not call this Store, nor keep the ReadModelTx or its buckets.
// Like every read transaction, a long fn keeps the pages it sees alive,
// and an Append that must grow the file's memory map waits for it.
func (s *Store) ViewReadModel(ctx context.Context, fn func(tx *ReadModelTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var panicked bool
	var panicVal any
	err := s.view(func(tx *bbolt.Tx) error {
		rtx := &ReadModelTx{tx: tx}
		defer func() { rtx.finished = true }()
		p, ok, err := callUser(func() error { return fn(rtx) })
		if !ok {
			panicked, panicVal = true, p
			return errUserPanic
		}
		return rtx.result(err)
	})
	if panicked {
		panic(panicVal)
	}
	return err
}

// projections holds the names of the projections that run on a store (in
// Project or ResetProjection), one runner per name.
type projections struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed when the name is released

	// onRound and afterRead, when set (by tests), run in Project at the
	// start of each round, and between the read of a batch and its
	// transaction.
	onRound, afterRead func()
}

// acquire takes name, waiting (if wait) until its runner releases it, ctx
// ends or the store closes (sig closes); without wait it fails with
// eventstore.ErrProjectionRunning when name is held. A waiting caller
// also wakes at each commit, to notice Close.
func (p *projections) acquire(ctx context.Context, sig *follow.Signal, name string, wait bool) (release func(), err error) {
	for {
		p.mu.Lock()
		held, busy := p.held[name]
		if !busy {
			if p.held == nil {
				p.held = make(map[string]chan struct{})
			}
			done := make(chan struct{})
			p.held[name] = done
			p.mu.Unlock()
			var once sync.Once
			return func() {
				once.Do(func() {
					p.mu.Lock()
					delete(p.held, name)
					p.mu.Unlock()
					close(done)
				})
			}, nil
		}
		p.mu.Unlock()
		if !wait {
			return nil, eventstore.ErrProjectionRunning
		}
		_, next, closed := sig.Watch()
		if closed {
			return nil, eventstore.ErrClosed
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-held:
		case <-next:
		}
	}
}
