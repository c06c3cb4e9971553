package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
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

func table(s *postgres.Store, name string) string {
	return pgx.Identifier{s.Schema(), name}.Sanitize()
}

// Processes that start together migrate the schema once and all work.
func TestOpen_Concurrent(t *testing.T) {
	schema := pgtest.FreshSchema(t)
	ctx := context.Background()
	const n = 8
	stores := make([]*postgres.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = postgres.Open(ctx, pgtest.DSN(), &postgres.Options{Schema: schema}) })
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i], "Open %d", i)
		t.Cleanup(func() { stores[i].Close() })
	}
	var applied int
	require.NoError(t, pgtest.Admin(t).QueryRow(ctx, "SELECT count(*) FROM "+table(stores[0], "schema_migrations")).Scan(&applied))
	require.Equal(t, 4, applied, "each migration applied once")

	for i, s := range stores {
		_, err := s.Append(ctx, eventstore.Event{AggregateID: "shared", Type: "T", Payload: []byte(fmt.Sprint(i))})
		require.NoError(t, err)
	}
	all, err := eventstore.Collect(stores[n-1].ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Len(t, all, n)
	for i, e := range all {
		require.Equal(t, uint64(i+1), e.Position)
		require.Equal(t, uint64(i+1), e.Version)
	}

	// Opening a migrated schema again changes nothing.
	again, err := postgres.Open(ctx, pgtest.DSN(), &postgres.Options{Schema: schema})
	require.NoError(t, err)
	defer again.Close()
	v, err := again.Version(ctx, "shared")
	require.NoError(t, err)
	require.Equal(t, uint64(n), v)
}

// Two stores in one database, in two schemas, see nothing of each other.
func TestOpen_SchemasIsolated(t *testing.T) {
	ctx := context.Background()
	a, b := mustOpen(t, nil), mustOpen(t, nil)
	require.NotEqual(t, a.Schema(), b.Schema())
	_, err := a.Append(ctx, eventstore.Event{AggregateID: "user-1", Type: "Created", Payload: []byte(`"a"`)})
	require.NoError(t, err)
	out, err := b.Append(ctx, eventstore.Event{AggregateID: "user-1", Type: "Created", Payload: []byte(`"b"`)})
	require.NoError(t, err)
	require.Equal(t, uint64(1), out[0].Position, "each schema has its own log")
	require.Equal(t, uint64(1), out[0].Version, "and its own aggregates")
	for s, want := range map[*postgres.Store]string{a: `"a"`, b: `"b"`} {
		got, err := eventstore.Collect(s.ReadAll(ctx, 0))
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, want, string(got[0].Payload))
	}
	require.NoError(t, a.SaveSnapshot(ctx, eventstore.Snapshot{AggregateID: "user-1", Version: 1, State: []byte("a")}))
	_, err = b.LoadSnapshot(ctx, "user-1")
	require.ErrorIs(t, err, eventstore.ErrNotFound)
}

// A schema migrated by a newer version of the package is refused.
func TestOpen_NewerSchema(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, nil)
	_, err := pgtest.Admin(t).Exec(ctx, "INSERT INTO "+table(s, "schema_migrations")+" (version, name) VALUES (99, '0099_future')")
	require.NoError(t, err)
	_, err = postgres.Open(ctx, pgtest.DSN(), &postgres.Options{Schema: s.Schema()})
	require.ErrorIs(t, err, eventstore.ErrUnknownFormat)
}

// New uses the caller's pool and leaves it open on Close.
func TestNew_LeavesPoolOpen(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Admin(t)
	s, err := postgres.New(ctx, pool, &postgres.Options{Schema: pgtest.FreshSchema(t)})
	require.NoError(t, err)
	_, err = s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`)})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, pool.Ping(ctx), "the caller's pool is still open")
	_, err = s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`)})
	require.ErrorIs(t, err, eventstore.ErrClosed)
}

// Payloads are kept byte for byte in a json column, so SQL can query them.
func TestPayload_QueryableFromSQL(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, nil)
	payload := `{ "name": "Ada",  "email" : "ada@example.com", "tags": ["x"] }`
	_, err := s.Append(ctx, eventstore.Event{
		AggregateID: "user-1", Type: "UserCreated", Payload: []byte(payload),
		Metadata: map[string]string{"correlation_id": "req-1"},
	})
	require.NoError(t, err)
	var email, text, correlation string
	require.NoError(t, pgtest.Admin(t).QueryRow(ctx,
		"SELECT payload->>'email', payload::text, metadata->>'correlation_id' FROM "+table(s, "events")+" WHERE event_type = 'UserCreated'",
	).Scan(&email, &text, &correlation))
	require.Equal(t, "ada@example.com", email)
	require.Equal(t, payload, text)
	require.Equal(t, "req-1", correlation)
}

// A page stops early on its byte budget, and the read still yields every
// event once, in order.
func TestRead_LargePayloads(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, nil)
	const n = 12
	for i := range n {
		payload := fmt.Sprintf(`"%d%s"`, i, strings.Repeat("x", eventstore.DefaultMaxPayloadSize-10))
		_, err := s.Append(ctx, eventstore.Event{AggregateID: "big", Type: "T", Payload: []byte(payload)})
		require.NoError(t, err)
	}
	i := 0
	for e, err := range s.ReadAll(ctx, 0) {
		require.NoError(t, err)
		require.Equal(t, uint64(i+1), e.Position)
		require.True(t, bytes.HasPrefix(e.Payload, fmt.Appendf(nil, `"%dx`, i)))
		i++
	}
	require.Equal(t, n, i)
}

// killer terminates the backend of the next batch it sees before the batch
// is sent, so that the batch's outcome is unknown to the client.
type killer struct {
	admin *pgxpool.Pool
	armed atomic.Bool
	t     *testing.T
}

func (k *killer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (k *killer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData)     {}
func (k *killer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (k *killer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

func (k *killer) TraceBatchStart(ctx context.Context, conn *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	if !k.armed.CompareAndSwap(true, false) {
		return ctx
	}
	pid := conn.PgConn().PID()
	if _, err := k.admin.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		k.t.Errorf("terminate backend: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var alive bool
		if err := k.admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pid).Scan(&alive); err != nil || !alive {
			break
		}
	}
	return ctx
}

// openWithConfig opens a store in a fresh schema on a pool of its own, whose
// configuration (parsed from the test DSN) adjust may change first.
func openWithConfig(t *testing.T, adjust func(*pgxpool.Config)) *postgres.Store {
	t.Helper()
	pgtest.Admin(t) // skips, or fails in CI, without a server
	cfg, err := pgxpool.ParseConfig(pgtest.DSN())
	require.NoError(t, err)
	adjust(cfg)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	s, err := postgres.New(context.Background(), pool, &postgres.Options{Schema: pgtest.FreshSchema(t)})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// retryableCall returns an Append's events with IDs, so that repeating the
// call is a retry.
func retryableCall() []eventstore.Event {
	return []eventstore.Event{
		{ID: uuid.NewString(), AggregateID: "acct", Type: "Opened", Version: 1, Payload: []byte(`{}`)},
		{ID: uuid.NewString(), AggregateID: "acct", Type: "Deposited", Version: 2, Payload: []byte(`{"amount":10}`)},
	}
}

// A connection lost while an append is in flight gives ErrUnknownOutcome,
// and retrying the same append stores its events exactly once.
func TestAppend_UnknownOutcome(t *testing.T) {
	ctx := context.Background()
	k := &killer{admin: pgtest.Admin(t), t: t}
	s := openWithConfig(t, func(cfg *pgxpool.Config) { cfg.ConnConfig.Tracer = k })
	call := retryableCall()
	k.armed.Store(true)
	_, err := s.Append(ctx, call...)
	require.ErrorIs(t, err, eventstore.ErrUnknownOutcome)

	out, err := s.Append(ctx, call...)
	require.NoError(t, err, "retrying after an unknown outcome")
	again, err := s.Append(ctx, call...)
	require.NoError(t, err, "retrying a committed append")
	require.Equal(t, out, again)
	all, err := eventstore.Collect(s.ReadAll(ctx, 0))
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.Equal(t, []uint64{1, 2}, []uint64{all[0].Position, all[1].Position})
}

// ctx cancels an append that waits inside the server, and the append
// stores nothing.
func TestAppend_ContextCancelsQuery(t *testing.T) {
	s := mustOpen(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// Hold log_head so that an append blocks inside the server.
	tx, err := pgtest.Admin(t).Begin(context.Background())
	require.NoError(t, err)
	defer tx.Rollback(context.Background())
	_, err = tx.Exec(context.Background(), "SELECT 1 FROM "+table(s, "log_head")+" FOR UPDATE")
	require.NoError(t, err)
	start := time.Now()
	_, appendErr := s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`)})
	require.ErrorIs(t, appendErr, context.DeadlineExceeded)
	require.NotErrorIs(t, appendErr, eventstore.ErrUnknownOutcome, "Open asks the server to cancel: the append failed cleanly")
	require.Less(t, time.Since(start), 5*time.Second, "the blocked append was not cancelled")
	require.NoError(t, tx.Rollback(context.Background()))
	got, err := eventstore.Collect(s.ReadAll(context.Background(), 0))
	require.NoError(t, err)
	require.Empty(t, got)
	t.Logf("a cancelled append reports: %v", appendErr)
}
