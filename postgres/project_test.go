package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/pgtest"
	"github.com/eventstore-go/eventstore/postgres"
)

// selected is the filter of the projection tests: events of type
// "Selected"; appendMixed also appends events of type "Other".
var selected = eventstore.Filter{Types: []string{"Selected"}}

// appendMixed appends n events in batches of up to 10, one aggregate per
// batch, alternating types Selected and Other, and returns the head.
func appendMixed(tb testing.TB, s *postgres.Store, n int) uint64 {
	tb.Helper()
	head, err := tryAppendMixed(s, n)
	if err != nil {
		tb.Fatalf("append: %v", err)
	}
	return head
}

// tryAppendMixed is appendMixed for any goroutine.
func tryAppendMixed(s *postgres.Store, n int) (uint64, error) {
	var head uint64
	for n > 0 {
		k := min(n, 10)
		agg := "agg-" + randHex()
		batch := make([]eventstore.Event, k)
		for i := range batch {
			typ := "Selected"
			if i%2 == 1 {
				typ = "Other"
			}
			batch[i] = eventstore.Event{AggregateID: agg, Type: typ, Payload: []byte(`{"n":1}`)}
		}
		out, err := s.Append(context.Background(), batch...)
		if err != nil {
			return 0, err
		}
		head = out[len(out)-1].Position
		n -= k
	}
	return head, nil
}

// appendTyped appends n events of type typ, one per call, and returns the
// head.
func appendTyped(tb testing.TB, s *postgres.Store, typ string, n int) uint64 {
	tb.Helper()
	var head uint64
	for range n {
		out, err := s.Append(context.Background(), eventstore.Event{AggregateID: "agg-" + randHex(), Type: typ, Payload: []byte(`{}`)})
		if err != nil {
			tb.Fatalf("append: %v", err)
		}
		head = out[0].Position
	}
	return head
}

var hexCounter atomic.Uint64

// randHex returns a name no other call in this process returns.
func randHex() string { return fmt.Sprintf("%x-%d", hexCounter.Add(1), time.Now().UnixNano()) }

// openSame opens another Store, with its own pool, on s's schema: as
// another process would.
func openSame(tb testing.TB, s *postgres.Store) *postgres.Store {
	tb.Helper()
	o, err := postgres.Open(context.Background(), pgtest.DSN(), &postgres.Options{Schema: s.Schema()})
	if err != nil {
		tb.Fatalf("open %s again: %v", s.Schema(), err)
	}
	tb.Cleanup(func() { o.Close() })
	return o
}

// readModel creates the read model of the projection tests in s's schema
// and returns its name, quoted: one row per event applied, with n the
// number of times it was applied.
func readModel(tb testing.TB, s *postgres.Store) string {
	tb.Helper()
	tbl := table(s, "readmodel")
	if _, err := pgtest.Admin(tb).Exec(context.Background(),
		`CREATE TABLE `+tbl+` (id uuid PRIMARY KEY, position bigint NOT NULL, n int NOT NULL)`); err != nil {
		tb.Fatalf("create read model: %v", err)
	}
	return tbl
}

// apply is the handler of the projection tests: it counts e in tbl, so
// that an event applied twice shows as n = 2 instead of failing.
func apply(tbl string) func(context.Context, pgx.Tx, eventstore.Event) error {
	q := `INSERT INTO ` + tbl + ` AS r (id, position, n) VALUES ($1, $2, 1) ON CONFLICT (id) DO UPDATE SET n = r.n + 1`
	return func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
		_, err := tx.Exec(ctx, q, e.ID, int64(e.Position))
		return err
	}
}

// checkReadModel checks, in one snapshot of the read model and the
// checkpoint of name, that the read model holds exactly the selected
// events up to the checkpoint, each applied once, and returns the
// checkpoint.
func checkReadModel(tb testing.TB, s *postgres.Store, tbl, name string) uint64 {
	tb.Helper()
	ctx := context.Background()
	tx, err := pgtest.Admin(tb).BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	require.NoError(tb, err)
	defer tx.Rollback(ctx)
	var cp int64
	err = tx.QueryRow(ctx, `SELECT position FROM `+table(s, "checkpoints")+` WHERE name = $1`, name).Scan(&cp)
	if errors.Is(err, pgx.ErrNoRows) {
		cp = 0
	} else {
		require.NoError(tb, err)
	}
	rows, err := tx.Query(ctx, `SELECT id::text, position, n FROM `+tbl+` ORDER BY position`)
	require.NoError(tb, err)
	got := map[string]int64{}
	for rows.Next() {
		var id string
		var pos int64
		var n int
		require.NoError(tb, rows.Scan(&id, &pos, &n))
		if n != 1 {
			tb.Errorf("event %s at %d applied %d times", id, pos, n)
		}
		got[id] = pos
	}
	require.NoError(tb, rows.Err())
	want := map[string]int64{}
	for e, err := range s.Read(ctx, selected, 0) {
		require.NoError(tb, err)
		if e.Position > uint64(cp) {
			break
		}
		want[e.ID] = int64(e.Position)
	}
	for id, pos := range want {
		if _, ok := got[id]; !ok {
			tb.Errorf("selected event %s at %d <= checkpoint %d is missing from the read model", id, pos, cp)
		}
	}
	for id, pos := range got {
		if _, ok := want[id]; !ok {
			tb.Errorf("read model holds event %s at %d, not a selected event <= checkpoint %d", id, pos, cp)
		}
	}
	if tb.Failed() {
		tb.FailNow()
	}
	return uint64(cp)
}

// runProject runs Project in a goroutine until the returned stop is
// called; stop returns what Project returned.
func runProject(tb testing.TB, s *postgres.Store, name string, handle func(context.Context, pgx.Tx, eventstore.Event) error) (stop func() error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Project(ctx, name, selected, handle) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				err = errors.New("Project did not return within a minute of its ctx ending")
			}
		})
		return err
	}
	tb.Cleanup(func() { stop() })
	return stop
}

// waitCheckpoint waits until the checkpoint of name is at least want, and
// fails after a minute.
func waitCheckpoint(tb testing.TB, s *postgres.Store, name string, want uint64) uint64 {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		cp, err := s.LoadCheckpoint(context.Background(), name)
		require.NoError(tb, err)
		if cp >= want {
			return cp
		}
		if time.Now().After(deadline) {
			tb.Fatalf("checkpoint %q at %d after a minute, want %d", name, cp, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Project catches up over several batches, follows appends made through
// another pool, moves its checkpoint over events it does not select, and
// resumes from its checkpoint.
func TestProject(t *testing.T) {
	s := mustOpen(t, &postgres.Options{PollInterval: slowPoll})
	tbl := readModel(t, s)
	const name = "counts"

	// Catch-up: three batches' worth of selected events.
	head := appendMixed(t, s, 2*postgres.ProjectBatchSize+200)
	stop := runProject(t, s, name, apply(tbl))
	require.Equal(t, head, waitCheckpoint(t, s, name, head))
	checkReadModel(t, s, tbl, name)

	// Live: appends through another pool wake the runner (not the poll).
	other := openSame(t, s)
	head = appendMixed(t, other, 21)
	require.Equal(t, head, waitCheckpoint(t, s, name, head))
	checkReadModel(t, s, tbl, name)

	// Unselected events only: the checkpoint still reaches the head.
	head = appendTyped(t, other, "Other", 3)
	require.Equal(t, head, waitCheckpoint(t, s, name, head))

	require.ErrorIs(t, stop(), context.Canceled)

	// Resume: what was appended while no runner ran, once.
	head = appendMixed(t, s, 33)
	stop = runProject(t, s, name, apply(tbl))
	require.Equal(t, head, waitCheckpoint(t, s, name, head))
	checkReadModel(t, s, tbl, name)
	require.ErrorIs(t, stop(), context.Canceled)
}

// A handler error rolls its batch back, checkpoint included, and Project
// returns it as a *ProjectError naming the event.
func TestProject_HandlerError(t *testing.T) {
	s := mustOpen(t, nil)
	tbl := readModel(t, s)
	const name = "failing"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	first := appendTyped(t, s, "Selected", 5)
	stop := runProject(t, s, name, apply(tbl))
	waitCheckpoint(t, s, name, first)
	require.ErrorIs(t, stop(), context.Canceled)

	appendTyped(t, s, "Selected", 5)
	var bad eventstore.Event
	for e, err := range s.Read(ctx, selected, first+2) {
		require.NoError(t, err)
		bad = e
		break
	}
	boom := errors.New("boom")
	err := s.Project(ctx, name, selected, func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
		if err := apply(tbl)(ctx, tx, e); err != nil {
			return err
		}
		if e.Position == bad.Position {
			return boom
		}
		return nil
	})
	require.ErrorIs(t, err, boom)
	var pe *postgres.ProjectError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, postgres.ProjectError{Name: name, Position: bad.Position, EventID: bad.ID, Err: boom}, *pe)

	// Nothing of the failed batch is stored: the events before the bad one
	// in it neither.
	require.Equal(t, first, checkReadModel(t, s, tbl, name))

	head, err := s.Head(ctx)
	require.NoError(t, err)
	stop = runProject(t, s, name, apply(tbl))
	waitCheckpoint(t, s, name, head)
	checkReadModel(t, s, tbl, name)
	require.ErrorIs(t, stop(), context.Canceled)
}

// Close ends a running Project with ErrClosed, and a waiting one too.
func TestProject_Close(t *testing.T) {
	s := mustOpen(t, nil)
	tbl := readModel(t, s)
	other := openSame(t, s)
	ctx := context.Background()
	head := appendMixed(t, s, 10)
	done := make(chan error, 2)
	go func() { done <- s.Project(ctx, "p", selected, apply(tbl)) }()
	waitCheckpoint(t, s, "p", head)
	go func() { done <- other.Project(ctx, "p", selected, apply(tbl)) }()
	waitFor(t, "the second runner to wait", func() bool { return lockWaiting(t, other.Schema(), "p") == 1 })
	require.NoError(t, other.Close())
	require.NoError(t, s.Close())
	for range 2 {
		select {
		case err := <-done:
			require.ErrorIs(t, err, eventstore.ErrClosed)
		case <-time.After(time.Minute):
			t.Fatal("Project did not return after Close")
		}
	}
}

// A runner whose lock connection is killed in the middle of a batch
// loses that batch (fencing): its transaction dies with the connection,
// releasing the checkpoint row at once, so the standby takes over and
// commits while the old runner's handler still runs. The old runner then
// goes back to waiting, and every event is applied once.
func TestProject_LockLostMidBatch(t *testing.T) {
	a := mustOpen(t, nil)
	b := openSame(t, a)
	tbl := readModel(t, a)
	const name = "fenced"
	head := appendTyped(t, a, "Selected", 10)
	blocked := make(chan struct{})
	resume := make(chan struct{})
	var once sync.Once
	stopA := runProject(t, a, name, func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
		if err := apply(tbl)(ctx, tx, e); err != nil {
			return err
		}
		if e.Position == 5 {
			once.Do(func() {
				close(blocked)
				select {
				case <-resume:
				case <-ctx.Done():
				}
			})
		}
		return nil
	})
	<-blocked
	stopB := runProject(t, b, name, apply(tbl))
	waitFor(t, "b to wait", func() bool { return lockWaiting(t, a.Schema(), name) == 1 })
	terminate(t, lockHolder(t, a.Schema(), name))
	require.Equal(t, head, waitCheckpoint(t, b, name, head), "b took over while a's handler still ran")
	close(resume)
	waitFor(t, "a to wait again", func() bool { return lockWaiting(t, a.Schema(), name) == 1 })
	require.Equal(t, head, checkReadModel(t, a, tbl, name))

	head = appendTyped(t, a, "Selected", 3)
	require.Equal(t, head, waitCheckpoint(t, a, name, head))
	require.Equal(t, head, checkReadModel(t, a, tbl, name))
	require.ErrorIs(t, stopA(), context.Canceled)
	require.ErrorIs(t, stopB(), context.Canceled)
}

// A checkpoint moved by SaveCheckpoint while Project runs is where its
// next batch starts: the batch's transaction checks the checkpoint it read.
func TestProject_CheckpointMoved(t *testing.T) {
	s := mustOpen(t, &postgres.Options{PollInterval: slowPoll})
	tbl := readModel(t, s)
	ctx := context.Background()
	const name = "moved"
	head := appendTyped(t, s, "Selected", 10)
	stop := runProject(t, s, name, apply(tbl))
	waitCheckpoint(t, s, name, head)
	require.NoError(t, s.SaveCheckpoint(ctx, name, head+5))
	head = appendTyped(t, s, "Selected", 10)
	require.Equal(t, head, waitCheckpoint(t, s, name, head))
	require.ErrorIs(t, stop(), context.Canceled)
	var skipped, applied int
	require.NoError(t, pgtest.Admin(t).QueryRow(ctx, `SELECT count(*) FILTER (WHERE position BETWEEN $1 AND $2), count(*) FROM `+tbl,
		int64(head-9), int64(head-5)).Scan(&skipped, &applied))
	require.Zero(t, skipped, "events up to the saved checkpoint were applied")
	require.Equal(t, 15, applied)
}

// lockRows returns how many sessions hold (granted) or wait for the lock
// of projection name in schema.
func lockRows(tb testing.TB, schema, name string, granted bool) int {
	tb.Helper()
	key := uint64(postgres.ProjectionLockKey(schema, name))
	var n int
	require.NoError(tb, pgtest.Admin(tb).QueryRow(context.Background(), `SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1 AND granted = $3`,
		int64(key>>32), int64(key&0xffffffff), granted).Scan(&n))
	return n
}

func lockWaiting(tb testing.TB, schema, name string) int { return lockRows(tb, schema, name, false) }

// lockHolder returns the backend pid that holds the lock of projection
// name in schema, waiting up to a minute for one.
func lockHolder(tb testing.TB, schema, name string) int {
	tb.Helper()
	key := uint64(postgres.ProjectionLockKey(schema, name))
	deadline := time.Now().Add(time.Minute)
	for {
		var pid int
		err := pgtest.Admin(tb).QueryRow(context.Background(), `SELECT pid FROM pg_locks
			WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
				AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1 AND granted`,
			int64(key>>32), int64(key&0xffffffff)).Scan(&pid)
		if err == nil {
			return pid
		}
		if !errors.Is(err, pgx.ErrNoRows) || time.Now().After(deadline) {
			tb.Fatalf("no holder of projection %q: %v", name, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// terminate ends a backend, as an administrator or a failover would.
func terminate(tb testing.TB, pid int) {
	tb.Helper()
	var ok bool
	require.NoError(tb, pgtest.Admin(tb).QueryRow(context.Background(), "SELECT pg_terminate_backend($1)", pid).Scan(&ok))
	require.True(tb, ok, "pg_terminate_backend(%d)", pid)
}

// lockResult is what a LockProjection call returned.
type lockResult struct {
	held    context.Context
	release func()
	err     error
}

// lockAsync calls LockProjection in a goroutine.
func lockAsync(ctx context.Context, s *postgres.Store, name string) <-chan lockResult {
	out := make(chan lockResult, 1)
	go func() {
		held, release, err := s.LockProjection(ctx, name)
		out <- lockResult{held, release, err}
	}()
	return out
}

// receive waits up to a minute for a LockProjection call to return.
func receive(tb testing.TB, ch <-chan lockResult) lockResult {
	tb.Helper()
	select {
	case r := <-ch:
		if r.release != nil {
			tb.Cleanup(r.release)
		}
		return r
	case <-time.After(time.Minute):
		tb.Fatal("LockProjection did not return within a minute")
		return lockResult{}
	}
}

// ended waits up to a minute for held to end and returns how long it took.
func ended(tb testing.TB, held context.Context) time.Duration {
	tb.Helper()
	start := time.Now()
	select {
	case <-held.Done():
		return time.Since(start)
	case <-time.After(time.Minute):
		tb.Fatal("held did not end within a minute")
		return 0
	}
}

// Holders on two Stores (two pools, as two processes) never hold one name
// at once, and each gets its turn.
func TestLockProjection_Exclusive(t *testing.T) {
	a := mustOpen(t, nil)
	b := openSame(t, a)
	stores := []*postgres.Store{a, b}
	var holders, turns atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for range 5 {
				held, release, err := stores[g%2].LockProjection(context.Background(), "exclusive")
				if err != nil {
					t.Error(err)
					return
				}
				if n := holders.Add(1); n != 1 {
					t.Errorf("%d holders at once", n)
				}
				turns.Add(1)
				time.Sleep(10 * time.Millisecond)
				if held.Err() != nil {
					t.Errorf("held ended while holding: %v", context.Cause(held))
				}
				holders.Add(-1)
				release()
			}
		})
	}
	wg.Wait()
	require.Equal(t, int64(20), turns.Load())
	// Other names and other schemas are other locks.
	_, r1, err := a.LockProjection(context.Background(), "one")
	require.NoError(t, err)
	defer r1()
	_, r2, err := a.LockProjection(context.Background(), "two")
	require.NoError(t, err)
	defer r2()
	c := mustOpen(t, nil)
	_, r3, err := c.LockProjection(context.Background(), "one")
	require.NoError(t, err)
	defer r3()
}

// release hands the lock to the waiter; ctx ending releases it too.
func TestLockProjection_Release(t *testing.T) {
	a := mustOpen(t, nil)
	b := openSame(t, a)
	ctx := context.Background()
	const name = "handover"
	heldA, releaseA, err := a.LockProjection(ctx, name)
	require.NoError(t, err)
	waiting := lockAsync(ctx, b, name)
	waitFor(t, "b to wait", func() bool { return lockWaiting(t, a.Schema(), name) == 1 })
	select {
	case <-waiting:
		t.Fatal("b got the lock while a held it")
	default:
	}
	releaseA()
	releaseA() // idempotent
	require.ErrorIs(t, heldA.Err(), context.Canceled)
	r := receive(t, waiting)
	require.NoError(t, r.err)
	require.NoError(t, r.held.Err())

	// The hold ends with the ctx it was taken with, and gives the lock up.
	cctx, cancel := context.WithCancel(ctx)
	next := lockAsync(cctx, a, name)
	waitFor(t, "a to wait", func() bool { return lockWaiting(t, a.Schema(), name) == 1 })
	r.release()
	r2 := receive(t, next)
	require.NoError(t, r2.err)
	cancel()
	ended(t, r2.held)
	waitFor(t, "the lock to be free", func() bool { return lockRows(t, a.Schema(), name, true) == 0 })
}

// A ctx that ends while LockProjection waits ends the wait in the server
// at once: LockProjection returns ctx's error and takes nothing.
func TestLockProjection_CancelWhileWaiting(t *testing.T) {
	a := mustOpen(t, nil)
	b := openSame(t, a)
	const name = "cancelled"
	_, releaseA, err := a.LockProjection(context.Background(), name)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	waiting := lockAsync(ctx, b, name)
	waitFor(t, "b to wait", func() bool { return lockWaiting(t, a.Schema(), name) == 1 })
	cancel()
	r := receive(t, waiting)
	require.ErrorIs(t, r.err, context.Canceled)
	require.Nil(t, r.held)
	waitFor(t, "the wait to end in the server", func() bool { return lockWaiting(t, a.Schema(), name) == 0 })
	releaseA()
	waitFor(t, "the lock to be free", func() bool { return lockRows(t, a.Schema(), name, true) == 0 })

	// And Close ends a wait with ErrClosed.
	_, releaseA, err = a.LockProjection(context.Background(), name)
	require.NoError(t, err)
	defer releaseA()
	waiting = lockAsync(context.Background(), b, name)
	waitFor(t, "b to wait", func() bool { return lockWaiting(t, a.Schema(), name) == 1 })
	require.NoError(t, b.Close())
	require.ErrorIs(t, receive(t, waiting).err, eventstore.ErrClosed)
	waitFor(t, "the wait to end in the server", func() bool { return lockWaiting(t, a.Schema(), name) == 0 })
}

// Killing the holder's connection ends held within a few seconds, and the
// waiter takes over.
func TestLockProjection_ConnectionKilled(t *testing.T) {
	a := mustOpen(t, nil)
	b := openSame(t, a)
	ctx := context.Background()
	const name = "killed"
	heldA, releaseA, err := a.LockProjection(ctx, name)
	require.NoError(t, err)
	waiting := lockAsync(ctx, b, name)
	waitFor(t, "b to wait", func() bool { return lockWaiting(t, a.Schema(), name) == 1 })
	terminate(t, lockHolder(t, a.Schema(), name))
	took := ended(t, heldA)
	t.Logf("held ended %v after the connection was killed", took)
	cause := context.Cause(heldA)
	require.Error(t, cause)
	require.NotErrorIs(t, cause, context.Canceled, "the cause is the lost connection: %v", cause)
	r := receive(t, waiting)
	require.NoError(t, r.err)
	require.NoError(t, r.held.Err())
	releaseA() // after the loss: harmless
	require.NoError(t, r.held.Err())

	// Close ends the holds of the store.
	require.NoError(t, b.Close())
	ended(t, r.held)
	require.ErrorIs(t, context.Cause(r.held), eventstore.ErrClosed)
	waitFor(t, "the lock to be free", func() bool { return lockRows(t, a.Schema(), name, true) == 0 })
}

// ResetProjection refuses a projection that runs (ErrProjectionRunning),
// and otherwise clears the read model and the checkpoint in one
// transaction, so that the next run rebuilds it.
func TestResetProjection(t *testing.T) {
	s := mustOpen(t, nil)
	other := openSame(t, s)
	tbl := readModel(t, s)
	ctx := context.Background()
	const name = "rebuilt"
	head := appendMixed(t, s, 20)
	truncate := func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "TRUNCATE "+tbl)
		return err
	}
	stop := runProject(t, s, name, apply(tbl))
	waitCheckpoint(t, s, name, head)
	require.ErrorIs(t, s.ResetProjection(ctx, name, truncate), eventstore.ErrProjectionRunning)
	require.ErrorIs(t, other.ResetProjection(ctx, name, truncate), eventstore.ErrProjectionRunning)
	require.Equal(t, head, checkReadModel(t, s, tbl, name))
	require.ErrorIs(t, stop(), context.Canceled)

	// A failing reset changes nothing.
	boom := errors.New("boom")
	require.ErrorIs(t, s.ResetProjection(ctx, name, func(ctx context.Context, tx pgx.Tx) error {
		if err := truncate(ctx, tx); err != nil {
			return err
		}
		return boom
	}), boom)
	require.Equal(t, head, checkReadModel(t, s, tbl, name))

	require.NoError(t, other.ResetProjection(ctx, name, truncate))
	require.Equal(t, uint64(0), checkReadModel(t, s, tbl, name))
	var rows int
	require.NoError(t, pgtest.Admin(t).QueryRow(ctx, "SELECT count(*) FROM "+tbl).Scan(&rows))
	require.Zero(t, rows)

	stop = runProject(t, s, name, apply(tbl))
	waitCheckpoint(t, s, name, head)
	require.Equal(t, head, checkReadModel(t, s, tbl, name))
	require.ErrorIs(t, stop(), context.Canceled)
}

// eventReads counts the queries that read events, on every connection
// made from the configuration it traces.
type eventReads struct {
	events string // the quoted events table
	n      atomic.Int64
}

func (r *eventReads) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.Contains(data.SQL, r.events+" WHERE position >") {
		r.n.Add(1)
	}
	return ctx
}

func (r *eventReads) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// An idle runner waits for a commit: it reads no events until one comes.
func TestProject_IdleReadsNothing(t *testing.T) {
	reads := &eventReads{}
	s := openWithConfig(t, func(cfg *pgxpool.Config) { cfg.ConnConfig.Tracer = reads })
	reads.events = pgx.Identifier{s.Schema()}.Sanitize() + ".events"
	tbl := readModel(t, s)
	const name = "idle"
	head := appendMixed(t, s, 10)
	stop := runProject(t, s, name, apply(tbl))
	waitCheckpoint(t, s, name, head)
	// A wake-up or two may follow the start (the first poll, the listener
	// connecting); then the count must stay still.
	for deadline := time.Now().Add(30 * time.Second); ; {
		before := reads.n.Load()
		time.Sleep(time.Second)
		if reads.n.Load() == before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an idle runner still reads events: %d reads so far", reads.n.Load())
		}
	}
	idle := reads.n.Load()
	head = appendMixed(t, s, 4)
	waitCheckpoint(t, s, name, head)
	require.Greater(t, reads.n.Load(), idle, "the commit woke the runner")
	checkReadModel(t, s, tbl, name)
	require.ErrorIs(t, stop(), context.Canceled)
}

// A name no checkpoint can have is refused at once, and a closed store
// refuses everything with ErrClosed.
func TestProject_Refusals(t *testing.T) {
	s := mustOpen(t, nil)
	ctx := context.Background()
	noop := func(context.Context, pgx.Tx, eventstore.Event) error { return nil }
	_, _, err := s.LockProjection(ctx, "")
	require.ErrorIs(t, err, eventstore.ErrInvalidCheckpoint)
	require.ErrorIs(t, s.Project(ctx, "bad\x00name", selected, noop), eventstore.ErrInvalidCheckpoint)
	require.ErrorIs(t, s.ResetProjection(ctx, "", nil), eventstore.ErrInvalidCheckpoint)
	require.Error(t, s.Project(ctx, "p", selected, nil))

	require.NoError(t, s.Close())
	_, _, err = s.LockProjection(ctx, "p")
	require.ErrorIs(t, err, eventstore.ErrClosed)
	require.ErrorIs(t, s.Project(ctx, "p", selected, noop), eventstore.ErrClosed)
	require.ErrorIs(t, s.ResetProjection(ctx, "p", nil), eventstore.ErrClosed)
}

// The lock's connection asks the server for TCP keepalives, so that the
// server frees the lock of a runner that vanished silently; the handler's
// transaction runs on that connection.
func TestProject_LockConnectionKeepalives(t *testing.T) {
	s := mustOpen(t, nil)
	appendTyped(t, s, "Selected", 1)
	got := map[string]string{}
	enough := errors.New("enough")
	err := s.Project(context.Background(), "keepalive", selected, func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
		for _, name := range []string{"tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout"} {
			var v string
			if err := tx.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
				return err
			}
			got[name] = v
		}
		return enough
	})
	require.ErrorIs(t, err, enough)
	if got["tcp_keepalives_idle"] == "0" {
		t.Skip("connected through a Unix socket, where the server ignores keepalive settings")
	}
	require.Equal(t, map[string]string{
		"tcp_keepalives_idle":     "10",
		"tcp_keepalives_interval": "5",
		"tcp_keepalives_count":    "3",
		"tcp_user_timeout":        "30000",
	}, got)
}
