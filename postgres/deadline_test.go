package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/internal/pgtest"
	"github.com/eventstore-go/eventstore/postgres"
)

// holdLogHead locks the store's log_head row from another session, so that
// every append blocks inside the server, and returns the function that
// releases it (also called when the test ends).
func holdLogHead(t *testing.T, s *postgres.Store) (release func()) {
	t.Helper()
	tx, err := pgtest.Admin(t).Begin(context.Background())
	require.NoError(t, err)
	_, err = tx.Exec(context.Background(), "SELECT 1 FROM "+table(s, "log_head")+" FOR UPDATE")
	require.NoError(t, err)
	var once sync.Once
	release = func() {
		once.Do(func() { require.NoError(t, tx.Rollback(context.Background())) })
	}
	t.Cleanup(release)
	return release
}

// lockWaiters returns how many sessions wait for a lock in a statement on
// the store's schema: appends blocked on log_head, which only appends lock.
func lockWaiters(t *testing.T, s *postgres.Store) int {
	t.Helper()
	var n int
	require.NoError(t, pgtest.Admin(t).QueryRow(context.Background(),
		`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND strpos(query, $1) > 0`,
		pgx.Identifier{s.Schema()}.Sanitize()).Scan(&n))
	return n
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// outcome is what one Append call returned.
type outcome struct {
	events  []eventstore.Event
	err     error
	elapsed time.Duration
}

// startAppend runs Append(ctx, e) in a goroutine and returns where its
// outcome arrives.
func startAppend(s *postgres.Store, ctx context.Context, e eventstore.Event) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		start := time.Now()
		out, err := s.Append(ctx, e)
		ch <- outcome{out, err, time.Since(start)}
	}()
	return ch
}

func event(agg string) eventstore.Event {
	return eventstore.Event{ID: uuid.NewString(), AggregateID: agg, Type: "T", Payload: []byte(`{}`)}
}

// blockCommitter starts an append that blocks on the held log_head alone
// in its pipeline, so that the appends started next queue behind it and
// go together in the following pipeline once cancel is called.
func blockCommitter(t *testing.T, s *postgres.Store) (unblock func()) {
	t.Helper()
	ctx, cancelFirst := context.WithCancel(context.Background())
	t.Cleanup(cancelFirst)
	first := startAppend(s, ctx, event("first"))
	waitFor(t, "the first append to block on log_head", func() bool { return lockWaiters(t, s) == 1 })
	return func() {
		cancelFirst()
		o := <-first
		require.ErrorIs(t, o.err, context.Canceled)
		require.NotErrorIs(t, o.err, eventstore.ErrUnknownOutcome, "cancelled alone while waiting for the lock")
	}
}

// checkStored verifies that the store holds exactly the events of the
// appends reported committed, plus those of unknown outcome that did
// commit, at the positions reported.
func checkStored(t *testing.T, s *postgres.Store, calls []eventstore.Event, outs []outcome) {
	t.Helper()
	all, err := eventstore.Collect(s.ReadAll(context.Background(), 0))
	require.NoError(t, err)
	stored := map[string]eventstore.Event{}
	for _, e := range all {
		stored[e.ID] = e
	}
	for i, o := range outs {
		e, ok := stored[calls[i].ID]
		switch {
		case o.err == nil:
			require.True(t, ok, "append %d reported committed and is not stored", i)
			require.Equal(t, o.events[0], e)
		case errors.Is(o.err, eventstore.ErrUnknownOutcome):
			t.Logf("append %d: unknown outcome; stored: %v", i, ok)
		default:
			require.False(t, ok, "append %d reported failed (%v) and is stored", i, o.err)
		}
	}
}

// An append whose deadline passes while it is first in a group held up by
// a lock returns by its deadline plus postgres.OutcomeWait, whatever its
// place in the group, with ErrUnknownOutcome (the group, still waiting for
// the lock, may commit it later); the appends behind it, with no deadline,
// commit once the lock is released, and the store agrees with what each
// was told.
func TestAppend_GroupLeaderKeepsItsDeadline(t *testing.T) {
	s := mustOpen(t, nil)
	release := holdLogHead(t, s)
	unblock := blockCommitter(t, s)

	const deadline = 2 * time.Second
	calls := make([]eventstore.Event, 8)
	chans := make([]<-chan outcome, 8)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	calls[0] = event("deadline")
	chans[0] = startAppend(s, ctx, calls[0])
	waitFor(t, "the deadline-bound append to queue first", func() bool { return postgres.QueueLen(s) == 1 })
	for i := 1; i < len(calls); i++ {
		calls[i] = event(fmt.Sprint("patient-", i))
		chans[i] = startAppend(s, context.Background(), calls[i])
	}
	waitFor(t, "every append to queue", func() bool { return postgres.QueueLen(s) == len(calls) })
	unblock()
	waitFor(t, "the group to block on log_head", func() bool { return lockWaiters(t, s) == 1 })

	bound := deadline + postgres.OutcomeWait + 2*time.Second // 2 s of slack for a loaded machine
	var first outcome
	select {
	case first = <-chans[0]:
	case <-time.After(bound):
		release()
		first = <-chans[0]
		t.Fatalf("the append with a %v deadline returned after %v, once the lock was released, with %v", deadline, first.elapsed, first.err)
	}
	require.ErrorIs(t, first.err, context.DeadlineExceeded)
	require.ErrorIs(t, first.err, eventstore.ErrUnknownOutcome, "its group is still in flight")
	t.Logf("returned after %v: %v", first.elapsed, first.err)

	release()
	outs := []outcome{first}
	for i := 1; i < len(calls); i++ {
		o := <-chans[i]
		require.NoError(t, o.err, "append %d", i)
		outs = append(outs, o)
	}
	checkStored(t, s, calls, outs)
}

// When every append of a group gives up while the group waits for a lock,
// the group's statement is cancelled on the server, so it stops waiting
// (and holding its place) at once, and each append learns that nothing of
// it was stored.
func TestAppend_GroupAbandoned(t *testing.T) {
	s := mustOpen(t, nil)
	release := holdLogHead(t, s)
	unblock := blockCommitter(t, s)

	const deadline = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	calls := make([]eventstore.Event, 4)
	chans := make([]<-chan outcome, len(calls))
	for i := range calls {
		calls[i] = event(fmt.Sprint("a-", i))
		chans[i] = startAppend(s, ctx, calls[i])
	}
	waitFor(t, "every append to queue", func() bool { return postgres.QueueLen(s) == len(calls) })
	unblock()
	waitFor(t, "the group to block on log_head", func() bool { return lockWaiters(t, s) == 1 })

	outs := make([]outcome, len(calls))
	for i := range calls {
		select {
		case outs[i] = <-chans[i]:
		case <-time.After(deadline + postgres.OutcomeWait + 2*time.Second):
			release()
			t.Fatalf("append %d did not return by its deadline", i)
		}
		require.ErrorIs(t, outs[i].err, context.DeadlineExceeded, "append %d", i)
		require.NotErrorIs(t, outs[i].err, eventstore.ErrUnknownOutcome, "append %d: the group was cancelled, nothing of it stored", i)
	}
	require.Zero(t, lockWaiters(t, s), "the abandoned group still waits for log_head")
	release()
	checkStored(t, s, calls, outs)
	v, err := s.Version(context.Background(), "a-0")
	require.NoError(t, err)
	require.Zero(t, v)
}

// batchCanceller cancels, when a pipeline's results have all been read,
// the ctx of every append in it: each append's ctx ends just as its result
// is known.
type batchCanceller struct {
	cancels sync.Map // event ID -> context.CancelFunc
}

type batchIDsKey struct{}

func (b *batchCanceller) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (b *batchCanceller) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (b *batchCanceller) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return context.WithValue(ctx, batchIDsKey{}, new([]string))
}

func (b *batchCanceller) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	ids, _ := ctx.Value(batchIDsKey{}).(*[]string)
	if ids == nil || !strings.Contains(data.SQL, "INSERT INTO") || len(data.Args) == 0 {
		return
	}
	if batchIDs, ok := data.Args[0].([]string); ok {
		*ids = append(*ids, batchIDs...)
	}
}

func (b *batchCanceller) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	ids, _ := ctx.Value(batchIDsKey{}).(*[]string)
	if ids == nil || data.Err != nil {
		return
	}
	for _, id := range *ids {
		if cancel, ok := b.cancels.Load(id); ok {
			cancel.(context.CancelFunc)()
		}
	}
}

// An append whose ctx ends once its pipeline has committed gets its
// result, not ErrUnknownOutcome, whether it ran the pipeline or joined it.
func TestAppend_ResultKnownWhenCtxEnds(t *testing.T) {
	bc := &batchCanceller{}
	s := openWithConfig(t, func(cfg *pgxpool.Config) { cfg.ConnConfig.Tracer = bc })
	for round := range 5 {
		release := holdLogHead(t, s)
		const n = 8
		calls := make([]eventstore.Event, n)
		chans := make([]<-chan outcome, n)
		for i := range n {
			calls[i] = event(fmt.Sprint("r", round, "-", i))
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			bc.cancels.Store(calls[i].ID, cancel)
			chans[i] = startAppend(s, ctx, calls[i])
			if i == 0 {
				waitFor(t, "the first append to block on log_head", func() bool { return lockWaiters(t, s) == 1 })
			}
		}
		waitFor(t, "the others to queue", func() bool { return postgres.QueueLen(s) == n-1 })
		release()
		outs := make([]outcome, n)
		for i := range n {
			outs[i] = <-chans[i]
			require.NoError(t, outs[i].err, "round %d, append %d: its result was known when its ctx ended", round, i)
		}
		checkStored(t, s, calls, outs)
	}
}

// An append that gives up while its group waits for a connection is left
// out of the pipeline: it gets ctx's error, not ErrUnknownOutcome, and
// is not stored, while the others of its group commit.
func TestAppend_GivesUpBeforeSent(t *testing.T) {
	ctx := context.Background()
	pgtest.Admin(t)
	cfg, err := pgxpool.ParseConfig(pgtest.DSN())
	require.NoError(t, err)
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	s, err := postgres.New(ctx, pool, &postgres.Options{Schema: pgtest.FreshSchema(t)})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })

	// The pool's only connection is taken: the committer waits for it.
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	var once sync.Once
	releaseConn := func() { once.Do(conn.Release) }
	t.Cleanup(releaseConn)
	firstCtx, cancelFirst := context.WithCancel(ctx)
	defer cancelFirst()
	first := startAppend(s, firstCtx, event("first"))
	waitFor(t, "the first group to be taken", func() bool { return postgres.Committing(s) && postgres.QueueLen(s) == 0 })

	impatientCtx, cancelImpatient := context.WithCancel(ctx)
	defer cancelImpatient()
	calls := []eventstore.Event{event("impatient"), event("patient")}
	impatient := startAppend(s, impatientCtx, calls[0])
	waitFor(t, "the impatient append to queue", func() bool { return postgres.QueueLen(s) == 1 })
	patient := startAppend(s, ctx, calls[1])
	waitFor(t, "the patient append to queue", func() bool { return postgres.QueueLen(s) == 2 })
	cancelFirst()
	require.ErrorIs(t, (<-first).err, context.Canceled)
	waitFor(t, "the second group to be taken", func() bool { return postgres.QueueLen(s) == 0 })

	cancelImpatient()
	outs := []outcome{<-impatient}
	require.ErrorIs(t, outs[0].err, context.Canceled)
	require.NotErrorIs(t, outs[0].err, eventstore.ErrUnknownOutcome, "nothing of it was sent")
	releaseConn()
	outs = append(outs, <-patient)
	require.NoError(t, outs[1].err)
	checkStored(t, s, calls, outs)
	v, err := s.Version(ctx, "impatient")
	require.NoError(t, err)
	require.Zero(t, v)
}
