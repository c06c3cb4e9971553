package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/storekit"
)

// ProjectBatchSize is how many selected events Project hands to its
// handler in one transaction, at most. A batch is read before its
// transaction begins; a larger one would hold the lock connection's
// transaction (and the read model's row locks) open longer, a smaller one
// would pay a commit for fewer events.
const ProjectBatchSize = 256

// Timings of a projection lock's connection.
const (
	// lockPingInterval is how often an idle hold checks its connection.
	lockPingInterval = time.Second
	// lockPingTimeout bounds one check; a check that fails ends the hold.
	// Generous, so that a loaded server does not lose holds for nothing:
	// a silent connection ends a hold within lockPingInterval +
	// lockPingTimeout + lockCancelDelay (6 s).
	lockPingTimeout = 3 * time.Second
	// lockCancelDelay is how long a cancelled statement on a lock
	// connection waits for the server to honour the cancel request before
	// the connection is dropped.
	lockCancelDelay = 2 * time.Second
	// lockCloseTimeout bounds the unlock and goodbye of a connection.
	lockCloseTimeout = time.Second
)

// lockKeepalives are the server settings of every lock connection, so that
// the server drops the session of a runner that vanished without closing
// its socket (its host lost power, its network broke) within about 25 s
// of its last traffic, and so frees the lock for a standby: the server
// probes a socket idle for 10 s every 5 s and gives up after 3 probes
// unanswered, or when data it sent stays unacknowledged for 30 s
// (tcp_user_timeout, PostgreSQL 12 or later). A connection string's own
// values of these settings win. They do nothing on Unix sockets, whose
// peers cannot vanish silently.
var lockKeepalives = map[string]string{
	"tcp_keepalives_idle":     "10",
	"tcp_keepalives_interval": "5",
	"tcp_keepalives_count":    "3",
	"tcp_user_timeout":        "30000",
}

// errLockLost is the cause of a held context whose connection failed.
var errLockLost = errors.New("projection lock lost")

// errReleased is the cause of a held context after release.
var errReleased = errors.New("postgres: projection lock released")

// errCheckpointMoved reports a checkpoint that changed between Project's
// read of it and its transaction.
var errCheckpointMoved = errors.New("postgres: checkpoint moved")

// ProjectError reports that a Project handler failed. Its transaction was
// rolled back: neither the read model changes of its batch nor its
// checkpoint are stored. errors.Unwrap gives the handler's error.
type ProjectError struct {
	Name     string // the projection
	Position uint64 // the position of the event the handler failed on
	EventID  string // that event's ID
	Err      error  // what the handler returned
}

// Error implements error.
func (e *ProjectError) Error() string {
	return fmt.Sprintf("postgres: projection %q: event %s at position %d: %v", e.Name, e.EventID, e.Position, e.Err)
}

// Unwrap returns the handler's error.
func (e *ProjectError) Unwrap() error { return e.Err }

// projectionKey is the advisory lock key of projection name in schema: 64
// bits of FNV-1a over both, apart from the key of migrations (lockKey) by
// its prefix. Schema names hold no NUL byte, so the pair is unambiguous.
func projectionKey(schema, name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("github.com/eventstore-go/eventstore/postgres projection "))
	h.Write([]byte(schema))
	h.Write([]byte{0})
	h.Write([]byte(name))
	return int64(h.Sum64())
}

// lockConnConfig is the configuration of a lock connection: the pool's,
// with a cancelled ctx cancelling the statement in the server (a wait for
// the lock above all) rather than dropping the connection at once, and the
// keepalives of lockKeepalives.
func (s *Store) lockConnConfig() *pgx.ConnConfig {
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: lockCancelDelay}
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = make(map[string]string)
	}
	for k, v := range lockKeepalives {
		if _, ok := cfg.RuntimeParams[k]; !ok {
			cfg.RuntimeParams[k] = v
		}
	}
	return cfg
}

// untilClose returns ctx, also cancelled (with cause ErrClosed) when the
// store closes.
func (s *Store) untilClose(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.closeCtx, func() { cancel(eventstore.ErrClosed) })
	return c, func() { stop(); cancel(context.Canceled) }
}

// lockError maps an error of taking a lock: ctx's own error when ctx
// ended, ErrClosed after Close.
func (s *Store) lockError(ctx context.Context, what, name string, err error) error {
	if s.closed.Load() {
		return fmt.Errorf("postgres: %s %q: %w", what, name, eventstore.ErrClosed)
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return fmt.Errorf("postgres: %s %q: %w", what, name, err)
}

// closeLockConn closes a lock connection, after giving up its lock with
// pg_advisory_unlock when unlock is set, so that a standby has it by the
// time the caller returns (ending the session frees it too, a moment
// later).
func closeLockConn(conn *pgx.Conn, key int64, unlock bool) {
	ctx, cancel := context.WithTimeout(context.Background(), lockCloseTimeout)
	defer cancel()
	if unlock && !conn.IsClosed() && conn.PgConn().TxStatus() == 'I' {
		conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", key)
	}
	conn.Close(ctx)
}

// LockProjection blocks until the caller holds the projection name: in
// every process and Store on this schema of this database, at most one
// caller holds a name at a time. It returns held, a context that ends
// when the hold is lost, and release, which gives the hold up (calling it
// again does nothing). Project takes the same lock: a caller holding name
// excludes Project runners of it, and ResetProjection of it fails with
// eventstore.ErrProjectionRunning.
//
// The hold is a session-level advisory lock, pg_advisory_lock, on a
// connection of its own made from the pool's configuration (the pool's
// hooks, AfterConnect and the like, do not run on it), so that neither
// waiting nor holding takes one of the pool's connections. Every waiter
// and every holder thus has a connection to the server. The lock's key
// is 64 bits of FNV-1a over the schema and name: two names whose keys
// collide exclude each other as if they were one (one waits while the
// other runs; neither is ever held twice), which among n names happens
// with a probability of about n²/2⁶⁵.
//
// The wait happens in the server, in line with the other waiters: the
// lock passes the moment its holder gives it up, without polling. When
// ctx ends while it waits, the server is asked to cancel the wait and the
// connection is closed (a lock granted just as the cancel arrives goes
// with it), and LockProjection returns ctx's error; after Close it returns
// an error matching eventstore.ErrClosed.
//
// held carries ctx's values, and ends (context.Cause says why) when:
//   - ctx ends: the hold is then given up, as by release;
//   - release is called;
//   - the store closes (cause eventstore.ErrClosed);
//   - the connection fails: it is checked every second or so (and by
//     each statement of Project's transactions), so held ends about a
//     second after the server kills it (pg_terminate_backend, a restart),
//     and within 6 s when the server stops answering.
//
// A process that dies, even by SIGKILL, gives up its holds at once: the
// server sees its sockets close and ends its sessions. A runner that
// vanishes silently (its host or network gone) is detected by TCP
// keepalives, which the lock connection asks the server for: the server
// ends such a session, and frees its lock, within about 25 seconds (see
// the tcp_keepalives_* settings; a connection string may set others).
// Until then the lost runner may still believe it holds the lock for as
// long as its own checks take to fail, but it cannot commit on that
// session any more: a write made in a transaction on the lock's own
// connection, as Project does, is fenced by the lock.
//
// It fails with an error matching eventstore.ErrInvalidCheckpoint for a
// name no checkpoint can have. It needs PostgreSQL 12 or later, and
// session-level advisory locks, which a pooler in transaction mode
// (PgBouncer's pool_mode=transaction) does not provide.
func (s *Store) LockProjection(ctx context.Context, name string) (held context.Context, release func(), err error) {
	h, err := s.lockProjection(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	return h.ctx, h.release, nil
}

// hold is a projection lock held on a connection of its own. Its
// goroutine (watch) checks the connection while the hold is idle and
// closes it when the hold ends.
type hold struct {
	s      *Store
	name   string
	key    int64
	ctx    context.Context // held: see LockProjection
	cancel context.CancelCauseFunc
	done   chan struct{} // closed when watch has closed conn

	mu   sync.Mutex // serializes use of conn: checks and Project's transactions
	conn *pgx.Conn  // nil once closed
}

func (s *Store) lockProjection(ctx context.Context, name string) (*hold, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := storekit.CheckCheckpointName(name); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, eventstore.ErrClosed
	}
	wctx, stop := s.untilClose(ctx)
	defer stop()
	key := projectionKey(s.opts.Schema, name)
	conn, err := pgx.ConnectConfig(wctx, s.lockConnConfig())
	if err != nil {
		return nil, s.lockError(ctx, "lock projection", name, err)
	}
	if _, err := conn.Exec(wctx, "SELECT pg_advisory_lock($1)", key); err != nil || wctx.Err() != nil {
		closeLockConn(conn, key, false) // a lock granted as the cancel arrived ends with the session
		return nil, s.lockError(ctx, "lock projection", name, err)
	}
	h := &hold{s: s, name: name, key: key, conn: conn, done: make(chan struct{})}
	h.ctx, h.cancel = context.WithCancelCause(ctx)
	s.hmu.Lock()
	if s.closed.Load() {
		s.hmu.Unlock()
		h.cancel(eventstore.ErrClosed)
		closeLockConn(conn, key, true)
		return nil, fmt.Errorf("postgres: lock projection %q: %w", name, eventstore.ErrClosed)
	}
	s.holds[h] = struct{}{}
	s.hmu.Unlock()
	go h.watch()
	return h, nil
}

// release gives the hold up and waits until its connection is closed.
func (h *hold) release() {
	h.cancel(errReleased)
	<-h.done
}

// releaseHolds ends every hold of the store (cause ErrClosed) and waits
// for their connections to close. Close calls it.
func (s *Store) releaseHolds() {
	s.hmu.Lock()
	hs := make([]*hold, 0, len(s.holds))
	for h := range s.holds {
		hs = append(hs, h)
	}
	s.hmu.Unlock()
	for _, h := range hs {
		h.cancel(eventstore.ErrClosed)
	}
	for _, h := range hs {
		<-h.done
	}
}

// watch checks the connection every lockPingInterval until the hold ends,
// then gives up the lock and closes the connection.
func (h *hold) watch() {
	defer close(h.done)
	defer func() {
		h.s.hmu.Lock()
		delete(h.s.holds, h)
		h.s.hmu.Unlock()
	}()
	t := time.NewTicker(lockPingInterval)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			h.mu.Lock()
			h.closeConn(true)
			h.mu.Unlock()
			return
		case <-t.C:
			h.ping()
		}
	}
}

// ping checks the connection, unless a transaction uses it (which checks
// it as well as a ping would).
func (h *hold) ping() {
	if !h.mu.TryLock() {
		return
	}
	defer h.mu.Unlock()
	if h.conn == nil || h.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), lockPingTimeout)
	defer cancel()
	if err := h.conn.Ping(ctx); err != nil {
		h.lost(err)
	}
}

// lost ends the hold after its connection failed with err. h.mu is held.
func (h *hold) lost(err error) {
	h.cancel(fmt.Errorf("postgres: projection %q: %w: %w", h.name, errLockLost, err))
	h.closeConn(false)
}

// closeConn closes the connection, if still open. h.mu is held.
func (h *hold) closeConn(unlock bool) {
	if h.conn != nil {
		closeLockConn(h.conn, h.key, unlock)
		h.conn = nil
	}
}

// inTx runs fn in a transaction on the hold's connection, and commits it
// when fn returns nil. The transaction ends with the hold: it cannot
// commit once the lock is lost. A connection that fails ends the hold.
func (h *hold) inTx(fn func(tx pgx.Tx) error) (err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn == nil || h.ctx.Err() != nil {
		return context.Cause(h.ctx)
	}
	defer func() {
		if h.conn.IsClosed() {
			cause := err
			if pe, ok := err.(*ProjectError); ok {
				cause = pe.Err // the hold's failure, not the handler's
			}
			h.lost(cause)
		}
	}()
	tx, err := h.conn.Begin(h.ctx)
	if err != nil {
		return err
	}
	defer func() {
		// Nothing after a commit; and the hold's ctx may have ended.
		ctx, cancel := context.WithTimeout(context.Background(), lockCloseTimeout)
		defer cancel()
		tx.Rollback(ctx)
	}()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(h.ctx)
}

// Project runs the projection name: it hands each event that filter
// selects, in position order, to handle, exactly once, in a transaction
// that also advances the projection's checkpoint (LoadCheckpoint(name)),
// so that the changes handle makes through tx and the checkpoint commit
// together or not at all. A read model kept in this database, written
// through tx, thus sees each event once, whatever crashes.
//
// Project runs only while it holds LockProjection(name): other runners,
// in this process or others, wait as hot standbys, and the first in line
// takes over when the runner stops, dies or loses its connection. A
// runner that loses the hold goes back to waiting.
//
// While it holds the lock, Project repeats: read the events after the
// checkpoint that filter selects, at most ProjectBatchSize of them,
// through the pool; then, in one transaction on the lock's own connection
// (so that a lost lock aborts it), lock the checkpoint row and check that
// it still is what was read (else read again), call handle for each event
// with that transaction, write the new checkpoint and commit. A batch
// that reaches the end of the log moves the checkpoint to the head read
// before the batch, over events filter does not select, so that a
// restart does not read them again. When it has caught up, Project waits
// for the next commit to the store (the notifications and polling of
// Subscribe), or ctx, or Close: an idle runner sends no queries but a
// ping of its lock connection every second or so.
//
// handle gets a ctx that ends with the hold. It must do its writes
// through tx, and may read through tx or elsewhere; it must not commit
// or roll back tx. An error from handle rolls the whole batch back
// (checkpoint included) and Project returns it as a *ProjectError naming
// the event; an error that comes from the hold ending (its ctx done, its
// connection lost) is not the handler's: Project waits for the lock again.
//
// Project returns only when ctx ends (ctx.Err()), when the store closes
// (an error matching eventstore.ErrClosed) or with a *ProjectError. Other
// failures (the server unreachable, the lock lost) make it wait and take
// the lock again, with delays growing to 5 s. It fails at once for a name
// no checkpoint can have (eventstore.ErrInvalidCheckpoint) or a nil
// handle.
//
// The checkpoint is an ordinary one of the CheckpointStore: a
// SaveCheckpoint under the same name while Project runs is seen by its
// next batch, which starts from there.
func (s *Store) Project(ctx context.Context, name string, filter eventstore.Filter, handle func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error) error {
	if err := storekit.CheckCheckpointName(name); err != nil {
		return err
	}
	if handle == nil {
		return fmt.Errorf("postgres: project %q: nil handler", name)
	}
	s.startLive()
	delay := minRelisten
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.closed.Load() {
			return fmt.Errorf("postgres: project %q: %w", name, eventstore.ErrClosed)
		}
		h, err := s.lockProjection(ctx, name)
		if err == nil {
			err = s.runProjection(h, name, filter, handle)
			h.release()
			// Only the handler's own failure, as runProjection returns it:
			// a hold's cause may wrap one that the lost connection caused.
			if _, ok := err.(*ProjectError); ok {
				return err
			}
			delay = minRelisten
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.closed.Load() {
			return fmt.Errorf("postgres: project %q: %w", name, eventstore.ErrClosed)
		}
		// The lock lost, or the server unreachable: wait, then queue for
		// the lock again.
		select {
		case <-ctx.Done():
		case <-s.closeCtx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, maxRelisten)
	}
}

// runProjection runs batches while h holds the lock. It returns the error
// that ended it: the hold's, a read's, or a *ProjectError.
func (s *Store) runProjection(h *hold, name string, filter eventstore.Filter, handle func(context.Context, pgx.Tx, eventstore.Event) error) error {
	ctx := h.ctx
	cp, err := s.LoadCheckpoint(ctx, name)
	if err != nil {
		return err
	}
	batch := make([]eventstore.Event, 0, ProjectBatchSize)
	for {
		_, next, closed := s.live.signal.Watch() // before the reads: see follow.Signal
		if closed {
			return eventstore.ErrClosed
		}
		head, err := s.Head(ctx)
		if err != nil {
			return err
		}
		batch = batch[:0]
		for e, err := range s.Read(ctx, filter, cp) {
			if err != nil {
				return err
			}
			batch = append(batch, e)
			if len(batch) == ProjectBatchSize {
				break
			}
		}
		full := len(batch) == ProjectBatchSize
		// Every event up to head committed before the read began, so a
		// batch that is not full holds every selected one up to head.
		to := head
		if len(batch) > 0 {
			last := batch[len(batch)-1].Position
			if full {
				to = last
			} else {
				to = max(head, last)
			}
		}
		if to > cp {
			err := s.projectBatch(h, name, cp, to, batch, handle)
			switch {
			case errors.Is(err, errCheckpointMoved):
				if cp, err = s.LoadCheckpoint(ctx, name); err != nil {
					return err
				}
				continue
			case err != nil:
				return err
			}
			cp = to
			if full {
				continue
			}
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-next:
		}
	}
}

// projectBatch runs handle on batch, and moves the checkpoint from from
// to to, in one transaction on the lock's connection. It returns
// errCheckpointMoved, having done nothing, when the checkpoint is not
// from.
func (s *Store) projectBatch(h *hold, name string, from, to uint64, batch []eventstore.Event, handle func(context.Context, pgx.Tx, eventstore.Event) error) error {
	ctx := h.ctx
	err := h.inTx(func(tx pgx.Tx) error {
		got, err := s.lockCheckpoint(ctx, tx, name)
		if err != nil {
			return err
		}
		if got != from {
			return errCheckpointMoved
		}
		for _, e := range batch {
			if err := handle(ctx, tx, e); err != nil {
				return &ProjectError{Name: name, Position: e.Position, EventID: e.ID, Err: err}
			}
		}
		_, err = tx.Exec(ctx, `UPDATE `+s.schemaSQL()+`.checkpoints SET position = $2::numeric WHERE name = $1`,
			name, strconv.FormatUint(to, 10))
		return err
	})
	if err != nil && ctx.Err() != nil {
		// Whatever failed, the hold ended first: not the handler's fault.
		return context.Cause(ctx)
	}
	return err
}

// lockCheckpoint locks the checkpoint row of name in tx, inserting it at
// 0 if missing, and returns its position.
func (s *Store) lockCheckpoint(ctx context.Context, tx pgx.Tx, name string) (uint64, error) {
	sel := `SELECT position::text FROM ` + s.schemaSQL() + `.checkpoints WHERE name = $1 FOR UPDATE`
	var text string
	err := tx.QueryRow(ctx, sel, name).Scan(&text)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.schemaSQL()+`.checkpoints (name, position) VALUES ($1, 0)
			ON CONFLICT (name) DO NOTHING`, name); err != nil {
			return 0, err
		}
		err = tx.QueryRow(ctx, sel, name).Scan(&text)
	}
	if err != nil {
		return 0, err
	}
	p, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("postgres: checkpoint %q: position %q: %w", name, text, eventstore.ErrCorrupt)
	}
	return p, nil
}

// ResetProjection starts the projection name over: in one transaction it
// calls reset (which clears the read model through tx, say; nil for
// none) and sets the projection's checkpoint to 0, so that the next
// Project of name handles every event again. It takes the projection's
// lock without waiting (pg_try_advisory_lock) and holds it throughout:
// when a runner holds it (a Project, or any LockProjection caller, in any
// process), it fails with an error matching eventstore.ErrProjectionRunning
// and changes nothing. An error from reset rolls everything back and is
// returned wrapped.
func (s *Store) ResetProjection(ctx context.Context, name string, reset func(ctx context.Context, tx pgx.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := storekit.CheckCheckpointName(name); err != nil {
		return err
	}
	if s.closed.Load() {
		return eventstore.ErrClosed
	}
	wctx, stop := s.untilClose(ctx)
	defer stop()
	key := projectionKey(s.opts.Schema, name)
	conn, err := pgx.ConnectConfig(wctx, s.lockConnConfig())
	if err != nil {
		return s.lockError(ctx, "reset projection", name, err)
	}
	defer closeLockConn(conn, key, true)
	var locked bool
	if err := conn.QueryRow(wctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&locked); err != nil {
		return s.lockError(ctx, "reset projection", name, err)
	}
	if !locked {
		return fmt.Errorf("postgres: reset projection %q: %w", name, eventstore.ErrProjectionRunning)
	}
	err = pgx.BeginFunc(wctx, conn, func(tx pgx.Tx) error {
		if reset != nil {
			if err := reset(wctx, tx); err != nil {
				return err
			}
		}
		_, err := tx.Exec(wctx, `INSERT INTO `+s.schemaSQL()+`.checkpoints AS c (name, position) VALUES ($1, 0)
			ON CONFLICT (name) DO UPDATE SET position = 0`, name)
		return err
	})
	if err != nil {
		return s.lockError(ctx, "reset projection", name, err)
	}
	return nil
}
